"""Image folders: ROOT/train/<class>/* and ROOT/val/ or ROOT/test/ (or only train/, split with a seed).

A folder whose decoded pixels fit in memory is decoded once, in parallel threads, and cached beside the data
(`ROOT/.nettrain-cache/`, or ~/.cache/nettrain when ROOT is read-only). The cache key covers every file's
name, size and mtime plus the image size and channels, so any change rebuilds it; a cache that does not
load or does not match is rebuilt, never trusted. Larger folders are read by a DataLoader with workers.
Unreadable files are skipped with a warning that names them.
"""
from __future__ import annotations

import collections
import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from ..files import LIMITS, FileError, make_dir, open_read, write_file
from .arrays import ArrayData, Source
from .images import image_size_of, is_image_file, read_image, read_many

CACHE_VERSION = 2   # 2: pixels kept NHWC, the models' channels_last layout (1 was NCHW)
IN_MEMORY_LIMIT = 4 << 30   # decoded bytes above which "auto" keeps the DataLoader path
LARGE_IMAGES = 512          # side length (pixels) from which a folder trained at its own size gets a warning


def scan(root: Path) -> tuple:
    """(classes, {split: [(path, label), ...]}) for the splits present."""
    train = root / "train"
    if not train.is_dir():
        raise DataError(f"{root} has no train/ folder; an image folder is ROOT/train/<class>/<image files> "
                        f"(and optionally ROOT/val/ or ROOT/test/ laid out the same way)")
    classes = sorted(d.name for d in train.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise DataError(f"{train} has no class folders; put each class's images in train/<class name>/")
    splits = {}
    for split in ("train", "val", "test"):
        if not (root / split).is_dir():
            continue
        items = []
        for label, name in enumerate(classes):
            folder = root / split / name
            if folder.is_dir():
                items += [(str(p), label) for p in sorted(folder.rglob("*")) if p.is_file() and is_image_file(p)]
        extra = sorted(d.name for d in (root / split).iterdir() if d.is_dir() and d.name not in classes
                       and not d.name.startswith("."))
        if extra:
            raise DataError(f"{root / split} has class folders that train/ lacks: {', '.join(extra)}; "
                            f"every class needs training images")
        splits[split] = items
    if not splits["train"]:
        raise DataError(f"no image files (png, jpg, jpeg, bmp, webp) under {train}")
    empty = sorted(set(classes) - {classes[label] for _, label in splits["train"]})
    if empty:   # it would be a class the model can never learn
        raise DataError(f"class folders with no image files in {train}: {', '.join(empty)}; add their images or "
                        f"remove the folders")
    return classes, splits


def common_size(items) -> int:
    """The most common side length among a sample of files (non-square: the shorter side)."""
    step = max(1, len(items) // 200)
    sizes = [s for s in (image_size_of(p) for p, _ in items[::step]) if s]
    if not sizes:
        raise DataError("none of the sampled image files could be read; check the folder's files")
    return collections.Counter(min(s) for s in sizes).most_common(1)[0][0]


class FolderDataset(torch.utils.data.Dataset):
    """The DataLoader path: files decoded in workers, one at a time, to uint8 CHW."""

    def __init__(self, items, channels, size):
        self.items, self.channels, self.size = items, channels, size
        self.unreadable = set()

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        # An unreadable file is skipped with a warning (once per worker), and the next readable file stands in
        # for it, so one bad file does not stop a long run part-way through an epoch.
        for j in range(len(self.items)):
            path, label = self.items[(i + j) % len(self.items)]
            if path in self.unreadable:
                continue
            try:
                return torch.from_numpy(read_image(path, self.channels, self.size)).permute(2, 0, 1), label
            except DataError as e:
                self.unreadable.add(path)
                print(f"warning: skipped {e}", file=sys.stderr)
        raise DataError(f"none of the {len(self.items)} image files could be read; check the folder's files")


def _cache_dir(root: Path) -> Path:
    """.nettrain-cache in the image folder when it is a real folder there (a link planted in its place is not
    followed) that this process may write; else the user's own cache folder."""
    d = root.resolve() / ".nettrain-cache"   # links on the way to the folder the user named are the user's own
    try:
        if os.access(make_dir(d, root=d.parent), os.W_OK):
            return d
    except FileError:
        pass
    return make_dir(Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "nettrain")


def _cache_key(root: Path, items, channels, size) -> str:
    h = hashlib.sha256(json.dumps([CACHE_VERSION, str(root.resolve()), channels, size]).encode())
    for path, label in items:
        st = os.stat(path)
        h.update(f"{path}\0{label}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:20]


def _decode_cached(root: Path, split: str, items, channels: int, size: int) -> ArrayData:
    path = _cache_dir(root) / f"{split}-{_cache_key(root, items, channels, size)}.npz"
    try:
        with open_read(path, LIMITS["npz"], "image cache") as f:
            z = np.load(f, allow_pickle=False)
            x, y, errors = z["images"], z["labels"], [str(e) for e in z["errors"]]
        if x.shape[1:] != (size, size, channels) or len(x) + len(errors) != len(items) or len(y) != len(x):
            raise ValueError("cache does not match the folder")
        x, y = torch.from_numpy(x).permute(0, 3, 1, 2), torch.from_numpy(y)   # NHWC memory: no copy for training
    except Exception:   # absent, stale, truncated or corrupt: decode the files again
        progress = None
        if sys.stderr.isatty():
            from tqdm import tqdm
            progress = tqdm(total=len(items), desc=f"decoding {split} images", unit="img", leave=False)
        x, keep, errors = read_many([p for p, _ in items], channels, size, progress)
        if progress is not None:
            progress.close()
        y = torch.tensor([items[i][1] for i in keep], dtype=torch.int64)
        arrays = {"images": x.permute(0, 2, 3, 1).numpy(), "labels": y.numpy(), "errors": np.array(errors, dtype=str)}
        # a temporary of its own, renamed when whole: two runs may decode one folder at once, and a half-written
        # cache is never picked up
        write_file(path, lambda f: np.savez(f, **arrays), root=path.parent)
    for e in errors[:5]:
        print(f"warning: skipped {e}", file=sys.stderr)
    if len(errors) > 5:
        print(f"warning: skipped {len(errors) - 5} more unreadable images in {root / split}", file=sys.stderr)
    if len(y) == 0:
        raise DataError(f"no readable images in {root / split}")
    return ArrayData(x, y)


def load_image_folder(cfg, root: Path) -> Source:
    classes, splits = scan(root)
    channels = cfg.channels or 3
    if channels not in (1, 3):
        raise DataError(f"data.channels must be 1 (grayscale) or 3 (RGB), got {channels}")
    size = cfg.image_size or common_size(splits["train"])
    if not cfg.image_size and size > LARGE_IMAGES:   # camera photos: a model trained at full size is very slow
        print(f"warning: the images in {root / 'train'} are {size}x{size} (their most common size); training at that "
              f"size is slow: --image-size 224 (or another) resizes them", file=sys.stderr)
    test_split = "val" if splits.get("val") else "test" if splits.get("test") else None
    n = sum(len(v) for v in splits.values())
    in_memory = cfg.in_memory == "yes" or (cfg.in_memory == "auto" and n * channels * size * size < IN_MEMORY_LIMIT)
    if in_memory:
        train = _decode_cached(root, "train", splits["train"], channels, size)
        test = _decode_cached(root, test_split, splits[test_split], channels, size) if test_split else None
    else:
        train = FolderDataset(splits["train"], channels, size)
        test = FolderDataset(splits[test_split], channels, size) if test_split else None
    return Source(train, test, classes, image_size=size, test_is_val=test_split == "val")
