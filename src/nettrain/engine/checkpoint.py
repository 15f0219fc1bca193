"""Checkpoints: one explicit dict of tensors and plain Python types, written atomically.

A checkpoint loads with `torch.load(path, weights_only=True)` anywhere, nettrain installed or not:

    {"format_version": 1, "model": state_dict (no "module." / "_orig_mod." prefixes), "optimizer": ...,
     "scheduler": ..., "scaler": ..., "ema": state_dict or None, "lookahead": {step_count, slow} or None,
     "epoch": completed epochs, "rng": {"torch": ByteTensor, "cuda": [...]},
     "rng_ranks": [each process's "rng" under torchrun; [] alone], "config": {...},
     "data": {classes, shape, mean, std, ...},
     "history": [metrics rows], "best": {"metric", "value", "epoch"}, "nettrain_version": "..."}

The best weights are also written as `.safetensors` (weights only, with the classes in its metadata).
"""
from __future__ import annotations

import errno
import json
import os
import pickle
import re
from pathlib import Path

import torch

from ..files import write_file
from ..files import LIMITS, FileError, open_read
from ..errors import CheckpointError
from . import checkfields as fields

# torch's weights_only refusal names the global it would have had to import: "GLOBAL pkg.mod.Name was not ..."
_GLOBAL = re.compile(r"GLOBAL ([\w.]+) was not")
_DETAIL = re.compile(r"WeightsUnpickler error:\s*(\S[^\n]*)")

FORMAT_VERSION = 1
REQUIRED = ("format_version", "model", "config", "data", "epoch")


# the wrappers that spread one model over several devices: what they hold (`.module`) is the model
PARALLEL = (torch.nn.DataParallel, torch.nn.parallel.DistributedDataParallel)


def unwrap(model: torch.nn.Module, keep_input: bool = False) -> torch.nn.Module:
    """The user's module inside DataParallel or DDP (`.module`), torch.compile (`._orig_mod`) and, unless
    `keep_input`, nettrain's flattening of its input (models/flat.py: `.inner`): what checkpoints hold."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif getattr(type(model), "flattens_input", False) and not keep_input:
            model = model.inner
        elif isinstance(model, PARALLEL):
            model = model.module
        else:
            return model


def without_parallel(model: torch.nn.Module) -> torch.nn.Module:
    """The model inside the DataParallel / DDP wrappers a user's script put around it (`module.`-free keys, the
    class the run records)."""
    while isinstance(model, PARALLEL):
        model = model.module
    return model


def clean_state_dict(model: torch.nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in unwrap(model).state_dict().items()}


def _atomic(path: Path, write):
    """A reader, or a kill -9, sees the old file or the new one, never half of one; a full disk or a read-only
    folder is one line, and the temporary is removed (files.write_file, which never writes through a link)."""
    write_file(path, write, sync=True, root=Path(path).parent)


def _torch_save(checkpoint: dict, f, path: Path):
    try:
        torch.save(checkpoint, f)
    except RuntimeError as e:   # torch's writer reports a failed write(2) as "unexpected pos ..." without errno
        if "unexpected pos" not in str(e) and "failed writing" not in str(e):
            raise
        raise OSError(errno.ENOSPC if _nearly_full(path) else errno.EIO, str(e).splitlines()[0]) from None


def _nearly_full(path: Path) -> bool:
    try:
        st = os.statvfs(path.parent)
        return st.f_bavail * st.f_frsize < 64 * 2**20
    except OSError:
        return False


def save(path, checkpoint: dict):
    checkpoint = {"format_version": FORMAT_VERSION, **checkpoint}
    _atomic(path, lambda f: _torch_save(checkpoint, f, Path(path)))


def saved_epoch(path) -> "int | None":
    """The epoch a checkpoint file really holds (None if there is none or it cannot be read), read without
    loading its tensors' data (they are mapped to the meta device): what a message about it may say."""
    try:
        with open_read(path, LIMITS["checkpoint"], "checkpoint") as f:
            return int(torch.load(f, map_location="meta", weights_only=True)["epoch"])
    except Exception:
        return None


def save_safetensors(path, state_dict: dict, metadata: dict):
    from safetensors.torch import save
    tensors = {k: v.contiguous() for k, v in state_dict.items()}
    meta = {k: json.dumps(v) for k, v in metadata.items()}
    _atomic(path, lambda f: f.write(save(tensors, metadata=meta)))


def _without_advice(text: str) -> str:
    """torch's words, unless they advise weights_only=False, which would run the file's code."""
    return "" if "weights_only" in text else text


