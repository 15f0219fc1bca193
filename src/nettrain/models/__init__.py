"""Models: the built-in networks by name, or the user's own `nn.Module` class by import path.

    model = build_model("tudui", shape=[3, 32, 32], outputs=10, args={})
    model = build_model("my_pkg.nets:Net", ..., args={"width": 64})      # or "path/to/file.py:Net"

The user's class is instantiated with `args` only: it need not subclass or know anything of ours.
Every model is checked with a forward pass of two dummy inputs before training, so a model that does not
fit the data fails in one line here rather than deep inside the first step.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
import traceback
from pathlib import Path

import torch
from torch import nn

from ..errors import ModelError
from .zoo import MODELS, check_args
from . import fast  # noqa: F401,E402  (registers fastnet)

__all__ = ["MODELS", "build_model", "check_fits", "load_object"]


def raised(e: BaseException) -> str:
    """`Type: message at file:line`, the line being where in the user's code it was raised (one line, no trace)."""
    if isinstance(e, SyntaxError):
        return f"SyntaxError: {e.msg} at {Path(e.filename or '?').name}:{e.lineno}"
    frame = traceback.extract_tb(e.__traceback__)[-1] if e.__traceback__ else None
    return f"{type(e).__name__}: {e}" + (f" at {Path(frame.filename).name}:{frame.lineno}" if frame else "")


def load_object(spec: str, what: str):
    """`package.module:Name` or `path/to/file.py:Name` -> the object."""
    if ":" not in spec:
        raise ModelError(f"{what} {spec!r} is not a registered name nor 'module:Name' / 'file.py:Name'")
    where, name = spec.rsplit(":", 1)
    try:
        if where.endswith(".py"):
            path = Path(where).expanduser().resolve()
            if not path.exists():
                raise ModelError(f"{what} file {where} does not exist; give the path of a .py file")
            module_name = f"nettrain_user_{path.stem}"
            module = sys.modules.get(module_name)
            digest = hashlib.sha256(path.read_bytes()).hexdigest()   # an edited file is run again (a notebook)
            if module is None or getattr(module, "__file__", None) != str(path) or \
                    getattr(module, "_nettrain_source", None) != digest:
                spec_ = importlib.util.spec_from_file_location(module_name, path)
                module = importlib.util.module_from_spec(spec_)
                module._nettrain_source = digest
                sys.modules[module_name] = module   # so checkpoints and pickling can find it again
                try:
                    spec_.loader.exec_module(module)
                except BaseException:
                    del sys.modules[module_name]   # a file that failed must not be found half-run next time
                    raise
        else:
            module = importlib.import_module(where)
    except ModelError:
        raise
    except ImportError as e:
        raise ModelError(f"cannot import {where!r} for {what} {spec!r}: {e}; check the module name and that it is "
                         f"on PYTHONPATH") from None
    except Exception as e:   # the user's file itself fails: a syntax error, a line that raises when it runs
        raise ModelError(f"{where} fails to load ({raised(e)}); fix the file") from None
    if not hasattr(module, name):
        names = [n for n in dir(module) if not n.startswith("_")]
        raise ModelError(f"{where} has no {name!r} for {what}; it defines: {', '.join(names[:20])}")
    return getattr(module, name)


def build_model(name: str, shape, outputs: int, args: dict) -> nn.Module:
    if name in MODELS:
        builder = MODELS.get(name)
        params = inspect.signature(builder).parameters
        unknown = [k for k in args if k not in params or k in ("shape", "outputs")]
        if unknown:
            valid = [p for p in params if p not in ("shape", "outputs")]
            raise ModelError(f"model {name!r} takes no argument {', '.join(unknown)}; "
                             f"it takes: {', '.join(valid) or 'none'}")
        check_args(name, builder, args)
        return builder(shape, outputs, **args)
    if ":" not in name:
        from ..errors import unknown as unknown_name
        raise unknown_name("model", name, MODELS.names() + ["<module>:<Class>", "<file.py>:<Class>"])
    cls = load_object(name, "model")
    try:
        model = cls(**args)
    except TypeError as e:
        raise ModelError(f"cannot build {name} with arguments {args}: {e}; set them with --model.args.<name>") from None
    except Exception as e:   # the user's __init__ raised
        raise ModelError(f"building {name} with arguments {args} failed ({raised(e)}); fix the class or its "
                         f"--model.args") from None
    if not isinstance(model, nn.Module):
        raise ModelError(f"{name} built a {type(model).__name__}, not a torch.nn.Module")
    return model


def check_fits(model: nn.Module, name: str, shape, outputs: int, task: str):
    """One forward pass of two zero inputs; a ModelError that says what does not fit."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.zeros(2, *shape, device=next(model.parameters(), torch.zeros(0)).device))
    except Exception as e:   # any shape mismatch inside the user's model
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelError(f"model {name!r} does not fit inputs of shape {list(shape)}: {first}; "
                         f"choose a model for this data or change its arguments") from None
    finally:
        model.train(was_training)
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[1] != outputs:
        got = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        what = f"{outputs} classes" if task == "classification" else f"{outputs} regression targets"
        raise ModelError(f"model {name!r} outputs {got} for a batch of 2, but the data has {what}: it must output "
                         f"[batch, {outputs}]; change its last layer")
