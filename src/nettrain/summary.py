"""`nettrain summary`: a model's layer table (output shapes, parameters, multiply-adds) by torchinfo.

    nettrain summary runs/x                                  # the run's model on its data's input shape
    nettrain summary --dataset cifar10 --model tudui         # the shape read from the data
    nettrain summary --model tudui --shape 3,32,32 --classes 10   # no data needed
"""
from __future__ import annotations

from typing import Optional

import torch

from .errors import ConfigError
from .layertable import layer_table


def _shape(text) -> list:
    try:
        shape = [int(v) for v in str(text).replace("x", ",").split(",")]   # 3,32,32 or 3x32x32
    except ValueError:
        shape = []
    if not shape or min(shape) < 1:
        raise ConfigError(f"--shape takes the input's shape as positive integers, C,H,W for images (3,32,32) or N "
                          f"for vectors, got {text!r}")
    return shape


# the torchvision datasets' shapes and classes, known without their files
KNOWN = {"cifar10": ([3, 32, 32], 10), "cifar100": ([3, 32, 32], 100), "mnist": ([1, 28, 28], 10),
         "fashion-mnist": ([1, 28, 28], 10)}


def _from_data(dataset: Optional[str], model_args: dict) -> tuple:
    """(shape, outputs) of a dataset: known for the torchvision ones, else read from its data (the bundled and
    generated ones load in a second)."""
    if dataset in KNOWN and not set(model_args) - {"data.dir"}:   # the shape is known: no file need be read
        return KNOWN[dataset]
    from .api import resolve_config
    from .data import load_data
    cfg = resolve_config(None, {"dataset": dataset, **{k: v for k, v in model_args.items() if k.startswith("data")}})
    info = load_data(cfg.data).info
    return info.shape, info.outputs


def summary(run=None, *, dataset: Optional[str] = None, model: Optional[str] = None, args: Optional[dict] = None,
            shape=None, classes: Optional[int] = None, depth: int = 3, trust_code: bool = False,
            _fixes: Optional[dict] = None) -> str:
    """The layer table of a run's model, or of `model` on `dataset`'s inputs (or `shape` and `classes`)."""
    args = dict(args or {})
    if run is not None:
        if dataset or shape or classes:
            raise ConfigError("a run's summary uses its own data's shape; give either RUN or --dataset/--shape")
        from .api import load
        from .evidence import layer_summary
        predictor = load(run, model=model, trust_code=trust_code, _fixes=_fixes)
        # the table a fit keeps in model_summary.txt (evidence.py), of the model on the CPU in float32
        predictor.module.float().to(device="cpu", memory_format=torch.contiguous_format)
        return layer_summary(predictor, depth, device="cpu")
    else:
        from .models import build_model
        if not model:
            raise ConfigError("nettrain summary takes a run directory, or --model NAME with --dataset NAME (or "
                              "--shape C,H,W --classes N)")
        model_args = {k.removeprefix("model.args."): v for k, v in args.items() if k.startswith("model.args.")}
        unknown = [k for k in args if not k.startswith(("model.args.", "data."))]
        if unknown:
            raise ConfigError(f"nettrain summary takes --model.args.* and --data.* options, not {', '.join(unknown)}")
        if shape is None or classes is None:
            if not dataset:
                raise ConfigError("give --dataset NAME for the input shape and classes, or --shape C,H,W and "
                                  "--classes N")
            data_shape, outputs = _from_data(dataset, {k: v for k, v in args.items() if k.startswith("data.")})
            shape = _shape(shape) if shape is not None else data_shape
            classes = classes or outputs
        else:
            shape = _shape(shape)
        if classes < 1:
            raise ConfigError(f"--classes must be at least 1, got {classes}")
        net, dtype = build_model(model, shape, classes, model_args), torch.float32
    fix = "" if run is not None else "; give the shape it takes with --shape"   # a run's shape is its data's
    return _table(net, depth, f"1 x {' x '.join(map(str, shape))}", f"model {model or 'of the run'}", fix,
                  input_size=(1, *shape), dtypes=[dtype])


def _table(net, depth: int, what: str, who: str, fix: str = "", **inputs) -> str:
    """The layer table (layertable.py) of a model built here, on the CPU in float32."""
    net = net.float().to(memory_format=torch.contiguous_format)
    return layer_table(net, depth, what, who, fix, **inputs)
