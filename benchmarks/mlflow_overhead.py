"""What MLflow tracking (--run.mlflow, mlflowlog.py) adds to each epoch, against a CIFAR-10 fast epoch.

    python benchmarks/mlflow_overhead.py [--dataset digits] [--model mlp] [--epochs 20] [--batch-size 64]

Runs one fit three times in this process (mlflow imported by an untimed fit first, so that neither timed fit pays
it): without tracking, then logged to a new SQLite tracking database, alternating, and prints:

- the epochs' own seconds with and without tracking (median of all, and of the later half, when the client's
  start-up in its thread, importing mlflow and making a new database's tables, no longer competes with training
  for the cores; on a busy machine these differences are noise);
- what tracking costs an epoch directly: the callback's on_epoch_end in the training thread (it only queues the
  row), and the client's work for the row in its own thread (wall and that thread's CPU), which at worst takes a
  core's time from training;
- the per-fit costs beside the epochs, in the client's thread: the client made (a new database's tables), the
  MLflow run opened (experiment, run, params, tags) and the end's upload (test metrics, artifacts), which the fit's
  end waits for;
- the per-epoch cost as a share of a CIFAR-10 fast epoch (recipes/cifar10-fast.yaml: 285 s of training for 6
  epochs on the 2-core Xeon, benchmarks/results/cifar10_fast.txt; goal <= 1%).
"""
import argparse
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from common import REPO, header

import nettrain
from nettrain import mlflowlog

CIFAR10_FAST_EPOCH = 285 / 6   # seconds: training time of the recipe's 6 epochs (results/cifar10_fast.txt)


def timed(owner, name: str, out: list, cpu: bool = False):
    """Wrap owner.name to append (wall seconds, this thread's CPU seconds) of each call to `out`; returns the
    original for putting back."""
    real = getattr(owner, name)

    def wrapper(*a, **kw):
        t, c = time.perf_counter(), time.thread_time()
        try:
            return real(*a, **kw)
        finally:
            out.append((time.perf_counter() - t, time.thread_time() - c))
    setattr(owner, name, wrapper)
    return real


def fit(args, where: Path, name: str, uri=None) -> dict:
    costs = {"queue": [], "rows": [], "client": [], "open": [], "finish": []}
    originals = [(mlflowlog.MlflowLog, "on_epoch_end", timed(mlflowlog.MlflowLog, "on_epoch_end", costs["queue"])),
                 (mlflowlog, "_client", timed(mlflowlog, "_client", costs["client"])),
                 (mlflowlog.Upload, "log_rows", timed(mlflowlog.Upload, "log_rows", costs["rows"])),
                 (mlflowlog.Upload, "start", timed(mlflowlog.Upload, "start", costs["open"])),
                 (mlflowlog.Upload, "finish", timed(mlflowlog.Upload, "finish", costs["finish"]))]
    try:
        t = time.perf_counter()
        run = nettrain.fit(dataset=args.dataset, model=args.model, epochs=args.epochs, batch_size=args.batch_size,
                           device="cpu", run_dir=where / name, **{"run.progress": "none", "run.tensorboard": False,
                                                                  "run.report": False, "run.mlflow": uri or "off"})
        wall = time.perf_counter() - t
    finally:
        for owner, attr, real in originals:
            setattr(owner, attr, real)
    return {"epochs": [row["seconds"] for row in run.metrics], "wall": wall, **costs}


def ms(pairs: list, part: int = 0) -> str:
    return f"{statistics.median(p[part] for p in pairs) * 1000:.2f} ms" if pairs else "-"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dataset", default="digits")
    p.add_argument("--model", default="mlp")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=64)
    args = p.parse_args()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    header(f"MLflow tracking overhead per epoch (commit {commit.stdout.strip() or '?'})")
    print(f"nettrain {nettrain.__version__}: {args.dataset} {args.model}, {args.epochs} epochs, batch "
          f"{args.batch_size}, CPU; tracking to a new sqlite:/// database in a temporary folder\n")
    with tempfile.TemporaryDirectory() as tmp:
        where = Path(tmp)
        uri = f"sqlite:///{where / 'mlflow.db'}"
        fit(args, where, "warm", f"sqlite:///{where / 'warm.db'}")   # imports mlflow and SQLAlchemy, untimed
        off, on = fit(args, where, "off"), fit(args, where, "on", uri)
        off2 = fit(args, where, "off2")
    plain = statistics.median(off["epochs"] + off2["epochs"])
    tracked = statistics.median(on["epochs"])
    per_epoch = statistics.median(q[0] for q in on["queue"]) + statistics.median(r[1] for r in on["rows"])
    half = args.epochs // 2   # the later epochs: the client's import and tables made by then, only rows logged
    late_plain = statistics.median(off["epochs"][half:] + off2["epochs"][half:])
    late_tracked = statistics.median(on["epochs"][half:])
    print(f"epoch seconds (median): {plain:.3f} s without tracking, {tracked:.3f} s with ({tracked - plain:+.3f} s); "
          f"epochs {half + 1}-{args.epochs} alone: {late_plain:.3f} s without, {late_tracked:.3f} s with "
          f"({late_tracked - late_plain:+.3f} s). On a busy machine these differences are mostly noise")
    print(f"per epoch: on_epoch_end in the training thread {ms(on['queue'])}; the row logged in the client's "
          f"thread {ms(on['rows'])} wall, {ms(on['rows'], 1)} CPU")
    print(f"per fit, in the client's thread: the client made {ms(on['client'])} (a new database: its tables), the "
          f"MLflow run opened {ms(on['open'])} (experiment, run, params, tags), the end's test metrics and "
          f"artifacts {ms(on['finish'])}; fit wall {off['wall']:.1f} s / {off2['wall']:.1f} s "
          f"without, {on['wall']:.1f} s with")
    print(f"per-epoch cost (training thread + client CPU) {per_epoch * 1000:.2f} ms = "
          f"{100 * per_epoch / CIFAR10_FAST_EPOCH:.4f}% of a CIFAR-10 fast epoch ({CIFAR10_FAST_EPOCH:.1f} s); "
          f"goal <= 1%")


if __name__ == "__main__":
    main()
