"""Where and in what precision the model runs: `--device` and `--precision` resolved once, up front.

auto device: CUDA, then MPS, then CPU. auto precision: bf16 autocast where the hardware computes bf16
natively (Ampere+ GPUs; CPUs with AVX-512 BF16 / AMX, ~4x fp32 matmul here), fp16 with a gradient scaler
on older GPUs, fp32 elsewhere and for the tiny vector models, where casts cost more than they save.

Under bf16 autocast on the CPU, small linear layers run in float32 (`Precision.small_linears_in_float32`): each
bf16 matrix product pays a fixed oneDNN cost and casts of the weight and of its gradient, which below about eight
million multiply-adds (rows x in x out) take longer than the float32 product itself. Measured here, forward and
backward together (`benchmarks/small_linears.py`): the tutorial CNN's 16 x 1024 -> 64 layer 162 us in float32
against 282 us in bf16, and 256 x 784 -> 256 the other way, 1,590 against 1,099 us. `train.small_linears_fp32 false`
keeps autocast as it is (the cifar10-fast recipe does: it was tuned with its head in bf16).
"""
from __future__ import annotations

import contextlib
import functools
import threading
from dataclasses import dataclass

import torch

from ..data.arrays import IMAGE_KINDS
from ..errors import ConfigError


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}; choose auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name!r} asked for, but CUDA is not available here; use --device cpu or auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"device {name!r} does not exist: this machine has {torch.cuda.device_count()} "
                              f"GPU(s), cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError("device 'mps' asked for, but MPS is not available here; use --device cpu or auto")
    if device.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"unsupported device {name!r}; choose auto, cpu, cuda, cuda:N or mps")
    return device


def bf16_supported(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool(getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()) or \
            bool(getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)())
    return False


@dataclass
class Precision:
    name: str                 # "32", "bf16-mixed" or "16-mixed"
    device: torch.device
    small_linears_fp32: bool = True   # train.small_linears_fp32: see small_linears_in_float32

    @property
    def dtype(self):
        return {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(self.name)

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    @contextlib.contextmanager
    def small_linears_in_float32(self, *modules, enabled: bool = True, below: int = None):
        """Within the block, every nn.Linear of `modules` whose product (rows x in x out) is below `below` (default
        SMALL_LINEAR; benchmarks/small_linears.py sets it out of the way to time float32 at every size) runs
        in float32 when it is called under CPU bf16 autocast (see the module docstring), unless this precision was
        resolved with small_linears_fp32 false or the caller passes enabled=False (a compiled model). Other
        precisions, devices and larger products are untouched; the hooks are removed on exit, leaving the modules as
        they were."""
        handles = []
        pre_hook = functools.partial(_float32_if_small, below=SMALL_LINEAR if below is None else below)
        if enabled and self.small_linears_fp32 and self.name == "bf16-mixed" and self.device.type == "cpu":
            for module in {id(m): m for m in modules if m is not None}.values():
                for layer in module.modules():
                    if isinstance(layer, torch.nn.Linear):
                        handles.append(layer.register_forward_pre_hook(pre_hook, prepend=True))
                        handles.append(layer.register_forward_hook(_autocast_back, always_call=True))
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    @torch.no_grad()
    def takes_rounded_input(self, model: torch.nn.Module, x: torch.Tensor, strict: bool = False) -> bool:
        """Whether `model`, in eval mode under this precision's autocast, computes exactly the same from `x` rounded
        to the autocast dtype as from `x`: so when its first operation casts its input anyway (a convolution or a
        large linear layer). Batches can then be handed over already rounded. The caller passes one example: the
        fewest rows, so a linear layer that runs in float32 when small (small_linears_in_float32) shows here.
        `strict`: a model that raises on either input raises here (engine/probe.py says so), instead of False."""
        if self.dtype is None or not x.is_floating_point():
            return False
        was_training = model.training
        model.eval()
        try:
            with self.autocast():
                return torch.equal(model(x), model(x.to(self.dtype)))
        except Exception:   # a model that refuses the rounded input (or returns no tensor) keeps float32 batches
            if strict:
                raise
            return False
        finally:
            model.train(was_training)

    def scaler(self):
        """A gradient scaler for fp16 (its small range underflows gradients), else a disabled one."""
        return torch.amp.GradScaler(self.device.type, enabled=self.name == "16-mixed")


SMALL_LINEAR = 1 << 23   # rows x in_features x out_features below which float32 beats bf16 on the CPU
_switched = threading.local()   # per thread, as autocast's own state: the layers running in float32 right now


def _float32_if_small(layer, args, below: int):
    x = args[0] if args else None
    if not isinstance(x, torch.Tensor) or x.device.type != "cpu" or not torch.is_autocast_enabled("cpu") or \
            layer.weight.dtype != torch.float32 or \
            x.shape[:-1].numel() * layer.in_features * layer.out_features >= below:
        return None   # not under CPU autocast, weights not float32 (a model kept in bf16), or large enough for bf16
    off = torch.autocast("cpu", enabled=False)
    off.__enter__()
    _switched.__dict__.setdefault("stack", []).append((layer, off))
    return (x.float(), *args[1:])


def _autocast_back(layer, args, output):
    stack = getattr(_switched, "stack", None)
    if stack and stack[-1][0] is layer:   # runs even when the forward raised (always_call)
        stack.pop()[1].__exit__(None, None, None)


def resolve_precision(name: str, device: torch.device, kind: str, small_linears_fp32: bool = True) -> Precision:
    if name == "auto":
        if kind not in IMAGE_KINDS:   # tiny vector, table and text models: casts would cost more than they save
            name = "32"
        elif bf16_supported(device):
            name = "bf16-mixed"
        elif device.type == "cuda":
            name = "16-mixed"
        else:
            name = "32"
    if name == "16-mixed" and device.type == "cpu":
        raise ConfigError("precision 16-mixed needs a GPU; on the CPU use bf16-mixed or 32")
    if name == "bf16-mixed" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError("this GPU has no bf16; use --precision 16-mixed or 32")
    return Precision(name, device, small_linears_fp32)


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        return f"cpu ({torch.get_num_threads()} threads)"
    return device.type
