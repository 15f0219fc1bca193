"""What a resume may change, and how a run is picked up again.

A resume continues the run its checkpoint describes. It may change only:

- `train.epochs`: the schedule's length (the lr schedule is refitted to the new end; the run's config.yaml then
  records the new length, once an epoch of it is safely kept);
- keys that do not change the numbers the run computes, only where and how it runs or what it shows:
  `run.progress`, `run.tensorboard`, `run.dir`, `run.overwrite`, `data.dir` (the same data elsewhere),
  `data.download`, `train.device` and `train.threads` (the same arithmetic; another thread count or device is not
  bit for bit the same, which a resume says in a warning), `dist.timeout` (the hang watchdog's).

Anything else (the lr, the batch size, the optimizer, the model, the data...) would make a different run under the
old one's name, or fail on the old optimizer's state: it is refused in one line naming the keys, with the way to
make that run (a new run from the old one's config.yaml with the change).
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Optional

import torch

from .errors import ConfigError, DataError

RESUMABLE = {"train.epochs", "run.progress", "run.tensorboard", "run.dir", "run.overwrite", "data.dir",
             "data.download", "train.device", "train.threads", "dist.timeout", "run.callbacks",
             "train.metrics", "run.save_every", "run.keep_best"}
# kept in config.yaml after a resume (the others belong to this invocation, not to the run)
RECORDED = {"train.epochs", "run.save_every", "run.keep_best"}


def flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in d.items():
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def changes(saved: dict, now: dict) -> dict:
    """{dotted key: (saved value, new value)} for every key whose value differs between two config dicts."""
    a, b = flatten(saved), flatten(now)
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


# a config's user code, by its key: the flag that gives it anew
CODE_FLAGS = {"model.name": ("model", "--model"), "train.loss": ("loss", "--loss"),
              "optim.name": ("optimizer", "--optimizer"), "sched.name": ("scheduler", "--scheduler")}


def check_changes(run_path, changed: dict, saved: Optional[dict] = None):
    """Refuse, in one line, a resume that changes what only a new run may change. `saved`: the run's config, whose
    user code the new run imports only as a resume would (trust.py): the advice says how to give it."""
    refused = {k: v for k, v in changed.items() if k not in RESUMABLE}
    if refused:
        what = ", ".join(f"{k} ({old!r} -> {new!r})" for k, (old, new) in refused.items())
        flags = " ".join(f"--{k} {new}" for k, (_, new) in refused.items())
        raise ConfigError(f"--resume continues {run_path} as it was started and cannot change {what}; start a new "
                          f"run with the change: nettrain fit --config {run_path}/config.yaml {flags} --run-dir NEW"
                          f"{_code_advice(saved or {}, refused)} (a resume may change only "
                          f"{', '.join(sorted(RESUMABLE))})")


def _code_advice(saved: dict, refused: dict) -> str:
    """How the new run gets the run's own user code that the change leaves in place: a run folder's config is its
    data, so that code runs only when a fit on this machine ran it, or when given anew or trusted."""
    from .trust import is_user_spec
    flat = flatten(saved)
    named = [(kind, flag, flat[key]) for key, (kind, flag) in CODE_FLAGS.items()
             if key not in refused and isinstance(flat.get(key), str) and is_user_spec(kind, flat[key])]
    if not named:
        return ""
    return (f"; its {', '.join(f'{kind} {spec!r}' for kind, _, spec in named)} runs there only if a fit on this "
            f"machine ran it: otherwise give your own ({' '.join(f'{flag} SPEC' for _, flag, _ in named)}), or add "
            f"--trust-code if you trust where the run came from")


def data_fingerprint(train) -> dict:
    """The training split's size and a hash of 64 examples spread over it (inputs and targets): recorded in every
    checkpoint, so a resume pointed at other data (a moved `data.dir`, other arrays) is refused by name."""
    if hasattr(train, "fingerprint"):   # an input kind's own (data/text.py)
        return train.fingerprint()
    if not hasattr(train, "x"):   # a DataLoader over files: its size is what is known without reading them
        return {"size": len(train)}
    n = len(train.y)
    index = torch.linspace(0, n - 1, min(n, 64)).long() if n else torch.zeros(0, dtype=torch.long)
    h = hashlib.sha256()
    for t in (train.x[index], train.y[index]):
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return {"size": n, "sample": h.hexdigest()[:16]}


def check_data(run_path, saved: dict, now: dict):
    if saved and saved != now:
        raise DataError(f"{run_path} was trained on other data ({saved.get('size')} training examples, sample hash "
                        f"{saved.get('sample', '-')}) than it would resume on ({now.get('size')}, "
                        f"{now.get('sample', '-')}); point --data-dir at the data it was trained on, or start a new run")


# What the finish of a run writes after its last epoch's checkpoint, in this order (training.py): the test's record,
# then what the report needs of the model, then the report (the live page of an earlier epoch is replaced).
TEST_RECORD, MODEL_SUMMARY, REPORT = "test_metrics.json", "model_summary.txt", "report.html"


def unfinished(run_dir, test: bool, report: bool) -> list:
    """What the finish of a run that has trained all its epochs did not write, by name ([]: the run is finished).
    A kill or a full disk after the last checkpoint leaves the test's record missing, or the report missing or older
    than what the finish wrote before it (a live page of an earlier epoch). `test`: the data has a test split;
    `report`: the run draws a report."""
    path = Path(run_dir)
    missing = [] if not test or (path / TEST_RECORD).is_file() else [TEST_RECORD]
    if report:
        page = _modified(path / REPORT)
        before = [m for m in (_modified(path / TEST_RECORD), _modified(path / MODEL_SUMMARY)) if m is not None]
        if page is None or _modified(path / MODEL_SUMMARY) is None or any(m > page for m in before):
            missing.append(REPORT)
    return missing


def _modified(path: Path):
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


def trained_processes(state: dict) -> int:
    """How many processes trained the checkpoint `state`: one RNG state each under torchrun (rng_ranks), none
    alone."""
    ranks = state.get("rng_ranks")
    return len(ranks) if isinstance(ranks, list) and ranks else 1
