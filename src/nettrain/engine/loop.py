"""The training step and the evaluation pass: the tutorial loop, made fast.

One step is: autocast forward, loss, backward (scaled for fp16 and for accumulation), optional clipping,
optimizer and schedule step, optional Lookahead and EMA updates. The loss sum and the predicted classes stay
on the device as tensors: nothing in the hot loop waits for the device (no `.item()`), except a progress-bar refresh
every `refresh` steps. The time spent in `next(batches)` is the data wait that each epoch reports.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Optional

import torch
from torch.nn.parallel import DistributedDataParallel

from .. import signals
from ..models import forward   # how a batch input is handed to the model
from .checkpoint import rng_state
from .lookahead import Lookahead
from .metrics import regression_metrics
from .stop import Partial, batches_from


@dataclass
class Step:
    """Everything one optimizer step needs, built once by the API."""
    model: torch.nn.Module
    loss_fn: object
    optimizer: torch.optim.Optimizer
    scheduler: object
    precision: object
    scaler: torch.amp.GradScaler
    accumulate: int = 1
    grad_clip: Optional[float] = None
    ema: Optional[torch.optim.swa_utils.AveragedModel] = None
    lookahead: Optional[Lookahead] = None


def train_epoch(s: Step, batches, classification: bool, progress=None, refresh: int = 25, stop=None,
                done: Optional[Partial] = None) -> dict:
    """One epoch (the rest of one, from `done`: a resumed stop's Partial, engine/stop.py). `stop` (stop.Check) is
    asked at every optimizer-step boundary but the epoch's last: a signal's number ends the epoch there, and the
    result is then {"stopped": signum, "partial": Partial}."""
    model, opt = s.model, s.optimizer
    model.train()
    device = s.precision.device
    first = done.batches if done is not None else 0
    loss_sum = done.loss_sum.to(device, copy=True) if done is not None else torch.zeros((), device=device)
    predicted, targets = [], []   # compared once at the end: one small op per step instead of four
    seen, wait = (done.seen, done.wait) if done is not None else (0, 0.0)
    n_batches = len(batches)
    seen0, before = seen, done.seconds if done is not None else 0.0
    rng_at_start = (done.rng_at_start if done is not None else rng_state()) if stop is not None else {}
    # Under DDP with accumulation, the micro-batches before a group's last run forward and backward in no_sync:
    # their gradients add up in each process, and the group's last backward all-reduces the sum once (1 all-reduce a
    # step instead of `accumulate`). Chosen once: one process, or no accumulation, enters a reused null context.
    no_sync = model.no_sync if s.accumulate > 1 and isinstance(model, DistributedDataParallel) else None
    stepping = contextlib.nullcontext()
    start = time.perf_counter()

    def stopped(signum: int, batches_done: int) -> dict:   # the epoch so far, for last.pt (engine/stop.py)
        correct = (done.correct if done is not None else 0) + _correct(predicted, targets)
        return {"stopped": signum, "partial": Partial(batches_done, loss_sum, correct, seen, wait,
                                                      before + time.perf_counter() - start, rng_at_start)}

    it = batches_from(batches, first, rng_at_start)
    for i in range(first, n_batches):
        t = time.perf_counter()
        try:
            x, y = next(it)
        except Exception:   # a DataLoader's workers end on the terminal's Ctrl-C before this process's step boundary
            signum = stop.alone() if stop is not None and i % s.accumulate == 0 else 0
            if not signum:
                raise
            if i == first:   # nothing of this epoch (or since its resume) to keep beyond what last.pt holds
                raise signals.stop(signum) from None
            return stopped(signum, i)
        wait += time.perf_counter() - t
        steps = (i + 1) % s.accumulate == 0 or i + 1 == n_batches
        with stepping if steps or no_sync is None else no_sync():
            with s.precision.autocast():
                out = forward(model, x)
                loss = s.loss_fn(out, y)
            # the mean over the accumulation group: a short last group (batches not a multiple of accumulate) is
            # divided by its own size, not by accumulate, which would under-weight its step
            group = min(s.accumulate, n_batches - i // s.accumulate * s.accumulate)
            s.scaler.scale(loss / group if group > 1 else loss).backward()
        if steps:
            if s.grad_clip:
                s.scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(model.parameters(), s.grad_clip)
            s.scaler.step(opt)
            s.scaler.update()
            opt.zero_grad(set_to_none=True)
            s.scheduler.step()
            if s.lookahead is not None:
                s.lookahead.step()
            if s.ema is not None:
                s.ema.update_parameters(model)
        loss_sum.add_(loss.detach(), alpha=len(y))
        if classification:
            predicted.append(out.detach().argmax(1))
            targets.append(y)
        seen += len(y)
        if progress is not None and (i + 1) % refresh == 0:
            progress.step(i + 1, loss_sum.item() / seen, (seen - seen0) / (time.perf_counter() - start))
        if stop is not None and (i + 1) % s.accumulate == 0 and i + 1 < n_batches:
            signum = stop()   # a plain int alone; under torchrun the ranks' agreement
            if signum:
                return stopped(signum, i + 1)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = before + time.perf_counter() - start
    correct = (done.correct if done is not None else 0) + _correct(predicted, targets)
    return {"loss": loss_sum.item() / max(seen, 1), "acc": correct / max(seen, 1) if classification else None,
            "seconds": seconds, "images": seen, "data_wait": wait / seconds if seconds else 0.0}


def _correct(predicted: list, targets: list) -> int:
    return (torch.cat(predicted) == torch.cat(targets)).sum().item() if predicted else 0


def tta_forward(model, x, shift: int = 0):
    """Test-time augmentation: the mean of the outputs for the image and its mirror image. With `shift`, that
    pair's mean is itself averaged (half weight) with the pairs for the image moved `shift` pixels up-left and
    down-right (edges reflected), as airbench's strongest evaluation does: 6 forward passes instead of 2."""
    def mirrored(v):
        return (model(v) + model(v.flip(3))) / 2
    out = mirrored(x)
    if shift:
        h, w = x.shape[2:]
        padded = torch.nn.functional.pad(x, (shift,) * 4, mode="reflect")
        moved = (mirrored(padded[..., :h, :w]) + mirrored(padded[..., 2 * shift:, 2 * shift:])) / 2
        out = (out + moved) / 2
    return out


@torch.no_grad()
def evaluate(model, batches, loss_fn, precision, classification: bool, num_classes: int = 0, tta: bool = False,
             tta_shift: int = 0, world=None) -> dict:
    """Loss and accuracy (with the confusion matrix), or MSE, MAE and R^2 (metrics.py), over every example.
    `world` (distributed.World): `batches` are this rank's part of the examples, and the sums are of all parts."""
    was_training = model.training
    model.eval()
    device = precision.device
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    outs, ys = [], []   # regression: R^2 needs the targets' spread, so the values are kept (N x outputs floats)
    confusion = torch.zeros(num_classes * num_classes, device=device, dtype=torch.long)
    seen = 0
    for x, y in batches:
        with precision.autocast():
            out = tta_forward(model, x, tta_shift) if tta else forward(model, x)
            loss = loss_fn(out, y)
        out = out.float()
        loss_sum += loss.double() * len(y)
        if classification:
            confusion += torch.bincount(y * num_classes + out.argmax(1), minlength=num_classes * num_classes)
        else:
            outs.append(out)
            ys.append(y.view_as(out).float())
        seen += len(y)
    model.train(was_training)
    if world is not None:
        loss_sum, seen, confusion, outs, ys = world.evaluation_sums(loss_sum, seen, confusion, outs, ys,
                                                                        classification)
    n = max(seen, 1)
    result = {"loss": loss_sum.item() / n, "examples": seen}
    if classification:
        cm = confusion.view(num_classes, num_classes).cpu()
        result.update(acc=cm.diag().sum().item() / n, confusion=cm)
    else:
        result.update(regression_metrics(torch.cat(outs), torch.cat(ys)) if outs else
                      {"mse": 0.0, "mae": 0.0, "r2": None})
    return result
