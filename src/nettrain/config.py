"""The typed configuration: one dataclass per concern, loaded strictly from YAML and overridden by flags.

    cfg = Config.from_dict(read_yaml(text))       # unknown keys / wrong types -> one ConfigError
    cfg = cfg.override({"lr": 0.01, "optim.momentum": 0.9})   # shortcut names and dotted keys
    text = cfg.to_yaml()                               # Config.from_yaml(text) == cfg

Every error found is collected and reported together, with the valid keys or choices. No torch here.
"""
from __future__ import annotations

import dataclasses
import os
import re
import typing
from dataclasses import dataclass, field
from typing import Any, Optional, Union

import yaml

from .errors import ConfigError, closest


def choice(default, *choices):
    """A string field restricted to `choices`."""
    return field(default=default, metadata={"choices": choices})


def bounded(default, low=None, high=None, *, above=False, below=False, note=""):
    """A number field within [low, high]; `above`/`below` exclude low/high. Values torch would reject deep inside a
    step (or, for a negative grad_clip, silently turn into gradient ascent) are named when the config is read."""
    return field(default=default, metadata={"bounds": (low, high, above, below, note)})


def _bounds_problem(value, bounds) -> Optional[str]:
    """'must be ...' when `value` is outside `bounds`, else None."""
    if bounds is None or value is None:
        return None
    low, high, above, below, note = bounds
    if (low is None or (value > low if above else value >= low)) and \
            (high is None or (value < high if below else value <= high)):
        return None
    if high is None and not above:
        return f"must be at least {low}"
    interval = f"{'(' if above else '['}{low}, {'inf' if high is None else high}{')' if below or high is None else ']'}"
    return f"must be in {interval}" + (f": {note}" if note else "")


@dataclass
class DataConfig:
    name: str = "digits"              # a registered dataset (`nettrain list`)
    dir: Optional[str] = None         # default: $NETTRAIN_DATA, else ./data
    download: bool = False            # let torchvision download the dataset if it is missing
    image_size: Optional[int] = bounded(None, 1)  # resize image folders / predicted files to this square size
    channels: Optional[int] = None    # 1 (grayscale) or 3 (RGB) for image folders; default: 3
    val_fraction: float = 0.0         # hold out this share of train for validation (0: validate on test)
    split_seed: int = 0               # seed of the train/test split for datasets that have none
    in_memory: str = choice("auto", "auto", "yes", "no")  # "no": torchvision DataLoader (large folders)
    workers: int = bounded(0, 0)      # DataLoader workers (only for in_memory: no)
    crop_padding: int = bounded(0, 0)  # random crop with this zero padding (training only)
    flip: bool = False                # random horizontal flip (training only)
    alternate_flip: bool = False      # with flip: mirror each image every other epoch (a seeded half first), not by a
                                      # coin per epoch (in-memory data; the DataLoader path keeps coins)
    normalize: bool = True            # subtract the dataset's mean, divide by its std


@dataclass
class ModelConfig:
    name: str = "cnn"                 # registered name, `package.module:Class` or `path/file.py:Class`
    args: dict = field(default_factory=dict)  # keyword arguments for the model (e.g. hidden: [512, 128])


@dataclass
class OptimConfig:
    name: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: Optional[float] = None  # None: the optimizer's own default
    nesterov: Optional[bool] = None
    betas: Optional[list] = None
    eps: Optional[float] = None
    args: dict = field(default_factory=dict)  # any other keyword the torch optimizer takes


@dataclass
class SchedConfig:
    name: str = "cosine"              # none | step | cosine | onecycle (cosine: decays to min_lr by the end)
    warmup_epochs: float = 0.0        # linear warmup from lr/10 (not for onecycle, which has its own)
    step_epochs: float = 10.0         # step: multiply the lr by gamma every step_epochs
    gamma: float = 0.1
    min_lr: float = 0.0               # cosine: final lr
    pct_start: float = 0.25           # onecycle: share of steps spent rising to optim.lr
    args: dict = field(default_factory=dict)  # keyword arguments for a scheduler class of your own (sched.name)


