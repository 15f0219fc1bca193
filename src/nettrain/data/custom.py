"""The user's data in the tutorials' own forms: a torch Dataset with a `collate_fn`, or a ready DataLoader.

    data = custom_data(ds, val_ds, classes=None, collate_fn=pad_collate, cfg=cfg.data)   # Data(kind "custom")

Such inputs have no fixed shape (sequences of any length, tuples, dicts of tensors), so nothing is stacked in
memory: each batch is what the collate function makes of its items, moved to the device as it is. Integer inputs
(token ids) stay integers; nothing is normalized. A batch input that is a tuple or list goes into the model as
`model(*x)`, a dict as `model(**x)` (engine/loop.py `forward`).

Order: a DataLoader nettrain builds (from a Dataset) draws each epoch's order from a generator seeded with
(seed, epoch), so a resumed run sees the batches an uninterrupted one would. A DataLoader the user gives keeps its
own batch size, sampler and collate; its order is the user's: nettrain calls `sampler.set_epoch(epoch)` before each
epoch when the sampler has one (DistributedSampler does), so a resume is exact only with such a sampler, seeded.

What a checkpoint keeps of it is plain data: the task, classes and outputs, and the collate function's
`module:qualname` (None for torch's default), which `nettrain.load` resolves like a model spec (trust.py), or the
user passes again (`collate_fn=`).
"""
from __future__ import annotations

import sys
from typing import Optional

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, default_collate

from ..errors import ConfigError, DataError
from ..usercode import raised
from . import shard
from .arrays import DataInfo, class_list, example_rows, multi_hot


def structured(x) -> bool:
    """Is one input a tuple, list or dict of parts (the model takes them as separate arguments)?"""
    return isinstance(x, (tuple, list, dict))


def to_device(obj, device, non_blocking=False):
    """Every tensor in a batch (nested in tuples, lists and dicts) on `device`, dtypes unchanged."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=non_blocking)
    if isinstance(obj, dict):
        return {k: to_device(v, device, non_blocking) for k, v in obj.items()}
    if isinstance(obj, (tuple, list)):
        return type(obj)(to_device(v, device, non_blocking) for v in obj)
    return obj


def collate_spec(fn) -> Optional[str]:
    """`module:qualname` of the user's collate function, as a checkpoint records it; None for torch's default."""
    if fn is None or fn is default_collate:
        return None
    named = fn if hasattr(fn, "__qualname__") else type(fn)
    return f"{getattr(named, '__module__', None) or '?'}:{named.__qualname__}"


def label_less(what: str, item) -> str:
    """The answer to a Dataset whose items are inputs alone: it says the labels are missing."""
    shape = f" of shape {list(item.shape)}" if hasattr(item, "shape") else ""
    return (f"{what}: the Dataset's items are inputs alone (a {type(item).__name__}{shape}), without labels; return "
            f"(input, target) from __getitem__, e.g. `return image, label`")


def pair(batch, what: str):
    """A collated batch as (inputs, targets); a one-line DataError when it is not one."""
    if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
        raise DataError(f"{what}: a batch must be (inputs, targets), got a {type(batch).__name__}"
                        f"{f' of {len(batch)}' if isinstance(batch, (tuple, list)) else ''}; make the collate "
                        f"function return (inputs, targets)")
    x, y = batch
    if not isinstance(y, torch.Tensor):
        raise DataError(f"{what}: a batch's targets must be a tensor, got a {type(y).__name__}; make the collate "
                        f"function return them as a tensor (torch.tensor(labels))")
    return x, y


def collate(fn, items: list, what: str):
    """`fn(items)` as (inputs, targets), with the user's error in one line."""
    try:
        batch = (fn or default_collate)(items)
    except Exception as e:
        fix = "fix the collate function" if fn is not None else \
            "give collate_fn= that makes a batch of them (e.g. pads sequences to the longest)"
        raise DataError(f"{what}: collating a batch failed ({raised(e)}); {fix}") from None
    return pair(batch, what)


