"""Feature vectors (and token ids of a fixed length): the user's arrays, scikit-learn's bundled sets, the toy tasks."""
from __future__ import annotations

import numpy as np
import torch

from ..errors import DataError
from .base import Kind


class Vector(Kind):
    name = "vector"
    record_fields = ("dtype",)   # integer vectors: token ids, kept integers

    def evidence(self, predictor, test) -> dict:
        """With the toy tasks' pictures: a 2-D classifier's decision boundary, a 1-D regression's curve."""
        from ..evidence import boundary, curve, examples, predictions
        x, y = examples(test)
        arrays, info = predictions(predictor, x, y), predictor.info
        if info.dtype is None and info.task == "classification" and list(info.shape) == [2]:
            arrays.update(boundary(predictor, x, y))
        elif info.dtype is None and info.task != "classification" and list(info.shape) == [1] and info.outputs == 1:
            arrays.update(curve(predictor, x, y))
        return arrays

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
