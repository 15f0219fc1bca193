"""Read what a run directory holds, for the report: every file is optional and read as data.

A run directory may come from elsewhere, be half-written by a run that stopped, or predate a file: each file that
is missing or unreadable is left out and named in `Record.notes`, so the report shows what there is. Nothing is
executed or unpickled (predictions.npz is read with allow_pickle=False). A file that is no regular file (a FIFO, a
device) or is past its size limit was not left by a run but planted: one line (files.py), not a note.
"""
from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import yaml

from ..errors import NettrainError
from ..files import LIMITS, open_read, read_text
from ..metrics_row import unit_words
from ..runs import MANIFEST, RUN_FILES, from_spreadsheet_cell, read_metrics

MAX_CLASSES = 5000            # a confusion matrix's classes: 25 million cells, 200 MB of counts
MAX_COUNT = 2 ** 53           # a cell's count of test examples, exact as a float too
MAX_EPOCH = 10 ** 9
MAX_ARRAY_BYTES = 2 ** 28     # one array of predictions.npz (256 MB), refused from its header before it is loaded
MAX_IMAGE_VALUES = 2 ** 25    # one shown image's values (engine/checkfields.py's MAX_INPUT_VALUES)
# predictions.npz (evidence.py writes it): each array the report reads -> (numpy kinds it may have, dimensions)
PREDICTIONS = {"task": ("U", 0), "kind": ("U", 0), "classes": ("U", 1), "confidence": ("f", 1), "correct": ("b", 1),
               "shown_images": ("u", 4), "shown_true": ("iu", 1), "shown_pred": ("iu", 1), "shown_probs": ("f", 2),
               "shown_loss": ("f", 1), "top_images": ("u", 4), "top_texts": ("U", 1), "top_true": ("iu", 1),
               "top_pred": ("iu", 1), "top_probs": ("f", 2), "top_loss": ("f", 1), "boundary_x": ("f", 1),
               "boundary_y": ("f", 1), "boundary_class": ("iu", 2), "boundary_conf": ("f", 2),
               "points": ("f", (1, 2)), "points_true": ("iuf", 1), "curve_x": ("f", 1), "curve_y": ("f", 1),
               "test_loss": ("f", 0), "test_acc": ("f", 0), "test_mse": ("f", 0), "test_mae": ("f", 0)}
# arrays that stand together: all of a group or none (the top losses' inputs: top_images or top_texts)
GROUPS = [("confidence", "correct"), ("shown_true", "shown_pred", "shown_probs", "shown_loss", "shown_images"),
          ("top_true", "top_pred", "top_probs", "top_loss"), ("curve_x", "curve_y", "points", "points_true"),
          ("boundary_class", "boundary_x", "boundary_y", "boundary_conf", "points", "points_true")]
SHARED = {"points", "points_true"}   # the test points, of the curve's group or the decision regions'



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
    loaded = loaded if isinstance(loaded, dict) else {}
    train = loaded.get("train") if isinstance(loaded.get("train"), dict) else {}
    epochs = train.get("epochs")   # the page says "epoch N of E", and whether the run stopped before E
    if epochs is not None and (not isinstance(epochs, int) or isinstance(epochs, bool) or not 0 <= epochs <= MAX_EPOCH):
        raise ValueError(f"train.epochs {epochs!r:.40} is not a number of epochs")
    rec.config = loaded


def _environment(file: Path, rec: Record):
    loaded = json.loads(_text(file))
    rec.environment = loaded if isinstance(loaded, dict) else {}


def _number(text):
    return float(text) if text not in ("", None) else None


def _metrics(file: Path, rec: Record):
    rows = read_metrics(file)   # runs.py's reader: MetricsRow, an old run's column names mapped
    for line, row in enumerate(rows, 2):
        if row.epoch is not None and not (0 <= row.epoch <= MAX_EPOCH and float(row.epoch).is_integer()):
            raise ValueError(f"line {line}: epoch {row.epoch} is not an epoch number")
    rec.metrics = rows


