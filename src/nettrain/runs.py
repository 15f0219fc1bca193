"""The run directory: the record of one training run, enough on its own to repeat, resume, report or ship it.

    runs/<timestamp>-<dataset>-<model>/
        config.yaml            the resolved config (`nettrain fit --config` repeats the run)
        environment.json       versions, device, precision, command line
        metrics.csv            one row per epoch
        steps.csv              with --run.log_every_n_steps N: every N optimizer steps, the loss and lr
        confusion_matrix.csv   test-split confusion matrix (classification)
        test_metrics.json      the test split's loss and metrics (per-class precision/recall/F1, or MSE/MAE/R^2)
        last.pt, best.pt       checkpoints (torch.load(..., weights_only=True))
        best.safetensors       best weights only
        tensorboard/           TensorBoard event files
        events.jsonl           one line per resume: when, from which epoch, what changed
        hang/rank{R}.txt       many processes: each rank's Python stacks, when the hang watchdog ended the job
        vocab.json             text runs: the vocabulary's tokens, in id order (<pad> 0, <unk> 1)
        mlflow_run_id.txt      with MLflow tracking: the MLflow run's id, which a resume continues
        .nettrain-run.json     the record of every file nettrain wrote here (what --overwrite deletes)
        .nettrain-lock         the writers' lock (runlock.py): one fit or resume at a time

An existing directory is never overwritten unless asked (`--overwrite`), and then only the files nettrain recorded
writing there are deleted.
"""
from __future__ import annotations

import csv
import io
import itertools
import json
import os
import platform
import re
import sys
import time
from pathlib import Path

from .files import append_text, make_dir, new_dir, remove, remove_dir, temporaries, write_error, write_text
from .files import LIMITS, FileError, open_read, read_text
from .errors import NettrainError
from .metrics_row import MetricsRow, columns as metric_columns
from .runlock import LOCK_NAME, RunLock



def write_atomically(path: Path, text: str):
    """Replace `path` by `text` so that a reader (a resume, a report) sees the old file or the new one, never half;
    a full disk or a read-only folder is one line, and a link in the way is never written through (files.py)."""
    write_text(path, text, root=Path(path).parent)


# Everything nettrain writes into a run directory, by RunDir's name for it. A new kind of output is one line here
# and one `run.claim(path)` before it is written: the record of claimed files (MANIFEST) is what --overwrite deletes.
RUN_FILES = {"config": "config.yaml", "environment": "environment.json", "metrics": "metrics.csv",
             "confusion": "confusion_matrix.csv", "last": "last.pt", "best": "best.pt",
             "best_safetensors": "best.safetensors", "tensorboard": "tensorboard", "events": "events.jsonl",
             "test_metrics": "test_metrics.json", "steps": "steps.csv",
             # many processes: each rank's Python stacks when the hang watchdog fired (engine/watchdog.py)
             "hang": "hang",
             # the report (nettrain/report/) and what a fit records for it of its model (nettrain/evidence.py)
             "report": "report.html", "figures": "figures", "predictions": "predictions.npz",
             "model_summary": "model_summary.txt", "vocab": "vocab.json",
             # nettrain export (export.py) and fit --lr auto's plot (lrfind.py)
             "onnx": "model.onnx", "onnx_meta": "model.onnx.json", "torchscript": "model.torchscript.pt",
             "torchscript_meta": "model.torchscript.pt.json", "lr_find": "lr_find.png",
             # the MLflow run this run logs to (mlflowlog.py): a resume or mlflow-sync continues it
             "mlflow": "mlflow_run_id.txt"}
# the checkpoints kept every --save-every epochs (keep.py), one name per epoch: epoch_003.pt
EPOCH_CHECKPOINT = "epoch_{epoch:03d}.pt"
# the folders among them: their files are recorded one by one, the folder itself is not
RUN_FOLDERS = (RUN_FILES["tensorboard"], RUN_FILES["figures"], RUN_FILES["hang"])
# the record of every file nettrain wrote into the run, relative to it, rewritten atomically when one is added
MANIFEST = ".nettrain-run.json"


