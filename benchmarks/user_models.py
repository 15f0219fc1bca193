"""What the probe's fallback costs: the CIFAR-10 tutorial's own `Net` trained by path, images/s of one epoch.

    python benchmarks/user_models.py [DATA] [--images 10000]

Three models on CIFAR-10-shaped data, batch 16 and 256, one epoch each (nettrain fit, bf16 autocast where the CPU
has it, the default adam):
  (a) the tutorial's Net verbatim: its `x.view(-1, 16 * 5 * 5)` fails on channels_last batches, so the probe
      drops channels_last for it (engine/probe.py) and it trains on contiguous batches;
  (b) the same Net with `.reshape`: the probe keeps channels_last (the fast path);
  (c) the built-in `lenet` (the same network, written for channels_last; no probe).
The data: DATA/cifar10/{train,test}.npz when staged (DATA as in common.py), else --images random uint8 3x32x32
images (the speed does not depend on the pixels). Runs in this process, one after the other.
"""
import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import data_dir, header, table  # noqa: E402

import nettrain  # noqa: E402

# the CIFAR-10 tutorial's Net, verbatim (its x.view(-1, 16 * 5 * 5) included); the tests train it too
NET = (Path(__file__).resolve().parent / "tutorial_net.py").read_text()


def data(root: Path, n: int, tmp: Path) -> tuple:
    """(data_dir, what) for the npz dataset: the staged CIFAR-10 arrays, else random images written to tmp."""
    if (root / "cifar10" / "train.npz").exists():
        return str(root / "cifar10"), "CIFAR-10 (staged npz)"
    rng = np.random.default_rng(0)
    for split, count in (("train", n), ("test", max(1, n // 5))):
        np.savez(tmp / f"{split}.npz", images=rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8),
                 labels=rng.integers(0, 10, count))
    return str(tmp), f"{n:,} random 3x32x32 uint8 images"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data", nargs="?")
    ap.add_argument("--images", type=int, default=10000)
    args = ap.parse_args()
    header("The tutorial Net by path: the probe's fallback against the fast path")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folder, what = data(data_dir(args.data), args.images, tmp)
        print(f"data: {what}\n", flush=True)
        (tmp / "tutorial_net.py").write_text(NET)
        (tmp / "reshape_net.py").write_text(NET.replace("x.view(", "x.reshape("))
        models = [("(a) tutorial Net, .view (channels_last dropped)", f"{tmp / 'tutorial_net.py'}:Net"),
                  ("(b) tutorial Net, .reshape (channels_last kept)", f"{tmp / 'reshape_net.py'}:Net"),
                  ("(c) built-in lenet", "lenet")]
        rows = []
        for batch in (16, 256):
            for label, model in models:
                run = nettrain.fit(dataset="npz", data_dir=folder, model=model, epochs=1, batch_size=batch,
                                   run_dir=str(tmp / "run"), overwrite=True,
                                   **{"run.progress": "none", "run.tensorboard": False})
                row = run.metrics[-1]
                rows.append([label, batch, "yes" if run.model.config.train.channels_last else "no",
                             f"{row['examples_per_s']:,.0f}", f"{row['seconds']:.2f}"])
                print(f"{label} batch {batch}: {row['examples_per_s']:,.0f} img/s", flush=True)
    print()
    print(table(["model", "batch", "channels_last", "images/s (epoch 1)", "epoch s"], rows))


if __name__ == "__main__":
    main()