def _confusion(file: Path, rec: Record):
    with open_read(file, LIMITS["json"], "run file", text=True, newline="", encoding="utf-8", errors="replace") as f:
        rows = list(csv.reader(f))
    if not rows or not 1 <= len(rows[0]) - 1 <= MAX_CLASSES:
        raise ValueError(f"its header must name 1 to {MAX_CLASSES:,} classes")
    classes = [from_spreadsheet_cell(c) for c in rows[0][1:]]   # written as text cells (runs.spreadsheet_cell)
    if len(rows) - 1 != len(classes) or any(len(row) != len(classes) + 1 for row in rows[1:]):
        raise ValueError(f"a {len(classes)}-class header over {len(rows) - 1} rows of other lengths")
    matrix = np.array([[_count(v, line) for v in row[1:]] for line, row in enumerate(rows[1:], 2)], dtype=np.int64)
    rec.classes, rec.confusion = classes, matrix


def _count(text: str, line: int) -> int:
    """A confusion matrix's cell: a count of test examples."""
    value = int(text)   # ValueError: not a whole number
    if not 0 <= value <= MAX_COUNT:
        raise ValueError(f"line {line}: {text[:20]!r} is not a count of examples")
    return value


def _events(file: Path, rec: Record):
    for line in _text(file).splitlines():
        try:
            event = json.loads(line)
        except ValueError:   # a line cut by a full disk: the others still stand
            rec.notes.append(f"{RUN_FILES['events']} has an unreadable line: {line[:80]!r}")
            continue
        if isinstance(event, dict) and isinstance(event.get("changed", {}), dict):
            rec.events.append(event)
        else:
            rec.notes.append(f"{RUN_FILES['events']} has a line that is not a resume's record: {line[:80]!r}")


def _predictions(file: Path, rec: Record):
    with open_read(file, LIMITS["npz"], "run file") as f, np.load(f, allow_pickle=False) as npz:
        arrays = {k: _array(npz, k) for k in npz.files if k in PREDICTIONS}
    names = rec.classes if rec.classes is not None else arrays.get("classes")
    problem = predictions_problem(arrays, len(names) if names is not None else 0)
    if problem:
        raise ValueError(problem)
    rec.predictions = {k: (v.item() if v.ndim == 0 else v) for k, v in arrays.items()}


def _summary(file: Path, rec: Record):
    rec.summary = _text(file)


def _test_metrics(file: Path, rec: Record):
    loaded = json.loads(_text(file))
    rec.test = loaded if isinstance(loaded, dict) else {}


def _array(npz, key: str) -> np.ndarray:
    """One array of an .npz, its header read first: a few kilobytes compressed can declare gigabytes, refused
    here before they are allocated."""
    member = key + ".npy" if key + ".npy" in npz.zip.namelist() else key
    with npz.zip.open(member) as f:
        version = np.lib.format.read_magic(f)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
            np.lib.format.read_array_header_2_0
        shape, _, dtype = read_header(f)
    size = dtype.itemsize * math.prod(shape)
    if size > MAX_ARRAY_BYTES:
        raise ValueError(f"{key} declares {size:,} bytes, more than the limit of {MAX_ARRAY_BYTES:,}")
    return npz[key]


def predictions_problem(arrays: dict, classes: int) -> Optional[str]:
    """What is wrong with predictions.npz's arrays for the report's figures, or None: each of its kind and
    dimensions (PREDICTIONS), the arrays of a group (GROUPS) all there and one entry per example, class indices
    below `classes` (the names the figures label them with), plotted values finite."""
    for key, value in arrays.items():
        kinds, ndim = PREDICTIONS[key]
        if value.dtype.kind not in kinds or value.ndim not in (ndim if isinstance(ndim, tuple) else (ndim,)):
            return f"{key} must be a {ndim}-dimensional array of kind {kinds}, got {value.dtype} {value.shape}"
    if "task" in arrays and arrays["task"].item() not in ("classification", "regression", "multilabel"):
        return "task must be classification, regression or multilabel"
    for group in GROUPS:
        missing = [k for k in group if k not in arrays]
        if group[0] in arrays and missing:
            return f"{group[0]} comes without {', '.join(missing)}"
        stray = [k for k in group[1:] if k in arrays and k not in SHARED]
        if group[0] not in arrays and stray:
            return f"{', '.join(stray)} come without {group[0]}"
    if ("top_images" in arrays or "top_texts" in arrays) and "top_true" not in arrays:
        return "top_images (or top_texts) come without top_true"
    for prefix in ("shown", "top"):
        if f"{prefix}_true" in arrays:
            found = _examples_problem(arrays, prefix, classes)
            if found:
                return found
    return _confidence_problem(arrays) or _boundary_problem(arrays, classes) or _curve_problem(arrays)


