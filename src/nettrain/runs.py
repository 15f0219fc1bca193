"""The run directory: the record of one training run, enough on its own to repeat, resume, report or ship it.

    runs/<timestamp>-<dataset>-<model>/
        config.yaml            the resolved config (`nettrain fit --config` repeats the run)
        environment.json       versions, device, precision, command line
        metrics.csv            one row per epoch
        confusion_matrix.csv   test-split confusion matrix (classification)
        last.pt, best.pt       checkpoints (torch.load(..., weights_only=True))
        best.safetensors       best weights only
        tensorboard/           TensorBoard event files

An existing directory is never overwritten unless asked (`--overwrite`).
"""
from __future__ import annotations

import csv
import io
import itertools
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import torch

from .errors import NettrainError

# val_* are the split evaluated each epoch; val_split names it: "val" (a validation split, which chooses best.pt)
# or "test" (no validation split: shown only, best.pt is the last epoch). Appended last: existing readers keep theirs.
METRIC_COLUMNS = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "val_mae", "lr", "seconds",
                  "images_per_s", "data_wait", "val_split"]
TEXT_COLUMNS = {"val_split"}


def write_atomically(path: Path, text: str):
    """Replace `path` by `text` so that a reader (a resume, a report) sees the old file or the new one, never half."""
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:   # newline="": csv's own line ends are kept
        f.write(text)
    os.replace(tmp, path)


# Everything nettrain writes into a run directory, by RunDir's name for it (a new kind of output is added here):
# --overwrite deletes a directory only when it holds nothing else, so a folder of the user's is never taken for a run.
RUN_FILES = {"config": "config.yaml", "environment": "environment.json", "metrics": "metrics.csv",
             "confusion": "confusion_matrix.csv", "last": "last.pt", "best": "best.pt",
             "best_safetensors": "best.safetensors", "tensorboard": "tensorboard"}
# and what an interrupted atomic write leaves: write_atomically's name.tmp, checkpoint.save's .name.tmp
RUN_NAMES = set(RUN_FILES.values()) | {Path(f).with_suffix(".tmp").name for f in RUN_FILES.values()} | \
    {f".{f}.tmp" for f in RUN_FILES.values()}


def _file(key: str) -> property:
    return property(lambda self: self.path / RUN_FILES[key])


class RunDir:
    def __init__(self, path):
        self.path = Path(path)

    @classmethod
    def create(cls, path, dataset: str, model: str, overwrite: bool) -> "RunDir":
        if path is None:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            safe_model = model.replace("/", "_").replace(":", "_").replace(".py", "")
            base = Path("runs") / f"{stamp}-{dataset}-{Path(safe_model).name}"
            if Path("runs").exists() and not Path("runs").is_dir():
                raise NettrainError("a file named runs is where run directories go; move it, or give --run-dir")
            Path("runs").mkdir(exist_ok=True)
            for n in itertools.count(1):   # mkdir claims a name atomically: runs started in one second get their own
                path = base if n == 1 else base.with_name(f"{base.name}-{n}")
                try:
                    path.mkdir()
                    return cls(path)
                except FileExistsError:
                    continue
        path = Path(path)
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            if not overwrite:
                raise NettrainError(f"run directory {path} already exists; choose another --run-dir, "
                                    f"add --overwrite to replace it, or --resume {path} to continue it")
            if not path.is_dir():
                raise NettrainError(f"{path} is a file, not a run directory; choose another --run-dir")
            names = {p.name for p in path.iterdir()}
            if names - RUN_NAMES or RUN_FILES["config"] not in names:
                extra = sorted(names - RUN_NAMES)[:3]
                why = f"it holds {', '.join(extra)}, which nettrain did not write" if extra else "it has no config.yaml"
                raise NettrainError(f"{path} is not a nettrain run directory ({why}); refusing to overwrite it: "
                                    f"choose another --run-dir")
            shutil.rmtree(path)
        path.mkdir(parents=True, exist_ok=True)
        return cls(path)

    # ---- paths ----
    config, environment, metrics = _file("config"), _file("environment"), _file("metrics")
    confusion, tensorboard = _file("confusion"), _file("tensorboard")
    last, best, best_safetensors = _file("last"), _file("best"), _file("best_safetensors")

    def write_config(self, text: str):
        write_atomically(self.config, text)

    def write_environment(self, **extra):
        env = {"python": platform.python_version(), "torch": torch.__version__, "platform": platform.platform(),
               "argv": sys.argv, "cuda": torch.version.cuda, **extra}
        try:   # the installed version, without importing torchvision (seconds of start-up)
            from importlib.metadata import version
            env["torchvision"] = version("torchvision")
        except Exception:
            pass
        self.environment.write_text(json.dumps(env, indent=2, default=str), encoding="utf-8")

    def write_metrics(self, rows: list):
        """Rewrite metrics.csv from all rows so far (a resumed run drops rows of an interrupted epoch)."""
        text = io.StringIO()
        w = csv.DictWriter(text, METRIC_COLUMNS, extrasaction="ignore")
        w.writeheader()
        for row in rows:
            w.writerow({k: ("" if row.get(k) is None else row[k]) for k in METRIC_COLUMNS})
        write_atomically(self.metrics, text.getvalue())

    def write_confusion(self, matrix, classes):
        with open(self.confusion, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["true \\ predicted"] + list(classes))
            for name, row in zip(classes, matrix.tolist()):
                w.writerow([name] + row)


def read_metrics(path) -> list:
    """metrics.csv as a list of dicts of floats (empty cells -> None; val_split stays a string)."""
    with open(path, newline="", encoding="utf-8") as f:
        return [{k: _cell(k, v) for k, v in row.items()} for row in csv.DictReader(f)]


def _cell(key: str, value):
    if value in ("", None):
        return None
    return value if key in TEXT_COLUMNS else float(value)


class TensorBoardLog:
    """Scalars, a grid of sample images and the model graph, via TensorBoard's own SummaryWriter."""

    def __init__(self, run: RunDir, enabled: bool, purge_step=None):
        self.writer = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter
            self.writer = SummaryWriter(str(run.tensorboard), purge_step=purge_step)

    def scalars(self, row: dict, epoch: int):
        if self.writer is None:
            return
        split = row.get("val_split") or "val"   # the test split shown each epoch is labelled test, not val
        for key, tag in (("train_loss", "loss/train"), ("val_loss", f"loss/{split}"), ("train_acc", "accuracy/train"),
                         ("val_acc", f"accuracy/{split}"), ("val_mae", f"mae/{split}"), ("lr", "lr"),
                         ("images_per_s", "speed/images_per_s")):
            if row.get(key) is not None:
                self.writer.add_scalar(tag, row[key], epoch)
        self.writer.flush()

    def images(self, x_uint8: torch.Tensor):
        if self.writer is not None:
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
