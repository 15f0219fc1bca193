"""The datasets nettrain knows by name. Each builder returns a `Source`: train and test data plus labels.

Files are read from torchvision's own layouts under the data directory (`MNIST/raw/*.gz`,
`cifar-10-batches-py/`, ...); `--download` asks torchvision's own downloader, and nothing is downloaded
unless asked. Everything here fits in memory and is returned as uint8 tensors.
"""
from __future__ import annotations

import gzip
import io
import os
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..errors import DataError, NettrainError
from ..files import LIMITS, is_regular, open_read, read_bytes
from ..catalog import DATASETS as LISTED_DATASETS
from ..registry import Registry
from .arrays import ArrayData, Source, images_from_numpy, split

DATASETS = Registry("dataset", LISTED_DATASETS)
READS_NO_FILES = {"digits": "bundled with scikit-learn", "quadratic": "generated", "two-gaussians": "generated"}


def _download_failed(name: str, where: Path, e: Exception) -> DataError:
    lines = [line.strip() for line in str(e).splitlines() if line.strip()] or [""]
    reason = lines[-1][:200]   # torchvision's message has a line per mirror tried: the last one's error
    return DataError(f"downloading {name} into {where} failed ({type(e).__name__}: {reason}); check the network "
                     f"connection, or put the files there yourself")


def _missing(name: str, root: Path, expected: str, download_hint=True) -> DataError:
    hint = " or add --download to fetch it" if download_hint else ""
    return DataError(f"{name} not found in {root} (looked for {expected}); "
                     f"point --data-dir at the folder that holds it{hint}")


# ---- bundled and toy data --------------------------------------------------------------------------

@DATASETS.register("digits")
def digits(cfg, root):
    from sklearn.datasets import load_digits
    d = load_digits()
    images = np.round(d.images * (255 / 16)).astype(np.uint8)   # 0-16 gray levels -> 0-255
    data = images_from_numpy(images, d.target, "digits")
    train, test = split(data, 0.2, cfg.split_seed)
    return Source(train, test, [str(c) for c in range(10)])


@DATASETS.register("quadratic")
def quadratic(cfg, root):
    def draw(seed):
        g = torch.Generator().manual_seed(seed)
        x = torch.linspace(-1, 1, 100).unsqueeze(1)
        return ArrayData(x, x.pow(2) + 0.2 * torch.rand(x.shape, generator=g))
    return Source(draw(cfg.split_seed), draw(cfg.split_seed + 1), None, task="regression", kind="vector")


@DATASETS.register("two-gaussians")
def two_gaussians(cfg, root):
    def draw(seed):
        g = torch.Generator().manual_seed(seed)
        centre = torch.ones(100, 2)
        x = torch.cat([torch.normal(2 * centre, 1, generator=g), torch.normal(-2 * centre, 1, generator=g)])
        y = torch.cat([torch.zeros(100, dtype=torch.long), torch.ones(100, dtype=torch.long)])
        return ArrayData(x, y)
    return Source(draw(cfg.split_seed), draw(cfg.split_seed + 1), ["0", "1"], kind="vector")


# ---- torchvision's datasets ------------------------------------------------------------------------

def _read_idx(path: Path) -> np.ndarray:
    """An IDX file (MNIST's format), gzipped or not, as a numpy array (unpacked to at most LIMITS["idx"] bytes)."""
    b = read_bytes(path, LIMITS["idx"], "IDX file")
    if path.suffix == ".gz":
        b = _gunzip(b, path)
    if len(b) < 4 or b[0] != 0 or b[1] != 0 or b[2] != 8:
        raise DataError(f"{path} is not an IDX file of bytes; replace it with the original download")
    nd = b[3]
    dims = tuple(int(v) for v in np.frombuffer(b, ">u4", nd, 4))
    data = np.frombuffer(b, np.uint8, offset=4 + 4 * nd)
    if data.size != int(np.prod(dims)):
        raise DataError(f"{path} is truncated ({data.size} of {int(np.prod(dims))} values); download it again")
    return data.reshape(dims)


