"""The speed choices nettrain makes for a model of the user's, each checked on that model before the first step.

The choices are made for speed alone and must not change what the model computes: channels_last batches and
weights, float32 small linear layers under CPU bf16 autocast (engine/device.py), bf16-rounded stored inputs
(wiring._input_dtype), torch.compile, and fused/foreach optimizer steps (engine/optim.py). Code written for
the tutorials' contiguous batches can break them: the CIFAR-10 tutorial's `x.view(-1, 16 * 5 * 5)` raises on a
channels_last tensor. So on ONE real batch of the training data each choice is run forward and backward (the
optimizer: one step on the plain pass's gradients) and compared with the plain computation (contiguous tensors,
autocast alone, eager, one tensor at a time). A choice that raises, or that changes the outputs or gradients
beyond a tolerance (rounding: bf16 keeps 8 bits), is dropped for that model with one line naming it and the fix,
and training goes on. Every pass is seeded alike; a model that draws random numbers (dropout) is compared in eval
mode, where it draws none. Weights, buffers, gradients and every RNG are put back exactly as they were.

Built-in models skip it: they are written for these choices (they flatten with .flatten/.reshape, never .view a
feature map), and the test suite and the benchmarks run each of them with every choice on.

What it costs, measured once (2-core CPU shared with other jobs, bf16 autocast, one thread, batch 64, twice each,
the range given): the tutorial Net on 3x32x32 images 43-79 ms (its channels_last pass raises at once); the
built-in cnn, were it probed, 55-57 ms on digits (1x8x8) and 210-330 ms on 3x32x32. That is the plain pass, one
pass per choice and two optimizer steps: about four training steps, once per fit.
"""
from __future__ import annotations

import contextlib
import random
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from ..errors import ModelError, NettrainError
from .loop import forward
from ..models.blame import failure, model_file, tracking
from ..usercode import raised, user_frame

SEED = 0x5EED
# relative difference (norm of the difference over the norm) beyond which a choice changed the result; a broken
# choice (a scrambled layout) differs by ~100%, bf16's rounding of the same computation by 2% (the tutorial Net)
TOLERANCE = {None: 1e-3, torch.bfloat16: 0.25, torch.float16: 0.1}
VIEW = "view size is not compatible with input tensor's size and stride"


