"""A stop in the middle of an epoch: where it is checked, what of the epoch it keeps, and how a resume goes on.

While training, a stop signal only sets a flag (signals.py). The training loop asks `Check` at every optimizer-step
boundary but the epoch's last (the epoch's end keeps its own checkpoint); under torchrun the ranks agree on it there
(distributed.World.agree_stop), so that all of them stop after the same step. The epoch in progress is then
`Partial`: how many of its batches are done and this rank's sums of them (loss sum, correct, seen, data wait,
seconds), which a resume carries on, so that the finished epoch's metrics row is the uninterrupted one's; and the
global RNG state at the epoch's start, under which the resume starts the epoch's batches again and skips the first
ones (a user's DataLoader may draw its order from it). Everything else (weights, optimizer, schedule, scaler, EMA,
Lookahead, the RNG state at the stop) is the epoch-end checkpoint's, taken at the stop.

In last.pt, `epoch` stays the last whole epoch and `partial` describes the one in progress (`record`): a reader that
knows nothing of it sees the last whole epoch, and best.pt, only ever written at an epoch's end, is never ahead of it.
"""
from __future__ import annotations

import os
import signal
from dataclasses import dataclass, field
from typing import Optional

import torch

from .. import signals
from ..errors import CheckpointError, ConfigError
from .checkpoint import rng_state, set_rng_state


@dataclass
class Partial:
    """The first `batches` batches of an epoch, done: this rank's sums of them, and the RNG state at its start."""
    batches: int
    loss_sum: torch.Tensor    # the loop's own accumulator (its dtype, its bits): the rest of the epoch adds to it
    correct: int = 0
    seen: int = 0
    wait: float = 0.0
    seconds: float = 0.0
    rng_at_start: dict = field(default_factory=dict)

    def sums(self) -> dict:
        return {"loss_sum": self.loss_sum.detach().cpu(), "correct": self.correct, "seen": self.seen,
                "wait": self.wait, "seconds": self.seconds}


AGREE_EVERY = 8   # optimizer steps between two agreements under torchrun (see Check)


class Check:
    """The stop check of one epoch's step boundaries: the signal to stop for, or 0. Alone, a read of the flag at every
    boundary (no collective, no device sync). Under torchrun, one all-reduce of one integer every AGREE_EVERY steps,
    started at the boundary before and waited for at the next one, so that its round trip overlaps a step rather
    than adding to it; every rank counts the same boundaries, so all of them stop after the same step, at most
    AGREE_EVERY + 1 steps after the first of them saw the flag. Why not every step: on 2 CPU processes (gloo) the
    flag's all-reduce alone took 0.7 ms, and agreed at every step it added 17% to a 2.7 ms step of a small MLP
    even overlapped (benchmarks/stop_flag.py, results/stop_flag.txt); every 8 steps that is about 2%, and under
    1% for steps of 10 ms or more. `finish` waits for the one still under way at the epoch's end.

    NETTRAIN_TEST_SIGNAL_AT=EPOCH:STEP[:RANK] makes that rank (default 0) send itself SIGTERM after that optimizer
    step of that epoch (counted from the epoch's start); RANK `agent`: rank 0 sends it to its parent, torchrun's
    agent, which forwards it to every process. A real signal at a chosen step, for the tests; read when an epoch
    starts, unset in real use."""

    def __init__(self, world, epoch: int, steps_done: int = 0):
        self.world, self.step, self.signal_at, self.target = world, steps_done, None, os.getpid()
        self.started = None   # the agreement under way (World.start_agreeing)
        self.boundaries = 0   # this epoch's step boundaries so far: the same count on every rank
        at = os.environ.get("NETTRAIN_TEST_SIGNAL_AT", "").split(":")
        if len(at) >= 2 and int(at[0]) == epoch and (at[2:] or ["0"])[0] in (str(world.rank), "agent"):
            if at[2:] == ["agent"]:
                self.target = os.getppid() if world.is_main else None
            self.signal_at = int(at[1]) if self.target is not None else None

    def __call__(self) -> int:
        if self.signal_at is not None:
            self.step += 1
            if self.step == self.signal_at:   # to itself: its handler runs before the next line, setting the flag
                os.kill(self.target, signal.SIGTERM)
        if self.world.size == 1:
            return signals.pending()
        self.boundaries += 1
        signum = self.world.agreed_on(self.started) if self.started is not None else 0
        self.started = None
        if not signum and (self.boundaries + 1) % AGREE_EVERY == 0:   # the next boundary is an agreed one
            self.started = self.world.start_agreeing(signals.pending())
        return signum

    def alone(self) -> int:
        """The stop signal this process has received, when it trains alone (0 under torchrun, where a stop must be
        agreed on): for a batch that failed to come because the stop's signal ended the DataLoader's workers."""
        return signals.pending() if self.world.size == 1 else 0

    def finish(self) -> int:
        """The agreement still under way when the epoch ended, waited for (every rank has one), or 0."""
        signum = self.world.agreed_on(self.started) if self.started is not None else 0
        self.started = None
        return signum


