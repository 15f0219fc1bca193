"""The arrays of each input kind's part of predictions.npz (Kind.evidence; evidence.py writes the file, and its
docstring says what the file holds): the test split's predictions, the images or texts to show, a decision boundary
or a fitted curve."""
from __future__ import annotations

import numpy as np
import torch

from ..data import ArrayData, tensor_images
from ..engine.metrics import class_probabilities

MAX_EXAMPLES = 10_000   # calibration is read off this many test examples (all of MNIST's or CIFAR's): one pass
MAX_GATHERED = 1_000    # a test split read item by item (a folder not held in memory): decoding costs
SHOWN, TOP = 24, 12     # the grid of test images, and the top losses
TEXT_CHARS = 300        # a top-loss text is kept to this many characters (SMS messages: at most 910; most < 160)
GRID = 100              # 2-D decision boundary: the model's class at GRID x GRID points
CURVE = 200             # 1-D regression: the model's curve at CURVE points


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
        out = [predictor.module(x[i:i + batch].to(predictor.device)).float().cpu().reshape(len(x[i:i + batch]), -1)
               for i in range(0, len(x), batch)]
    return class_probabilities(torch.cat(out))


def _classification(probs: torch.Tensor, y: torch.Tensor, images, texts=None) -> dict:
    """Every example's confidence and correctness; with `images`, SHOWN spread evenly (shown_*) and the wrong ones of
    highest loss (top_*, none when all are right); with `texts` (raw strings), the wrong ones of highest loss, the
    strings clipped to TEXT_CHARS."""
    confidence, predicted = probs.max(1)
    p_true = probs.gather(1, y.view(-1, 1)).squeeze(1)
    loss = -p_true.clamp_min(1e-12).log()
    out = {"confidence": confidence.numpy().astype(np.float32), "correct": (predicted == y).numpy()}
    # the wrong predictions of highest loss: a right one can out-lose a wrong one (p_true 0.3 over nine classes of
    # less is right, loss 1.2; 0.4 against 0.45 is wrong, loss 0.9), and a run with fewer than TOP wrong would fill
    # the grid of "confidently wrong" examples with right ones
    wrong = (predicted != y).nonzero().squeeze(1)
    top = wrong[loss[wrong].argsort(descending=True)[:TOP]]
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
    from ..data.text import pad
    n, batch, device = min(len(test), MAX_EXAMPLES), predictor.config.train.eval_batch_size, predictor.device
    ids, starts, lengths = test.ids.to(device), test.starts.to(device), test.lengths.to(device)
    outs = []
    with torch.no_grad():
        for i in range(0, n, batch):
            rows = torch.arange(i, min(i + batch, n), device=device)
            with predictor.precision.autocast():
                outs.append(predictor.module(*pad(ids, starts, lengths, rows)).float().cpu().reshape(len(rows), -1))
    probs = class_probabilities(torch.cat(outs))
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
