"""`nettrain compare RUN...`: runs side by side, from their run directories alone (read.py), as a terminal table,
one overlay figure of their curves (compare.png) and a self-contained page (compare.html, built as report.html is).

    comparison = compare(["runs/a", "runs/b"], out=None)     # out: the runs' common parent folder by default
    print(comparison.table())

The table has one row per run: the config keys that differ between the runs (flattened `section.key`; the `run`
section says where and how a run was written, not what it trained, and is left out), the best and final
per-epoch held-out metric (accuracy for classification, the loss for regression), the test metrics of
test_metrics.json, the epochs done, the training seconds and the mean speed (images, texts or rows a second, as
environment.json names them). Runs of different tasks are compared on what they share (the loss).

compare.html and compare.png carry a mark (MARK: a <meta name="generator"> and the PNG's Software text): an
existing file of either name is replaced only when it has that mark, i.e. nettrain compare wrote it; any other
file is the user's and is refused in one line, before anything is written.
"""
from __future__ import annotations

import io
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional
from urllib.parse import quote

from ..files import LIMITS, FileError, make_dir, open_read, write_file, write_text
from .columns import text_table
from ..errors import NettrainError, clean, printable
from ..runs import MANIFEST
from . import stats
from .html import CSS, _e, _figures, _table
from .read import Record, check_run_dir, read

HTML, PNG = "compare.html", "compare.png"
MARK = "nettrain compare"
HTML_MARK = f'<meta name="generator" content="{MARK}">'
PNG_MARK = b"Software\x00" + MARK.encode()   # the PNG's tEXt chunk, written before the image data
HEAD = 4096   # bytes read of an existing file to find the mark (matplotlib writes its text chunks first)
MISSING = object()   # a key a run's config does not have (an older nettrain's)


@dataclass
class Entry:
    """One row: a run's name, its values of the compared keys, its records (None: no run directory to read), and
    why it failed (a sweep's run), if it did."""
    name: str
    keys: dict
    record: Optional[Record] = None
    failure: Optional[str] = None
    named: bool = False   # its name says what it is (a sweep's: its values, or the name --runs gave it)

    @property
    def label(self) -> str:
        """The legend's name for the run, in full: its name, with its values of the keys that differ unless the
        name says them."""
        if self.named or not self.keys:
            return self.name
        return f"{self.name}: {', '.join(f'{k}={show(v)}' for k, v in self.keys.items())}"


@dataclass
class Comparison:
    entries: list
    keys: list                      # the compared keys, in config order
    task: str                       # classification, regression, or mixed/other: what the metrics are
    html: Path
    png: Optional[Path]             # None when no run had a finished epoch to draw
    notes: list = field(default_factory=list)

    def columns(self) -> tuple:
        return columns(self.entries, self.keys, self.task)

    def table(self) -> str:
        """The terminal's table: every cell and note `clean` (a run's config values and names are its files')."""
        header, rows = self.columns()
        header, rows = [clean(c) for c in header], [[clean(c) for c in row] for row in rows]
        lines = [text_table(header, rows, left=1 + len(self.keys), left_last=header[-1] == "status")]
        return "\n".join(lines + [clean(note) for note in self.notes])


# ---- reading the runs --------------------------------------------------------------------------------

def compare(runs, out=None) -> Comparison:
    """Read the run directories, find the keys that differ and write compare.png and compare.html into `out`
    (default: the folder that holds the runs). Refused in one line: no run, a path that is not a run directory,
    a run given twice, a run without a finished epoch, an `out` that would overwrite a file of the user's."""
    runs = [Path(r) for r in runs]
    if not runs:
        raise NettrainError("no run to compare; give run directories: nettrain compare runs/a runs/b")
    for r in runs:
        if r.is_dir() and not (r / MANIFEST).exists() and any((c / MANIFEST).is_file() for c in r.iterdir()):
            raise NettrainError(f"{printable(r)} holds runs but is not one (a sweep's folder, or runs/); give the runs: "
                                f"nettrain compare {printable(r)}/*/")
    paths = [check_run_dir(r) for r in runs]
    seen = {}
    for p in paths:
        if p.resolve() in seen:
            raise NettrainError(f"{printable(p)} is given twice (as {printable(seen[p.resolve()])}); give each run "
                                f"once")
        seen[p.resolve()] = p
    records = [read(p) for p in paths]
    for rec in records:
        if not rec.metrics:
            why = f" ({rec.notes[0]})" if rec.notes else ""
            raise NettrainError(f"{printable(rec.path)} has no finished epoch to compare yet{why}; compare runs "
                                f"that have trained at least one epoch")
    parent = common_parent(paths)
    flat = [flatten(rec.config) for rec in records]
    keys = differing(flat)
    entries = [Entry(_name(rec.path, parent), {k: f.get(k, MISSING) for k in keys}, rec)
               for rec, f in zip(records, flat)]
    return write(entries, keys, Path(out) if out is not None else parent)


