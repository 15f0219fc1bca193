"""The report's figures, drawn from a run's records (read.Record) as PNG bytes.

Each figure is a small function that returns a matplotlib Figure, or None when the run has nothing to draw it
from (a regression has no confusion matrix; a run of an older nettrain has no predictions.npz). They use
matplotlib's object API (Figure and its Agg canvas) rather than pyplot: no GUI backend is ever chosen, nothing
global is changed in a process (a notebook's own plots keep their backend), and nothing is left open.
"""
from __future__ import annotations

import io
import math
from typing import Optional

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from . import stats
from .read import Record

DPI = 100
RIGHT, WRONG = "#1a7f37", "#cf222e"


def _figure(width: float, height: float, left=0.8, bottom=0.6, right=0.2, top=0.45, **space) -> Figure:
    """A figure with fixed margins in inches: matplotlib's automatic layouts cost more than the drawing itself
    (a live update must be cheap)."""
    fig = Figure(figsize=(width, height), dpi=DPI)
    fig.subplots_adjust(left=left / width, bottom=bottom / height, right=1 - right / width, top=1 - top / height,
                        **space)
    return fig


def png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    FigureCanvasAgg(fig).print_png(buffer)
    return buffer.getvalue()


def _name(name, width: int = 14) -> str:
    """A class name short enough for a tick label or a title."""
    name = str(name)
    return name if len(name) <= width else name[:width - 1] + "\u2026"


def _classes(rec: Record) -> list:
    if rec.classes is not None:
        return rec.classes
    names = rec.predictions.get("classes")
    return [str(c) for c in names] if names is not None else []


def _series(rec: Record, key: str) -> tuple:
    points = [(r.epoch, getattr(r, key)) for r in rec.metrics if getattr(r, key) is not None and r.epoch is not None]
    return [p[0] for p in points], [p[1] for p in points]


# ---- from metrics.csv (cheap: drawn at every live update) ----

def _style(rec: Record) -> str:
    """Markers on the points while they can be told apart (a long run is a line)."""
    return "o-" if len(rec.metrics) <= 50 else "-"


def learning_curves(rec: Record) -> Optional[Figure]:
    if not rec.metrics:
        return None
    fig = _figure(10, 3.6, wspace=0.25)
    loss_ax, score_ax = fig.subplots(1, 2)
    for key, label in (("train_loss", "train"), ("val_loss", rec.held_out)):
        x, y = _series(rec, key)
        if x:
            loss_ax.plot(x, y, _style(rec), label=label, markersize=3)
    loss_ax.set(xlabel="epoch", ylabel="loss", title="Loss")
    if any(r.train_acc is not None or r.val_acc is not None for r in rec.metrics):
        for key, label in (("train_acc", "train"), ("val_acc", rec.held_out)):
            x, y = _series(rec, key)
            if x:
                score_ax.plot(x, [100 * v for v in y], _style(rec), label=label, markersize=3)
        score_ax.set(xlabel="epoch", ylabel="accuracy (%)", title="Accuracy")
    else:
        x, y = _series(rec, "val_mae")
        score_ax.plot(x, y, _style(rec), label=rec.held_out, markersize=3)
        score_ax.set(xlabel="epoch", ylabel="mean absolute error", title=f"{rec.held_out.capitalize()} MAE")
    for ax in (loss_ax, score_ax):
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend()
        _epoch_axis(ax, rec)
    return fig


def _epoch_axis(ax, rec: Record):
    """Whole epochs on the x axis; a run of one to three epochs gets half an epoch of margin each side, where
    matplotlib would otherwise span 0.96 to 1.04 around a single epoch's points."""
    from matplotlib.ticker import MaxNLocator
    epochs = [r.epoch for r in rec.metrics if r.epoch is not None]
    if epochs and max(epochs) - min(epochs) < 3:   # MaxNLocator still draws tenths over so short a span
        ax.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)
        ax.set_xticks(range(int(min(epochs)), int(max(epochs)) + 1))
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def lr_schedule(rec: Record) -> Optional[Figure]:
    x, y = _series(rec, "lr")
    if not x:
        return None
    fig = _figure(6, 3.2, left=0.9)
    ax = fig.subplots()
    ax.plot(x, y, _style(rec), markersize=3)
    ax.set(xlabel="epoch", ylabel="learning rate (at the epoch's end)", title="Learning-rate schedule")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    _epoch_axis(ax, rec)
    return fig


