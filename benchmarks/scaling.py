"""How cost grows: epoch time against dataset size and batch size, peak memory against dataset size.

    python benchmarks/scaling.py [DATA] [--model tudui] [--config RECIPE] [--fractions 0.25,0.5,1]
                                 [--batch-sizes 16,32,64,128,256,512,1024] [--sweep-fraction 0.25]

Each point is its own process (`nettrain.fit` on the first part of CIFAR-10's training arrays, one epoch, 1,000
test images for validation), so its peak memory (os.wait4) is that point's alone. Dataset-size points use the
recipe's batch size (or 64); the batch-size sweep trains on --sweep-fraction of the data and reports the
epoch time scaled to all 50,000 images.
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import data_dir, gib, header, run_timed, table  # noqa: E402


def worker(data, fraction, batch, model, config):
    import numpy as np
    import nettrain
    t0 = time.perf_counter()
    tr = np.load(Path(data) / "cifar10" / "train.npz")
    te = np.load(Path(data) / "cifar10" / "test.npz")
    n = int(round(len(tr["labels"]) * fraction))
    options = {"epochs": 1, "run.progress": "none", "run.tensorboard": False}
    if not config:
        options.update(model=model, optimizer="sgd", lr=0.01)
    if batch:
        options["batch_size"] = batch
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        options["run_dir"] = str(Path(tmp) / "run")
        pick = np.random.default_rng(0).permutation(len(te["labels"]))[:1000]
        run = nettrain.fit(config, data=(tr["images"][:n], tr["labels"][:n]),
                           val_data=(te["images"][pick], te["labels"][pick]), classes=[str(c) for c in tr["classes"]],
                           **options)
    row = run.metrics[-1]
    print("RESULT " + json.dumps({"n": n, "seconds": row["seconds"], "images_per_s": row["examples_per_s"],
                                  "data_wait": row["data_wait"], "batch": batch,
                                  "process_s": time.perf_counter() - t0,
                                  "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")}))


def point(data, fraction, batch, model, config):
    cmd = [sys.executable, __file__, "--worker", str(data), str(fraction), str(batch or 0), model, config or ""]
    t = run_timed(cmd).check()
    line = [x for x in t.out.splitlines() if x.startswith("RESULT ")][-1]
    return {**json.loads(line[7:]), "peak": t.peak_rss, "wall": t.wall, "load": t.load}


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        _, _, data, fraction, batch, model, config = sys.argv
        return worker(data, float(fraction), int(batch) or None, model, config or None)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", nargs="?")
    ap.add_argument("--model", default="tudui")
    ap.add_argument("--config", help="a recipe to scale instead of --model with SGD 0.01")
    ap.add_argument("--fractions", default="0.25,0.5,1")
    ap.add_argument("--batch-sizes", default="16,32,64,128,256,512,1024")
    ap.add_argument("--sweep-fraction", type=float, default=0.25)
    args = ap.parse_args()
    data = data_dir(args.data)
    what = args.config or f"{args.model}, SGD 0.01"
    header(f"How cost grows ({what}; one epoch per point, each point its own process)")
    size_rows = []
    base_batch = None if args.config else 64
    for f in [float(x) for x in args.fractions.split(",")]:
        p = point(data, f, base_batch, args.model, args.config)
        size_rows.append(p)
        print(f"fraction {f}: {p}", flush=True)
    batch_rows = []
    for b in [int(x) for x in args.batch_sizes.split(",")]:
        p = point(data, args.sweep_fraction, b, args.model, args.config)
        batch_rows.append(p)
        print(f"batch {b}: {p}", flush=True)
    first = size_rows[0]
    print()
    print(table(["train images", "epoch time", "per 1k images", "images/s", "data wait", "whole process",
                 "peak memory", "load"],
                [[f"{p['n']:,}", f"{p['seconds']:.1f} s", f"{1000 * p['seconds'] / p['n']:.2f} s",
                  f"{p['images_per_s']:,.0f}", f"{p['data_wait']:.1%}", f"{p['wall']:.1f} s", gib(p["peak"]),
                  p["load"][0]] for p in size_rows]))
    print(f"\nepoch time per image from {first['n']:,} to {size_rows[-1]['n']:,} images: "
          f"{(size_rows[-1]['seconds'] / size_rows[-1]['n']) / (first['seconds'] / first['n']):.2f}x "
          f"(1.00x = linear); peak memory grows {(size_rows[-1]['peak'] - first['peak']) / 2**20:.0f} MiB for "
          f"{size_rows[-1]['n'] - first['n']:,} more images")
    print()
    print(table(["batch size", "images/s", "epoch time (50,000 images)", "data wait", "peak memory", "load"],
                [[p["batch"], f"{p['images_per_s']:,.0f}", f"{50000 / p['images_per_s']:.1f} s",
                  f"{p['data_wait']:.1%}", gib(p["peak"]), p["load"][0]] for p in batch_rows]))


if __name__ == "__main__":
    main()
