"""One row of metrics.csv: an epoch's metrics, each column named once, here. The fit writes rows of this type
(training.py, runs.RunDir.write_metrics) and every reader reads them back as it (runs.read_metrics, the report,
compare, TensorBoard's final metrics); checkpoints and `Run.metrics` hold them as plain dicts (`as_dict`).

The speed column counts the data's examples: images, texts or rows, as the data kind says (kinds/: `unit`, which
environment.json records as speed_unit). Runs made before it was named so called it images_per_s: a row read from
them (a CSV, a checkpoint's history) maps that name to examples_per_s (`OLD_NAMES`).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Optional


@dataclass
class MetricsRow:
    epoch: int
    train_loss: float
    train_acc: Optional[float] = None        # classification
    val_loss: Optional[float] = None         # the split evaluated this epoch (val_split), when it was
    val_acc: Optional[float] = None          # classification
    val_mae: Optional[float] = None          # regression
    lr: Optional[float] = None               # the first parameter group's, at the epoch's end
    seconds: Optional[float] = None          # the epoch's training time (validation not included)
    examples_per_s: Optional[float] = None   # examples trained a second: images, texts or rows (speed_unit)
    data_wait: Optional[float] = None        # share of the seconds spent waiting for batches
    # "val" (a validation split, which chooses best.pt) or "test" (no validation split: shown only, best.pt is the
    # last epoch); None when the epoch did not evaluate
    val_split: Optional[str] = None
    # text runs: the share of the epoch's padded positions that are padding (empty for other kinds). Appended last:
    # a reader of the columns by position keeps its own
    padding_waste: Optional[float] = None
    # the run's own metrics (train.metrics: engine/metrics.py's METRICS, or the user's), as val_<name> columns
    # after the named ones, in the order train.metrics gives them
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        named = asdict(self)
        return {**{k: v for k, v in named.items() if k != "extra"}, **self.extra}

    @classmethod
    def from_dict(cls, values: dict) -> "MetricsRow":
        """A row from a mapping of column names (a checkpoint's history, a CSV line's cells already converted):
        an old run's names are mapped, a column this version does not know is left out, one it lacks is None (an
        empty cell), as a file from elsewhere may have it."""
        values = {OLD_NAMES.get(k, k): v for k, v in values.items()}
        extra = {k: v for k, v in values.items() if is_extra(k) and (v is None or isinstance(v, (int, float)))}
        return cls(**{"epoch": None, "train_loss": None, **{k: v for k, v in values.items() if k in _NAMES}},
                   extra=dict(list(extra.items())[:MAX_EXTRA]))

    @classmethod
    def from_cells(cls, cells: dict) -> "MetricsRow":
        """A row from metrics.csv's text cells: numbers as numbers (a whole epoch an int), an empty cell None."""
        return cls.from_dict({k: _value(OLD_NAMES.get(k, k), v) for k, v in cells.items() if k is not None})

    def cells(self) -> dict:
        """The row as metrics.csv's cells: None as an empty cell."""
        return {k: "" if v is None else v for k, v in self.as_dict().items()}

    # a row read by a column's name, as the CSV's header spells it (row["val_acc"]): for scripts that read the file
    def __getitem__(self, name: str):
        if name in self.extra:
            return self.extra[name]
        if name not in _NAMES:
            raise KeyError(name)
        return getattr(self, name)

    def get(self, name: str, default=None):
        return self.extra.get(name, default) if name in self.extra else \
            (getattr(self, name) if name in _NAMES else default)


COLUMNS = [f.name for f in fields(MetricsRow) if f.name != "extra"]   # metrics.csv's named columns, in this order
_NAMES = set(COLUMNS)
MAX_EXTRA = 32   # a file from elsewhere: its unknown val_ columns kept, at most this many


def is_extra(name: str) -> bool:
    """A column of the run's own metrics: val_<name>, not one of the named columns."""
    return isinstance(name, str) and name.startswith("val_") and name not in _NAMES and len(name) <= 64


def columns(rows: list) -> list:
    """metrics.csv's header for `rows`: the named columns, then the run's own metrics' columns."""
    extra = {}
    for row in rows:
        extra.update(dict.fromkeys(row.extra))
    return COLUMNS + list(extra)
OLD_NAMES = {"images_per_s": "examples_per_s"}   # a column's name in runs made before it was renamed
_TEXT = {"val_split"}


def _value(name: str, cell):
    if cell in ("", None):
        return None
    if name in _TEXT:
        return cell
    number = float(cell)
    return int(number) if name == "epoch" and number.is_integer() else number   # a file from elsewhere: inf stays


def unit_words(unit: Optional[str]) -> str:
    """What a speed counts, in words ("images", "texts", "rows", "examples"), from a data kind's short unit (kinds/:
    "img", "texts", "rows", "ex"), as environment.json's speed_unit records it."""
    return {"img": "images", "ex": "examples", None: "examples"}.get(unit, unit)
