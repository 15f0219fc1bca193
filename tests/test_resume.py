"""Resume after kill -9, and repeating a run from its config.yaml: both give exactly the same numbers (CPU)."""
import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

from conftest import blocker
from nettrain.cli import main
from nettrain.runs import read_metrics

# Big enough that an epoch takes about a second on one CPU thread (so the kill lands inside epoch 3), with
# the state that must survive a restart: momentum, a cosine schedule, Lookahead's slow weights, and seeded
# augmentation.
ARGS = ["fit", "--dataset", "digits", "--model", "cnn", "--model.args.width", "16", "--batch-size", "4",
        "--epochs", "4", "--precision", "32", "--device", "cpu", "--optimizer", "sgd", "--lr", "0.02",
        "--momentum", "0.9", "--scheduler", "cosine", "--train.lookahead", "5", "--data.flip", "true",
        "--data.crop_padding", "1", "--seed", "3", "--run.progress", "none", "--run.tensorboard", "false", "--run.report", "false", "--run.report", "false"]
COLUMNS = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr"]


def numbers(run_dir):
    return [{k: row[k] for k in COLUMNS} for row in read_metrics(run_dir / "metrics.csv")]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted 4-epoch run, with the callback that holds the killed run (doing nothing here)."""
    folder = tmp_path_factory.mktemp("resume")
    run_dir = folder / "reference"
    assert main(ARGS + blocker(folder) + ["--run-dir", str(run_dir)]) == 0
    return run_dir


def data_rows(path) -> int:
    try:
        return max(0, len(path.read_text().strip().splitlines()) - 1)
    except FileNotFoundError:
        return 0



def kill_when(proc, ready, what: str, timeout: float = 300):
    """SIGKILL the fit running in `proc` as soon as `ready()` holds (it must not end, nor take `timeout`, before)."""
    try:
        deadline = time.monotonic() + timeout
        while not ready():
            assert proc.poll() is None, f"the run ended early: {proc.stderr.read().decode()}"
            assert time.monotonic() < deadline, f"{what} never happened"
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL

@pytest.mark.slow   # beside the 4-epoch reference run of about 4 s an epoch
def test_resume_after_kill_9_in_epoch_3_matches_the_uninterrupted_run(reference, tmp_path):
    run_dir, held = tmp_path / "killed", tmp_path / "held"
    # held at step 820 (360 steps an epoch): in the middle of epoch 3; the reference's thread count
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads()), "NETTRAIN_TEST_BLOCK_AT_STEP": "820",
           "NETTRAIN_TEST_BLOCKED": str(held)}
    spec = ["--callbacks", f"{reference.parent / 'blocker.py'}:Block"]
    proc = subprocess.Popen([sys.executable, "-m", "nettrain", *ARGS, *spec, "--run-dir", str(run_dir)], cwd=tmp_path,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    kill_when(proc, held.exists, "step 820")
    assert data_rows(run_dir / "metrics.csv") == 2, "epoch 3 had already finished when the kill came"
    assert torch.load(run_dir / "last.pt", weights_only=True)["epoch"] in (1, 2)   # never a half-written file

    assert main(["fit", "--resume", str(run_dir)]) == 0
    assert numbers(run_dir) == numbers(reference)   # every loss, accuracy and lr, exactly
    resumed = torch.load(run_dir / "last.pt", weights_only=True)
    expected = torch.load(reference / "last.pt", weights_only=True)
    assert resumed["epoch"] == 4
    assert all(torch.equal(resumed["model"][k], v) for k, v in expected["model"].items())
    assert (run_dir / "config.yaml").read_text() == (reference / "config.yaml").read_text()


@pytest.mark.slow   # beside the 4-epoch reference run of about 4 s an epoch
def test_config_yaml_repeats_a_run_exactly(reference, tmp_path):
    other = tmp_path / "again"
    assert main(["fit", "--config", str(reference / "config.yaml"), "--run-dir", str(other)]) == 0
    assert numbers(other) == numbers(reference)
    a = torch.load(other / "last.pt", weights_only=True)["model"]
    b = torch.load(reference / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in b)


@pytest.mark.slow   # beside the 4-epoch reference run of about 4 s an epoch
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
            "model.args.dropout": 0.2, "model.args.hidden": [16], "run.progress": "none", "run.tensorboard": False, "run.report": False}
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
         "run.progress": "none", "run.tensorboard": False, "run.report": False}


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


def small_run(tmp_path, name="run", epochs=2, **extra):
    import nettrain
    return nettrain.fit(epochs=epochs, run_dir=tmp_path / name, **{**SMALL, **extra})


def files(run_dir) -> dict:
    """Every file's bytes and mtime, but the lock's (each writer that takes the lock puts its own name in it)."""
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(run_dir.iterdir())
            if p.is_file() and p.name != ".nettrain-lock"}


@pytest.mark.parametrize("change,named", [(["--lr", "0.1"], "optim.lr (0.001 -> 0.1)"),
                                          (["--batch-size", "7"], "train.batch_size (16 -> 7)"),
                                          (["--optimizer", "sgd"], "optim.name ('adam' -> 'sgd')")],
                         ids=["lr", "batch-size", "optimizer"])
def test_resume_refuses_a_change_that_makes_another_run(tmp_path, capsys, change, named):
    """Once silently ignored (the lr), or a cosine rising again (the batch size), or a KeyError traceback (an Adam
    state given to SGD): now one line naming the key and how to make that run."""
    small_run(tmp_path)
    before = files(tmp_path / "run")
    assert main(["fit", "--resume", str(tmp_path / "run"), "--epochs", "4", *change]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"nettrain: error: --resume continues {tmp_path / 'run'} as it was started and cannot "
                          f"change {named}; start a new run with the change: nettrain fit --config "
                          f"{tmp_path / 'run'}/config.yaml --") and err.count("\n") == 1
    assert files(tmp_path / "run") == before


NAN_WHEN_ASKED = """
import os
import torch.nn.functional as F

