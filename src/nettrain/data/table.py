"""The table input kind: rows of named columns (a CSV file, scikit-learn's bundled tables, a list of dicts).

This module is the pattern every input kind (image, table, text) moves to: one module owns the kind's config keys
(`data.target`, `data.task`), its datasets, its preprocessing and what the checkpoint stores of it. The
preprocessing is one plain-data dict (JSON-able: column names, numeric means/stds, categorical levels, fill values
for missing cells, the target's classes or scale), learned from the training split only by `learn`, kept in the
checkpoint as `data.table`, and applied by `features` (inputs) and `targets` at fit, evaluate and predict alike, so
that an exporter can rebuild the same arithmetic from the dict alone:

    {"columns": [{"name": "age", "type": "numeric", "fill": 37.0, "mean": 38.2, "std": 12.1},
                 {"name": "color", "type": "categorical", "fill": "red", "levels": ["blue", "red"]}],
     "target": {"name": "label", "task": "classification", "classes": ["no", "yes"]}}
             # or {"name": "price", "task": "regression", "mean": 10.5, "std": 3.2}

A numeric column becomes one standardized value, a categorical one a one-hot block over its training levels (a level
unseen in training: all zeros). A regression target is trained standardized; predictions and the evaluation's
MSE/MAE are given back in the target's own units.
"""
from __future__ import annotations

import csv
import math
from collections import Counter
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..errors import ConfigError, DataError, printable
from ..files import LIMITS, open_read
from .arrays import ArrayData
from .sources import DATASETS, READS_NO_FILES, Source

MISSING = {"", "na", "n/a", "nan", "null", "none", "?"}   # cells read as missing (case-insensitive)
MAX_CLASSES_FROM_INTEGERS = 20   # integer targets with at most this many distinct values are classes (auto)
TEST_FRACTION = 0.2


# ---- reading ---------------------------------------------------------------------------------------

