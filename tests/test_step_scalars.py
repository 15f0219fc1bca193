"""The per-step scalar stream (stepscalars.py): --run.log_every_n_steps N writes every Nth optimizer step's loss and
lr to steps.csv and TensorBoard, built on the callbacks; a resume keeps the steps before it."""
import csv

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import nettrain
from conftest import QUIET
from nettrain.cli import main

# digits: 1,438 training images; batches of 256 -> 6 optimizer steps an epoch
FIT = ["--dataset", "digits", "--model", "mlp", "--model.args.hidden", "[8]", "--batch-size", "256",
       "--device", "cpu", "--precision", "32", "--scheduler", "cosine"]


class StepLosses(nettrain.Callback):
    def __init__(self):
        self.losses = []

    def on_step_end(self, fit, loss):
        self.losses.append((fit.step, loss.item(), fit.optimizer.param_groups[0]["lr"]))


def _rows(run_dir):
    with open(run_dir / "steps.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow   # TensorBoard on: its import and event files, about 5 s
def test_every_nth_steps_loss_and_lr_go_to_steps_csv_and_tensorboard(tmp_path):
    run_dir, seen = tmp_path / "run", StepLosses()
    nettrain.fit(dataset="digits", model="mlp", batch_size=256, device="cpu", precision="32", epochs=2,
                 scheduler="cosine", run_dir=run_dir, callbacks=[seen],
                 **{"model.args.hidden": [8], "run.log_every_n_steps": 4, "run.progress": "none",
                    "run.report": False})
    rows = _rows(run_dir)
    want = [s for s in seen.losses if s[0] % 4 == 0]   # steps 4, 8, 12 of 12
    assert [int(r["step"]) for r in rows] == [4, 8, 12] == [s[0] for s in want]
    assert [int(r["epoch"]) for r in rows] == [1, 2, 2]
    assert [float(r["train_loss"]) for r in rows] == pytest.approx([s[1] for s in want], rel=1e-6)
    assert [float(r["lr"]) for r in rows] == pytest.approx([s[2] for s in want], rel=1e-9)
    assert len({r["lr"] for r in rows}) == 3   # the cosine schedule: a new lr at each logged step
    ea = EventAccumulator(str(run_dir / "tensorboard" / "steps"), size_guidance={"scalars": 0}).Reload()
    for tag, column in (("step/train_loss", "train_loss"), ("step/lr", "lr")):
        events = ea.Scalars(tag)
        assert [e.step for e in events] == [4, 8, 12]
        assert [e.value for e in events] == pytest.approx([float(r[column]) for r in rows], rel=1e-6)
    assert "steps.csv" in (run_dir / ".nettrain-run.json").read_text()   # --overwrite deletes it


def test_off_by_default_and_a_resume_keeps_the_steps_before_it(tmp_path):
    plain = tmp_path / "plain"
    assert main(["fit", *FIT, "--epochs", "1", "--run-dir", str(plain)] + QUIET) == 0
    assert not (plain / "steps.csv").exists()
    run_dir = tmp_path / "run"
    assert main(["fit", *FIT, "--epochs", "1", "--run.log_every_n_steps", "2", "--run-dir", str(run_dir)]
                + QUIET) == 0
    first = _rows(run_dir)
    assert [int(r["step"]) for r in first] == [2, 4, 6]
    assert main(["fit", "--resume", str(run_dir), "--epochs", "2", "--run.log_every_n_steps", "2"] + QUIET) == 0
    rows = _rows(run_dir)
    assert [int(r["step"]) for r in rows] == [2, 4, 6, 8, 10, 12]
    assert rows[:3] == first and [int(r["epoch"]) for r in rows[3:]] == [2, 2, 2]
