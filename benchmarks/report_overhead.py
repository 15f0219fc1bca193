"""What the live report adds to training, and what the full report costs at a fit's end.

    python benchmarks/report_overhead.py [--dataset digits] [--model cnn] [--epochs 10] [--batch-size 16]

Runs one fit twice in this process: with the live report under its budget (report/live.py: an update only when
the updates so far stay within 2% of the time trained), then with an update forced at every epoch end, and prints
each update's cost against the epochs' own seconds, the share of the wall time the updates took, and the end-of-fit
cost (evidence.record: the predictions and model summary; the full report: every figure and the page).
"""
import argparse
import statistics
import tempfile
import time
from pathlib import Path

import nettrain
from nettrain.report import live
import nettrain.training as training


def run(args, budget: float) -> dict:
    live.BUDGET = budget
    costs, end = [], {}
    real_write, real_record, real_finish = live.write, training.evidence.record, live.LiveReport.finish

    def write(run_dir, **kw):
        t = time.perf_counter()
        try:
            return real_write(run_dir, **kw)
        finally:
            if kw.get("live"):
                costs.append(time.perf_counter() - t)

    def record(*a, **kw):
        t = time.perf_counter()
        real_record(*a, **kw)
        end["evidence"] = time.perf_counter() - t

    def finish(self):
        t = time.perf_counter()
        path = real_finish(self)
        end["full report"] = time.perf_counter() - t
        return path
    live.write, training.evidence.record, live.LiveReport.finish = write, record, finish
    try:
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            fit = nettrain.fit(dataset=args.dataset, model=args.model, epochs=args.epochs,
                               batch_size=args.batch_size, run_dir=str(Path(tmp) / "run"),
                               **{"run.progress": "none", "run.tensorboard": False})
            wall = time.perf_counter() - t
    finally:
        live.write, training.evidence.record, live.LiveReport.finish = real_write, real_record, real_finish
    epochs = [row["seconds"] for row in fit.metrics]
    return {"costs": costs, "epochs": epochs, "wall": wall, "end": end}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dataset", default="digits")
    p.add_argument("--model", default="cnn")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=16)
    args = p.parse_args()
    print(f"nettrain {nettrain.__version__}: {args.dataset} {args.model}, {args.epochs} epochs, batch "
          f"{args.batch_size}")
    for label, budget in (("budgeted (2%)", live.BUDGET), ("every epoch", 1e9)):
        r = run(args, budget)
        epoch = statistics.median(r["epochs"])
        spent = sum(r["costs"])
        per = statistics.median(r["costs"]) if r["costs"] else 0.0
        print(f"{label:>14}: {len(r['costs'])} live updates, median {per * 1000:.0f} ms each "
              f"({100 * per / epoch:.1f}% of a median epoch of {epoch:.2f} s; the first (fonts loaded): "
              f"{r['costs'][0] * 1000 if r['costs'] else 0:.0f} ms); all updates {spent:.2f} s = "
              f"{100 * spent / r['wall']:.1f}% of the fit's {r['wall']:.1f} s; at the end: "
              + ", ".join(f"{k} {v:.2f} s" for k, v in r["end"].items()))


if __name__ == "__main__":
    main()
