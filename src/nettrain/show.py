"""`nettrain show`: a labelled grid of training samples as a PNG (the tutorials' `imshow(make_grid(images))`), or
for texts and tables a summary printed in the terminal.

    nettrain show --dataset cifar10 --data-dir DATA                         # show-cifar10.png, its path printed
    nettrain show --dataset cifar10 --data.crop_padding 4 --data.flip true --augmented --out aug.png
    nettrain show --dataset text --data-dir sms_spam.csv --n 10             # splits, classes, lengths, padding, texts
    nettrain show --dataset iris                                             # splits, classes, columns, rows

The samples are the first batch epoch 1 would draw (the run's seed and shuffle), gathered by the very batches
training uses (data/batches.py): with `--augmented` through its augmentation (data/augment.py: the config's crop and
flips), without it as stored. The batches are asked for unnormalized, so their floats are the pixels / 255 and go
back to the uint8 images exactly. Texts, tables and vectors are described in words by their kind (kinds/text.py,
kinds/table.py, kinds/vector.py: Kind.describe).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch

from .files import write_bytes
from .errors import ConfigError, DataError, printable
from .kinds import kind_of

MAX_SAMPLES = 256   # 32 rows of 8: a taller page is no longer looked at as one picture

# what shows a dataset that is not images, by its kind (data.DataInfo.kind)
INSTEAD = {
    "custom": "a Dataset with your collate_fn has no fixed images to draw",
}


@dataclass
class Samples:
    images: np.ndarray   # uint8 N x H x W x C, as the batch holds them (augmented or not)
    labels: np.ndarray   # class indices
    classes: list
    augmentation: str    # what was applied, in words ("" when none)


def default_out(dataset: str, augmented: bool) -> Path:
    """The PNG's name in the current folder when --out is not given."""
    return Path(f"show-{dataset}{'-augmented' if augmented else ''}.png")


def samples(cfg, n: int = 64, augmented: bool = False, data=None) -> Samples:
    """The first `n` examples of epoch 1's first training batch (the config's seed and shuffle), as uint8 images."""
    from .data import load_data, make_batches
    data = data if data is not None else load_data(cfg.data)
    info = data.info
    if not kind_of(info).images:
        raise DataError(f"nettrain show draws images, but dataset {cfg.data.name!r} holds {info.kind} data; "
                        f"{INSTEAD.get(info.kind, 'it has no images to draw')}")
    d = cfg.data
    steps = ([f"random crop with {d.crop_padding} px zero padding"] if d.crop_padding else []) + \
        ([f"{'alternating' if d.alternate_flip else 'random'} horizontal flip"] if d.flip else [])
    if augmented and not steps:
        raise ConfigError("--augmented shows the training-time augmentation, but this config has none; give it, "
                          "e.g. --data.crop_padding 4 --data.flip true, or leave --augmented out")
    unnormalized = cfg.override({"data.normalize": False}).data   # batches of pixels / 255: exact back to uint8
    batches = make_batches(data.train, info, unnormalized, "cpu", n, train=augmented, shuffle=cfg.train.shuffle,
                           seed=cfg.train.seed, channels_last=False)
    batches.set_epoch(1)
    x, y = next(iter(batches))
    images = (x.float() * 255).round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()
    return Samples(images.numpy(), y.numpy(), list(info.classes or []), ", ".join(steps) if augmented else "")


def draw(s: Samples, dataset: str) -> bytes:
    """The grid as PNG bytes: each image over its class name (report/figures.py's montage, headless Agg)."""
    from .report.figures import _image_grid, _name, png
    titles = [_name(s.classes[k] if k < len(s.classes) else k, 16) for k in s.labels.tolist()]
    how = f"after the training-time augmentation ({s.augmentation})" if s.augmentation else "as stored, not augmented"
    fig = _image_grid(s.images, titles, np.zeros(len(titles), dtype=bool),
                      f"{len(titles)} training samples of {dataset}, {how}", colour="black")
    return png(fig)


def show(config=None, *, n: Optional[int] = None, augmented: bool = False, out: Optional[str] = None,
         overwrite: bool = False, **options) -> Union[Path, str]:
    """`nettrain show`: draw the grid of `n` training samples into `out` (default: show-DATASET.png here), which
    must not exist unless `overwrite`; returns the path. For texts and tables: returns their summary with `n` sample
    rows (Kind.describe), and writes nothing. `n`: default 64 images, 10 texts or rows. `config`/`options`: as fit
    takes them (dataset, data_dir, data.crop_padding, ...)."""
    from .api import resolve_config
    from .data import load_data
    if n is not None and not 1 <= n <= MAX_SAMPLES:
        raise ConfigError(f"--n must be between 1 and {MAX_SAMPLES} (the samples drawn), got {n}")
    cfg = resolve_config(config, options)
    if out is not None:   # before the data is read: the user's file is never replaced
        _check_out(Path(out), overwrite)
    data = load_data(cfg.data)
    summary = kind_of(data.info).describe(data, cfg, n or 10)
    if summary is not None:
        if out is not None or augmented:
            raise ConfigError(f"dataset {cfg.data.name!r} holds {data.info.kind} data, which nettrain show describes "
                              f"in the terminal: --out and --augmented are for image datasets; leave them out")
        return summary
    path = Path(out) if out is not None else default_out(cfg.data.name, augmented)
    _check_out(path, overwrite)
    image = draw(samples(cfg, n or 64, augmented, data), cfg.data.name)
    write_bytes(path, image)
    return path


def _check_out(path: Path, overwrite: bool):
    """The grid's file: a .png, not a folder, and not an existing file unless `overwrite`."""
    if path.suffix.lower() != ".png":
        raise ConfigError(f"--out {printable(path)} must name a .png file (the grid is a PNG image)")
    if path.is_dir():
        raise ConfigError(f"--out {printable(path)} is a folder; give a file name such as {printable(path / 'show.png')}")
    if path.exists() and not overwrite:
        raise ConfigError(f"{printable(path)} already exists; add --overwrite to replace it, or give another --out")
