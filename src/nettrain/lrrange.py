"""The learning-rate range test (fastai's lr_find): what `nettrain fit --lr auto` runs first, and `nettrain lr-find`
(lrfind.py) runs alone.

The run's model, optimizer and batches are built as fit builds them; a copy of the model and a fresh optimizer on it
then take `steps` steps with the lr rising exponentially from `start_lr` to `end_lr`, until the smoothed loss exceeds
4x its minimum. The suggestion is the lr where the smoothed loss falls fastest (per decade of lr), before its minimum;
when that cannot be read (too few steps before the minimum), the lr of the minimum / 10. Nothing the finder trains is
kept: the run trains from the very initial weights it would have had without it.
"""
from __future__ import annotations

import copy
import io
import itertools
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from .errors import ConfigError

SMOOTHING = 0.98      # the exponential moving average of the loss (fastai's)
DIVERGED = 4.0        # stop once the smoothed loss exceeds this multiple of its minimum
SKIP = 5              # the first steps' smoothed loss is mostly its start: not read for the steepest descent


@dataclass
class LRFind:
    lrs: list
    losses: list          # smoothed, one per step
    lr: float             # the suggestion
    how: str              # how it was chosen, in words
    steepest: Optional[float] = None
    minimum: Optional[float] = None
    png: bytes = field(default=b"", repr=False)

    def describe(self) -> str:
        return (f"suggested lr {self.lr:.2e} ({self.how}); {len(self.lrs)} steps from {self.lrs[0]:.0e} to "
                f"{self.lrs[-1]:.2e}" + (f", loss minimum at {self.minimum:.2e}" if self.minimum else ""))

    def save_plot(self, path, root=None):
        """The plot into `path` (inside `root`, a run directory, when given: files.write_bytes)."""
        from .files import write_bytes
        write_bytes(Path(path), self.png, root=root)


def suggest(lrs: list, losses: list) -> tuple:
    """(lr, how, steepest, lr at the minimum): the steepest descent of the smoothed loss against log10(lr) before
    its minimum, or the minimum's lr / 10."""
    low = min(range(len(losses)), key=losses.__getitem__)
    minimum = lrs[low]
    if low - SKIP >= 3:
        logs = [math.log10(v) for v in lrs]
        slopes = [(losses[i + 1] - losses[i - 1]) / (logs[i + 1] - logs[i - 1]) for i in range(SKIP, low)]
        i = SKIP + min(range(len(slopes)), key=slopes.__getitem__)
        if slopes[i - SKIP] < 0:
            return lrs[i], "steepest descent of the smoothed loss", lrs[i], minimum
    return minimum / 10, "the loss minimum's lr / 10", None, minimum


def find(cfg, *, module=None, data=None, loss=None, steps: int = 300, start_lr: float = 1e-7, end_lr: float = 10.0,
         plot: bool = True, gate=None) -> LRFind:
    """Run the finder for `cfg` (a Config): with the user's module, data and loss object as fit takes them; `gate`
    (trust.py) when the config is a run folder's."""
    from . import wiring
    from .engine.loop import forward
    from .engine.optim import build_optimizer
    if steps < 10:
        raise ConfigError(f"the lr finder needs at least 10 steps to read a slope, got {steps}")
    if not 0 < start_lr < end_lr:
        raise ConfigError(f"the lr finder's ramp must rise from a positive start lr, got {start_lr:g} to {end_lr:g}")
    wiring.seed_everything(cfg.train.seed)
    t = wiring.build(cfg, module, data, fresh=True, loss=loss, gate=gate)
    model = copy.deepcopy(t.module).train()   # the copy trains; the built model and its optimizer are untouched
    optimizer = build_optimizer(model.parameters(), t.cfg.optim, gate, fast=False)
    # per-group lrs relative to optim.lr (Muon's groups have their own), all ramped together
    shares = [group["lr"] / t.cfg.optim.lr for group in optimizer.param_groups]
    scaler = t.precision.scaler()   # fp16 on a GPU: unscaled gradients underflow (a disabled no-op otherwise)
    ratio = (end_lr / start_lr) ** (1 / (steps - 1))
    batches = itertools.chain.from_iterable(_epochs(t.train_batches))
    lrs, losses, smooth, best = [], [], 0.0, math.inf
    with t.precision.small_linears_in_float32(model):
        for i in range(steps):
            lr = start_lr * ratio ** i
            for group, share in zip(optimizer.param_groups, shares):
                group["lr"] = lr * share
            x, y = next(batches)
            optimizer.zero_grad(set_to_none=True)
            with t.precision.autocast():
                value = t.step.loss_fn(forward(model, x), y)
            scaler.scale(value).backward()
            scaler.step(optimizer)
            scaler.update()
            value = float(value.detach())   # one host sync a step: the finder reads every loss
            if not math.isfinite(value):
                break
            smooth = SMOOTHING * smooth + (1 - SMOOTHING) * value
            smoothed = smooth / (1 - SMOOTHING ** (i + 1))
            lrs.append(lr)
            losses.append(smoothed)
            best = min(best, smoothed)
            if smoothed > DIVERGED * best:
                break
    if len(lrs) < 2:
        raise ConfigError(f"the loss was not finite from the finder's first steps (lr {start_lr:g}); give a lower "
                          f"--start-lr, or the lr yourself")
    lr, how, steepest, minimum = suggest(lrs, losses)
    found = LRFind(lrs, losses, lr, how, steepest, minimum)
    if plot:
        found.png = _plot(found)
    return found


def _epochs(batches):
    for epoch in itertools.count(1):
        batches.set_epoch(epoch)
        yield batches


def _plot(found: LRFind) -> bytes:
    """The loss-vs-lr plot as PNG bytes, drawn on a Figure of its own (Agg, no pyplot: the caller's matplotlib
    backend and figures are left alone)."""
    from matplotlib.figure import Figure
    fig = Figure(figsize=(6, 4), dpi=100)
    ax = fig.subplots()
    ax.plot(found.lrs, found.losses)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss (smoothed)")
    ax.axvline(found.lr, color="tab:red", linestyle="--", label=f"suggested {found.lr:.2e}")
    ax.legend()
    ax.set_title("nettrain lr-find")
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png")
    return out.getvalue()


def find_for_fit(cfg, module, data, loss, tune_process: bool, gate=None) -> tuple:
    """fit --lr auto: the finder on the run's model and data, then the config with its suggestion as optim.lr (so
    config.yaml records the lr the run trained with); says so in one line. `gate`: as the fit's (trust.py)."""
    from . import _process
    from ._malloc import tuning_allowed
    from .engine.device import resolve_device
    with _process.kept(resolve_device(cfg.train.device)), tuning_allowed(tune_process):
        found = find(cfg, module=module, data=data, loss=loss, gate=gate)
    print(f"nettrain: lr auto: the lr finder {found.describe()}; training with lr {found.lr:.2e} (recorded as "
          f"optim.lr in config.yaml; the plot: lr_find.png in the run)", file=sys.stderr)
    return cfg.override({"optim.lr": float(f"{found.lr:.3g}")}), found


def keep_plot(found: LRFind, run_dir):
    """The finder's plot in the finished run, claimed in its record under the run's writer lock (runs.py)."""
    from .runs import RunDir
    run = RunDir(run_dir)
    run.lock(command="nettrain fit --lr auto")
    try:
        found.save_plot(run.claim(run.path / "lr_find.png"), root=run.path)
    finally:
        run.unlock()
