"""The text input kind: labelled texts from one CSV, TSV or JSONL file, end to end.

This module owns the text kind's data: its config section (`data.args`, checked here), reading and splitting its
files, what the model is checked on (`TextData.example`), the in-memory batches, predict-time preprocessing
(`encode_texts`) and what a checkpoint keeps of it (`DataInfo.vocab`: the vocabulary as a plain list of strings).
kinds/text.py answers for the kind elsewhere (predict, export), as kinds/ does for every kind.

    nettrain fit --dataset text --data-dir sms.csv --model bilstm --data.args.bucket true

Reading: columns `text` and `label` by default (`data.args.text_column`, `data.args.label_column`); quoting by the
csv module; a file whose first row names neither column is read as headerless `text<TAB>label` rows (the UCI
files). Split: one file is split with `data.split_seed`, `data.args.test_fraction` of it held out for the test,
and every copy of a text goes to the same side (a duplicate in both would be tested on what was trained on).
Vocabulary: learned from the training split only (tokenize.py); `<pad>` = 0, `<unk>` = 1.
Batches: the token ids of a split are one flat int64 tensor with a start and length per text; a batch is gathered
and padded to its own longest text by tensor ops (no per-text Python); with `data.args.bucket` the texts are
sorted by length within windows of 50 batches and the batches shuffled, all seeded by (seed, epoch), so a resume
sees the same batches. A batch is `((tokens, lengths), labels)`: the model is called as `model(tokens, lengths)`.
"""
from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from ..errors import ConfigError, DataError, printable
from ..files import LIMITS, open_read, read_bytes
from .arrays import Data, DataInfo, example_rows
from .shard import global_share
from .sources import DATASETS, data_root
from ..words import RULES
from .tokenize import build_vocab, encode

# data.args for the text dataset: key -> (default, check, what it must be)
_ARGS = {
    "text_column": ("text", lambda v: isinstance(v, str) and v != "", "a column name"),
    "label_column": ("label", lambda v: isinstance(v, str) and v != "", "a column name"),
    "vocab_size": (20000, lambda v: _int(v) and v >= 3, "an integer of at least 3 (with <pad> and <unk>)"),
    "min_freq": (1, lambda v: _int(v) and v >= 1, "a positive integer"),
    "max_len": (None, lambda v: v is None or (_int(v) and v >= 1), "null or a positive integer (tokens kept)"),
    "test_fraction": (0.2, lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < 1,
                      "a number between 0 and 1"),
    "bucket": (False, lambda v: isinstance(v, bool), "true or false"),
    "tokenizer": ("words", lambda v: v in RULES, f"one of {', '.join(RULES)}"),
}
TAKES_ARGS = {"text"}   # the datasets whose options are data.args (the others refuse them)
BUCKET_WINDOW = 50   # batches whose texts are sorted by length together when bucketing


def _int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def text_args(args: dict) -> dict:
    """data.args with the defaults filled in, every unknown key or bad value refused in one line."""
    errors = [f"unknown key data.args.{k} (valid: {', '.join(_ARGS)})" for k in args if k not in _ARGS]
    errors += [f"data.args.{k} must be {_ARGS[k][2]}, got {v!r}" for k, v in args.items()
               if k in _ARGS and not _ARGS[k][1](v)]
    if errors:
        raise ConfigError("invalid options for dataset 'text': " + "; ".join(errors))
    return {k: args.get(k, default) for k, (default, _, _) in _ARGS.items()}


# ---- reading -----------------------------------------------------------------------------------------

def read_rows(path: Path, text_column: str, label_column: str) -> list:
    """[(where, text, label string)] of a .csv, .tsv/.txt (tab-separated) or .jsonl file (where: the line number),
    or of a folder with a subfolder of .txt files per class (where: the file, as "pos/12.txt")."""
    if path.is_dir():
        return _folder_rows(path)
    if not path.is_file():
        raise DataError(f"{printable(path)} is not a file; give the CSV, TSV or JSONL file of texts with "
                        f"--data-dir FILE (or a folder with a subfolder of .txt files per class)")
    try:
        with open_read(path, LIMITS["csv"], "text file", text=True, encoding="utf-8-sig", newline="") as f:
            if path.suffix.lower() == ".jsonl":
                return _jsonl_rows(f, path, text_column, label_column)
            return _delimited_rows(f, path, text_column, label_column)
    except UnicodeDecodeError as e:
        raise DataError(f"{printable(path)} is not UTF-8 text (byte 0x{e.object[e.start]:02x}); save it as UTF-8") \
            from None
    except csv.Error as e:
        raise DataError(f"{printable(path)} is not a readable CSV file ({e}); check its quoting") from None


