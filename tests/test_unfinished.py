"""A run stopped after its last epoch but before its finish (the test, the report) is finished by --resume; a folder
a fit left holding only its lock is taken by --run-dir; a resume in another number of processes says so. Each
failure is injected at its exact point (a hook that raises, or os._exit in a subprocess), never raced."""
import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import nettrain
from nettrain.cli import main
from nettrain.resume import unfinished
from conftest import QUIET

SRC = str(Path(nettrain.__file__).resolve().parents[1])
FIT = ["fit", "--dataset", "two-gaussians", "--model", "mlp", "--model.args.hidden", "[8]", "--epochs", "2",
       "--batch-size", "512", "--seed", "5"]


def events(run) -> list:
    return [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run: what a finished run's test records."""
    run = tmp_path_factory.mktemp("reference") / "run"
    assert main([*FIT, *QUIET, "--run-dir", str(run)]) == 0
    return run


def test_a_stop_in_the_final_test_leaves_a_run_that_resume_finishes(reference, tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"

    def stopped_in_the_test(*args, **kwargs):
        raise KeyboardInterrupt   # Ctrl-C (or SIGTERM) while the test split is evaluated
    monkeypatch.setattr("nettrain.training.metrics_summary", stopped_in_the_test)
    assert main([*FIT, *QUIET, "--run-dir", str(run)]) == 130
    assert f"stopped after the last epoch, in the test or the report; {run / 'last.pt'} keeps epoch 2; finish the " \
           f"run (its test and report) with: nettrain fit --resume {run}" in capsys.readouterr().err
    assert not (run / "test_metrics.json").exists()
    monkeypatch.undo()

    assert main(["fit", "--resume", str(run), "--run.progress", "lines"]) == 0
    out = capsys.readouterr().out
    assert f"nettrain: {run} trained its 2 epochs but was stopped before its finish (test_metrics.json not " \
           f"written); finishing it: the test, then the report" in out
    for name in ("test_metrics.json", "confusion_matrix.csv"):   # the very test the uninterrupted run made
        assert (run / name).read_text() == (reference / name).read_text()
    assert events(run)[-1]["finish"] == ["test_metrics.json"] and events(run)[-1]["from_epoch"] == 2

    def written():   # (the lock names its last holder)
        return {p.name: p.stat().st_mtime_ns for p in run.iterdir() if p.name != ".nettrain-lock"}
    before = written()
    assert main(["fit", "--resume", str(run), "--run.progress", "lines"]) == 0   # finished now: nothing to do
    assert "already finished its 2 epochs" in capsys.readouterr().out
    assert written() == before


def test_a_full_disk_at_the_last_last_pt_leaves_a_run_that_resume_finishes(reference, tmp_path, capsys, monkeypatch):
    """Without a validation split best.pt is written first each epoch, so the last epoch is kept in best.pt alone."""
    from nettrain.engine import checkpoint
    save = checkpoint._torch_save

    def disk_full_at_last_pt(state, f, path):
        if path.name == "last.pt" and state["epoch"] == 2:
            f.write(b"half a checkpoint")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        save(state, f, path)
    monkeypatch.setattr(checkpoint, "_torch_save", disk_full_at_last_pt)
    run = tmp_path / "run"
    assert main([*FIT, *QUIET, "--run-dir", str(run)]) == 2
    assert capsys.readouterr().err.startswith(f"nettrain: error: disk full while writing {run / 'last.pt'}")
    assert torch.load(run / "best.pt", weights_only=True)["epoch"] == 2 and not (run / "test_metrics.json").exists()
    monkeypatch.undo()

    assert main(["fit", "--resume", str(run)]) == 0
    assert (run / "test_metrics.json").read_text() == (reference / "test_metrics.json").read_text()
    assert torch.load(run / "last.pt", weights_only=True)["epoch"] == 2


# The fit of a run whose report is drawn live (the budget lifted: a long run's page after every epoch), killed -9
# when its final report starts: test_metrics.json and predictions.npz are written, report.html is the live page.
KILLED_IN_THE_REPORT = """
import os, sys
import nettrain.report.live as live
live.BUDGET = float("inf")
draw = live.write

def write(run, **kwargs):
    if not kwargs.get("live") and not kwargs.get("cheap"):
        os._exit(137)   # the final report: killed
    return draw(run, **kwargs)
live.write = write
from nettrain.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_kill_in_the_final_report_leaves_a_run_that_resume_finishes(tmp_path, capsys):
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": SRC, "NETTRAIN_HOME": str(tmp_path / "home")}
    done = subprocess.run([sys.executable, "-c", KILLED_IN_THE_REPORT, *FIT, "--run.progress", "none",
                           "--run.tensorboard", "false", "--run-dir", str(run)], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 137, done.stderr[-2000:]
    assert (run / "test_metrics.json").exists() and (run / "predictions.npz").exists()
    assert 'http-equiv="refresh"' in (run / "report.html").read_text()   # the live page of epoch 1
    assert unfinished(run, test=True, report=True) == ["report.html"]

    assert main(["fit", "--resume", str(run), "--run.tensorboard", "false"]) == 0
    page = (run / "report.html").read_text()
    assert 'http-equiv="refresh"' not in page and "finished: 2 epochs" in page
    assert unfinished(run, test=True, report=True) == []
    assert events(run)[-1]["finish"] == ["report.html"]


# A fit killed -9 between taking the run directory's lock and writing its record (MANIFEST), in the middle of
# writing it: the folder holds the lock and the record's temporary, nothing else.
KILLED_BEFORE_THE_RECORD = """
import os, sys
import nettrain.runs as runs
from nettrain.files import write_file

def write_text(path, text, **kwargs):
    if path.name == runs.MANIFEST:
        write_file(path, lambda f: os._exit(137), **kwargs)   # its temporary made, then killed
    raise AssertionError("the record is the first file a fit writes")
runs.write_text = write_text
from nettrain.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_folder_left_holding_only_the_lock_is_taken_by_run_dir(tmp_path, capsys):
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": SRC, "NETTRAIN_HOME": str(tmp_path / "home")}
    done = subprocess.run([sys.executable, "-c", KILLED_BEFORE_THE_RECORD, *FIT, *QUIET, "--run-dir", str(run)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 137, done.stderr[-2000:]
    left = sorted(p.name for p in run.iterdir())
    assert left[0].startswith("..nettrain-run.json.") and left[0].endswith(".tmp") and left[1:] == [".nettrain-lock"]

    assert main(["fit", "--resume", str(run)]) == 2
    assert capsys.readouterr().err == f"nettrain: error: {run} holds no run to resume: a fit was stopped there " \
                                      f"before it wrote anything but its lock; start the run again: nettrain fit " \
                                      f"... --run-dir {run}\n"
    assert main([*FIT, *QUIET, "--run-dir", str(run)]) == 0   # no --overwrite: there was no run to overwrite
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]
    assert (run / "test_metrics.json").exists()


HOLD_THE_LOCK = """
import sys, time
from nettrain.runlock import RunLock
RunLock(sys.argv[1], "nettrain fit --run-dir elsewhere").acquire()
print("locked", flush=True)
time.sleep(120)
"""


def test_a_folder_holding_only_a_lock_that_is_held_is_refused_naming_its_holder(tmp_path, capsys):
    """A fit that has just taken the lock and is about to write its record: its folder is not taken."""
    run = tmp_path / "run"
    run.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLD_THE_LOCK, str(run)], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": SRC})
    try:
        assert holder.stdout.readline() == "locked\n"
        assert main([*FIT, *QUIET, "--run-dir", str(run)]) == 2
        assert capsys.readouterr().err.startswith(f"nettrain: error: {run} is in use by another nettrain process "
                                                  f"(pid {holder.pid} on ")
        assert sorted(p.name for p in run.iterdir()) == [".nettrain-lock"]
    finally:
        holder.kill()
        holder.wait()


def test_a_resume_in_another_number_of_processes_is_said_and_recorded(tmp_path, capsys):
    """A checkpoint of 2 processes (one RNG state each, as `fit --nproc 2` writes) resumed in one."""
    run = tmp_path / "run"
    assert main([*FIT, *QUIET, "--epochs", "1", "--run-dir", str(run)]) == 0
    for name in ("best.pt", "last.pt"):
        state = torch.load(run / name, weights_only=True)
        state["rng_ranks"] = [state["rng"], state["rng"]]
        torch.save(state, run / name)
    capsys.readouterr()
    assert main(["fit", "--resume", str(run), "--epochs", "2"]) == 0
    warned = [line for line in capsys.readouterr().err.splitlines() if "process" in line]
    assert warned == [f"nettrain: warning: {run} was trained in 2 processes and resumes in 1: the batches are split "
                      f"and the random numbers drawn otherwise, so the result will not be bit for bit an "
                      f"uninterrupted run's (--nproc 2 resumes exactly)"]
    assert events(run)[-1]["processes"] == 1 and events(run)[-1]["trained_processes"] == 2

    assert main(["fit", "--resume", str(run), "--epochs", "3"]) == 0   # now a run of one process: nothing to say
    assert "process" not in capsys.readouterr().err
    assert events(run)[-1]["processes"] == events(run)[-1]["trained_processes"] == 1


@pytest.mark.slow
def test_a_run_of_one_process_resumed_in_two_says_so(tmp_path):
    run = tmp_path / "run"
    assert main([*FIT, *QUIET, "--epochs", "1", "--run-dir", str(run)]) == 0
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "nettrain", "fit", "--resume", str(run), "--epochs", "2", "--nproc",
                           "2"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stderr.count(f"nettrain: warning: {run} was trained in 1 process and resumes in 2: ") == 1
    assert events(run)[-1]["processes"] == 2 and events(run)[-1]["trained_processes"] == 1