def read_csv(path) -> tuple:
    """(header, rows, line numbers) of a CSV file with a header row; blank lines skipped, every row as wide as the
    header (a ragged row is refused by its line number)."""
    path = Path(path)
    name = printable(path)
    if path.is_dir():
        raise DataError(f"{name} is a folder; give the CSV file itself (--data-dir table.csv)")
    if not path.exists():
        raise DataError(f"CSV file {name} does not exist; give the path of your table with --data-dir")
    try:
        with open_read(path, LIMITS["csv"], "CSV file", text=True, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = next((row for row in reader if row), None)
            if header is None:
                raise DataError(f"{name} is empty; give a CSV file with a header row and at least 2 rows of data")
            header = [h.strip() for h in header]
            repeated = sorted({h for h in header if header.count(h) > 1})
            if repeated or "" in header:
                what = f"repeats the column name {repeated[0]!r}" if repeated else "has a column without a name"
                raise DataError(f"{name}: the header (line 1) {what}; give every column its own name")
            rows, lines = [], []
            for row in reader:
                if not row:
                    continue
                if len(row) != len(header):
                    raise DataError(f"{name} line {reader.line_num} has {len(row)} cells but the header has "
                                    f"{len(header)} columns; fix that row (quote cells that contain commas)")
                rows.append(row)
                lines.append(reader.line_num)
    except UnicodeDecodeError as e:
        raise DataError(f"{name} is not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start}); save the "
                        f"table as UTF-8 CSV") from None
    except csv.Error as e:
        raise DataError(f"{name} is not a readable CSV file ({e}); save it as CSV with a header row") from None
    except OSError as e:
        raise DataError(f"cannot read {name}: {e.strerror}; check the path and its permissions") from None
    return header, rows, lines


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or (isinstance(v, str) and v.strip().lower()
                                                                      in MISSING)


def _number(v) -> Optional[float]:
    """The finite number a cell holds, or None (text, inf)."""
    if isinstance(v, bool):
        return None
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _non_finite(v) -> bool:
    """A cell that reads as a number but not a finite one: inf, -Infinity, 1e400 (past float64's 1.8e308), +nan."""
    if isinstance(v, bool) or _missing(v):
        return False
    try:
        return not math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def _first_non_finite(values: list) -> Optional[int]:
    """The row of the first non-finite number in a column whose every other present cell is a number, else None (a
    column of text keeps its text, "inf" among it a level like any other)."""
    first = None
    for i, v in enumerate(values):
        if _missing(v) or _number(v) is not None:
            continue
        if not _non_finite(v):
            return None   # text: a categorical column
        first = i if first is None else first
    return first


def refuse_non_finite(frame: dict, target: str, where):
    """A column of numbers holding one that is not finite would be read as text (a one-hot block, one level per
    distinct number) without a word: refused instead, naming the column, the row and the fix."""
    for name, values in frame.items():
        i = _first_non_finite(values)
        if i is None:
            continue
        fix = "give a finite number there, or remove the row" if name == target else \
            "give a finite number there, or leave the cell empty (filled with the column's training median)"
        raise DataError(f"{where(i)}: column {name!r} holds {str(values[i]).strip()[:40]!r}, a number that is not "
                        f"finite (float64 ends at 1.8e308), where every other cell is a number; {fix}")


def _integer(v) -> bool:
    if isinstance(v, str):
        try:
            int(v.strip())
            return True
        except ValueError:
            return False
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


# ---- learning the preprocessing (training rows only) -------------------------------------------------

def infer_task(values: list, task: str, column: str) -> str:
    """classification for text or few distinct integers, regression for other numbers; `task` forces one."""
    present = [v for v in values if not _missing(v)]
    numeric = all(_number(v) is not None for v in present)
    if task == "regression" and not numeric:
        bad = next(v for v in present if _number(v) is None)
        raise DataError(f"data.task is regression but the target column {column!r} holds {str(bad)[:40]!r}, not a "
                        f"number; give numeric targets or set data.task classification")
    if task != "auto":
        return task
    if numeric and not (all(_integer(v) for v in present) and len(set(map(str, present)))
                        <= MAX_CLASSES_FROM_INTEGERS):
        return "regression"
    return "classification"


def class_names(values: list) -> list:
    """The distinct targets as class names: numerically ordered when they are numbers (2 before 10)."""
    names = sorted({str(v).strip() for v in values})
    if all(_number(n) is not None for n in names):
        names.sort(key=float)
    return names


def learn(frame: dict, target: str, task: str, classes: Optional[list], train: np.ndarray) -> dict:
    """The preprocessing, learned from the rows `train` of `frame` (column -> values): a column is numeric when every
    present cell in the whole table is a number (its kind is the table's schema), its statistics come from the
    training rows alone."""
    columns = []
    for name, values in frame.items():
        if name == target:
            continue
        seen = [values[i] for i in train if not _missing(values[i])]
        if all(_number(v) is not None for v in values if not _missing(v)):
            nums = np.array([_number(v) for v in seen], dtype=np.float64)
            fill = float(np.median(nums)) if len(nums) else 0.0
            filled = np.concatenate([nums, np.full(len(train) - len(nums), fill)])
            std = float(filled.std()) if len(filled) else 0.0
            columns.append({"name": name, "type": "numeric", "fill": fill,
                            "mean": float(filled.mean()) if len(filled) else 0.0, "std": std if std > 1e-12 else 1.0})
        else:
            counts = Counter(str(v).strip() for v in seen)
            fill = min(counts, key=lambda k: (-counts[k], k)) if counts else ""   # most frequent, ties by name
            columns.append({"name": name, "type": "categorical", "fill": fill, "levels": sorted(counts)})
    if task == "classification":
        return {"columns": columns, "target": {"name": target, "task": task, "classes": classes}}
    y = np.array([_number(frame[target][i]) for i in train], dtype=np.float64)
    std = float(y.std())
    return {"columns": columns, "target": {"name": target, "task": task, "mean": float(y.mean()),
                                           "std": std if std > 1e-12 else 1.0}}


# ---- applying it: the one definition fit, evaluate and predict share ------------------------------------

def width(prep: dict) -> int:
    return sum(1 if c["type"] == "numeric" else len(c["levels"]) for c in prep["columns"])


def features(frame: dict, prep: dict, where) -> torch.Tensor:
    """The model's inputs (N, width) float32 for the rows of `frame` (column -> values; an absent column is all
    missing). `where(i)` names row i in a message ("rows.csv line 3")."""
    n = len(next(iter(frame.values()))) if frame else 0
    blocks = []
    for col in prep["columns"]:
        values = frame.get(col["name"], [None] * n)
        if col["type"] == "numeric":
            out = np.empty(n, dtype=np.float64)
            for i, v in enumerate(values):
                if _missing(v):
                    out[i] = col["fill"]
                elif _non_finite(v):
                    raise DataError(f"{where(i)}: column {col['name']!r} holds {str(v).strip()[:40]!r}, a number "
                                    f"that is not finite (float64 ends at 1.8e308); give a finite number, or leave "
                                    f"the cell empty for the training median {col['fill']:g}")
                elif (x := _number(v)) is None:
                    raise DataError(f"{where(i)}: column {col['name']!r} holds {str(v)[:40]!r}, but the model was "
                                    f"trained on numbers there; give a number, or leave the cell empty for the "
                                    f"training median {col['fill']:g}")
                else:
                    out[i] = x
            blocks.append(((out - col["mean"]) / col["std"])[:, None])
        else:
            index = {level: j for j, level in enumerate(col["levels"])}
            out = np.zeros((n, len(index)), dtype=np.float64)
            for i, v in enumerate(values):
                j = index.get(col["fill"] if _missing(v) else str(v).strip())
                if j is not None:   # a level training never saw: no column of its own, all zeros
                    out[i, j] = 1.0
            blocks.append(out)
    x = np.concatenate(blocks, axis=1) if blocks else np.zeros((n, 0))
    return torch.from_numpy(x.astype(np.float32))


def cells(x: torch.Tensor, prep: dict) -> torch.Tensor:
    """features() undone: the model's inputs (N, width) back to one float per column, a numeric cell as it was
    read (a missing one as its fill) and a text cell as its level's index (-1: a level training never saw)."""
    x, out, at = x.double(), [], 0
    for col in prep["columns"]:
        if col["type"] == "numeric":
            out.append(x[:, at] * col["std"] + col["mean"])
            at += 1
        else:
            block = x[:, at:at + len(col["levels"])]
            out.append(torch.where(block.amax(1) > 0, block.argmax(1).double(), -1.0))
            at += len(col["levels"])
    return torch.stack(out, 1) if out else x.new_zeros(len(x), 0)


def targets(values: list, prep: dict, where) -> torch.Tensor:
    """The training targets: class indices, or the standardized value (N, 1)."""
    t = prep["target"]
    for i, v in enumerate(values):
        if _missing(v):
            raise DataError(f"{where(i)}: the target column {t['name']!r} is empty; fill it in or remove the row")
    if t["task"] == "classification":
        index = {c: j for j, c in enumerate(t["classes"])}
        unknown = next((i for i, v in enumerate(values) if str(v).strip() not in index), None)
        if unknown is not None:
            raise DataError(f"{where(unknown)}: class {str(values[unknown])[:40]!r} of column {t['name']!r} is not "
                            f"one the model was trained on ({', '.join(t['classes'][:10])}); remove the row")
        return torch.tensor([index[str(v).strip()] for v in values], dtype=torch.long)
    y = np.array([_number(v) for v in values], dtype=np.float64)
    return torch.from_numpy(((y - t["mean"]) / t["std"]).astype(np.float32)).unsqueeze(1)


def outputs(out: torch.Tensor, prep: Optional[dict]) -> torch.Tensor:
    """The model's outputs in the target's own units (a regression target was trained standardized)."""
    t = (prep or {}).get("target", {})
    return out * t["std"] + t["mean"] if t.get("task") == "regression" else out


def in_target_units(result: dict, prep: Optional[dict]) -> dict:
    """An evaluation's MSE and MAE in the target's units (R^2 has none); the loss stays the training's."""
    t = (prep or {}).get("target", {})
    if t.get("task") == "regression" and "mse" in result:
        result = {**result, "mse": result["mse"] * t["std"] ** 2, "mae": result["mae"] * t["std"]}
    return result


# ---- datasets ----------------------------------------------------------------------------------------

def split(n: int, labels: Optional[list], seed: int) -> tuple:
    """(train rows, test rows): a seeded 80/20 split, stratified by `labels` when every class can be."""
    from sklearn.model_selection import train_test_split
    if n < 2:
        raise DataError(f"the table has {n} row{'s' * (n != 1)} of data; give at least 2 (80% train, 20% test)")
    rows = np.arange(n)
    try:
        train, test = train_test_split(rows, test_size=TEST_FRACTION, random_state=seed, stratify=labels)
    except ValueError:   # a class with a single row, or fewer test rows than classes: not stratified
        train, test = train_test_split(rows, test_size=TEST_FRACTION, random_state=seed)
    return np.sort(train), np.sort(test)


def source(frame: dict, target: str, task: str, seed: int, where, prep: Optional[dict] = None) -> Source:
    """A Source from a table's columns: split, preprocessing learned from its training rows (or `prep`, a trained
    model's, for evaluating it), both splits encoded."""
    if target not in frame:
        raise DataError(f"there is no target column {target!r}{_closest(target, frame)}; the columns are: "
                        f"{', '.join(map(repr, frame))[:300]}; set --target to one of them")
    if len(frame) < 2:
        raise DataError(f"the table has no column besides the target {target!r}; give at least one input column")
    values = frame[target]
    if prep is None:
        refuse_non_finite(frame, target, where)
        task = infer_task(values, task, target)
        classes = class_names([v for v in values if not _missing(v)]) if task == "classification" else None
        if classes is not None and len(classes) < 2:
            raise DataError(f"the target column {target!r} holds one class only ({classes[0] if classes else 'none'}"
                            f"); a classifier needs at least 2, or set data.task regression for numbers")
        targets(values, {"target": {"name": target, "task": task, "classes": classes, "mean": 0.0, "std": 1.0}},
                where)   # an empty target cell or a bad value, by its line, before anything is learned
    task = prep["target"]["task"] if prep else task
    labels = [str(v).strip() for v in values] if task == "classification" else None
    train, test = split(len(values), labels, seed)
    prep = prep or learn(frame, target, task, classes, train)
    x, y = features(frame, prep, where), targets(values, prep, where)
    t = prep["target"]
    return Source(ArrayData(x[train], y[train]), ArrayData(x[test], y[test]), t.get("classes"), task=task,
                  kind="table", table=prep)


def _closest(name: str, names) -> str:
    from ..errors import closest
    return closest(name, list(names))


@DATASETS.register("csv")
def csv_table(cfg, root, prep=None):
    header, rows, lines = read_csv(root)
    if not rows:
        raise DataError(f"{printable(root)} has a header but no rows of data; give at least 2")
    target = cfg.target
    if target is None:
        raise ConfigError(f"--dataset csv needs the column to predict: --target COLUMN (the columns of "
                          f"{printable(root)}: {', '.join(header)[:300]})")
    frame = {name: [row[j] for row in rows] for j, name in enumerate(header)}
    return source(frame, target, cfg.task, cfg.split_seed, lambda i: f"{printable(root)} line {lines[i]}", prep)


def _bundled(loader, task: str):
    def build(cfg, root, prep=None):
        from sklearn import datasets   # imported when used: it adds a second to every start-up otherwise
        d = getattr(datasets, loader)()
        frame = {str(name): d.data[:, j].tolist() for j, name in enumerate(d.feature_names)}
        if task == "classification":
            frame["target"] = [str(d.target_names[k]) for k in d.target]
        else:
            frame["target"] = d.target.tolist()
        return source(frame, "target", task, cfg.split_seed, lambda i: f"row {i + 1}", prep)
    return build


def _register_bundled():
    for name, loader, task in (("iris", "load_iris", "classification"), ("wine", "load_wine", "classification"),
                               ("breast-cancer", "load_breast_cancer", "classification"),
                               ("diabetes", "load_diabetes", "regression")):
        DATASETS.register(name)(_bundled(loader, task))
        READS_NO_FILES[name] = "bundled with scikit-learn"


_register_bundled()


# ---- what predict takes: rows -----------------------------------------------------------------------

def rows_frame(inputs, prep: dict) -> tuple:
    """(frame, where) from what predict is given: a CSV file path, a list of dicts (one per row), one dict, or a
    pandas DataFrame (anything with to_dict("records")). A column the model does not know is refused (a misspelt
    name would leave the real column missing and silently filled); a CSV must hold every column the model takes."""
    known = [c["name"] for c in prep["columns"]]
    if isinstance(inputs, (str, Path)):
        header, rows, lines = read_csv(inputs)
        missing = [k for k in known if k not in header]
        if missing:
            raise DataError(f"{printable(inputs)} has no column {', '.join(map(repr, missing[:5]))}, which the model "
                            f"takes; add it (empty cells are filled as in training)")
        records = [dict(zip(header, row)) for row in rows]
        name = printable(inputs)
        where = lambda i: f"{name} line {lines[i]}"   # noqa: E731
    else:
        if hasattr(inputs, "to_dict") and hasattr(inputs, "columns"):   # a pandas DataFrame, not imported here
            inputs = inputs.to_dict("records")
        if isinstance(inputs, dict):
            inputs = [inputs]
        if not isinstance(inputs, (list, tuple)) or not all(isinstance(r, dict) for r in inputs):
            raise DataError(f"this model takes table rows: a CSV file, a list of dicts (column -> value) or a "
                            f"pandas DataFrame, not {type(inputs).__name__}")
        records = list(inputs)
        where = lambda i: f"row {i + 1}"   # noqa: E731
    if not records:
        raise DataError("nothing to predict: give at least one row")
    allowed = set(known) | {prep["target"]["name"]}   # the target column may stand in the rows: it is ignored
    for i, record in enumerate(records):
        extra = [str(k) for k in record if k not in allowed]
        if extra:
            raise DataError(f"{where(i)}: column {extra[0][:40]!r}{_closest(extra[0], known)} is not one the model "
                            f"was trained on ({', '.join(known)[:200]}); remove or rename it")
    frame = {k: [r.get(k) for r in records] for k in known}
    return frame, where


def predict_batch(inputs, prep: dict) -> torch.Tensor:
    frame, where = rows_frame(inputs, prep)
    return features(frame, prep, where)


# ---- the checkpoint's record -------------------------------------------------------------------------

def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def problem(prep, data: dict) -> Optional[str]:
    """What is wrong with a checkpoint's `data.table`, or None (engine/checkfields.py calls this)."""
    if not isinstance(prep, dict) or not isinstance(prep.get("columns"), list) or \
            not isinstance(prep.get("target"), dict):
        return "data.table must be a mapping with columns (a list) and target (a mapping)"
    for c in prep["columns"]:
        if not isinstance(c, dict) or not isinstance(c.get("name"), str):
            return "data.table.columns must be mappings with a name"
        if c.get("type") == "numeric":
            if not all(_finite(c.get(k)) for k in ("fill", "mean", "std")) or c["std"] <= 0:
                return f"data.table column {c['name']!r:.40}: fill, mean and std must be finite numbers, std > 0"
        elif c.get("type") == "categorical":
            if not isinstance(c.get("fill"), str) or not isinstance(c.get("levels"), list) or \
                    not all(isinstance(v, str) for v in c["levels"]):
                return f"data.table column {c['name']!r:.40}: fill must be a string and levels a list of strings"
        else:
            return f"data.table column {c['name']!r:.40}: type must be numeric or categorical"
    if [width(prep)] != data["shape"]:
        return f"data.table encodes {width(prep)} values per row but data.shape is {data['shape']!r:.40}"
    t = prep["target"]
    if t.get("task") != data["task"] or not isinstance(t.get("name"), str):
        return "data.table.target must have a name and the data's task"
    if t["task"] == "classification" and t.get("classes") != data["classes"]:
        return "data.table.target.classes must be data.classes"
    if t["task"] == "regression" and not (_finite(t.get("mean")) and _finite(t.get("std")) and t["std"] > 0):
        return "data.table.target: mean and std must be finite numbers, std > 0"
    return None