def _gunzip(packed: bytes, path: Path) -> bytes:
    """The unpacked bytes of gzipped `packed`, refused past LIMITS["idx"]: a few MiB of gzip can unpack to
    gigabytes."""
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(packed)) as unpacked:
            b = unpacked.read(LIMITS["idx"] + 1)
    except (OSError, EOFError) as e:   # gzip.BadGzipFile is an OSError
        raise DataError(f"{path} is not a readable gzip file ({e}); replace it with the original download") from None
    if len(b) > LIMITS["idx"]:
        raise DataError(f"{path} unpacks to more than the {LIMITS['idx'] >> 30} GiB an IDX file may have; replace it "
                        f"with the original download")
    return b


def _mnist_like(cfg, root: Path, folder: str, tv_class: str, classes: list) -> Source:
    raw = root / folder / "raw"
    def find(stem):
        for name in (stem + ".gz", stem):
            if (raw / name).exists():
                return raw / name
        return None
    stems = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    if any(find(s) is None for s in stems) and cfg.download:
        import torchvision
        try:
            getattr(torchvision.datasets, tv_class)(str(root), train=True, download=True)
        except (RuntimeError, OSError) as e:   # no network, a mirror down, a full disk
            raise _download_failed(tv_class, root / folder / "raw", e) from None
    paths = [find(s) for s in stems]
    if any(p is None for p in paths):
        raise _missing(tv_class, root, f"{folder}/raw/{stems[0]}.gz and the other IDX files")
    xtr, ytr, xte, yte = (_read_idx(p) for p in paths)
    return Source(images_from_numpy(xtr, ytr, folder), images_from_numpy(xte, yte, folder), classes)


@DATASETS.register("mnist")
def mnist(cfg, root):
    return _mnist_like(cfg, root, "MNIST", "MNIST", [str(c) for c in range(10)])


@DATASETS.register("fashion-mnist")
def fashion_mnist(cfg, root):
    classes = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
               "Ankle boot"]
    return _mnist_like(cfg, root, "FashionMNIST", "FashionMNIST", classes)


def _cifar(cfg, root: Path, tv_class: str, folder: str) -> Source:
    import torchvision
    cls = getattr(torchvision.datasets, tv_class)
    if not (root / folder).exists() and not cfg.download:
        raise _missing(tv_class, root, f"{folder}/ or cifar10/train.npz" if folder.startswith("cifar-10-")
                       else f"{folder}/")
    _check_regular(root / folder)
    try:
        tr = cls(str(root), train=True, download=cfg.download)
        te = cls(str(root), train=False, download=cfg.download)
    except OSError as e:   # the download itself: no network, a server down, a full disk
        raise _download_failed(tv_class, root / folder, e) from None
    except RuntimeError as e:   # torchvision: "Dataset not found or corrupted"
        raise DataError(f"{tv_class} in {root / folder} is unusable ({e}); download it again with --download") from None
    return Source(images_from_numpy(tr.data, np.array(tr.targets), folder),
                  images_from_numpy(te.data, np.array(te.targets), folder), list(tr.classes))


def _check_regular(folder: Path):
    """torchvision opens the files of `folder` itself (to checksum them, then unpickle them): each is checked to be
    a regular file first, so that a FIFO there is one line, not a hang (the checksums then refuse any other file)."""
    for f in sorted(folder.iterdir()) if folder.is_dir() else ():
        if not f.is_dir() and not is_regular(f):
            raise DataError(f"{f} is not a regular file (a FIFO, a device or a broken link); replace {folder} with "
                            f"the original download")


@DATASETS.register("cifar10")
def cifar10(cfg, root):
    staged = root / "cifar10"
    if (staged / "train.npz").exists() and not (root / "cifar-10-batches-py").exists():
        return npz_folder(staged, "cifar10")
    if staged.is_dir() and (staged / "build.py").exists() and not (root / "cifar-10-batches-py").exists():
        raise DataError(f"CIFAR-10 in {staged} is a JPEG pack that has not been built yet; "
                        f"run: python {staged / 'build.py'}")
    return _cifar(cfg, root, "CIFAR10", "cifar-10-batches-py")


