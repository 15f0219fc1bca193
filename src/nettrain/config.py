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

from .errors import ConfigError, closest, printable
from .files import LIMITS, FileError, read_bytes


def choice(default, *choices):
    """A string field restricted to `choices`."""
    return field(default=default, metadata={"choices": choices})


def bounded(default, low=None, high=None, *, above=False, below=False, note=""):
    """A number field within [low, high]; `above`/`below` exclude low/high. Values torch would reject deep inside a
    step (or, for a negative grad_clip, silently turn into gradient ascent) are named when the config is read."""
    return field(default=default, metadata={"bounds": (low, high, above, below, note)})


def numbers(default, length, low=None, high=None, *, above=False, below=False, note=""):
    """A list of exactly `length` numbers, each within [low, high] as for `bounded`."""
    return field(default=default, metadata={"bounds": (low, high, above, below, note), "length": length})


def _bounds_problem(value, bounds, length=None) -> Optional[str]:
    """'must be ...' when `value` is outside `bounds` (or, for a list of `length` numbers, is not one such), else
    None."""
    if bounds is None or value is None:
        return None
    if length is not None:
        if len(value) != length or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            return f"must be a list of {length} numbers"
        problems = [_bounds_problem(v, bounds) for v in value]
        return next((f"must be {length} numbers, each {p.removeprefix('must be ')}" for p in problems if p), None)
    low, high, above, below, note = bounds
    if (low is None or (value > low if above else value >= low)) and \
            (high is None or (value < high if below else value <= high)):
        return None
    if high is None and not above:
        return f"must be at least {low}"
    interval = f"{'(' if above else '['}{low}, {'inf' if high is None else high}{')' if below or high is None else ']'}"
    return f"must be in {interval}" + (f": {note}" if note else "")


MAX_IMAGE_SIZE = 4096               # an image folder's decoded images, or predict's, are this size at most
MAX_SEED = 2**32 - 1                # numpy's seed range (torch's is wider); batches derive per-epoch seeds from it
SEED_NOTE = "numpy's seed range"
PER_CPU = 4                         # threads or loader processes beyond this many per CPU only contend for the cores


def check_parallelism(cfg: "Config"):
    """train.threads and data.workers against this machine (not field bounds: a run's config.yaml must still load
    on a smaller machine, e.g. for predict). Each torch thread holds a stack and buffers, each worker is a process:
    10,000 of either are not harmless."""
    cpus = os.cpu_count() or 1
    for key, value, default in (("train.threads", cfg.train.threads, "torch's own choice"),
                                ("data.workers", cfg.data.workers, "the default 0")):
        if value is not None and value > PER_CPU * cpus:
            raise ConfigError(f"{key} must be at most {PER_CPU * cpus} ({PER_CPU}x this machine's {cpus} CPUs), "
                              f"got {value}; leave it out for {default}")


@dataclass
class DataConfig:
    name: str = "digits"              # a registered dataset (`nettrain list`)
    dir: Optional[str] = None         # default: $NETTRAIN_DATA, else ./data
    download: bool = False            # let torchvision download the dataset if it is missing
    # resize image folders / predicted files to this square size
    image_size: Optional[int] = bounded(None, 1, MAX_IMAGE_SIZE, note="each decoded image takes size^2 x channels "
                                        "bytes of memory; resize larger images before training")
    channels: Optional[int] = None    # 1 (grayscale) or 3 (RGB) for image folders; default: 3
    # hold out this share of train for validation, which chooses best.pt (None/0: none; the test split is shown
    # each epoch). Arrays given with no test split: None holds 20% out as the test split, 0 trains on all of them.
    val_fraction: Optional[float] = bounded(None, 0, 1, below=True, note="a share of the training data, e.g. 0.1")
    # seed of the train/test split for datasets that have none
    split_seed: int = bounded(0, 0, MAX_SEED, note=SEED_NOTE)
    in_memory: str = choice("auto", "auto", "yes", "no")  # "no": torchvision DataLoader (large folders)
    workers: int = bounded(0, 0)      # DataLoader workers (only for in_memory: no)
    crop_padding: int = bounded(0, 0)  # random crop with this zero padding (training only; smaller than the images)
    flip: bool = False                # random horizontal flip (training only)
    alternate_flip: bool = False      # with flip: mirror each image every other epoch (a seeded half first), not by a
                                      # coin per epoch (in-memory data; the DataLoader path keeps coins)
    normalize: bool = True            # subtract the dataset's mean, divide by its std
    target: Optional[str] = None      # csv: the column to predict (data/table.py)
    # auto: read from the target column (csv) or the targets' type (arrays)
    task: str = choice("auto", "auto", "classification", "regression", "multilabel")
    # the normalization's per-channel mean and std in [0, 1] units (a tutorial's Normalize((0.5,), (0.5,))), instead
    # of the dataset's own
    mean: Optional[list] = None
    std: Optional[list] = None
    limit: Optional[int] = bounded(None, 1)   # train on a seeded subset of this many training examples
    args: dict = field(default_factory=dict)  # the dataset's own options (text: data/text.py), checked by it


