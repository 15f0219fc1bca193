"""Batches for the training loop, from memory (the fast path) or from a torch DataLoader (data too big).

Both yield (x, y) ready for the model: on the device, augmented (training only), float and normalized,
channels_last for images. The in-memory path slices a seeded permutation of uint8 tensors that already sit
on the device; the order and augmentation of epoch `e` depend only on (seed, e), so a resumed run sees the
same batches as an uninterrupted one. `rank`/`world_size` shard each epoch's permutation for DDP: `batch_size` is
then one rank's share of a global batch of batch_size x world_size, and rank r takes the r-th contiguous slice of each
global batch, so that a seed and a global batch give the same sequence of global batches at any world size.

When the model computes exactly the same from inputs rounded to the autocast dtype (wiring._input_dtype checks), the
in-memory images of large batches are normalized and rounded once, up front, and a batch is then a single gather:
no conversion or arithmetic per batch, half float32's bytes, and no cast of the input in the step.
"""
from __future__ import annotations

import torch

from .arrays import IMAGE_KINDS, ArrayData, DataInfo
from . import shard
from .augment import apply, draw

CHUNK_BYTES = 1 << 22   # the in-memory path prepares about this much float input at a time (L2-sized)
ROUNDED_MIN_BATCH = 1 << 19   # float32 bytes of a batch from which images are stored rounded (InMemoryBatches)
ROUNDED_MAX_BYTES = 1 << 30   # largest normalized, rounded copy of a split kept (2 bytes a value against uint8's 1)


def take(x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """x[rows] in x's memory layout, by index_select: several times faster than indexing with a tensor."""
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last):   # gather whole NHWC images
        return x.permute(0, 2, 3, 1).index_select(0, rows).permute(0, 3, 1, 2)
    return x.index_select(0, rows)


