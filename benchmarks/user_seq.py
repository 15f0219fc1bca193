"""Seed 002's program: a custom Dataset of variable-length token sequences, a padding collate_fn and a BiLSTM,
trained by a hand-written DataLoader + Adam loop and by `nettrain.fit(model=..., data=ds, collate_fn=...)`.

    python benchmarks/user_seq.py [--train 4000] [--val 1000] [--epochs 5] [--batch-size 64] [--repeats 1]

The task (synthetic, no files): token ids 1..99, 5-40 long, with a few 7s and 8s planted; label 1 when 7 occurs
more often than 8 (about half the sequences). Both sides use the same data, model initialization, batch size,
Adam learning rate and a constant schedule, and are timed in this process one after the other (alternating when
repeated); printed side by side: training seconds and the validation accuracy after the last epoch.
"""
import argparse
import tempfile
import time

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

import nettrain


class Sequences(Dataset):
    """The user's Dataset: (ids int64 of length 5-40, label)."""

    def __init__(self, n: int, seed: int):
        g = torch.Generator().manual_seed(seed)
        self.items = []
        while len(self.items) < n:
            ids = torch.randint(1, 100, (int(torch.randint(5, 41, (1,), generator=g)),), generator=g)
            ids[(ids == 7) | (ids == 8)] = 1
            planted = torch.randperm(len(ids), generator=g)[:int(torch.randint(1, 5, (1,), generator=g))]
            ids[planted] = torch.where(torch.rand(len(planted), generator=g) < 0.5, 7, 8)
            sevens, eights = int((ids == 7).sum()), int((ids == 8).sum())
            if sevens != eights:   # no ties: the label is always defined
                self.items.append((ids, int(sevens > eights)))

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def pad_collate(batch):
    """Pads each batch to its longest sequence with 0."""
    ids = nn.utils.rnn.pad_sequence([x for x, _ in batch], batch_first=True, padding_value=0)
    return ids, torch.tensor([y for _, y in batch])


class BiLSTM(nn.Module):
    def __init__(self, vocab=100, dim=32, hidden=64):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim, padding_idx=0)
        self.lstm = nn.LSTM(dim, hidden, batch_first=True, bidirectional=True)
        self.head = nn.Linear(2 * hidden, 2)

    def forward(self, ids):
        mask = (ids != 0).unsqueeze(2).float()   # the mean over the real steps, not the padding
        out, _ = self.lstm(self.embed(ids))
        return self.head((out * mask).sum(1) / mask.sum(1).clamp_min(1))


def plain_loop(train, val, args):
    """The tutorial loop, as its user wrote it."""
    torch.manual_seed(args.seed)
    model = BiLSTM()
    loader = DataLoader(train, batch_size=args.batch_size, shuffle=True, collate_fn=pad_collate)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    loss_fn = nn.CrossEntropyLoss()
    start = time.perf_counter()
    for _ in range(args.epochs):
        model.train()
        for ids, labels in loader:
            opt.zero_grad()
            loss_fn(model(ids), labels).backward()
            opt.step()
    seconds = time.perf_counter() - start
    model.eval()
    correct = 0
    with torch.no_grad():
        for ids, labels in DataLoader(val, batch_size=1000, collate_fn=pad_collate):
            correct += int((model(ids).argmax(1) == labels).sum())
    return seconds, correct / len(val)


def with_nettrain(train, val, args):
    torch.manual_seed(args.seed)
    model = BiLSTM()
    with tempfile.TemporaryDirectory() as tmp:
        run = nettrain.fit(model=model, data=train, val_data=val, collate_fn=pad_collate, optimizer="adam",
                           lr=args.lr, scheduler="none", epochs=args.epochs, batch_size=args.batch_size,
                           seed=args.seed, device="cpu", run_dir=f"{tmp}/run", **{"run.progress": "none"})
        return sum(r["seconds"] for r in run.metrics), run.test["acc"]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train", type=int, default=4000)
    p.add_argument("--val", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.005)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    train, val = Sequences(args.train, seed=1), Sequences(args.val, seed=2)
    print(f"{args.train} train / {args.val} val sequences, {args.epochs} epochs, batch {args.batch_size}, "
          f"Adam {args.lr}, {torch.get_num_threads()} threads")
    print(f"{'':>4}  {'plain loop':>22}  {'nettrain.fit':>22}")
    for i in range(args.repeats):
        runs = [("plain", plain_loop), ("nettrain", with_nettrain)]
        if i % 2:
            runs.reverse()
        result = {name: fn(train, val, args) for name, fn in runs}
        (ps, pa), (ns, na) = result["plain"], result["nettrain"]
        print(f"{i + 1:>4}  {ps:8.1f} s  acc {pa:6.2%}  {ns:8.1f} s  acc {na:6.2%}   (training seconds; val "
              f"accuracy after the last epoch)")


if __name__ == "__main__":
    main()
