"""What the report needs that only the trained model can tell, written at the end of a fit as plain data.

The report (nettrain.report) is built from the run directory alone, without the model or the data, so a fit
records here what its figures need:

    predictions.npz     numpy arrays, no pickled objects (np.load(..., allow_pickle=False)):
        task, kind                  "classification" / "regression", "image" / "vector" / "table" / "text"
        classes                     class names (classification)
        confidence, correct         every evaluated test example's top probability and whether it was right
        shown_*                     test examples spread evenly through the split (images as uint8 NHWC, true,
                                    predicted, probabilities): a split stored by class shows every class
        top_*                       the test examples of highest loss: the most confidently wrong (images, or for a
                                    text run top_texts: the raw strings, clipped, as a fixed-width unicode array)
        boundary_*, points*         2-D inputs: the model's class over a grid, and the test points
        curve_*, points*            1-D regression: the model's curve, and the test points
    model_summary.txt   torchinfo's table of the model (layers, output shapes, parameters)

The predictions are the plain model's (no test-time augmentation) on at most MAX_EXAMPLES test examples, in
evaluation batches: one more pass over (part of) the test split.
"""
from __future__ import annotations

import sys

import numpy as np
import torch

from .files import write_file, write_text
from .data import ArrayData, tensor_images
from .kinds import kind_of
from .runs import RUN_FILES

MAX_EXAMPLES = 10_000   # calibration is read off this many test examples (all of MNIST's or CIFAR's): one pass
MAX_GATHERED = 1_000    # a test split read item by item (a folder not held in memory): decoding costs
SHOWN, TOP = 24, 12     # the grid of test images, and the top losses
TEXT_CHARS = 300        # a top-loss text is kept to this many characters (SMS messages: at most 910; most < 160)
GRID = 100              # 2-D decision boundary: the model's class at GRID x GRID points
CURVE = 200             # 1-D regression: the model's curve at CURVE points


def record(run, predictor, test, result: dict) -> None:
    """Write predictions.npz and model_summary.txt into `run` (a RunDir) for `predictor`'s model on the `test`
    split, with the fit's own test `result` (loss, accuracy or MSE/MAE: the report's key numbers)."""
    write_text(run.claim(run.path / RUN_FILES["model_summary"]), model_summary(predictor), root=run.path)
    if test is None or len(test) == 0:
        return
    arrays = kind_of(predictor.info).evidence(predictor, test)   # each kind's part: kinds/, with the functions here
    arrays.update({f"test_{k}": np.array(float(result[k])) for k in ("loss", "acc", "mse", "mae") if k in result})

    write_file(run.claim(run.path / RUN_FILES["predictions"]), lambda f: np.savez_compressed(f, **arrays),
               root=run.path)


def examples(test) -> tuple:
    """The test split's first inputs and targets as tensors (images uint8 NCHW)."""
    if isinstance(test, ArrayData):
        return test.x[:MAX_EXAMPLES], test.y[:MAX_EXAMPLES]
    items = [test[i] for i in range(min(len(test), MAX_GATHERED))]
    x = tensor_images(torch.stack([torch.as_tensor(item[0]) for item in items]))
    return x, torch.stack([torch.as_tensor(item[1]) for item in items])   # class indices, or regression targets


def predictions(predictor, x: torch.Tensor, y: torch.Tensor, images=None, probs_of=None) -> dict:
    """Task, kind and, for a classifier, every example's confidence and correctness (with `images`, those to show):
    the probabilities from predict, or from `probs_of(predictor, x, batch)` where predict takes other inputs."""
    info = predictor.info
    batch = predictor.config.train.eval_batch_size
    arrays = {"task": np.array(info.task), "kind": np.array(info.kind)}
    if info.task == "classification":
        probs = probs_of(predictor, x, batch) if probs_of else predictor.predict(x, batch_size=batch).probs
        arrays.update(_classification(probs, y.long(), images), classes=np.array([str(c) for c in info.classes]))
    return arrays


def encoded_probs(predictor, x: torch.Tensor, batch: int) -> torch.Tensor:
    """A table's test split is held encoded (data/table.py: the model's own inputs), where predict takes raw rows:
    the class probabilities straight from the model."""
    with torch.no_grad():
        out = [predictor.module(x[i:i + batch].to(predictor.device)).float().cpu() for i in range(0, len(x), batch)]
    return torch.cat(out).softmax(1)


