"""The fits that test_ddp_paths.py runs in 2 processes (one torchrun launch: `python tests/ddp_paths.py OUT WORK`
under torch.distributed.run) and in 1 (pytest's own process), one per data path: a DataLoader over image files,
a user's Dataset with a collate function, texts (bucketed), a table; and gradient accumulation (no_sync).

Every fit's options are made here, so that both sides train the same thing. The models draw no random numbers
while training (no dropout: every process would draw the same ones) and have no BatchNorm (its batch statistics
are each process's), so that 2 processes compute what 1 does, up to the order of float sums.
"""
import csv
import json
import os
import sys
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset

QUIET = {"run.progress": "none", "run.tensorboard": False, "run.report": False, "precision": "32",
         "device": "cpu", "train.threads": 1, "seed": 3}
PATHS = ["loader", "collate", "text", "table", "accumulate"]


class Sequences(Dataset):
    """Token sequences of lengths 2..7 whose class is whether token 1 occurs more than token 2 (ties: 0)."""

    def __init__(self, n: int, seed: int):
        g = torch.Generator().manual_seed(seed)
        self.items = []
        for _ in range(n):
            ids = torch.randint(1, 6, (int(torch.randint(2, 8, (1,), generator=g)),), generator=g)
            self.items.append((ids, int((ids == 1).sum() > (ids == 2).sum())))

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def pad(items):
    ids, labels = zip(*items)
    return (nn.utils.rnn.pad_sequence(ids, batch_first=True), torch.tensor([len(i) for i in ids])), \
        torch.tensor(labels)


class MeanEmbedding(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)   # the same initial weights in every process and in pytest's
        self.embed = nn.Embedding(6, 8, padding_idx=0)
        self.out = nn.Linear(8, 2)

    def forward(self, ids, lengths):
        return self.out(self.embed(ids).sum(1) / lengths.unsqueeze(1))


def write_inputs(work: Path):
    """The files the fits read: an image folder (43 PNGs: 32 train, 11 test), a text CSV, a table CSV."""
    from PIL import Image
    g = torch.Generator().manual_seed(1)
    for split, n in (("train", 32), ("test", 11)):
        for i in range(n):
            label = i % 2
            d = work / "images" / split / f"c{label}"
            d.mkdir(parents=True, exist_ok=True)
            pixels = torch.randint(0, 128, (8, 8), generator=g, dtype=torch.uint8) + 100 * label
            Image.fromarray(pixels.numpy()).save(d / f"{i}.png")
    words = ["the", "food", "was", "very", "service", "place", "and", "really", "quite", "so"]
    with open(work / "texts.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for i in range(67):   # 67 texts of 3..9 words: 13 held out for the test (odd)
            pos = i % 2
            w.writerow([" ".join([words[(i * 7 + k) % 10] for k in range(2 + i % 7)] + ["good" if pos else "bad"]),
                        "pos" if pos else "neg"])
    with open(work / "table.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["a", "b", "color", "label"])
        for i in range(105):   # 105 rows: 21 test rows (odd)
            a, b = (i * 37 % 101) / 10, (i * 53 % 97) / 10
            w.writerow([a, b, ["red", "green", "blue"][i % 3], "yes" if a + b > 10 else "no"])


def options(path: str, work: Path) -> dict:
    """nettrain.fit's keywords for one path (without run_dir)."""
    if path == "loader":   # image files read by a DataLoader: data.in_memory no
        return {**QUIET, "dataset": "imagefolder", "data_dir": str(work / "images"), "data.in_memory": "no",
                "data.channels": 1, "model": "mlp", "epochs": 2, "batch_size": 8, "lr": 0.01,
                "data.crop_padding": 1, "data.flip": True}
    if path == "collate":
        return {**QUIET, "data": Sequences(42, 0), "val_data": Sequences(11, 1), "collate_fn": pad,
                "model": MeanEmbedding(), "epochs": 2, "batch_size": 8, "lr": 0.05}
    if path == "text":
        # no dropout: each rank draws its own masks, so only a model without randomness trains alike at any world size
        return {**QUIET, "dataset": "text", "data_dir": str(work / "texts.csv"), "model": "fasttext", "epochs": 2,
                "batch_size": 8, "lr": 0.1, "data.args": {"bucket": True}, "model.args": {"dropout": 0.0}}
    if path == "table":
        return {**QUIET, "dataset": "csv", "data_dir": str(work / "table.csv"), "target": "label", "model": "mlp",
                "epochs": 2, "batch_size": 16, "lr": 0.01, "model.args": {"hidden": [32], "dropout": 0.0}}
    if path == "accumulate":   # the table's 84 training rows at 16: 6 batches, 3 optimizer steps an epoch
        return {**options("table", work), "train.accumulate": 2}
    raise ValueError(path)


def count_all_reduces(counts: list):
    """Register a comm hook on every DDP model nettrain makes that appends to `counts` at each bucket all-reduce."""
    from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook
    from nettrain.engine import distributed
    wrap = distributed.World.wrap

    def counted(state, bucket):
        counts.append(1)
        return allreduce_hook(state, bucket)

    def wrapped(self, model, device):
        out = wrap(self, model, device)
        if isinstance(out, nn.parallel.DistributedDataParallel):
            out.register_comm_hook(None, counted)
        return out
    distributed.World.wrap = wrapped


def main(out: Path, work: Path):
    import torch.distributed as dist
    import nettrain
    dist.init_process_group("gloo")   # once for all the fits (nettrain joins the group it finds)
    counts = []
    count_all_reduces(counts)
    try:
        for path in PATHS:
            counts.clear()
            nettrain.fit(**options(path, work), run_dir=str(out / path))
            if dist.get_rank() == 0:
                (out / f"{path}.all_reduces.json").write_text(json.dumps(len(counts)))
        try:   # SyncBatchNorm on CPU processes: refused by every rank alike, before any collective
            nettrain.fit(**options("table", work), sync_batchnorm=True, run_dir=str(out / "syncbn"))
        except nettrain.NettrainError as e:
            if dist.get_rank() == 0:
                (out / "syncbn.error.txt").write_text(str(e))
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    torch.set_num_threads(1)
    main(Path(sys.argv[1]), Path(sys.argv[2]))
