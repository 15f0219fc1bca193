"""The fields of a loaded checkpoint, checked before anything uses them.

A checkpoint is a file anyone can write: its `data` sizes the model and the buffers nettrain allocates, its
`config` names what to build. Each field is checked for its type and range here, so that a crafted or damaged
file is refused in one line (checkpoint.load raises it as a CheckpointError) rather than failing deep inside, or
allocating a [1, 100000, 100000] input before failing.
"""
from __future__ import annotations

import math
from typing import Optional

import torch

MAX_INPUT_VALUES = 2 ** 25   # one input's values (C*H*W): 3x3344x3344 images, far above any dataset nettrain reads
MAX_OUTPUTS = 1_000_000      # classes or regression targets
MAX_IMAGE_SIZE = 16384
DATA_KEYS = ("kind", "shape", "task", "classes", "outputs", "mean", "std", "image_size")
OPTIONAL_DATA_KEYS = ("dtype", "collate", "table", "vocab")   # absent from checkpoints written before they existed
INTEGER_DTYPES = ("int8", "int16", "int32", "int64")   # vectors of token ids (DataInfo.dtype)
CODE_KEYS = ("spec", "file", "name", "sha256")


def _int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _numbers(v) -> bool:
    """A list of finite numbers (an integer among them within 2**53: torch.tensor takes it as int64)."""
    return isinstance(v, list) and all((isinstance(x, float) and math.isfinite(x)) or
                                       (_int(x) and abs(x) < 2 ** 53) for x in v)


def problem(ckpt: dict, kinds: dict) -> Optional[str]:
    """What is wrong with a checkpoint dict's fields, in words, or None. `kinds`: the input kinds a checkpoint may
    name (kinds.KINDS: name -> its Kind, whose images, record_fields and fixed_shape say which data fields fit)."""
    v = ckpt["format_version"]
    if not _int(v) or v < 1:
        return f"format_version must be a positive integer, got {v!r}"
    model = ckpt["model"]
    if not isinstance(model, dict) or not all(isinstance(k, str) and isinstance(t, torch.Tensor)
                                              for k, t in model.items()):
        return "model must be a state_dict, a mapping of parameter names to tensors" + \
            ("" if isinstance(model, dict) else f", got {type(model).__name__}")
    if not isinstance(ckpt["config"], dict):
        return f"config must be a mapping, got {type(ckpt['config']).__name__}"
    from ..config import Config
    from ..errors import ConfigError
    try:
        Config.from_dict(ckpt["config"])
    except ConfigError as e:
        return f"its config is invalid ({str(e)[:300]})"
    epoch = ckpt["epoch"]
    if not _int(epoch) or epoch < 0:
        return f"epoch must be a non-negative integer, got {epoch!r}"
    return data_problem(ckpt["data"], kinds) or code_problem(ckpt.get("code")) or resume_problem(ckpt)


# what a resume reads, when present: key -> (the types it may have, in words)
RESUME_FIELDS = {"optimizer": ((dict,), "a mapping"), "scheduler": ((dict,), "a mapping"),
                 "scaler": ((dict,), "a mapping"), "ema": ((dict, type(None)), "a mapping or null"),
                 "lookahead": ((dict, type(None)), "a mapping or null"), "rng": ((dict,), "a mapping"),
                 "history": ((list,), "a list"), "best": ((dict,), "a mapping"),
                 "train_model": ((dict,), "a state_dict"), "partial": ((dict, type(None)), "a mapping or null"),
                 "rng_ranks": ((list,), "a list"), "data_fingerprint": ((dict,), "a mapping"),
                 "threads": ((int, type(None)), "an integer or null"),
                 "stopped_early": ((str, type(None)), "a text or null")}