@DATASETS.register("cifar100")
def cifar100(cfg, root):
    return _cifar(cfg, root, "CIFAR100", "cifar-100-python")


# ---- the user's own data ---------------------------------------------------------------------------

def _load_npz(path: Path, name: str):
    import zipfile
    try:
        with open_read(path, LIMITS["npz"], "npz file") as f:
            if not zipfile.is_zipfile(f):   # np.load would try to unpickle it and blame pickles
                raise DataError(f"{path} is not a readable npz file (not a zip archive); "
                                f"write it with np.savez(path, images=uint8_array, labels=int_array)")
            z = np.load(f, allow_pickle=False)
            missing = [k for k in ("images", "labels") if k not in z.files]
            if missing:
                raise DataError(f"{path} has no {' or '.join(repr(m) for m in missing)} array (it has: "
                                f"{', '.join(z.files) or 'nothing'}); save it with np.savez(path, images=..., "
                                f"labels=...)")
            classes = [str(c) for c in z["classes"]] if "classes" in z.files else None
            data = images_from_numpy(z["images"], z["labels"], str(path))
        if len(data) == 0:
            raise DataError(f"{path} holds no examples (its 'images' array is empty); save at least one image")
        return data, classes
    except NettrainError:   # DataError, and files.py's FileError: a FIFO, a folder, a file past the limit
        raise
    except Exception as e:  # zipfile.BadZipFile, ValueError (pickled objects), OSError, ...
        raise DataError(f"{path} is not a readable npz file ({type(e).__name__}: {e}); "
                        f"write it with np.savez(path, images=uint8_array, labels=int_array)") from None


def npz_folder(root: Path, name="npz") -> Source:
    train_path, test_path = root / "train.npz", root / "test.npz"
    if not train_path.exists():
        raise DataError(f"no train.npz in {root}; an array dataset is a folder with train.npz (and optionally "
                        f"test.npz) holding 'images' (uint8 NHWC or NHW), 'labels' and optionally 'classes'")
    train, classes = _load_npz(train_path, name)
    test = None
    if test_path.exists():
        test, test_classes = _load_npz(test_path, name)
        classes = classes or test_classes
        if test.x.shape[1:] != train.x.shape[1:]:
            raise DataError(f"{test_path} images are {tuple(test.x.shape[1:])} but train's are "
                            f"{tuple(train.x.shape[1:])}; both splits need one image shape")
    top = int(max(train.y.max(), test.y.max() if test is not None else 0)) + 1
    if classes is None:
        classes = [str(c) for c in range(top)]
    elif top > len(classes):
        raise DataError(f"{root}: a label is {top - 1} but only {len(classes)} classes are named; "
                        f"fix 'labels' or 'classes'")
    return Source(train, test, classes)


@DATASETS.register("npz")
def npz(cfg, root):
    return npz_folder(root)


@DATASETS.register("imagefolder")
def imagefolder(cfg, root):
    from .folder import load_image_folder
    return load_image_folder(cfg, root)


def data_root(cfg) -> Path:
    """The data directory: --data-dir, else $NETTRAIN_DATA, else ./data."""
    return Path(cfg.dir or os.environ.get("NETTRAIN_DATA") or "data").expanduser()


def load_source(cfg, prep: Optional[dict] = None) -> Source:
    """`prep`: a trained table model's preprocessing, applied instead of learned again (data/table.py)."""
    builder = DATASETS.get(cfg.name)
    root = data_root(cfg)
    if cfg.name in ("npz", "imagefolder") and not root.is_dir():
        raise DataError(f"data directory {root} does not exist; give the folder of your data with --data-dir")
    if cfg.name != "csv" and (cfg.target is not None or cfg.task != "auto"):   # not silently ignored
        raise DataError(f"data.target and data.task choose the column to predict in --dataset csv; {cfg.name} has "
                        f"its own targets: leave them out")
    return builder(cfg, root) if prep is None else builder(cfg, root, prep=prep)
