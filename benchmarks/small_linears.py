"""Where float32 beats bf16 for a linear layer under CPU autocast: the measurement behind `SMALL_LINEAR`.

    python benchmarks/small_linears.py [--repeats 200]

For each (rows, in, out), one forward and backward of an nn.Linear (weight, bias and input gradients) is timed under
torch.autocast("cpu", bfloat16) as it is (the product in bf16: the weight and its gradient cast every call) and with
the layer switched to float32 by `Precision.small_linears_in_float32` with the threshold set out of the way. The
table gives the median of --repeats calls (after a warm-up) and says which one nettrain's rule picks: float32 when
rows x in x out < SMALL_LINEAR (2**23). Shapes: the tutorial CNN's 1024->64 and 64->10 layers, an MLP's 784->256,
fastnet's 256->10 head, and two larger layers.
"""
import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import header, table  # noqa: E402

from nettrain._malloc import freed_memory_kept  # noqa: E402
from nettrain.engine.device import SMALL_LINEAR, Precision  # noqa: E402

SHAPES = [(1024, 64), (64, 10), (784, 256), (256, 10), (1024, 1024), (4096, 1024)]
ROWS = [16, 64, 256, 1024]


def time_layer(layer, x, repeats, fp32: bool) -> float:
    precision = Precision("bf16-mixed", torch.device("cpu"))

    def once():
        with precision.autocast():
            out = layer(x)
        out.float().sum().backward()

    # below: float32 whenever the layer is switched, whatever its size
    with precision.small_linears_in_float32(*([layer] if fp32 else []), below=1 << 62):
        for _ in range(max(5, repeats // 10)):
            once()
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            once()
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=200)
    args = ap.parse_args()
    header("small linear layers: float32 against bf16 under CPU autocast, forward + backward")
    rows = []
    with freed_memory_kept():   # as `nettrain fit` trains on the CPU
        for fan_in, fan_out in SHAPES:
            for n in ROWS:
                torch.manual_seed(0)
                layer = nn.Linear(fan_in, fan_out)
                x = torch.randn(n, fan_in).requires_grad_()
                repeats = args.repeats if n * fan_in * fan_out < 1 << 26 else max(20, args.repeats // 5)
                bf16 = time_layer(layer, x, repeats, fp32=False)
                fp32 = time_layer(layer, x, repeats, fp32=True)
                small = n * fan_in * fan_out < SMALL_LINEAR
                rows.append([f"{n} x {fan_in} -> {fan_out}", f"{n * fan_in * fan_out / 1e6:.2f} M", f"{bf16 * 1e6:.0f}",
                             f"{fp32 * 1e6:.0f}", f"{fp32 / bf16:.2f}", "float32" if small else "bf16",
                             "yes" if (fp32 <= bf16) == small else "no"])
    print(table(["rows x in -> out", "multiply-adds", "bf16 us", "float32 us", "float32 / bf16", "nettrain picks",
                 "the faster?"], rows))


if __name__ == "__main__":
    main()