# what a resume cannot do without: every checkpoint nettrain fit writes holds them (training._checkpoint)
RESUME_REQUIRED = ("optimizer", "scheduler", "scaler", "rng", "history", "best")
# a stop's epoch in progress (engine/stop.py): each rank's sums of its batches so far
PARTIAL_SUMS = {"loss_sum": torch.Tensor, "correct": int, "seen": int, "wait": float, "seconds": float}
# best["metric"]: the validation column that chooses best.pt, or training.LAST (no validation split)
BEST_METRICS = ("val_acc", "val_loss", "last epoch")
# torch's CPU generator state: its Mersenne twister and normal-sampling cache (5056 bytes in torch 2.x); a state of
# another size, or with its position out of range, is refused by torch.set_rng_state with a traceback
CPU_RNG_BYTES = torch.get_rng_state().numel()
MAX_CUDA_RNG_BYTES = 1024   # a CUDA generator's state is its seed and offset: 16 bytes
MAX_DEVICES = 1024
MAX_HISTORY_TEXT = 1000     # a metrics row's text cell (val_split: "val" or "test"); a callback's stop reason


def resume_problem(ckpt: dict) -> Optional[str]:
    """The fields a resume restores, when present: of the right types, RNG states that torch can take, a
    history and a best record the training loop can read. What they are restored into is checked by
    restore_problem, once the model and optimizer are built."""
    for key, (types_, words) in RESUME_FIELDS.items():
        if key in ckpt and (not isinstance(ckpt[key], types_) or isinstance(ckpt[key], bool)):
            return f"{key} must be {words}, got {type(ckpt[key]).__name__}"
    if "rng" in ckpt:
        found = rng_problem(ckpt["rng"], "rng")
        if found:
            return found
    for i, rng in enumerate(ckpt.get("rng_ranks") or []):   # one per process under torchrun
        found = rng_problem(rng, f"rng_ranks[{i}]")
        if found:
            return found
    if len(ckpt.get("stopped_early") or "") > MAX_HISTORY_TEXT:
        return f"stopped_early must be a text of at most {MAX_HISTORY_TEXT} characters"
    return history_problem(ckpt.get("history", [])) or best_problem(ckpt.get("best"), ckpt["epoch"]) or \
        partial_problem(ckpt.get("partial"))


def resumable_problem(ckpt: dict) -> Optional[str]:
    """A checkpoint a resume continues from: it must hold everything a fit's checkpoint holds."""
    missing = [key for key in RESUME_REQUIRED if key not in ckpt]
    if missing:
        return f"it lacks {', '.join(missing)}, which a resume restores"
    return None


def history_problem(history: list) -> Optional[str]:
    """`history`: one row per epoch of metrics.csv, each a mapping of column names to numbers, text or null."""
    for i, row in enumerate(history):
        if not isinstance(row, dict) or not all(isinstance(k, str) for k in row):
            return f"history[{i}] must be a metrics row (a mapping of column names to values)"
        for key, value in row.items():
            if not (value is None or isinstance(value, (int, float)) or
                    (isinstance(value, str) and len(value) <= MAX_HISTORY_TEXT)):
                return f"history[{i}].{key:.40} must be a number, a short text or null, got {type(value).__name__}"
    return None


def best_problem(best, epoch: int) -> Optional[str]:
    """`best`: which validation metric chose best.pt, its value and epoch (none yet: null and null)."""
    if best is None:
        return None
    if set(best) != {"metric", "value", "epoch"}:
        return "best must be a mapping of exactly metric, value and epoch"
    if best["metric"] not in BEST_METRICS:
        return f"best.metric must be one of {', '.join(BEST_METRICS)}, got {best['metric']!r:.40}"
    value, at = best["value"], best["epoch"]
    if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool) or
                              not math.isfinite(value)):
        return f"best.value must be a finite number or null, got {value!r:.40}"
    if at is not None and (not _int(at) or not 0 <= at <= epoch):
        return f"best.epoch must be null or an epoch from 0 to the checkpoint's {epoch}, got {at!r:.40}"
    return None