@dataclass
class ModelConfig:
    # registered name, `package.module:Class` or `path/file.py:Class`; auto: the data's kind chooses (images cnn,
    # vectors and tables mlp, texts fasttext: kinds/), and config.yaml records the choice
    name: str = "auto"
    args: dict = field(default_factory=dict)  # keyword arguments for the model (e.g. hidden: [512, 128])
    # hand images to the model flattened to C*H*W values (models/flat.py); null: when its first layer is an
    # nn.Linear taking them and it fails on the images as they are (a fit records what it decided)
    flatten: Optional[bool] = None


@dataclass
class OptimConfig:
    name: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    # None: the optimizer's own default
    momentum: Optional[float] = bounded(None, 0, 1, below=True, note="the share of the last update kept, e.g. 0.9")
    nesterov: Optional[bool] = None
    betas: Optional[list] = numbers(None, 2, 0, 1, below=True)   # Adam's two decay rates, e.g. [0.9, 0.999]
    eps: Optional[float] = None
    args: dict = field(default_factory=dict)  # any other keyword the torch optimizer takes


@dataclass
class SchedConfig:
    name: str = "cosine"              # none | step | cosine | onecycle (cosine: decays to min_lr by the end)
    warmup_epochs: float = bounded(0.0, 0)  # linear warmup from lr/10 (not for onecycle, which has its own)
    step_epochs: float = 10.0         # step: multiply the lr by gamma every step_epochs
    gamma: float = 0.1
    min_lr: float = bounded(0.0, 0)   # cosine: final lr (a negative lr would climb the loss)
    # onecycle: share of steps spent rising to optim.lr
    pct_start: float = bounded(0.25, 0, 1, above=True, below=True, note="a share of the steps, e.g. 0.25")
    args: dict = field(default_factory=dict)  # keyword arguments for a scheduler class of your own (sched.name)


@dataclass
class TrainConfig:
    epochs: int = bounded(10, 1)
    batch_size: int = bounded(64, 1)
    eval_batch_size: int = bounded(1000, 1)
    val_every: int = bounded(1, 0)    # validate every N epochs and after the last (0: only after the last)
    shuffle: bool = True
    drop_last: bool = False
    seed: int = bounded(0, 0, MAX_SEED, note=SEED_NOTE)
    loss: str = "cross-entropy"       # cross-entropy | nll | mse | `package.module:function`
    label_smoothing: float = bounded(0.0, 0, 1, below=True)
    grad_clip: Optional[float] = bounded(None, 0, above=True, note="a gradient norm")  # clip the gradient norm
    accumulate: int = bounded(1, 1)   # gradient accumulation: optimizer step every N batches
    device: str = "auto"              # auto | cpu | cuda | cuda:N | mps
    precision: str = choice("auto", "auto", "32", "bf16-mixed", "16-mixed")
    channels_last: bool = True
    small_linears_fp32: bool = True   # under CPU bf16 autocast, small linear layers in float32 (engine/device.py)
    compile: bool = False             # torch.compile the model (falls back to eager with a warning)
    sync_batchnorm: bool = False      # under DDP: BatchNorm statistics of the global batch (engine/syncbn.py; GPUs)
    threads: Optional[int] = bounded(None, 1)  # CPU threads for torch (default: torch's choice); 4 per CPU at most
    tta: bool = False                 # evaluate on the image and its mirror image, averaged
    tta_shift: int = bounded(0, 0)    # with tta: also on copies moved this many pixels diagonally (6 passes)
    # keep an exponential moving average of the weights
    ema: Optional[float] = bounded(None, 0, 1, above=True, below=True, note="the decay per step, e.g. 0.999")
    lookahead: int = bounded(0, 0)    # Lookahead every N steps, airbench's schedule (engine/lookahead.py); 0: off
    # per step: the slow weights' final share is lookahead_decay ** lookahead
    lookahead_decay: float = bounded(0.95, 0, 1, above=True)
    # stop when the validation metric that chooses best.pt has not improved for N validated epochs (callbacks.py)
    patience: Optional[int] = bounded(None, 1, note="validated epochs without improvement, e.g. 5")
    # the run's own metrics on each evaluation: registered names (`nettrain list`) or file.py:function
    metrics: list = field(default_factory=list)


