"""Row 7: model FLOP utilization of the CIFAR-10 fast recipe on this CPU.

    python benchmarks/mfu.py [DATA] [--recipe recipes/cifar10-fast.yaml] [--steps 12] [--rounds 3] [--run RUN_DIR]

Peak: the bf16 matmul rate this machine reaches (2048 and 4096 square, best of several, like peak.py), measured in
this process, before and after the training measurement. Achieved: the recipe's model trained by nettrain's own
hot path (augmented CIFAR-10 batches from memory, bf16 autocast as the recipe sets it, the recipe's optimizer,
freed memory kept) for --steps steps per round; model FLOPs per image = 3x the forward FLOPs counted by
torch.utils.flop_counter.FlopCounterMode (forward + backward). MFU = achieved / peak. With --run, the images/s of a
finished recipe run (metrics.csv) are turned into an MFU too. Goal (aim): >= 60%.
"""
import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, all_metrics, data_dir, header, table  # noqa: E402

from nettrain._malloc import freed_memory_kept  # noqa: E402
from nettrain.config import Config  # noqa: E402
from nettrain.data import load_data, make_batches  # noqa: E402
from nettrain.data.arrays import ArrayData  # noqa: E402
from nettrain.engine.device import resolve_precision  # noqa: E402
from nettrain.engine.loop import Step, train_epoch  # noqa: E402
from nettrain.engine.optim import build_loss, build_optimizer, build_scheduler  # noqa: E402
from nettrain.models import build_model  # noqa: E402

AIM = 0.60


def matmul_peak(repeats=5) -> float:
    """Best bf16 matmul FLOP/s over a few sizes and repeats."""
    best = 0.0
    for n in (2048, 4096):
        a = torch.randn(n, n, dtype=torch.bfloat16)
        b = torch.randn(n, n, dtype=torch.bfloat16)
        a @ b
        for _ in range(repeats):
            t = time.perf_counter()
            a @ b
            best = max(best, 2 * n ** 3 / (time.perf_counter() - t))
    return best


def forward_flops(model, x) -> int:
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as counter, torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        model(x)
    return counter.get_total_flops()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", nargs="?")
    ap.add_argument("--recipe", default=str(REPO / "recipes" / "cifar10-fast.yaml"))
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--run", help="a finished run directory of the recipe: also report its MFU")
    args = ap.parse_args()
    header("Row 7: model FLOP utilization, " + Path(args.recipe).name)
    cfg = Config.load(args.recipe).override({"data_dir": str(data_dir(args.data))})
    data = load_data(cfg.data)
    info, device = data.info, torch.device("cpu")
    precision = resolve_precision(cfg.train.precision, device, info.kind, cfg.train.small_linears_fp32)
    bs = cfg.train.batch_size
    torch.manual_seed(0)
    model = build_model(cfg.model.name, info.shape, info.outputs, cfg.model.args)
    if hasattr(model, "init_from_data"):
        model.init_from_data(next(iter(make_batches(data.train, info, cfg.data, device, 5000, train=False,
                                                    channels_last=False)))[0])
    model = model.to(memory_format=torch.channels_last)
    x0 = next(iter(make_batches(data.train, info, cfg.data, device, bs, train=False)))[0]
    flops_per_image = 3 * forward_flops(model, x0) / len(x0)

    n = args.steps * bs
    chunk = ArrayData(data.train.x[:n], data.train.y[:n])
    batches = make_batches(chunk, info, cfg.data, device, bs, train=True, shuffle=True, seed=0, channels_last=True)
    optimizer = build_optimizer(model.parameters(), cfg.optim)
    scheduler = build_scheduler(optimizer, cfg.sched, 10 ** 6, args.steps)
    step = Step(model, build_loss(cfg.train), optimizer, scheduler, precision, precision.scaler())
    peak0 = matmul_peak()
    rates = []
    with freed_memory_kept(), precision.small_linears_in_float32(model):   # as `nettrain fit` trains on the CPU
        for r in range(args.rounds + 1):
            batches.set_epoch(r)
            out = train_epoch(step, batches, True)
            if r:   # round 0 is the warm-up
                rates.append(out["examples"] / out["seconds"])
    peak = max(peak0, matmul_peak())
    ips = max(rates)
    rows = [["nettrain hot path, best round", f"{ips:,.0f}", f"{ips * flops_per_image / 1e9:,.0f}",
             f"{peak / 1e9:,.0f}", f"{ips * flops_per_image / peak:.0%}", f">= {AIM:.0%}",
             "yes" if ips * flops_per_image / peak >= AIM else "no"]]
    if args.run:
        for row in all_metrics(args.run):
            ips = row["examples_per_s"]
            rows.append([f"recipe run, epoch {int(row['epoch'])}", f"{ips:,.0f}", f"{ips * flops_per_image / 1e9:,.0f}",
                         f"{peak / 1e9:,.0f}", f"{ips * flops_per_image / peak:.0%}", f">= {AIM:.0%}",
                         "yes" if ips * flops_per_image / peak >= AIM else "no"])
    print(f"model {cfg.model.name} {cfg.model.args}: {flops_per_image / 3 / 1e6:.0f} MFLOP forward per image, "
          f"{flops_per_image / 1e6:.0f} MFLOP per trained image; batch {bs}, {precision.name}; "
          f"rounds (img/s): {', '.join(f'{x:.0f}' for x in rates)}\n")
    print(table(["measurement", "images/s", "model GFLOP/s", "bf16 matmul peak GFLOP/s", "MFU", "aim", "met?"], rows))


if __name__ == "__main__":
    main()