def partial_problem(part) -> Optional[str]:
    """The optional `partial` field: an epoch stopped at a step boundary (engine/stop.py)."""
    if part is None:
        return None
    if not all(_int(part.get(k)) and part[k] >= 0 for k in ("epoch", "batches", "steps", "world_size")):
        return "partial must give epoch, batches, steps and world_size as non-negative integers"
    sums = part.get("sums")
    if not isinstance(sums, list) or len(sums) != part["world_size"] or not all(
            isinstance(s, dict) and all(isinstance(s.get(k), t) and not isinstance(s.get(k), bool)
                                        for k, t in PARTIAL_SUMS.items()) and s["loss_sum"].numel() == 1
            for s in sums):
        return "partial.sums must be one mapping of loss_sum (a one-value tensor), correct, seen, wait and seconds " \
               "per process"
    rng, ranks = part.get("rng_at_start"), part.get("rng_at_start_ranks", [])
    if not isinstance(rng, dict) or not isinstance(ranks, list):
        return "partial.rng_at_start must be a mapping and partial.rng_at_start_ranks a list"
    found = rng_problem(rng, "partial.rng_at_start") if rng else None   # {}: a stop that kept no state
    for i, state in enumerate(ranks):
        found = found or rng_problem(state, f"partial.rng_at_start_ranks[{i}]")
    return found


def rng_problem(state, name: str) -> Optional[str]:
    """An RNG state as checkpoint.rng_state() makes it: {"torch": the CPU generator's, "cuda": [one per GPU]},
    tried on a generator of its own (the process's RNG is not touched)."""
    if not isinstance(state, dict) or not _bytes(state.get("torch"), CPU_RNG_BYTES):
        return f"{name}.torch must be a uint8 tensor of {CPU_RNG_BYTES} bytes, torch's CPU RNG state " \
               f"(torch.get_rng_state())"
    try:
        torch.Generator().set_state(state["torch"])
    except RuntimeError as e:   # its position out of range: "Invalid mt19937 state"
        return f"{name}.torch is not a valid RNG state ({str(e).strip().splitlines()[0][:80]})"
    cuda = state.get("cuda")
    if cuda is not None and (not isinstance(cuda, list) or len(cuda) > MAX_DEVICES or
                             not all(_bytes(t, at_most=MAX_CUDA_RNG_BYTES) for t in cuda)):
        return f"{name}.cuda must be a list of CUDA RNG states, uint8 tensors (torch.cuda.get_rng_state_all())"
    return None


def _bytes(t, size: Optional[int] = None, at_most: int = 0) -> bool:
    """A one-dimensional uint8 tensor of `size` bytes (or of 1 to `at_most`)."""
    return isinstance(t, torch.Tensor) and t.dtype == torch.uint8 and t.layout == torch.strided and t.dim() == 1 \
        and (t.numel() == size if size is not None else 1 <= t.numel() <= at_most)


# Per parameter, the state entries torch's optimizers read at their next step (a missing one is a KeyError there):
# an entry is absent (a parameter not stepped yet) or holds them all; Adagrad makes its entries when it is built.
# (SGD and Muon read their momentum buffer with .get: it may be absent or null.)
OPTIMIZER_STATE = {"Adam": ("step", "exp_avg", "exp_avg_sq"), "AdamW": ("step", "exp_avg", "exp_avg_sq"),
                   "RMSprop": ("step", "square_avg"), "Adagrad": ("step", "sum"),
                   "Adadelta": ("step", "square_avg", "acc_delta"), "SGD": (), "Muon": ()}
# a group option -> the state entry it adds when set (Adam's amsgrad, RMSprop's centered and momentum)
OPTIONAL_STATE = {"amsgrad": "max_exp_avg_sq", "centered": "grad_avg", "momentum": "momentum_buffer"}
ALWAYS_STATE = ("Adagrad",)
# the scheduler's entries that move as it steps; the others come from the config, which a resume keeps
SCHEDULE_PROGRESS = ("last_epoch", "_step_count", "_last_lr", "_get_lr_called_within_step", "_is_initial",
                     "_schedulers")


