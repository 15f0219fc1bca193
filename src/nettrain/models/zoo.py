"""The built-in networks. Each builder takes the input shape ([C, H, W] or [D]) and the output count, plus
its own keyword arguments, and returns a plain `nn.Module` (mostly `nn.Sequential`, so a checkpoint's keys
are the same as those of the tutorial code that builds the same layers by hand).
"""
from __future__ import annotations

import inspect
import math

import torch
from torch import nn

from ..errors import ModelError
from ..catalog import MODELS as LISTED_MODELS
from ..registry import Registry

MODELS = Registry("model", LISTED_MODELS)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


MAX_SIZE = 2 ** 24          # one layer's width or a table's rows: 16,777,216, far above any model built here
MAX_LAYERS = 1000           # layers or blocks: each is a module of its own, built before its size is known
MAX_PARAMETERS = 10 ** 9    # 4 GB of float32 weights, 16 GB to train with Adam's gradients and two moments


def check_size(name: str, builder, shape, outputs: int, args: dict):
    """A built-in model's parameter count, from a build on the meta device (no memory), refused above
    MAX_PARAMETERS before anything of that size is allocated (hidden: [10000000000] would ask for 2.5 TB)."""
    if torch.get_default_device().type == "meta":   # being built there already: nothing will be allocated
        return
    try:
        with torch.device("meta"):
            probe = builder(shape, outputs, **args)
    except ModelError:
        raise
    except Exception:   # what the real build says, in its own words (check_fits, the user's model)
        return
    count = sum(t.numel() for t in probe.parameters())
    if count > MAX_PARAMETERS:
        given = ", ".join(f"{k}={v!r:.40}" for k, v in args.items()) or "its defaults"
        raise ModelError(f"model {name!r} with {given} would have {count:,} parameters, more than nettrain builds "
                         f"({MAX_PARAMETERS:,}: 4 GB of weights, 16 GB to train); give smaller sizes in "
                         f"--model.args")


def check_args(name: str, builder, args: dict):
    """A built-in model's arguments, checked against its defaults' kinds before anything is built: a size (an int
    default) must be a positive integer, sizes (a tuple of ints) a list of them, a number a number, a name a string;
    otherwise a string or -3 as a layer width ends in a torch traceback, and 0 builds a network that cannot learn."""
    params = inspect.signature(builder).parameters
    for key, value in args.items():
        default = params[key].default
        if _is_int(default):
            ok, wanted = _is_int(value) and value >= 1, "a positive integer"
        elif isinstance(default, tuple) and all(_is_int(d) for d in default):
            ok, wanted = isinstance(value, (list, tuple)) and all(_is_int(v) and v >= 1 for v in value), \
                "a list of positive integers, e.g. " + str(list(default))
            if key == "hidden":   # mlp: an int is one hidden layer's width; [] is a linear model
                ok = ok or (_is_int(value) and value >= 1)
            elif not value:   # the conv nets need at least one block
                ok = False
        elif isinstance(default, float):
            ok, wanted = isinstance(value, (int, float)) and not isinstance(value, bool), "a number"
        elif isinstance(default, str):
            ok, wanted = isinstance(value, str), "a string"
        else:
            continue
        if not ok:
            raise ModelError(f"model {name!r}: argument {key} must be {wanted}, got {value!r}; "
                             f"fix --model.args.{key}")
        if _is_int(default) or isinstance(default, tuple):
            _check_sizes(name, key, value)


def _check_sizes(name: str, key: str, value):
    """A size argument within MAX_SIZE, a count of layers within MAX_LAYERS (each layer is a module of its own)."""
    sizes = list(value) if isinstance(value, (list, tuple)) else [value]
    layers = len(sizes) if isinstance(value, (list, tuple)) else value if key == "layers" else 1
    if layers > MAX_LAYERS or any(v > MAX_SIZE for v in sizes if key != "layers"):
        shown = f"({len(sizes):,} sizes)" if len(sizes) > 8 else repr(value)
        raise ModelError(f"model {name!r}: argument {key} {shown} is beyond what nettrain builds (at most "
                         f"{MAX_LAYERS:,} layers, each at most {MAX_SIZE:,} wide); give smaller sizes in "
                         f"--model.args.{key}")


