"""Inference with a trained model: `Predictor` is what `nettrain.load` and a finished `fit` hand back.

It applies the preprocessing the model was trained with (image size, channels, normalization, memory layout,
precision) to whatever it is given, and evaluates it on a test split with the training's own loss.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import nn

from ._malloc import freed_memory_kept, tuning
from .config import Config
from .data import ArrayData, DataInfo, from_user_data, load_for_model, make_batches, table
from .data.images import read_image
from .engine.device import resolve_precision
from .engine.loop import evaluate as evaluate_pass
from .engine.metrics import classification_metrics
from .engine.optim import build_loss, default_loss_for
from .errors import DataError, NettrainError, printable


def loss_config(cfg: Config, task: str):
    """The train section with its loss resolved for the task (cross-entropy or MSE when not given)."""
    return cfg.override({"train.loss": default_loss_for(task, cfg.train.loss)}).train


@dataclass
class Predictions:
    """Model outputs for a batch of inputs: class probabilities (classification) or values (regression)."""
    probs: Optional[torch.Tensor]
    values: Optional[torch.Tensor]
    classes: Optional[list]

    @property
    def indices(self) -> list:
        return self.probs.argmax(1).tolist()

    @property
    def labels(self) -> list:
        return [self.classes[i] for i in self.indices]

    def topk(self, k: int = 3) -> list:
        """Per input, [(class name, probability), ...] best first."""
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise NettrainError(f"topk takes the number of classes to list per input, at least 1, got {k!r}")
        p, i = self.probs.topk(min(k, self.probs.shape[1]), dim=1)
        return [[(self.classes[c], float(q)) for q, c in zip(ps, cs)] for ps, cs in zip(p.tolist(), i.tolist())]

    def __len__(self):
        return len(self.probs if self.probs is not None else self.values)


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

    # inputs -> one uint8 NCHW (images) or float (vectors) batch
    def _image_array(self, a) -> torch.Tensor:
        c, h, w = self.info.shape
        if not isinstance(a, torch.Tensor):
            a = np.asarray(a)
            if a.dtype.kind not in "biuf":   # nested lists of strings or None: numpy makes objects, torch fails
                raise DataError(f"images must be numbers (uint8, or floats in [0, 1]), got an array of {a.dtype}")
            if not a.flags.writeable:   # PIL's and read_image's arrays: torch warns on read-only buffers
                a = a.copy()
        t = torch.as_tensor(a) if not isinstance(a, torch.Tensor) else a
        if t.is_floating_point():   # ToTensor convention: floats in [0, 1]
            t = (t.clamp(0, 1) * 255).round().to(torch.uint8)
        if t.dtype != torch.uint8:
            raise DataError(f"images must be uint8 arrays/tensors or floats in [0, 1], got {t.dtype}")
        numpy_layout = not isinstance(a, torch.Tensor)   # numpy/PIL are HWC, torch tensors CHW
        if t.ndim == 2:
            t = t[None, None]
        elif t.ndim == 3:
            if numpy_layout and t.shape[-1] in (1, 3, 4):
                t = t.permute(2, 0, 1)[None]        # one HWC image
            elif not numpy_layout and t.shape[0] in (1, 3, 4):
                t = t[None]                          # one CHW image
            else:
                t = t[:, None]                       # a batch of gray NHW images
        elif t.ndim == 4 and numpy_layout:
            t = t.permute(0, 3, 1, 2)
        if t.ndim != 4:
            raise DataError(f"cannot read images of shape {tuple(t.shape)}; give HW, HWC, NHWC (numpy) or CHW, NCHW "
                            f"(torch)")
        if t.shape[1] == 4:
            t = t[:, :3]
        if t.shape[1] != c:   # gray <-> RGB, like PIL's convert
            t = t.expand(-1, 3, -1, -1) if c == 3 else \
                (t.float() * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True).round().byte()
        if tuple(t.shape[2:]) != (h, w):
            t = torch.nn.functional.interpolate(t.float(), size=(h, w), mode="bilinear", antialias=True,
                                                align_corners=False).round().clamp(0, 255).byte()
        return t.contiguous()

    def _vector_batch(self, inputs) -> torch.Tensor:
        shape = list(self.info.shape)
        ids = self.info.dtype is not None   # token ids: integers, as trained (never cast to float)
        wanted = f"this model takes {'integer token ids' if ids else 'numbers'} shaped " \
                 f"(N, {', '.join(map(str, shape))})"
        try:
            x = torch.as_tensor(np.asarray(inputs, dtype=None if ids else np.float32)
                                if not isinstance(inputs, torch.Tensor) else inputs)
        except (TypeError, ValueError) as e:
            raise DataError(f"{wanted}, not files or text ({e})") from None
        if ids and (x.is_floating_point() or x.is_complex() or x.dtype == torch.bool):
            raise DataError(f"{wanted}, got {x.dtype}; give integer arrays or tensors")
        x = x.to(getattr(torch, self.info.dtype)) if ids else x.float()
        if list(x.shape) == shape:   # one input without its batch dimension
            x = x.unsqueeze(0)
        if list(x.shape[1:]) != shape:
            raise DataError(f"{wanted}, got shape {tuple(x.shape)}")
        return x

    def _batch(self, inputs) -> torch.Tensor:
        if self.info.kind == "table":   # rows: a CSV file, dicts or a DataFrame, encoded as in training
            return table.predict_batch(inputs, self.info.table)
        if self.info.kind == "vector":
            return self._vector_batch(inputs)
        if isinstance(inputs, (np.ndarray, torch.Tensor)):
            return self._image_array(inputs)
        if not isinstance(inputs, (list, tuple)):
            inputs = [inputs]
        if not inputs:
            raise DataError("nothing to predict: give at least one image (a file, a folder's files, or an array)")
        c, h, _ = self.info.shape
        parts = []
        for item in inputs:
            if isinstance(item, (str, Path)):
                item = read_image(item, c, h)
            elif hasattr(item, "convert") and hasattr(item, "size"):   # a PIL image
                item = np.asarray(item.convert("L" if c == 1 else "RGB"))
            elif not isinstance(item, (np.ndarray, torch.Tensor, list, tuple)):   # None, a number, a dict, ...
                raise DataError(f"cannot predict on a {type(item).__name__}; give image file paths, PIL images, "
                                f"uint8 numpy arrays or tensors")
            parts.append(self._image_array(item))
        return torch.cat(parts)

    @torch.no_grad()
    def predict(self, inputs, batch_size: int = 256, collate_fn=None) -> Predictions:
        """inputs: file paths, PIL images, uint8 numpy arrays (HW/HWC/NHWC), tensors (CHW/NCHW), or vectors; for a
        model trained on a Dataset through a collate function, a list of raw inputs as the Dataset's items hold
        them (without targets), batched by that function (or `collate_fn`)."""
        if self.info.kind == "custom":
            return self._predict_items(inputs, batch_size, collate_fn or self.collate_fn)
        if self.info.kind == "text":
            return self._predict_texts(inputs, batch_size)
        x = self._batch(inputs)
        inputs_only = ArrayData(x, torch.zeros(len(x), dtype=torch.long))   # targets unused
        batches = make_batches(inputs_only, self.info, self.config.data, self.device, batch_size, train=False,
                               channels_last=self.config.train.channels_last)
        outs = []
        with self.precision.small_linears_in_float32(self.module):
            for xb, _ in batches:
                with self.precision.autocast():
                    outs.append(self.module(xb).float().cpu())
        out = torch.cat(outs) if outs else torch.zeros(0, self.info.outputs)
        if self.info.task == "classification":
            return Predictions(out.softmax(1), None, self.classes)
        return Predictions(None, table.outputs(out, self.info.table), None)

    def _predict_texts(self, texts, batch_size: int) -> Predictions:
        """Raw strings, tokenized with the saved vocabulary, in batches of consecutive texts (in their order)."""
        from .data.text import encode_texts
        return self.predict_encoded(encode_texts(texts, self.info, self.config.data.args), batch_size)

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
                outs.append(self.module(*pad(ids, starts, lengths, rows)).float().cpu())
        return Predictions(torch.cat(outs).softmax(1), None, self.classes)

    def _predict_items(self, items, batch_size: int, collate_fn) -> Predictions:
        """Raw items, each paired with a placeholder target (the collate function expects (input, target) pairs;
        its targets are dropped), batched through the collate function and run in the model."""
        from .data.custom import collate, to_device
        from .engine.loop import forward
        if isinstance(items, (str, bytes)) or not hasattr(items, "__len__") or not len(items):
            raise DataError("nothing to predict: give a list of inputs, each as your Dataset's items hold them "
                            "(without the target)")
        items = list(items)
        if self.info.task == "classification" or self.info.outputs == 1:
            placeholder = torch.tensor(0 if self.info.task == "classification" else 0.0)
        else:
            placeholder = torch.zeros(self.info.outputs)
        outs = []
        for i in range(0, len(items), batch_size):
            x, _ = collate(collate_fn, [(item, placeholder) for item in items[i:i + batch_size]], "predict")
            with self.precision.autocast():
                outs.append(forward(self.module, to_device(x, self.device)).float().cpu())
        out = torch.cat(outs)
        if self.info.task == "classification":
            return Predictions(out.softmax(1), None, self.classes)
        return Predictions(None, out, None)

    def evaluate(self, data=None, data_dir=None, batch_size: Optional[int] = None, collate_fn=None) -> dict:
        """Loss, accuracy, per-class accuracy and confusion matrix (or MSE/MAE) on the test split of the dataset
        it was trained on (optionally from another `data_dir`), or on `data` given as (x, y); for a model trained
        through a collate function, `data` is a Dataset or DataLoader, batched by it (or by `collate_fn`)."""
        cfg = self.config
        if self.info.kind == "custom" and data is not None:
            from .data.custom import custom_data
            collate_fn = collate_fn or self.collate_fn
            _, split, _, _ = custom_data(data, data, self.classes, collate_fn, None)   # all of it: no held-out split
            batches = split.batches(self.device, batch_size or cfg.train.eval_batch_size, self.info.task)
            loss_fn = self.loss_fn or build_loss(loss_config(cfg, self.info.task), self.gate)
            return evaluate_pass(self.module, batches, loss_fn, self.precision, self.info.task == "classification",
                                 self.info.outputs)
        if data is not None and self.info.kind == "table":   # arrays would skip the table's preprocessing
            raise DataError("this model was trained on a table; evaluate it on the held-out rows of another CSV "
                            "file: model.evaluate(data_dir='other.csv') (nettrain evaluate RUN --data-dir other.csv)")
        if data is not None and self.info.kind == "text":
            raise DataError("a text model is evaluated on a file of labelled texts: give data_dir= the file (its "
                            "test split, as fit made it), not data=")
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
            loaded = load_for_model(dcfg, self.info)   # its vocabulary, its table encodings
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
                                   self.info.outputs, cfg.train.tta, cfg.train.tta_shift)
        return table.in_target_units(result, self.info.table)


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
    if "acc" not in result:
        r2 = f"  r2 {result['r2']:.4f}" if result.get("r2") is not None else ""
        return f"{split}: loss {result['loss']:.5f}  mse {result['mse']:.5f}  mae {result['mae']:.5f}{r2}  " \
               f"({n} examples)"
    cm = result["confusion"]
    m = classification_metrics(cm)
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
