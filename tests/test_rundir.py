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
from conftest import QUIET_API

REQUIRED_COLUMNS = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds"]


@pytest.fixture(scope="module")
def classification_run(tmp_path_factory):
    return nettrain.fit(dataset="two-gaussians", model="mlp", epochs=3, lr=0.01, seed=1,
                        run_dir=tmp_path_factory.mktemp("runs") / "cls", **{"model.args.hidden": [8]}, **QUIET_API)


@pytest.fixture(scope="module")
def regression_run(tmp_path_factory):
    return nettrain.fit(dataset="quadratic", model="mlp", epochs=2, run_dir=tmp_path_factory.mktemp("runs") / "reg",
                        **{"model.args.hidden": [8]}, **QUIET_API)


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


def fit_into(run_dir, **extra):
    return nettrain.fit(dataset="two-gaussians", model="mlp", run_dir=run_dir, **{"epochs": 1, **QUIET_API, **extra})


def tree(path) -> dict:
    return {str(p.relative_to(path)): p.read_text() if p.is_file() else None for p in sorted(path.rglob("*"))}


def test_existing_run_dir_is_not_overwritten(tmp_path):
    run_dir = tmp_path / "mine"
    run_dir.mkdir()
    (run_dir / "notes.txt").write_text("my notes")
    with pytest.raises(nettrain.NettrainError, match="already exists.*--overwrite.*--resume"):
        fit_into(run_dir)
    assert tree(run_dir) == {"notes.txt": "my notes"}
    # not a run directory: refused even with --overwrite
    with pytest.raises(nettrain.NettrainError, match="no .nettrain-run.json.*not a nettrain run directory"):
        fit_into(run_dir, overwrite=True)
    assert tree(run_dir) == {"notes.txt": "my notes"}


@pytest.mark.parametrize("files", [
    {"config.yaml": "lr: 0.1\n", "tensorboard/mine/notes.md": "my notes", "tensorboard/old/events.out.tfevents.1": "x"},
    {"config.yaml": "lr: 0.1\n"},
    {"config.yaml": "lr: 0.1\n", "metrics.csv": "my metrics\n", "best.pt": "my weights"}],
    ids=["config-and-tensorboard", "config-only", "config-metrics-best"])
def test_overwrite_refuses_a_folder_nettrain_has_no_record_of(tmp_path, files):
    """Names a run uses are not proof of a run: --overwrite once deleted such folders whole."""
    for name, text in files.items():
        (tmp_path / "project" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "project" / name).write_text(text)
    before = tree(tmp_path / "project")
    with pytest.raises(nettrain.NettrainError, match=r"refusing to overwrite .*project: it has no .nettrain-run"):
        fit_into(tmp_path / "project", overwrite=True)
    assert tree(tmp_path / "project") == before


def test_overwrite_deletes_only_what_nettrain_recorded(tmp_path):
    run_dir = tmp_path / "run"
    fit_into(run_dir, **{"run.tensorboard": True})
    recorded = json.loads((run_dir / ".nettrain-run.json").read_text())["files"]
    events = [n for n in recorded if n.startswith("tensorboard/events.out.tfevents.")]
    # two event files: the training's, and the fit's end's (tbreport.py: the report's figures and the HParams)
    assert len(events) == 2 and {"config.yaml", "metrics.csv", "last.pt", "best.pt", "best.safetensors",
                                 "environment.json", "confusion_matrix.csv"} <= set(recorded)
    (run_dir / "notes.txt").write_text("my notes")   # the user's, added to the run afterwards
    (run_dir / "tensorboard" / "mine").mkdir()
    (run_dir / "tensorboard" / "mine" / "plot.md").write_text("my plot")
    (run_dir / ".best.pt.0123456789ab.tmp").write_bytes(b"half")   # what a killed checkpoint write leaves is nettrain's
    fit_into(run_dir, overwrite=True, epochs=2)
    assert (run_dir / "notes.txt").read_text() == "my notes"
    assert (run_dir / "tensorboard" / "mine" / "plot.md").read_text() == "my plot"
    assert not any((run_dir / e).exists() for e in events) and not (run_dir / ".best.pt.0123456789ab.tmp").exists()
    assert len(read_metrics(run_dir / "metrics.csv")) == 2
    # the new run's record: its own files, not the user's
    assert "notes.txt" not in json.loads((run_dir / ".nettrain-run.json").read_text())["files"]
    # a file a run writes, put there by the user, is not written over
    (run_dir / "notes.txt").unlink()
    fit_into(run_dir, overwrite=True)
    data = json.loads((run_dir / ".nettrain-run.json").read_text())
    data["files"].remove("confusion_matrix.csv")
    (run_dir / ".nettrain-run.json").write_text(json.dumps(data))
    with pytest.raises(nettrain.NettrainError, match="holds confusion_matrix.csv, which nettrain did not record"):
        fit_into(run_dir, overwrite=True)
    assert (run_dir / "last.pt").exists()