@dataclass
class TrainConfig:
    epochs: int = bounded(10, 1)
    batch_size: int = bounded(64, 1)
    eval_batch_size: int = bounded(1000, 1)
    val_every: int = bounded(1, 0)    # validate every N epochs and after the last (0: only after the last)
    shuffle: bool = True
    drop_last: bool = False
    seed: int = 0
    loss: str = "cross-entropy"       # cross-entropy | nll | mse | `package.module:function`
    label_smoothing: float = bounded(0.0, 0, 1, below=True)
    grad_clip: Optional[float] = bounded(None, 0, above=True, note="a gradient norm")  # clip the gradient norm
    accumulate: int = bounded(1, 1)   # gradient accumulation: optimizer step every N batches
    device: str = "auto"              # auto | cpu | cuda | cuda:N | mps
    precision: str = choice("auto", "auto", "32", "bf16-mixed", "16-mixed")
    channels_last: bool = True
    small_linears_fp32: bool = True   # under CPU bf16 autocast, small linear layers in float32 (engine/device.py)
    compile: bool = False             # torch.compile the model (falls back to eager with a warning)
    threads: Optional[int] = bounded(None, 1)  # CPU threads for torch (default: torch's choice)
    tta: bool = False                 # evaluate on the image and its mirror image, averaged
    tta_shift: int = bounded(0, 0)    # with tta: also on copies moved this many pixels diagonally (6 passes)
    # keep an exponential moving average of the weights
    ema: Optional[float] = bounded(None, 0, 1, above=True, below=True, note="the decay per step, e.g. 0.999")
    lookahead: int = bounded(0, 0)    # Lookahead every N steps, airbench's schedule (engine/lookahead.py); 0: off
    # per step: the slow weights' final share is lookahead_decay ** lookahead
    lookahead_decay: float = bounded(0.95, 0, 1, above=True)


@dataclass
class RunConfig:
    dir: Optional[str] = None         # default: runs/<timestamp>-<dataset>-<model>
    overwrite: bool = False           # replace an existing run directory
    tensorboard: bool = True
    progress: str = choice("auto", "auto", "bar", "lines", "none")


SECTIONS = {"data": DataConfig, "model": ModelConfig, "optim": OptimConfig, "sched": SchedConfig,
            "train": TrainConfig, "run": RunConfig}