# ---- from confusion_matrix.csv ----

def _label_room(names: list, size: float) -> float:
    """Inches below an axis for its class names, rotated 45 degrees when there are many."""
    longest = max((len(_name(n)) for n in names), default=1)
    return 0.35 + (0.7 * longest * size / 72 if len(names) > 5 else size / 72)


def _ticks(ax, names: list, size: float):
    n = len(names)
    step = max(1, math.ceil(n / 40))   # at most 40 labels an axis: a hundred classes stay legible
    ticks = list(range(0, n, step))
    ax.set_xticks(ticks, [_name(names[i]) for i in ticks], rotation=45 if n > 5 else 0,
                  ha="right" if n > 5 else "center", rotation_mode="anchor", fontsize=size)
    ax.set_yticks(ticks, [_name(names[i]) for i in ticks], fontsize=size)


def confusion_matrix(rec: Record) -> Optional[Figure]:
    if rec.confusion is None:
        return None
    cm, names = rec.confusion, rec.classes
    n = len(cm)
    with np.errstate(divide="ignore", invalid="ignore"):
        rows = np.nan_to_num(cm / cm.sum(1, keepdims=True))
    size = max(5, min(9, 240 / max(n, 1)))
    room = _label_room(names, size) + 0.35
    side = min(6.0, 2.6 + 0.25 * n)
    fig = _figure(2 * side + 2 * room + 1.6, side + room + 0.5, left=room + 0.1, bottom=room, right=0.7,
                  wspace=(room + 0.6) / side)
    for ax, values, title, fmt in zip(fig.subplots(1, 2), (cm, rows), ("counts", "row-normalized (recall)"),
                                      ("{:d}", "{:.2f}")):
        image = ax.imshow(values, cmap="Blues", vmin=0, vmax=None if values is cm else 1)
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.03)
        _ticks(ax, names, size)
        ax.set(xlabel="predicted class", ylabel="true class", title=f"Confusion matrix: {title}")
        if n <= 12:   # numbers in the cells while they are legible
            top = values.max() or 1
            for i in range(n):
                for j in range(n):
                    ax.text(j, i, fmt.format(values[i, j].item()), ha="center", va="center", fontsize=8,
                            color="white" if values[i, j] > 0.6 * top else "black")
    return fig


