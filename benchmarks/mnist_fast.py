"""Row 1: MNIST to >= 99.0% test accuracy, whole process, nettrain's recipe against a tuned hand-written script.

    python benchmarks/mnist_fast.py [DATA] [--repeats 3]

nettrain:  nettrain fit --config recipes/mnist-fast.yaml --data-dir DATA --seed S   (S = 0, 1, 2, ...)
reference: python mnist_tuned.py DATA 2   (a small BN CNN, bf16, OneCycle Adam, 2 epochs: 99.05%)
The two alternate (nettrain, reference, nettrain, ...). Goal: nettrain's mean accuracy >= 99.0% and its median
whole-process time <= 0.5x the reference's (aim 0.35x).
"""
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (data_dir, gib, header, mean, median, recipe_args, recipe_runs, reference, run_timed,  # noqa: E402
                    table)

GOAL, AIM, ACC_GOAL = 0.5, 0.35, 0.99


def main():
    args = recipe_args(__doc__, "mnist-fast.yaml", 3)
    data = data_dir(args.data)
    ref = reference("mnist_tuned.py")
    header("Row 1: MNIST >= 99.0%, whole process")
    ours, theirs = [], []
    for i, t, rows in recipe_runs(args.recipe, data, args.repeats):
        t.acc = rows[-1]["val_acc"]
        ours.append(t)
        print(f"nettrain  seed {i}: {t.wall:6.1f} s  acc {t.acc:.4f}  peak {gib(t.peak_rss)}  load {t.load}",
              flush=True)
        r = run_timed([sys.executable, ref, data, 2]).check()
        r.acc = float(re.findall(r"test acc ([0-9.]+)", r.out)[-1])
        theirs.append(r)
        print(f"reference run {i}: {r.wall:6.1f} s  acc {r.acc:.4f}  peak {gib(r.peak_rss)}  load {r.load}",
              flush=True)
    tn, tr = median([t.wall for t in ours]), median([t.wall for t in theirs])
    an, ar = mean([t.acc for t in ours]), mean([t.acc for t in theirs])
    ratio = tn / tr
    rows = [
        ["whole-process time (median)", f"{tn:.1f} s", f"{tr:.1f} s", f"{ratio:.2f}x", f"<= {GOAL}x (aim {AIM}x)",
         "yes" if ratio <= GOAL else f"no ({ratio / GOAL:.2f}x the goal)"],
        ["test accuracy (mean)", f"{an:.2%} ({len(ours)} seeds)", f"{ar:.2%}", f"{an - ar:+.2%}", f">= {ACC_GOAL:.1%}",
         "yes" if an >= ACC_GOAL else "no"],
        ["peak memory (max)", gib(max(t.peak_rss for t in ours)), gib(max(t.peak_rss for t in theirs)), "", "", ""],
        ["CPU time (median)", f"{median([t.cpu for t in ours]):.1f} s", f"{median([t.cpu for t in theirs]):.1f} s",
         "", "", ""],
    ]
    print()
    print(table(["MNIST", "nettrain", "reference", "ratio", "goal", "met?"], rows))
    print(f"\nnettrain runs: {', '.join(f'{t.wall:.1f}s/{t.acc:.2%}' for t in ours)}; "
          f"reference runs: {', '.join(f'{t.wall:.1f}s/{t.acc:.2%}' for t in theirs)}")


if __name__ == "__main__":
    main()