def restore_problem(state: dict, step, steps_done: int, schedule: bool) -> Optional[str]:
    """Every field a resume restores, against the live object it is restored into (`step`: engine/loop.py's Step,
    freshly built from the same config), before any is: torch's load_state_dict methods check little, and a fused
    optimizer step over a moment of the wrong shape writes past its buffer (a segmentation fault).
    `schedule`: the scheduler's state is restored whole (the run keeps its length, so the entries that come from
    the config are the live ones); it has stepped `steps_done` times."""
    found = optimizer_problem(state["optimizer"], step.optimizer)
    if not found:   # read whole only when `schedule`, but a record of the run either way
        found = like_problem(state["scheduler"], step.scheduler.state_dict(), "scheduler",
                             same=schedule and _scheduler_config(step.scheduler))
        last = state["scheduler"].get("last_epoch")
        if not found and last is not None and last != steps_done:
            found = f"scheduler.last_epoch is {last}, where the checkpoint's epochs took {steps_done} steps"
    live_scaler = step.scaler.state_dict()
    if not found and live_scaler and state["scaler"]:   # {}: a disabled scaler (no float16), which keeps nothing
        found = like_problem(state["scaler"], live_scaler, "scaler")
    if not found and step.ema is not None and state.get("ema"):
        found = like_problem(state["ema"], step.ema.state_dict(), "ema")
    if not found and step.lookahead is not None and state.get("lookahead"):
        found = like_problem(state["lookahead"], step.lookahead.state_dict(), "lookahead")
    return found


def optimizer_problem(saved, optimizer) -> Optional[str]:
    """optimizer.state_dict() of the checkpoint, against the live `optimizer` over the model's parameters: as many
    groups of as many parameters, hyperparameters of the live kinds, and each parameter's state entries complete,
    with every tensor of its parameter's shape or a single value (the step count)."""
    if not isinstance(saved, dict) or set(saved) != {"state", "param_groups"}:
        return "optimizer must be a mapping of state and param_groups (optimizer.state_dict())"
    groups, live = saved["param_groups"], optimizer.param_groups
    if not isinstance(groups, list) or len(groups) != len(live) or not all(isinstance(g, dict) for g in groups):
        return f"optimizer.param_groups must be {len(live)} mapping(s), as the model's optimizer has"
    params = {}
    for i, (group, mine) in enumerate(zip(groups, live)):
        ids = group.get("params")
        if not isinstance(ids, list) or len(ids) != len(mine["params"]) or not all(_int(p) for p in ids):
            return f"optimizer.param_groups[{i}].params must list {len(mine['params'])} parameter ids, as the " \
                   f"model has"
        params.update(zip(ids, mine["params"]))
        found = _hyperparameters_problem(group, mine, f"optimizer.param_groups[{i}]")
        if found:
            return found
    if len(params) != sum(len(g["params"]) for g in live):
        return "optimizer.param_groups lists a parameter id twice"
    state = saved["state"]
    if not isinstance(state, dict) or not set(state) <= set(params):
        return "optimizer.state must map the parameter ids of optimizer.param_groups to their state"
    name = type(optimizer).__name__
    if name in ALWAYS_STATE and set(state) != set(params):
        return f"optimizer.state must hold every parameter's state ({name} makes them all when it is built)"
    for pid, entry in state.items():
        found = _entry_problem(entry, params[pid], f"optimizer.state[{pid}]", _needed(optimizer, params[pid]))
        if found:
            return found
    return None


def _needed(optimizer, param) -> Optional[tuple]:
    """The state entries torch's optimizer reads for `param` (OPTIMIZER_STATE), or None for a class of the user's."""
    name = type(optimizer).__name__
    if name not in OPTIMIZER_STATE or not type(optimizer).__module__.startswith(("torch.optim", "nettrain.")):
        return None
    group = next(g for g in optimizer.param_groups if any(p is param for p in g["params"]))
    extra = tuple(entry for option, entry in OPTIONAL_STATE.items() if group.get(option) and name != "SGD")
    return OPTIMIZER_STATE[name] + extra


