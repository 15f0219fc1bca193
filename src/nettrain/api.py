"""The Python API: `fit` (training.py does the work) and `load` (a predictor.py `Predictor`).

    run = nettrain.fit(dataset="mnist", model="mlp", epochs=1, data_dir="data")
    run = nettrain.fit(model=my_module, data=(x, y), loss="mse", optimizer="sgd", lr=0.2, epochs=200)
    model = nettrain.load("runs/xyz")          # best.pt of a run, or any checkpoint file
    model.predict(["cat.png", pil_image, uint8_array]).labels
    model.evaluate()                             # the test split it was trained with

`fit` takes the same keys as the config: shortcut names (lr, epochs, batch_size, optimizer, ...), dotted
keys (`**{"optim.momentum": 0.9}`), or whole sections (`optim={"momentum": 0.9}`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
from torch import nn

from .config import SECTIONS, Config
from .data import DataInfo, from_user_data
from .data.images import is_image_file
from .engine import checkpoint as ckpt_io
from .engine.device import resolve_device, resolve_precision
from .errors import CheckpointError, ConfigError, ModelError, NettrainError
from .models import build_model
from .predictor import Predictions, Predictor, format_report
from .runs import MANIFEST
from .training import Run, train


# ---- configuration --------------------------------------------------------------------------------

def resolve_config(config=None, options: Optional[dict] = None) -> Config:
    """A Config from a Config, a dict, a YAML path or None (the defaults), with `options` applied."""
    if config is None:
        cfg = Config()
    elif isinstance(config, Config):
        cfg = config
    elif isinstance(config, dict):
        cfg = Config.from_dict(config)
    else:
        cfg = Config.load(config)
    flat = {}
    for key, value in (options or {}).items():
        if key in SECTIONS and isinstance(value, dict):
            flat.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            flat[key] = value
    return cfg.override(flat) if flat else cfg


# ---- fit -------------------------------------------------------------------------------------------

def fit(config=None, *, data=None, val_data=None, classes=None, resume=None, **options) -> Run:
    """Train a model; returns the Run (its directory, metrics and trained model). See the module docstring."""
    module = options.pop("model") if isinstance(options.get("model"), nn.Module) else None
    if resume is not None:
        run_dir = Path(resume)
        if not (run_dir / "config.yaml").exists():   # without last.pt it starts again from epoch 0 (training.py)
            if (run_dir / MANIFEST).exists():
                raise CheckpointError(f"{run_dir} has no config.yaml to resume: the run stopped before it wrote it; "
                                      f"start it again with nettrain fit ... --run-dir {run_dir} --overwrite")
            raise CheckpointError(f"{run_dir} is not a run directory with a checkpoint to resume (no config.yaml); "
                                  f"give the directory of a run started by nettrain fit")
        cfg = resolve_config(run_dir / "config.yaml", options)
    else:
        cfg = resolve_config(config, options)
    user_data = None
    if data is not None:
        if "dataset" in options or "data.name" in options:
            raise ConfigError("give either dataset=<name> or data=(x, y), not both")
        cfg = cfg.override({"data.name": "arrays"})
        user_data = from_user_data(data, val_data, classes, cfg.data)
    if module is not None:
        cfg = cfg.override({"model.name": f"{type(module).__module__}:{type(module).__qualname__}"})
    return train(cfg, module, user_data, Path(resume) if resume is not None else None)


# ---- load ------------------------------------------------------------------------------------------

def load(path, model: Optional[nn.Module] = None, device: str = "cpu") -> Predictor:
    """A trained model from a run directory (its best.pt) or a checkpoint file. Give `model` (an instance of
    your own class) when the class cannot be imported by name."""
    state = ckpt_io.load(path)
    cfg = Config.from_dict(state["config"])
    info = DataInfo.from_dict(state["data"])
    if model is None:
        try:
            model = build_model(cfg.model.name, info.shape, info.outputs, cfg.model.args)
        except ModelError as e:
            raise ModelError(f"{e}; or pass your model: nettrain.load(path, model=YourModel(...))") from None
    ckpt_io.load_weights(model, state["model"], state["path"], cfg.model.name)
    dev = resolve_device(device)
    model.to(dev)
    if cfg.train.channels_last and info.kind == "image":
        model.to(memory_format=torch.channels_last)
    return Predictor(model.eval(), info, cfg, dev,
                     resolve_precision(cfg.train.precision, dev, info.kind, cfg.train.small_linears_fp32))


def checkpoint_run_dir(path) -> Optional[Path]:
    p = Path(path)
    d = p if p.is_dir() else p.parent
    return d if (d / "config.yaml").exists() else None


__all__ = ["fit", "load", "Run", "Predictor", "Predictions", "resolve_config", "format_report", "NettrainError",
           "is_image_file"]
