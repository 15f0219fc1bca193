#!/usr/bin/env python3
"""Plain-PyTorch references for the two classic CIFAR-10 tutorials: the loops written by hand, no nettrain.

Default: the 3-conv "tudui" CNN tutorial
    Conv(3,32,5,p2)-MaxPool(2)-Conv(32,32,5,p2)-MaxPool(2)-Conv(32,64,5,p2)-MaxPool(2)-Flatten-
    Linear(1024,64)-Linear(64,10)
    batch 16, SGD lr 0.01, CrossEntropyLoss, ToTensor scaling only (x/255), shuffled DataLoader.
--lenet: the official PyTorch CIFAR-10 tutorial ("Training a Classifier")
    LeNet `Net` (conv 6, conv 16, fc 120-84-10), batch 4, SGD lr 0.001 momentum 0.9,
    ToTensor + Normalize((0.5,0.5,0.5), (0.5,0.5,0.5)), shuffled DataLoader.

Both read DATA/cifar10/{train,test}.npz (build them with `python DATA/cifar10/build.py`) into memory as the
float tensors ToTensor would give, and feed them through a shuffled DataLoader over a TensorDataset, as the
tutorials do. Everything runs in float32 on the CPU (or --device). Printed per epoch: training seconds,
images/s and test accuracy; the last line is `RESULT {json}` for scripts (benchmarks/tutorial_recipes.py).

--normalize and --cosine add, by hand, the two choices nettrain makes by default and the tutorial does not: inputs
standardized with the training set's per-channel mean and std, and the lr decayed to 0 along a cosine over the run
(stepped per batch). With both, the plain loop is "run the same way" as `nettrain fit` with its defaults.

usage: python benchmarks/reference_tutorial_loop.py [DATA] [--epochs 10] [--seed 0] [--lenet] [--normalize] [--cosine]
       DATA defaults to $NETTRAIN_DATA, else ../shared/datasets relative to the repository root.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

REPO = Path(__file__).resolve().parent.parent


def default_data_dir() -> str:
    return os.environ.get("NETTRAIN_DATA") or str(REPO / ".." / "shared" / "datasets")


def tudui() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 32, 5, 1, 2), nn.MaxPool2d(2), nn.Conv2d(32, 32, 5, 1, 2), nn.MaxPool2d(2),
                         nn.Conv2d(32, 64, 5, 1, 2), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(1024, 64),
                         nn.Linear(64, 10))


class Net(nn.Module):
    """The official tutorial's network, verbatim."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


def load(root: Path, split: str, lenet: bool, stats=None) -> TensorDataset:
    path = root / "cifar10" / f"{split}.npz"
    if not path.exists():
        sys.exit(f"{path} not found; build it with: python {root / 'cifar10' / 'build.py'}")
    z = np.load(path)
    x = torch.from_numpy(z["images"]).permute(0, 3, 1, 2).float().div(255)   # what ToTensor does
    if stats is not None:
        x = (x - stats[0].view(1, 3, 1, 1)) / stats[1].view(1, 3, 1, 1)      # Normalize(train mean, train std)
    elif lenet:
        x = (x - 0.5) / 0.5                                                   # Normalize((0.5,)*3, (0.5,)*3)
    return TensorDataset(x.contiguous(), torch.from_numpy(z["labels"]).long())


@torch.no_grad()
def accuracy(net, ds, device) -> float:
    net.eval()
    correct = 0
    for x, y in DataLoader(ds, batch_size=1000):
        correct += (net(x.to(device)).argmax(1) == y.to(device)).sum().item()
    net.train()
    return correct / len(ds)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("data", nargs="?", default=default_data_dir(), help="data directory holding cifar10/*.npz")
    p.add_argument("--epochs", type=int, default=None, help="epochs (default 10; --lenet: 2, as the tutorial)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lenet", action="store_true", help="the official tutorial's LeNet recipe instead of tudui")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--normalize", action="store_true", help="standardize with the training set's channel mean/std")
    p.add_argument("--cosine", action="store_true", help="decay the lr to 0 along a cosine, stepped per batch")
    args = p.parse_args(argv)
    epochs = args.epochs or (2 if args.lenet else 10)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    t0 = time.perf_counter()
    root = Path(args.data)
    stats = None
    if args.normalize:
        pixels = load(root, "train", False).tensors[0]
        stats = (pixels.mean(dim=(0, 2, 3)), pixels.std(dim=(0, 2, 3)))
    train, test = load(root, "train", args.lenet, stats), load(root, "test", args.lenet, stats)
    if args.lenet:
        net, batch_size = Net(), 4
        opt = torch.optim.SGD(net.parameters(), lr=0.001, momentum=0.9)
    else:
        net, batch_size = tudui(), 16
        opt = torch.optim.SGD(net.parameters(), lr=0.01)
    net.to(device)
    loss_fn = nn.CrossEntropyLoss()
    loader = DataLoader(train, batch_size=batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(args.seed))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs * len(loader)) if args.cosine else None
    name = "lenet" if args.lenet else "tudui"
    print(f"reference {name}: batch {batch_size}, {epochs} epochs, seed {args.seed}, "
          f"{torch.get_num_threads()} threads, load {time.perf_counter() - t0:.1f}s", flush=True)
    rows = []
    for epoch in range(1, epochs + 1):
        t = time.perf_counter()
        loss_sum, seen = 0.0, 0
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            loss = loss_fn(net(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            loss_sum += loss.item() * len(y)   # the tutorials print the running loss, which syncs every step
            seen += len(y)
        seconds = time.perf_counter() - t
        acc = accuracy(net, test, device)
        rows.append({"epoch": epoch, "train_loss": loss_sum / seen, "seconds": round(seconds, 2),
                     "images_per_s": round(seen / seconds, 1), "test_acc": acc})
        print(f"epoch {epoch}/{epochs}  train loss {loss_sum / seen:.4f}  {seconds:.1f}s  {seen / seconds:,.0f} img/s"
              f"  test acc {acc:.2%}", flush=True)
    total = time.perf_counter() - t0
    print(f"total {total:.1f}s")
    print("RESULT " + json.dumps({"model": name, "seed": args.seed, "normalize": args.normalize,
                                  "cosine": args.cosine, "epochs": rows, "total_seconds": round(total, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