def test_run_dirs_that_are_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config.yaml").write_text("my project\n")
    (tmp_path / "metrics.csv").write_text("my metrics\n")
    with pytest.raises(nettrain.NettrainError, match="--run-dir is empty"):   # "" is the current folder
        fit_into("", overwrite=True)
    assert (tmp_path / "config.yaml").read_text() == "my project\n" and (tmp_path / "metrics.csv").exists()
    assert main(["fit", "--dataset", "two-gaussians", "--model", "mlp", "--epochs", "1", "--run-dir", "",
                 "--overwrite"]) == 2
    fit_into(tmp_path / "real")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(nettrain.NettrainError, match="link is a symbolic link"):
        fit_into(tmp_path / "link", overwrite=True)
    assert (tmp_path / "real" / "last.pt").exists()
    with pytest.raises(nettrain.NettrainError, match="config.yaml is a file; choose another --run-dir"):
        fit_into(tmp_path / "config.yaml" / "sub")
    with pytest.raises(nettrain.NettrainError, match="is a file, not a run directory"):
        fit_into(tmp_path / "metrics.csv", overwrite=True)
    assert (tmp_path / "config.yaml").read_text() == "my project\n"
    assert (tmp_path / "metrics.csv").read_text() == "my metrics\n"


def test_cli_refuses_an_existing_run_dir_and_overwrite_replaces_a_run(tmp_path, capsys):
    args = ["fit", "--dataset", "two-gaussians", "--model", "mlp", "--epochs", "1", "--run-dir", str(tmp_path / "r"),
            "--run.progress", "none", "--run.tensorboard", "false", "--run.report", "false", "--run.report", "false"]
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
    a = nettrain.fit(dataset="two-gaussians", model="mlp", epochs=1, **QUIET_API)
    b = nettrain.fit(dataset="two-gaussians", model="mlp", epochs=1, **QUIET_API)
    assert a.dir.parent.name == "runs" and a.dir.name.endswith("-two-gaussians-mlp")
    assert a.dir != b.dir and (b.dir / "best.pt").exists()   # two runs in the same second do not collide
    (tmp_path / "empty").mkdir()
    c = nettrain.fit(dataset="two-gaussians", model="mlp", epochs=1, run_dir=tmp_path / "empty", **QUIET_API)
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
import os
import torch.nn.functional as F
calls = 0

def loss(outputs, targets):
    global calls
    calls += 1
    if calls == 30 and os.path.exists(os.environ["CTRL_C_ONCE"]):   # the resume (same loss: same run) goes on
        os.remove(os.environ["CTRL_C_ONCE"])
        raise KeyboardInterrupt
    return F.cross_entropy(outputs, targets)
