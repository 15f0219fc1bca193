"""Row 2: CIFAR-10 fast recipe against airbench94 on the CPU, whole process, side by side.

    python benchmarks/cifar10_fast.py [DATA] [--repeats 3] [--recipe recipes/cifar10-fast.yaml]

nettrain:  nettrain fit --config recipes/cifar10-fast.yaml --data-dir DATA --seed S   (S = 0, 1, ...), one process each
reference: python airbench94_cpu.py DATA R   (airbench 0.1.8's train94, unchanged but for bf16 on the CPU; needs
           `pip install airbench==0.1.8`; DATA holds cifar10/{train,test}.npz). Run once with R = --repeats, after
           nettrain's first seed: the script seeds its runs 0..R-1 itself (run alone it always uses seed 0), so one
           process gives R seeds. Its time per run is that process's wall time / R, which counts its start-up once
           for R runs (in airbench's favour).
Goal: nettrain's mean test accuracy (with its TTA) >= airbench's (with its TTA), median whole-process time <= 0.8x
airbench's (aim 0.6x), nettrain's peak memory < 2 GiB. One airbench run takes 10-20 minutes on 2 cores.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (data_dir, gib, header, mean, median, recipe_args, recipe_runs, reference, run_timed,  # noqa: E402
                    table)

GOAL, AIM, MEMORY = 0.8, 0.6, 2 * 2**30


def airbench_results(out: str) -> list:
    """[(TTA accuracy, airbench's own train+eval seconds)] from the 'eval' row that ends each run of its table."""
    found = []
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 7 and cells[1] == "eval":
            found.append((float(cells[5]), float(cells[6])))
    if not found:
        sys.exit("no 'eval' row in airbench's output:\n" + out[-2000:])
    return found


def main():
    args = recipe_args(__doc__, "cifar10-fast.yaml", 3,
                       [("--skip-reference", dict(action="store_true", help="time nettrain only"))])
    data = data_dir(args.data)
    ref = reference("airbench94_cpu.py")
    header("Row 2: CIFAR-10 fast recipe vs airbench94 (CPU, bf16), whole process")
    ours, theirs = [], []
    ref_run = None
    for i, t, rows in recipe_runs(args.recipe, data, args.repeats):
        t.acc, t.train = rows[-1]["val_acc"], sum(r["seconds"] for r in rows)
        t.wait = max(r["data_wait"] for r in rows)
        ours.append(t)
        print(f"nettrain  seed {i}: {t.wall:7.1f} s whole ({t.train:.0f} s training)  acc {t.acc:.4f}  "
              f"peak {gib(t.peak_rss)}  data wait {t.wait:.1%}  load {t.load}", flush=True)
        if i == 0 and not args.skip_reference:
            ref_run = run_timed([sys.executable, ref, data, str(args.repeats)]).check()
            for seed, (acc, secs) in enumerate(airbench_results(ref_run.out)):
                theirs.append((acc, secs))
                print(f"airbench94 seed {seed}: {secs:.0f} s train+eval  acc {acc:.4f}", flush=True)
            print(f"airbench94 process: {ref_run.wall:.1f} s whole for {len(theirs)} run(s)  "
                  f"peak {gib(ref_run.peak_rss)}  load {ref_run.load}", flush=True)
    tn, an = median([t.wall for t in ours]), mean([t.acc for t in ours])
    pn = max(t.peak_rss for t in ours)
    if not theirs:
        print(f"\nnettrain: {tn:.1f} s, {an:.2%}, peak {gib(pn)}")
        return
    tr, ar, pr = ref_run.wall / len(theirs), mean([a for a, _ in theirs]), ref_run.peak_rss
    ratio = tn / tr
    n = f"{len(ours)} run{'s' if len(ours) > 1 else ''}"
    m = f"{len(theirs)} seed{'s' if len(theirs) > 1 else ''}"
    rows = [
        [f"whole-process time (nettrain: median of {n}; airbench: one process / {len(theirs)})", f"{tn:.0f} s",
         f"{tr:.0f} s", f"{ratio:.2f}x",
         f"<= {GOAL}x (aim {AIM}x)", "yes" if ratio <= GOAL else f"no ({ratio / GOAL:.2f}x the goal)"],
        [f"test accuracy with TTA (mean of {n} / {m})", f"{an:.2%}", f"{ar:.2%}", f"{(an - ar) * 100:+.2f} pt",
         ">= airbench's", "yes" if an >= ar else "no"],
        ["peak memory", gib(pn), gib(pr), f"{pn / pr:.2f}x", "< 2 GiB", "yes" if pn < MEMORY else "no"],
        ["training (+ eval) seconds, own count", f"{median([t.train for t in ours]):.0f} s (train)",
         f"{median([x for _, x in theirs]):.0f} s (train+eval)", "", "", ""],
        ["CPU time (median; airbench: process / runs)", f"{median([t.cpu for t in ours]):.0f} s",
         f"{ref_run.cpu / len(theirs):.0f} s", "", "", ""],
    ]
    print()
    print(table(["CIFAR-10 fast", "nettrain", "airbench94", "ratio", "goal", "met?"], rows))


if __name__ == "__main__":
    main()
