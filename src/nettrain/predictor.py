"""Inference with a trained model: `Predictor` is what `nettrain.load` and a finished `fit` hand back.

It applies the preprocessing the model was trained with (image size, channels, normalization, memory layout,
precision) to whatever it is given, and evaluates it on a test split with the training's own loss.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import nn

from ._malloc import freed_memory_kept, tuning
from .config import Config
from .data import ArrayData, DataInfo, from_user_data, make_batches, table
from .data.batches import BatchPrep
from .engine.device import resolve_precision
from .engine.loop import evaluate as evaluate_pass
from .engine.metrics import class_probabilities, classification_metrics
from .engine.optim import build_loss, loss_config
from .errors import DataError, ModelError, clean, printable
from .kinds import kind_of
from .kinds.base import Predictions


class Predictor:
    """A trained model with the preprocessing it was trained with: what `nettrain.load` returns."""

    def __init__(self, module: nn.Module, info: DataInfo, config: Config, device=None, precision=None, gate=None,
                 loss_fn=None, collate_fn=None):
        self.module, self.info, self.config = module.eval(), info, config
        self.collate_fn = collate_fn   # custom data: how raw items become a batch (None: torch's default collate)
        self.gate = gate   # trust.Gate for a loaded checkpoint: its config's user loss is data (see trust.py)
        self.loss_fn = loss_fn   # the training's own loss (a fit's Predictor), else built from the config
        self.device = device or next(module.parameters()).device
        self.precision = precision or resolve_precision("32", self.device, info.kind)

    @property
    def classes(self) -> Optional[list]:
        return self.info.classes

    def predict(self, inputs, batch_size: int = 256, collate_fn=None) -> Predictions:
        """inputs: file paths, PIL images, uint8 numpy arrays (HW/HWC/NHWC), tensors (CHW/NCHW), or vectors; a
        table's rows (a CSV file, dicts, a DataFrame); a text model's strings; for a model trained on a Dataset
        through a collate function, a list of raw inputs as the Dataset's items hold them (without targets), batched
        by that function (or `collate_fn`). How each is read is its input kind's (kinds/)."""
        return self._finite(kind_of(self.info).predict(self, inputs, batch_size, collate_fn))

    def preprocess(self, inputs) -> torch.Tensor:
        """What a user has, as the model's own input, exactly as training's batches were made: image files, PIL
        images, uint8 arrays (HW/HWC/NHWC) or tensors (CHW/NCHW) -> float32 (x/255 - mean)/std with the mean and
        std in the checkpoint's data section (flattened where the run flattened them), a table's raw rows ->
        their encoded, standardized columns, vectors -> float32. One input gives one example without a batch axis,
        so it serves as a torchvision transform (`ImageFolder(root, transform=model.preprocess)`); a list or a
        batch gives a batch. On the CPU, whatever device the model is on."""
        kind = kind_of(self.info)
        try:
            x = kind.batch(self.info, inputs)
        except NotImplementedError:   # texts and collated items: their batches are the kind's own
            raise DataError(f"preprocess turns images, vectors and table rows into the model's input; a "
                            f"{self.info.kind} model's inputs are made by predict") from None
        prep = BatchPrep(self.info, "cpu", normalize=self.config.data.normalize, channels_last=False)
        x = prep(x, torch.zeros(len(x)), train=False)[0].contiguous()
        if self.config.model.flatten and kind.images:   # as models/flat.py hands them to the model
            x = x.flatten(1)
        one = isinstance(inputs, (np.ndarray, torch.Tensor)) and inputs.ndim <= len(self.info.shape) or \
            kind.images and (isinstance(inputs, (str, Path)) or hasattr(inputs, "convert"))   # a PIL image
        return x[0] if one else x

    def _finite(self, preds: Predictions) -> Predictions:
        """`preds`, unless the model's outputs are NaN or infinite: a damaged or diverged checkpoint would print
        "nan%" as if it were an answer. Refused in one line naming the checkpoint."""
        out = preds.probs if preds.probs is not None else preds.values
        if out is None or len(out) == 0 or bool(torch.isfinite(out).all()):
            return preds
        bad = int((~torch.isfinite(out.reshape(len(out), -1))).any(1).sum())
        where = printable(self.gate.where) if self.gate is not None else "the model"
        weights = [name for name, t in self.module.state_dict().items()
                   if t.is_floating_point() and not bool(torch.isfinite(t).all())]
        why = f"its weights hold NaN or infinity ({weights[0]}{' and more' * (len(weights) > 1)}); retrain it, or " \
              f"use another checkpoint" if weights else "its weights are finite, so these inputs overflow it; check " \
              "them against the training data's range"
        raise ModelError(f"the outputs of {where} are not finite (NaN or infinity) for {bad} of {len(out)} inputs: "
                         f"{why}")

    @torch.no_grad()
    def predict_tensor(self, x: torch.Tensor, batch_size: int = 256) -> Predictions:
        """A batch tensor of inputs as training's batches held them (before normalization), run in memory."""
        unlike = unlike_training(x, self.info)
        if unlike:
            print(f"nettrain: warning: {unlike}", file=sys.stderr)
        inputs_only = ArrayData(x, torch.zeros(len(x), dtype=torch.long))   # targets unused
        batches = make_batches(inputs_only, self.info, self.config.data, self.device, batch_size, train=False,
                               channels_last=self.config.train.channels_last)
        outs = []
        with self.precision.small_linears_in_float32(self.module):
            for xb, _ in batches:
                with self.precision.autocast():
                    outs.append(self.module(xb).float().cpu().reshape(len(xb), -1))   # a squeezed binary head's too
        out = torch.cat(outs) if outs else torch.zeros(0, self.info.outputs)
        if self.info.task == "classification":
            return Predictions(class_probabilities(out), None, self.classes)
        if self.info.task == "multilabel":   # each label's probability, on its own
            return Predictions(out.sigmoid(), None, self.classes, multilabel=True)
        return Predictions(None, table.outputs(out, self.info.table), None)

    @torch.no_grad()
    def predict_encoded(self, data, batch_size: int = 256) -> Predictions:
        """Texts already turned into token ids (data/text.py's TextData), in batches of consecutive texts, each
        padded to its longest: the one definition of a text model's prediction (export checks against it)."""
        from .data.text import pad
        ids, starts, lengths = data.ids.to(self.device), data.starts.to(self.device), data.lengths.to(self.device)
        outs = []
        for i in range(0, len(data), batch_size):
            rows = torch.arange(i, min(i + batch_size, len(data)), device=self.device)
            with self.precision.autocast():
                outs.append(self.module(*pad(ids, starts, lengths, rows)).float().cpu().reshape(len(rows), -1))
        return Predictions(class_probabilities(torch.cat(outs)), None, self.classes)

    def evaluate(self, data=None, data_dir=None, batch_size: Optional[int] = None, collate_fn=None) -> dict:
        """Loss, accuracy, per-class accuracy and confusion matrix (or MSE/MAE) on the test split of the dataset
        it was trained on (optionally from another `data_dir`), or on `data` given as (x, y); for a model trained
        through a collate function, `data` is a Dataset or DataLoader, batched by it (or by `collate_fn`)."""
        cfg = self.config
        done = kind_of(self.info).evaluate_given(self, data, batch_size, collate_fn) if data is not None else None
        if done is not None:   # a kind's own way with data= (custom: through the collate function)
            return done
        refused = kind_of(self.info).evaluation_data_refusal(data) if data is not None else None
        if refused:
            raise DataError(refused)
        if data is not None:
            split = from_user_data(data, data, self.classes, cfg.data, collate_fn).test   # all: no held-out split
            if not isinstance(split, ArrayData):   # its batches would skip the model's preprocessing
                raise DataError(f"this model was trained on {self.info.kind}s held in memory; evaluate it on "
                                f"data=(x, y) or a Dataset of fixed-shape (input, target) items, not a DataLoader "
                                f"or a collate_fn")
            if list(split.x.shape[1:]) != list(self.info.shape):   # else a shape error deep inside the model
                raise DataError(f"the data's inputs are shaped {list(split.x.shape[1:])} each, the model was trained "
                                f"on {self.info.shape}; give inputs of the training data's shape")
        else:
            if cfg.data.name == "arrays":
                raise DataError("this model was trained on arrays given to nettrain.fit; pass them: "
                                "model.evaluate(data=(x, y))")
            if data_dir is not None:
                _check_data_dir(data_dir, cfg.data.name)
            dcfg = cfg.override({"data.dir": str(data_dir)}).data if data_dir else cfg.data
            loaded = kind_of(self.info).load_for_model(dcfg, self.info)   # its vocabulary, its table encodings
            split = loaded.test
            if list(loaded.info.shape) != list(self.info.shape):
                raise DataError(f"the data in {data_dir or dcfg.dir} has inputs of shape {loaded.info.shape}, "
                                f"the model was trained on {self.info.shape}")
        loss_fn = self.loss_fn or build_loss(loss_config(cfg, self.info.task), self.gate)
        batches = make_batches(split, self.info, cfg.data, self.device, batch_size or cfg.train.eval_batch_size,
                               train=False, channels_last=cfg.train.channels_last)
        with freed_memory_kept(self.device.type == "cpu" and tuning()), \
                self.precision.small_linears_in_float32(self.module):
            result = evaluate_pass(self.module, batches, loss_fn, self.precision, self.info.task == "classification",
                                   self.info.outputs, cfg.train.tta, cfg.train.tta_shift,
                                   multilabel=self.info.task == "multilabel")
        return table.in_target_units(result, self.info.table)