# A cell starting with one of these is a formula to a spreadsheet (=HYPERLINK(...) runs on a click, +, -, @ as
# well; a tab or carriage return first is how OWASP's CSV-injection notes say filters are slipped past); a quote
# first is the spreadsheets' own mark of text, doubled so that reading the cell back is exact.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "'")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def spreadsheet_cell(text) -> str:
    """A name read from data (a class) as a CSV cell that a spreadsheet shows as text: prefixed with a single quote
    when it would start a formula; a plain number (-1) is left as it is. `from_spreadsheet_cell` undoes it."""
    text = str(text)
    return "'" + text if text.startswith(FORMULA_STARTS) and not _NUMBER.fullmatch(text) else text


def from_spreadsheet_cell(cell: str) -> str:
    return cell[1:] if cell.startswith("'") else cell


def _checked_path(path) -> Path:
    """--run-dir as given, refused in one line where a run cannot or must not go."""
    if not str(path).strip():
        raise NettrainError("--run-dir is empty (it would be the current folder); give a directory name, or leave "
                            "it out for runs/<time>-<dataset>-<model>")
    path = Path(path)
    if path.is_symlink():
        raise NettrainError(f"run directory {path} is a symbolic link (to {os.readlink(path)}); give the real "
                            f"directory, so that --overwrite and the lock act on what they name")
    for parent in path.parents:
        if parent.exists() and not parent.is_dir():
            raise NettrainError(f"cannot make run directory {path}: {parent} is a file; choose another --run-dir")
    if path.exists() and not path.is_dir():
        raise NettrainError(f"{path} is a file, not a run directory; choose another --run-dir")
    return path


def holds_no_run(path) -> bool:
    """Does the folder `path` hold nothing but what a fit killed between taking the lock and writing its record
    (MANIFEST) leaves: the lock file, a temporary of the record? Such a folder has no run in it to keep."""
    path = Path(path)
    try:
        names = set(os.listdir(path))
    except OSError:
        return False
    leftovers = {LOCK_NAME} | {p.name for p in temporaries(path / MANIFEST, path)}
    return bool(names) and names <= leftovers


def lacks_evidence(path) -> bool:
    """Does the finished run in `path` lack predictions.npz (the test images with their predictions, which the
    report's model figures draw), while best.pt could make it: a fit run with `run.report: false`?"""
    path = Path(path)
    return not (path / RUN_FILES["predictions"]).exists() and (path / RUN_FILES["test_metrics"]).exists() and \
        (path / RUN_FILES["best"]).exists()


def _file(key: str) -> property:
    return property(lambda self: self.path / RUN_FILES[key])


