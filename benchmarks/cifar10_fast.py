"""Row 2: CIFAR-10 fast recipe against airbench94 on the CPU, whole process, side by side.

    python benchmarks/cifar10_fast.py [DATA] [--repeats 1] [--recipe recipes/cifar10-fast.yaml]

nettrain:  nettrain fit --config recipes/cifar10-fast.yaml --data-dir DATA --seed S   (S = 0, 1, ...)
reference: python airbench94_cpu.py DATA   (airbench 0.1.8's train94, unchanged but for bf16 on the CPU;
           needs `pip install airbench==0.1.8`; DATA holds cifar10/{train,test}.npz)
They alternate (nettrain, reference, ...). Goal: nettrain's mean test accuracy (with its flip TTA) >= airbench's
(with its TTA), median whole-process time <= 0.8x airbench's (aim 0.6x), nettrain's peak memory < 2 GiB.
One airbench run takes 10-12 minutes on 2 idle cores; --repeats 3 gives the median of 3.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (data_dir, gib, header, mean, median, recipe_args, recipe_runs, reference, run_timed,  # noqa: E402
                    table)

GOAL, AIM, MEMORY = 0.8, 0.6, 2 * 2**30


def airbench_result(out: str) -> tuple:
    """(TTA accuracy, airbench's own train+eval seconds) from the last row of its table."""
    for line in reversed(out.splitlines()):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 7 and cells[1] == "eval":
            return float(cells[5]), float(cells[6])
    sys.exit("no 'eval' row in airbench's output:\n" + out[-2000:])


def main():
    args = recipe_args(__doc__, "cifar10-fast.yaml", 1,
                       [("--skip-reference", dict(action="store_true", help="time nettrain only"))])
    data = data_dir(args.data)
    ref = reference("airbench94_cpu.py")
    header("Row 2: CIFAR-10 fast recipe vs airbench94 (CPU, bf16), whole process")
    ours, theirs = [], []
    for i, t, rows in recipe_runs(args.recipe, data, args.repeats):
        t.acc, t.train = rows[-1]["val_acc"], sum(r["seconds"] for r in rows)
        t.wait = max(r["data_wait"] for r in rows)
        ours.append(t)
        print(f"nettrain  seed {i}: {t.wall:7.1f} s whole ({t.train:.0f} s training)  acc {t.acc:.4f}  "
              f"peak {gib(t.peak_rss)}  data wait {t.wait:.1%}  load {t.load}", flush=True)
        if args.skip_reference:
            continue
        r = run_timed([sys.executable, ref, data]).check()
        r.acc, r.train = airbench_result(r.out)
        theirs.append(r)
        print(f"airbench94 run {i}: {r.wall:7.1f} s whole ({r.train:.0f} s train+eval)  acc {r.acc:.4f}  "
              f"peak {gib(r.peak_rss)}  load {r.load}", flush=True)
    tn, an = median([t.wall for t in ours]), mean([t.acc for t in ours])
    pn = max(t.peak_rss for t in ours)
    if not theirs:
        print(f"\nnettrain: {tn:.1f} s, {an:.2%}, peak {gib(pn)}")
        return
    tr, ar, pr = median([t.wall for t in theirs]), mean([t.acc for t in theirs]), max(t.peak_rss for t in theirs)
    ratio = tn / tr
    n = f"{len(ours)} run{'s' if len(ours) > 1 else ''}"
    rows = [
        [f"whole-process time (median of {n})", f"{tn:.0f} s", f"{tr:.0f} s", f"{ratio:.2f}x",
         f"<= {GOAL}x (aim {AIM}x)", "yes" if ratio <= GOAL else f"no ({ratio / GOAL:.2f}x the goal)"],
        [f"test accuracy with TTA (mean of {n})", f"{an:.2%}", f"{ar:.2%}", f"{(an - ar) * 100:+.2f} pt",
         ">= airbench's", "yes" if an >= ar else "no"],
        ["peak memory", gib(pn), gib(pr), f"{pn / pr:.2f}x", "< 2 GiB", "yes" if pn < MEMORY else "no"],
        ["training (+ eval) seconds, own count", f"{median([t.train for t in ours]):.0f} s (train)",
         f"{median([t.train for t in theirs]):.0f} s (train+eval)", "", "", ""],
        ["CPU time (median)", f"{median([t.cpu for t in ours]):.0f} s", f"{median([t.cpu for t in theirs]):.0f} s",
         "", "", ""],
    ]
    print()
    print(table(["CIFAR-10 fast", "nettrain", "airbench94", "ratio", "goal", "met?"], rows))


if __name__ == "__main__":
    main()