def loss(outputs, targets):
    value = F.cross_entropy(outputs, targets)
    return value * float("nan") if os.environ.get("NAN_NOW") else value
"""


def test_a_resume_that_diverges_keeps_the_runs_config(tmp_path, monkeypatch):
    import nettrain
    from nettrain.errors import DivergedError
    (tmp_path / "nan_loss.py").write_text(NAN_WHEN_ASKED)
    small_run(tmp_path, loss=f"{tmp_path / 'nan_loss.py'}:loss")
    config = (tmp_path / "run" / "config.yaml").read_text()
    monkeypatch.setenv("NAN_NOW", "1")
    with pytest.raises(DivergedError):
        nettrain.fit(resume=tmp_path / "run", epochs=4)
    assert (tmp_path / "run" / "config.yaml").read_text() == config   # still the 2-epoch run it is
    monkeypatch.delenv("NAN_NOW")
    nettrain.fit(resume=tmp_path / "run", epochs=3)
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["train"]["epochs"] == 3
    events = [json.loads(line) for line in (tmp_path / "run" / "events.jsonl").read_text().splitlines()]
    assert [(e["from_epoch"], e["epochs"], e["changed"]) for e in events] == \
        [(2, 4, {"train.epochs": [2, 4]}), (2, 3, {"train.epochs": [2, 3]})]
    assert all(e["threads"] == torch.get_num_threads() and e["time"] for e in events)


def test_a_run_stopped_before_its_first_checkpoint_resumes_from_epoch_0(tmp_path, monkeypatch, capsys):
    from nettrain.engine import checkpoint as ckpt_io
    straight = small_run(tmp_path, "straight")
    save = ckpt_io.save

    def killed(path, state):
        raise KeyboardInterrupt   # as a kill before the first checkpoint
    monkeypatch.setattr(ckpt_io, "save", killed)
    with pytest.raises(KeyboardInterrupt):
        small_run(tmp_path)
    monkeypatch.setattr(ckpt_io, "save", save)
    assert not (tmp_path / "run" / "last.pt").exists() and (tmp_path / "run" / "config.yaml").exists()
    assert "no epoch had been kept, so nettrain fit --resume" in capsys.readouterr().err
    assert main(["fit", "--resume", str(tmp_path / "run")]) == 0
    assert numbers(tmp_path / "run") == numbers(straight.dir)
    # killed even before its config.yaml: clearly restartable
    from nettrain.runs import RunDir
    RunDir.create(tmp_path / "early", "two-gaussians", "mlp", overwrite=False).unlock()
    capsys.readouterr()
    assert main(["fit", "--resume", str(tmp_path / "early")]) == 2
    assert f"the run stopped before it wrote it; start it again with nettrain fit ... --run-dir {tmp_path / 'early'} " \
           f"--overwrite" in capsys.readouterr().err
    assert main(["fit", "--dataset", "two-gaussians", "--model", "mlp", "--epochs", "1", "--run-dir",
                 str(tmp_path / "early"), "--overwrite", "--run.progress", "none", "--run.tensorboard", "false", "--run.report", "false", "--run.report", "false"]) == 0


def test_resuming_on_another_thread_count_warns_once(tmp_path, capsys):
    small_run(tmp_path)
    threads = torch.get_num_threads()
    try:
        assert main(["fit", "--resume", str(tmp_path / "run"), "--epochs", "3", "--train.threads",
                     str(threads + 1)]) == 0
    finally:
        torch.set_num_threads(threads)
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert warnings == [f"warning: {tmp_path / 'run'} was trained on {threads} threads and resumes on {threads + 1}: "
                        f"the result will not be bit for bit an uninterrupted run's (--train.threads {threads} "
                        f"resumes exactly)"]
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=True)["threads"] == threads + 1


def test_resuming_a_finished_run_writes_nothing(tmp_path):
    import nettrain
    small_run(tmp_path)
    before = files(tmp_path / "run")
    run = nettrain.fit(resume=tmp_path / "run", **{"run.progress": "none"})
    assert files(tmp_path / "run") == before and len(run.metrics) == 2   # environment.json included


def test_best_is_never_behind_last(tmp_path, monkeypatch, capsys):
    """best.pt is written before last.pt: a kill between the two leaves best.pt ahead, and the resume starts from
    it; a best.pt left behind by an older nettrain (last.pt first) is rewritten from last.pt on resume."""
    import nettrain
    from nettrain.engine import checkpoint as ckpt_io
    opts = {**SMALL, "dataset": "quadratic", "scheduler": "none"}   # the val loss falls every epoch: best each time
    straight = nettrain.fit(epochs=3, run_dir=tmp_path / "straight", **opts)
    save = ckpt_io.save

    def killed_before_last(epoch):
        def save_or_die(path, state):
            if path.name == "last.pt" and state["epoch"] == epoch:
                raise KeyboardInterrupt
            save(path, state)
        return save_or_die
    monkeypatch.setattr(ckpt_io, "save", killed_before_last(2))
    with pytest.raises(KeyboardInterrupt):
        nettrain.fit(epochs=3, run_dir=tmp_path / "run", **opts)
    monkeypatch.setattr(ckpt_io, "save", save)
    best = torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    last = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert (best["epoch"], last["epoch"]) == (2, 1) and best["best"]["epoch"] == 2
    assert f"{tmp_path / 'run' / 'best.pt'} keeps epoch 2" in capsys.readouterr().err
    nettrain.fit(resume=tmp_path / "run", **{"run.progress": "lines"})
    assert f"resuming from {tmp_path / 'run' / 'best.pt'} (epoch 2)" in capsys.readouterr().out
    assert numbers(tmp_path / "run") == numbers(straight.dir)

    # the same in the last epoch: the resume has nothing left to train, and last.pt catches up with best.pt
    monkeypatch.setattr(ckpt_io, "save", killed_before_last(3))
    with pytest.raises(KeyboardInterrupt):
        nettrain.fit(epochs=3, run_dir=tmp_path / "at-end", **opts)
    monkeypatch.setattr(ckpt_io, "save", save)
    assert torch.load(tmp_path / "at-end" / "last.pt", weights_only=True)["epoch"] == 2
    nettrain.fit(resume=tmp_path / "at-end")
    a = torch.load(tmp_path / "at-end" / "last.pt", weights_only=True)
    b = torch.load(straight.dir / "last.pt", weights_only=True)
    assert a["epoch"] == 3 and all(torch.equal(a["model"][k], v) for k, v in b["model"].items())

    # an older nettrain's kill between last.pt (best epoch 3) and best.pt (still epoch 2)
    stale = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert stale["best"]["epoch"] == 3
    torch.save({**stale, "epoch": 2, "best": {**stale["best"], "epoch": 2}}, tmp_path / "run" / "best.pt")
    nettrain.fit(resume=tmp_path / "run", epochs=4, **{"run.progress": "lines"})
    assert "best.pt is rewritten from it" in capsys.readouterr().out
    best = torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    last = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert best["epoch"] >= 3 and best["epoch"] == last["best"]["epoch"]


@pytest.mark.slow
def test_kill_9_campaign_quick(tmp_path):
    """benchmarks/kill_campaign.py with 3 kills (the full campaign: 30): nothing corrupt, stale or lost, and every
    resumed run ends with the uninterrupted run's weights, bit for bit."""
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "kill_campaign.py"
    spec = importlib.util.spec_from_file_location("kill_campaign", path)
    campaign = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(campaign)
    counts = campaign.campaign(kills=3, seed=1, epochs=3, work=tmp_path, say=lambda line: None)
    assert counts["kills"] >= 2 and counts["in_window"] >= 1
    assert (counts["corrupt"], counts["stale"], counts["lost"]) == (0, 0, 0) and counts["equal"] == counts["kills"]


def test_resume_refuses_other_data(tmp_path):
    """data.dir may change on a resume (the same data elsewhere); other data under the run's name may not."""
    import nettrain
    from nettrain.errors import DataError
    x = torch.linspace(-1, 1, 64).unsqueeze(1)
    opts = {"optimizer": "sgd", "lr": 0.1, "batch_size": 16, "loss": "mse", "run.progress": "none",
            "run.tensorboard": False, "run.report": False, "model": "mlp", "model.args.hidden": [4]}
    nettrain.fit(data=(x, x ** 2), epochs=1, run_dir=tmp_path / "run", **opts)
    with pytest.raises(DataError, match=r"run was trained on other data \(\d+ training examples, sample hash \w+\) "
                                        r"than it would resume on"):
        nettrain.fit(data=(x, x ** 3), resume=tmp_path / "run", epochs=2, **opts)
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=True)["epoch"] == 1
    nettrain.fit(data=(x, x ** 2), resume=tmp_path / "run", epochs=2, **opts)
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=True)["epoch"] == 2