class RunDir:
    """A run directory. Files are written through `claim` first, so the record (MANIFEST) names every file
    nettrain wrote there, even one a kill interrupted; `--overwrite` deletes those and nothing else. A writer
    holds the directory's lock (`lock`) while it writes."""
    writes = True   # against engine/distributed.NullRun, which other ranks than the main one write through

    def __init__(self, path):
        self.path = Path(path)
        self._claimed = None   # the record's names, read when first needed
        self._lock = None

    @classmethod
    def create(cls, path, dataset: str, model: str, overwrite: bool) -> "RunDir":
        """A new run directory, locked for this process: the default name, an empty or new `path`, or (with
        `overwrite`) a previous run's directory with the files it recorded deleted."""
        if path is None:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            safe_model = model.replace("/", "_").replace(":", "_").replace(".py", "")
            base = Path("runs") / f"{stamp}-{dataset}-{Path(safe_model).name}"
            if Path("runs").exists() and not Path("runs").is_dir():
                raise NettrainError("a file named runs is where run directories go; move it, or give --run-dir")
            for n in itertools.count(1):   # mkdir claims a name atomically: runs started in one second get their own
                path = base if n == 1 else base.with_name(f"{base.name}-{n}")
                if new_dir(path):
                    return cls(path)._start()
        path = _checked_path(path)
        if path.exists() and holds_no_run(path):   # a fit killed before its record: taken over as an empty folder
            return cls(path)._take_over()
        if path.exists() and any(path.iterdir()):
            if not overwrite:
                raise NettrainError(f"run directory {path} already exists; choose another --run-dir, "
                                    f"add --overwrite to replace it, or --resume {path} to continue it")
            run = cls(path)
            run._refuse_unless_a_run()
            run.lock()   # before deleting: the run may be running
            try:
                run._delete_recorded()
            except BaseException:
                run.unlock()
                raise
            return run._start(locked=True)
        make_dir(path)   # the user's --run-dir, a real folder (a link to it was refused above)
        return cls(path)._start()

    def _take_over(self) -> "RunDir":
        """The folder a fit left holding only its lock (and a temporary of its record), locked, then emptied."""
        self.lock()   # a fit about to write its record still holds the lock: refused, naming it
        try:
            for tmp in temporaries(self.path / MANIFEST, self.path):
                remove(tmp, self.path)
        except BaseException:
            self.unlock()
            raise
        return self._start(locked=True)

    @classmethod
    def open(cls, path) -> "RunDir":
        """An existing run directory, locked for this process (resume)."""
        run = cls(path)
        run.lock()
        return run

    def _start(self, locked: bool = False) -> "RunDir":
        if not locked:
            self.lock()
        try:
            self._claimed = set()
            write_text(self.path / MANIFEST, json.dumps({"files": []}), root=self.path)
        except BaseException:
            self.unlock()
            raise
        return self

    # ---- the lock ----
    def lock(self, command: str = None) -> RunLock:
        """Take the directory's writer lock (RunLock), held until `unlock` or the process's end."""
        if self._lock is None:
            self._lock = RunLock(self.path, command).acquire()
        return self._lock

    def unlock(self):
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    # ---- the record of nettrain's files ----
    def recorded(self) -> set:
        """The names (relative to the directory) nettrain recorded writing here; None if there is no record."""
        try:
            return set(json.loads(read_text(self.path / MANIFEST, LIMITS["json"], "run record"))["files"])
        except (OSError, ValueError, KeyError, TypeError, FileError):
            return None

    def claim(self, path) -> Path:
        """Record `path` (in this directory) as nettrain's before it is written, so --overwrite may delete it, and
        its interrupted temporary, later; returns `path`."""
        path = Path(path)
        name = path.relative_to(self.path).as_posix()
        if self._claimed is None:
            self._claimed = self.recorded() or set()
        if name not in self._claimed:
            self._claimed.add(name)
            write_text(self.path / MANIFEST, json.dumps({"files": sorted(self._claimed)}, indent=1), root=self.path)
        return path

    def _refuse_unless_a_run(self):
        refuse = f"refusing to overwrite {self.path}"
        files = self.recorded()
        if files is None:
            raise NettrainError(f"{refuse}: it has no {MANIFEST}, the record nettrain keeps of the files it wrote, so "
                                f"it is not a nettrain run directory (or predates the record); choose another "
                                f"--run-dir, or delete it yourself")
        mine = [n for n in RUN_FILES.values() if (self.path / n).exists() and n not in RUN_FOLDERS
                and n not in files]
        if mine:   # a new run would write over them
            raise NettrainError(f"{refuse}: it holds {', '.join(mine)}, which nettrain did not record writing; move "
                                f"them away, or choose another --run-dir")

    def _delete_recorded(self):
        """Delete the files the record names (and their temporaries), then the folders this emptied; nothing
        else in the directory is touched."""
        folders = set()
        for name in self.recorded() or ():
            if not isinstance(name, str) or Path(name).is_absolute() or ".." in Path(name).parts:
                continue   # not a name nettrain writes: a record edited by hand deletes nothing outside the run
            p = self.path / name
            # files.remove walks from the run down without following a link: `sub/.bashrc` with `sub -> ~` is
            # not deleted, a link named in the record is removed itself, never what it points to
            for f in [p, *temporaries(p, self.path)]:
                remove(f, self.path)
            folders.update(q for q in p.parents if q != self.path and self.path in q.parents)
        for tmp in temporaries(self.path / MANIFEST, self.path):
            remove(tmp, self.path)
        for folder in sorted(folders, key=lambda q: len(q.parts), reverse=True):
            remove_dir(folder, self.path)   # only when empty and a real folder: a folder of the user's stays

    # ---- paths ----
    config, environment, metrics = _file("config"), _file("environment"), _file("metrics")
    confusion, tensorboard, events = _file("confusion"), _file("tensorboard"), _file("events")
    last, best, best_safetensors = _file("last"), _file("best"), _file("best_safetensors")
    test_metrics = _file("test_metrics")
    hang = _file("hang")   # hang/rank{R}.txt: rank R's stacks, written by the hang watchdog (engine/watchdog.py)

    def write_config(self, text: str):
        write_atomically(self.claim(self.config), text)

    def write_environment(self, **extra):
        import torch   # here, not at the top: report and compare read run folders without torch (1.7 s)
        env = {"python": platform.python_version(), "torch": torch.__version__, "platform": platform.platform(),
               "argv": sys.argv, "cuda": torch.version.cuda, "git": git_commit(), **extra}
        try:   # the installed version, without importing torchvision (seconds of start-up)
            from importlib.metadata import version
            env["torchvision"] = version("torchvision")
        except Exception:
            pass
        write_atomically(self.claim(self.environment), json.dumps(env, indent=2, default=str))

    def write_metrics(self, rows: list):
        """Rewrite metrics.csv from all rows so far (MetricsRow; a resumed run drops rows of an interrupted epoch)."""
        text = io.StringIO()
        w = csv.DictWriter(text, metric_columns(rows))
        w.writeheader()
        for row in rows:
            w.writerow(row.cells())
        write_atomically(self.claim(self.metrics), text.getvalue())

    def write_confusion(self, matrix, classes):
        text = io.StringIO()
        w = csv.writer(text)
        w.writerow(["true \\ predicted"] + [spreadsheet_cell(c) for c in classes])
        for name, row in zip(classes, matrix.tolist()):
            w.writerow([spreadsheet_cell(name)] + row)
        write_atomically(self.claim(self.confusion), text.getvalue())

    def write_test_metrics(self, summary: dict):
        write_atomically(self.claim(self.test_metrics), json.dumps(summary, indent=2))

    def add_event(self, **event):
        """Append one line to events.jsonl (resumes: when, from which epoch, what changed)."""
        line = json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **event}, default=str) + "\n"
        append_text(self.claim(self.events), line, root=self.path)   # one short append: whole or absent


