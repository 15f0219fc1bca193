"""Row 5: CIFAR-10 as a folder of JPEG files - nettrain's data wait and speed against the ImageFolder tutorial loop.

    python benchmarks/imagefolder.py [DATA] [--folder DIR] [--epochs 2] [--ref-steps N]

The folder is written by `python DATA/cifar10/build.py --imagefolder DIR` (into a temporary directory unless
--folder names one that already holds train/ and test/).
reference: python imagefolder_loop.py DIR   (torchvision ImageFolder + ToTensor + DataLoader(batch 16), no workers)
nettrain:  nettrain fit --dataset imagefolder --data-dir DIR --model tudui --optimizer sgd --lr 0.01
           --batch-size 16 --epochs 2   (the folder is decoded once into a cache, then served from memory)
and the same flags on the in-memory path (--dataset cifar10 --data-dir DATA) for the speed comparison.
Goal: nettrain's data wait <= 5% from the second epoch; its images/s within 10% of the in-memory path's.
"""
import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import all_metrics, data_dir, gib, header, nettrain_cmd, reference, run_timed, table  # noqa: E402

WAIT_GOAL, SPEED_GOAL = 0.05, 0.10
FLAGS = ["--model", "tudui", "--optimizer", "sgd", "--lr", "0.01", "--batch-size", "16"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", nargs="?")
    ap.add_argument("--folder", help="an existing image folder (DIR/train/<class>/*.jpg); default: build one")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--ref-steps", type=int, help="stop the reference after this many steps (default: one epoch)")
    args = ap.parse_args()
    data = data_dir(args.data)
    header("Row 5: image folder (CIFAR-10 JPEGs) vs ImageFolder + DataLoader")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.folder) if args.folder else Path(tmp) / "cifar10-folder"
        if not (folder / "train").is_dir():
            subprocess.run([sys.executable, data / "cifar10" / "build.py", "--imagefolder", folder], check=True,
                           capture_output=True)
        ref_cmd = [sys.executable, reference("imagefolder_loop.py"), folder]
        r = run_timed(ref_cmd + ([args.ref_steps] if args.ref_steps else [])).check()
        m = re.search(r"(\d+) images\s+(\d+) img/s\s+data wait (\d+)%", r.out)
        ref_ips, ref_wait = float(m.group(2)), float(m.group(3)) / 100
        print(f"reference: {ref_ips:.0f} img/s, data wait {ref_wait:.0%}, whole {r.wall:.1f} s, load {r.load}",
              flush=True)

        runs = {}
        for name, source in (("folder, first run (decodes, writes the cache)", ["--dataset", "imagefolder",
                                                                                   "--data-dir", folder]),
                             ("folder, second run (cache)", ["--dataset", "imagefolder", "--data-dir", folder]),
                             ("in-memory arrays (cifar10 npz)", ["--dataset", "cifar10", "--data-dir", data])):
            run_dir = Path(tmp) / "run"
            t = run_timed(nettrain_cmd() + ["fit", *source, *FLAGS, "--epochs", args.epochs, "--run-dir", run_dir,
                                            "--overwrite", "--run.progress", "none"]).check()
            t.rows = all_metrics(run_dir)
            runs[name] = t
            print(f"nettrain {name}: " + ", ".join(f"epoch {int(x['epoch'])} {x['examples_per_s']:.0f} img/s wait "
                                                   f"{x['data_wait']:.1%}" for x in t.rows)
                  + f"; whole {t.wall:.1f} s, peak {gib(t.peak_rss)}, load {t.load}", flush=True)
    first, second, memory = runs.values()
    later = [x for t in (first, second) for x in t.rows if x["epoch"] >= 2]
    wait = max(x["data_wait"] for x in later)
    folder_ips = sum(x["examples_per_s"] for x in later) / len(later)
    mem_later = [x for x in memory.rows if x["epoch"] >= 2] or memory.rows
    mem_ips = sum(x["examples_per_s"] for x in mem_later) / len(mem_later)
    gap = folder_ips / mem_ips - 1
    rows = [
        ["data wait, epochs >= 2 (max)", f"{wait:.1%}", f"{ref_wait:.0%}", "", f"<= {WAIT_GOAL:.0%}",
         "yes" if wait <= WAIT_GOAL else "no"],
        ["training images/s, epochs >= 2", f"{folder_ips:,.0f}", f"{ref_ips:,.0f}", f"{folder_ips / ref_ips:.2f}x", "",
         ""],
        ["images/s vs nettrain's in-memory path", f"{folder_ips:,.0f} vs {mem_ips:,.0f}", "", f"{gap:+.1%}",
         f"within {SPEED_GOAL:.0%}", "yes" if abs(gap) <= SPEED_GOAL or gap > 0 else "no"],
        ["whole process: first run (decode + cache) / cached run", f"{first.wall:.1f} s / {second.wall:.1f} s",
         f"{r.wall:.1f} s", "", "", ""],
        ["peak memory", gib(max(first.peak_rss, second.peak_rss)), gib(r.peak_rss), "", "", ""],
    ]
    print()
    print(table(["image folder", "nettrain", "reference", "ratio", "goal", "met?"], rows))


if __name__ == "__main__":
    main()
