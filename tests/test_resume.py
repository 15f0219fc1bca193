"""Resume after kill -9, and repeating a run from its config.yaml: both give exactly the same numbers (CPU)."""
import math
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

from nettrain.cli import main
from nettrain.runs import read_metrics

# Big enough that an epoch takes about a second on one CPU thread (so the kill lands inside epoch 3), with
# the state that must survive a restart: momentum, a cosine schedule, Lookahead's slow weights, and seeded
# augmentation.
ARGS = ["fit", "--dataset", "digits", "--model", "cnn", "--model.args.width", "16", "--batch-size", "4",
        "--epochs", "4", "--precision", "32", "--device", "cpu", "--optimizer", "sgd", "--lr", "0.02",
        "--momentum", "0.9", "--scheduler", "cosine", "--train.lookahead", "5", "--data.flip", "true",
        "--data.crop_padding", "1", "--seed", "3", "--run.progress", "none", "--run.tensorboard", "false"]
COLUMNS = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr"]


def numbers(run_dir):
    return [{k: row[k] for k in COLUMNS} for row in read_metrics(run_dir / "metrics.csv")]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted 4-epoch run."""
    run_dir = tmp_path_factory.mktemp("resume") / "reference"
    assert main(ARGS + ["--run-dir", str(run_dir)]) == 0
    return run_dir


def data_rows(path) -> int:
    try:
        return max(0, len(path.read_text().strip().splitlines()) - 1)
    except FileNotFoundError:
        return 0


def test_resume_after_kill_9_in_epoch_3_matches_the_uninterrupted_run(reference, tmp_path):
    run_dir = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}   # the reference's thread count
    proc = subprocess.Popen([sys.executable, "-m", "nettrain", *ARGS, "--run-dir", str(run_dir)], cwd=tmp_path,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 300
        while data_rows(run_dir / "metrics.csv") < 2:
            assert proc.poll() is None, f"the run ended early: {proc.stderr.read().decode()}"
            assert time.monotonic() < deadline, "epoch 2 never finished"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)   # during epoch 3
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert data_rows(run_dir / "metrics.csv") == 2, "epoch 3 had already finished when the kill came"
    assert torch.load(run_dir / "last.pt", weights_only=True)["epoch"] in (1, 2)   # never a half-written file

    assert main(["fit", "--resume", str(run_dir)]) == 0
    assert numbers(run_dir) == numbers(reference)   # every loss, accuracy and lr, exactly
    resumed = torch.load(run_dir / "last.pt", weights_only=True)
    expected = torch.load(reference / "last.pt", weights_only=True)
    assert resumed["epoch"] == 4
    assert all(torch.equal(resumed["model"][k], v) for k, v in expected["model"].items())
    assert (run_dir / "config.yaml").read_text() == (reference / "config.yaml").read_text()


def test_config_yaml_repeats_a_run_exactly(reference, tmp_path):
    other = tmp_path / "again"
    assert main(["fit", "--config", str(reference / "config.yaml"), "--run-dir", str(other)]) == 0
    assert numbers(other) == numbers(reference)
    a = torch.load(other / "last.pt", weights_only=True)["model"]
    b = torch.load(reference / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in b)


def test_resume_a_finished_run_changes_nothing(reference):
    before = (reference / "metrics.csv").read_text()
    assert main(["fit", "--resume", str(reference)]) == 0
    assert (reference / "metrics.csv").read_text() == before


def test_resume_trains_a_finished_run_further_with_ema_and_dropout(tmp_path):
    """--resume with more epochs continues exactly: EMA weights, raw weights and the dropout RNG all restored."""
    import nettrain
    # a constant lr: a cosine schedule would (rightly) be stretched over the new length
    opts = {"dataset": "two-gaussians", "model": "mlp", "batch_size": 16, "train.ema": 0.9, "device": "cpu",
            "scheduler": "none",
            "model.args.dropout": 0.2, "model.args.hidden": [16], "run.progress": "none", "run.tensorboard": False}
    straight = nettrain.fit(epochs=4, run_dir=tmp_path / "straight", **opts)
    nettrain.fit(epochs=2, run_dir=tmp_path / "extended", **opts)
    extended = nettrain.fit(resume=tmp_path / "extended", epochs=4, **{"run.progress": "none"})
    assert numbers(tmp_path / "extended") == numbers(straight.dir) and len(extended.metrics) == 4
    a = torch.load(straight.dir / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "extended" / "last.pt", weights_only=True)
    for part in ("model", "train_model"):   # the EMA average (what predicts) and the raw weights (what trains)
        assert all(torch.equal(a[part][k], b[part][k]) for k in a[part])
    assert not all(torch.equal(a["model"][k], a["train_model"][k]) for k in a["model"])


SMALL = {"dataset": "two-gaussians", "model": "mlp", "batch_size": 16, "device": "cpu", "model.args.hidden": [16],
         "run.progress": "none", "run.tensorboard": False}


def lrs(run_dir) -> list:
    return [row["lr"] for row in read_metrics(run_dir / "metrics.csv")]


@pytest.mark.parametrize("sched", [{}, {"sched.warmup_epochs": 1}, {"scheduler": "onecycle"},
                                   {"scheduler": "step", "sched.step_epochs": 1.5}],
                         ids=["cosine", "warmup-cosine", "onecycle", "step"])
def test_resume_with_more_epochs_follows_the_schedule_over_the_new_length(tmp_path, sched):
    """Epochs 3-4 of a 2-epoch run resumed for 4 get the lrs of a 4-epoch run, not the old schedule run past its
    end (where a cosine rises again)."""
    import nettrain
    opts = {**SMALL, **sched}
    straight = nettrain.fit(epochs=4, run_dir=tmp_path / "straight", **opts)
    nettrain.fit(epochs=2, run_dir=tmp_path / "extended", **opts)
    nettrain.fit(resume=tmp_path / "extended", epochs=4, **{"run.progress": "none"})
    assert lrs(tmp_path / "extended")[2:] == lrs(straight.dir)[2:]   # exactly
    resumed = torch.load(tmp_path / "extended" / "last.pt", weights_only=True)
    for saved, expected in zip(resumed["optimizer"]["param_groups"],
                               torch.load(straight.dir / "last.pt", weights_only=True)["optimizer"]["param_groups"]):
        assert {k: v for k, v in saved.items() if k != "params"} == {k: v for k, v in expected.items()
                                                                      if k != "params"}


def test_resume_with_more_epochs_stretches_the_cosine_to_its_end(tmp_path, capsys):
    import nettrain
    nettrain.fit(epochs=2, run_dir=tmp_path / "run", **SMALL)
    nettrain.fit(resume=tmp_path / "run", epochs=4, **{"run.progress": "lines"})
    assert f"resuming {tmp_path / 'run'} at epoch 2 of 4: the lr schedule is stretched from 2 to 4 epochs" \
        in capsys.readouterr().out
    lr = lrs(tmp_path / "run")
    assert lr[2] == pytest.approx(0.5 * 1e-3 * (1 + math.cos(math.pi * 3 / 4)), rel=1e-9)   # a 4-epoch cosine
    assert lr[1] == pytest.approx(0, abs=1e-12) and lr[3] == pytest.approx(0, abs=1e-12)   # both ends at min_lr
    assert lr[2] > lr[3]
    # the run is now a 4-epoch run: its record says so, and a plain --resume finds it finished
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["train"]["epochs"] == 4
    nettrain.fit(resume=tmp_path / "run", **{"run.progress": "lines"})
    assert "already finished its 4 epochs" in capsys.readouterr().out and len(lrs(tmp_path / "run")) == 4
