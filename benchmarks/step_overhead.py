"""Row 4: nettrain's per-step overhead against a hand-written loop doing the same work.

    python benchmarks/step_overhead.py [DATA] [--batch-size 64] [--steps 40] [--rounds 15] [--model tudui]

Both train the same model (tudui: the tutorial's CNN) on the same CIFAR-10 uint8 arrays held in memory, batch 64,
bf16 autocast, channels_last, SGD 0.01, a shuffled order, the uint8 -> normalized float conversion per batch.
The hand-written loop is the tightest plain PyTorch: index, convert, forward, loss, zero_grad, backward, step.
nettrain runs its own hot path (`make_batches` + `engine.loop.train_epoch`, built as `nettrain fit` builds them,
except that the images are not stored rounded to bf16 up front, as fit would store them at this batch size: both
sides then do the same per-batch conversion, so the row measures the loop, not the data path), which also keeps the
loss sum and accuracy on the device and steps a schedule. The two alternate in blocks of
--steps steps, --rounds times (after a warm-up), so a change in the machine's load hits both; the table gives
the median step time of each and the median of the paired ratios. Goal: <= 3% overhead.
"""
import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import data_dir, header, table  # noqa: E402

from nettrain.config import Config  # noqa: E402
from nettrain.data import load_data, make_batches  # noqa: E402
from nettrain.data.arrays import ArrayData  # noqa: E402
from nettrain.engine.device import resolve_precision  # noqa: E402
from nettrain.engine.loop import Step, train_epoch  # noqa: E402
from nettrain.engine.optim import build_loss, build_optimizer, build_scheduler  # noqa: E402
from nettrain.models import build_model  # noqa: E402

GOAL = 0.03


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", nargs="?")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--model", default="tudui")
    args = ap.parse_args()
    header(f"Row 4: per-step overhead, {args.model}, batch {args.batch_size}")
    cfg = Config().override({"dataset": "cifar10", "data_dir": str(data_dir(args.data)), "model": args.model,
                             "optimizer": "sgd", "lr": 0.01, "batch_size": args.batch_size})
    data = load_data(cfg.data)
    info, device = data.info, torch.device("cpu")
    precision = resolve_precision("auto", device, info.kind)
    n = args.steps * args.batch_size
    chunk = ArrayData(data.train.x[:n], data.train.y[:n])
    torch.manual_seed(0)

    # ---- the hand-written loop --------------------------------------------------------------------
    hand_model = build_model(args.model, info.shape, info.outputs, {}).to(memory_format=torch.channels_last)
    hand_opt = torch.optim.SGD(hand_model.parameters(), lr=0.01)
    x_all, y_all = chunk.x, chunk.y
    shift = (torch.tensor(info.mean) * 255).view(1, -1, 1, 1)
    scale = (1 / (torch.tensor(info.std) * 255)).view(1, -1, 1, 1)
    bs = args.batch_size

    def hand_block():
        perm = torch.randperm(n)
        for i in range(args.steps):
            idx = perm[i * bs:(i + 1) * bs]
            x = ((x_all[idx].float() - shift) * scale).contiguous(memory_format=torch.channels_last)
            with torch.autocast("cpu", dtype=precision.dtype):
                loss = F.cross_entropy(hand_model(x), y_all[idx])
            hand_opt.zero_grad(set_to_none=True)
            loss.backward()
            hand_opt.step()
        loss.item()

    # ---- nettrain's hot path, built as api.fit builds it ------------------------------------------
    module = build_model(args.model, info.shape, info.outputs, {}).to(memory_format=torch.channels_last)
    optimizer = build_optimizer(module.parameters(), cfg.optim)
    scheduler = build_scheduler(optimizer, cfg.sched, 10**6, args.steps)
    step = Step(module, build_loss(cfg.train), optimizer, scheduler, precision, precision.scaler())
    batches = make_batches(chunk, info, cfg.data, device, bs, train=True, shuffle=True, seed=0, channels_last=True)
    epoch = [0]

    def nettrain_block():
        epoch[0] += 1
        batches.set_epoch(epoch[0])
        train_epoch(step, batches, True)

    def timed(fn):
        t = time.perf_counter()
        fn()
        return (time.perf_counter() - t) / args.steps

    for _ in range(2):   # warm-up: allocator, oneDNN kernels
        timed(hand_block), timed(nettrain_block)
    hand, ours, ratios = [], [], []
    for r in range(args.rounds):
        if r % 2 == 0:   # alternate which goes first
            h = timed(hand_block)
            o = timed(nettrain_block)
        else:
            o = timed(nettrain_block)
            h = timed(hand_block)
        hand.append(h)
        ours.append(o)
        ratios.append(o / h)
    th, tn = statistics.median(hand), statistics.median(ours)
    overhead = statistics.median(ratios) - 1
    print(table(["per-step time", "nettrain", "hand-written", "overhead", "goal", "met?"], [
        [f"{args.model}, batch {bs}, {precision.name}, channels_last", f"{tn * 1e3:.2f} ms", f"{th * 1e3:.2f} ms",
         f"{overhead:+.1%} (paired median; {tn / th - 1:+.1%} of medians)", f"<= {GOAL:.0%}",
         "yes" if overhead <= GOAL else "no"]]))
    print(f"\n{args.rounds} rounds of {args.steps} steps each; paired ratios: "
          f"{', '.join(f'{x:.3f}' for x in sorted(ratios))}")


if __name__ == "__main__":
    main()
