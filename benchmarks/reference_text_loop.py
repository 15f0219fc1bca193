"""The hand-written way to train a BiLSTM text classifier, as tutorials write it: a Dataset of token-id lists, a
collate function that pads each batch with numpy, a DataLoader, and the same BiLSTM as nettrain's `bilstm` (same
sizes, same max pooling), run over the padded batch WITHOUT packing (the padding goes through the LSTM; the pooling
still ignores it). The data is nettrain's seeded, duplicate-aware 80/20 split with the same vocabulary (imported,
so that both sides train and test on identical ids): what is compared is the training loop.

    python benchmarks/reference_text_loop.py FILE.csv [--epochs 6] [--batch-size 64] [--lr 0.005] [--embed 128]
                                                      [--hidden 64] [--min-freq 2]

Prints one JSON line: test accuracy, per-class F1 and the training seconds.
"""
import argparse
import json
import time

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from nettrain.data.text import class_names, grouped_split, read_rows
from nettrain.data.tokenize import build_vocab, tokens


class Texts(Dataset):
    def __init__(self, texts, labels, vocab):
        index = {w: i for i, w in enumerate(vocab)}
        self.items = [([index.get(w, 1) for w in tokens(t)], y) for t, y in zip(texts, labels)]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def numpy_pad_collate(batch):
    """Pads each batch to its longest text with 0, in numpy."""
    longest = max(len(ids) for ids, _ in batch)
    out = np.zeros((len(batch), longest), dtype=np.int64)
    for row, (ids, _) in enumerate(batch):
        out[row, :len(ids)] = ids
    lengths = np.array([len(ids) for ids, _ in batch], dtype=np.int64)
    return torch.from_numpy(out), torch.from_numpy(lengths), torch.tensor([y for _, y in batch])


class BiLSTM(nn.Module):
    def __init__(self, vocab, outputs, embed=64, hidden=64):
        super().__init__()
        self.embedding = nn.Embedding(vocab, embed, padding_idx=0)
        self.lstm = nn.LSTM(embed, hidden, batch_first=True, bidirectional=True)
        self.classifier = nn.Linear(2 * hidden, outputs)

    def forward(self, tokens, lengths):
        out, _ = self.lstm(self.embedding(tokens))   # padded positions run through the LSTM
        inside = torch.arange(tokens.shape[1]) < lengths.unsqueeze(1)
        return self.classifier(out.masked_fill(~inside.unsqueeze(2), float("-inf")).amax(1))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("file")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=5e-3)
    p.add_argument("--embed", type=int, default=128)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--min-freq", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    torch.manual_seed(a.seed)
    rows = read_rows(__import__("pathlib").Path(a.file), "text", "label")
    texts, labels = [t for _, t, _ in rows], [lab.strip() for _, _, lab in rows]
    classes = class_names(labels)
    y = [classes.index(lab) for lab in labels]
    train_rows, test_rows, _ = grouped_split(texts, 0.2, 0)
    vocab = build_vocab([texts[i] for i in train_rows], 20000, a.min_freq)
    train = Texts([texts[i] for i in train_rows], [y[i] for i in train_rows], vocab)
    test = Texts([texts[i] for i in test_rows], [y[i] for i in test_rows], vocab)
    loader = DataLoader(train, batch_size=a.batch_size, shuffle=True, collate_fn=numpy_pad_collate)
    model = BiLSTM(len(vocab), len(classes), a.embed, a.hidden)
    opt = torch.optim.Adam(model.parameters(), lr=a.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, a.epochs * len(loader))
    loss_fn = nn.CrossEntropyLoss()
    start = time.perf_counter()
    for _ in range(a.epochs):
        model.train()
        for ids, lengths, target in loader:
            opt.zero_grad()
            loss_fn(model(ids, lengths), target).backward()
            opt.step()
            sched.step()
    seconds = time.perf_counter() - start
    model.eval()
    cm = torch.zeros(len(classes), len(classes), dtype=torch.long)
    with torch.no_grad():
        for ids, lengths, target in DataLoader(test, batch_size=256, collate_fn=numpy_pad_collate):
            pred = model(ids, lengths).argmax(1)
            cm += torch.bincount(target * len(classes) + pred, minlength=len(classes) ** 2).view_as(cm)
    tp = cm.diag().double()
    f1 = (2 * tp / (cm.sum(0) + cm.sum(1)).double().clamp_min(1)).tolist()
    print(json.dumps({"acc": float(tp.sum() / cm.sum()), "f1": dict(zip(classes, f1)), "train_seconds": seconds}))


if __name__ == "__main__":
    main()
