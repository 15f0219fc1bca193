"""Images: uint8 N x C x H x W in memory, normalized per channel on the device (data/batches.py). Predict reads files,
PIL images and arrays in either layout and converts channels and size as training's reader did; an exported graph
takes uint8 N x H x W x C, as a user has images."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..data.images import read_image
from ..errors import DataError
from .base import Kind
from .evidence import examples, predictions


class Image(Kind):
    name = "image"
    unit = "img"
    model = "cnn"
    images = True
    input_names = ["images"]
    reads = "files"

    def evidence(self, predictor, test) -> dict:   # with the test images to show (shown_*, top_*)
        x, y = examples(test)
        return predictions(predictor, x, y, images=x)

    def batch(self, info, inputs) -> torch.Tensor:
        if isinstance(inputs, (np.ndarray, torch.Tensor)):
            return image_array(info, inputs)
        if not isinstance(inputs, (list, tuple)):
            inputs = [inputs]
        if not inputs:
            raise DataError("nothing to predict: give at least one image (a file, a folder's files, or an array)")
        c, h, _ = info.shape
        parts = []
        for item in inputs:
            if isinstance(item, (str, Path)):
                item = read_image(item, c, h)
            elif hasattr(item, "convert") and hasattr(item, "size"):   # a PIL image
                item = np.asarray(item.convert("L" if c == 1 else "RGB"))
            elif not isinstance(item, (np.ndarray, torch.Tensor, list, tuple)):   # None, a number, a dict, ...
                raise DataError(f"cannot predict on a {type(item).__name__}; give image file paths, PIL images, "
                                f"uint8 numpy arrays or tensors")
            parts.append(image_array(info, item))
        return torch.cat(parts)

    def input_spec(self, info) -> dict:
        c, h, w = info.shape
        return {"name": "images", "dtype": "uint8", "shape": [None, h, w, c], "layout": "NHWC",
                "what": f"uint8 images N x {h} x {w} x {c} (height, width, channels), pixels 0-255"}

    def preprocessing(self, info, cfg) -> dict:
        c, h, w = info.shape
        mean, std = normalization(info, cfg)
        return {"kind": "image", "channels": c, "height": h, "width": w, "mean": mean, "std": std,
                "in_graph": "NHWC uint8 -> NCHW float32, (x / 255 - mean) / std" +
                            (", flattened to C*H*W" if cfg.model.flatten else ""),
                "resize": "bilinear to height x width (done by the reader: nettrain predict model.onnx FILES)"}

    def graph_prep(self, info, cfg) -> nn.Module:
        return ImagePrep(*normalization(info, cfg))

    def held_out(self, test, info, n: int):
        return test.x[:n].permute(0, 2, 3, 1).contiguous()   # NCHW uint8 -> the NHWC pixels a user has

    def reference(self, predictor, x):
        return predictor.predict(x.numpy())   # NHWC, as numpy arrays are read


def normalization(info, cfg) -> tuple:
    """The per-channel mean and std (in [0, 1] units) the model's inputs were normalized with."""
    c = info.shape[0]
    return (list(info.mean), list(info.std)) if cfg.data.normalize else ([0.0] * c, [1.0] * c)


class ImagePrep(nn.Module):
    """uint8 NHWC -> normalized float32 NCHW, in BatchPrep's arithmetic exactly: (x - 255 mean) * (1 / (255 std))."""

    def __init__(self, mean: list, std: list):
        super().__init__()
        mean, std = torch.tensor(mean, dtype=torch.float32), torch.tensor(std, dtype=torch.float32)
        self.register_buffer("shift", (mean * 255).view(1, -1, 1, 1))
        self.register_buffer("scale", (1 / (std * 255)).view(1, -1, 1, 1))

    def forward(self, x):
        # contiguous NCHW, as training fed the model: the NHWC -> NCHW permute alone leaves channels_last strides,
        # on which the tutorials' `x.view(-1, 16 * 5 * 5)` raises while the graph is traced
        return ((x.permute(0, 3, 1, 2).to(torch.float32) - self.shift) * self.scale).contiguous()


def image_array(info, a) -> torch.Tensor:
    """One image or a batch (numpy/PIL: HW, HWC, NHWC; torch: CHW, NCHW; uint8 or floats in [0, 1]) as the model's
    uint8 N x C x H x W: channels and size converted as training's reader does."""
    c, h, w = info.shape
    if not isinstance(a, torch.Tensor):
        a = np.asarray(a)
        if a.dtype.kind not in "biuf":   # nested lists of strings or None: numpy makes objects, torch fails
            raise DataError(f"images must be numbers (uint8, or floats in [0, 1]), got an array of {a.dtype}")
        if not a.flags.writeable:   # PIL's and read_image's arrays: torch warns on read-only buffers
            a = a.copy()
    t = torch.as_tensor(a) if not isinstance(a, torch.Tensor) else a
    if t.is_floating_point():   # ToTensor convention: floats in [0, 1]
        t = (t.clamp(0, 1) * 255).round().to(torch.uint8)
    if t.dtype != torch.uint8:
        raise DataError(f"images must be uint8 arrays/tensors or floats in [0, 1], got {t.dtype}")
    numpy_layout = not isinstance(a, torch.Tensor)   # numpy/PIL are HWC, torch tensors CHW
    if t.ndim == 2:
        t = t[None, None]
    elif t.ndim == 3:
        if numpy_layout and t.shape[-1] in (1, 3, 4):
            t = t.permute(2, 0, 1)[None]        # one HWC image
        elif not numpy_layout and t.shape[0] in (1, 3, 4):
            t = t[None]                          # one CHW image
        else:
            t = t[:, None]                       # a batch of gray NHW images
    elif t.ndim == 4 and numpy_layout:
        t = t.permute(0, 3, 1, 2)
    if t.ndim != 4:
        raise DataError(f"cannot read images of shape {tuple(t.shape)}; give HW, HWC, NHWC (numpy) or CHW, NCHW "
                        f"(torch)")
    if t.shape[1] == 4:
        t = t[:, :3]
    if t.shape[1] != c:   # gray <-> RGB, like PIL's convert
        t = t.expand(-1, 3, -1, -1) if c == 3 else \
            (t.float() * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True).round().byte()
    if tuple(t.shape[2:]) != (h, w):
        t = torch.nn.functional.interpolate(t.float(), size=(h, w), mode="bilinear", antialias=True,
                                            align_corners=False).round().clamp(0, 255).byte()
    return t.contiguous()