def per_class_scores(rec: Record) -> Optional[Figure]:
    if rec.confusion is None:
        return None
    scores = stats.per_class(rec.confusion)
    names = rec.classes
    n = len(names)
    size = max(5, min(10, 300 / max(n, 1)))
    room = _label_room(names, size)
    width = min(24, max(6.5, 0.45 * n + 2))
    fig = _figure(width, 3.2 + room, bottom=room + 0.2, right=1.3)
    ax = fig.subplots()
    x = np.arange(n)
    for k, key in enumerate(("precision", "recall", "f1")):
        ax.bar(x + (k - 1) * 0.27, np.nan_to_num(scores[key]), width=0.27, label=key if key != "f1" else "F1")
    ax.set_xticks(x, [_name(c) for c in names], rotation=45 if n > 5 else 0, ha="right" if n > 5 else "center",
                  rotation_mode="anchor", fontsize=size)
    ax.set(xlabel="class", ylabel="score", ylim=(0, 1.05), xlim=(-0.6, n - 0.4),
           title="Per-class precision, recall and F1 (test split)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return fig


# ---- from predictions.npz ----

def _image_grid(images: np.ndarray, titles: list, wrong: np.ndarray, suptitle: str, colour: str = None) -> Figure:
    """The images side by side, each over its title (red and framed when wrong; all in `colour` when given: labels
    that are not predictions). One axes and one montage image, not an axes per image: a grid of 24 costs as much
    as one plot."""
    n, h, w, c = images.shape
    cols = min(8, n)
    rows = math.ceil(n / cols)
    cell, title = 1.45, 0.42   # inches: an image, and its two-line title under it
    gap = max(1, w // 8)
    below = math.ceil((h + gap) * title / cell)   # the title's room, in pixels of the images' scale
    pitch_y, pitch_x = h + gap + below, w + gap
    montage = np.full((rows * pitch_y + gap, cols * pitch_x + gap, 3), 255, dtype=np.uint8)
    for k, image in enumerate(images):
        r, q = divmod(k, cols)
        y, x = gap + r * pitch_y, gap + q * pitch_x
        montage[y:y + h, x:x + w] = image if c == 3 else image[..., :1]
    fig = _figure(cell * cols + 0.2, (cell + title) * rows + 0.45, left=0.1, bottom=0.05, right=0.1, top=0.45)
    ax = fig.subplots()
    ax.imshow(montage, interpolation="nearest", aspect="auto")
    ax.set_axis_off()
    for k, (text, bad) in enumerate(zip(titles, wrong)):
        r, q = divmod(k, cols)
        y, x = gap + r * pitch_y, gap + q * pitch_x
        ax.text(x + w / 2, y + h + gap / 2, text, ha="center", va="top", fontsize=8,
                color=colour or (WRONG if bad else RIGHT))
        if bad:
            ax.add_patch(Rectangle((x - 0.5, y - 0.5), w, h, fill=False, edgecolor=WRONG, linewidth=2.5))
    fig.suptitle(suptitle, fontsize=10)
    return fig


def test_examples(rec: Record) -> Optional[Figure]:
    p, names = rec.predictions, _classes(rec)
    if "shown_images" not in p or not len(p["shown_images"]):
        return None
    wrong = p["shown_true"] != p["shown_pred"]
    titles = [f"{'WRONG: ' if bad else ''}pred {_name(names[pr], 10)}\ntrue {_name(names[t], 10)}"
              for t, pr, bad in zip(p["shown_true"], p["shown_pred"], wrong)]
    return _image_grid(p["shown_images"], titles, wrong,
                       f"{len(titles)} test images, spread through the test split: predicted and true class "
                       f"({int(wrong.sum())} wrong, in red)")


def top_losses(rec: Record) -> Optional[Figure]:
    p, names = rec.predictions, _classes(rec)
    if "top_texts" in p and len(p["top_texts"]):
        return top_loss_texts(rec)
    if "top_images" not in p or not len(p["top_images"]):
        return None
    wrong = p["top_true"] != p["top_pred"]
    confidence = p["top_probs"].max(1)
    titles = [f"pred {_name(names[pr], 10)} {c:.0%}\ntrue {_name(names[t], 10)}, loss {loss:.2f}"
              for t, pr, c, loss in zip(p["top_true"], p["top_pred"], confidence, p["top_loss"])]
    return _image_grid(p["top_images"], titles, wrong,
                       "Top losses: the test images the model got most confidently wrong (highest loss first)")


TEXT_WIDTH = 120   # characters of a text on its line in the figure (report.html's table shows the whole kept text)


def top_loss_texts(rec: Record) -> Figure:
    """A text run's top losses: one line per text, highest loss first, with its true and predicted class and the
    confidence (red when wrong)."""
    p, names = rec.predictions, _classes(rec)
    texts = [" ".join(str(t).split()) for t in p["top_texts"]]   # newlines and tabs would break the line
    rows = len(texts)
    fig = _figure(13, 0.32 * rows + 1.1, left=0.1, bottom=0.1, right=0.1, top=0.45)
    ax = fig.subplots()
    ax.set_axis_off()
    ax.set(xlim=(0, 1), ylim=(rows + 0.5, -0.8))
    columns = ((0.0, "loss"), (0.05, "true"), (0.14, "predicted (confidence)"), (0.30, "text"))
    for x, header in columns:
        ax.text(x, -0.4, header, fontsize=9, fontweight="bold", va="center")
    for i, (text, t, pr, probs, loss) in enumerate(zip(texts, p["top_true"], p["top_pred"], p["top_probs"],
                                                       p["top_loss"])):
        colour = WRONG if t != pr else RIGHT
        cells = (f"{loss:.2f}", _name(names[t], 14), f"{_name(names[pr], 14)} {probs.max():.0%}",
                 text if len(text) <= TEXT_WIDTH else text[:TEXT_WIDTH - 1] + "\u2026")
        for (x, _), cell in zip(columns, cells):
            ax.text(x, i + 0.5, cell, fontsize=8, va="center", color=colour if x < 0.30 else "black")
    fig.suptitle("Top losses: the test texts the model got most confidently wrong (highest loss first)", fontsize=10)
    return fig


def calibration(rec: Record) -> Optional[Figure]:
    p = rec.predictions
    if "confidence" not in p or not len(p["confidence"]):
        return None
    c = stats.calibration(p["confidence"], p["correct"])
    fig = _figure(6, 5.4, left=0.9, top=0.5, hspace=0.12)
    top, bottom = fig.subplots(2, 1, height_ratios=(3, 1), sharex=True)
    centres = (c["edges"][:-1] + c["edges"][1:]) / 2
    used = c["count"] > 0
    top.bar(centres[used], c["accuracy"][used], width=0.09, color="#4c72b0", label="accuracy in the bin")
    top.plot([0, 1], [0, 1], "--", color="gray", label="perfectly calibrated")
    top.plot(c["confidence"][used], c["accuracy"][used], "o", color="#dd8452", label="mean confidence")
    top.set(ylabel="accuracy", ylim=(0, 1.02), xlim=(0, 1),
            title=f"Calibration, {int(c['count'].sum()):,} test examples: ECE {c['ece']:.3f}")
    top.legend(loc="upper left", fontsize=8)
    top.grid(alpha=0.3)
    bottom.bar(centres, c["count"], width=0.09, color="#8c8c8c")
    bottom.set(xlabel="confidence (top class probability)", ylabel="examples")
    return fig


def decision_boundary(rec: Record) -> Optional[Figure]:
    p, names = rec.predictions, _classes(rec)
    if "boundary_class" not in p:
        return None
    fig = _figure(6, 5)
    ax = fig.subplots()
    n = max(len(names), int(p["boundary_class"].max()) + 1)
    colours = [f"C{i % 10}" for i in range(n)]
    ax.contourf(p["boundary_x"], p["boundary_y"], p["boundary_class"], levels=np.arange(n + 1) - 0.5,
                cmap=ListedColormap(colours), alpha=0.25)
    if n > 1:
        ax.contour(p["boundary_x"], p["boundary_y"], p["boundary_class"], levels=np.arange(n - 1) + 0.5,
                   colors="black", linewidths=1)
    points, true = p["points"], p["points_true"]
    for k in range(n):
        mine = true == k
        if mine.any():
            ax.scatter(points[mine, 0], points[mine, 1], s=14, color=colours[k], edgecolors="black", linewidths=0.3,
                       label=f"class {_name(names[k]) if k < len(names) else k}")
    ax.set(xlabel="input 1", ylabel="input 2", title="Decision regions and the test points (true class)")
    ax.legend(fontsize=8)
    return fig


def regression_fit(rec: Record) -> Optional[Figure]:
    p = rec.predictions
    if "curve_x" not in p:
        return None
    fig = _figure(6, 4.2)
    ax = fig.subplots()
    ax.scatter(p["points"], p["points_true"], s=12, color="#4c72b0", label="test points (true)")
    ax.plot(p["curve_x"], p["curve_y"], color="#dd8452", linewidth=2, label="the model's prediction")
    ax.set(xlabel="input", ylabel="target", title="Regression fit on the test split")
    ax.legend()
    ax.grid(alpha=0.3)
    return fig


def _curves_caption(rec: Record) -> str:
    """The learning curves' caption: the run's own score and the split each epoch was evaluated on."""
    score = "accuracy" if any(r.train_acc is not None or r.val_acc is not None for r in rec.metrics) else \
        "mean absolute error"
    return f"Loss and {score} per epoch, on the training split and the {rec.held_out} split"


# file name, caption (or a function of the run giving it), function, cheap (drawn at every live update; the others
# once, at the end)
FIGURES = [
    ("learning_curves.png", _curves_caption, learning_curves, True),
    ("lr_schedule.png", "The learning rate per epoch", lr_schedule, True),
    ("confusion_matrix.png", "Confusion matrix on the test split", confusion_matrix, False),
    ("per_class.png", "Per-class precision, recall and F1", per_class_scores, False),
    ("test_examples.png", "Test images with their predicted and true classes", test_examples, False),
    ("top_losses.png", "Top losses: the most confidently wrong test images (or texts)", top_losses, False),
    ("calibration.png", "Calibration: confidence against accuracy", calibration, False),
    ("decision_boundary.png", "Decision boundary of the 2-D classifier", decision_boundary, False),
    ("regression_fit.png", "The fitted regression curve", regression_fit, False),
]


def render(rec: Record, cheap_only: bool = False) -> list:
    """[(file name, caption, PNG bytes)] for every figure the run has the data for."""
    out = []
    for name, caption, draw, cheap in FIGURES:
        if cheap_only and not cheap:
            continue
        fig = draw(rec)
        if fig is not None:
            out.append((name, caption(rec) if callable(caption) else caption, png(fig)))
    return out