def _entry_problem(entry, param, name: str, needed: Optional[tuple]) -> Optional[str]:
    """One parameter's optimizer state. `needed`: the entries torch's optimizer reads (_needed), each a dense real
    tensor of the parameter's shape, the step count one value; None for a class of the user's, whose entries may
    be tensors of any shape, numbers, text or null."""
    if not isinstance(entry, dict) or not all(isinstance(k, str) for k in entry):
        return f"{name} must be a mapping of names to tensors"
    missing = [k for k in needed or () if k not in entry]
    if entry and missing:
        return f"{name} lacks {', '.join(missing)}, which the optimizer reads at its next step"
    for key, value in entry.items():
        where = f"{name}.{key}"
        tensor = isinstance(value, torch.Tensor)
        if tensor and (value.layout != torch.strided or value.is_complex()):
            return f"{where} must be a dense real tensor"
        if key == "step":   # a one-value tensor, or a number (torch's older optimizers)
            count = value.item() if tensor and value.numel() == 1 and value.dtype != torch.bool else \
                value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
            if count is None or not 0 <= count < math.inf:
                return f"{where} must be one non-negative step count"
        elif tensor and needed is not None and value.shape != param.shape:   # a fused step reads as many values
            return f"{where} has shape {list(value.shape)}, where its parameter has {list(param.shape)}"
        elif not tensor:
            required = key in (needed or ())
            allowed = (value is None and not required) or (needed is None and isinstance(value, (int, float, str)))
            if not allowed:
                return f"{where} must be a tensor{', a number' if needed is None else ''}" \
                       f"{'' if required else ' or null'}, got {_kind(value)}"
    return None


def _hyperparameters_problem(group: dict, live: dict, name: str) -> Optional[str]:
    """A saved param group's options, of the kinds of the live group's (a flag true/false/null; the
    implementation's flags, fused or foreach, are then the live ones: checkpoint.load_optimizer)."""
    for key, mine in live.items():
        if key == "params":
            continue
        if key not in group:
            if isinstance(mine, bool) or mine is None:   # torch gives a flag added since its default
                continue
            return f"{name} has no {key}"
        value = group[key]
        if isinstance(mine, bool) or mine is None:
            ok = isinstance(value, bool) or value is None
        elif isinstance(mine, torch.Tensor):   # a tensor lr (capturable)
            ok = isinstance(value, torch.Tensor) and value.numel() == mine.numel()
        else:
            ok = not like_problem(value, mine, name)
        if not ok:
            return f"{name}.{key} must be {_kind(mine) if not isinstance(mine, (int, float)) else 'a number'}, " \
                   f"like this run's {mine!r:.40}, got {value!r:.40}"
    return None


def _scheduler_config(scheduler) -> bool:
    """Is the scheduler one of torch's (the config's), whose entries other than its progress must be the live
    one's? A class of the user's may keep what it likes."""
    return type(scheduler).__module__.startswith("torch.optim")


def like_problem(saved, live, name: str, same: bool = False) -> Optional[str]:
    """Is `saved` built as `live` is (the state_dict of the object it is loaded into)? The same keys (a private one,
    _name, may be absent: torch adds them across versions), tensors of the same shape and kind, numbers of the same
    kind (finite; not negative where the live one is not), lists of the same length. `same`: the entries other
    than SCHEDULE_PROGRESS must equal the live ones."""
    if isinstance(live, dict):
        if not isinstance(saved, dict):
            return f"{name} must be a mapping, got {type(saved).__name__}"
        extra = [k for k in saved if k not in live]
        missing = [k for k in live if k not in saved and not str(k).startswith("_")]
        if extra or missing:
            return f"{name} has " + (f"unknown entries {', '.join(map(repr, extra[:3]))}" if extra else
                                     f"no {', '.join(map(str, missing[:3]))}")
        for key, value in saved.items():
            if same and key not in SCHEDULE_PROGRESS and not _equal(value, live[key]):
                return f"{name}.{key} is {value!r:.40}, where this run's config makes {live[key]!r:.40}"
            found = like_problem(value, live[key], f"{name}.{key}", same and key == "_schedulers")
            if found:
                return found
        return None
    if isinstance(live, (list, tuple)):
        if not isinstance(saved, (list, tuple)) or len(saved) != len(live):
            return f"{name} must be a list of {len(live)}, got {_kind(saved)}"
        return next(filter(None, (like_problem(a, b, f"{name}[{i}]", same) for i, (a, b) in
                                  enumerate(zip(saved, live)))), None)
    return _value_problem(saved, live, name)