class Probe:
    """`module`: the user's model (on its device, contiguous); `x`, `y`: one real batch (contiguous, float32)."""

    def __init__(self, module: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn, precision, name: str,
                 say: Callable[[str], None]):
        self.module, self.x, self.y, self.loss_fn, self.precision = module, x, y, loss_fn, precision
        self.name, self.say = name, say
        self.label = type(getattr(module, "inner", module)).__name__
        self.file = model_file(module)
        self.tolerance = TOLERANCE[precision.dtype]
        self.params = list(module.parameters())
        self.in_eval = False   # compare in eval mode (the forward draws random numbers in training mode)
        self.layout = torch.contiguous_format   # of the batches the later choices run on (channels_last decides)
        self.reference = self._plain()

    # ---- state ------------------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def preserved(self):
        """Weights, buffers, gradients, training mode and every RNG as they were, whatever runs inside."""
        saved = {k: v.detach().clone() for k, v in self.module.state_dict().items()}
        grads = [p.grad for p in self.params]
        mode = self.module.training
        py, npy = random.getstate(), np.random.get_state()
        cuda = [self.precision.device] if self.precision.device.type == "cuda" else []
        try:
            with torch.random.fork_rng(devices=cuda):
                yield
        finally:
            with torch.no_grad():
                self.module.load_state_dict(saved)
            for p, g in zip(self.params, grads):
                p.grad = g
            self.module.train(mode)
            random.setstate(py)
            np.random.set_state(npy)

    def _pass(self, model, x, train: bool, small_linears: bool) -> tuple:
        """One seeded forward and backward: (outputs, gradients), detached float32 copies."""
        model.train(train)
        for p in self.params:
            p.grad = None
        torch.manual_seed(SEED)
        switch = self.precision.small_linears_in_float32(self.module) if small_linears else contextlib.nullcontext()
        with switch:
            with self.precision.autocast():
                out = forward(model, x)
                loss = self.loss_fn(out, self.y)
            loss.backward()
        return out.detach().float(), [None if p.grad is None else p.grad.detach().float().clone()
                                      for p in self.params]

    def _run(self, model, x, small_linears=False) -> tuple:
        """The pass in training mode (what must not raise), and the one compared: in eval mode when the model draws
        random numbers. Each from the same state: BatchNorm's statistics are put back in between."""
        with self.preserved():
            result = self._pass(model, x, True, small_linears)
        if self.in_eval:
            with self.preserved():
                result = self._pass(model, x, False, small_linears)
        return result

    def _plain(self) -> tuple:
        """The reference: contiguous, autocast alone, eager. A failure here is the model's own: one line."""
        with self.preserved():
            torch.manual_seed(SEED)
            before = self._rng()
            try:
                with tracking(self.module) as where:
                    result = self._pass(self.module, self.x, True, False)
            except NettrainError:   # a user loss's own one line
                raise
            except Exception as e:
                got = self.x.shape if isinstance(self.x, torch.Tensor) else None   # a tuple or dict: no one shape
                raise ModelError(f"{failure(e, self.module, where, got, list(got[1:]) if got else None)}: model "
                                 f"{self.name!r} fails in a training step; fix the model (--debug prints the whole "
                                 f"traceback)") from e
            self.in_eval = any(not torch.equal(a, b) for a, b in zip(before, self._rng()))
        if self.in_eval:
            with self.preserved():
                result = self._pass(self.module, self.x, False, False)
        self.grads = {id(p): g for p, g in zip(self.params, result[1])}
        return result

    def _rng(self) -> list:
        """The states of the generators a forward may draw from: the CPU's, and the GPU's when it runs there."""
        cuda = [torch.cuda.get_rng_state(self.precision.device)] if self.precision.device.type == "cuda" else []
        return [torch.get_rng_state()] + cuda

    # ---- comparing --------------------------------------------------------------------------------------------

    def _difference(self, result: tuple) -> float:
        """The larger relative difference from the reference, of the outputs and of all gradients together."""
        def rel(a, b):
            if a.shape != b.shape:
                return float("inf")
            if not torch.isfinite(b).all():   # the plain computation overflowed: nothing to compare against
                return 0.0
            return float((a - b).norm() / b.norm().clamp_min(1e-12)) if torch.isfinite(a).all() else float("inf")
        out, grads = result
        ref_out, ref_grads = self.reference
        if [g is None for g in grads] != [g is None for g in ref_grads]:
            return float("inf")
        flat = [torch.cat([g.flatten() for g in gs if g is not None] or [torch.zeros(0)]) for gs in (grads, ref_grads)]
        return max(rel(out, ref_out), rel(*flat))

    def _check(self, what: str, fix: str, run: Callable[[], tuple]) -> bool:
        """Keep `what`? Runs it; on an exception or a difference beyond the tolerance, says so in one line."""
        try:
            d = self._difference(run())
        except Exception as e:
            self.say(self._raised_line(what, fix, e))
            return False
        if d > self.tolerance:
            self.say(f"{what} off: {self.label}'s outputs or gradients with it differ from the plain computation's "
                     f"by {d:.1%}; {fix}")
            return False
        return True

    def _raised_line(self, what: str, fix: str, e: Exception) -> str:
        frame = user_frame(e, self.file)
        where = f"{self.label}.{frame.name}" if frame is not None and frame.filename == self.file else self.label
        at = f"{Path(frame.filename).name}:{frame.lineno}" if frame is not None else "?"
        if VIEW in str(e):   # the tutorials' x.view(-1, n) on a feature map: the one-word fix
            return f"{what} off: {where} calls .view on a {what} tensor ({at}); .reshape or .flatten keeps the fast " \
                   f"path"
        return f"{what} off: {self.label} fails with it ({raised(e, self.file)}); {fix}"

    def _laid_out(self, layout) -> object:
        """The batch input in `layout` (a tuple or dict of parts, as a user's collate makes, goes as it is)."""
        if not isinstance(self.x, torch.Tensor) or (layout == torch.channels_last and self.x.ndim != 4):
            return self.x
        return self.x.contiguous(memory_format=layout)

    # ---- the choices ------------------------------------------------------------------------------------------

    def channels_last(self) -> bool:
        """channels_last weights and batches; the module is left in the layout decided."""
        self.module.to(memory_format=torch.channels_last)
        keep = self._check("channels_last", "make the model work on channels_last tensors to keep the fast path "
                                            "(--train.channels_last false turns it off without this line)",
                           lambda: self._run(self.module, self._laid_out(torch.channels_last)))
        if not keep:
            self.module.to(memory_format=torch.contiguous_format)
        self.layout = torch.channels_last if keep else torch.contiguous_format
        return keep

    def small_linears(self) -> bool:
        """Small nn.Linear layers in float32 under CPU bf16 autocast (device.small_linears_in_float32)."""
        if not any(isinstance(m, nn.Linear) for m in self.module.modules()):
            return True   # nothing it would switch
        x = self._laid_out(self.layout)
        return self._check("float32 small linears", "--train.small_linears_fp32 false turns it off without this "
                                                    "line", lambda: self._run(self.module, x, small_linears=True))

    def rounded_input(self, x1: torch.Tensor) -> bool:
        """Images stored rounded to the autocast dtype: Precision.takes_rounded_input's exact check on one example,
        with a failure said rather than taken silently as 'no'."""
        try:
            return self.precision.takes_rounded_input(self.module, x1, strict=True)
        except Exception as e:
            self.say(self._raised_line("bf16-rounded inputs", "batches stay float32", e))
            return False

    def compiled(self, compiled: nn.Module) -> bool:
        """torch.compile'd `compiled` (of this module), after its warm-up: the same results as eager?"""
        x = self._laid_out(self.layout)
        return self._check("torch.compile", "training without it (eager)", lambda: self._run(compiled, x))

    def optimizer(self, build: Callable[[bool], torch.optim.Optimizer]) -> torch.optim.Optimizer:
        """build(fast): the optimizer with nettrain's fused/foreach choice, or without. One step of each on the
        plain pass's gradients, from the same weights, must update them alike; else the plain one is used."""
        fast = build(True)
        chosen = [k for k in ("fused", "foreach") if fast.defaults.get(k)]
        if not chosen:
            return fast
        what = f"{'/'.join(chosen)} {type(fast).__name__}"
        try:
            with self.preserved():
                updates = [self._step(opt) for opt in (fast, build(False))]
            d = max(float((a - b).norm() / b.norm().clamp_min(1e-12)) for a, b in zip(*updates))
        except Exception as e:
            self.say(self._raised_line(what, "it steps one tensor at a time instead", e))
            return build(False)
        if d > TOLERANCE[None]:
            self.say(f"{what} off: its step differs from the one-tensor-at-a-time step by {d:.1%}; it steps one "
                     f"tensor at a time instead")
            return build(False)
        return build(True)   # a fresh one: the probe's step left its state in `fast`

    def _step(self, opt: torch.optim.Optimizer) -> list:
        """One step of `opt` on the reference gradients; returns each weight's change, and undoes it."""
        params = [p for group in opt.param_groups for p in group["params"]]
        with torch.no_grad():
            before = [p.detach().clone() for p in params]
            for p in params:
                g = self.grads.get(id(p))
                p.grad = None if g is None else torch.empty_like(p).copy_(g)
            opt.step()
            change = [(p - b).float().flatten() for p, b in zip(params, before)]
            for p, b in zip(params, before):
                p.copy_(b)
        return [torch.cat(change)] if change else []


def probe_batch(data, info, cfg, device, batch_size: int) -> tuple:
    """The first `batch_size` training examples as the step gets them (contiguous, float32, not augmented)."""
    from ..data import CustomData, make_batches
    train = data.train
    if isinstance(train, CustomData):   # the user's own batches (collate_fn, DataLoader): the first as it comes
        return next(iter(make_batches(train, info, cfg.data, device, batch_size, train=False, channels_last=False)))
    part = train.subset(slice(0, batch_size)) if hasattr(train, "subset") else \
        torch.utils.data.Subset(train, range(min(batch_size, len(train))))
    return next(iter(make_batches(part, info, cfg.data, device, batch_size, train=False, channels_last=False)))


def say(line: str):
    print(f"nettrain: {line}", file=sys.stderr, flush=True)