# An image whose mean intensity lies more than this many of the training pixels' standard deviations from their
# mean is unlike every training image: MNIST's digits (mean 0.13, std 0.31) have means of 0.03-0.30, a black digit
# on white about 0.85 (2.3 std away); CIFAR-10's photos (0.47, 0.25) stay within 1.8.
UNLIKE_STDS = 2.0


def unlike_training(x: torch.Tensor, info: DataInfo) -> Optional[str]:
    """A line when images given to predict (uint8 NCHW) are far from the training images' intensity (inverted
    colours, a blank frame), which no softmax says; None when they look alike. One mean an image: cheap."""
    if x.dtype != torch.uint8 or x.ndim != 4 or not info.mean or not info.std or len(x) == 0:
        return None
    means = x.float().mean((1, 2, 3)) / 255
    centre, spread = sum(info.mean) / len(info.mean), sum(info.std) / len(info.std)
    far = (means - centre).abs() > UNLIKE_STDS * spread
    if not bool(far.any()):
        return None
    first = float(means[far][0])
    inverted = abs((1 - first) - centre) <= spread
    return (f"{int(far.sum())} of {len(x)} images look unlike the training images (mean intensity {first:.2f}, the "
            f"training's {centre:.2f} with std {spread:.2f})"
            + ("; their colours look inverted (dark on light where training was light on dark, or the reverse)"
               if inverted else "") + ": the predictions say nothing of such inputs")


