"""The run directory: what a run leaves behind, and that nothing is overwritten unless asked."""
import csv
import json
import os

import pytest
import torch
import yaml

import nettrain
from nettrain.cli import main
from nettrain.config import Config
from nettrain.errors import DivergedError
from nettrain.runs import read_metrics

QUIET = {"run.progress": "none", "run.tensorboard": False}
REQUIRED_COLUMNS = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds"]


@pytest.fixture(scope="module")
def classification_run(tmp_path_factory):
    return nettrain.fit(dataset="two-gaussians", model="mlp", epochs=3, lr=0.01, seed=1,
                        run_dir=tmp_path_factory.mktemp("runs") / "cls", **{"model.args.hidden": [8]}, **QUIET)


@pytest.fixture(scope="module")
def regression_run(tmp_path_factory):
    return nettrain.fit(dataset="quadratic", model="mlp", epochs=2, run_dir=tmp_path_factory.mktemp("runs") / "reg",
                        **{"model.args.hidden": [8]}, **QUIET)


def test_run_directory_files(classification_run):
    d = classification_run.dir
    for name in ("config.yaml", "environment.json", "metrics.csv", "confusion_matrix.csv", "last.pt", "best.pt",
                 "best.safetensors"):
        assert (d / name).is_file(), name
    env = json.loads((d / "environment.json").read_text())
    assert env["torch"] == torch.__version__ and env["nettrain"] == nettrain.__version__
    # what decides the speed on a CPU, kept to explain a slow run
    assert env["threads"] == torch.get_num_threads() and env["omp_wait_policy"] == os.environ.get("OMP_WAIT_POLICY")
    assert not (d / "tensorboard").exists()   # run.tensorboard: False


def test_config_yaml_is_the_resolved_config(classification_run):
    cfg = Config.load(classification_run.dir / "config.yaml")
    assert cfg.data.name == "two-gaussians" and cfg.model.args == {"hidden": [8]} and cfg.optim.lr == 0.01
    assert cfg.train.epochs == 3 and cfg.train.seed == 1
    assert cfg.run.dir is None and cfg.run.overwrite is False   # where it lives is not part of the record


def test_metrics_csv_classification(classification_run):
    path = classification_run.dir / "metrics.csv"
    with open(path, newline="") as f:
        header = next(csv.reader(f))
    assert set(REQUIRED_COLUMNS) <= set(header) and header[0] == "epoch"
    rows = read_metrics(path)
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    for row in rows:
        for key in ("train_acc", "val_acc"):
            assert 0 <= row[key] <= 1   # fractions, not percentages
        assert row["train_loss"] > 0 and row["val_loss"] > 0 and row["seconds"] >= 0
    # the default cosine schedule, stepped per batch, read at the end of each epoch: 0.01 * (1 + cos(pi * e / 3)) / 2
    assert [r["lr"] for r in rows] == pytest.approx([0.0075, 0.0025, 0.0], abs=1e-9)
    assert [r["val_acc"] for r in rows] == pytest.approx([m["val_acc"] for m in classification_run.metrics])


