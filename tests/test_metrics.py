"""The run's own metrics (--metrics): registered names or the user's functions, per epoch and on the test."""
import json

import pytest

import nettrain
from conftest import QUIET, QUIET_API
from nettrain.cli import main
from nettrain.errors import ConfigError

FIT = ["fit", "--dataset", "digits", "--model", "mlp", "--model.args.hidden", "[16]", "--batch-size", "512",
       "--device", "cpu", "--data.val_fraction", "0.1"] + QUIET


def test_registered_and_user_metrics_are_columns_and_test_values_and_a_resume_keeps_the_columns(tmp_path, capsys,
                                                                                                monkeypatch):
    (tmp_path / "mine.py").write_text("def always_half(out, y):\n    return 0.5\n")
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    assert main(FIT + ["--epochs", "1", "--metrics", "[balanced_acc, top5_acc, mine.py:always_half]",
                       "--run-dir", str(run)]) == 0
    header = (run / "metrics.csv").read_text().splitlines()[0]
    assert header.endswith(",padding_waste,val_balanced_acc,val_top5_acc,val_always_half")
    written = json.loads((run / "test_metrics.json").read_text())
    test = written["metrics"]
    assert test["always_half"] == 0.5 and test["top5_acc"] >= written["accuracy"] and 0 < test["balanced_acc"] < 1
    capsys.readouterr()
    # a run's config is data: its user function is not imported again unless given again; the names are kept
    assert main(["fit", "--resume", str(run), "--epochs", "2"] + QUIET) == 0
    assert "are not imported from its config; give them again with --metrics" in capsys.readouterr().err
    rows = nettrain.runs.read_metrics(run / "metrics.csv")
    assert rows[1]["val_balanced_acc"] is not None and rows[1].get("val_always_half") is None
    assert rows[0]["val_always_half"] == 0.5   # the first epoch's row keeps its column


def test_an_unknown_metric_is_one_line_with_the_closest_name(tmp_path, capsys):
    assert main(FIT + ["--epochs", "1", "--metrics", "[balanced_accuracy]", "--run-dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "balanced_acc" in err


def test_a_metric_that_is_not_a_function_is_refused(tmp_path, monkeypatch):
    (tmp_path / "mine.py").write_text("NOT_A_FUNCTION = 3\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(nettrain.NettrainError, match="f\\(outputs, targets\\)"):
        nettrain.fit(dataset="digits", model="mlp", epochs=1, metrics=["mine.py:NOT_A_FUNCTION"],
                     run_dir=tmp_path / "r", **QUIET_API)