def _check_data_dir(data_dir, dataset: str):
    """Another data directory must exist and be read: a dataset that reads no files would silently evaluate on its
    own bundled or generated data instead."""
    from .data.sources import READS_NO_FILES
    if dataset == "csv":   # a table is one file
        if not Path(data_dir).is_file():
            raise DataError(f"CSV file {printable(data_dir)} does not exist; give the table to evaluate on")
        return
    if dataset in READS_NO_FILES:
        raise DataError(f"this model was trained on {dataset}, which is {READS_NO_FILES[dataset]} and reads no data "
                        f"directory; leave out data_dir (--data-dir)")
    if dataset == "text" and Path(data_dir).is_file():   # the text kind reads one file
        return
    if not Path(data_dir).is_dir():
        raise DataError(f"data directory {printable(data_dir)} does not exist; give the folder that holds the "
                        f"{dataset} data")


def format_report(result: dict, classes, split: str = "test") -> str:
    n = result["examples"]
    if "multilabel" in result:
        m = result["multilabel"] or {}
        return f"{split}: loss {result['loss']:.5f}  micro F1 {m.get('micro_f1', 0):.2%}  macro F1 " \
               f"{m.get('macro_f1', 0):.2%}  exact match {m.get('exact_match', 0):.2%}  ({n} examples)"
    if "acc" not in result:
        r2 = f"  r2 {result['r2']:.4f}" if result.get("r2") is not None else ""
        return f"{split}: loss {result['loss']:.5f}  mse {result['mse']:.5f}  mae {result['mae']:.5f}{r2}  " \
               f"({n} examples)"
    cm = result["confusion"]
    m = classification_metrics(cm)
    classes = [clean(c) for c in classes]   # a checkpoint's class names: no terminal escapes, one line each
    lines = [f"{split}: loss {result['loss']:.4f}  accuracy {result['acc']:.2%} ({int(cm.diag().sum())}/{n})  "
             f"macro precision {m['macro']['precision']:.2%}  recall {m['macro']['recall']:.2%}  "
             f"F1 {m['macro']['f1']:.2%}"]
    width = max(8, max(len(c) for c in classes))
    lines.append(f"  {'class':<{width}}  accuracy (recall)      precision  F1")
    for i, (name, correct, total) in enumerate(zip(classes, cm.diag().tolist(), cm.sum(1).tolist())):
        acc = f"{correct / total:7.2%}  ({correct}/{total})" if total else "      -"
        lines.append(f"  {name:<{width}}  {acc:<21}  {m['precision'][i]:7.2%}  {m['f1'][i]:7.2%}")
    if len(classes) <= 20:
        cell = max(5, len(str(int(cm.max()))) + 1)
        lines.append("  confusion matrix (rows: true class, columns: predicted)")
        lines.append("  " + " " * width + "".join(f"{c[:cell - 1]:>{cell}}" for c in classes))
        for name, row in zip(classes, cm.tolist()):
            lines.append(f"  {name:<{width}}" + "".join(f"{v:>{cell}}" for v in row))
    return "\n".join(lines)
