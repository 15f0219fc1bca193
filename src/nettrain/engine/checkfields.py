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
    return isinstance(v, list) and all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
                                       for x in v)


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
                 "train_model": ((dict,), "a state_dict"), "partial": ((dict,), "a mapping"),
                 "rng_ranks": ((list,), "a list")}
# a stop's epoch in progress (engine/stop.py): each rank's sums of its batches so far
PARTIAL_SUMS = {"loss_sum": torch.Tensor, "correct": int, "seen": int, "wait": float, "seconds": float}


def resume_problem(ckpt: dict) -> Optional[str]:
    """The fields a resume restores: of the right container types (their contents are torch's to check)."""
    for key, (types_, words) in RESUME_FIELDS.items():
        if key in ckpt and not isinstance(ckpt[key], types_):
            return f"{key} must be {words}, got {type(ckpt[key]).__name__}"
    if ckpt.get("rng") is not None and not _rng(ckpt["rng"]):
        return "rng.torch must be a uint8 tensor (torch.get_rng_state())"
    for i, rng in enumerate(ckpt.get("rng_ranks") or []):   # one per process under torchrun
        if not _rng(rng):
            return f"rng_ranks[{i}] must be a mapping with a uint8 tensor .torch (torch.get_rng_state())"
    if "history" in ckpt and not all(isinstance(row, dict) for row in ckpt["history"]):
        return "history must be a list of metric rows (mappings)"
    return partial_problem(ckpt.get("partial"))


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
    if not isinstance(rng, dict) or (rng and not _rng(rng)) or not isinstance(ranks, list) or \
            not all(_rng(r) for r in ranks):
        return "partial.rng_at_start (and each of partial.rng_at_start_ranks) must be a mapping with a uint8 " \
               "tensor .torch"
    return None


def _rng(state) -> bool:
    """An RNG state as checkpoint.rng_state() makes it: {"torch": a uint8 tensor, ...}."""
    return isinstance(state, dict) and isinstance(state.get("torch"), torch.Tensor) and \
        state["torch"].dtype == torch.uint8


def data_problem(d, kinds: dict) -> Optional[str]:
    """The `data` field: exactly DataInfo's keys, with types and sizes that fit together."""
    if not isinstance(d, dict):
        return f"data must be a mapping with keys {', '.join(DATA_KEYS)}, got {type(d).__name__}"
    if not set(DATA_KEYS) <= set(d) <= set(DATA_KEYS + OPTIONAL_DATA_KEYS):
        extra = sorted(map(str, set(d) - set(DATA_KEYS + OPTIONAL_DATA_KEYS)))
        missing = sorted(set(DATA_KEYS) - set(d))
        return "data must have exactly the keys " + ", ".join(DATA_KEYS) + \
            (f"; it has {', '.join(extra)}" if extra else "") + (f"; it lacks {', '.join(missing)}" if missing else "")
    kind, task, shape, outputs, classes = d["kind"], d["task"], d["shape"], d["outputs"], d["classes"]
    if not isinstance(kind, str) or kind not in kinds:
        *others, last = kinds
        return f"data.kind must be {', '.join(others)} or {last}, got {kind!r}"
    if task not in ("classification", "regression"):
        return f"data.task must be classification or regression, got {task!r}"
    dtype, collate = d.get("dtype"), d.get("collate")
    own = kinds[kind]
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
    if not _int(outputs) or not 1 <= outputs <= MAX_OUTPUTS:
        return f"data.outputs must be an integer from 1 to {MAX_OUTPUTS:,}, got {outputs!r}"
    if task == "classification":
        if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
            return f"data.classes must be a list of class names (strings), got {type(classes).__name__}"
        if len(classes) != outputs:
            return f"data.classes names {len(classes)} classes but the model has {outputs} outputs"
    elif classes is not None:
        return f"data.classes must be null for regression, got {type(classes).__name__}"
    channels = shape[0] if own.images else None
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
