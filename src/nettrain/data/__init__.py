"""Data: datasets by name, the user's arrays, image folders, and the batches the loop consumes.

    data = load_data(cfg.data)               # Data(train, val, test, info)
    batches = make_batches(data.train, data.info, cfg.data, device, batch_size, train=True, ...)
"""
from __future__ import annotations

import sys
from typing import Optional

import torch

from ..errors import ConfigError, DataError
from .arrays import (IMAGE_KINDS, TOKEN_ID_KINDS, ArrayData, Data, DataInfo, Source, channel_stats, class_list,
                     images_from_numpy, multi_hot, split)
from . import shard
from .batches import BatchPrep, InMemoryBatches, LoaderBatches
from .custom import CustomData, class_names, custom_data, label_less, wanted as wants_custom
from .sources import DATASETS, data_root, load_source
from . import table  # noqa: F401,E402  (registers csv, iris, wine, breast-cancer, diabetes)
from .text import TAKES_ARGS, TextData

__all__ = ["DATASETS", "ArrayData", "Data", "DataInfo", "load_data", "from_user_data", "make_batches",
           "data_root", "images_from_numpy"]


def _stats(train) -> tuple:
    if isinstance(train, ArrayData):
        return channel_stats(train.x)
    sample = torch.stack([train[i][0] for i in range(0, len(train), max(1, len(train) // 1000))])
    return channel_stats(sample)


def from_source(src: Source, cfg) -> Data:
    train, test = src.train, src.test
    if isinstance(train, ArrayData) and len(train) == 0:
        raise DataError("the training split is empty; give a dataset with at least one example")
    if isinstance(test, ArrayData) and len(test) == 0:   # its accuracy would read 0.0 and pick the "best" epoch
        raise DataError("the validation split is empty; give it at least one example, or leave it out and 20% of "
                        "the training data is held out")
    if test is None and isinstance(train, ArrayData) and cfg.val_fraction != 0:   # 0: the user holds out nothing
        train, test = split(train, 0.2, cfg.split_seed)
    val = test
    if cfg.val_fraction:
        if not isinstance(train, ArrayData):
            raise DataError("data.val_fraction needs an in-memory dataset; use a val/ folder instead")
        train, val = split(train, cfg.val_fraction, cfg.split_seed + 1)
    if isinstance(train, ArrayData) and len(train) == 0:
        raise DataError(f"no training examples are left after holding {len(val)} out for validation; "
                        f"give more examples, or a validation split of your own")
    if cfg.limit and len(train) > cfg.limit:
        train = _limited(train, cfg.limit, cfg.split_seed + 2)
    images, token_ids = src.kind in IMAGE_KINDS, src.kind in TOKEN_ID_KINDS
    if images:
        x0 = train.x if isinstance(train, ArrayData) else train[0][0].unsqueeze(0)
        shape = list(x0.shape[1:])
        mean, std = _stats(train)
    else:
        shape, mean, std = list(train.x.shape[1:]), [], []
    if cfg.mean is not None or cfg.std is not None:
        mean, std = _given_normalization(cfg, images, shape, mean, std)
    _check_crop(cfg.crop_padding, images, shape)
    if src.task == "classification":
        classes = class_list([d.y for d in (train, val, test) if isinstance(d, ArrayData)], src.classes)
        outputs = len(classes)
    elif src.task == "multilabel":   # a name for each label: the user's, or its column's number
        outputs = int(train.y.shape[1])
        classes = [str(c) for c in src.classes] if src.classes is not None and len(src.classes) == outputs \
            else [str(i) for i in range(outputs)]
    else:
        classes, outputs = None, int(train.y.shape[1]) if train.y.ndim > 1 else 1
    # integer vectors are token ids, kept integers (an embedding takes them); predict converts to this dtype
    dtype = str(train.x.dtype).removeprefix("torch.") if token_ids and isinstance(train, ArrayData) \
        and not train.x.is_floating_point() else None
    info = DataInfo(kind=src.kind, shape=shape, task=src.task, classes=classes, outputs=outputs,
                    mean=mean, std=std, image_size=src.image_size, dtype=dtype, table=src.table)
    return Data(train, val, test, info, val_chooses=val is not None and (val is not test or src.test_is_val))


def _limited(train, limit: int, seed: int):
    """A seeded subset of `limit` training examples (data.limit), kept in the dataset's order: every class has its
    share, where the first N could all be one class in a sorted dataset."""
    keep = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:limit].sort().values
    if isinstance(train, ArrayData):
        return train.subset(keep)
    return torch.utils.data.Subset(train, keep.tolist())


def _given_normalization(cfg, images: bool, shape: list, mean: list, std: list) -> tuple:
    """data.mean / data.std (a tutorial's Normalize values, per channel in [0, 1] units) instead of the dataset's;
    one value serves every channel."""
    if not images:
        raise ConfigError(f"data.mean and data.std normalize images' channels, but this dataset's inputs are vectors "
                          f"of shape {shape}; leave them out")
    out = []
    for key, given, own in (("mean", cfg.mean, mean), ("std", cfg.std, std)):
        if given is None:
            out.append(own)
            continue
        if len(given) not in (1, shape[0]) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                    for v in given):
            raise ConfigError(f"data.{key} must be a list of 1 or {shape[0]} numbers (one per channel), got {given}")
        if key == "std" and min(given) <= 0:
            raise ConfigError(f"data.std must be positive (each channel is divided by it), got {given}")
        out.append([float(v) for v in given] * (shape[0] if len(given) == 1 else 1))
    return out[0], out[1]


def _check_crop(padding: int, images: bool, shape: list):
    """A crop padding as large as the images crops mostly zeros, and pads every batch to (H + 2p) x (W + 2p)."""
    if not padding:
        return
    if not images:
        raise ConfigError(f"data.crop_padding crops images, but this dataset's inputs are vectors of shape {shape}; "
                          f"leave it 0")
    if padding >= min(shape[1:]):
        raise ConfigError(f"data.crop_padding must be smaller than the {shape[1]}x{shape[2]} images, got {padding}; "
                          f"use at most {min(shape[1:]) - 1} (4 is usual for 32x32 images)")


def load_data(cfg, prep: Optional[dict] = None) -> Data:
    """`prep`: a trained table model's preprocessing, applied to the data instead of learned from it."""
    if cfg.args and cfg.name not in TAKES_ARGS:   # not ignored: a typo'd dataset or a misplaced key would be silent
        raise ConfigError(f"dataset {cfg.name!r} takes no data.args (got {', '.join(map(str, cfg.args))}); leave "
                          f"them out (data.args are the options of dataset {', '.join(sorted(TAKES_ARGS))})")
    src = load_source(cfg, prep)
    return src if isinstance(src, Data) else from_source(src, cfg)   # an input kind's module makes its own Data


def tensor_images(x: torch.Tensor, what: str = "data") -> torch.Tensor:
    """Images as torchvision's ToTensor gives them, floats in [0, 1] shaped (N, C, H, W) with 1 or 3 channels, as
    the uint8 images nettrain keeps (exact for pixels that were 8-bit; predict reads floats the same way). The same
    images normalized to [-1, 1] (the tutorials' Normalize((0.5,)*C, (0.5,)*C)) are mapped back to their pixels,
    saying so: taken as feature vectors they trained silently without image layers' sizes or augmentation. Other
    floats are left as they are: vectors."""
    if not (x.is_floating_point() and x.ndim == 4 and x.shape[1] in (1, 3) and x.numel()):
        return x
    low, high = float(x.min()), float(x.max())
    if low >= 0 and high <= 1:
        return (x * 255).round().to(torch.uint8)
    if low >= -1 and high <= 1:
        print(f"nettrain: {what}'s inputs are {x.shape[1]}-channel images normalized to [-1, 1] (Normalize(0.5, 0.5)); "
              f"taken as those images, which nettrain normalizes by their own mean and std", file=sys.stderr)
        return ((x + 1) * 127.5).round().to(torch.uint8)
    return x


def _task(y: torch.Tensor, asked: str, what: str) -> str:
    """Classification for integer targets, regression for floats; but floats that are all whole numbers with few
    distinct values (torch.Tensor(labels) of class indices) are class labels, said in one line (data.task
    overrides)."""
    if asked == "regression":
        return "regression"
    if multi_hot(y) and asked in ("auto", "multilabel"):
        if asked == "auto":
            print(f"nettrain: {what}'s targets are 0/1 vectors of {y.shape[1]} labels: multi-label, each label a "
                  f"logit trained with BCEWithLogits (loss bce); for regression set data.task to regression",
                  file=sys.stderr)
        return "multilabel"
    if asked == "multilabel":
        raise DataError(f"{what}: data.task is multilabel, but the targets are not 0/1 vectors [examples, labels] "
                        f"of at least 2 labels; give float multi-hot targets (1.0 where a label applies)")
    if not y.is_floating_point():
        return "classification"
    whole = y.ndim == 1 and len(y) and bool((y == y.round()).all()) and float(y.min()) >= 0
    if asked == "classification":
        if not whole:
            raise DataError(f"{what}: data.task is classification, but the targets are not class indices 0, 1, 2, ... "
                            f"(floats with fractions, negative values, or several per input); give integer labels")
        return "classification"
    distinct = len(torch.unique(y)) if whole else 0
    if whole and distinct <= min(100, max(2, len(y) // 2)):
        print(f"nettrain: {what}'s targets are floats holding {distinct} distinct whole numbers "
              f"(0 to {int(y.max())}): taken as class labels; for regression set data.task to regression",
              file=sys.stderr)
        return "classification"
    return "regression"


def image_layout(x: torch.Tensor, what: str) -> torch.Tensor:
    """uint8 NHW, NHWC or NCHW images as NCHW (NHWC as a channels_last view, no copy). The layout is read from which
    dimension holds 1, 3 or 4 channels (4: RGBA, the alpha dropped as for image files); a shape where both or
    neither could is refused, naming it, rather than guessed (a 5-channel NHWC array once trained as 8 channels)."""
    if x.ndim == 3:
        return x.unsqueeze(1)                              # NHW -> N1HW
    channels = (1, 3, 4)
    nchw, nhwc = x.shape[1] in channels, x.shape[-1] in channels
    if nchw == nhwc:
        problem = "could be NCHW or NHWC" if nchw else "has no dimension of 1, 3 or 4 channels"
        raise DataError(f"{what}: uint8 images shaped {tuple(x.shape)}: the shape {problem}; give NHWC or NCHW "
                        f"images with 1 (gray), 3 (RGB) or 4 (RGBA) channels, e.g. x.permute(0, 3, 1, 2) for NCHW")
    if nhwc:
        x = x.permute(0, 3, 1, 2)                          # NHWC -> NCHW (a channels_last view)
    if x.shape[1] == 4:   # one copy, in the layout the batches gather from
        x = x[:, :3].contiguous(memory_format=torch.channels_last)
    return x


def check_finite(t: torch.Tensor, what: str):
    """Refuse NaN or infinite values when data is loaded (once, on the whole tensor: no per-step sync), rather
    than have the loss turn NaN and blame the learning rate."""
    if not t.is_floating_point():
        return
    bad = ~torch.isfinite(t)
    count = int(bad.sum())
    if count:
        first = tuple(int(i) for i in bad.nonzero()[0])
        raise DataError(f"{what} hold {count:,} NaN or infinite value{'s' * (count > 1)}, the first at index "
                        f"{list(first)}; remove those examples or replace the values (e.g. torch.nan_to_num)")


def from_user_data(train, test=None, classes=None, cfg=None, collate_fn=None) -> Data:
    """The user's own data for nettrain.fit: (x, y) arrays/tensors or a torch Dataset of (x, y), held in memory; or,
    with a `collate_fn`, a DataLoader, or inputs that are tuples/dicts of parts, batched as custom.py says."""
    if wants_custom(train, test, collate_fn):
        train_data, val_data, info, notes = custom_data(train, test, classes, collate_fn, cfg)
        # the user's val_data may choose the model (as for arrays); 20% of their Dataset held out is a test split
        return Data(train_data, val_data, val_data, info, notes, val_chooses=test is not None)
    if classes is None:   # a torchvision Dataset names its classes
        classes = class_names(train) if isinstance(train, torch.utils.data.Dataset) else None
    x, y = _to_arrays(train, "data")
    task = _task(y, cfg.task if cfg is not None else "auto", "data")
    images = x.dtype == torch.uint8 and x.ndim in (3, 4)
    kind = "image" if images else "vector"   # which kind a user's arrays are: where the name is decided
    train_data = _shaped(x, y, "data", images, task)
    test_data = None if test is None else _val_split(test, x, train_data, images, task)
    return from_source(Source(train_data, test_data, classes, task=task, kind=kind, test_is_val=test is not None),
                       cfg)


def _to_arrays(d, what: str):
    """The (inputs, targets) tensors of the user's `d`: a pair of arrays/tensors, or a torch Dataset of pairs."""
    if isinstance(d, torch.utils.data.Dataset) and not isinstance(d, tuple):
        d = _dataset_pair(d, what)
    if not (isinstance(d, (tuple, list)) and len(d) == 2):
        raise DataError(f"{what} must be (inputs, targets) arrays or tensors, or a torch Dataset")
    try:
        x, y = (torch.as_tensor(v) for v in d)
    except (TypeError, ValueError, RuntimeError) as e:
        raise DataError(f"{what}: cannot make tensors of the inputs and targets ({e}); give numbers as numpy "
                        f"arrays or torch tensors") from None
    if len(x) != len(y):
        raise DataError(f"{what}: {len(x)} inputs but {len(y)} targets; give one target per input")
    if x.ndim == 1:   # a model would take the whole column as one example's features
        raise DataError(f"{what}: the inputs have shape [{len(x)}], one number per example, where nettrain takes "
                        f"[examples, features]; give x.reshape(-1, 1) (shape [{len(x)}, 1]: one feature)")
    if not y.is_floating_point() and y.ndim != 1:
        raise DataError(f"{what}: integer targets are class labels, one per input, but they have shape "
                        f"{tuple(y.shape)}; for several values per input give float targets (regression)")
    for tensor, name in ((x, "inputs"), (y, "targets")):
        check_finite(tensor, f"{what}'s {name}")
    return tensor_images(x, what), y


def _dataset_pair(d, what: str):
    """A torch Dataset's items stacked into (inputs, targets) tensors."""
    items = [d[i] for i in range(len(d))]
    if not items:
        raise DataError(f"{what}: the Dataset is empty; give at least one example")
    if not isinstance(items[0], (tuple, list)):
        raise DataError(label_less(what, items[0]))
    try:
        xs, ys = zip(*items)
        return torch.stack([torch.as_tensor(x) for x in xs]), torch.stack([torch.as_tensor(y) for y in ys])
    except (TypeError, ValueError, RuntimeError) as e:   # strings, ragged shapes, None, not pairs
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        ragged = "stack expects each tensor to be equal size" in first
        fix = "give collate_fn= that makes a batch of them (e.g. pads each batch to its longest)" \
            if ragged else "return tensors from __getitem__"
        raise DataError(f"{what}: the Dataset's items must be (input, target) pairs of numbers of one "
                        f"shape, got {type(items[0]).__name__} items ({first}); {fix}") from None


def _shaped(x, y, what: str, images: bool, task: str) -> ArrayData:
    """The inputs in the layout and dtype the model takes, the targets in the dtype the task's loss takes."""
    if images:
        x = image_layout(x, what)
    elif x.is_floating_point() or x.dtype in (torch.uint8, torch.bool) or x.is_complex():
        x = x.float()
    # other integers are token ids: they stay integers (an embedding takes no floats)
    if task == "regression":
        return ArrayData(x, (y.unsqueeze(1) if y.ndim == 1 else y).float())
    return ArrayData(x, y.float() if task == "multilabel" else y.long())


def _val_split(test, x, train_data: ArrayData, images: bool, task: str) -> ArrayData:
    """The user's val_data, shaped as the training data `train_data` (made from inputs `x`), or the one-line reason
    it cannot be."""
    tx, ty = _to_arrays(test, "val_data")
    if (tx.dtype == torch.uint8) != (x.dtype == torch.uint8):
        raise DataError(f"val_data's inputs are {tx.dtype} but data's are {x.dtype}; give both as images (uint8, "
                        f"or ToTensor's floats in [0, 1]) or both as vectors")
    test_data = _shaped(tx, ty, "val_data", images, task)
    if test_data.x.dtype != train_data.x.dtype and not test_data.x.is_floating_point() and \
            not train_data.x.is_floating_point():   # token ids of another width: the training data's
        test_data = ArrayData(test_data.x.to(train_data.x.dtype), test_data.y)
    if test_data.x.dtype != train_data.x.dtype:   # token ids against features
        raise DataError(f"val_data's inputs are {tx.dtype} but data's are {x.dtype}; give both as integers "
                        f"(token ids) or both as floats")
    # checked now, not by a shape error in the model after a whole epoch of training
    for name, a, b in (("inputs", train_data.x, test_data.x), ("targets", train_data.y, test_data.y)):
        if a.shape[1:] != b.shape[1:]:
            raise DataError(f"val_data's {name} are shaped {tuple(b.shape[1:])} each but data's are "
                            f"{tuple(a.shape[1:])}; give both splits one shape (resize or reshape val_data)")
    return test_data


def make_batches(data, info: DataInfo, cfg, device, batch_size: int, *, train: bool, shuffle=False,
                 drop_last=False, seed=0, channels_last=True, rank=0, world_size=1, input_dtype=None):
    """`input_dtype`: the dtype the model takes its input in unchanged (see batches.py), or None for float32.
    `rank`/`world_size`: training batches are this rank's share of global batches of batch_size x world_size
    (batches.py); evaluation batches cover this rank's contiguous part of `data`, unpadded, so that the parts' sums
    count every example exactly once."""
    if world_size > 1 and not train:
        lo, hi = shard.part(len(data), rank, world_size)
        data = data.subset(slice(lo, hi)) if isinstance(data, (ArrayData, CustomData, TextData)) else \
            torch.utils.data.Subset(data, range(lo, hi))
        rank, world_size = 0, 1
    prep = BatchPrep(info, device, normalize=cfg.normalize, crop_padding=cfg.crop_padding if train else 0,
                     flip=cfg.flip and train, channels_last=channels_last,
                     alternate_flip=cfg.flip and train and cfg.alternate_flip)
    if isinstance(data, CustomData):
        return data.batches(device, batch_size, info.task, shuffle=shuffle, drop_last=drop_last, seed=seed,
                            workers=cfg.workers, rank=rank, world_size=world_size)
    if isinstance(data, TextData):
        return data.batches(device, batch_size, train=train, shuffle=shuffle, drop_last=drop_last, seed=seed,
                            bucket=bool(cfg.args.get("bucket")), rank=rank, world_size=world_size)
    if isinstance(data, ArrayData):
        return InMemoryBatches(data, prep, batch_size, train=train, shuffle=shuffle, drop_last=drop_last, seed=seed,
                               rank=rank, world_size=world_size, input_dtype=input_dtype)
    return LoaderBatches(data, prep, batch_size, train=train, shuffle=shuffle, drop_last=drop_last, seed=seed,
                         workers=cfg.workers, rank=rank, world_size=world_size)