class CustomData:
    """One split: a Dataset batched by nettrain with `collate_fn`, or the user's DataLoader as it is."""

    def __init__(self, source, collate_fn, what: str):
        self.what = what
        self.loader = source if isinstance(source, DataLoader) else None
        self.dataset = source.dataset if self.loader is not None else source
        self.collate_fn = self.loader.collate_fn if self.loader is not None else collate_fn
        try:
            self.size = len(self.dataset)
        except TypeError:
            raise DataError(f"{what}: the {type(self.dataset).__name__} has no len(); give a Dataset with "
                            f"__len__ (an IterableDataset cannot say how many steps an epoch has)") from None
        if self.size == 0:
            raise DataError(f"{what}: the Dataset is empty; give at least one example")

    def __len__(self) -> int:
        return self.size

    def items(self, rows):
        try:
            items = [self.dataset[i] for i in rows]
        except Exception as e:
            raise DataError(f"{self.what}: reading an item failed ({raised(e)}); fix the Dataset's "
                            f"__getitem__") from None
        if items and isinstance(items[0], torch.Tensor) and self.collate_fn in (None, default_collate):
            # torch's default collate would make one tensor of them (a collate of the user's may make the targets)
            raise DataError(label_less(self.what, items[0]))
        return items

    def example(self):
        """EXAMPLE_ROWS items spread evenly over the split, collated: a representative batch for the model check (the
        inputs' shape is not fixed; the first items of a Dataset sorted by length are its shortest)."""
        return collate(self.collate_fn, self.items(example_rows(self.size).tolist()), self.what)

    def targets(self) -> torch.Tensor:
        """Every item's target, for the class count: torchvision's `targets` when the Dataset has them, else read
        item by item (the items' targets, not their inputs, are kept)."""
        base = self.dataset
        if isinstance(getattr(base, "targets", None), (list, torch.Tensor)) and len(base.targets) == self.size:
            return torch.as_tensor(base.targets)
        ys = []
        for item in self.items(range(self.size)):
            if not (isinstance(item, (tuple, list)) and len(item) == 2):
                raise DataError(f"{self.what}: the Dataset's items must be (input, target) pairs, got a "
                                f"{type(item).__name__}; return (input, target) from __getitem__")
            ys.append(torch.as_tensor(item[1]))
        try:
            return torch.stack(ys)
        except RuntimeError:
            raise DataError(f"{self.what}: the Dataset's targets differ in shape; give one class index or one "
                            f"regression target of a fixed shape per item") from None

    def subset(self, rows: slice) -> "CustomData":
        """The items of a contiguous range of rows, batched by nettrain with the same collate function (one
        process's part of an evaluation; a DataLoader's dataset is cut, its batch size is then eval_batch_size)."""
        lo, hi, _ = rows.indices(self.size)
        return CustomData(torch.utils.data.Subset(self.dataset, range(lo, hi)), self.collate_fn, self.what)

    def batches(self, device, batch_size: int, task: str, *, shuffle=False, drop_last=False, seed=0, workers=0,
                rank=0, world_size=1):
        return CustomBatches(self, device, batch_size, task, shuffle=shuffle, drop_last=drop_last, seed=seed,
                             workers=workers, rank=rank, world_size=world_size)


