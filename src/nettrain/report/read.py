"""Read what a run directory holds, for the report: every file is optional and read as data.

A run directory may come from elsewhere, be half-written by a run that stopped, or predate a file: each file that
is missing or unreadable is left out and named in `Record.notes`, so the report shows what there is. Nothing is
executed or unpickled (predictions.npz is read with allow_pickle=False). A file that is no regular file (a FIFO, a
device) or is past its size limit was not left by a run but planted: one line (files.py), not a note.
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import yaml

from ..errors import NettrainError
from ..files import LIMITS, open_read, read_text
from ..metrics_row import unit_words
from ..runs import MANIFEST, RUN_FILES, from_spreadsheet_cell, read_metrics



@dataclass
class Record:
    """One run directory's contents, as plain data."""
    path: Path
    config_text: str = ""
    config: dict = field(default_factory=dict)
    environment: dict = field(default_factory=dict)
    metrics: list = field(default_factory=list)        # one MetricsRow per epoch (None for empty cells)
    classes: Optional[list] = None                     # of the confusion matrix
    confusion: Optional[np.ndarray] = None             # [true, predicted] counts on the test split
    events: list = field(default_factory=list)         # events.jsonl: one dict per resume
    predictions: dict = field(default_factory=dict)    # predictions.npz's arrays (see nettrain/evidence.py)
    summary: str = ""                                  # model_summary.txt
    test: dict = field(default_factory=dict)           # test_metrics.json: the test split's loss and metrics
    notes: list = field(default_factory=list)          # the files that could not be read, and why

    @property
    def held_out(self) -> str:
        """What the per-epoch evaluation was: "validation", or "test" when the run had no validation split (its
        metrics.csv says so in val_split; the test split chose nothing)."""
        return "test" if any(r.val_split == "test" for r in self.metrics) else "validation"

    def section(self, name: str) -> dict:
        value = self.config.get(name)
        return value if isinstance(value, dict) else {}

    @property
    def examples(self) -> str:
        """What the run's speed counts, in words: "images", "texts", "rows" or "examples" (environment.json's
        speed_unit, the data kind's; a run made before it was recorded: "images")."""
        unit = self.environment.get("speed_unit")
        if not isinstance(unit, str):   # a run made before it was recorded
            return "images"
        return unit_words(unit)   # the epoch line's short forms, in words

    @property
    def classification(self) -> bool:
        return self.confusion is not None or self.predictions.get("task") == "classification"


def check_run_dir(path) -> Path:
    """`path` if it is a nettrain run directory, else one line naming what it is and what to give."""
    path = Path(path)
    if not path.exists():
        raise NettrainError(f"{path} does not exist; give the directory of a run (runs/<run>) written by "
                            f"nettrain fit")
    if not path.is_dir():
        raise NettrainError(f"{path} is a file, not a run directory; give the directory of a run (runs/<run>) "
                            f"written by nettrain fit")
    if not (path / MANIFEST).is_file():
        raise NettrainError(f"{path} is not a nettrain run directory (it has no {MANIFEST}, the record nettrain fit "
                            f"keeps there); give the directory of a run written by nettrain fit")
    return path


def read(path) -> Record:
    """Everything the run directory holds that the report shows; what is missing is left out."""
    rec = Record(Path(path))
    readers = ((RUN_FILES["config"], _config), (RUN_FILES["environment"], _environment),
               (RUN_FILES["metrics"], _metrics), (RUN_FILES["confusion"], _confusion),
               (RUN_FILES["events"], _events), (RUN_FILES["predictions"], _predictions),
               (RUN_FILES["model_summary"], _summary), (RUN_FILES["test_metrics"], _test_metrics))
    for name, reader in readers:
        file = rec.path / name
        if not file.exists():
            continue
        try:
            reader(file, rec)
        except (OSError, ValueError, KeyError, TypeError, IndexError, yaml.YAMLError, csv.Error) as e:
            rec.notes.append(f"{name} could not be read ({type(e).__name__}: {str(e).splitlines()[0][:160]})")
    return rec


def _text(file: Path, kind: str = "json") -> str:
    return read_text(file, LIMITS[kind], "run file", errors="replace")


def _config(file: Path, rec: Record):
    rec.config_text = _text(file, "config")
    loaded = yaml.safe_load(rec.config_text)
    rec.config = loaded if isinstance(loaded, dict) else {}


def _environment(file: Path, rec: Record):
    loaded = json.loads(_text(file))
    rec.environment = loaded if isinstance(loaded, dict) else {}


def _number(text):
    return float(text) if text not in ("", None) else None


def _metrics(file: Path, rec: Record):
    rec.metrics = read_metrics(file)   # runs.py's reader: MetricsRow, an old run's column names mapped


def _confusion(file: Path, rec: Record):
    with open_read(file, LIMITS["json"], "run file", text=True, newline="", encoding="utf-8", errors="replace") as f:
        rows = list(csv.reader(f))
    classes = [from_spreadsheet_cell(c) for c in rows[0][1:]]   # written as text cells (runs.spreadsheet_cell)
    matrix = np.array([[int(v) for v in row[1:]] for row in rows[1:]], dtype=np.int64)
    if matrix.shape != (len(classes), len(classes)):
        raise ValueError(f"a {len(classes)}-class header over {matrix.shape[0]} rows of {matrix.shape[-1]}")
    rec.classes, rec.confusion = classes, matrix


def _events(file: Path, rec: Record):
    for line in _text(file).splitlines():
        try:
            event = json.loads(line)
        except ValueError:   # a line cut by a full disk: the others still stand
            rec.notes.append(f"{RUN_FILES['events']} has an unreadable line: {line[:80]!r}")
            continue
        if isinstance(event, dict):
            rec.events.append(event)


def _predictions(file: Path, rec: Record):
    with open_read(file, LIMITS["npz"], "run file") as f, np.load(f, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    rec.predictions = {k: (v.item() if v.ndim == 0 else v) for k, v in arrays.items()}


def _summary(file: Path, rec: Record):
    rec.summary = _text(file)


def _test_metrics(file: Path, rec: Record):
    loaded = json.loads(_text(file))
    rec.test = loaded if isinstance(loaded, dict) else {}
