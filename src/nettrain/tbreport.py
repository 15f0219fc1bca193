"""TensorBoard: while a fit trains, its scalars, a grid of sample images and the model's graph (TensorBoardLog); at
its end, what the report shows: its figures beside the scalars, and the run's hyperparameters with its final metrics
(the HParams tab).

The figures are the PNGs the report has just written into RUN/figures/ (report/), added as images as they are: drawn
and encoded once, not again for TensorBoard. Everything goes into the run's own tensorboard/ folder, in one more event file (the training's
writer is closed by then; SummaryWriter.add_hparams would make a sub-run folder of its own), claimed in the run's
record so that --overwrite deletes it. Only the main process writes (on the others TensorBoardLog is NullLog).
"""
from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import torch

from .files import LIMITS, read_bytes, read_text
from .metrics_row import MetricsRow, unit_words
from .runs import RunDir, tensorboard_writer

# the test split's final metrics (test_metrics.json: loss and accuracy, or mse, mae and r2) -> their TensorBoard tags
FINAL = {"loss": "final/test_loss", "accuracy": "final/test_accuracy", "mse": "final/test_mse",
         "mae": "final/test_mae", "r2": "final/test_r2"}
TAG = "report/"   # the figures' tags: report/learning_curves, report/confusion_matrix, ...


def hparams_of(config: dict, prefix: str = "") -> dict:
    """The config (config.yaml's sections) as flat `section.key` -> number or string: HParams holds nothing else.
    Lists and mappings of values become their JSON text, booleans true/false, and unset (null) keys are left out
    (a key that is a number in one run and text in another would split its column in the HParams table)."""
    out = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value and all(isinstance(k, str) for k in value):
            out.update(hparams_of(value, f"{name}."))
        elif isinstance(value, bool):
            out[name] = "true" if value else "false"
        elif isinstance(value, (int, float, str)):
            out[name] = value
        elif value is not None:
            out[name] = json.dumps(value, default=str)
    return out


def final_metrics(history: list, test: dict) -> dict:
    """Tag -> value: the test split's metrics (`test`: test_metrics.json's; a classification's macro precision,
    recall and F1 too), and the last epoch's train loss and held-out metrics (`history`: MetricsRow)."""
    out = {tag: float(test[key]) for key, tag in FINAL.items() if test.get(key) is not None}
    out.update({f"final/test_macro_{k}": float(v) for k, v in (test.get("macro") or {}).items()})
    if not history:
        return out
    last = history[-1]
    split = last.val_split or "val"
    for value, tag in ((last.train_loss, "final/train_loss"), (last.train_acc, "final/train_accuracy"),
                       (last.val_loss, f"final/{split}_loss"), (last.val_acc, f"final/{split}_accuracy")):
        if value is not None and tag not in out:
            out[tag] = float(value)
    return out


def per_class(test: dict) -> dict:
    """Tag -> value: each class's precision, recall and F1 on the test split, from test_metrics.json (scalars only:
    as HParams columns, 100 classes would make 300 of them)."""
    return {f"final/test_{k}/{name}": float(scores[k]) for k in ("precision", "recall", "f1")
            for name, scores in (test.get("per_class") or {}).items()}


def figures_of(run_path: Path) -> list:
    """[(tag, path)] of the report's figures in the run, in the report's order."""
    from .report import FIGURES as FOLDER
    folder = Path(run_path) / FOLDER
    if not folder.is_dir():   # a run without a report (run.report: false): no matplotlib to import for their names
        return []
    from .report.figures import FIGURES
    return [(TAG + name[:-4], folder / name) for name, _, _, _ in FIGURES if (folder / name).is_file()]