class CustomBatches:
    """(inputs, targets) on the device, each batch as the collate function made it; classification targets as
    int64 class indices, regression targets as float32 (N, outputs). `rank`/`world_size`: nettrain's DataLoader
    draws this rank's share of each global batch (shard.sampler, at every world size, so that the global batches
    are the same at any); the user's DataLoader is taken under DDP only with a DistributedSampler of its own."""

    def __init__(self, data: CustomData, device, batch_size: int, task: str, *, shuffle=False, drop_last=False,
                 seed=0, workers=0, rank=0, world_size=1):
        self.device, self.task, self.seed, self.what = torch.device(device), task, seed, data.what
        self.generator = None
        if data.loader is not None:   # the user's: its batch size, sampler and collate as they are
            self.loader = data.loader
            if world_size > 1 and not isinstance(self.loader.sampler, DistributedSampler):
                raise ConfigError(f"{data.what}: your DataLoader's {type(self.loader.sampler).__name__} gives every "
                                  f"one of the {world_size} processes the same batches; give its Dataset and "
                                  f"collate_fn instead (nettrain shards them) or a DataLoader with a "
                                  f"DistributedSampler")
            self.num_samples = len(self.loader.sampler) if world_size > 1 else len(data)
        else:
            self.generator = torch.Generator()   # the workers' seeds
            sampler = shard.sampler(data.dataset, rank, world_size, shuffle, seed)
            self.loader = DataLoader(data.dataset, batch_size=batch_size, sampler=sampler, drop_last=drop_last,
                                     collate_fn=data.collate_fn or default_collate, num_workers=workers,
                                     pin_memory=self.device.type == "cuda", persistent_workers=workers > 0,
                                     generator=self.generator)
            self.num_samples = len(sampler)
        self.drop_last = self.loader.drop_last
        if self.generator is not None:
            self.generator.manual_seed(self.seed * 1_000_003)

    def set_epoch(self, epoch: int):
        if self.generator is not None:
            self.generator.manual_seed(self.seed * 1_000_003 + epoch)
        for sampler in (getattr(self.loader, "sampler", None), getattr(self.loader, "batch_sampler", None)):
            if hasattr(sampler, "set_epoch"):   # DistributedSampler and the like: the user's seeded order
                sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        return self.iterate(0)

    def iterate(self, start: int = 0):
        """The epoch's batches from batch `start` on (a resume in the middle of an epoch): the DataLoader's first
        `start` batches are loaded and discarded, on the call (its sampler's order and its workers' random numbers
        are then those of the uninterrupted epoch)."""
        it = iter(self.loader)
        for _ in range(start):
            try:
                next(it)
            except StopIteration:
                break
            except DataError:
                raise
            except Exception as e:
                raise DataError(f"{self.what}: making a batch failed ({raised(e)}); fix the Dataset or the collate "
                                f"function") from None
        return self._batches(it)

    def _batches(self, it):
        non_blocking = self.device.type == "cuda"
        while True:
            try:
                batch = next(it)
            except StopIteration:
                return
            except DataError:
                raise
            except Exception as e:   # the collate function or __getitem__ raised: the user's code, in one line
                raise DataError(f"{self.what}: making a batch failed ({raised(e)}); fix the Dataset or the collate "
                                f"function") from None
            x, y = pair(batch, self.what)
            if self.task == "classification":
                y = y.long()
            elif self.task == "multilabel":
                y = y.float()
            else:
                y = (y.unsqueeze(1) if y.ndim == 1 else y).float()
            yield to_device(x, self.device, non_blocking), y.to(self.device, non_blocking=non_blocking)


def wanted(train, test, collate_fn) -> bool:
    """Does this data take the custom path: a collate function, a DataLoader, or a Dataset whose inputs are
    tuples, lists or dicts of parts (which torch's default collate batches part by part)?"""
    if collate_fn is not None or isinstance(train, DataLoader) or isinstance(test, DataLoader):
        return True
    if isinstance(train, Dataset) and not isinstance(train, tuple):
        try:
            first = train[0] if len(train) else None
        except Exception:
            return False   # the in-memory path names the problem
        return isinstance(first, (tuple, list)) and len(first) == 2 and structured(first[0])
    return False


def class_names(source) -> Optional[list]:
    """A torchvision Dataset's `classes` (followed through Subset's `.dataset` and a DataLoader's), as strings."""
    seen = 0
    while source is not None and seen < 8:
        names = getattr(source, "classes", None)
        if isinstance(names, (list, tuple)) and names and all(isinstance(c, (str, int)) for c in names):
            return [str(c) for c in names]
        source, seen = getattr(source, "dataset", None), seen + 1
    return None


