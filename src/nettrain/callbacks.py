"""Callbacks: your code at a fit's moments, as Keras' and Lightning's callbacks give it.

A callback is any object with some of these methods (each optional; `Callback` is a base class to inherit them
from):

    on_fit_start(fit)                  after the build and before the first epoch trained here (a resume's too)
    on_step_end(fit, loss)             after each optimizer step: `loss` the step's loss, a tensor on the device
                                       (loss.item() waits for the device: on a GPU, read it every k steps)
    on_epoch_end(fit, epoch, metrics)  after the epoch's validation, before its checkpoint: `metrics` its
                                       metrics.csv row as a dict (train_loss, val_loss, val_acc, lr, ...)
    on_fit_end(fit, test)              after the test: `test` the test metrics as test_metrics.json has them ({}
                                       without a test split)

`fit` (FitState) tells where the fit stands: run_dir, config (the resolved config, as config.yaml has it), epoch,
step (optimizer steps so far), history (the metrics rows so far), model, optimizer, is_main (the process that
writes under torchrun: every process calls its callbacks, with the same metrics); `fit.stop(reason)` ends training
after the epoch in progress: its checkpoint records the stop (a resume with the same --epochs trains no more),
then the fit tests and reports as at its end.

Given as `nettrain.fit(..., callbacks=[...])`, or by spec in a config (`run.callbacks: [my_cb.py:Printer]`, each
built without arguments; a spec is user code, imported as trust.py allows). Callbacks watch the run: they are not
part of what trained, and config.yaml records only the specs a config gave. Early stopping is built in
(`--train.patience N`: EarlyStopping below).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

HOOKS = ("on_fit_start", "on_step_end", "on_epoch_end", "on_fit_end")


class Callback:
    """A base class with every hook doing nothing: override the ones you need."""

    def on_fit_start(self, fit: "FitState"):
        pass

    def on_step_end(self, fit: "FitState", loss):
        pass

    def on_epoch_end(self, fit: "FitState", epoch: int, metrics: dict):
        pass

    def on_fit_end(self, fit: "FitState", test: dict):
        pass


@dataclass
class FitState:
    """What a callback sees of the fit (see the module docstring)."""
    run_dir: Optional[Path]
    config: dict
    model: object
    optimizer: object
    is_main: bool = True
    epoch: int = 0
    step: int = 0
    history: list = field(default_factory=list)
    stop_reason: Optional[str] = None

    def stop(self, reason: str = "a callback asked to stop"):
        """End training after the epoch in progress (its checkpoint kept), then test and report."""
        self.stop_reason = str(reason)[:200]   # recorded in the checkpoint: one line, bounded


class EarlyStopping(Callback):
    """Stop when `monitor` (a metrics.csv column) has not improved for `patience` epochs; `mode` "max" for
    accuracies, "min" for losses. Its state is the history itself, so that a resumed run counts on as if it had
    not stopped."""

    def __init__(self, monitor: str = "val_loss", patience: int = 5, mode: str = "min", min_delta: float = 0.0):
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        self.monitor, self.patience, self.mode, self.min_delta = monitor, patience, mode, min_delta

    def on_epoch_end(self, fit: FitState, epoch: int, metrics: dict):
        # the validated epochs only: a row whose val columns hold the test split's pass chooses nothing
        rows = [(row["epoch"], row[self.monitor]) for row in fit.history
                if row.get(self.monitor) is not None and row.get("val_split") != "test"]
        if not rows:
            return
        sign = 1 if self.mode == "max" else -1
        best_epoch, best = rows[0]
        for at, value in rows[1:]:
            if sign * (value - best) > self.min_delta:
                best_epoch, best = at, value
        since = sum(1 for at, _ in rows if at > best_epoch)
        if since >= self.patience:
            fit.stop(f"{self.monitor} has not improved for {since} validated epochs (best {best:.4g} at epoch "
                     f"{best_epoch}; patience {self.patience})")


class Hooks:
    """The fit's callbacks, called in order; the training loop asks `stepping` whether to call after each step."""

    def __init__(self, callbacks: list, state: FitState):
        self.callbacks, self.state = list(callbacks), state
        self.stepping = any(hasattr(cb, "on_step_end") and not _inherited(cb, "on_step_end") for cb in callbacks)

    def _call(self, hook: str, *args):
        for cb in self.callbacks:
            method = getattr(cb, hook, None)
            if method is not None:
                method(self.state, *args)

    def fit_start(self):
        self._call("on_fit_start")

    def step_end(self, loss):
        self.state.step += 1
        self._call("on_step_end", loss)

    def epoch_end(self, epoch: int, row: dict, history: list):
        self.state.epoch, self.state.history = epoch, history
        self._call("on_epoch_end", epoch, row)

    def fit_end(self, test: dict):
        self._call("on_fit_end", test)


def _inherited(cb, hook: str) -> bool:
    """True when `cb`'s `hook` is Callback's own (does nothing): the loop then skips the per-step call."""
    return getattr(type(cb), hook, None) is getattr(Callback, hook)


def check(callbacks) -> list:
    """`callbacks` as a list of objects with at least one hook; one line naming what is wrong otherwise."""
    from .errors import ConfigError
    if callbacks is None:
        return []
    if not isinstance(callbacks, (list, tuple)):
        raise ConfigError(f"callbacks= takes a list of callback objects, got {type(callbacks).__name__}")
    for cb in callbacks:
        if isinstance(cb, type):
            raise ConfigError(f"callbacks= takes callback objects, got the class {cb.__name__}; give "
                              f"{cb.__name__}() instead")
        if not any(callable(getattr(cb, hook, None)) for hook in HOOKS):
            raise ConfigError(f"{type(cb).__name__} has none of the callback methods ({', '.join(HOOKS)}); "
                              f"define one, or inherit nettrain.Callback")
    return list(callbacks)