def _image_shape(name, shape) -> tuple:
    if len(shape) != 3:
        raise ModelError(f"model {name!r} needs images, but this dataset's inputs are vectors of shape {shape}; "
                         f"use --model mlp")
    return tuple(shape)


def _flat_size(layers: nn.Module, shape) -> int:
    """Features after `layers` for one input of `shape` (so the classifier adapts to any image size)."""
    with torch.no_grad():
        try:
            return layers(torch.zeros(1, *shape)).flatten(1).shape[1]
        except RuntimeError:
            return 0


def _too_small(name, shape, minimum) -> ModelError:
    return ModelError(f"model {name!r} needs images of at least {minimum}x{minimum}, this dataset's are "
                      f"{shape[1]}x{shape[2]}; set --data.image_size {minimum} (image folders) or use --model cnn")


@MODELS.register("tudui")
def tudui(shape, outputs):
    c, h, w = _image_shape("tudui", shape)
    features = nn.Sequential(nn.Conv2d(c, 32, 5, 1, 2), nn.MaxPool2d(2), nn.Conv2d(32, 32, 5, 1, 2), nn.MaxPool2d(2),
                             nn.Conv2d(32, 64, 5, 1, 2), nn.MaxPool2d(2))
    n = _flat_size(features, shape)
    if not n:
        raise _too_small("tudui", shape, 8)
    return nn.Sequential(*features, nn.Flatten(), nn.Linear(n, 64), nn.Linear(64, outputs))


class LeNet(nn.Module):
    """The official PyTorch CIFAR-10 tutorial's `Net` (same attribute names, so its state_dict matches)."""

    def __init__(self, shape, outputs):
        super().__init__()
        c = shape[0]
        self.conv1 = nn.Conv2d(c, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        n = _flat_size(nn.Sequential(self.conv1, nn.ReLU(), self.pool, self.conv2, nn.ReLU(), self.pool), shape)
        if not n:
            raise _too_small("lenet", shape, 16)
        self.fc1 = nn.Linear(n, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, outputs)

    def forward(self, x):
        x = self.pool(torch.relu(self.conv1(x)))
        x = self.pool(torch.relu(self.conv2(x)))
        x = torch.flatten(x, 1)
        x = torch.relu(self.fc1(x))
        x = torch.relu(self.fc2(x))
        return self.fc3(x)


@MODELS.register("lenet")
def lenet(shape, outputs):
    return LeNet(_image_shape("lenet", shape), outputs)


@MODELS.register("mlp")
def mlp(shape, outputs, hidden=(512, 128), dropout=0.0, activation="relu"):
    acts = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "gelu": nn.GELU}
    if activation not in acts:
        raise ModelError(f"mlp activation must be one of {', '.join(acts)}, got {activation!r}")
    if not 0 <= dropout < 1:
        raise ModelError(f"model 'mlp': argument dropout must be in [0, 1) (the share of units dropped), got "
                         f"{dropout!r}; fix --model.args.dropout")
    if isinstance(hidden, int):
        hidden = [hidden]
    sizes = [math.prod(shape)] + list(hidden)   # not a tensor: the model also builds on the meta device
    layers = [nn.Flatten()]
    for a, b in zip(sizes, sizes[1:]):
        layers += [nn.Linear(a, b), acts[activation]()]
        if dropout:
            layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(sizes[-1], outputs))
    return nn.Sequential(*layers)


def conv_bn(cin, cout):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


@MODELS.register("cnn")
def cnn(shape, outputs, width=32):
    c, h, w = _image_shape("cnn", shape)
    return nn.Sequential(conv_bn(c, width), nn.MaxPool2d(2), conv_bn(width, 2 * width), nn.MaxPool2d(2),
                         conv_bn(2 * width, 4 * width), nn.AdaptiveMaxPool2d(1), nn.Flatten(),
                         nn.Linear(4 * width, outputs))


@MODELS.register("resnet18")
def resnet18(shape, outputs):
    import torchvision   # imported here: it costs ~1.5 s of start-up that the other models do not need
    c, h, w = _image_shape("resnet18", shape)
    net = torchvision.models.resnet18(num_classes=outputs)
    net.conv1 = nn.Conv2d(c, 64, 3, 1, 1, bias=False)   # small images: keep the resolution
    net.maxpool = nn.Identity()
    return net