def common_parent(paths: list) -> Path:
    """The deepest folder that holds all the runs; the current folder when they share none but the root."""
    folders = [os.path.dirname(os.path.abspath(p)) for p in paths]
    try:
        common = os.path.commonpath(folders)
    except ValueError:   # Windows: runs on different drives
        return Path(".")
    if Path(common) == Path(common).parent:   # the filesystem's root
        return Path(".")
    cwd = os.getcwd()
    return Path(os.path.relpath(common, cwd)) if Path(common).is_relative_to(cwd) else Path(common)


def _name(path: Path, parent: Path) -> str:
    return os.path.relpath(os.path.abspath(path), os.path.abspath(parent))


def flatten(config: dict, prefix: str = "") -> dict:
    """{"optim": {"lr": 0.1}, "model": {"args": {"hidden": [8]}}} -> {"optim.lr": 0.1, "model.args.hidden": [8]}."""
    out = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def differing(flat: list) -> list:
    """The keys whose values are not the same in every run (a key some runs lack differs), in config order; the
    run section (where and how each run was written) is not compared."""
    keys = list(dict.fromkeys(k for f in flat for k in f if not k.startswith("run.")))
    return [k for k in keys if len({show(f.get(k, MISSING)) for f in flat}) > 1]


def show(value) -> str:
    """A config value as a table cell: YAML's spelling (null, true, [8, 4])."""
    if value is MISSING:
        return "-"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(show(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {show(v)}" for k, v in value.items()) + "}"
    return str(value)


# ---- the metrics -------------------------------------------------------------------------------------

def task_of(rec: Optional[Record]) -> Optional[str]:
    if rec is None or not (rec.metrics or rec.test):
        return None
    if rec.classification or "accuracy" in rec.test or any(r.val_acc is not None or r.train_acc is not None
                                                           for r in rec.metrics):
        return "classification"
    if "r2" in rec.test or any(r.val_mae is not None for r in rec.metrics):
        return "regression"
    return "other"


def shared_task(entries: list) -> str:
    tasks = {task_of(e.record) for e in entries} - {None}
    return tasks.pop() if len(tasks) == 1 else "mixed"


def _pct(v) -> str:
    return "-" if v is None or math.isnan(v) else f"{100 * v:.2f}%"


def _num(v) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4g}"


# per task: the per-epoch metric (best is its max or its min), and the test metrics (test_metrics.json's keys)
VAL = {"classification": ("val_acc", "acc", max, _pct)}
VAL_DEFAULT = ("val_loss", "loss", min, _num)
TEST = {"classification": [("accuracy", "test acc", _pct), ("loss", "test loss", _num)],
        "regression": [("loss", "test loss", _num), ("mae", "test MAE", _num), ("r2", "test R2", _num)]}
TEST_DEFAULT = [("loss", "test loss", _num)]


def split_of(entries: list) -> str:
    """What the per-epoch columns were measured on, as their headers say it: "val", "test" (runs without a
    validation split evaluate the test split each epoch), "held-out" for a mix, or "train" when no run held data
    out."""
    splits = {r.val_split or "val" for e in entries if e.record is not None for r in e.record.metrics
              if r.val_loss is not None}
    return "train" if not splits else splits.pop() if len(splits) == 1 else "held-out"


