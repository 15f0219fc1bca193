"""In-memory datasets: one tensor of inputs, one of targets, and what a model needs to know about them.

Images are kept as uint8 NCHW tensors (a quarter of float32's memory; converted a whole batch at a time).
Feature vectors (the toy tasks) are float32 (N, D). `DataInfo` is the plain description of a dataset that
travels into model building, checkpoints and prediction: shapes, classes, normalization. A dataset's reader returns
a `Source` (its splits as read), which data/__init__.py makes into the `Data` the rest of nettrain takes.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Optional

import numpy as np
import torch

from ..errors import DataError

# What data/ and engine/ treat apart among the kinds (DataInfo.kind), read here, below kinds/; each kind's module
# says the same (Kind.images, Kind.record_fields), and tests/test_layers.py checks that they agree.
IMAGE_KINDS = ("image",)      # uint8 images (N, C, H, W): normalized per channel, cropped and flipped in batches
TOKEN_ID_KINDS = ("vector",)  # integer inputs are token ids, kept integers, their dtype recorded (DataInfo.dtype)


@dataclass
class DataInfo:
    kind: str                       # "image" (uint8 N,C,H,W), "vector" (N,D), "table" (N,D; table.py) or "custom"
    shape: list                     # one input's shape: [C, H, W] or [D]; [] for custom (not fixed)
    task: str = "classification"    # or "regression"
    classes: Optional[list] = None  # class names (classification)
    outputs: int = 1                # model outputs: the class count, or the regression target width
    mean: list = field(default_factory=list)  # per channel, in [0, 1] units (images)
    std: list = field(default_factory=list)
    image_size: Optional[int] = None  # files given to predict are resized to this (image folders)
    dtype: Optional[str] = None     # vectors of integers (token ids) stay this torch dtype, e.g. "int64"; None: float32
    collate: Optional[str] = None   # custom: the user's collate function as module:qualname; None: torch's default
    table: Optional[dict] = None    # table: its preprocessing, plain data (data/table.py)
    vocab: Optional[list] = None    # text: the tokens, <pad> and <unk> first (data/text.py); shape is [len(vocab)]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "DataInfo":
        return cls(**d)


@dataclass
class Data:
    train: object
    val: Optional[object]     # validated on after each epoch (the test split unless val_fraction > 0)
    test: Optional[object]
    info: DataInfo
    notes: list = field(default_factory=list)   # lines fit says before training (how the user's DataLoader is used)
    val_chooses: bool = False  # val is a validation split, which may choose the model; the test split never does


@dataclass
class Source:
    """What a dataset's reader returns (data/sources.py): train and test data plus labels."""
    train: object                   # ArrayData, or a torch Dataset of (uint8 CHW, label) for big folders
    test: Optional[object]          # None: nettrain holds out part of train
    classes: Optional[list] = None
    task: str = "classification"
    kind: str = "image"
    image_size: Optional[int] = None
    table: Optional[dict] = None    # a table's preprocessing (data/table.py)
    test_is_val: bool = False       # `test` is a validation split (a val/ folder, val_data=): it may choose the model


@dataclass
class ArrayData:
    """Inputs `x` and targets `y` held in memory as tensors."""
    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, index) -> "ArrayData":
        return ArrayData(self.x[index], self.y[index])


EXAMPLE_ROWS = 8   # examples in the batch a model is checked on before training (a user's item reads cost little)


def example_rows(n: int) -> torch.Tensor:
    """EXAMPLE_ROWS row indices spread evenly over `n` examples (all of them when fewer), in order."""
    return torch.linspace(0, n - 1, min(EXAMPLE_ROWS, n)).round().long().unique()


def images_from_numpy(images: np.ndarray, labels: np.ndarray, source: str) -> ArrayData:
    """uint8 NHWC / NHW images and integer labels -> ArrayData (NCHW uint8, int64), validated."""
    images, labels = np.asarray(images), np.asarray(labels)
    if not images.flags.writeable:   # torch.from_numpy warns on read-only buffers (np.frombuffer)
        images = images.copy()
    if images.dtype != np.uint8:
        raise DataError(f"{source}: images must be uint8 (0-255), got {images.dtype}; "
                        "convert with (x * 255).round().astype(np.uint8) if they are floats in [0, 1]")
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3, 4):
        raise DataError(f"{source}: images must be NHWC with 1, 3 or 4 channels, or NHW, got shape {images.shape}")
    if labels.ndim != 1 or len(labels) != len(images):
        raise DataError(f"{source}: labels must be one integer per image, got shape {labels.shape} "
                        f"for {len(images)} images")
    if labels.dtype.kind not in "iu":
        raise DataError(f"{source}: labels must be integers (class indices), got {labels.dtype}")
    if len(labels) and labels.min() < 0:
        raise DataError(f"{source}: labels must be class indices >= 0, found {labels.min()}")
    # an NCHW view of the NHWC pixels, channels_last in memory as the models run: no copy here or per batch
    x = torch.from_numpy(np.ascontiguousarray(images[..., :3])).permute(0, 3, 1, 2)
    return ArrayData(x, torch.from_numpy(labels.astype(np.int64)))


def channel_stats(x: torch.Tensor) -> tuple:
    """Per-channel mean and std of uint8 NCHW images, in [0, 1] units (computed on at most 10,000)."""
    sample = x[:10000].contiguous().float().div_(255)   # NCHW: the sums' order, so the stats, do not depend on layout
    return sample.mean(dim=(0, 2, 3)).tolist(), sample.std(dim=(0, 2, 3)).clamp_min(1e-3).tolist()


def split(data: ArrayData, fraction: float, seed: int) -> tuple:
    """(rest, held_out): a seeded random `fraction` of `data` held out."""
    if not 0 < fraction < 1:
        raise DataError(f"a split fraction must be between 0 and 1, got {fraction}")
    n_out = max(1, int(round(len(data) * fraction)))
    perm = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
    return data.subset(perm[n_out:]), data.subset(perm[:n_out])


def class_list(labels: list, names: Optional[list]) -> list:
    """The class names for integer `labels` (tensors of class indices): `names` as given, or "0", "1", ... up to
    the largest label; a negative label, or one past the names given, is named in one line."""
    low = min((int(t.min()) for t in labels if len(t)), default=0)
    top = max((int(t.max()) for t in labels if len(t)), default=0) + 1
    if low < 0:
        raise DataError(f"labels must be class indices 0, 1, 2, ..., found {low}")
    if names is None:
        return [str(c) for c in range(top)]
    if top > len(names):
        raise DataError(f"a label is {top - 1} but only {len(names)} classes are named; give one class name per "
                        f"label value")
    return list(names)


def multi_hot(y: torch.Tensor) -> bool:
    """Are the targets multi-label: float vectors [examples, labels] (2 or more labels) of 0s and 1s only?"""
    return y.is_floating_point() and y.ndim == 2 and y.shape[1] >= 2 and len(y) > 0 and \
        bool(((y == 0) | (y == 1)).all())
