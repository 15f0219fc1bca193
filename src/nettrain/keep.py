"""Checkpoints kept per epoch: `--save-every N` writes epoch_003.pt, epoch_006.pt, ... (each a whole checkpoint, as
last.pt: `nettrain.load`, `evaluate`, `predict` and `export` take it), and `--keep-best K` keeps, of those, the K
best by the run's metric (the one that chooses best.pt; without a validation split, the K latest).

A per-epoch checkpoint is never overwritten: it is written before best.pt and last.pt, so a run killed between the
writes resumes from the epoch before and trains that epoch again; the file the first attempt kept stays as it was.
Every file is claimed in the run's record first (runs.py), so `--overwrite` deletes them, and one that falls out of
the best K is deleted inside the run only (files.remove).
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

from . import files
from .engine import checkpoint as ckpt_io
from .runs import EPOCH_CHECKPOINT, RunDir

EPOCH_NAME = re.compile(r"epoch_(\d{3,})\.pt")


def every(run_cfg) -> int:
    """Epochs between kept checkpoints: --save-every, or each epoch when only --keep-best is given; 0 for none."""
    return run_cfg.save_every or (1 if run_cfg.keep_best else 0)


def epoch_path(run: RunDir, epoch: int) -> Path:
    return run.path / EPOCH_CHECKPOINT.format(epoch=epoch)


def save_epoch(run: RunDir, state: dict, run_cfg, history: list, best: dict, higher_is_better: bool):
    """Keep `state` (epoch state["epoch"]'s checkpoint) as its own file when the epoch is due, then drop the kept
    epochs beyond the best K. `history`: the run's metrics rows so far (MetricsRow), `best`: the checkpoint's
    {"metric", "value", "epoch"}."""
    n, epoch = every(run_cfg), state["epoch"]
    if not run.writes or not n or epoch % n:
        return
    path = epoch_path(run, epoch)
    if path.exists() or path.is_symlink():
        print(f"nettrain: {path.name} is left as it was: a per-epoch checkpoint is never overwritten (this epoch "
              f"ran again after a stop)", file=sys.stderr)
    else:
        ckpt_io.save(run.claim(path), state)
    if run_cfg.keep_best:
        _drop_beyond_best(run, run_cfg.keep_best, history, best["metric"], higher_is_better)


def _drop_beyond_best(run: RunDir, k: int, history: list, metric: str, higher_is_better: bool):
    """Delete the recorded per-epoch checkpoints outside the best `k` by `metric`: between equals the earlier epoch
    (the one best.pt holds); an epoch without the metric ranks below those with it, and of those the later is kept
    (a run without a validation split keeps its K latest)."""
    rows = {row.epoch: row for row in history}
    kept = sorted(int(m.group(1)) for name in run.recorded() or ()
                  if (m := EPOCH_NAME.fullmatch(name)) and epoch_path(run, int(m.group(1))).exists())

    def rank(epoch: int) -> tuple:
        value = getattr(rows.get(epoch), metric, None)   # None for "last epoch", which no row holds
        if value is None:
            return False, 0.0, epoch
        return True, value if higher_is_better else -value, -epoch   # between equals, best.pt's: the first
    for epoch in sorted(kept, key=rank, reverse=True)[k:]:
        files.remove(epoch_path(run, epoch), run.path)
