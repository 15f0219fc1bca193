"""The run's report, built from its run directory alone: figures (RUN/figures/*.png) and RUN/report.html.

    nettrain report RUN                  # (re)build it for a finished or stopped run
    report.build(path) -> RUN/report.html

A fit writes it too: at epoch ends while it trains (live.py: a page that reloads itself, within a time budget)
and in full when it ends. Nothing here imports training code: the report reads config.yaml, environment.json,
metrics.csv, confusion_matrix.csv, events.jsonl and what the fit recorded of its model (predictions.npz,
model_summary.txt: nettrain/evidence.py), so any run directory, copied from anywhere, can be reported on.
"""
from __future__ import annotations

import time
from pathlib import Path

from ..files import make_dir, write_file, write_text
from ..runs import RUN_FILES, RunDir
from .html import page
from .read import Record, check_run_dir, read

REPORT, FIGURES = RUN_FILES["report"], RUN_FILES["figures"]

__all__ = ["REPORT", "FIGURES", "build", "draw", "write", "status_of"]


def status_of(rec: Record) -> str:
    """Where a run that is not training stands, read from its records."""
    done = len(rec.metrics)
    epochs = rec.section("train").get("epochs")
    if epochs is not None and done < epochs:
        return f"stopped after epoch {done} of {epochs}; nettrain fit --resume {rec.path} continues it"
    return f"finished: {done} epoch{'s' if done != 1 else ''} (report written {time.strftime('%Y-%m-%d %H:%M:%S')})"


def write(run: RunDir, *, live: bool = False, cheap: bool = False, status: str = None, drawn: list = None) -> Path:
    """Draw the figures and write report.html into `run`, whose lock the caller holds. `cheap`: only the figures
    drawn from metrics.csv (live updates); `drawn`: figures drawn before, shown again without drawing (a live page
    between drawings; [] for none); `live`: the page reloads itself."""
    rec = read(run.path)
    if drawn is None:
        drawn = draw(run, rec, cheap)
    path = run.claim(run.path / REPORT)
    write_text(path, page(rec, drawn, status or status_of(rec), live), root=run.path)
    return path


def draw(run: RunDir, rec: Record, cheap: bool = False) -> list:
    """The figures of `rec` (only those from metrics.csv when `cheap`) written into the run's figures folder:
    [(file name, caption, PNG bytes)]."""
    from .figures import render   # matplotlib: imported when a report is first drawn, not with nettrain
    drawn = render(rec, cheap_only=cheap)
    folder = run.path / FIGURES
    make_dir(folder, root=run.path)   # a real folder of the run: `figures -> ~/Pictures` is refused, not written
    for name, _, data in drawn:
        write_file(run.claim(folder / name), lambda f, data=data: f.write(data), root=run.path)
    return drawn


def build(path) -> Path:
    """`nettrain report RUN`: the full report of a run directory, written under its lock (a run still training
    is refused in one line, naming the process: its own live report is being written)."""
    run = RunDir(check_run_dir(path))
    run.lock()
    try:
        return write(run)
    finally:
        run.unlock()