@dataclass
class RunConfig:
    dir: Optional[str] = None         # default: runs/<timestamp>-<dataset>-<model>
    overwrite: bool = False           # replace an existing run directory
    tensorboard: bool = True
    progress: str = choice("auto", "auto", "bar", "lines", "none")
    report: bool = True               # figures and report.html, live while training (nettrain/report/)
    callbacks: list = field(default_factory=list)   # your callback classes, file.py:Class (callbacks.py)
    # every N optimizer steps, the step's loss and lr to steps.csv and TensorBoard (stepscalars.py); 0: off
    log_every_n_steps: int = bounded(0, 0, note="optimizer steps, e.g. 50")
    # a whole checkpoint every N epochs beside last.pt (epoch_003.pt, ...; keep.py); 0: none
    save_every: int = bounded(0, 0, note="epochs, e.g. 1")
    # of those (each epoch's when save_every is 0), only the K best by the metric that chooses best.pt; 0: all
    keep_best: int = bounded(0, 0, note="checkpoints, e.g. 3")
    # log the fit to MLflow at this tracking URI (sqlite:///mlflow.db, http://host:5000; mlflowlog.py); null: when
    # NETTRAIN_MLFLOW_URI or MLFLOW_TRACKING_URI gives one; off: never. config.yaml does not record it
    mlflow: Optional[str] = None


@dataclass
class DistConfig:
    # many processes (torchrun): the longest a training step or one of nettrain's collectives may take before the
    # hang watchdog ends the job with every rank's stack (engine/watchdog.py); null: torch's own timeouts only
    # (NCCL 10 min, gloo 30 min). 300 s: far above a step, or an epoch's end on the main rank (checkpoint, report)
    # that the others wait through, yet 2-6x sooner than torch's.
    timeout: Optional[float] = bounded(300.0, 0, above=True, note="seconds, e.g. 300")


SECTIONS = {"data": DataConfig, "model": ModelConfig, "optim": OptimConfig, "sched": SchedConfig,
            "train": TrainConfig, "run": RunConfig, "dist": DistConfig}