def custom_data(train, test, classes, collate_fn, cfg):
    """(train, val, info, notes) for the custom path."""
    if isinstance(train, tuple):   # (x, y) arrays alongside a DataLoader: a TensorDataset of them
        train = torch.utils.data.TensorDataset(*(torch.as_tensor(v) for v in train))
    if isinstance(test, tuple):
        test = torch.utils.data.TensorDataset(*(torch.as_tensor(v) for v in test))
    for d, what in ((train, "data"), (test, "val_data")):
        if d is not None and not isinstance(d, (Dataset, DataLoader)):
            raise DataError(f"{what} with collate_fn must be a torch Dataset or DataLoader, got "
                            f"{type(d).__name__}; wrap your items in a Dataset of (input, target) pairs")
    if cfg is not None and (cfg.crop_padding or cfg.flip):
        raise ConfigError("data.crop_padding and data.flip augment in-memory images; with a Dataset or DataLoader "
                          "augment in its __getitem__ (a torchvision transform), and leave them off")
    if cfg is not None and cfg.val_fraction:
        raise DataError("data.val_fraction holds out part of in-memory arrays; with a Dataset or DataLoader give "
                        "val_data= (torch.utils.data.random_split makes one)")
    notes = []
    if collate_fn is None and isinstance(train, DataLoader) and train.collate_fn is not default_collate:
        collate_fn = train.collate_fn   # a val_data Dataset is batched as the training DataLoader's items are
    tr = CustomData(train, collate_fn, "data")
    if test is None and tr.loader is None:   # 20% held out, seeded, as for arrays
        n_out = max(1, round(len(tr) * 0.2)) if len(tr) > 1 else 0
        if n_out:
            perm = torch.randperm(len(tr), generator=torch.Generator().manual_seed(cfg.split_seed if cfg else 0))
            test = torch.utils.data.Subset(train, perm[:n_out].tolist())
            tr = CustomData(torch.utils.data.Subset(train, perm[n_out:].tolist()), collate_fn, "data")
    va = CustomData(test, collate_fn if not isinstance(test, DataLoader) else None, "val_data") \
        if test is not None else None
    for d in (tr, va):
        if d is not None and d.loader is not None:
            notes.append(f"{d.what}: your DataLoader is used as it is (batch size {d.loader.batch_size}, "
                         f"{type(d.loader.sampler).__name__}, collate {getattr(d.collate_fn, '__name__', '?')}); "
                         f"train.batch_size and train.shuffle do not apply to it")
    if va is None and tr.loader is not None:
        notes.append("no val_data: nothing is validated or tested; give val_data= to pick the best epoch")
    x, y = tr.example()
    if va is not None:
        va.example()   # its collate fails now, not after an epoch of training
    task = "regression" if y.is_floating_point() else "classification"
    if multi_hot(y) and (cfg is None or cfg.task in ("auto", "multilabel")):   # a batch of 0/1 label vectors
        task = "multilabel"
        print(f"nettrain: data's targets are 0/1 vectors of {y.shape[1]} labels: multi-label, each label a logit "
              f"trained with BCEWithLogits (loss bce)", file=sys.stderr)
        names = classes if classes is not None and len(classes) == y.shape[1] else range(y.shape[1])
        outputs, classes = int(y.shape[1]), [str(c) for c in names]
    elif task == "regression":
        outputs, classes = int(y.shape[1]) if y.ndim > 1 else 1, None
    else:
        names = classes if classes is not None else class_names(train)
        labels = [tr.targets()] + ([va.targets()] if va is not None else [])
        classes = [str(c) for c in class_list(labels, names)]
        outputs = len(classes)
    info = DataInfo(kind="custom", shape=[], task=task, classes=classes, outputs=outputs,
                    collate=collate_spec(tr.collate_fn))
    return tr, va, info, notes
