"""Which examples a process takes when several train together (torchrun + DDP), for the data paths that are not
in memory: a DataLoader over a Dataset (big image folders, the user's Dataset with or without a collate function)
and texts. Rank and world size are arguments: data never asks the process group.

Every path cuts one epoch's order into the same global batches at any world size: the order is
torch.randperm(n, Generator().manual_seed(seed * 1_000_003 + epoch)) (the in-memory path's, tests/test_data.py),
and a global batch of `batch x world_size` consecutive positions of it is split among the ranks. Of the last,
partial global batch, what does not divide evenly (at most world_size - 1 examples) is left out, so that every rank
steps as often on an equal share (DDP's mean of the ranks' mean gradients is the global batch's mean only then).
"""
from __future__ import annotations

import torch
from torch.utils.data import DistributedSampler


def sampler(dataset, rank: int, world_size: int, shuffle: bool, seed: int) -> DistributedSampler:
    """torch's DistributedSampler over `dataset` with the epoch order above, at every world size (world size 1
    included: one process then visits the order a rank's slices add up to). It strides: rank r takes positions
    r, r + w, r + 2w, ... of the order, so its k-th batch of `batch` holds positions of [k*batch*w, (k+1)*batch*w),
    the k-th global batch. drop_last leaves out the at most w - 1 examples that do not divide evenly, where its
    default would repeat some."""
    return DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=shuffle,
                              seed=seed * 1_000_003, drop_last=True)


def part(n: int, rank: int, world_size: int) -> tuple:
    """This rank's contiguous part [lo, hi) of n examples to evaluate: every example in exactly one part, none
    repeated to even them out (evaluation's sums are added up once at the end, so uneven parts cannot hang)."""
    return n * rank // world_size, n * (rank + 1) // world_size


def global_share(rows: torch.Tensor, batch: int, rank: int, world_size: int) -> torch.Tensor:
    """This rank's contiguous slice of one global batch `rows` (batch x world_size of them, or fewer for the last):
    `batch` each, or, of a partial one, as many as divide evenly (possibly none)."""
    share = batch if len(rows) == batch * world_size else len(rows) // world_size
    return rows[rank * share:(rank + 1) * share]


__all__ = ["sampler", "part", "global_share"]