def _examples_problem(arrays: dict, prefix: str, classes: int) -> Optional[str]:
    """shown_* / top_*: n examples, each with its true and predicted class, its probabilities and loss, and its
    image (or text)."""
    inputs = [k for k in (f"{prefix}_images", f"{prefix}_texts") if k in arrays]
    if len(inputs) != 1:
        return f"{prefix}_true must come with {prefix}_images (or, for texts, top_texts)"
    n = len(arrays[f"{prefix}_true"])
    if any(len(arrays[f"{prefix}_{k}"]) != n for k in ("pred", "probs", "loss")) or len(arrays[inputs[0]]) != n:
        return f"the {prefix}_* arrays must have one entry per example ({n})"
    if arrays[f"{prefix}_probs"].shape[1] != classes:
        return f"{prefix}_probs must have one column per class ({classes})"
    for key in (f"{prefix}_true", f"{prefix}_pred"):
        if n and not 0 <= arrays[key].min() <= arrays[key].max() < classes:
            return f"{key} must hold class indices from 0 to {classes - 1}"
    images = arrays.get(f"{prefix}_images")
    if images is not None and (images.shape[3] not in (1, 3, 4) or math.prod(images.shape[1:]) > MAX_IMAGE_VALUES):
        return f"{prefix}_images must be images N x height x width x 1, 3 or 4 channels, got {images.shape}"
    return None


def _confidence_problem(arrays: dict) -> Optional[str]:
    confidence = arrays.get("confidence")
    if confidence is None:
        return None
    if len(confidence) != len(arrays["correct"]) or not np.all((confidence >= 0) & (confidence <= 1)):
        return "confidence must hold one probability from 0 to 1 per example of correct"
    return None


def _boundary_problem(arrays: dict, classes: int) -> Optional[str]:
    """The decision regions: each class over a grid boundary_y x boundary_x, and the test points in 2-D."""
    if "boundary_class" not in arrays:
        return None
    grid, points = arrays["boundary_class"], arrays["points"]
    shape = (len(arrays["boundary_y"]), len(arrays["boundary_x"]))
    if grid.shape != shape or arrays["boundary_conf"].shape != shape or not grid.size:
        return f"boundary_class and boundary_conf must be a grid of boundary_y x boundary_x {shape}"
    if not 0 <= grid.min() <= grid.max() < max(classes, 1):
        return f"boundary_class must hold class indices from 0 to {classes - 1}"
    if points.ndim != 2 or points.shape[1] != 2 or len(arrays["points_true"]) != len(points):
        return "points must be the test points in 2-D, one class of points_true each"
    if not all(np.isfinite(arrays[k]).all() for k in ("boundary_x", "boundary_y", "points")):
        return "boundary_x, boundary_y and points must be finite"
    return None


def _curve_problem(arrays: dict) -> Optional[str]:
    """A 1-D regression's fitted curve over the test points."""
    if "curve_x" not in arrays:
        return None
    points, true = arrays.get("points"), arrays.get("points_true")
    if len(arrays["curve_x"]) != len(arrays["curve_y"]) or points is None or true is None or points.ndim != 1 or \
            len(points) != len(true):
        return "curve_x and curve_y must be one curve, points and points_true one value each per test point"
    if not all(np.isfinite(a).all() for a in (arrays["curve_x"], arrays["curve_y"], points, true)):
        return "the curve and the points must be finite"
    return None