def write(run, config: dict, history: list) -> None:
    """The report's figures (at the last epoch's step) and the hparams with the final metrics (the run's
    test_metrics.json, as the fit wrote it; `history`: its MetricsRow), into `run`'s tensorboard/ folder (run: a
    RunDir, whose lock the caller holds)."""
    from PIL import Image
    from tensorboard.compat.proto.summary_pb2 import Summary
    from torch.utils.tensorboard.summary import hparams
    step = int(history[-1].epoch or 0) if history else 0
    writer = tensorboard_writer(run)   # the run's own tensorboard/ folder, never a link planted in its place
    try:
        for tag, path in figures_of(run.path):   # the PNG's own bytes: add_image would decode and re-encode it
            # (0.9 of the 1.3 s seven digits figures took that way)
            data = read_bytes(path, LIMITS["image"], "figure")
            with Image.open(io.BytesIO(data)) as image:   # the header only: size and mode
                (width, height), channels = image.size, len(image.getbands())
            picture = Summary.Image(height=height, width=width, colorspace=channels, encoded_image_string=data)
            writer.file_writer.add_summary(Summary(value=[Summary.Value(tag=tag, image=picture)]), step)
        test = json.loads(read_text(run.test_metrics, LIMITS["json"], "run file")) \
            if run.test_metrics.is_file() else {}
        metrics = final_metrics(history, test)
        if metrics:   # the HParams tab lists a run by its metrics: without any it has nothing to show
            chosen = {k: v for k, v in config.items() if k != "run"}   # run.*: where and how it logs, not numbers
            for summary in hparams(hparams_of(chosen), metrics):   # add_hparams' own route, minus its sub-run
                writer.file_writer.add_summary(summary)
            for tag, value in {**metrics, **per_class(test)}.items():
                writer.add_scalar(tag, value, step)
    finally:
        writer.close()


class TensorBoardLog:
    """Scalars, a grid of sample images and the model graph, via TensorBoard's own SummaryWriter."""

    def __init__(self, run: RunDir, enabled: bool, purge_step=None, unit: str = "ex"):
        self.writer = None
        self.speed_tag = f"speed/{unit_words(unit)}_per_s"   # the data kind's examples: images, texts, rows
        if enabled:
            self.writer = tensorboard_writer(run, purge_step=purge_step)

    def scalars(self, row: MetricsRow, epoch: int):
        if self.writer is None:
            return
        split = row.val_split or "val"   # the test split shown each epoch is labelled test, not val
        for value, tag in ((row.train_loss, "loss/train"), (row.val_loss, f"loss/{split}"),
                           (row.train_acc, "accuracy/train"), (row.val_acc, f"accuracy/{split}"),
                           (row.val_mae, f"mae/{split}"), (row.lr, "lr"), (row.examples_per_s, self.speed_tag),
                           (row.padding_waste, "data/padding_waste")):
            if value is not None:
                self.writer.add_scalar(tag, value, epoch)
        self.writer.flush()

    def images(self, x_uint8: torch.Tensor):
        if self.writer is None:
            return
        if x_uint8.shape[1] in (1, 3):   # TensorBoard tiles them 8 a row itself: no torchvision to import (146 modules)
            self.writer.add_images("samples", x_uint8[:64].cpu(), 0)
        else:   # TensorBoard's own grid takes gray or RGB only
            from torchvision.utils import make_grid
            self.writer.add_image("samples", make_grid(x_uint8[:64].cpu(), nrow=8), 0)

    def graph(self, model, batches):
        """The model's graph, traced on two examples of the first batch (drawn only when TensorBoard is on)."""
        if self.writer is None:
            return
        example = next(iter(batches))[0][:2]
        if example.is_floating_point():   # traced outside autocast: batches stored rounded to bf16 go back to float32
            example = example.float()
        try:
            import warnings
            with warnings.catch_warnings():   # add_graph traces with torch.jit, which warns it is deprecated
                warnings.simplefilter("ignore")
                self.writer.add_graph(model, example)
        except Exception as e:   # some user models do not trace; the graph is a nicety
            print(f"warning: TensorBoard graph skipped ({type(e).__name__}: {str(e).splitlines()[0][:100]})",
                  file=sys.stderr)

    def close(self):
        if self.writer is not None:
            self.writer.close()

    def finish(self, run: RunDir, config: dict, history: list):
        """At the fit's end (after the report): its figures, and the hparams with the final metrics (tbreport.py)."""
        if self.writer is not None:
            write(run, config, history)
