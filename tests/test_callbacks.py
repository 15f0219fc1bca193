"""Callbacks (callbacks.py): the fit's moments reach the user's code; early stopping (--patience) is one of them."""
import sys

import pytest
import torch

import nettrain
from conftest import QUIET, QUIET_API
from nettrain.cli import main
from nettrain.errors import ConfigError, ModelError

# digits: 1,438 training images; batches of 256 -> 5 full and one of 158 an epoch
BATCHES = [256] * 5 + [158]
FIT = dict(dataset="digits", model="mlp", batch_size=256, device="cpu", precision="32", **QUIET_API)


class Recorder(nettrain.Callback):
    def __init__(self):
        self.calls, self.losses, self.rows, self.test = [], [], [], None

    def on_fit_start(self, fit):
        self.calls.append(("start", fit.epoch, fit.step))

    def on_step_end(self, fit, loss):
        self.losses.append(loss.item())

    def on_epoch_end(self, fit, epoch, metrics):
        self.calls.append(("epoch", epoch, fit.step))
        self.rows.append(metrics)

    def on_fit_end(self, fit, test):
        self.calls.append(("end", fit.epoch, fit.step))
        self.test = test


def test_a_callback_sees_every_steps_loss_each_epochs_row_and_the_test(tmp_path):
    rec = Recorder()
    run = nettrain.fit(epochs=2, run_dir=tmp_path / "run", callbacks=[rec], **FIT)
    assert rec.calls == [("start", 0, 0), ("epoch", 1, 6), ("epoch", 2, 12), ("end", 2, 12)]
    assert len(rec.losses) == 12
    for epoch, row in enumerate(rec.rows):   # the row's train loss is the example-weighted mean of its steps' losses
        steps = rec.losses[6 * epoch: 6 * epoch + 6]
        mean = sum(loss * n for loss, n in zip(steps, BATCHES)) / sum(BATCHES)
        assert row["train_loss"] == pytest.approx(mean, rel=1e-5)
        assert row == run.metrics[epoch]
    assert rec.test == run.test


def test_patience_stops_a_run_whose_validation_does_not_improve_and_a_resume_keeps_the_stop(tmp_path, capsys):
    run_dir = tmp_path / "run"
    # lr 0: the validation accuracy of epoch 1 is never beaten, so epochs 2 and 3 use up a patience of 2
    args = ["fit", "--dataset", "digits", "--model", "mlp", "--epochs", "20", "--lr", "0", "--patience", "2",
            "--data.val_fraction", "0.1", "--device", "cpu", "--run-dir", str(run_dir)] + QUIET
    assert main(args + ["--run.progress", "lines"]) == 0
    assert "stopped early after epoch 3 of 20: val_acc has not improved for 2 validated epochs" in \
        capsys.readouterr().out
    last = torch.load(run_dir / "last.pt", weights_only=True)
    assert last["epoch"] == 3 and "val_acc has not improved" in last["stopped_early"]
    assert (run_dir / "test_metrics.json").exists()   # tested and finished as at the end
    resumed = nettrain.fit(resume=run_dir, **QUIET_API)
    assert len(resumed.metrics) == 3   # the same --epochs: the stop holds
    # more epochs asked for: training goes on, and the patience counts on from the history (epoch 4 is no better)
    longer = nettrain.fit(resume=run_dir, epochs=5, **QUIET_API)
    assert [row["epoch"] for row in longer.metrics] == [1, 2, 3, 4]


def test_patience_without_a_validation_split_is_one_line(tmp_path, capsys):
    assert main(["fit", "--dataset", "digits", "--model", "mlp", "--epochs", "2", "--patience", "1",
                 "--run-dir", str(tmp_path / "run")] + QUIET) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "stops on the validation split" in err and "--data.val_fraction" in err


def test_a_stop_asked_by_a_callback_ends_training_after_that_epoch(tmp_path):
    class StopAtTwo(nettrain.Callback):
        def on_epoch_end(self, fit, epoch, metrics):
            if epoch == 2:
                fit.stop("enough")
    run = nettrain.fit(epochs=5, run_dir=tmp_path / "run", callbacks=[StopAtTwo()], **FIT)
    assert len(run.metrics) == 2 and run.test["examples"] == 359


def test_callbacks_by_spec_on_the_command_line_are_recorded_and_a_resume_does_not_import_them(tmp_path, capsys,
                                                                                              monkeypatch):
    marker = tmp_path / "ran.txt"
    (tmp_path / "cb.py").write_text(
        "import pathlib\n"
        "class Printer:\n"
        "    def on_epoch_end(self, fit, epoch, metrics):\n"
        f"        with open({str(marker)!r}, 'a') as f:\n"
        "            f.write(f'{epoch}\\n')\n")
    monkeypatch.chdir(tmp_path)
    run_dir = tmp_path / "run"
    base = ["fit", "--dataset", "digits", "--model", "mlp", "--device", "cpu", "--run-dir", str(run_dir)] + QUIET
    assert main(base + ["--epochs", "1", "--callbacks", "cb.py:Printer"]) == 0
    assert marker.read_text() == "1\n"
    assert "cb.py:Printer" in (run_dir / "config.yaml").read_text()
    capsys.readouterr()
    # the run's config is data: its callback spec is not imported again unless given again
    assert main(["fit", "--resume", str(run_dir), "--epochs", "2"] + QUIET) == 0
    assert marker.read_text() == "1\n"
    assert "are not imported from its config; give them again with --callbacks" in capsys.readouterr().err


def test_a_callback_that_raises_names_its_file_and_line(tmp_path):
    class Broken(nettrain.Callback):
        def on_epoch_end(self, fit, epoch, metrics):
            raise ValueError("my bug")
    with pytest.raises(ModelError, match=r"test_callbacks\.py:\d+"):
        nettrain.fit(epochs=1, run_dir=tmp_path / "run", callbacks=[Broken()], **FIT)


@pytest.mark.parametrize("given, said", [([Recorder], r"got the class Recorder; give Recorder\(\) instead"),
                                         ([object()], "has none of the callback methods")])
def test_what_is_not_a_callback_is_refused_before_training(tmp_path, given, said):
    with pytest.raises(ConfigError, match=said):
        nettrain.fit(epochs=1, run_dir=tmp_path / "run", callbacks=given, **FIT)
    assert not (tmp_path / "run").exists()


def test_early_stopping_counts_only_validated_epochs_and_min_delta():
    from nettrain.callbacks import EarlyStopping, FitState

    def stops(values, **kw):
        fit = FitState(None, {}, None, None)
        fit.history = [{"epoch": i + 1, "val_loss": v, "val_split": "val"} for i, v in enumerate(values)]
        EarlyStopping("val_loss", **kw).on_epoch_end(fit, len(values), fit.history[-1])
        return fit.stop_reason is not None
    assert not stops([1.0, 0.9, 0.8], patience=1)
    assert stops([1.0, 0.9, 0.95], patience=1)
    assert not stops([1.0, 0.9, 0.95], patience=2)
    assert stops([1.0, 0.99, 0.98], patience=2, min_delta=0.05)   # improvements under min_delta do not count
    assert not stops([None, None, None], patience=1)