def load(path, *, kinds: dict) -> dict:
    """The checkpoint at `path` (a file, or a run directory's best.pt or last.pt), every field checked
    (checkfields.py) against `kinds`, the input kinds its data may be of (kinds.KINDS)."""
    path = Path(path)
    if path.is_dir():
        for name in ("best.pt", "last.pt"):
            if (path / name).exists():
                path = path / name
                break
        else:
            raise CheckpointError(f"{path} holds no best.pt or last.pt; give a run directory made by nettrain fit "
                                  f"or a checkpoint file")
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist; give a run directory or a .pt file")
    try:
        with open_read(path, LIMITS["checkpoint"], "checkpoint") as f:
            ckpt = torch.load(f, map_location="cpu", weights_only=True)
    except FileError:   # a FIFO, a device, a file past the limit: files.py's line as it is
        raise
    except pickle.UnpicklingError as e:   # never torch's advice to pass weights_only=False: that runs the file
        found = _GLOBAL.search(str(e))
        if found:   # Python objects, which unpickling would import and call
            raise CheckpointError(f"{path} holds Python objects (such as {found.group(1)}), which loading would run "
                                  f"as code, and nettrain does not run a file's code; give a checkpoint of tensors "
                                  f"written by nettrain fit") from None
        detail = _DETAIL.search(str(e))
        detail = _without_advice(detail.group(1)[:120]) if detail else ""
        raise CheckpointError(f"{path} is not a readable nettrain checkpoint (its pickle is damaged or not torch's"
                              f"{': ' + detail if detail else ''}); give a .pt file written by nettrain fit") from None
    except Exception as e:   # not a torch file, truncated, a directory, unreadable: what torch said, one line
        first = _without_advice(str(e).strip().splitlines()[0] if str(e).strip() else "") or type(e).__name__
        raise CheckpointError(f"{path} is not a readable nettrain checkpoint ({first[:200]}); "
                              f"give a .pt file written by nettrain fit") from None
    if not isinstance(ckpt, dict) or any(k not in ckpt for k in REQUIRED):
        missing = [k for k in REQUIRED if not isinstance(ckpt, dict) or k not in ckpt]
        raise CheckpointError(f"{path} is not a nettrain checkpoint (missing {', '.join(missing)}); "
                              f"give a .pt file written by nettrain fit")
    problem = fields.problem(ckpt, kinds)
    if problem:
        raise CheckpointError(f"{path} is not a valid nettrain checkpoint: {problem}; give a .pt file written by "
                              f"nettrain fit")
    if ckpt["format_version"] > FORMAT_VERSION:
        raise CheckpointError(f"{path} has format version {ckpt['format_version']}, newer than this nettrain "
                              f"reads ({FORMAT_VERSION}); upgrade nettrain")
    ckpt["path"] = str(path)
    return ckpt


def load_weights(model: torch.nn.Module, state_dict: dict, where: str, model_name: str):
    """load_state_dict, with a one-line error when the checkpoint is of another model."""
    try:
        unwrap(model).load_state_dict(state_dict)
    except RuntimeError as e:
        msg = str(e)
        detail = "missing/unexpected keys" if "key" in msg else "shape mismatch"
        raise CheckpointError(f"{where} holds weights of another model than {model_name!r} ({detail}); "
                              f"use the model and data it was trained with") from None


def load_resumable(path, *, kinds: dict) -> dict:
    """load, for a resume: the checkpoint must hold everything a fit's checkpoint holds, not weights alone."""
    ckpt = load(path, kinds=kinds)
    problem = fields.resumable_problem(ckpt)
    if problem:
        raise CheckpointError(f"{ckpt['path']} cannot be resumed: {problem}; resume from the last.pt nettrain fit "
                              f"wrote, or start a new run")
    return ckpt


def check_restorable(state: dict, step, steps_done: int, schedule: bool):
    """Every field a resume restores checked against what it is restored into (checkfields.restore_problem),
    before any is: one line naming the field."""
    problem = fields.restore_problem(state, step, steps_done, schedule)
    if problem:
        raise CheckpointError(f"{state['path']} does not fit the run it resumes: {problem}; resume from the run's "
                              f"own last.pt, or start a new run")


# the optimizer's implementation choices (one fused kernel, the multi-tensor path...): this process's, not the
# checkpoint's: they compute the same values, and a flag the device cannot take would fail at the first step
IMPLEMENTATION_FLAGS = ("fused", "foreach", "capturable", "differentiable")


def load_optimizer(optimizer, saved: dict):
    """optimizer.load_state_dict(saved), keeping this process's implementation flags."""
    flags = [{k: g[k] for k in IMPLEMENTATION_FLAGS if k in g} for g in optimizer.param_groups]
    optimizer.load_state_dict(saved)
    for group, mine in zip(optimizer.param_groups, flags):
        group.update(mine)


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict, name: str = "rng"):
    """Put back an RNG state (rng_state()), checked first (checkfields.rng_problem): a state of the wrong size is a
    CheckpointError naming `name`, the field it came from, not torch's traceback. A checkpoint written on more GPUs
    than there are now restores those there are."""
    problem = fields.rng_problem(state, name)
    if problem:
        raise CheckpointError(f"the checkpoint's {problem}; resume from the last.pt nettrain fit wrote, or start a "
                              f"new run")
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        for device, cuda in enumerate(state["cuda"][:torch.cuda.device_count()]):
            try:
                torch.cuda.set_rng_state(cuda, device)
            except RuntimeError as e:   # a state of another size, or an offset CUDA's generator refuses
                raise CheckpointError(f"the checkpoint's {name}.cuda[{device}] is not a CUDA RNG state "
                                      f"({str(e).strip().splitlines()[0][:80]}); resume from the last.pt nettrain "
                                      f"fit wrote, or start a new run") from None
