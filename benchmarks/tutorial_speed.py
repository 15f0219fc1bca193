"""Row 3: the tutorial's own recipe (tudui CNN, batch 16, SGD 0.01) - nettrain's images/s against the tutorial loop.

    python benchmarks/tutorial_speed.py [DATA] [--repeats 3] [--epochs 1] [--variants]

reference: python tutorial_loop.py DATA EPOCHS   (fp32, DataLoader over in-memory tensors, batch 16)
nettrain:  nettrain fit --dataset cifar10 --data-dir DATA --model tudui --optimizer sgd --lr 0.01 --batch-size 16
           --epochs EPOCHS   (everything else at its default: precision auto, channels_last, no compile)
Training images/s over the epochs (nettrain: metrics.csv; the reference prints its own), test accuracy after
the last epoch. Goal: >= 2x the reference's images/s, accuracy within 2 points. --variants also times the
levers one at a time (precision 32, no channels_last, --compile, 1 thread) for one epoch each.
"""
import argparse
import re
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (all_metrics, data_dir, gib, header, mean, median, nettrain_cmd, reference, run_timed,  # noqa: E402
                    table)

GOAL = 2.0
FLAGS = ["--model", "tudui", "--optimizer", "sgd", "--lr", "0.01", "--batch-size", "16"]
VARIANTS = {
    "defaults (bf16 autocast, channels_last)": [],
    "--precision 32": ["--precision", "32"],
    "--train.channels_last false": ["--train.channels_last", "false"],
    "--precision 32 --train.channels_last false": ["--precision", "32", "--train.channels_last", "false"],
    "--compile": ["--compile"],
    "--train.threads 1": ["--train.threads", "1"],
}


def nettrain_run(data, epochs, extra, tmp, name):
    run_dir = Path(tmp) / name
    t = run_timed(nettrain_cmd() + ["fit", "--dataset", "cifar10", "--data-dir", data, *FLAGS, "--epochs", epochs,
                                    *extra, "--run-dir", run_dir, "--run.progress", "none", "--overwrite"]).check()
    rows = all_metrics(run_dir)
    t.ips = len(rows) / sum(1 / r["examples_per_s"] for r in rows)   # images over training seconds, all epochs
    t.acc, t.wait = rows[-1]["val_acc"], max(r["data_wait"] for r in rows)
    return t


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", nargs="?")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--variants", action="store_true")
    args = ap.parse_args()
    data = data_dir(args.data)
    ref = reference("tutorial_loop.py")
    header(f"Row 3: tutorial recipe (tudui, batch 16, SGD 0.01), {args.epochs} epoch(s)")
    ours, theirs = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            t = nettrain_run(data, args.epochs, [], tmp, f"n{i}")
            ours.append(t)
            print(f"nettrain  {i}: {t.ips:7.0f} img/s  acc {t.acc:.4f}  data wait {t.wait:.1%}  whole {t.wall:.1f} s  "
                  f"load {t.load}", flush=True)
            r = run_timed([sys.executable, ref, data, args.epochs]).check()
            per_epoch = [float(v) for v in re.findall(r"train [0-9.]+s ([0-9.]+) img/s", r.out)]
            r.ips = len(per_epoch) / sum(1 / v for v in per_epoch)
            r.acc = float(re.findall(r"test acc ([0-9.]+)", r.out)[-1])
            theirs.append(r)
            print(f"reference {i}: {r.ips:7.0f} img/s  acc {r.acc:.4f}  whole {r.wall:.1f} s  load {r.load}",
                  flush=True)
        variants = []
        if args.variants:
            for name, extra in VARIANTS.items():
                t = nettrain_run(data, 1, extra, tmp, "v")
                variants.append([name, f"{t.ips:.0f}", f"{t.acc:.2%}", f"{t.wait:.1%}", f"{t.wall:.1f} s"])
                print(f"variant {name}: {t.ips:.0f} img/s  acc {t.acc:.4f}  load {t.load}", flush=True)
    sn, sr = median([t.ips for t in ours]), median([t.ips for t in theirs])
    an, ar = mean([t.acc for t in ours]), mean([t.acc for t in theirs])
    ratio = sn / sr
    rows = [
        ["training images/s (median)", f"{sn:,.0f}", f"{sr:,.0f}", f"{ratio:.2f}x", f">= {GOAL}x",
         "yes" if ratio >= GOAL else f"no ({ratio / GOAL:.0%} of the goal)"],
        [f"test accuracy after {args.epochs} epoch(s) (mean)", f"{an:.2%}", f"{ar:.2%}", f"{(an - ar) * 100:+.2f} pt",
         "within 2 pt", "yes" if abs(an - ar) <= 0.02 or an > ar else "no"],
        ["data wait (max)", f"{max(t.wait for t in ours):.1%}", "", "", "", ""],
        ["whole process (median)", f"{median([t.wall for t in ours]):.1f} s",
         f"{median([t.wall for t in theirs]):.1f} s", "", "", ""],
        ["peak memory (max)", gib(max(t.peak_rss for t in ours)), gib(max(t.peak_rss for t in theirs)), "", "", ""],
    ]
    print()
    print(table(["tutorial recipe", "nettrain", "reference", "ratio", "goal", "met?"], rows))
    if variants:
        print()
        print(table(["nettrain variant (1 epoch)", "images/s", "test acc", "data wait", "whole process"], variants))


if __name__ == "__main__":
    main()