def _folder_rows(path: Path) -> list:
    """A folder of class folders, one text a .txt file (Keras' text_dataset_from_directory, the IMDB reviews'
    train/pos, train/neg): the class is the folder's name; other files and deeper folders (one named x.txt too)
    are not read. A .txt that is not a regular file (a FIFO, a link to /dev/zero) is refused, not read."""
    classes = sorted(d for d in path.iterdir() if d.is_dir() and not d.name.startswith("."))
    rows = []
    for folder in classes:
        for file in sorted(f for f in folder.glob("*.txt") if not f.is_dir()):
            try:
                text = read_bytes(file, LIMITS["text"], "text").decode("utf-8-sig")
                rows.append((f"{folder.name}/{file.name}", text, folder.name))
            except UnicodeDecodeError as e:
                raise DataError(f"{printable(file)} is not UTF-8 text (byte 0x{e.object[e.start]:02x}); save it as "
                                f"UTF-8") from None
    if not rows:
        found = ", ".join(d.name for d in classes[:5]) or "none"
        raise DataError(f"{printable(path)} holds no .txt files in class folders (its folders: {found}); give a folder "
                        f"with one subfolder of .txt files per class (pos/1.txt, neg/2.txt), or a CSV, TSV or "
                        f"JSONL file")
    return rows


def _at(where) -> str:
    """A row's place in a message: "line 12" of a file, or the file "pos/12.txt" of a folder."""
    return f"line {where}" if isinstance(where, int) else where


def _delimited_rows(f, path: Path, text_column: str, label_column: str) -> list:
    tabs = path.suffix.lower() in (".tsv", ".txt", ".tab")
    # raw tab-separated files (the UCI ones) do not quote, and their texts hold stray quote characters
    reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE) if tabs else csv.reader(f)
    header = next(reader, None)
    if header is None:
        raise DataError(f"{printable(path)} is empty; give a file with a header row ({text_column},{label_column}) "
                        f"and one row per text")
    if text_column in header or label_column in header:
        width, start = len(header), []
        missing = [c for c in (text_column, label_column) if c not in header]
        if missing:
            raise DataError(f"{printable(path)} has no column {missing[0]!r} (its columns: {', '.join(header)}); "
                            f"name the columns with --data.args.text_column and --data.args.label_column")
        ti, li = header.index(text_column), header.index(label_column)
    else:   # no header: text<TAB>label rows
        width, start, ti, li = 2, [(1, header)], 0, 1
        if len(header) != 2:
            raise DataError(f"{printable(path)}'s first row names neither column {text_column!r} nor "
                            f"{label_column!r} and is not a text and a label ({len(header)} fields); add a header "
                            f"row naming the columns")
    rows, line = [], 1
    for line, fields in start:
        rows.append((line, fields[ti], fields[li]))
    line = reader.line_num
    for fields in reader:
        if not fields:   # a blank line
            line = reader.line_num
            continue
        if len(fields) != width:
            raise DataError(f"{printable(path)} line {line + 1} has {len(fields)} fields, the header "
                            f"{width}; put texts holding the delimiter in double quotes (\"a, b\")")
        rows.append((line + 1, fields[ti], fields[li]))
        line = reader.line_num
    return rows