"""


def test_ctrl_c_says_which_epoch_is_kept_and_how_to_resume(tmp_path, capsys, monkeypatch):
    (tmp_path / "ctrl_c.py").write_text(CTRL_C_AT_STEP_30)   # digits: 23 steps an epoch, so in epoch 2
    monkeypatch.setenv("CTRL_C_ONCE", str(tmp_path / "once"))
    (tmp_path / "once").write_text("")
    args = ["fit", "--loss", f"{tmp_path / 'ctrl_c.py'}:loss", "--epochs", "3", "--run-dir", str(tmp_path / "run"),
            "--run.progress", "none", "--run.tensorboard", "false", "--run.report", "false", "--run.report", "false"]
    assert main(args) == 130
    err = capsys.readouterr().err
    assert f"stopped in epoch 2 of 3; {tmp_path / 'run' / 'last.pt'} keeps epoch 1; continue with: nettrain fit --resume " \
           f"{tmp_path / 'run'}" in err and err.rstrip().endswith("nettrain: interrupted")
    assert main(["fit", "--resume", str(tmp_path / "run")]) == 0
    assert [row["epoch"] for row in read_metrics(tmp_path / "run" / "metrics.csv")] == [1, 2, 3]



HOLD_THE_LOCK = """
import sys, time
from nettrain.runlock import RunLock
RunLock(sys.argv[1], "nettrain fit --run-dir elsewhere").acquire()
print("locked", flush=True)
time.sleep(120)
"""


def test_a_run_directory_has_one_writer_at_a_time(tmp_path, capsys):
    """Another process writing into the run (its lock held) refuses --overwrite and --resume, naming the holder; once
    that process is dead (kill -9: the kernel drops its flock) the lock is no longer in the way."""
    import subprocess
    import sys
    run_dir = tmp_path / "run"
    args = ["fit", "--dataset", "two-gaussians", "--model", "mlp", "--epochs", "1", "--run-dir", str(run_dir),
            "--run.progress", "none", "--run.tensorboard", "false", "--run.report", "false", "--run.report", "false"]
    assert main(args) == 0
    before = (run_dir / "last.pt").read_bytes()
    holder = subprocess.Popen([sys.executable, "-c", HOLD_THE_LOCK, str(run_dir)], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    try:
        assert holder.stdout.readline() == "locked\n"
        capsys.readouterr()
        for more in (["--overwrite"], ["--resume", str(run_dir), "--epochs", "2"]):
            assert main(args + more) == 2
            err = capsys.readouterr().err
            assert err.startswith(f"nettrain: error: {run_dir} is in use by another nettrain process (pid "
                                  f"{holder.pid} on ") and "running 'nettrain fit --run-dir elsewhere' since 20" in err
            assert err.count("\n") == 1
        assert (run_dir / "last.pt").read_bytes() == before
    finally:
        holder.kill()
        holder.wait()
    assert main(args + ["--resume", str(run_dir), "--epochs", "2"]) == 0
    assert main(args + ["--overwrite"]) == 0
    from nettrain.runlock import holder as lock_holder
    assert lock_holder(run_dir)["pid"] == str(os.getpid())   # the last writer, for a report to show


class BatchNormOverflows(torch.nn.Module):
    """A finite loss with a running variance that has overflowed (as a huge activation makes it): only the loss used
    to be checked, and the inf went into last.pt."""

    def __init__(self):
        super().__init__()
        self.lin, self.bn, self.out, self.calls = torch.nn.Linear(2, 8), torch.nn.BatchNorm1d(8), \
            torch.nn.Linear(8, 2), 0

    def forward(self, x):
        if self.training:
            self.calls += 1
            if self.calls > 4:   # 160 examples at batch 64: 3 steps an epoch, so in epoch 2
                self.bn.running_var.fill_(float("inf"))   # (training normalizes by the batch's own variance)
        return self.out(self.bn(self.lin(x)))


def test_non_finite_weights_stop_the_run_before_a_checkpoint_keeps_them(tmp_path):
    from nettrain.data import load_data
    from nettrain.config import Config
    data = load_data(Config().override({"data.name": "two-gaussians"}).data)
    x, y = data.train.x, data.train.y
    with pytest.raises(DivergedError, match=r"bn.running_var holds inf or NaN after epoch 2 \(the loss is finite\); "
                                            r"lower the learning rate .*run/last.pt keeps epoch 1$"):
        nettrain.fit(model=BatchNormOverflows(), data=(x, y), epochs=3, batch_size=64, run_dir=tmp_path / "run",
                     **QUIET_API)
    last = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert last["epoch"] == 1 and all(torch.isfinite(v).all() for v in last["model"].values()
                                      if v.is_floating_point())


def test_disk_full_during_a_checkpoint_is_one_line_and_keeps_the_previous_one(tmp_path, capsys, monkeypatch):
    import errno
    save = torch.save
    calls = []

    def fills_the_disk(obj, f):
        calls.append(obj["epoch"])
        if obj["epoch"] == 2:
            f.write(b"half a checkpoint")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        save(obj, f)
    monkeypatch.setattr(torch, "save", fills_the_disk)
    run_dir = tmp_path / "run"
    args = ["fit", "--dataset", "two-gaussians", "--model", "mlp", "--epochs", "3", "--run-dir", str(run_dir),
            "--run.progress", "none", "--run.tensorboard", "false", "--run.report", "false", "--scheduler", "none"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"nettrain: error: disk full while writing {run_dir}/") and err.count("\n") == 1
    assert "; free space on that disk and run again" in err and "is intact" in err
    assert not [p.name for p in run_dir.iterdir() if p.name.endswith(".tmp")]   # no temporary left behind
    assert torch.load(run_dir / "last.pt", weights_only=True)["epoch"] == 1

    # torch's own writer says "unexpected pos" without an errno: on a full disk that is a full disk too
    def torch_fills_the_disk(obj, f):
        raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 64 vs 0")
    monkeypatch.setattr(torch, "save", torch_fills_the_disk)
    monkeypatch.setattr("nettrain.engine.checkpoint._nearly_full", lambda path: True)
    assert main(args + ["--overwrite"]) == 2
    assert capsys.readouterr().err.startswith("nettrain: error: disk full while writing")


def test_a_read_only_run_dir_is_one_line(tmp_path, capsys, monkeypatch):
    import errno
    run_dir = tmp_path / "run"
    args = ["fit", "--dataset", "two-gaussians", "--model", "mlp", "--epochs", "1", "--run-dir", str(run_dir),
            "--run.progress", "none", "--run.tensorboard", "false", "--run.report", "false", "--run.report", "false"]
    assert main(args) == 0
    capsys.readouterr()

    def read_only(src, dst, **dir_fds):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))
    monkeypatch.setattr(os, "replace", read_only)
    assert main(["evaluate", str(run_dir)]) == 0   # evaluate only reads the run: a read-only one is fine
    capsys.readouterr()
    for command in (["fit", "--resume", str(run_dir), "--epochs", "2"], args + ["--overwrite"]):
        assert main(command) == 2, command
        err = capsys.readouterr().err.splitlines()[-1]
        assert err == f"nettrain: error: cannot write into {run_dir} (Read-only file system); make it writable, or " \
                      f"choose another --run-dir", command
    assert not [p.name for p in run_dir.iterdir() if p.name.endswith(".tmp")]


def test_a_record_edited_by_hand_deletes_nothing_outside_the_run(tmp_path):
    run_dir = tmp_path / "run"
    fit_into(run_dir)
    (tmp_path / "outside.txt").write_text("keep me")
    data = json.loads((run_dir / ".nettrain-run.json").read_text())
    (run_dir / ".nettrain-run.json").write_text(json.dumps({"files": data["files"] + ["../outside.txt",
                                                                                     str(tmp_path / "outside.txt")]}))
    fit_into(run_dir, overwrite=True)
    assert (tmp_path / "outside.txt").read_text() == "keep me"


def test_a_validation_split_chooses_best_pt_and_the_test_split_never_does(tmp_path, capsys):
    run = nettrain.fit(dataset="two-gaussians", model="mlp", epochs=3, lr=0.01, seed=1, run_dir=tmp_path / "val",
                       **{"model.args.hidden": [8], "data.val_fraction": 0.2, **QUIET_API, "run.progress": "lines"})
    best = torch.load(run.dir / "best.pt", weights_only=True)
    accs = [r["val_acc"] for r in run.metrics]
    assert best["best"] == {"metric": "val_acc", "value": max(accs), "epoch": accs.index(max(accs)) + 1}
    assert [r["val_split"] for r in read_metrics(run.dir / "metrics.csv")] == ["val"] * 3
    out = capsys.readouterr().out
    assert "| val loss" in out and "--data.val_fraction" not in out


def test_without_a_validation_split_the_log_says_test_and_suggests_one_once(tmp_path, capsys):
    nettrain.fit(dataset="two-gaussians", model="mlp", epochs=2, run_dir=tmp_path / "r",
                 **{"model.args.hidden": [8], **QUIET_API, "run.progress": "lines"})
    out = capsys.readouterr().out
    assert out.count("--data.val_fraction 0.1") == 1 and "| test loss" in out and "| val loss" not in out
    assert "model: the weights of epoch 2 (the last" in out