def columns(entries: list, keys: list, task: str) -> tuple:
    """(header, rows) of the comparison: cells as text. A metric column none of the runs has is left out; the
    final training loss is shown when a run would otherwise have no loss."""
    key, short, best_of, fmt = VAL.get(task, VAL_DEFAULT)
    split = split_of(entries)
    if split == "train":
        key = key.replace("val_", "train_")
    metric_columns = [(f"best {split} {short} (epoch)", lambda r: _best(r, key, best_of, fmt)),
                      (f"final {split} {short}", lambda r: fmt(getattr(r.metrics[-1], key)) if r.metrics else "-")]
    metric_columns += [(label, lambda r, k=k, f=f: f(_test_value(r.test, k))) for k, label, f in
                       TEST.get(task, TEST_DEFAULT)]
    if (split, short) != ("train", "loss"):
        metric_columns.append(("final train loss", lambda r: _num(r.metrics[-1].train_loss) if r.metrics else "-"))
    metric_columns += [("epochs", lambda r: str(len(r.metrics))),
                       ("seconds", lambda r: f"{stats.timings(r.metrics)['seconds']:.3g}" if r.metrics else "-"),
                       (f"{_examples(entries)}/s (mean)", lambda r: _mean_speed(r.metrics))]
    cells = [[fn(e.record) if e.record is not None else "-" for e in entries] for _, fn in metric_columns]
    losses = [col for (label, _), col in zip(metric_columns, cells) if label.endswith(" loss") and
              label != "final train loss"]
    # a run with no held-out or test loss (all its data trained): its training loss is the one loss there is
    train_loss_needed = any(all(col[i] == "-" for col in losses) for i, e in enumerate(entries) if e.record)
    shown = [(label, col) for (label, _), col in zip(metric_columns, cells) if any(c != "-" for c in col)
             and (label != "final train loss" or train_loss_needed)]
    header = ["run"] + keys + [label for label, _ in shown]
    rows = [[e.name] + [show(e.keys.get(k, MISSING)) for k in keys] + [col[i] for _, col in shown]
            for i, e in enumerate(entries)]
    if any(e.failure for e in entries):
        header.append("status")
        for row, e in zip(rows, entries):
            row.append(f"failed: {e.failure}" if e.failure else "ok")
    return header, rows


def _best(rec: Record, key: str, best_of, fmt) -> str:
    points = [(getattr(r, key), r.epoch) for r in rec.metrics if getattr(r, key) is not None and r.epoch is not None
              and not math.isnan(getattr(r, key))]
    if not points:
        return "-"
    value, epoch = best_of(points, key=lambda p: p[0])
    return f"{fmt(value)} ({epoch})"


def _test_value(test: dict, key: str):
    value = test.get(key)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _examples(entries) -> str:
    """What the runs' speeds count: their common unit ("images", "texts", "rows"), or "examples" for a mix."""
    units = {e.record.examples for e in entries if e.record is not None}
    return units.pop() if len(units) == 1 else "examples"


def _mean_speed(metrics: list) -> str:
    speeds = [r.examples_per_s for r in metrics if r.examples_per_s is not None]
    return f"{sum(speeds) / len(speeds):,.0f}" if speeds else "-"


# ---- the figure and the page -------------------------------------------------------------------------