def _jsonl_rows(f, path: Path, text_column: str, label_column: str) -> list:
    rows = []
    for line, raw in enumerate(f, 1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as e:
            raise DataError(f"{printable(path)} line {line} is not JSON ({e.msg}); give one JSON object per line") \
                from None
        if not isinstance(obj, dict):
            raise DataError(f"{printable(path)} line {line} is a {type(obj).__name__}, not a JSON object; give "
                            f"one object per line, e.g. {{\"{text_column}\": \"...\", \"{label_column}\": \"...\"}}")
        missing = [c for c in (text_column, label_column) if c not in obj]
        if missing:
            raise DataError(f"{printable(path)} line {line} has no key {missing[0]!r} (its keys: "
                            f"{', '.join(map(str, obj))}); name them with --data.args.text_column and "
                            f"--data.args.label_column")
        text, label = obj[text_column], obj[label_column]
        if not isinstance(text, str):
            raise DataError(f"{printable(path)} line {line}: the text is a {type(text).__name__}, not a string")
        rows.append((line, text, str(label)))
    return rows


def class_names(labels) -> list:
    """The distinct labels, in numeric order when they are all integers ("2" before "10"), else sorted."""
    distinct = set(labels)
    if all(s.lstrip("-").isdigit() for s in distinct):
        return sorted(distinct, key=int)
    return sorted(distinct)


# ---- the split ---------------------------------------------------------------------------------------

def grouped_split(texts: list, fraction: float, seed: int) -> tuple:
    """(kept rows, held-out rows, duplicates): about `fraction` of the rows held out, drawn as whole groups of
    identical texts, so that no text is on both sides; `duplicates` counts the rows that repeat an earlier text."""
    groups = {}
    for i, t in enumerate(texts):
        groups.setdefault(t, []).append(i)
    members = list(groups.values())
    order = torch.randperm(len(members), generator=torch.Generator().manual_seed(seed)).tolist()
    want = max(1, round(len(texts) * fraction))
    held, kept = [], []
    for g in order:
        (held if len(held) < want else kept).extend(members[g])
    return sorted(kept), sorted(held), len(texts) - len(members)


# ---- data in memory ------------------------------------------------------------------------------------

@dataclass
class TextData:
    """One split: token ids as one flat tensor, each text's start and length in it, and the class indices."""
    ids: torch.Tensor       # int64 (total tokens,)
    lengths: torch.Tensor   # int64 (n,)
    y: torch.Tensor         # int64 (n,)
    texts: Optional[list] = None   # the raw strings (a file's splits): the report shows the test texts it got wrong

    @property
    def starts(self) -> torch.Tensor:
        return torch.cumsum(self.lengths, 0) - self.lengths

    def __len__(self) -> int:
        return len(self.y)

    def example(self):
        """EXAMPLE_ROWS texts spread evenly over the split as a batch, (inputs, targets): what the model is checked on.
        Not the first two: a file sorted by length starts with one-word texts, on which a model's `squeeze()` drops
        the word axis that every real batch has."""
        rows = example_rows(len(self))
        return pad(self.ids, self.starts, self.lengths, rows), self.y[rows]

    def fingerprint(self) -> dict:
        """Size and a hash of every id, length and label, for a resume to check it trains on the same data."""
        h = hashlib.sha256()
        for t in (self.ids, self.lengths, self.y):
            h.update(t.numpy().tobytes())
        return {"size": len(self), "sample": h.hexdigest()[:16]}

    def subset(self, rows: slice) -> "TextData":
        """The texts of a contiguous range of rows (one process's part of an evaluation)."""
        lo, hi, _ = rows.indices(len(self))
        first = int(self.lengths[:lo].sum())
        return TextData(self.ids[first:first + int(self.lengths[lo:hi].sum())], self.lengths[lo:hi], self.y[lo:hi])

    def batches(self, device, batch_size: int, *, train: bool, shuffle=False, drop_last=False, seed=0,
                bucket=False, rank=0, world_size=1) -> "TextBatches":
        return TextBatches(self, device, batch_size, train=train, shuffle=shuffle, drop_last=drop_last, seed=seed,
                           bucket=bucket, rank=rank, world_size=world_size)


def pad(ids, starts, lengths, rows, width=None) -> tuple:
    """(tokens, lengths) of texts `rows`: padded with 0 to `width` (default: their longest), by one gather."""
    n = lengths.index_select(0, rows)
    if width is None:
        width = int(n.max()) if len(n) else 0
    pos = torch.arange(width, device=ids.device)
    inside = pos < n.unsqueeze(1)
    where = (starts.index_select(0, rows).unsqueeze(1) + pos).masked_fill_(~inside, 0)
    return ids.take(where).masked_fill_(~inside, 0), n


class TextBatches:
    """((tokens, lengths), labels) on the device, each batch padded to its longest text. The epoch's order, and
    with `bucket` its length sorting and batch order, come from a generator seeded with (seed, epoch); evaluation
    (train=False) goes through the texts sorted by length (the sums it reports do not depend on the order).

    `rank`/`world_size` (training under DDP): `batch_size` is this rank's share of a global batch world_size times
    larger. The plan (order, bucketing, batch order, widths) is made for the global batches, as one process makes
    it, and each rank takes its contiguous slice of each (shard.global_share), padded to the global batch's width:
    a rank's tensors are rows of the one process's."""

    def __init__(self, data: TextData, device, batch_size: int, *, train: bool, shuffle=False, drop_last=False,
                 seed=0, bucket=False, rank=0, world_size=1):
        self.device = torch.device(device)
        self.lengths_cpu = data.lengths
        self.ids, self.lengths = data.ids.to(self.device), data.lengths.to(self.device)
        self.starts, self.y = data.starts.to(self.device), data.y.to(self.device)
        self.batch_size, self.train, self.shuffle, self.drop_last = batch_size, train, shuffle, drop_last
        self.seed, self.bucket, self.epoch = seed, bucket, 0
        self.rank, self.world_size, self.global_batch = rank, world_size, batch_size * world_size
        self.size = len(data)
        # this rank's texts an epoch: its share of each full global batch and of the last one's part that divides
        # evenly (the in-memory path's rule, batches.InMemoryBatches.num_samples)
        full, rest = divmod(self.size, self.global_batch)
        self.num_samples = self.size if world_size == 1 else \
            full * batch_size + (0 if drop_last else rest // world_size)
        self.waste = self.padding_waste()
        self.last_waste = None   # of the last pass over the batches (epoch_metrics)
        # what fit says before training (training.py prints the training batches' notes)
        self.notes = [f"text: padding is {self.waste:.1%} of the token positions at batch size "
                      f"{self.global_batch}{' (bucketed by length)' if bucket else ''}"] if train else []

    def set_epoch(self, epoch: int):
        self.epoch = epoch

    def __len__(self) -> int:
        n, bs = self.num_samples, self.batch_size
        return n // bs if self.drop_last else -(-n // bs)

    def plan(self) -> tuple:
        """(order of the texts, the global batches in the order they come, each one's width): CPU tensors."""
        n, bs, lengths = self.size, self.global_batch, self.lengths_cpu
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        if not self.train:
            order = torch.argsort(lengths, stable=True)
        elif self.shuffle:
            order = torch.randperm(n, generator=g)
        else:
            order = torch.arange(n)
        if self.train and self.bucket:   # sort by length within windows of batches: similar lengths batch together
            window = torch.arange(n) // (BUCKET_WINDOW * bs)
            order = order[torch.argsort(window * (int(lengths.max()) + 1) + lengths[order], stable=True)]
        count = n // bs if self.drop_last else -(-n // bs)
        take = min(n, count * bs)   # the last batch may be short (padded here with length 0)
        widths = torch.zeros(count * bs, dtype=lengths.dtype)
        widths[:take] = lengths[order[:take]]
        widths = widths.view(count, bs).amax(1)
        batch_order = torch.randperm(count, generator=g) if self.train and self.bucket and self.shuffle else \
            torch.arange(count)
        return order, batch_order, widths

    def padding_waste(self) -> float:
        """The share of this epoch's padded positions that are padding."""
        order, _, widths = self.plan()
        return self._waste(order, widths)

    def epoch_metrics(self) -> dict:
        """The columns this epoch adds to metrics.csv: the padding waste of the epoch's global batches (the plan of
        the last pass, the same at any number of processes), counted from the lengths the plan read on the host (no
        device sync)."""
        return {"padding_waste": round(self.last_waste, 4)} if self.last_waste is not None else {}

    def _waste(self, order, widths) -> float:
        bs, n = self.global_batch, self.size
        sizes = torch.full((len(widths),), bs)
        if len(widths) and not self.drop_last:
            sizes[-1] = n - bs * (len(widths) - 1)
        positions = int((widths * sizes).sum())
        used = int(self.lengths_cpu[order[:int(sizes.sum())]].sum())
        return 1 - used / positions if positions else 0.0

    def __iter__(self):
        return self.iterate(0)

    def iterate(self, start: int = 0):
        """The epoch's batches from batch `start` on (a resume in the middle of an epoch): its plan, from there."""
        order, batch_order, widths = self.plan()
        self.last_waste = self._waste(order, widths)
        return self._batches(order.to(self.device), batch_order[start:], widths)

    def _batches(self, order_dev, batch_order, widths):
        bs, n = self.global_batch, self.size
        for b, width in zip(batch_order.tolist(), widths[batch_order].tolist()):
            rows = order_dev[b * bs:min(n, (b + 1) * bs)]
            if self.world_size > 1:
                rows = global_share(rows, self.batch_size, self.rank, self.world_size)
                if not len(rows):   # a last global batch smaller than the world: every rank skips it
                    continue
            tokens, lengths = pad(self.ids, self.starts, self.lengths, rows, width)
            yield (tokens, lengths), self.y.index_select(0, rows)


# ---- the dataset ----------------------------------------------------------------------------------------

def _encoded(texts, labels, rows, vocab, classes, args) -> TextData:
    ids, lengths = encode([texts[i] for i in rows], vocab, args["max_len"], args["tokenizer"])
    index = {c: i for i, c in enumerate(classes)}
    return TextData(ids, lengths, torch.tensor([index[labels[i]] for i in rows], dtype=torch.int64),
                    [texts[i] for i in rows])


def load_text(cfg, vocab=None):
    """The Data (train, val, test, DataInfo, notes) of `data.dir`, a file of labelled texts; `vocab`: a trained
    model's vocabulary, used instead of one learned from the training split (evaluate)."""
    args = text_args(cfg.args)
    if cfg.crop_padding or cfg.flip:
        raise ConfigError("data.crop_padding and data.flip augment images; a text dataset takes neither, leave them "
                          "out")
    path = data_root(cfg)
    rows = read_rows(path, args["text_column"], args["label_column"])
    empty = [line for line, text, _ in rows if not text.strip()]
    if empty:
        raise DataError(f"{printable(path)} has {len(empty)} empty text{'s' * (len(empty) > 1)}, the first at "
                        f"{_at(empty[0])}; remove those rows or fill in their text")
    unlabelled = [line for line, _, label in rows if not label.strip()]
    if unlabelled:
        raise DataError(f"{printable(path)} has {len(unlabelled)} text{'s' * (len(unlabelled) > 1)} without a label, "
                        f"the first at {_at(unlabelled[0])}; give every text its class in column "
                        f"{args['label_column']!r}")
    if len(rows) < 2:
        raise DataError(f"{printable(path)} holds {len(rows)} text{'s' * (len(rows) != 1)}; give at least two (one "
                        f"to train on, one to test)")
    texts, labels = [t for _, t, _ in rows], [lab.strip() for _, _, lab in rows]
    classes = class_names(labels)
    if len(classes) < 2 and path.is_dir():
        raise DataError(f"{printable(path)} holds .txt files in one class folder only ({classes[0]!r}); a classifier "
                        f"needs texts of at least two classes: one subfolder each")
    if len(classes) < 2:
        raise DataError(f"{printable(path)}'s column {args['label_column']!r} has one class only ({classes[0]!r}); "
                        f"a classifier needs texts of at least two classes")
    train_rows, test_rows, duplicates = grouped_split(texts, args["test_fraction"], cfg.split_seed)
    val_rows = test_rows
    if cfg.val_fraction:
        kept, held, _ = grouped_split([texts[i] for i in train_rows], cfg.val_fraction, cfg.split_seed + 1)
        train_rows, val_rows = [train_rows[i] for i in kept], [train_rows[i] for i in held]
    if not train_rows:
        raise DataError(f"{printable(path)}: no texts are left to train on after the test and validation splits; "
                        f"give more texts or a smaller data.args.test_fraction")
    if vocab is None:
        vocab = build_vocab([texts[i] for i in train_rows], args["vocab_size"], args["min_freq"], args["tokenizer"])
    train = _encoded(texts, labels, train_rows, vocab, classes, args)
    test = _encoded(texts, labels, test_rows, vocab, classes, args)
    val = test if val_rows is test_rows else _encoded(texts, labels, val_rows, vocab, classes, args)
    info = DataInfo(kind="text", shape=[len(vocab)], task="classification", classes=classes, outputs=len(classes),
                    vocab=vocab)
    notes = [f"text: {len(rows):,} texts in {printable(path.name)}, {duplicates:,} of them duplicates "
             f"({len(rows) - duplicates:,} distinct; every copy of a text on one side of the split), vocabulary "
             f"{len(vocab):,} tokens from the {len(train):,} training texts"]
    return Data(train, val, test, info, notes, val_chooses=val is not test)   # val_fraction: a split of its own


def encode_texts(texts, info: DataInfo, args: dict) -> TextData:
    """Raw strings as a trained model's batches hold them, with its saved vocabulary (predict)."""
    if isinstance(texts, str):
        texts = [texts]
    texts = list(texts)
    if not texts:
        raise DataError("nothing to predict: give at least one text")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise DataError(f"text {i + 1} is a {type(t).__name__}; this model takes strings")
    args = text_args(args)
    ids, lengths = encode(texts, info.vocab, args["max_len"], args["tokenizer"])
    if not bool(lengths.all()):
        raise DataError(f"text {int((lengths == 0).nonzero()[0]) + 1} is empty; give texts with at least one word")
    return TextData(ids, lengths, torch.zeros(len(texts), dtype=torch.int64))


@DATASETS.register("text")
def text_dataset(cfg, root):
    return load_text(cfg)