def agreed(world) -> int:
    """The stop signal any rank has received, at an epoch's end (after its checkpoint), or 0."""
    return world.agree_stop(signals.pending())


def batches_from(batches, start: int, rng_at_start: Optional[dict] = None):
    """An iterator over the epoch's batches from batch `start` on: the batch kinds index from the position
    (`iterate`); any other iterable has its first batches made and dropped. The epoch's batches are started under
    the RNG state of the epoch's start, as they were, and the RNG is then put back to the stop's."""
    if not start:
        return iter(batches)
    now = rng_state()
    if rng_at_start:
        set_rng_state(rng_at_start)
    try:
        if hasattr(batches, "iterate"):
            return batches.iterate(start)
        it = iter(batches)
        for _ in range(start):
            next(it)
        return it
    finally:
        set_rng_state(now)


def record(part: Partial, epoch: int, world, accumulate: int) -> dict:
    """The `partial` entry of a stop's last.pt: the epoch in progress, its batches and steps done, every rank's sums
    (gathered: each rank resumes its own), the RNG state at the epoch's start (the main rank's, and under torchrun
    every rank's)."""
    return {"epoch": epoch, "batches": part.batches, "steps": -(-part.batches // accumulate),
            "world_size": world.size, "sums": world.gather(part.sums()), "rng_at_start": part.rng_at_start,
            "rng_at_start_ranks": world.random_states(part.rng_at_start)}


def resumed(entry: Optional[dict], where, completed: int, epochs: int, n_batches: int, accumulate: int,
            world) -> Optional[Partial]:
    """This rank's Partial of a checkpoint's `partial` entry, checked against the run it resumes; None without one.
    At another world size the epoch's sums so far are all given to the main rank (the epoch's row is then the same
    up to float rounding)."""
    if entry is None:
        return None
    batches, sums = entry.get("batches"), entry.get("sums")
    if entry.get("epoch") != completed + 1 or not isinstance(batches, int) or not 0 < batches < n_batches or \
            batches % accumulate or not isinstance(sums, list) or not sums:
        raise CheckpointError(f"{where} holds a stop in the middle of an epoch that does not fit this run (epoch "
                              f"{entry.get('epoch')!r} after {completed}, batch {batches!r} of {n_batches}); give the "
                              f"run's own last.pt, or start a new run")
    if epochs < entry["epoch"]:
        raise ConfigError(f"{where} was stopped in the middle of epoch {entry['epoch']}; --epochs must be at least "
                          f"{entry['epoch']} to resume it (give --epochs {entry['epoch']} or more)")
    if len(sums) == world.size:
        mine = sums[world.rank]
    else:   # the ranks' examples of the epoch so far, all counted once, on the main rank
        mine = {"loss_sum": sum(s["loss_sum"].double() for s in sums).to(sums[0]["loss_sum"].dtype),
                "correct": sum(s["correct"] for s in sums), "seen": sum(s["seen"] for s in sums),
                "wait": sums[0]["wait"], "seconds": sums[0]["seconds"]}
        if not world.is_main:
            mine = {**mine, "loss_sum": torch.zeros_like(mine["loss_sum"]), "correct": 0, "seen": 0}
    return Partial(batches, mine["loss_sum"], mine["correct"], mine["seen"], mine["wait"], mine["seconds"],
                   world.mine(entry.get("rng_at_start_ranks")) or entry.get("rng_at_start") or {})


__all__ = ["Partial", "Check", "agreed", "batches_from", "record", "resumed"]