class BatchPrep:
    """uint8 batch -> augmented, normalized float batch on the device (vectors pass through)."""

    def __init__(self, info: DataInfo, device, *, normalize=True, crop_padding=0, flip=False, channels_last=True,
                 alternate_flip=False):
        self.image = info.kind in IMAGE_KINDS
        self.device = torch.device(device)
        self.crop_padding, self.flip, self.alternate_flip = crop_padding, flip, alternate_flip
        self.channels_last = channels_last and self.image
        if self.image:
            mean = torch.tensor(info.mean if normalize else [0.0] * info.shape[0])
            std = torch.tensor(info.std if normalize else [1.0] * info.shape[0])
            # (x/255 - mean)/std as one subtract and one multiply on the uint8 values
            self.shift = (mean * 255).view(1, -1, 1, 1).to(self.device)
            self.scale = (1 / (std * 255)).view(1, -1, 1, 1).to(self.device)
            self._per_pixel = {}

    @property
    def memory_format(self):
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def _stats(self, x):
        """shift and scale repeated over every pixel, in x's memory layout: broadcast per channel over a
        channels_last batch, they would vary along its innermost dimension (3 wide) and defeat vectorization."""
        layout = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
        key = (tuple(x.shape[1:]), layout)
        if key not in self._per_pixel:
            self._per_pixel[key] = tuple(t.expand(1, *key[0]).contiguous(memory_format=layout)
                                         for t in (self.shift, self.scale))
        return self._per_pixel[key]

    def __call__(self, x, y, train: bool, generator=None, sizes=None, flips=None, rank=0, world_size=1,
                 strided=False):
        """`sizes`: x holds consecutive batches of these sizes, each augmented with the random numbers it would
        draw on its own (default: one batch). `flips`: which images to mirror (instead of coins). `rank`,
        `world_size`: each batch is that rank's slice of a global batch (`strided`: DistributedSampler's), augmented
        as in one process (augment.draw)."""
        x = x.to(self.device, non_blocking=True)
        y = y.to(self.device, non_blocking=True)
        if not self.image:
            return x, y
        if train and (self.crop_padding or self.flip):
            params = self.draw(sizes or [len(x)], generator, flips is not None, rank, world_size, strided)
            if self.flip and flips is not None:
                params["flip"] = flips.to(x.device)
            x = apply(x, self.crop_padding, params)
        if not x.is_floating_point():   # uint8 (images stored rounded are normalized already)
            x = self.normalize(x)
        return x.contiguous(memory_format=self.memory_format), y   # no copy when x came in the model's layout

    def draw(self, sizes, generator, flips_given=False, rank=0, world_size=1, strided=False) -> dict:
        """The augmentation's random numbers for batches of `sizes` (see __call__)."""
        return draw(sizes, self.crop_padding, self.flip and not flips_given, generator, self.device, rank, world_size,
                    strided)

    def skip(self, sizes, train: bool, generator, flips_given=False, rank=0, world_size=1, strided=False):
        """Draw the random numbers that __call__ would for batches of `sizes`, and nothing else: batches already
        trained before a stop are skipped, and the batches after them get the numbers they got in one go."""
        if self.image and train and (self.crop_padding or self.flip):
            self.draw(sizes, generator, flips_given, rank, world_size, strided)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 images -> (x/255 - mean)/std in float32, in x's memory layout."""
        x = x.to(torch.float32, copy=True)   # keeps x's layout; then in place on the copy: fewer passes
        shift, scale = self._stats(x)
        return x.sub_(shift).mul_(scale)

    def rounded(self, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """All of `x` normalized and rounded once to `dtype` (float32 arithmetic, as per batch), made in pieces so
        that no float32 copy of the whole of it exists."""
        out = torch.empty(x.shape, dtype=dtype, device=x.device, memory_format=self.memory_format)
        step = max(1, CHUNK_BYTES // (4 * max(1, x[0].numel())))
        for i in range(0, len(x), step):
            out[i:i + step] = self.normalize(x[i:i + step])
        return out


class InMemoryBatches:
    def __init__(self, data: ArrayData, prep: BatchPrep, batch_size: int, *, train: bool, shuffle=False,
                 drop_last=False, seed=0, rank=0, world_size=1, input_dtype=None):
        device = prep.device
        self.x, self.y = data.x.to(device), data.y.to(device)   # resident on the GPU when there is one
        if prep.image:   # stored in the model's layout (the loaders' NHWC memory is channels_last): no copy per batch
            self.x = self.x.contiguous(memory_format=prep.memory_format)
        # batches are gathered and prepared a chunk of several at a time (one pass of each op instead of one per
        # batch: small batches are otherwise bound by per-op overhead), then sliced
        batch_bytes = 4 * max(1, self.x.numel() // max(1, len(self.x))) * batch_size   # in float32
        self.per_chunk = max(1, CHUNK_BYTES // batch_bytes)
        # Normalized and rounded up front when the model takes `input_dtype` (flips and the gathers move whole
        # values, so they commute with the rounding; the crop's zero padding is a uint8 zero: not then), and then
        # gathered one batch at a time: several a chunk, a rounded chunk lived across several steps, and in the
        # training loop the allocator often gave each new chunk fresh pages (500 page faults for 2 MB: 3.5 ms
        # against 0.2 at batch 16, the data wait 1.4% -> 2-5%). Small batches keep the float path's chunks: their
        # own gathers cost more per image in per-op overhead (batch 16, one gather a batch: wait 2.8-3.0% against
        # 1.6-2.2%).
        if prep.image and input_dtype is not None and not prep.crop_padding and batch_bytes >= ROUNDED_MIN_BATCH \
                and self.x.numel() * input_dtype.itemsize <= ROUNDED_MAX_BYTES:
            self.x = prep.rounded(self.x, input_dtype)
            self.per_chunk = 1
        self.prep, self.batch_size, self.train = prep, batch_size, train
        self.shuffle, self.drop_last, self.seed = shuffle, drop_last, seed
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self.flip_base = None   # alternating flip: image i is mirrored in epoch e iff flip_base[i] != (e odd)
        if train and prep.image and prep.flip and prep.alternate_flip:
            g = torch.Generator(device=device).manual_seed(seed * 1_000_003 + 999_999_937)
            self.flip_base = torch.rand(len(self.y), generator=g, device=device) < 0.5

    def set_epoch(self, epoch: int):
        self.epoch = epoch

    @property
    def num_samples(self) -> int:
        """This rank's examples an epoch: its share of each full global batch, and of the last, partial one (unless
        drop_last) as much of it as divides evenly among the ranks: every rank then steps as often, on equal shares,
        and at most world_size - 1 examples of an epoch (a different few each epoch when shuffled) are left out."""
        if self.world_size == 1:
            return len(self.y)
        full, rest = divmod(len(self.y), self.batch_size * self.world_size)
        return full * self.batch_size + (0 if self.drop_last else rest // self.world_size)

    def __len__(self) -> int:
        n = self.num_samples
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _generator(self):
        g = torch.Generator(device=self.prep.device)
        g.manual_seed(self.seed * 1_000_003 + self.epoch)
        return g

    def __iter__(self):
        return self.iterate(0)

    def iterate(self, start: int = 0):
        """The epoch's batches from batch `start` on (a resume in the middle of an epoch): the same permutation and
        random numbers, indexed from the position; the chunks before it are neither gathered nor prepared."""
        g = self._generator()
        n = len(self.y)
        order = torch.randperm(n, generator=g, device=g.device) if self.shuffle else None
        if self.world_size > 1:   # this rank's contiguous slice of each global batch
            order = self._mine(order if order is not None else torch.arange(n, device=self.prep.device))
        return self._batches(g, order, start)

    def _batches(self, g, order, start: int):
        bs, n_batches, per_chunk = self.batch_size, len(self), self.per_chunk
        for first in range(0, n_batches, per_chunk):
            last = min(first + per_chunk, n_batches)
            sizes = [min((i + 1) * bs, self.num_samples) - i * bs for i in range(first, last)]
            if last <= start:   # trained before the stop: only its random numbers are drawn, in their turn
                self.prep.skip(sizes, self.train, g, self.flip_base is not None, self.rank, self.world_size)
                continue
            lo, hi = first * bs, first * bs + sum(sizes)
            rows = slice(lo, hi) if order is None else order[lo:hi]   # a slice is a view: no gather when unshuffled
            flips = None if self.flip_base is None else self.flip_base[rows] ^ bool(self.epoch % 2)
            x, y = (self.x[rows], self.y[rows]) if order is None else (take(self.x, rows), take(self.y, rows))
            x, y = self.prep(x, y, self.train, g, sizes, flips, self.rank, self.world_size)
            pairs = zip(x.split(sizes), y.split(sizes))   # views, made in one call each
            yield from (pairs if first >= start else list(pairs)[start - first:])


    def _mine(self, order: torch.Tensor) -> torch.Tensor:
        """This rank's examples of an epoch's `order`, in its order: slice r of each global batch."""
        b, w, r = self.batch_size, self.world_size, self.rank
        full = len(order) // (b * w)
        share = (self.num_samples - full * b)   # of the last, partial global batch
        last = order[full * b * w:][r * share:(r + 1) * share]
        return torch.cat([order[:full * b * w].view(full, w, b)[:, r].reshape(-1), last])


class LoaderBatches:
    """A torch DataLoader of uint8 batches (workers decode files), prepared like the in-memory path."""

    def __init__(self, dataset, prep: BatchPrep, batch_size: int, *, train: bool, shuffle=False, drop_last=False,
                 seed=0, workers=0, rank=0, world_size=1):
        self.dataset, self.prep, self.train, self.seed = dataset, prep, train, seed
        self.batch_size, self.drop_last = batch_size, drop_last
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self._generator = torch.Generator()   # the workers' seeds
        # torch's DistributedSampler, reseeded by set_epoch, at every world size: the epoch order and global
        # batches of the in-memory path at any number of processes (shard.py)
        self.sampler = shard.sampler(dataset, rank, world_size, shuffle, seed)
        self.loader = torch.utils.data.DataLoader(
            dataset, batch_size=batch_size, sampler=self.sampler, drop_last=drop_last, num_workers=workers,
            pin_memory=prep.device.type == "cuda", persistent_workers=workers > 0, generator=self._generator)

    @property
    def num_samples(self) -> int:
        return len(self.sampler)

    def set_epoch(self, epoch: int):
        self.epoch = epoch
        self._generator.manual_seed(self.seed * 1_000_003 + epoch)
        self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        return self.iterate(0)

    def iterate(self, start: int = 0):
        """The epoch's batches from batch `start` on (a resume in the middle of an epoch). The DataLoader's first
        `start` batches are loaded and discarded (iterate-and-discard: its workers' random numbers and their turns
        stay those of the uninterrupted epoch; a skip by sampler position would shift them), unprepared: only the
        augmentation's random numbers are drawn for them. Eager: the loader is started and skipped on the call."""
        g = torch.Generator(device=self.prep.device).manual_seed(self.seed * 1_000_003 + self.epoch + 7)
        it = iter(self.loader)
        for _ in range(start):
            x, _y = next(it)
            self.prep.skip([len(x)], self.train, g, rank=self.rank, world_size=self.world_size, strided=True)
        return (self.prep(x, y, self.train, g, rank=self.rank, world_size=self.world_size, strided=True)
                for x, y in it)
