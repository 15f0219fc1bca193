"""Serving a trained model: onnxruntime on `nettrain export`'s model.onnx against nettrain's own torch predict, side
by side in one process (alternating, so a change in the machine's load hits both), and the two `nettrain predict`
commands as whole processes (the ONNX one imports no torch).

    python benchmarks/onnx_predict.py [--dataset digits --model cnn --epochs 2] [--images 20000] [--repeats 5]

Rows: throughput (images/s, batches of --batch) and single-input latency (one image per call, median of many),
then the whole `nettrain predict` process on a few files. Both engines use their default thread counts (torch's
intra-op threads, onnxruntime's intra-op pool), printed with the CPU.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import nettrain_cmd, run_timed  # noqa: E402


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def per_second(fn, n_images: int, repeats: int) -> list:
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(n_images / (time.perf_counter() - start))
    return out


def latency_ms(fn, calls: int) -> float:
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--model", default="cnn")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--images", type=int, default=20000, help="images per throughput pass (the test split, tiled)")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--calls", type=int, default=300, help="single-image calls for the latency")
    args = ap.parse_args()

    import onnxruntime as ort
    import torch
    import nettrain
    from nettrain.data import load_data
    from nettrain.export import export

    work = Path(tempfile.mkdtemp())
    options = {"run.progress": "none", "run.tensorboard": False}
    if args.data_dir:
        options["data_dir"] = args.data_dir
    run = nettrain.fit(dataset=args.dataset, model=args.model, epochs=args.epochs, run_dir=work / "run", **options)
    export(run.dir, "onnx")
    model = nettrain.load(run.dir)
    test = load_data(model.config.data).test.x.permute(0, 2, 3, 1).contiguous().numpy()
    images = np.concatenate([test] * (args.images // len(test) + 1))[:args.images]
    session = ort.InferenceSession(str(run.dir / "model.onnx"), providers=["CPUExecutionProvider"])

    def onnx_all():
        for i in range(0, len(images), args.batch):
            session.run(None, {"images": images[i:i + args.batch]})

    # nettrain's predict as a user gets it (the run's precision: bf16 autocast where the CPU has it), and in float32
    from nettrain.engine.device import resolve_precision
    from nettrain.predictor import Predictor
    model32 = Predictor(model.module, model.info, model.config, model.device,
                        resolve_precision("32", model.device, model.info.kind))

    one = images[:1]
    onnx_all()   # warm-up: first-call allocations and kernel choices
    model.predict(images[:args.batch]), model32.predict(images[:args.batch])
    engines = {"onnxruntime": onnx_all, "nettrain (torch)": lambda: model.predict(images, batch_size=args.batch),
               "nettrain (torch, float32)": lambda: model32.predict(images, batch_size=args.batch)}
    rates = {name: [] for name in engines}
    for _ in range(args.repeats):   # alternating
        for name, fn in engines.items():
            rates[name] += per_second(fn, len(images), 1)
    lat = {"onnxruntime": latency_ms(lambda: session.run(None, {"images": one}), args.calls),
           "nettrain (torch)": latency_ms(lambda: model.predict(one), args.calls),
           "nettrain (torch, float32)": latency_ms(lambda: model32.predict(one), args.calls)}
    agree = float((session.run(None, {"images": test})[0].argmax(1) == np.array(model.predict(test).indices)).mean())

    # whole processes: `nettrain predict` on 8 files, the run (torch) against model.onnx (no torch)
    from PIL import Image
    files = []
    for i, img in enumerate(test[:8]):
        files.append(str(work / f"{i}.png"))
        Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img).save(files[-1])
    procs = {"onnxruntime": [], "nettrain (torch)": []}
    env = {**os.environ}
    for _ in range(3):
        procs["onnxruntime"].append(run_timed(nettrain_cmd() + ["predict", str(run.dir / "model.onnx"), *files],
                                              env=env).check())
        procs["nettrain (torch)"].append(run_timed(nettrain_cmd() + ["predict", str(run.dir), *files], env=env).check())

    print(f"{args.model} on {args.dataset} ({model.info.shape}), {len(test)} test images tiled to {len(images):,}; "
          f"{cpu_name()}, {os.cpu_count()} CPUs (shared: other jobs may run), torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), onnxruntime {ort.__version__}; precision of nettrain's predict: "
          f"{model.precision.name}")
    print(f"top-1 agreement on the test split: {agree:.2%}; 1-minute load average at the end "
          f"{os.getloadavg()[0]:.1f} (above the CPU count: other jobs shared the cores)")
    print()
    print(f"| engine | images/s (batch {args.batch}, median of {args.repeats}) | single-image latency (median of "
          f"{args.calls}) | `nettrain predict` 8 files, whole process (median of 3) |")
    print("|---|---|---|---|")
    for name in rates:   # (peak memory is not shown: a child forked from this torch-sized process reports ours)
        wall = f"{statistics.median(p.wall for p in procs[name]):.2f} s" if name in procs else "-"
        print(f"| {name} | {statistics.median(rates[name]):,.0f} ({min(rates[name]):,.0f}-{max(rates[name]):,.0f}) "
              f"| {lat[name]:.3f} ms | {wall} |")
    ratio = statistics.median(rates["onnxruntime"]) / statistics.median(rates["nettrain (torch)"])
    print(f"\nonnxruntime / torch: {ratio:.2f}x images/s, "
          f"{lat['nettrain (torch)'] / lat['onnxruntime']:.2f}x lower single-image latency")


if __name__ == "__main__":
    main()
