"""Where a model failed, in one line: the user's file and line, the layer that raised, and the shape it was given.

    with tracking(model) as where:
        model(x)            # raises inside layer fc1
    # where.layer -> "fc1 = Linear(in_features=784, out_features=512, bias=True)"

    failure(e, model, where)  -> "RuntimeError: mat1 and mat2 ... at net.py:12 (layer fc1 = Linear(...)); ..."
"""
from __future__ import annotations

import contextlib
import inspect
import re
from pathlib import Path
from typing import Optional

from torch import nn

from ..usercode import raised, source_file

# torch's words for the shape errors whose fix is the data's shape against the model's
SHAPE_ERROR = re.compile(r"shape|size|channels|dimension|mat1 and mat2", re.I)
MATMUL = re.compile(r"mat1 and mat2 shapes cannot be multiplied \((\d+)x(\d+) and (\d+)x(\d+)\)")


class Where:
    """The innermost submodule running when the forward raised (its pre-hook ran, its forward did not return)."""

    def __init__(self):
        self.stack = []

    @property
    def layer(self) -> Optional[str]:
        if not self.stack:
            return None
        name, module = self.stack[-1]
        return f"{name} = {module}" if len(str(module)) <= 80 else f"{name} ({type(module).__name__})"


@contextlib.contextmanager
def tracking(model: nn.Module):
    """Hooks on every leaf module that record which one is running; removed on exit."""
    where, handles = Where(), []
    for name, module in model.named_modules():
        if name and not list(module.children()):
            handles.append(module.register_forward_pre_hook(
                lambda m, args, name=name: where.stack.append((name, m))))
            handles.append(module.register_forward_hook(lambda m, args, out: where.stack.pop() and None))
    try:
        yield where
    finally:
        for h in handles:
            h.remove()


def model_file(model: nn.Module) -> Optional[str]:
    """The user's source file of the model (inside nettrain's flattening wrapper), or None (an nn.Sequential)."""
    return source_file(getattr(model, "inner", model))


def forward_at(model: nn.Module) -> str:
    """' (forward at net.py:12)': where the user's model's forward is defined, or '' for library code."""
    inner = getattr(model, "inner", model)
    file = model_file(inner)
    try:
        line = inspect.getsourcelines(type(inner).forward)[1] if file else None
    except (TypeError, OSError):
        line = None
    return f" (forward at {Path(file).name}:{line})" if line else ""


def failure(e: BaseException, model: nn.Module, where: Optional[Where] = None, got=None, data_shape=None) -> str:
    """`Type: message at file:line (layer ...)`, then for shape errors the features a linear layer takes against
    those it gets and, given `got`, the batch's shape against the data's."""
    text = raised(e, model_file(model))
    if where is not None and where.layer:
        text += f" (layer {where.layer})"
    if not SHAPE_ERROR.search(str(e)):
        return text
    m = MATMUL.search(str(e))
    if m:
        text += f"; a linear layer takes {m.group(3)} features here but gets {m.group(2)}"
    if got is not None:
        text += f"; the model was given a batch shaped {list(got)} (the data's inputs: {list(data_shape)} each)"
    return text
