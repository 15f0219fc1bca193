"""--sync-batchnorm (train.sync_batchnorm): BatchNorm layers that normalize by the statistics of the whole global
batch, all processes together, instead of each process's share (torch.nn.SyncBatchNorm, an all-reduce per layer per
step). It matters when a process's share is small (a few images a GPU), where per-share statistics are noisy.

The layers are swapped in place for SyncBatchNorm layers holding the same parameter and buffer tensors, so the
optimizer, EMA and checkpoints see the same names and values: a checkpoint holds plain BatchNorm weights (a
state_dict has no layer classes) and loads into the built model at any world size. In one process there is nothing
to synchronize and nothing is swapped. torch 2.14's SyncBatchNorm refuses CPU tensors in training (its forward
raises for any device but CUDA, HPU, XPU or a PrivateUse1 backend), so several CPU processes are refused up front.
"""
from __future__ import annotations

import sys

import torch
from torch import nn

from ..errors import ConfigError


def supported(device: torch.device) -> bool:
    """Can torch's SyncBatchNorm train on this device (the list its forward checks)?"""
    return device.type in ("cuda", "hpu", "xpu", torch._C._get_privateuse1_backend_name())


def convert(module: nn.Module, world_size: int, device: torch.device) -> nn.Module:
    """`module` with its BatchNorm layers synchronized across `world_size` processes (itself in one process)."""
    if world_size == 1:
        return module
    if not supported(device):
        raise ConfigError(f"train.sync_batchnorm needs GPUs: torch's SyncBatchNorm does not train on the {device.type} "
                          f"({world_size} processes here); leave out --sync-batchnorm (each process then normalizes "
                          f"by its own share of the batch)")
    if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules()):
        print(f"nettrain: train.sync_batchnorm: {type(module).__name__} has no BatchNorm layer; nothing is "
              f"synchronized", file=sys.stderr)
        return module
    return nn.SyncBatchNorm.convert_sync_batchnorm(module)
