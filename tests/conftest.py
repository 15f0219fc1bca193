"""Shared fixtures: the staged real data (skipped cleanly when absent) and a quiet, fast default config."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

# The models in these tests are tiny: one thread is as fast as two, and it cannot stall waiting for a core
# that other processes are using (spinning OpenMP threads made runs 10-100x slower on a busy 2-core machine).
# Subprocesses (the CLI tests) inherit OMP_NUM_THREADS.
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

# Fast, silent runs: no progress bar, no TensorBoard events, no HTML report. QUIET: the command's flags;
# QUIET_API: nettrain.fit's options; the CPU ones where a test compares with outputs computed on the CPU.
QUIET = ["--run.progress", "none", "--run.tensorboard", "false", "--run.report", "false"]
QUIET_API = {"run.progress": "none", "run.tensorboard": False, "run.report": False}
QUIET_CPU = {**QUIET_API, "device": "cpu"}
QUIET_CPU_FP32 = {**QUIET_CPU, "precision": "32"}

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
DATA_DIR = Path(os.environ.get("NETTRAIN_TEST_DATA", SHARED))


def staged(*parts) -> Path:
    path = DATA_DIR.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"staged data {path} is absent")
    return path


@pytest.fixture(scope="session")
def mnist_dir():
    staged("MNIST", "raw", "train-images-idx3-ubyte.gz")
    return DATA_DIR


@pytest.fixture(scope="session")
def cifar_dir(tmp_path_factory):
    """A data dir holding cifar10/{train,test}.npz, built from the staged JPEG pack into a temp dir."""
    if (DATA_DIR / "cifar10" / "train.npz").exists():
        return DATA_DIR
    build = staged("cifar10", "build.py")
    out = tmp_path_factory.mktemp("cifar")
    subprocess.run([sys.executable, str(build), str(out / "cifar10")], check=True, capture_output=True)
    return out


@pytest.fixture
def quiet():
    """Options for fast, silent test runs."""
    return dict(QUIET_API)


@pytest.fixture(autouse=True)
def nettrain_home(tmp_path_factory, monkeypatch):
    """Each test's own trust store (trust.py): no test reads or writes the user's ~/.cache/nettrain, and what one
    test trained is not trusted in another."""
    home = tmp_path_factory.mktemp("nettrain-home")
    monkeypatch.setenv("NETTRAIN_HOME", str(home))
    for name in ("NETTRAIN_MLFLOW_URI", "MLFLOW_TRACKING_URI"):   # no test logs to the user's MLflow (mlflowlog.py)
        monkeypatch.delenv(name, raising=False)
    return home


@pytest.fixture(autouse=True)
def catalogue_errors(request, monkeypatch):
    """With NETTRAIN_CATALOGUE=FILE set, every user error (NettrainError) a test provokes in this process is appended
    to FILE with the test's id: docs/make_bad_inputs.py turns them into the docs' catalogue of bad inputs, so the
    catalogue is what the tests check, not a list kept by hand."""
    path = os.environ.get("NETTRAIN_CATALOGUE")
    if not path:
        return
    import json
    from nettrain.errors import NettrainError
    original = NettrainError.__init__

    def recorded(self, *args):
        original(self, *args)
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"test": request.node.nodeid, "message": str(self)}) + "\n")
    monkeypatch.setattr(NettrainError, "__init__", recorded)


@pytest.fixture
def malloc_calls(monkeypatch):
    """The `enabled` argument of every freed_memory_kept call that training and the predictor make (_malloc.py):
    whether the allocator was tuned, without tuning anything the real function would not."""
    import nettrain.predictor
    import nettrain.training
    from nettrain import _malloc
    calls, real = [], _malloc.freed_memory_kept

    def recording(enabled=True):
        calls.append(enabled)
        return real(enabled)
    monkeypatch.setattr(nettrain.training, "freed_memory_kept", recording)
    monkeypatch.setattr(nettrain.predictor, "freed_memory_kept", recording)
    return calls


BLOCKER = """import os, pathlib, threading


class Block:
    \"\"\"Holds the fit at one optimizer step, after saying so in a file: a kill then lands exactly there.\"\"\"
    def on_step_end(self, fit, loss):
        if fit.step == int(os.environ.get("NETTRAIN_TEST_BLOCK_AT_STEP", "0")):
            pathlib.Path(os.environ["NETTRAIN_TEST_BLOCKED"]).touch()
            threading.Event().wait()
"""


def blocker(folder: Path) -> list:
    """fit's arguments for a callback that, in a process whose environment sets NETTRAIN_TEST_BLOCK_AT_STEP and
    NETTRAIN_TEST_BLOCKED, holds the fit at that step after touching that file: a test kills it then, on an
    observable event rather than a race with the clock. Without the variables it does nothing (a reference run)."""
    path = folder / "blocker.py"
    path.write_text(BLOCKER)
    return ["--callbacks", f"{path}:Block"]
