"""Does the exported model predict what nettrain predicts? `nettrain export RUN --format onnx`, then the whole test
split through onnxruntime against nettrain's own predict of the same uint8 images, in float32 and in the precision
the run predicts with (bf16 autocast on a CPU with AMX, as trained).

    python benchmarks/onnx_agreement.py RUN [--batch 500]

Prints the share of test images whose predicted class agrees, the largest probability difference, and each
engine's accuracy. The issue's bar: >= 99.9% agreement on CIFAR-10's test set.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--batch", type=int, default=500)
    args = ap.parse_args()

    import onnxruntime as ort
    import nettrain
    from nettrain.data import load_data
    from nettrain.export import export

    run = nettrain.load(args.run)
    test = load_data(run.config.data, run.info.table).test
    images = test.x.permute(0, 2, 3, 1).contiguous().numpy()   # NCHW uint8 -> the NHWC pixels a user has
    labels = test.y.numpy()
    fp32 = nettrain.load(args.run, precision="32")   # nettrain predict RUN --precision 32

    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        path = export(args.run, out=Path(tmp) / "model.onnx")
        exported = time.perf_counter() - t
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        onnx = np.concatenate([session.run(None, {name: images[i:i + args.batch]})[0]
                               for i in range(0, len(images), args.batch)])

    rows = [("onnxruntime (float32)", onnx)]
    for label, predictor in (("nettrain predict --precision 32", fp32), (f"nettrain predict, as the run ({run.precision.name})", run)):
        probs = predictor.predict(images, batch_size=args.batch).probs.float().numpy()
        rows.append((label, probs))
    ours = onnx.argmax(1)
    print(f"run {args.run.name}: {run.config.data.name} test split, {len(images):,} images; export {exported:.1f} s "
          f"({path.name})")
    print(f"{'engine':<44} {'accuracy':>9} {'agrees with onnx':>17} {'max |p diff|':>13}")
    for label, probs in rows:
        agree = (probs.argmax(1) == ours).mean()
        print(f"{label:<44} {(probs.argmax(1) == labels).mean():>9.2%} {agree:>17.2%} "
              f"{np.abs(probs - onnx).max():>13.2e}")
        if label.startswith("nettrain") and agree < 0.999:
            print(f"  below the 99.9% bar: {int((probs.argmax(1) != ours).sum())} images disagree", file=sys.stderr)


if __name__ == "__main__":
    main()
