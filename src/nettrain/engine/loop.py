"""The training step and the evaluation pass: the tutorial loop, made fast.

One step is: autocast forward, loss, backward (scaled for fp16 and for accumulation), optional clipping,
optimizer and schedule step, optional Lookahead and EMA updates. The loss sum and the predicted classes stay
on the device as tensors: nothing in the hot loop waits for the device (no `.item()`), except a progress-bar refresh
every `refresh` steps. The time spent in `next(batches)` is the data wait that each epoch reports.

`train_epoch` is the loop alone; beside it, `_Feed` hands it the batches (timing each one's wait, starting a resumed
stop's epoch where it stopped, asking the stop at the step boundaries: engine/stop.py) and `_Sums` keeps the
epoch's sums (and what of them a stop keeps).
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch.nn.parallel import DistributedDataParallel

from .. import signals
from ..models import forward   # how a batch input is handed to the model
from .checkpoint import rng_state
from .lookahead import Lookahead
from .metrics import (multilabel_metrics, own_metrics, positive_score, predicted_classes, regression_metrics,
                      roc_auc)
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
    on_step: Optional[Callable] = None   # called with the loss tensor after each optimizer step (callbacks.py)


def train_epoch(s: Step, batches, classification: bool, progress=None, refresh: int = 25, stop=None,
                done: Optional[Partial] = None) -> dict:
    """One epoch (the rest of one, from `done`: a resumed stop's Partial, engine/stop.py). `stop` (stop.Check) is
    asked at every optimizer-step boundary but the epoch's last: a signal's number ends the epoch there, and the
    result is then {"stopped": signum, "partial": Partial}."""
    model, opt, n = s.model, s.optimizer, len(batches)
    model.train()
    sums = _Sums(done, s.precision.device)
    feed = _Feed(batches, done, stop, s.accumulate)
    # Under DDP with accumulation, the micro-batches before a group's last run forward and backward in no_sync:
    # their gradients add up in each process, and the group's last backward all-reduces the sum once (1 all-reduce a
    # step instead of `accumulate`). Chosen once: one process, or no accumulation, enters a reused null context.
    no_sync = model.no_sync if s.accumulate > 1 and isinstance(model, DistributedDataParallel) else None
    stepping = contextlib.nullcontext()
    for i, x, y in feed:
        steps = (i + 1) % s.accumulate == 0 or i + 1 == n
        with stepping if steps or no_sync is None else no_sync():
            with s.precision.autocast():
                out = forward(model, x)
                loss = s.loss_fn(out, y)
            # the mean over the accumulation group: a short last group (batches not a multiple of accumulate) is
            # divided by its own size, not by accumulate, which would under-weight its step
            group = min(s.accumulate, n - i // s.accumulate * s.accumulate)
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
            if s.on_step is not None:
                s.on_step(loss.detach())
        sums.add(loss, out if classification else None, y)
        if progress is not None and (i + 1) % refresh == 0:
            progress.step(i + 1, sums.mean_loss(), sums.speed())
    if feed.stopped:
        return {"stopped": feed.stopped, "partial": sums.partial(feed)}
    return sums.result(classification, feed.wait)


class _Sums:
    """The epoch's sums: the loss sum and the predicted classes stay on the device (compared with the targets once
    at the end: one small op a step instead of four), nothing here waits for the device but `mean_loss` (the
    progress bar's refresh) and the epoch's end. Carried on from a resumed stop's Partial."""

    def __init__(self, done: Optional[Partial], device: torch.device):
        self.device, self.done = device, done
        self.loss_sum = done.loss_sum.to(device, copy=True) if done is not None else torch.zeros((), device=device)
        self.seen = done.seen if done is not None else 0
        self.seen_before, self.seconds_before = self.seen, done.seconds if done is not None else 0.0
        self.predicted, self.targets = [], []
        self.start = time.perf_counter()

    def add(self, loss: torch.Tensor, out: Optional[torch.Tensor], y):
        self.loss_sum.add_(loss.detach(), alpha=len(y))
        if out is not None:   # classification
            self.predicted.append(predicted_classes(out.detach()))
            self.targets.append(y)
        self.seen += len(y)

    def mean_loss(self) -> float:
        return self.loss_sum.item() / self.seen

    def speed(self) -> float:
        """Examples a second since the epoch (or its resumed part) started."""
        return (self.seen - self.seen_before) / (time.perf_counter() - self.start)

    def seconds(self) -> float:
        return self.seconds_before + time.perf_counter() - self.start

    def correct(self) -> int:
        done = self.done.correct if self.done is not None else 0
        return done + ((torch.cat(self.predicted) == torch.cat(self.targets)).sum().item() if self.predicted else 0)

    def partial(self, feed: "_Feed") -> Partial:
        """The epoch so far, for last.pt (engine/stop.py)."""
        return Partial(feed.position, self.loss_sum, self.correct(), self.seen, feed.wait, self.seconds(),
                       feed.rng_at_start)

    def result(self, classification: bool, wait: float) -> dict:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        seconds, n = self.seconds(), max(self.seen, 1)
        return {"loss": self.loss_sum.item() / n, "acc": self.correct() / n if classification else None,
                "seconds": seconds, "examples": self.seen, "data_wait": wait / seconds if seconds else 0.0}


class _Feed:
    """The epoch's batches as (index, x, y), from the first not yet done (a resumed stop's), each one's wait for
    it timed; the stop is asked at every optimizer-step boundary but the epoch's last (engine/stop.py). A stop ends
    the iteration: `stopped` is then its signal and `position` the batches done."""

    def __init__(self, batches, done: Optional[Partial], stop, accumulate: int):
        self.first = self.position = done.batches if done is not None else 0
        self.wait = done.wait if done is not None else 0.0
        self.rng_at_start = (done.rng_at_start if done is not None else rng_state()) if stop is not None else {}
        self.n, self.stop, self.accumulate, self.stopped = len(batches), stop, accumulate, 0
        self._batches = batches_from(batches, self.first, self.rng_at_start)

    def __iter__(self):
        for i in range(self.first, self.n):
            self.position = i
            if self.stop is not None and i > self.first and i % self.accumulate == 0:
                self.stopped = self.stop()   # a plain int alone; under torchrun the ranks' agreement
                if self.stopped:
                    return
            t = time.perf_counter()
            try:
                x, y = next(self._batches)
            except Exception:   # a DataLoader's workers end on a terminal's Ctrl-C before this process's step boundary
                self.stopped = self.stop.alone() if self.stop is not None and i % self.accumulate == 0 else 0
                if not self.stopped:
                    raise
                if i == self.first:   # nothing of this epoch (or since its resume) to keep beyond what last.pt holds
                    raise signals.stop(self.stopped) from None
                return
            self.wait += time.perf_counter() - t
            yield i, x, y


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
             tta_shift: int = 0, world=None, metrics: Optional[dict] = None, multilabel: bool = False) -> dict:
    """Loss and accuracy (with the confusion matrix), or MSE, MAE and R^2 (metrics.py), over every example; and
    the run's own `metrics` (name -> function, metrics.own_metrics) as result["metrics"], whose outputs are kept.
    `world` (distributed.World): `batches` are this rank's part of the examples, and the sums are of all parts."""
    was_training = model.training
    model.eval()
    device = precision.device
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    # regression: R^2 needs the targets' spread, so the values are kept (N x outputs floats); two classes: ROC-AUC
    # needs every example's score (N floats)
    outs, ys, kept = [], [], []
    confusion = torch.zeros(num_classes * num_classes, device=device, dtype=torch.long)
    seen = 0
    for x, y in batches:
        with precision.autocast():
            out = tta_forward(model, x, tta_shift) if tta else forward(model, x)
            loss = loss_fn(out, y)
        out = out.float()
        loss_sum += loss.double() * len(y)
        if classification:
            confusion += torch.bincount(y * num_classes + predicted_classes(out), minlength=num_classes * num_classes)
            if num_classes == 2:
                outs.append(positive_score(out))
                ys.append(y)
        else:
            outs.append(out)
            ys.append(y.view_as(out).float())
        seen += len(y)
        if metrics:
            kept.append((out, y))
    model.train(was_training)
    if world is not None:
        loss_sum, seen, confusion, outs, ys = world.evaluation_sums(loss_sum, seen, confusion, outs, ys,
                                                                        classification and num_classes != 2)
    n = max(seen, 1)
    result = {"loss": loss_sum.item() / n, "examples": seen}
    if classification:
        cm = confusion.view(num_classes, num_classes).cpu()
        result.update(acc=cm.diag().sum().item() / n, confusion=cm)
        if outs:
            result["roc_auc"] = roc_auc(torch.cat(outs), torch.cat(ys))
    elif multilabel:   # each label's F1 and their micro and macro means (metrics.py), at logit > 0
        result["multilabel"] = multilabel_metrics(torch.cat(outs), torch.cat(ys)) if outs else None
        if result["multilabel"]:   # metrics.csv's columns each validated epoch
            result["metrics"] = {"val_micro_f1": result["multilabel"]["micro_f1"],
                                 "val_macro_f1": result["multilabel"]["macro_f1"]}
    else:
        result.update(regression_metrics(torch.cat(outs), torch.cat(ys)) if outs else
                      {"mse": 0.0, "mae": 0.0, "r2": None})
    if metrics and seen:
        result["metrics"] = {**result.get("metrics", {}), **own_metrics(metrics, kept, world)}
    return result