def test_metrics_csv_regression_has_empty_accuracy(regression_run):
    with open(regression_run.dir / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2
    for row in rows:
        assert row["train_acc"] == "" and row["val_acc"] == ""
        assert float(row["train_loss"]) > 0 and float(row["val_loss"]) > 0
    assert not (regression_run.dir / "confusion_matrix.csv").exists()


def test_confusion_matrix_csv(classification_run):
    with open(classification_run.dir / "confusion_matrix.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["true \\ predicted", "0", "1"]
    counts = [[int(v) for v in r[1:]] for r in rows[1:]]
    assert counts == classification_run.test["confusion"].tolist() and sum(map(sum, counts)) == 200


def test_best_and_last_checkpoints(classification_run):
    # no validation split: the test split, shown each epoch (labelled test), does not choose the model
    d = classification_run.dir
    last = torch.load(d / "last.pt", weights_only=True)
    best = torch.load(d / "best.pt", weights_only=True)
    assert last["epoch"] == 3 and best["epoch"] == 3
    assert best["best"] == {"metric": "last epoch", "value": None, "epoch": 3}
    assert all(torch.equal(best["model"][k], v) for k, v in last["model"].items())
    assert len(last["history"]) == 3
    assert [r["val_split"] for r in read_metrics(d / "metrics.csv")] == ["test"] * 3
    from safetensors import safe_open
    with safe_open(str(d / "best.safetensors"), "pt") as f:
        assert json.loads(f.metadata()["classes"]) == ["0", "1"]
        assert set(f.keys()) == set(best["model"])
        assert all(torch.equal(f.get_tensor(k), v) for k, v in best["model"].items())


def test_existing_run_dir_is_not_overwritten(tmp_path):
    run_dir = tmp_path / "mine"
    run_dir.mkdir()
    (run_dir / "notes.txt").write_text("my notes")
    with pytest.raises(nettrain.NettrainError, match="already exists.*--overwrite.*--resume"):
        nettrain.fit(dataset="two-gaussians", model="mlp", epochs=1, run_dir=run_dir, **QUIET)
    assert (run_dir / "notes.txt").read_text() == "my notes" and sorted(p.name for p in run_dir.iterdir()) == \
        ["notes.txt"]
    # not a run directory: refused even with --overwrite
    with pytest.raises(nettrain.NettrainError, match="not a nettrain run directory"):
        nettrain.fit(dataset="two-gaussians", model="mlp", epochs=1, run_dir=run_dir, overwrite=True, **QUIET)
    assert (run_dir / "notes.txt").read_text() == "my notes"
    # a project folder with a config.yaml of its own is not a run either: --overwrite once deleted all of it
    (run_dir / "config.yaml").write_text("lr: 0.1\n")
    with pytest.raises(nettrain.NettrainError, match="it holds notes.txt, which nettrain did not write"):
        nettrain.fit(dataset="two-gaussians", model="mlp", epochs=1, run_dir=run_dir, overwrite=True, **QUIET)
    assert sorted(p.name for p in run_dir.iterdir()) == ["config.yaml", "notes.txt"]
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "metrics.csv").write_text("my own metrics\n")   # a name a run uses, but no run
    with pytest.raises(nettrain.NettrainError, match=r"not a nettrain run directory \(it has no config.yaml\)"):
        nettrain.fit(dataset="two-gaussians", model="mlp", epochs=1, run_dir=tmp_path / "logs", overwrite=True,
                     **QUIET)
    assert (tmp_path / "logs" / "metrics.csv").read_text() == "my own metrics\n"
    with pytest.raises(nettrain.NettrainError, match="is a file, not a run directory"):
        nettrain.fit(dataset="two-gaussians", model="mlp", epochs=1, run_dir=run_dir / "notes.txt", overwrite=True,
                     **QUIET)
    assert (run_dir / "notes.txt").read_text() == "my notes"


def test_cli_refuses_an_existing_run_dir_and_overwrite_replaces_a_run(tmp_path, capsys):
    args = ["fit", "--dataset", "two-gaussians", "--model", "mlp", "--epochs", "1", "--run-dir", str(tmp_path / "r"),
            "--run.progress", "none", "--run.tensorboard", "false"]
    assert main(args) == 0
    first = (tmp_path / "r" / "metrics.csv").read_text()
    capsys.readouterr()
    assert main(args + ["--epochs", "2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nettrain: error: run directory") and err.count("\n") == 1
    assert (tmp_path / "r" / "metrics.csv").read_text() == first
    (tmp_path / "r" / ".last.pt.tmp").write_bytes(b"")   # what a killed checkpoint write leaves is nettrain's too
    assert main(args + ["--epochs", "2", "--overwrite"]) == 0
    assert len(read_metrics(tmp_path / "r" / "metrics.csv")) == 2


def test_default_run_dir_and_empty_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    a = nettrain.fit(dataset="two-gaussians", model="mlp", epochs=1, **QUIET)
    b = nettrain.fit(dataset="two-gaussians", model="mlp", epochs=1, **QUIET)
    assert a.dir.parent.name == "runs" and a.dir.name.endswith("-two-gaussians-mlp")
    assert a.dir != b.dir and (b.dir / "best.pt").exists()   # two runs in the same second do not collide
    (tmp_path / "empty").mkdir()
    c = nettrain.fit(dataset="two-gaussians", model="mlp", epochs=1, run_dir=tmp_path / "empty", **QUIET)
    assert (c.dir / "best.pt").exists()
    assert yaml.safe_load((c.dir / "config.yaml").read_text())["run"]["dir"] is None


def test_default_run_dirs_are_claimed_atomically(tmp_path, monkeypatch):
    """Runs started in one second by several processes (a shell loop with &) each get their own directory: the name
    is claimed by mkdir, not by a look that another process can pass at the same moment."""
    from pathlib import Path
    from nettrain.runs import RunDir
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("nettrain.runs.time.strftime", lambda fmt: "20261124-120000")
    monkeypatch.setattr(Path, "exists", lambda self: False)   # what the other process saw before this one's mkdir
    a, b = RunDir.create(None, "digits", "cnn", False), RunDir.create(None, "digits", "cnn", False)
    assert (a.path.name, b.path.name) == ("20261124-120000-digits-cnn", "20261124-120000-digits-cnn-2")


NAN_AFTER_30_STEPS = """
import torch.nn.functional as F
calls = 0

def loss(outputs, targets):
    global calls
    calls += 1
    value = F.cross_entropy(outputs, targets)
    return value * float("nan") if calls > 30 else value
"""


def test_a_diverging_run_stops_with_one_line_and_keeps_its_last_finite_checkpoint(tmp_path, quiet):
    """A NaN loss stops the run at the end of that epoch, before any checkpoint of the NaN weights is written."""
    with pytest.raises(DivergedError, match=r"train loss is nan in epoch 1; lower the learning rate \(optim.lr is 1e"):
        nettrain.fit(optimizer="sgd", lr=1e30, epochs=3, run_dir=tmp_path / "lr", **quiet)
    assert not (tmp_path / "lr" / "last.pt").exists() and not (tmp_path / "lr" / "best.pt").exists()
    assert [row["epoch"] for row in read_metrics(tmp_path / "lr" / "metrics.csv")] == [1]   # recorded, NaN and all

    (tmp_path / "nan_loss.py").write_text(NAN_AFTER_30_STEPS)   # digits: 23 steps an epoch, so epoch 2 diverges
    with pytest.raises(DivergedError, match=r"in epoch 2; .*late/last.pt keeps epoch 1"):
        nettrain.fit(loss=f"{tmp_path / 'nan_loss.py'}:loss", epochs=3, run_dir=tmp_path / "late", **quiet)
    last = torch.load(tmp_path / "late" / "last.pt", weights_only=True)
    assert last["epoch"] == 1 and all(torch.isfinite(v).all() for v in last["model"].values() if v.is_floating_point())


CTRL_C_AT_STEP_30 = """
import torch.nn.functional as F
calls = 0

def loss(outputs, targets):
    global calls
    calls += 1
    if calls == 30:
        raise KeyboardInterrupt
    return F.cross_entropy(outputs, targets)
"""


def test_ctrl_c_says_which_epoch_is_kept_and_how_to_resume(tmp_path, capsys):
    (tmp_path / "ctrl_c.py").write_text(CTRL_C_AT_STEP_30)   # digits: 23 steps an epoch, so in epoch 2
    args = ["fit", "--loss", f"{tmp_path / 'ctrl_c.py'}:loss", "--epochs", "3", "--run-dir", str(tmp_path / "run"),
            "--run.progress", "none", "--run.tensorboard", "false"]
    assert main(args) == 130
    err = capsys.readouterr().err
    assert f"stopped in epoch 2; {tmp_path / 'run' / 'last.pt'} keeps epoch 1; continue with: nettrain fit --resume " \
           f"{tmp_path / 'run'}" in err and err.rstrip().endswith("nettrain: interrupted")
    assert main(["fit", "--resume", str(tmp_path / "run"), "--loss", "cross-entropy"]) == 0
    assert [row["epoch"] for row in read_metrics(tmp_path / "run" / "metrics.csv")] == [1, 2, 3]



def test_a_validation_split_chooses_best_pt_and_the_test_split_never_does(tmp_path, capsys):
    run = nettrain.fit(dataset="two-gaussians", model="mlp", epochs=3, lr=0.01, seed=1, run_dir=tmp_path / "val",
                       **{"model.args.hidden": [8], "data.val_fraction": 0.2, **QUIET, "run.progress": "lines"})
    best = torch.load(run.dir / "best.pt", weights_only=True)
    accs = [r["val_acc"] for r in run.metrics]
    assert best["best"] == {"metric": "val_acc", "value": max(accs), "epoch": accs.index(max(accs)) + 1}
    assert [r["val_split"] for r in read_metrics(run.dir / "metrics.csv")] == ["val"] * 3
    out = capsys.readouterr().out
    assert "| val loss" in out and "--data.val_fraction" not in out


def test_without_a_validation_split_the_log_says_test_and_suggests_one_once(tmp_path, capsys):
    nettrain.fit(dataset="two-gaussians", model="mlp", epochs=2, run_dir=tmp_path / "r",
                 **{"model.args.hidden": [8], **QUIET, "run.progress": "lines"})
    out = capsys.readouterr().out
    assert out.count("--data.val_fraction 0.1") == 1 and "| test loss" in out and "| val loss" not in out
    assert "model: the weights of epoch 2 (the last" in out