"""What the stop flag's agreement costs a step: one all-reduce (MAX) of one int32 between the processes
(engine/distributed.World.agree_stop), against a DDP training step of a small model, on gloo (CPU).

    python benchmarks/stop_flag.py [--nproc 2] [--steps 2000] [--batch 64] [--hidden 256]

Starts --nproc processes (torch.multiprocessing, gloo on a local port), and in each: --steps flag all-reduces alone,
then --steps DDP steps of an MLP (64 inputs, --hidden, 10 classes) on a batch of --batch random rows each: without
the flag, with its all-reduce after every step waited for at once, and waited for at the next step (what nettrain
does). Prints rank 0's microseconds per all-reduce and per step: the overhead the per-step agreement adds (the case
for agreeing only every K steps, if it were large).
"""
from __future__ import annotations

import argparse
import os
import socket
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def steps(model, opt, x, y, n: int, flag: str) -> float:
    """Microseconds a step: `flag` "" (none), "wait" (an all-reduce waited for at once), "next" (waited for at the
    next step, as nettrain's Check does)."""
    started = None
    t = time.perf_counter()
    for _ in range(n):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if flag:
            if started is not None:
                started[1].wait()
                int(started[0][0])
            f = torch.tensor([0], dtype=torch.int32)
            started = (f, dist.all_reduce(f, op=dist.ReduceOp.MAX, async_op=True))
            if flag == "wait":
                started[1].wait()
                int(f[0])
                started = None
    if started is not None:
        started[1].wait()
    return (time.perf_counter() - t) / n * 1e6


def worker(rank: int, size: int, port: int, args):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=size)
    f = torch.tensor([0], dtype=torch.int32)
    for _ in range(100):   # warm-up
        dist.all_reduce(f, op=dist.ReduceOp.MAX)
    dist.barrier()
    t = time.perf_counter()
    for _ in range(args.steps):
        f = torch.tensor([0], dtype=torch.int32)
        dist.all_reduce(f, op=dist.ReduceOp.MAX)
        int(f[0])
    flag_us = (time.perf_counter() - t) / args.steps * 1e6
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(64, args.hidden), torch.nn.ReLU(), torch.nn.Linear(args.hidden, 10))
    model = torch.nn.parallel.DistributedDataParallel(net)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = torch.randn(args.batch, 64), torch.randint(0, 10, (args.batch,))
    steps(model, opt, x, y, 50, "")
    # alternated, so that the machine's load falls on all alike; the best of 4 rounds each
    times = {"": [], "wait": [], "next": []}
    for _ in range(4):
        for flag in times:
            dist.barrier()
            times[flag].append(steps(model, opt, x, y, args.steps // 4, flag))
    if rank == 0:
        p, w, q = (min(times[k]) for k in ("", "wait", "next"))
        print(f"{size} processes (gloo): flag all-reduce alone {flag_us:.1f} us; DDP step (batch {args.batch}, "
              f"hidden {args.hidden}) {p:.1f} us without the flag; with it waited at once {w:.1f} us "
              f"({(w - p) / p:+.1%}); waited at the next step (nettrain) {q:.1f} us ({(q - p) / p:+.1%})")
    dist.destroy_process_group()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=256)
    args = ap.parse_args()
    mp.spawn(worker, args=(args.nproc, free_port(), args), nprocs=args.nproc)


if __name__ == "__main__":
    main()
