"""SIGTERM and SIGHUP stop the `nettrain` command the way Ctrl-C does: the run says which epoch its last.pt keeps
and how to continue, and the command exits 128 + the signal's number (130 for Ctrl-C), as a shell expects.

Only the command installs these handlers (`stop_signals`), and puts the previous ones back: the Python API leaves
a program's signal handling alone.

While training (`flagged`), a stop signal only sets a flag (`pending`): the training loop reads it at the next
optimizer-step boundary (agreed among torchrun's processes there: engine/distributed.py), keeps the epoch in
progress in last.pt and stops then (engine/stop.py), so that a stop loses no step, and every process stops after
the same step.
"""
from __future__ import annotations

import contextlib
import signal


class Stopped(KeyboardInterrupt):
    """A stop signal other than SIGINT, raised where the program was, as Python raises KeyboardInterrupt."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


STOP_SIGNALS = [s for s in (signal.SIGINT, getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None))
                if s is not None]
# The last stop signal received inside `stop_signals`, or None. Raised inside a C extension's import or a
# destructor, the KeyboardInterrupt can come out as another exception (an ImportError, a SystemError): the
# command reads this to answer it as the stop it was.
received = None


_deferring = False
_pending = None
_flagging = None   # inside `flagged`: whether a second signal stops at once
_flag = 0          # the stop signal received inside `flagged`, 0 for none


def _raise(signum, frame):
    global received, _pending, _flag
    received = signum
    if _deferring:
        _pending = signum
        return
    if _flagging is not None and not (_flag and _flagging):
        _flag = _flag or signum
        return
    raise stop(signum)


def stop(signum: int) -> KeyboardInterrupt:
    """The exception that stops the command for `signum`."""
    return KeyboardInterrupt() if signum == signal.SIGINT else Stopped(signum)


def pending() -> int:
    """The stop signal received inside `flagged` and not yet acted on, or 0: a plain read, for every step."""
    return _flag


@contextlib.contextmanager
def flagged(second_stops: bool = True):
    """Inside the block, a stop signal sets `pending` instead of raising (the training loop stops at the next step
    boundary); with `second_stops`, another one raises at once (a second Ctrl-C when a step takes too long).
    torchrun's processes pass False: the agent forwards the terminal's Ctrl-C to processes that had it already, and
    kills them itself after 30 s. A flag still pending when the block ends is raised then."""
    global _flagging, _flag
    _flagging, _flag = second_stops, 0
    try:
        yield
    finally:
        signum, _flagging, _flag = _flag, None, 0
    if signum:
        raise stop(signum)


@contextlib.contextmanager
def deferred():
    """A stop signal received inside the block is raised when the block ends. For importing torch: a
    KeyboardInterrupt raised inside its C++ start-up was seen to be lost (the run went on), to abort the process, or
    to make Python kill itself with SIGINT after the command had exited 130."""
    global _deferring, _pending
    _deferring, _pending = True, None
    try:
        yield
    finally:
        _deferring = False
    if _pending is not None:
        signum, _pending = _pending, None
        raise stop(signum)


@contextlib.contextmanager
def stop_signals():
    """SIGINT raises KeyboardInterrupt, SIGTERM and SIGHUP `Stopped`, inside the block; `received` records it."""
    global received
    received = None
    previous = {}
    try:
        for s in STOP_SIGNALS:
            previous[s] = signal.signal(s, _raise)
    except ValueError:   # not the main thread: leave the defaults
        pass
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def signal_of(e: BaseException) -> int:
    """The signal an exception answers: Stopped's, SIGINT for a KeyboardInterrupt, else the one received."""
    if isinstance(e, Stopped):
        return e.signum
    return signal.SIGINT if isinstance(e, KeyboardInterrupt) or received is None else received


def exit_code(e: BaseException) -> int:
    return 128 + signal_of(e)


def describe(e: BaseException) -> str:
    signum = signal_of(e)
    return "interrupted" if signum == signal.SIGINT else f"stopped by {signal.Signals(signum).name}"
