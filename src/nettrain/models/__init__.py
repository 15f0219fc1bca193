"""Models: the built-in networks by name, or the user's own `nn.Module` class by import path.

    model = build_model("tudui", shape=[3, 32, 32], outputs=10, args={})
    model = build_model("my_pkg.nets:Net", ..., args={"width": 64})      # or "path/to/file.py:Net"

The user's class is instantiated with `args` only: it need not subclass or know anything of ours.
Every model is checked with a forward pass of two dummy inputs before training, so a model that does not
fit the data fails in one line here rather than deep inside the first step.
"""
from __future__ import annotations

import inspect

import torch
from torch import nn

from ..errors import ModelError
from ..usercode import load_object, raised, resolve, source_file
from .blame import failure, forward_at, tracking
from .zoo import MODELS, check_args, check_size
from . import fast  # noqa: F401,E402  (registers fastnet)
from . import text  # noqa: F401,E402  (registers bilstm, fasttext)

__all__ = ["MODELS", "build_model", "check_fits", "forward", "load_object", "raised"]


def forward(model, x):
    """The model on one batch input: a tuple or list is its positional arguments, a dict its keyword arguments (a
    collate function's `(ids, lengths)` or `{"input_ids": ..., "attention_mask": ...}`), anything else one input."""
    if isinstance(x, (tuple, list)):
        return model(*x)
    if isinstance(x, dict):
        return model(**x)
    return model(x)


def build_model(name: str, shape, outputs: int, args: dict, gate=None) -> nn.Module:
    """`gate`: a trust.Gate when `name` comes from a checkpoint or run directory (data), None when the user gave it."""
    if name in MODELS:
        builder = MODELS.get(name)
        params = inspect.signature(builder).parameters
        unknown = [k for k in args if k not in params or k in ("shape", "outputs")]
        if unknown:
            valid = [p for p in params if p not in ("shape", "outputs")]
            raise ModelError(f"model {name!r} takes no argument {', '.join(unknown)}; "
                             f"it takes: {', '.join(valid) or 'none'}")
        check_args(name, builder, args)
        check_size(name, builder, shape, outputs, args)
        return builder(shape, outputs, **args)
    if ":" not in name:
        from ..errors import unknown as unknown_name
        raise unknown_name("model", name, MODELS.names() + ["<module>:<Class>", "<file.py>:<Class>"])
    cls = gate.resolve(name, "model") if gate is not None else resolve(name, "model")
    if isinstance(cls, nn.Module):   # an instance at module level: used as it is
        if args:
            raise ModelError(f"{name} is a model instance, which takes no --model.args ({', '.join(args)}); "
                             f"remove them, or name its class")
        return cls
    try:
        model = cls(**args)
    except TypeError as e:
        raise ModelError(f"cannot build {name} with arguments {args}: {e}; set them with --model.args.<name>") from None
    except Exception as e:   # the user's __init__ raised: where in its file
        raise ModelError(f"building {name} with arguments {args} failed ({raised(e, source_file(cls))}); fix the "
                         f"class or its --model.args") from e
    if not isinstance(model, nn.Module):
        raise ModelError(f"{name} built a {type(model).__name__}, not a torch.nn.Module")
    return model


def check_fits(model: nn.Module, name: str, shape, outputs: int, task: str, example=None) -> torch.Tensor:
    """One forward pass in eval mode of two zero inputs, or of `example` (a real batch input: for data whose shape
    is not fixed, or integer token ids, which zeros of float32 would not be); a ModelError that says what does not
    fit. Returns the outputs (the loss is chosen from them: wiring.py); the RNG is left as it was."""
    was_training = model.training
    model.eval()
    x = example if example is not None else \
        torch.zeros(2, *shape, device=next(model.parameters(), torch.zeros(0)).device)
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]), tracking(model) as where:
            out = forward(model, x)
    except Exception as e:   # any shape mismatch inside the user's model: where, in the user's file, and the shapes
        what = f"inputs of shape {list(shape)} (the data's)" if example is None else \
            "a batch of examples spread over the data"
        raise ModelError(f"{failure(e, model, where)}: model {name!r} does not fit {what}; choose a model for this "
                         f"data or change its arguments") from e
    finally:
        model.train(was_training)
    binary_head = task == "classification" and outputs == 2 and isinstance(out, torch.Tensor) and \
        (out.ndim == 1 or (out.ndim == 2 and out.shape[1] == 1))   # one logit an example: BCEWithLogits
    if not binary_head and (not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[1] != outputs):
        batch = "a batch of 2" if example is None else "a batch of the data's examples"
        got = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        what = f"{outputs} classes" if task == "classification" else f"{outputs} regression targets"
        one = " (or [batch, 1]: one logit, trained with BCEWithLogits)" if outputs == 2 and task == "classification" \
            else ""
        raise ModelError(f"model {name!r}{forward_at(model)} outputs {got} for {batch}, but the data has {what}: it must output "
                         f"[batch, {outputs}]{one}; change its last layer")
    return out