def figure(entries: list, task: str):
    """The runs' loss curves (validation solid, train dashed) and, for runs of one task, their validation accuracy
    or MAE, one colour a run; None when no run has a finished epoch."""
    from matplotlib import colormaps   # matplotlib: imported when a comparison is drawn, not with nettrain
    from .figures import _figure
    drawn = [e for e in entries if e.record is not None and e.record.metrics]
    if not drawn:
        return None
    splits = {e.record.held_out for e in drawn}   # what the per-epoch evaluation was: validation, or test
    held = splits.pop() if len(splits) == 1 else "held-out"
    second = {"classification": ("val_acc", f"{held} accuracy (%)", 100.0),
              "regression": ("val_mae", f"{held} mean absolute error", 1.0)}.get(task)
    fig = _figure(PANEL * (2 if second else 1), HEIGHT, wspace=0.3)   # widened for the legend at the end
    axes = fig.subplots(1, 2 if second else 1)
    loss_ax, score_ax = (axes[0], axes[1]) if second else (axes, None)
    # matplotlib's 10 default colours, then tab20's 20 (a colour repeats only past 20 runs)
    colours = [f"C{i}" for i in range(len(drawn))] if len(drawn) <= 10 else \
        [colormaps["tab20"](i % 20) for i in range(len(drawn))]
    losses = []
    for e, colour in zip(drawn, colours):
        style = "o-" if len(e.record.metrics) <= 50 else "-"
        x, y = _series(e.record, "train_loss")
        loss_ax.plot(x, y, "--", color=colour, alpha=0.6)
        losses += y
        x, y = _series(e.record, "val_loss")
        loss_ax.plot(x, y, style, color=colour, markersize=3, label=e.label)
        losses += y
        if score_ax is not None:
            x, y = _series(e.record, second[0])
            score_ax.plot(x, [second[2] * v for v in y], style, color=colour, markersize=3)
    positive = [v for v in losses if v > 0]
    if positive and len(positive) == len(losses) and max(positive) / min(positive) > 100:
        loss_ax.set_yscale("log")   # runs that diverge and runs that converge differ by orders of magnitude
    loss_ax.set(xlabel="epoch", ylabel="loss", title=f"Loss (solid: {held}, dashed: train)")
    if score_ax is not None:
        score_ax.set(xlabel="epoch", ylabel=second[1], title=second[1].capitalize())
    for ax in [a for a in (loss_ax, score_ax) if a is not None]:
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    handles = [loss_ax.plot([], [], "o-", color=c, markersize=3)[0] for c in colours]
    _legend(fig, handles, unique([e.label for e in drawn]), PANEL * (2 if second else 1))
    return fig


PANEL, HEIGHT = 5.2, 4.0   # inches: one plot with its axis labels, and the figure's height
MARGINS = {"left": 0.8, "bottom": 0.6, "top": 0.45}   # inches (figures._figure's)
GAP = 0.25   # inches between the plots and the legend, and right of it
WRAP = 48    # characters on a legend line: a longer label goes on more lines, whole


def _legend(fig, handles: list, labels: list, plots: float):
    """The legend right of the plots, every label in full (wrapped): measured once drawn, the figure then widened
    (and made taller, for many runs) so that the legend covers no plot and fits on the figure."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    legend = fig.legend(handles, [wrap(label) for label in labels], loc="center left", title="runs",
                        fontsize=8 if len(labels) <= 12 else 6, title_fontsize=8)
    box = legend.get_window_extent(FigureCanvasAgg(fig).get_renderer())
    width = plots + MARGINS["left"] + GAP + box.width / fig.dpi + GAP
    height = max(HEIGHT, box.height / fig.dpi + 0.4)
    fig.set_size_inches(width, height)
    fig.subplots_adjust(left=MARGINS["left"] / width, right=(MARGINS["left"] + plots) / width,
                        bottom=MARGINS["bottom"] / height, top=1 - MARGINS["top"] / height)
    legend.set_bbox_to_anchor(((MARGINS["left"] + plots + GAP) / width, 0.5), transform=fig.transFigure)


def wrap(label: str, width: int = WRAP) -> str:
    """A label on lines of at most `width` characters, broken after a comma or a space where there is one; the
    lines joined are the label."""
    lines, line = [], ""
    for part in re.findall(r"[^, ]*[, ]*", label):
        while len(line) + len(part) > width and (line or len(part) > width):
            if not line:
                line, part = part[:width], part[width:]
            lines.append(line)
            line = ""
        line += part
    return "\n".join(lines + [line] if line or not lines else lines)


def unique(labels: list) -> list:
    """Labels made different where they are the same, so that no two runs share a legend entry."""
    seen = {}
    out = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        out.append(label if labels.count(label) == 1 else f"{label} ({seen[label]})")
    return out


def _series(rec: Record, key: str) -> tuple:
    points = [(r.epoch, getattr(r, key)) for r in rec.metrics if getattr(r, key) is not None and r.epoch is not None]
    return [p[0] for p in points], [p[1] for p in points]


def png(fig) -> bytes:
    """The figure's PNG, marked as nettrain compare's (the Software text chunk)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    buffer = io.BytesIO()
    FigureCanvasAgg(fig).print_png(buffer, metadata={"Software": MARK})
    return buffer.getvalue()


VIEWPORT = '<meta name="viewport" content="width=device-width, initial-scale=1">'   # a phone's width, not 980 px
# the table scrolls inside its own box, which is as wide as the page: a dozen columns are wider than a phone
PAGE_CSS = ".scroll{overflow-x:auto;max-width:100%}\nbody{padding:0 max(8px,min(24px,3vw)) 32px}\n"


