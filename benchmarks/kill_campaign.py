"""The kill -9 campaign: a run killed at any instant loses nothing and resumes to the uninterrupted run's weights.

    python benchmarks/kill_campaign.py [--kills 30] [--seed 0] [--epochs 5] [--keep DIR]

Trains one small deterministic run (digits, a CNN, SGD with momentum, a cosine schedule, seeded flips; one thread)
uninterrupted, then starts the same run --kills times in `nettrain fit` processes and SIGKILLs each at a seeded
random instant: a third of them in the window between an improving epoch's best.pt and last.pt writes (made
visible with NETTRAIN_TEST_PAUSE_BETWEEN_CHECKPOINTS, which nettrain reads once and ignores when unset), the rest
anywhere from the process's start to its end. After each kill it checks that every checkpoint file loads (corrupt
otherwise), that best.pt is not behind last.pt's record of the best epoch (stale), then resumes the run to its end
(`--resume`, or starting it again when the kill came before its config was written) and compares the final
weights and metrics with the uninterrupted run's, bit for bit. Prints the counts: kills, in the window, corrupt,
stale, lost (a resume that failed or did not reach the end), resumes equal.
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PAUSE = 0.15   # seconds between best.pt and last.pt in the killed runs


def fit_args(epochs: int) -> list:
    return ["fit", "--dataset", "digits", "--model", "cnn", "--model.args.width", "8", "--batch-size", "32",
            "--epochs", str(epochs), "--precision", "32", "--device", "cpu", "--optimizer", "sgd", "--lr", "0.05",
            "--momentum", "0.9", "--data.flip", "true", "--seed", "7", "--run.progress", "none",
            "--run.tensorboard", "false"]


def env(pause: float = 0) -> dict:
    e = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}
    e.pop("NETTRAIN_TEST_PAUSE_BETWEEN_CHECKPOINTS", None)
    if pause:
        e["NETTRAIN_TEST_PAUSE_BETWEEN_CHECKPOINTS"] = str(pause)
    return e


def nettrain(args, pause: float = 0, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "nettrain", *args], env=env(pause), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, **kw)


def mtime(path: Path):
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return None


def kill_in_window(proc, run_dir: Path, rng: random.Random, epochs: int) -> bool:
    """SIGKILL right after the k-th write of best.pt: inside the pause before last.pt. False if the run ended."""
    k, seen, last = rng.randint(1, epochs), 0, None
    while proc.poll() is None:
        m = mtime(run_dir / "best.pt")
        if m is not None and m != last:
            last, seen = m, seen + 1
            if seen >= k:
                proc.send_signal(signal.SIGKILL)
                return True
        time.sleep(0.002)
    return False


def kill_at_random(proc, run_dir: Path, rng: random.Random, span: float, from_start: bool) -> bool:
    """SIGKILL at a uniform instant of the process's life (`from_start`), or of its training: from the moment its
    config.yaml is written (start-up takes most of a small run's time, and is not where a run can be lost)."""
    while not from_start and not (run_dir / "config.yaml").exists():
        if proc.poll() is not None:
            return False
        time.sleep(0.002)
    deadline = time.monotonic() + rng.uniform(0, span)
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    return True


def check_files(run_dir: Path) -> tuple:
    """(corrupt, stale, in_window) for what a kill left."""
    import torch
    from safetensors.torch import load_file
    states, corrupt = {}, 0
    for name in ("last.pt", "best.pt"):
        if (run_dir / name).exists():
            try:
                states[name] = torch.load(run_dir / name, weights_only=True)
            except Exception:
                corrupt += 1
    if (run_dir / "best.safetensors").exists():
        try:
            load_file(str(run_dir / "best.safetensors"))
        except Exception:
            corrupt += 1
    last, best = states.get("last.pt"), states.get("best.pt")
    stale = int(last is not None and last["best"]["epoch"] is not None
                and (best is None or best["epoch"] < last["best"]["epoch"]))
    in_window = int(best is not None and (last is None or best["epoch"] > last["epoch"]))
    return corrupt, stale, in_window


def resume_here(args) -> int:
    import torch
    from nettrain.cli import main
    torch.set_num_threads(1)
    return main(args)


def same(run_dir: Path, reference: Path) -> bool:
    import torch
    from nettrain.runs import read_metrics
    a = torch.load(run_dir / "last.pt", weights_only=True)
    b = torch.load(reference / "last.pt", weights_only=True)
    weights = a["model"].keys() == b["model"].keys() and all(torch.equal(a["model"][k], b["model"][k])
                                                             for k in b["model"])
    columns = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr")
    rows = [[r[c] for c in columns] for r in read_metrics(run_dir / "metrics.csv")]
    return weights and rows == [[r[c] for c in columns] for r in read_metrics(reference / "metrics.csv")]


def campaign(kills: int, seed: int, epochs: int, work: Path, say=print) -> dict:
    rng = random.Random(seed)
    reference = work / "reference"
    t0 = time.monotonic()
    proc = nettrain(fit_args(epochs) + ["--run-dir", str(reference)])
    while proc.poll() is None and not (reference / "config.yaml").exists():
        time.sleep(0.002)
    t1 = time.monotonic()
    _, err = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"the reference run failed: {err}")
    import torch
    history = torch.load(reference / "last.pt", weights_only=True)["history"]
    improving = sum(1 for i, r in enumerate(history) if r["val_acc"] > max([h["val_acc"] for h in history[:i]] or
                                                                             [-1]))   # best.pt writes
    spans = {True: time.monotonic() - t0 + PAUSE * improving,    # start-up, training and the pauses
             False: time.monotonic() - t1 + PAUSE * improving}   # training (from config.yaml) and the pauses
    counts = dict(kills=0, in_window=0, corrupt=0, stale=0, lost=0, restarted=0, equal=0)
    for i in range(2 * kills):   # a kill drawn after the run's end is not counted: draw another
        if counts["kills"] == kills:
            break
        run_dir = work / f"kill{i}"
        proc = nettrain(fit_args(epochs) + ["--run-dir", str(run_dir)], pause=PAUSE)
        window = i % 3 == 0
        killed = kill_in_window(proc, run_dir, rng, improving) if window else \
            kill_at_random(proc, run_dir, rng, spans[i % 6 == 1], from_start=i % 6 == 1)
        proc.wait()
        if not killed or proc.returncode != -signal.SIGKILL:
            say(f"  kill {i}: the run ended first (rc {proc.returncode}); not counted")
            continue
        counts["kills"] += 1
        corrupt, stale, in_window = check_files(run_dir) if run_dir.exists() else (0, 0, 0)
        counts["corrupt"] += corrupt
        counts["stale"] += stale
        counts["in_window"] += in_window
        if (run_dir / "config.yaml").exists():
            args = ["fit", "--resume", str(run_dir)]
        else:   # killed before the run had written its config: start it again
            args = fit_args(epochs) + ["--run-dir", str(run_dir), "--overwrite"]
            counts["restarted"] += 1
            if run_dir.exists() and not any(run_dir.iterdir()):
                run_dir.rmdir()
        rc = resume_here(args)   # in this process (one thread, as the killed run): no second start-up
        if rc != 0 or not (run_dir / "last.pt").exists():
            counts["lost"] += 1
            say(f"  kill {i}: the resume failed (rc {rc})")
            continue
        equal = same(run_dir, reference)
        counts["equal"] += int(equal)
        say(f"  kill {i} ({'in the window' if window else 'at random'}): corrupt {corrupt} stale {stale} "
            f"best ahead of last {in_window} resumed {'equal' if equal else 'DIFFERENT'}")
    return counts


def main():
    os.environ.setdefault("OMP_NUM_THREADS", "1")   # before torch loads in this process (the resumes)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kills", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--keep", help="keep the runs in this folder (default: a temporary one, removed)")
    a = p.parse_args()
    sys.path.insert(0, str(REPO / "src"))
    work = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix="kill_campaign-"))
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    try:
        c = campaign(a.kills, a.seed, a.epochs, work)
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(f"kills {c['kills']}  in the best/last window {c['in_window']}  corrupt {c['corrupt']}  stale {c['stale']}  "
          f"lost {c['lost']}  restarted {c['restarted']}  resumes equal {c['equal']}/{c['kills']}  "
          f"({time.monotonic() - t0:.0f}s)")
    return 0 if c["corrupt"] == c["stale"] == c["lost"] == 0 and c["equal"] == c["kills"] else 1


if __name__ == "__main__":
    sys.exit(main())