def _value_problem(saved, live, name: str) -> Optional[str]:
    if isinstance(live, torch.Tensor):
        if not isinstance(saved, torch.Tensor) or saved.layout != torch.strided or saved.shape != live.shape or \
                saved.is_floating_point() != live.is_floating_point() or saved.is_complex():
            return f"{name} must be a tensor of shape {list(live.shape)} like the model's, got {_kind(saved)}"
        return None
    if isinstance(live, bool) or live is None or isinstance(live, str):
        return None if type(saved) is type(live) else f"{name} must be {_kind(live)}, got {_kind(saved)}"
    if isinstance(live, (int, float)):
        number = isinstance(saved, (int, float)) and not isinstance(saved, bool) and math.isfinite(saved) and \
            (isinstance(saved, int) or not isinstance(live, int))
        if not number or (live >= 0 > saved):
            return f"{name} must be a finite{' non-negative' if live >= 0 else ''} " \
                   f"{'integer' if isinstance(live, int) else 'number'}, got {saved!r:.40}"
    return None


def _equal(a, b) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape and \
            bool((a == b).all())
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b or (isinstance(a, (int, float)) and isinstance(b, (int, float)) and
                                            not isinstance(a, bool) and not isinstance(b, bool) and a == b)


def _kind(v) -> str:
    if isinstance(v, torch.Tensor):
        return f"a tensor of shape {list(v.shape)}"
    return {bool: "true or false", type(None): "null", str: "a string"}.get(type(v), type(v).__name__)


def data_problem(d, kinds: dict) -> Optional[str]:
    """The `data` field: exactly DataInfo's keys, with types and sizes that fit together."""
    if not isinstance(d, dict):
        return f"data must be a mapping with keys {', '.join(DATA_KEYS)}, got {type(d).__name__}"
    if not set(DATA_KEYS) <= set(d) <= set(DATA_KEYS + OPTIONAL_DATA_KEYS):
        extra = sorted(map(str, set(d) - set(DATA_KEYS + OPTIONAL_DATA_KEYS)))
        missing = sorted(set(DATA_KEYS) - set(d))
        return "data must have exactly the keys " + ", ".join(DATA_KEYS) + \
            (f"; it has {', '.join(extra)}" if extra else "") + (f"; it lacks {', '.join(missing)}" if missing else "")
    kind, task = d["kind"], d["task"]
    if not isinstance(kind, str) or kind not in kinds:
        *others, last = kinds
        return f"data.kind must be {', '.join(others)} or {last}, got {kind!r}"
    if task not in ("classification", "regression", "multilabel"):
        return f"data.task must be classification, regression or multilabel, got {task!r}"
    own = kinds[kind]
    return _kind_fields_problem(d, own) or _shape_problem(d["shape"], own) or \
        _outputs_problem(task, d["outputs"], d["classes"]) or _preprocessing_problem(d, own)