def page(comparison: Comparison, image: Optional[bytes]) -> str:
    header, rows = comparison.columns()
    names = {e.name: e for e in comparison.entries}
    cells = []
    for row in rows:
        entry = names[row[0]]
        report = entry.record.path / "report.html" if entry.record is not None else None
        name = _e(row[0])
        if report is not None and report.is_file():   # a relative link: the page and the runs move together
            href = os.path.relpath(os.path.abspath(report), os.path.abspath(comparison.html.parent))
            name = f'<a href="{_e(quote(Path(href).as_posix()))}">{name}</a>'
        cells.append([name] + [_e(c) for c in row[1:]])
    title = f"nettrain compare: {len(rows)} run{'s' if len(rows) != 1 else ''}"
    keys = ", ".join(comparison.keys) or "none (the runs have the same config)"
    parts = [f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8>{HTML_MARK}{VIEWPORT}<title>{_e(title)}"
             f"</title><style>{CSS}{PAGE_CSS}</style></head><body>", f"<h1>{_e(title)}</h1>",
             f"<p>The config keys that differ: {_e(keys)}. Metrics: {_e(_what(comparison.task))}.</p>",
             f'<div class=scroll>{_table([_e(h) for h in header], cells, left=1 + len(comparison.keys))}</div>']
    parts += [f'<p class="note">{_e(n)}</p>' for n in comparison.notes]
    parts += ["<h2>Curves</h2>", _figures([(PNG, "Each run's loss and validation curves", image)]) if image
              else "<p>No run has a finished epoch to draw.</p>", "</body></html>\n"]
    return "\n".join(parts)


def _what(task: str) -> str:
    return {"classification": "classification runs, compared on accuracy",
            "regression": "regression runs, compared on the loss"}.get(
        task, "runs of different tasks (or of no known one), compared on what they share: the loss")


# ---- writing -----------------------------------------------------------------------------------------

def write(entries: list, keys: list, out: Path) -> Comparison:
    """Draw and write compare.png and compare.html into `out`, after checking that neither would replace a file
    nettrain compare did not write."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NettrainError(f"--out {printable(out)} is a file; give a folder for compare.html and compare.png")
    if (out / MANIFEST).exists():
        raise NettrainError(f"--out {printable(out)} is a run directory, which holds only what its fit wrote; give "
                            f"another folder (the default is the folder that holds the runs)")
    html_path, png_path = out / HTML, out / PNG
    _check_ours(html_path, HTML_MARK.encode())
    _check_ours(png_path, PNG_MARK)
    task = shared_task(entries)
    notes = _notes(entries)
    fig = figure(entries, task)
    image = png(fig) if fig is not None else None
    make_dir(out)   # the folder the user chose (or that holds the runs): a real one, and nothing below it is a link
    if image is not None:
        write_file(png_path, lambda f: f.write(image), root=out)
    comparison = Comparison(entries, keys, task, html_path, png_path if image is not None else None, notes)
    write_text(html_path, page(comparison, image), root=out)
    return comparison


def _check_ours(path: Path, mark: bytes):
    if not path.exists() and not path.is_symlink():
        return
    head = b""
    if path.is_file() and not path.is_symlink():
        try:
            with open_read(path, LIMITS["json"], "file", follow=False) as f:
                head = f.read(HEAD)
        except (OSError, FileError):   # unreadable, past the limit, or replaced by a link or a FIFO since
            pass
    if mark not in head:
        raise NettrainError(f"{printable(path)} exists and was not written by nettrain compare; move it away, or "
                            f"give --out another folder")


def _notes(entries: list) -> list:
    split = split_of(entries)
    if split == "train":
        return ["no run held data out (all its data trained): the per-epoch columns are the training data's"]
    on_test = [e.name for e in entries if e.record is not None and e.record.metrics and
               e.record.held_out == "test"]
    if not on_test:
        return []
    which = "every run" if len(on_test) == len(entries) else ", ".join(on_test)
    return [f"{split} columns of {which}: the test split, evaluated each epoch (no validation split; it chose "
            f"nothing)"]
