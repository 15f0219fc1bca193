"""`fastnet`: a small, wide BatchNorm conv net for CIFAR-sized images, built for time-to-accuracy.

The design follows the published CIFAR-10 speed-run ideas (Page's "How to train your ResNet", Keller Jordan's
airbench write-ups), written here from those descriptions:

* a first 2x2 convolution whose filters whiten image patches: initialised from the data
  (`init_from_data`, called by nettrain before training) as the eigenvectors of the patch covariance scaled by
  1/sqrt(eigenvalue), each filter with its negation, and then frozen (only its bias trains);
* three blocks of conv 3x3 -> max-pool 2 -> BatchNorm -> GELU -> conv 3x3 -> BatchNorm -> GELU;
* BatchNorm without a trained scale, whose shift learns `bias_boost` times faster (the shift is stored
  divided by sqrt(bias_boost) and multiplied back in the forward pass, which for SGD is the same as a
  separate parameter group with that lr multiplier and the same absolute weight decay);
* 3x3 convolutions initialised as identity (Dirac) on their first input channels;
* global max-pool, a linear head without bias, logits scaled down by `scale`.

Everything is a plain `nn.Module`; the state_dict is ordinary tensors, so checkpoints load with `nettrain.load`.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ModelError
from .zoo import MODELS


class ShiftNorm(nn.BatchNorm2d):
    """BatchNorm with a fixed unit scale and a trained shift whose effective learning rate is `boost` times
    the optimizer's (see the module docstring)."""

    def __init__(self, channels: int, momentum: float = 0.4, eps: float = 1e-12, boost: float = 64.0):
        super().__init__(channels, eps=eps, momentum=momentum, affine=False)
        self.gain = math.sqrt(boost)
        self.shift = nn.Parameter(torch.zeros(channels))

    def forward(self, x):
        bias = self.shift * self.gain
        return F.batch_norm(x, self.running_mean, self.running_var, None, bias, self.training, self.momentum,
                            self.eps)


def _conv(cin: int, cout: int) -> nn.Conv2d:
    conv = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
    with torch.no_grad():
        nn.init.dirac_(conv.weight[:min(cin, cout)])
    return conv


class Block(nn.Module):
    def __init__(self, cin: int, cout: int, bn_momentum: float, bias_boost: float):
        super().__init__()
        self.conv1 = _conv(cin, cout)
        self.norm1 = ShiftNorm(cout, bn_momentum, boost=bias_boost)
        self.conv2 = _conv(cout, cout)
        self.norm2 = ShiftNorm(cout, bn_momentum, boost=bias_boost)

    def forward(self, x):
        x = F.gelu(self.norm1(F.max_pool2d(self.conv1(x), 2)))
        return F.gelu(self.norm2(self.conv2(x)))


class FastNet(nn.Module):
    def __init__(self, shape, outputs: int, widths=(64, 256, 256), whiten_kernel: int = 2, bn_momentum: float = 0.4,
                 bias_boost: float = 64.0, scale: float = 1 / 9, whiten_eps: float = 5e-4):
        super().__init__()
        c, h, w = shape
        if min(h, w) < whiten_kernel - 1 + 2 ** len(widths):
            raise ModelError(f"model 'fastnet' needs images of at least {whiten_kernel - 1 + 2 ** len(widths)} pixels "
                             f"a side for {len(widths)} blocks, these are {h}x{w}; give fewer widths")
        k = whiten_kernel
        self.whiten = nn.Conv2d(c, 2 * c * k * k, k, padding=0, bias=True)
        self.whiten.weight.requires_grad_(False)   # set from the data, then frozen
        self.whiten_eps = whiten_eps
        blocks, cin = [], 2 * c * k * k
        for width in widths:
            blocks.append(Block(cin, width, bn_momentum, bias_boost))
            cin = width
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(cin, outputs, bias=False)
        self.scale = scale

    @torch.no_grad()
    def init_from_data(self, x: torch.Tensor):
        """Whitening filters from a batch of (normalized) training images: eigenvectors of the covariance of
        all k x k patches, scaled by 1/sqrt(eigenvalue + eps), each paired with its negation."""
        w = self.whiten.weight
        c, k = w.shape[1], w.shape[2]
        x = x.float().contiguous()
        patches = x.unfold(2, k, 1).unfold(3, k, 1)                     # n, c, h', w', k, k
        patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, c * k * k).double()
        cov = patches.T @ patches / len(patches)
        values, vectors = torch.linalg.eigh(cov)                         # ascending
        values, vectors = values.flip(0), vectors.flip(1)
        filters = (vectors.T / torch.sqrt(values.clamp_min(0) + self.whiten_eps)[:, None]).reshape(-1, c, k, k)
        w.copy_(torch.cat([filters, -filters]).to(w.dtype))
        self.whiten.bias.zero_()

    def forward(self, x):
        x = F.gelu(self.whiten(x))
        x = self.blocks(x)
        x = torch.amax(x, dim=(2, 3))
        return self.head(x) * self.scale


@MODELS.register("fastnet")
def fastnet(shape, outputs, widths=(64, 256, 256), whiten_kernel=2, bn_momentum=0.4, bias_boost=64.0, scale=1 / 9):
    if len(shape) != 3:
        raise ModelError(f"model 'fastnet' needs images, but this dataset's inputs are vectors of shape {shape}; "
                         f"use --model mlp")
    return FastNet(shape, outputs, tuple(widths), whiten_kernel, bn_momentum, bias_boost, scale)


@MODELS.register("fastcnn")
def fastcnn(shape, outputs, widths=(32, 64, 128)):
    """conv -> max-pool -> BN -> ReLU per block (pooling first: BN and ReLU see a quarter of the pixels), the last
    block without pooling, then global max-pool and a linear layer. An nn.Sequential."""
    if len(shape) != 3:
        raise ModelError(f"model 'fastcnn' needs images, but this dataset's inputs are vectors of shape {shape}; "
                         f"use --model mlp")
    c, h, w = shape
    if min(h, w) < 2 ** (len(widths) - 1):
        raise ModelError(f"model 'fastcnn' needs images of at least {2 ** (len(widths) - 1)} pixels a side for "
                         f"{len(widths)} blocks, these are {h}x{w}; give fewer widths")
    layers, cin = [], c
    for i, width in enumerate(widths):
        layers.append(nn.Conv2d(cin, width, 3, padding=1, bias=False))
        if i < len(widths) - 1:
            layers.append(nn.MaxPool2d(2))
        layers += [nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
        cin = width
    return nn.Sequential(*layers, nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(cin, outputs))
