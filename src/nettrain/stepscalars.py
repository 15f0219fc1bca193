"""The per-step scalar stream (`--run.log_every_n_steps N`): every N optimizer steps, the step's training loss and
learning rate, to TensorBoard (tags step/train_loss and step/lr, in the run's tensorboard/steps/ folder) and to
steps.csv in the run directory. A callback (callbacks.py) of the main process only.

The loss is read (`loss.item()`, which waits for the device) on the logged steps only: off, or between them, the
stream costs nothing a step. The steps have their own TensorBoard folder because a resume's writer purges the
events at and after the step it resumes from, and the epoch scalars count epochs: one folder would let the epoch
writer's purge (step = the resumed epoch + 1) erase almost every step scalar before it.
"""
from __future__ import annotations

import csv
import io

from .callbacks import Callback
from .files import LIMITS, append_text, open_read
from .runs import RUN_FILES, RunDir, tensorboard_writer, write_atomically

COLUMNS = ("step", "epoch", "train_loss", "lr")
FOLDER = "steps"   # under tensorboard/: the step scalars' own event files


class StepScalars(Callback):
    """Every `every` optimizer steps, the step's loss and lr into steps.csv and TensorBoard (when `tensorboard`)."""

    def __init__(self, run: RunDir, every: int, tensorboard: bool):
        self.run, self.every, self.tensorboard, self.writer = run, every, tensorboard, None

    def on_fit_start(self, fit):
        """A resume drops the rows of steps it trains again (after `fit.step`, the checkpoint's), as metrics.csv
        drops an interrupted epoch's; TensorBoard purges them itself (purge_step)."""
        path = self.run.path / RUN_FILES["steps"]
        kept = [row for row in read_steps(path) if int(row["step"]) <= fit.step] if path.is_file() else []
        text = io.StringIO()
        w = csv.writer(text)
        w.writerow(COLUMNS)
        w.writerows([row[c] for c in COLUMNS] for row in kept)
        write_atomically(self.run.claim(path), text.getvalue())
        if self.tensorboard:
            self.writer = tensorboard_writer(self.run, folder=FOLDER, purge_step=fit.step + 1 if fit.step else None)

    def on_step_end(self, fit, loss):
        if fit.step % self.every:
            return
        value, lr = float(loss.item()), float(fit.optimizer.param_groups[0]["lr"])
        append_text(self.run.path / RUN_FILES["steps"], f"{fit.step},{fit.epoch + 1},{value!r},{lr!r}\n",
                    root=self.run.path)
        if self.writer is not None:
            self.writer.add_scalar("step/train_loss", value, fit.step)
            self.writer.add_scalar("step/lr", lr, fit.step)

    def on_epoch_end(self, fit, epoch, metrics):
        if self.writer is not None:
            self.writer.flush()

    def on_fit_end(self, fit, test):
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def read_steps(path) -> list:
    """steps.csv as a list of {column: text}."""
    with open_read(path, LIMITS["json"], "steps file", text=True, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))
