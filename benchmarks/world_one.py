"""The cost of the many-process path in one process (issue 29: <= 1% against a fit without it).

    python benchmarks/world_one.py [--dataset digits] [--model cnn] [--epochs 3] [--rounds 7] [--batch-size 64]

World size 1 runs the same code as N processes (engine/distributed.py): `joined` reads the environment, the run
directory and writers go through `World.run` / `only_main`, the model through `World.wrap`, each epoch's result
through `World.train_sums` and each evaluation through `World.evaluation_sums`, and the training loop picks its
accumulation context once an epoch (engine/loop.py: a reused null context entered every step). This script times
`nettrain.fit` in this process as it is ("world-size-1 path") against the same fit with those hooks replaced by a
monkeypatch with what a single-process program would do inline ("bypassed": no environment, no size checks, the
objects themselves), alternating the two --rounds times after a warm-up fit, so that a change in the machine's
load hits both. The table gives the median training seconds (the epochs' own timing, metrics.csv `seconds`) and
whole-fit seconds of each and the median of the paired ratios; a last line gives the null context's cost per step
against the median step time. Quiet machine only: the goal is a ratio within 1.01.
"""
import argparse
import contextlib
import statistics
import sys
import tempfile
import time
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import header, table  # noqa: E402

import nettrain  # noqa: E402
from nettrain.engine import distributed  # noqa: E402

GOAL = 1.01


@contextlib.contextmanager
def bypassed():
    """The distributed hooks replaced by their single-process meaning, with no checks."""
    World = distributed.World
    saved = {name: getattr(World, name) for name in ("wrap", "run", "only_main", "train_sums", "evaluation_sums")}
    saved_joined = distributed.joined

    @contextlib.contextmanager
    def alone(device, timeout=None):   # joined(device, dist.timeout)
        yield World()

    World.wrap = lambda self, model, device: model
    World.run = lambda self, kind, make: make()
    World.only_main = lambda self, make, null: make()
    World.train_sums = lambda self, result: result
    World.evaluation_sums = lambda self, loss_sum, seen, confusion, outs, ys, classification: \
        (loss_sum, seen, confusion, outs, ys)
    distributed.joined = alone
    try:
        yield
    finally:
        for name, fn in saved.items():
            setattr(World, name, fn)
        distributed.joined = saved_joined


def one_fit(args, run_dir: Path, bypass: bool) -> tuple:
    options = {"dataset": args.dataset, "model": args.model, "epochs": args.epochs, "batch_size": args.batch_size,
               "seed": 0, "device": "cpu", "run_dir": str(run_dir), "run.progress": "none",
               "run.tensorboard": False, "run.report": False}
    t = time.perf_counter()
    with bypassed() if bypass else contextlib.nullcontext():
        run = nettrain.fit(**options)
    whole = time.perf_counter() - t
    steps = sum(-(-r["examples_per_s"] * r["seconds"] // args.batch_size) for r in run.metrics)
    return sum(r["seconds"] for r in run.metrics), whole, steps


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--model", default="cnn")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    header(f"world size 1: {args.dataset} + {args.model}, {args.epochs} epochs, batch {args.batch_size}, "
           f"{args.rounds} alternated rounds")
    results = {False: [], True: []}
    with tempfile.TemporaryDirectory() as tmp:
        one_fit(args, Path(tmp) / "warm-up", False)
        for i in range(args.rounds):
            for bypass in ((False, True) if i % 2 == 0 else (True, False)):
                results[bypass].append(one_fit(args, Path(tmp) / f"{i}-{int(bypass)}", bypass))
    train_ratio = statistics.median(a[0] / b[0] for a, b in zip(results[False], results[True]))
    whole_ratio = statistics.median(a[1] / b[1] for a, b in zip(results[False], results[True]))
    rows = [[name, f"{statistics.median(r[0] for r in results[b]):.3f}",
             f"{statistics.median(r[1] for r in results[b]):.3f}"]
            for name, b in (("world-size-1 path", False), ("hooks bypassed", True))]
    rows.append(["ratio (median of pairs)", f"{train_ratio:.4f}", f"{whole_ratio:.4f}"])
    print(table(["", "training s", "whole fit s"], rows))
    null = contextlib.nullcontext()

    def enter():
        with null:
            pass
    per_step = timeit.timeit(enter, number=100_000) / 100_000
    step = statistics.median(r[0] / r[2] for r in results[False])
    print(f"\nthe loop's null context: {per_step * 1e9:.0f} ns a step against a {step * 1e3:.3f} ms step "
          f"({per_step / step:.4%}); goal: ratio <= {GOAL} -> {'met' if train_ratio <= GOAL else 'NOT met'}")


if __name__ == "__main__":
    main()
