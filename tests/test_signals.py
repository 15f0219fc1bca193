"""Ctrl-C, SIGTERM and SIGHUP: the command stops with one line saying which epoch last.pt really keeps and how to go
on, exits 128 + the signal, and never shows a traceback; the Python API installs no signal handlers."""
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

import nettrain
from nettrain.cli import main
from nettrain.engine import checkpoint as ckpt_io
from conftest import QUIET

SMALL = ["fit", "--dataset", "two-gaussians", "--model", "mlp", "--model.args.hidden", "[8]", *QUIET]
# a run that lasts long enough to be stopped in the middle
SLOW = ["fit", "--dataset", "two-gaussians", "--model", "mlp", "--model.args.hidden", "[8]", "--epochs", "5000",
        "--device", "cpu", *QUIET]


def interrupt_at_last_pt_save(monkeypatch, epoch):
    """Ctrl-C as the checkpoints of `epoch` are written: after its metrics row, before a checkpoint holds it."""
    save = ckpt_io.save

    def interrupted(path, state):
        if state["epoch"] == epoch:
            raise KeyboardInterrupt
        save(path, state)
    monkeypatch.setattr(ckpt_io, "save", interrupted)


@pytest.mark.parametrize("epoch", [2, 3], ids=["mid-run", "last-epoch"])
def test_ctrl_c_at_an_epoch_end_names_the_epoch_last_pt_really_keeps(tmp_path, capsys, monkeypatch, epoch):
    interrupt_at_last_pt_save(monkeypatch, epoch)
    assert main(SMALL + ["--epochs", "3", "--run-dir", str(tmp_path / "run")]) == 130
    err = capsys.readouterr().err
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=True)["epoch"] == epoch - 1
    assert f"stopped in epoch {epoch} of 3; {tmp_path / 'run' / 'last.pt'} keeps epoch {epoch - 1}; continue " \
           f"with: nettrain fit --resume {tmp_path / 'run'}\n" in err   # not "keeps epoch 3", not "epoch 4 of 3"
    assert err.endswith("nettrain: interrupted\n") and "Traceback" not in err


def test_the_api_installs_no_signal_handlers(tmp_path, monkeypatch):
    def refuse(*args):
        raise AssertionError("nettrain.fit changed the program's signal handling")
    monkeypatch.setattr(signal, "signal", refuse)
    nettrain.fit(dataset="two-gaussians", model="mlp", epochs=1, run_dir=tmp_path / "run",
                 **{"run.progress": "none", "run.tensorboard": False, "run.report": False})


def start(args, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "nettrain", *args], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("sig", [signal.SIGTERM, pytest.param(signal.SIGHUP, marks=pytest.mark.slow)],
                         ids=["TERM", "HUP"])   # HUP stops as TERM does: the slow tier tries it
def test_a_stop_signal_during_training_stops_like_ctrl_c(tmp_path, sig):
    run_dir = tmp_path / "run"
    proc = start(SLOW + ["--run-dir", str(run_dir)], tmp_path)
    try:
        deadline = time.monotonic() + 120
        while not (run_dir / "last.pt").exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(0.02)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 128 + sig, err
    last = torch.load(run_dir / "last.pt", weights_only=True)
    if "partial" in last:   # stopped at a step boundary: last.pt keeps the epoch in progress (engine/stop.py)
        assert f"in epoch {last['partial']['epoch']} of 5000; {run_dir / 'last.pt'} keeps it; continue with: " \
               f"nettrain fit --resume {run_dir}" in err
    else:   # the signal came in an epoch's last step, validation or checkpoint: it stopped after that epoch
        assert f"{run_dir / 'last.pt'} keeps epoch {last['epoch']}; continue with: nettrain fit --resume {run_dir}" \
            in err
    assert "Traceback" not in err
    assert err.rstrip().endswith("interrupted" if sig == signal.SIGINT else f"stopped by {sig.name}")


def test_ctrl_c_during_start_up_is_not_a_traceback(tmp_path):
    """Ctrl-C as soon as torch is imported (-X importtime writes a line to stderr as each import ends): the data is
    being loaded and the model built, before any training step."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-X", "importtime", "-m", "nettrain", *SLOW, "--run-dir",
                             str(tmp_path / "run")], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stderr:   # a blocking read: ends with the line, or with the process (then fails below)
            if line.rstrip().endswith("| torch"):
                break
        assert proc.poll() is None, "the command ended before it imported torch"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    err = "".join(line for line in err.splitlines(keepends=True) if not line.startswith("import time:"))
    assert proc.returncode == 130 and "Traceback" not in err and err.rstrip().endswith("nettrain: interrupted"), err