# Short names for the keys people change most (CLI flags and nettrain.fit keywords).
SHORTCUTS = {
    "dataset": "data.name", "data_dir": "data.dir", "download": "data.download", "image_size": "data.image_size",
    "model": "model.name", "optimizer": "optim.name", "lr": "optim.lr", "weight_decay": "optim.weight_decay",
    "momentum": "optim.momentum", "scheduler": "sched.name", "epochs": "train.epochs",
    "batch_size": "train.batch_size", "seed": "train.seed", "loss": "train.loss", "device": "train.device",
    "precision": "train.precision", "compile": "train.compile", "run_dir": "run.dir", "overwrite": "run.overwrite",
}


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    sched: SchedConfig = field(default_factory=SchedConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    run: RunConfig = field(default_factory=RunConfig)

    # ---- loading and saving -------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, d: Optional[dict]) -> "Config":
        d = d or {}
        if not isinstance(d, dict):
            raise ConfigError(f"a config must be a mapping of sections ({', '.join(SECTIONS)}), got {type(d).__name__}")
        errors, sections = [], {}
        for key in d:
            if key not in SECTIONS:
                errors.append(f"unknown section {key!r}{closest(key, SECTIONS)} (sections: {', '.join(SECTIONS)})")
        for name, section_cls in SECTIONS.items():
            values = d.get(name) or {}
            if not isinstance(values, dict):
                errors.append(f"{name}: must be a mapping of keys, got {values!r}")
                values = {}
            sections[name] = _build_section(name, section_cls, values, errors)
        if errors:
            raise ConfigError("invalid config: " + "; ".join(errors))
        return cls(**sections)

    @classmethod
    def from_yaml(cls, text: str) -> "Config":
        try:
            return cls.from_dict(read_yaml(text))
        except yaml.YAMLError as e:
            raise ConfigError(f"the config is not valid YAML: {str(e).splitlines()[0]}") from None

    @classmethod
    def load(cls, path) -> "Config":
        try:
            with open(path, encoding="utf-8") as f:
                return cls.from_yaml(f.read())
        except OSError as e:
            raise ConfigError(f"cannot read config {path}: {e.strerror}; give the path of a YAML file") from None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.dump(self.to_dict(), Dumper=_YamlDumper, sort_keys=False, default_flow_style=None)

    # ---- overrides ----------------------------------------------------------------------------------
    def override(self, values: dict) -> "Config":
        """A new Config with `values` applied: shortcut names (`lr`) or dotted keys (`optim.momentum`,
        `model.args.hidden`). Values are type-checked like YAML; all errors are reported together."""
        d = self.to_dict()
        errors = []
        for key, value in values.items():
            path = SHORTCUTS.get(key, key).split(".")
            if path[0] not in SECTIONS or len(path) < 2:
                valid = sorted(SHORTCUTS) + [f"{s}.<key>" for s in SECTIONS]
                errors.append(f"unknown option {key!r}{closest(key, list(SHORTCUTS) + _all_dotted())} "
                              f"(valid: {', '.join(valid)})")
                continue
            target = d[path[0]]
            for i, part in enumerate(path[1:-1], 1):
                if not isinstance(target.get(part, {}), dict):
                    errors.append(f"{'.'.join(path[:i + 1])} is not a mapping")
                    break
                target = target.setdefault(part, {})
            else:
                target[path[-1]] = value
        if errors:
            try:   # report the other options' problems in the same error
                Config.from_dict(d)
            except ConfigError as e:
                errors.append(str(e).removeprefix("invalid config: "))
            raise ConfigError("invalid options: " + "; ".join(errors))
        return Config.from_dict(d)


def _all_dotted() -> list:
    return [f"{s}.{f.name}" for s, c in SECTIONS.items() for f in dataclasses.fields(c)]


def _build_section(name, section_cls, values: dict, errors: list):
    hints = typing.get_type_hints(section_cls)
    fields = {f.name: f for f in dataclasses.fields(section_cls)}
    kwargs = {}
    for key, value in values.items():
        if key not in fields:
            errors.append(f"unknown key {name}.{key}{closest(key, fields)} (valid: {', '.join(fields)})")
            continue
        choices = fields[key].metadata.get("choices")
        if isinstance(value, bool) and choices and "yes" in choices:   # YAML 1.1 reads yes/no as true/false
            value = "yes" if value else "no"
        ok, value = _check(value, hints[key])
        if not ok:
            errors.append(f"{name}.{key} must be {_type_name(hints[key])}, got {value!r}")
        elif choices and value not in choices:
            errors.append(f"{name}.{key} must be one of {', '.join(choices)}{closest(value, choices)}, got {value!r}")
        elif problem := _bounds_problem(value, fields[key].metadata.get("bounds")):
            errors.append(f"{name}.{key} {problem}, got {value!r}")
        else:
            kwargs[key] = value
    return section_cls(**kwargs)


def _check(value, hint) -> tuple:
    """(is `value` of type `hint`, the value converted where lossless: int -> float, "32" -> str)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Union:
        if value is None and type(None) in args:
            return True, None
        for a in args:
            if a is not type(None):
                ok, v = _check(value, a)
                if ok:
                    return True, v
        return False, value
    if hint is bool:
        return isinstance(value, bool), value
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return True, float(value)
        return False, value
    if hint is str:
        if isinstance(value, os.PathLike):
            return True, os.fspath(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool):  # precision: 32 from YAML
            return True, str(value)
        return isinstance(value, str), value
    if hint is list or origin is list:
        if isinstance(value, tuple):
            value = list(value)
        return isinstance(value, list), value
    if hint is dict or origin is dict:
        return isinstance(value, dict), value
    return True, value


def _type_name(hint) -> str:
    if typing.get_origin(hint) is Union:
        names = [_type_name(a) for a in typing.get_args(hint) if a is not type(None)]
        return " or ".join(names) + " or null"
    return {bool: "true/false", int: "an integer", float: "a number", str: "a string",
            list: "a list", dict: "a mapping"}.get(hint, str(hint))


class _YamlLoader(yaml.SafeLoader):
    """PyYAML's safe loader, with 1e-3 and 1.0e3 read as the floats everyone means (YAML 1.2, and JSON, read them so;
    PyYAML's YAML 1.1 wants 1.0e-3 and leaves the others strings)."""


class _YamlDumper(yaml.SafeDumper):
    """Its twin: a string such as "1e3" is written quoted, so that it reads back a string."""


_EXPONENT_FLOAT = re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$")
for _cls in (_YamlLoader, _YamlDumper):
    _cls.add_implicit_resolver("tag:yaml.org,2002:float", _EXPONENT_FLOAT, list("-+0123456789"))


def read_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_YamlLoader)


def parse_value(text: str) -> Any:
    """A command-line value read as YAML: '0.9' -> 0.9, '1e-3' -> 0.001, 'true' -> True, '[512, 128]' -> list."""
    try:
        return read_yaml(text)
    except yaml.YAMLError:
        return text
