"""Flattened images for a model whose first layer is an nn.Linear over a whole image (the MNIST tutorial's MLP,
`nn.Linear(784, 512)` first, its loop doing `images.view(-1, 784)`).

`FlatInput(model)` hands the model its batch flattened to (N, C*H*W). It is a wrapper only for the step: its
checkpoints hold the user's own state_dict (checkpoint.unwrap takes `inner` out), and the run's config records
`model.flatten: true`, so that `nettrain.load`, `evaluate` and `predict` wrap the model again (api.load).
"""
from __future__ import annotations

import math
from typing import Optional

from torch import nn


class FlatInput(nn.Module):
    flattens_input = True   # how checkpoint.unwrap tells it apart (no import of models there)

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x, *args, **kwargs):
        return self.inner(x.flatten(1), *args, **kwargs)


def first_linear(model: nn.Module, shape) -> Optional[str]:
    """'fc1 = Linear(784, 512)' when the first layer with weights is an nn.Linear taking the C*H*W values of one
    image (and not just its rows: a 1-pixel-high image is left alone), else None."""
    for name, module in model.named_modules():
        if list(module.children()) or not any(True for _ in module.parameters(recurse=False)):
            continue
        if isinstance(module, nn.Linear) and len(shape) == 3 and module.in_features == math.prod(shape) \
                and module.in_features != shape[-1]:
            return f"{name or type(model).__name__} = Linear({module.in_features}, {module.out_features})"
        return None
    return None