def git_commit():
    """The commit checked out where the run was started (the user's code, for the record), None outside a git
    repository or without git; "+ changes" when files differ from it."""
    import subprocess
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=3)
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, timeout=3)
    except (OSError, subprocess.SubprocessError):   # no git, or a repository too slow to ask
        return None
    return sha.stdout.strip() + (" + changes" if dirty.returncode == 0 and dirty.stdout.strip() else "")


def read_metrics(path) -> list:
    """metrics.csv as a list of MetricsRow (numbers; empty cells None; an old run's column names mapped)."""
    with open_read(path, LIMITS["json"], "metrics file", text=True, newline="", encoding="utf-8") as f:
        return [MetricsRow.from_cells(row) for row in csv.DictReader(f)]


def tensorboard_writer(run: RunDir, folder: str = None, **options):
    """TensorBoard's SummaryWriter (with its `options`) writing into the run's tensorboard/ folder, made first as a
    real folder of the run: a planted `tensorboard -> elsewhere` is refused in one line, never written through. The
    event file it opens is claimed in the run's record. The one place nettrain makes a SummaryWriter. `folder`: a
    sub-folder of tensorboard/ (the step scalars', stepscalars.py), a run of its own to TensorBoard."""
    from torch.utils.tensorboard import SummaryWriter
    folder = make_dir(run.tensorboard / folder if folder else run.tensorboard, root=run.path)
    before = set(folder.iterdir())
    try:
        writer = SummaryWriter(str(folder), **options)
    except OSError as e:
        raise write_error(folder / "events", e) from None
    for f in set(folder.iterdir()) - before:   # the event file it has just opened
        run.claim(f)
    return writer