# Short names for the keys people change most (CLI flags and nettrain.fit keywords).
SHORTCUTS = {
    "dataset": "data.name", "data_dir": "data.dir", "download": "data.download", "image_size": "data.image_size",
    "target": "data.target",
    "model": "model.name", "optimizer": "optim.name", "lr": "optim.lr", "weight_decay": "optim.weight_decay",
    "momentum": "optim.momentum", "scheduler": "sched.name", "epochs": "train.epochs",
    "batch_size": "train.batch_size", "seed": "train.seed", "loss": "train.loss", "device": "train.device",
    "precision": "train.precision", "compile": "train.compile", "run_dir": "run.dir", "overwrite": "run.overwrite",
    "sync_batchnorm": "train.sync_batchnorm", "patience": "train.patience", "callbacks": "run.callbacks",
    "metrics": "train.metrics", "save_every": "run.save_every", "keep_best": "run.keep_best",
}


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    sched: SchedConfig = field(default_factory=SchedConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    run: RunConfig = field(default_factory=RunConfig)
    dist: DistConfig = field(default_factory=DistConfig)

    # The keys (section.field) a user named: in YAML, a dict or an option. A key named is the user's even where its
    # value is the field's default; `given` adds the keys set to another value in a Config built by hand.
    _named = frozenset()   # not a field: config.yaml holds values, and every key of it counts as named

    # ---- loading and saving -------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, d: Optional[dict]) -> "Config":
        cfg = cls._from_dict(d)
        cfg._named = frozenset(f"{s}.{k}" for s, values in (d or {}).items() if isinstance(values, dict)
                               for k in values)
        return cfg

    @classmethod
    def _from_dict(cls, d: Optional[dict]) -> "Config":
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
            text = read_bytes(path, LIMITS["config"], "file").decode("utf-8")
        except FileError as e:   # missing, a FIFO, a folder, too large
            raise ConfigError(f"cannot read config: {e}") from None
        except UnicodeDecodeError as e:   # a binary file, or text saved as latin-1
            raise ConfigError(f"config {printable(path)} is not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset "
                              f"{e.start}); give a YAML file saved as UTF-8") from None
        return cls.from_yaml(text)

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
        cfg = Config.from_dict(d)
        cfg._named = self.given() | {".".join(SHORTCUTS.get(key, key).split(".")[:2]) for key in values}
        return cfg

    def given(self) -> frozenset:
        """The keys (section.field) the user set: named, or holding other than the field's default. A kind's
        training defaults (kinds/, with_defaults) fill only the others."""
        differ = {f"{s}.{f.name}" for s in SECTIONS for f in dataclasses.fields(SECTIONS[s])
                  if getattr(getattr(self, s), f.name) != getattr(SECTIONS[s](), f.name)}
        return self._named | differ

    def with_defaults(self, defaults: dict) -> "Config":
        """A new Config with each of `defaults` ({"section.field": value}) that the user did not set (given): a
        kind's training settings where the user chose none. The keys filled count as set from then on."""
        kept = self.given()
        chosen = {key: value for key, value in defaults.items() if key not in kept}
        return self.override(chosen) if chosen else self


def _all_dotted() -> list:
    return [f"{s}.{f.name}" for s, c in SECTIONS.items() for f in dataclasses.fields(c)]


# Sections whose other keys are the chosen class's own keyword arguments, kept in its `args`: `--optim.alpha 0.9` is
# `--optim.args '{alpha: 0.9}'`, as `nettrain list` shows each optimizer's options. Which keywords a class takes is
# known only with torch: engine/optim.py registers here, per section, a function from the class's name to its
# keywords (None: not known without importing user code, so only `args` takes them). Without it, keys are strict.
OWN_KEYWORDS: dict = {}


def _own_options(name: str, section_cls, fields: dict, values: dict, errors: list) -> dict:
    """`values` with the keys that are the chosen class's own keywords moved into the section's args; other unknown
    keys are refused, naming both the section's keys and the class's."""
    extra = [k for k in values if k not in fields]
    if name not in OWN_KEYWORDS or not extra:
        return values
    chosen = values.get("name", section_cls().name)
    own = OWN_KEYWORDS[name](chosen) if isinstance(chosen, str) else None
    if not own:
        return values
    args = values.get("args") or {}
    if not isinstance(args, dict):
        return values   # reported as args' own type error
    taken = {k: values[k] for k in extra if k in own}
    for key in extra:
        if key not in own:
            errors.append(f"unknown key {name}.{key}{closest(key, list(fields) + list(own))} (valid: "
                          f"{', '.join(fields)}; and optimizer {chosen}'s own: {', '.join(own)})")
    rest = {k: v for k, v in values.items() if k not in extra}
    return {**rest, "args": {**args, **taken}}   # the key by name wins: a flag over the config file's args


def _build_section(name, section_cls, values: dict, errors: list):
    hints = typing.get_type_hints(section_cls)
    fields = {f.name: f for f in dataclasses.fields(section_cls)}
    values = _own_options(name, section_cls, fields, values, errors)
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
        elif problem := _bounds_problem(value, fields[key].metadata.get("bounds"), fields[key].metadata.get("length")):
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


MAX_YAML_VALUES = 10_000   # a config has ~60 keys; anchors and aliases may repeat parts, but not without bound


def read_yaml(text: str) -> Any:
    """The YAML document, refused when its aliases (*name) expand it past MAX_YAML_VALUES values: PyYAML shares an
    aliased node, but copying or printing the config expands it, so 618 bytes of nested aliases ("billion laughs")
    took minutes and gigabytes. An alias inside its own anchor (a list holding itself) is refused too."""
    loader = _YamlLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _expanded_size(node, {}, set())
        return loader.construct_document(node)
    except RecursionError:   # PyYAML composes and constructs recursively: [[[[...]]]] thousands deep
        raise ConfigError("the YAML is nested too deeply (thousands of levels); a config is a few levels deep") \
            from None
    finally:
        loader.dispose()


def _expanded_size(node, sizes: dict, open_: set) -> int:
    """Values in `node` with every alias written out, counted once per distinct node (linear time)."""
    if id(node) in sizes:
        return sizes[id(node)]
    if id(node) in open_:
        raise ConfigError(f"the YAML at line {node.start_mark.line + 1} contains itself through an alias (*name); "
                          f"write the value out")
    open_.add(id(node))
    children = node.value if isinstance(node, (yaml.SequenceNode, yaml.MappingNode)) else ()
    if isinstance(node, yaml.MappingNode):
        children = [part for pair in children for part in pair]
    size = 1 + sum(_expanded_size(child, sizes, open_) for child in children)
    open_.discard(id(node))
    if size > MAX_YAML_VALUES:
        raise ConfigError(f"the YAML expands to more than {MAX_YAML_VALUES:,} values through its aliases (*name) "
                          f"(a config has about 60); write the values out instead of nesting aliases")
    sizes[id(node)] = size
    return size


def parse_value(text: str) -> Any:
    """A command-line value read as YAML: '0.9' -> 0.9, '1e-3' -> 0.001, 'true' -> True, '[512, 128]' -> list."""
    try:
        return read_yaml(text)
    except yaml.YAMLError:
        return text
