"""Feature vectors (and token ids of a fixed length): the user's arrays, scikit-learn's bundled sets, the toy tasks."""
from __future__ import annotations

import numpy as np
import torch

from ..errors import DataError
from .base import SHOWN_COLUMNS, Kind, class_table, first_batch, split_targets
from .evidence import boundary, curve, examples, predictions


class Vector(Kind):
    name = "vector"
    record_fields = ("dtype",)   # integer vectors: token ids, kept integers

    def evidence(self, predictor, test) -> dict:
        """With the toy tasks' pictures: a 2-D classifier's decision boundary, a 1-D regression's curve."""
        x, y = examples(test)
        arrays, info = predictions(predictor, x, y), predictor.info
        if info.dtype is None and info.task == "classification" and list(info.shape) == [2]:
            arrays.update(boundary(predictor, x, y))
        elif info.dtype is None and info.task != "classification" and list(info.shape) == [1] and info.outputs == 1:
            arrays.update(curve(predictor, x, y))
        return arrays

    def describe(self, data, cfg, n: int) -> str:
        """The splits, the classes (or the target's range) per split, each feature's statistics on the training
        split, and the first rows of epoch 1's first batch."""
        info, x = data.info, data.train.x
        splits = split_targets(data)
        lines = [f"{cfg.data.name}: {sum(len(y) for y in splits.values()):,} vectors of shape "
                 f"{list(info.shape)} ({', '.join(f'{len(y):,} {s}' for s, y in splits.items())}), {info.task}"]
        if info.task == "classification":
            lines += class_table(info.classes, splits)
        else:
            y = data.train.y.double()
            lines.append(f"  target on the training split: mean {float(y.mean()):.4g}, std {float(y.std()):.4g}, "
                         f"min {float(y.min()):.4g}, max {float(y.max()):.4g}")
        flat = x.reshape(len(x), -1).double()
        features = min(flat.shape[1], SHOWN_COLUMNS)
        lines.append(f"features on the training split (the first {features} of {flat.shape[1]}):" if
                     flat.shape[1] > features else "features on the training split:")
        for j in range(features):
            col = flat[:, j]
            lines.append(f"  {j:>3}  mean {float(col.mean()):<10.4g} std {float(col.std()):<10.4g} "
                         f"min {float(col.min()):<10.4g} max {float(col.max()):.4g}")
        inputs, y = first_batch(data, cfg)
        shown = min(n, len(y))
        lines.append(f"the first {shown} rows of epoch 1's first batch (label, then features):")
        labels = [str(info.classes[k])[:16] for k in y[:shown].tolist()] if info.task == "classification" else \
            [f"{v:.4g}" for v in y[:shown].reshape(shown, -1)[:, 0].tolist()]   # a regression's first target
        for row, label in zip(inputs[:shown].reshape(shown, -1)[:, :features].tolist(), labels):
            lines.append(f"  {label:<10} " + " ".join(f"{v:<10.4g}" for v in row).rstrip())
        return "\n".join(lines)

    def batch(self, info, inputs) -> torch.Tensor:
        shape = list(info.shape)
        ids = info.dtype is not None   # token ids: integers, as trained (never cast to float)
        wanted = f"this model takes {'integer token ids' if ids else 'numbers'} shaped " \
                 f"(N, {', '.join(map(str, shape))})"
        try:
            x = torch.as_tensor(np.asarray(inputs, dtype=None if ids else np.float32)
                                if not isinstance(inputs, torch.Tensor) else inputs)
        except (TypeError, ValueError) as e:
            raise DataError(f"{wanted}, not files or text ({e})") from None
        if ids and (x.is_floating_point() or x.is_complex() or x.dtype == torch.bool):
            raise DataError(f"{wanted}, got {x.dtype}; give integer arrays or tensors")
        x = x.to(getattr(torch, info.dtype)) if ids else x.float()
        if list(x.shape) == shape:   # one input without its batch dimension
            x = x.unsqueeze(0)
        if list(x.shape[1:]) != shape:
            raise DataError(f"{wanted}, got shape {tuple(x.shape)}")
        return x