def _kind_fields_problem(d: dict, own) -> Optional[str]:
    """The fields only some kinds record (dtype, collate, vocab): present for those, null for the others."""
    dtype, collate, shape = d.get("dtype"), d.get("collate"), d["shape"]
    if dtype is not None and ("dtype" not in own.record_fields or dtype not in INTEGER_DTYPES):
        return f"data.dtype must be null, or for vectors one of {', '.join(INTEGER_DTYPES)}, got {dtype!r:.40}"
    if collate is not None and ("collate" not in own.record_fields or not isinstance(collate, str) or
                                ":" not in collate):
        return f"data.collate must be null, or for custom data a 'module:function' string, got {collate!r:.80}"
    vocab = d.get("vocab")
    if ("vocab" in own.record_fields) != (vocab is not None):
        return f"data.vocab must be a list of tokens for text, and null otherwise, got {type(vocab).__name__}"
    if vocab is not None and (not isinstance(vocab, list) or not all(isinstance(w, str) for w in vocab) or
                              not isinstance(shape, list) or shape != [len(vocab)]):
        return f"data.vocab must be a list of token strings, as many as data.shape {shape!r:.40} says"
    return None


def _shape_problem(shape, own) -> Optional[str]:
    """data.shape: none for custom data, 1 to 3 positive sizes (3 for images) of a bounded input otherwise."""
    if not own.fixed_shape and shape != []:   # batches of any shape: none is recorded
        return f"data.shape of custom data must be [], got {shape!r:.80}"
    if own.fixed_shape and (not isinstance(shape, list) or not 1 <= len(shape) <= 3 or
                            not all(_int(n) and n > 0 for n in shape)):
        return f"data.shape must be a list of 1 to 3 positive integers, got {shape!r}"
    if own.images and len(shape) != 3:
        return f"data.shape of images must be [channels, height, width], got {shape!r}"
    if math.prod(shape) > MAX_INPUT_VALUES:   # checked before anything of this size is allocated
        return f"data.shape {shape} makes inputs of {math.prod(shape):,} values, more than the limit of " \
               f"{MAX_INPUT_VALUES:,}"
    return None


def _outputs_problem(task: str, outputs, classes) -> Optional[str]:
    """data.outputs within bounds and, for classification, one class name per output."""
    if not _int(outputs) or not 1 <= outputs <= MAX_OUTPUTS:
        return f"data.outputs must be an integer from 1 to {MAX_OUTPUTS:,}, got {outputs!r}"
    if task in ("classification", "multilabel"):   # multi-label: one name a label
        if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
            return f"data.classes must be a list of class names (strings), got {type(classes).__name__}"
        if len(classes) != outputs:
            return f"data.classes names {len(classes)} classes but the model has {outputs} outputs"
    elif classes is not None:
        return f"data.classes must be null for regression, got {type(classes).__name__}"
    return None


def _preprocessing_problem(d: dict, own) -> Optional[str]:
    """data.mean/std (one per channel for images), a table's preprocessing and data.image_size."""
    channels = d["shape"][0] if own.images else None
    for key in ("mean", "std"):
        if not _numbers(d[key]):
            return f"data.{key} must be a list of finite numbers, got {d[key]!r:.80}"
        if channels is not None and len(d[key]) != channels:
            return f"data.{key} must have one value per channel ({channels}), got {len(d[key])}"
    if own.images and not all(s > 0 for s in d["std"]):
        return f"data.std must be positive, got {d['std']}"
    table = "table" in own.record_fields
    if table or d.get("table") is not None:   # a table's preprocessing, checked by its own module
        from ..data.table import problem as table_problem
        found = table_problem(d.get("table"), d) if table else "data.table must be null unless kind is table"
        if found:
            return found
    size = d["image_size"]
    if size is not None and (not _int(size) or not 1 <= size <= MAX_IMAGE_SIZE):
        return f"data.image_size must be null or an integer from 1 to {MAX_IMAGE_SIZE}, got {size!r}"
    return None


def code_problem(code) -> Optional[str]:
    """The optional `code` field: kind -> {spec, file, name, sha256}, all strings (trust.py reads it)."""
    if code is None:
        return None
    if not isinstance(code, dict) or not all(
            isinstance(k, str) and isinstance(e, dict) and all(isinstance(e.get(f), str) for f in CODE_KEYS)
            for k, e in code.items()):
        return "code must map kinds to {spec, file, name, sha256} strings"
    return None
