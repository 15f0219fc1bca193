"""Reading image files: one file -> uint8 CHW tensor in the model's channels and size.

Used by image folders (decoded once, then cached) and by `predict`. Grayscale, palette, RGBA
and CMYK files are all converted with Pillow's own `convert`, so every mode ends in 1 or 3 channels.
"""
from __future__ import annotations

import contextlib
import itertools
import os
import re
import stat
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..errors import DataError, printable
from ..files import LIMITS, FileError, open_read

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff")


def is_image_file(path) -> bool:
    return str(path).lower().endswith(IMAGE_EXTENSIONS)


def read_image(path, channels: int = 3, size=None) -> np.ndarray:
    """The file's pixels as uint8 HWC with `channels` channels, resized to `size` x `size` if given.
    Raises DataError naming the file when it cannot be read."""
    try:
        if not stat.S_ISREG(mode := os.stat(path).st_mode):
            # opening a FIFO blocks until a writer comes, and a device never ends
            kind = "a folder" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else \
                "a socket" if stat.S_ISSOCK(mode) else "a device"
            raise DataError(f"cannot read image {printable(path)}: it is {kind}, not a regular file; give image files")
        with open_read(path, LIMITS["image"], "image") as f, Image.open(f) as im:
            im = im.convert("L" if channels == 1 else "RGB")
            if size and im.size != (size, size):
                im = im.resize((size, size), Image.BILINEAR)
            arr = np.array(im, dtype=np.uint8)   # a writable copy (torch warns on read-only buffers)
    except Image.DecompressionBombError as e:   # decoding would take gigabytes: refused from the header alone
        pixels, limit = (int(n) for n in re.findall(r"\d+", str(e))[:2])
        raise DataError(f"cannot read image {printable(path)}: {pixels:,} pixels, more than the {limit:,} Pillow "
                        f"decodes (2x PIL.Image.MAX_IMAGE_PIXELS, against decompression bombs); shrink it first") \
            from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        reason = "not an image Pillow can read" if isinstance(e, UnidentifiedImageError) else \
            (e.strerror if isinstance(e, OSError) and e.strerror else str(e))
        raise DataError(f"cannot read image {printable(path)}: {printable(reason)}") from None
    except FileError as e:   # replaced by a FIFO since the check, or past LIMITS["image"]: this file's error
        raise DataError(str(e)) from None
    return arr[..., None] if arr.ndim == 2 else arr


def image_size_of(path):
    """(width, height) from the header only, or None if unreadable."""
    try:
        with open_read(path, LIMITS["image"], "image") as f, Image.open(f) as im:
            return im.size
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError, FileError):
        return None


PROBE = 32                    # files decoded one after another before choosing between a loop and threads
THREADS_FROM_SECONDS = 1e-3   # per file: below this, decoding is mostly Python and threads only contend for the GIL


def read_many(paths, channels: int, size: int, progress=None):
    """Decode `paths`: small files in a plain loop, large ones in parallel threads. Pillow releases the GIL while it
    decodes, but a 32x32 JPEG is mostly Python (~120 us), and 4 threads on 2 cores took twice as long as a loop;
    500x375 JPEGs resized to 224 decode 1.7x faster in threads. The first files, timed, decide.
    Returns (uint8 NCHW tensor of the readable ones, their indices, errors as messages)."""
    def one(p):
        try:
            return read_image(p, channels, size)
        except DataError as e:
            return e
    paths = list(paths)
    results = [one(p) for p in paths[:1]]   # the first file pays one-time costs (plugins, caches): not timed
    start = time.perf_counter()
    results += [one(p) for p in paths[1:PROBE]]
    per_file = (time.perf_counter() - start) / max(1, len(results) - 1)
    rest = paths[PROBE:]
    threads = bool(rest) and per_file >= THREADS_FROM_SECONDS
    images, keep, errors = [], [], []
    with ThreadPoolExecutor(min(8, (os.cpu_count() or 1) * 2)) if threads else contextlib.nullcontext() as pool:
        for i, result in enumerate(itertools.chain(results, pool.map(one, rest, chunksize=16) if threads
                                                   else map(one, rest))):
            if isinstance(result, DataError):
                errors.append(str(result))
            else:
                images.append(result)
                keep.append(i)
            if progress is not None:
                progress.update(1)
    if not images:
        return torch.empty(0, channels, size, size, dtype=torch.uint8), keep, errors
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2)   # channels_last in memory
    return x, keep, errors