def _classification(probs: torch.Tensor, y: torch.Tensor, images, texts=None) -> dict:
    """Every example's confidence and correctness; with `images`, SHOWN spread evenly (shown_*) and those of highest loss
    (top_*); with `texts` (raw strings), those of highest loss, the strings clipped to TEXT_CHARS."""
    confidence, predicted = probs.max(1)
    p_true = probs.gather(1, y.view(-1, 1)).squeeze(1)
    loss = -p_true.clamp_min(1e-12).log()
    out = {"confidence": confidence.numpy().astype(np.float32), "correct": (predicted == y).numpy()}
    top = loss.argsort(descending=True)[:TOP]   # the highest losses: the most confidently wrong come first
    # evenly spaced: CIFAR-10's staged test split is stored class by class, whose first 24 are all airplanes
    shown = torch.linspace(0, len(y) - 1, min(SHOWN, len(y))).round().long()
    groups = (("shown", shown), ("top", top)) if images is not None else \
        (("top", top),) if texts is not None else ()
    for prefix, index in groups:
        if images is not None:
            out[f"{prefix}_images"] = images[index].permute(0, 2, 3, 1).contiguous().numpy()
        else:   # a fixed-width unicode array: plain data, read back with allow_pickle=False
            out[f"{prefix}_texts"] = np.array([_clipped(texts[i]) for i in index.tolist()], dtype=str)
        out.update({f"{prefix}_true": y[index].numpy(), f"{prefix}_pred": predicted[index].numpy(),
                    f"{prefix}_probs": probs[index].numpy().astype(np.float32),
                    f"{prefix}_loss": loss[index].numpy().astype(np.float32)})
    return out


def _clipped(text: str) -> str:
    return text if len(text) <= TEXT_CHARS else text[:TEXT_CHARS - 1] + "\u2026"


def text_predictions(predictor, test) -> dict:
    """A text run's test split (data/text.py's TextData) through the model, in batches of consecutive texts padded
    as predict pads them: what calibration and the top losses need, with the raw strings of the top losses."""
    from .data.text import pad
    n, batch, device = min(len(test), MAX_EXAMPLES), predictor.config.train.eval_batch_size, predictor.device
    ids, starts, lengths = test.ids.to(device), test.starts.to(device), test.lengths.to(device)
    outs = []
    with torch.no_grad():
        for i in range(0, n, batch):
            rows = torch.arange(i, min(i + batch, n), device=device)
            with predictor.precision.autocast():
                outs.append(predictor.module(*pad(ids, starts, lengths, rows)).float().cpu())
    probs = torch.cat(outs).softmax(1)
    info = predictor.info
    return {"task": np.array(info.task), "kind": np.array(info.kind), "classes": np.array([str(c) for c in info.classes]),
            **_classification(probs, test.y[:n], None, test.texts[:n] if test.texts is not None else None)}


def boundary(predictor, x: torch.Tensor, y: torch.Tensor) -> dict:
    """The model's class and confidence over a grid around the test points (a 2-D input's decision boundary)."""
    low, high = x.min(0).values.float(), x.max(0).values.float()
    pad = (high - low).clamp_min(1e-3) * 0.1
    gx = torch.linspace(float(low[0] - pad[0]), float(high[0] + pad[0]), GRID)
    gy = torch.linspace(float(low[1] - pad[1]), float(high[1] + pad[1]), GRID)
    mesh = torch.stack(torch.meshgrid(gx, gy, indexing="xy"), -1).reshape(-1, 2)   # row i: y = gy[i]
    probs = predictor.predict(mesh, batch_size=predictor.config.train.eval_batch_size).probs
    confidence, predicted = probs.max(1)
    return {"boundary_x": gx.numpy(), "boundary_y": gy.numpy(),
            "boundary_class": predicted.view(GRID, GRID).numpy().astype(np.int32),
            "boundary_conf": confidence.view(GRID, GRID).numpy().astype(np.float32),
            "points": x.float().numpy(), "points_true": y.numpy()}


def curve(predictor, x: torch.Tensor, y: torch.Tensor) -> dict:
    """The model's output over the test inputs' range (a 1-D regression's fitted curve), and the test points."""
    grid = torch.linspace(float(x.min()), float(x.max()), CURVE).unsqueeze(1)
    values = predictor.predict(grid, batch_size=predictor.config.train.eval_batch_size).values
    return {"curve_x": grid.squeeze(1).numpy(), "curve_y": values.reshape(-1).numpy().astype(np.float32),
            "points": x.float().reshape(-1).numpy(), "points_true": y.float().reshape(-1).numpy()}


def model_summary(predictor) -> str:
    """torchinfo's table for one input of the data's shape (a forward pass in eval mode, no gradients); a model
    it cannot trace is named in one line instead: the summary is a nicety, the run is whole without it."""
    import torchinfo
    info = predictor.info
    if not kind_of(info).traceable:   # custom and text: its inputs have no fixed shape to trace with
        return "(no summary: this model takes batches of the user's own making, with no fixed input shape)\n"
    dtype = getattr(torch, info.dtype) if info.dtype else torch.float32   # token ids stay integers
    try:
        stats = torchinfo.summary(predictor.module, input_size=(1, *info.shape), dtypes=[dtype],
                                  device=predictor.device, depth=4, verbose=0, mode="eval",
                                  col_names=("output_size", "num_params", "trainable"), row_settings=("var_names",))
        return str(stats) + "\n"
    except Exception as e:   # torchinfo wraps the model's own error: any model of the user's may raise
        first = str(e).splitlines()[0][:200] if str(e) else ""
        print(f"warning: model summary skipped ({type(e).__name__}: {first})", file=sys.stderr)
        return f"(torchinfo could not summarize this model: {type(e).__name__}: {first})\n"
