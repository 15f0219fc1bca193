"""The hang watchdog of a job of many processes: a rank that waits in a collective for longer than `dist.timeout`
(another rank died, hangs or called another collective) ends the job in seconds, not after NCCL's 10 or gloo's 30
minutes, with every rank's Python stack in the run directory (RUN/hang/rank{R}.txt) and one line naming the stuck
rank and the call it was in.

Each process of a job (world size > 1) runs a watchdog thread. The main thread arms it for each training step
(`steps`: DDP's gradient all-reduce happens inside loss.backward) and for each of nettrain's own collectives
(`guard`, engine/distributed.py's World). When an armed step or collective has lasted `dist.timeout` seconds, the
thread raises a flag in the job's store (the TCPStore of torchrun's agent, engine/elastic.py); every rank's thread
polls that flag each second, so all of them, the stuck one too, write their stacks (faulthandler.dump_traceback of
every thread) and say in the store what their main thread is in. The first rank to see the hang waits for those
answers (GRACE seconds at most: a rank stuck holding Python's lock cannot answer), prints the one line, and every
rank ends with exit code 2; under `--max-restarts` torchrun then restarts the job, which resumes the run.

The stuck rank is the one outside any collective while the others wait in one (gloo: a collective blocks its
caller); under NCCL, whose collectives return at once, a waiting rank runs on to its next device sync, so the ranks
outside a collective that are furthest behind in steps are the stuck ones (untested: no GPU has been lent yet).

Python's threads cannot run while a C extension holds the interpreter's lock: for that case torch's own timeout,
set by `backstop` on the process group, still ends a collective (gloo raises, NCCL's watchdog aborts).
"""
from __future__ import annotations

import contextlib
import faulthandler
import json
import os
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Optional

from . import elastic
from ..files import FileError, make_dir, write_file

# Seconds the first rank to see a hang waits for the other ranks' stacks: they poll the store each second
# (POLL_MAX) and write a stack in milliseconds, so 10 s is only ever spent on a rank that cannot answer.
GRACE = 10.0
POLL_MAX = 1.0
EXIT_CODE = 2   # as for a user error: the command said in one line what happened and what to do
STEP = "a training step"

# (tests only) "RANK:STEP": that rank stops answering (sleeps) at the start of that training step, counted from 1
# over the whole run, on a job's first attempt (a restarted one runs on); read once, unset in real use.
_INJECTED_HANG = (os.environ.get("NETTRAIN_TEST_HANG") or None) if elastic.restart_count() == 0 else None

_active: Optional["Watchdog"] = None   # this process's watchdog while a job of many processes trains


def backstop(timeout: float) -> float:
    """The process group's own timeout: past the watchdog's report (timeout + GRACE), so that it is the watchdog
    that speaks, but still ending a collective that Python's threads cannot see (twice the timeout and 30 s more:
    640 s for the default 300, against gloo's default 1,800)."""
    return 2 * timeout + GRACE + 30


class Watchdog:
    """This rank's watchdog (see the module's docstring). `arm`/`disarm` are two attribute writes: cheap enough
    for every step."""

    def __init__(self, rank: int, size: int, timeout: float):
        self.rank, self.size, self.timeout = rank, size, timeout
        self.poll = min(POLL_MAX, timeout / 4)   # a short test timeout (2 s) is still watched 4 times over
        self.armed_at: Optional[float] = None
        self.what: Optional[str] = None
        self.step = 0
        self.folder: Optional[Path] = None   # RUN/hang, once World.run knows the run (every rank: it broadcasts it)
        self._stopped = threading.Event()
        try:   # None without torchrun's agent: each rank then reports alone what it sees
            self._store = elastic.connect()
        except Exception:
            self._store = None
        # the keys of this attempt: a restarted job (--max-restarts) keeps its store, and must not see the old flag
        self._prefix = f"hang/{elastic.restart_count()}/"
        self._thread = threading.Thread(target=self._watch, name="nettrain-watchdog", daemon=True)

    # ---- the main thread's side ----
    def arm(self, what: str):
        self.what, self.armed_at = what, time.monotonic()

    def disarm(self):
        self.armed_at = None

    def start(self):
        self._thread.start()

    def stop(self):
        self._stopped.set()
        self._thread.join(timeout=2 * self.poll)

    # ---- the watchdog thread ----
    def _key(self, name: str) -> str:
        return elastic.key(self._prefix + name)

    def _watch(self):
        while not self._stopped.wait(self.poll):
            armed_at = self.armed_at
            overdue = armed_at is not None and time.monotonic() - armed_at > self.timeout
            try:
                flagged = not overdue and self._store is not None and self._store.check([self._key("flag")])
            except Exception:   # the store's agent is gone: the job is ending anyway
                return
            if overdue or flagged:
                self._hang(first=overdue)
                return

    def _hang(self, first: bool):
        """Write this rank's stacks, say where its main thread is, and end the job (reporting it, if first)."""
        summary = self.summary()
        self._dump(summary)
        store = self._store
        reporter = store is None
        if store is not None:
            try:
                store.set(self._key(f"rank{self.rank}"), json.dumps(summary))
                if first:
                    reporter = store.add(self._key("first"), 1) == 1   # one reporter, however many time out
                    store.set(self._key("flag"), str(self.rank))
            except Exception:
                reporter = first
        if reporter:
            summaries = self._answers() if store is not None else {self.rank: summary}
            print(f"nettrain: error: {describe(summaries, self.size, self.timeout, self.folder)}", file=sys.stderr,
                  flush=True)
            _store_set(store, self._key("reported"), "1")
        else:   # until the reporter has spoken: torchrun stops the others when the first process ends
            self._wait([self._key("reported")], GRACE + 5)
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(EXIT_CODE)   # the main thread is stuck: only the process's end frees it

    def _answers(self) -> dict:
        keys = {r: self._key(f"rank{r}") for r in range(self.size)}
        self._wait(list(keys.values()), GRACE)
        out = {}
        for r, k in keys.items():
            with contextlib.suppress(Exception):
                if self._store.check([k]):
                    out[r] = json.loads(self._store.get(k).decode())
        return out

    def _wait(self, keys: list, seconds: float):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                if all(self._store.check([k]) for k in keys):
                    return
            except Exception:
                return
            time.sleep(0.1)

    def summary(self) -> dict:
        """Where this rank's main thread is: the collective it waits in (None: it is not in one) and its innermost
        call, read from its frame."""
        armed_at = self.armed_at
        frame = sys._current_frames().get(threading.main_thread().ident)
        stack = traceback.extract_stack(frame) if frame is not None else []
        what = self.what if armed_at is not None else None
        call = _where(stack[-1]) if stack else "an unknown place"
        return {"rank": self.rank, "collective": _collective(stack, what), "call": call, "what": what,
                "step": self.step, "seconds": round(time.monotonic() - armed_at, 2) if armed_at is not None else None}

    def _dump(self, summary: dict):
        """faulthandler's dump of every thread's stack into RUN/hang/rank{R}.txt (on stderr when this rank does not
        see the run directory: before it is known, or on another machine), written whole or not at all."""
        what, step = summary["what"], summary["step"]
        doing = f"{summary['seconds']:g} s into training step {step}" if what == STEP else \
            f"{summary['seconds']:g} s into {what}, after training step {step}" if what else \
            f"in no step or collective, after training step {step}"
        head = (f"nettrain watchdog: rank {self.rank} of {self.size} (dist.timeout {self.timeout:g} s): its main "
                f"thread is in {summary['call']}" + (f", waiting in {summary['collective']}" if summary["collective"]
                                                     else "") + f", {doing}\n\n")
        if self.folder is None or not self.folder.parent.is_dir():
            sys.stderr.write(head)
            faulthandler.dump_traceback(sys.stderr, all_threads=True)
            return
        path, run = self.folder / f"rank{self.rank}.txt", self.folder.parent

        def stacks(f):   # faulthandler writes to the file's descriptor: what Python buffered goes first
            f.write(head.encode("utf-8"))
            f.flush()
            faulthandler.dump_traceback(f, all_threads=True)
        try:   # files.py: a real hang/ folder of the run, never a link planted in its place
            write_file(make_dir(self.folder, root=run) / path.name, stacks, root=run)
        except (OSError, FileError) as e:
            sys.stderr.write(f"nettrain: {e}; the stacks:\n{head}")
            faulthandler.dump_traceback(sys.stderr, all_threads=True)


def _store_set(store, k: str, v: str):
    if store is not None:
        with contextlib.suppress(Exception):
            store.set(k, v)


def _short(filename: str) -> str:
    """A frame's file as one line shows it: its last three parts (nettrain/engine/loop.py, torch/autograd/graph.py)."""
    return "/".join(Path(filename).parts[-3:])


def _where(frame) -> str:
    return f"{frame.name} ({_short(frame.filename)}:{frame.lineno})"


def _collective(stack: list, what: Optional[str]) -> Optional[str]:
    """The collective the main thread waits in, named as nettrain called it: the outermost frame of
    torch.distributed (all_reduce, broadcast_object_list...), or loss.backward in a training step (DDP all-reduces
    the gradients inside it); None when it is in none."""
    for frame in stack:
        parts = Path(frame.filename).parts
        if "distributed" in parts and "torch" in parts and "elastic" not in parts and frame.name != "wrapper":
            return f"torch.distributed.{frame.name}"
    if what == STEP and any("autograd" in Path(f.filename).parts for f in stack):
        return "loss.backward (DDP's gradient all-reduce)"
    return None


def describe(summaries: dict, size: int, timeout: float, folder: Optional[Path]) -> str:
    """The one line that ends a hung job: the stuck rank(s) and their call, what the others waited in, where the
    stacks are and what to do."""
    stuck = [s for s in summaries.values() if not s["collective"]]
    waiting = [s for s in summaries.values() if s["collective"]]
    behind = [s for s in stuck if s["step"] == min(t["step"] for t in stuck)]
    if 0 < len(behind) < len(stuck):   # the others ran ahead: NCCL's collectives are asynchronous, and a rank waits
        waiting += [dict(s, collective=f"{s['call']}, at step {s['step']} (a wait on the device)") for s in stuck
                    if s not in behind]   # at its next device sync, not in a collective's frame
        stuck = behind
    silent = [r for r in range(size) if r not in summaries]
    parts = [f"rank {s['rank']} of {size} is stuck in {s['call']}" + (f" (training step {s['step']})"
                                                                       if s["what"] == STEP else "") for s in stuck]
    if silent:
        parts.append(f"rank {', '.join(map(str, silent))} gave no stack (it died, or is stuck in C code holding "
                     f"Python's lock)")
    by_call: dict = {}
    for s in waiting:
        by_call.setdefault(s["collective"], []).append(str(s["rank"]))
    waits = "; ".join(f"rank {', '.join(ranks)} in {call}" for call, ranks in by_call.items())
    if parts:
        line = ", ".join(parts) + (f", while the others waited for it over {timeout:g} s (dist.timeout): {waits}"
                                   if waits else f": no progress for {timeout:g} s (dist.timeout)")
    else:   # every rank is in a collective, and they are not the same one
        line = f"the ranks waited over {timeout:g} s (dist.timeout) in collectives that do not match: {waits}"
    where = f"in {folder}/rank*.txt" if folder is not None else "on stderr"
    return (f"{line}; every rank's Python stack is {where}; find there what the stuck rank waits for, or give "
            f"--dist.timeout more than {timeout:g} if a step can take that long")


@contextlib.contextmanager
def watching(world, timeout: Optional[float]):
    """A watchdog for this process inside the block when it is one of many (world.size > 1) and `timeout` is set."""
    global _active
    if world.size == 1 or not timeout:
        yield None
        return
    dog = Watchdog(world.rank, world.size, timeout)
    dog.start()
    _active = dog
    try:
        yield dog
    finally:
        _active = None
        dog.stop()


def attach(run) -> None:
    """The run directory (runs.RunDir, or distributed.NullRun of its path on the other ranks) the stacks go into;
    the main rank records every rank's file in the run's record first, so --overwrite knows them."""
    dog = _active
    if dog is None:
        return
    if run.writes:
        for r in range(dog.size):
            run.claim(run.hang / f"rank{r}.txt")
    dog.folder = run.hang


@contextlib.contextmanager
def guard(what: str):
    """Armed inside the block (one of nettrain's collectives), then as before it (a collective inside a step)."""
    dog = _active
    if dog is None:
        yield
        return
    before = dog.what, dog.armed_at
    dog.arm(what)
    try:
        yield
    finally:
        dog.what, dog.armed_at = before


def steps(batches):
    """The training batches, with the watchdog armed from each batch's arrival until the next one is asked for (the
    step: forward, backward with DDP's all-reduce, optimizer); `batches` itself without a watchdog."""
    return batches if _active is None else _Steps(batches, _active)


class _Steps:
    def __init__(self, batches, dog: Watchdog):
        self._batches, self._dog = batches, dog

    def __len__(self):
        return len(self._batches)

    def __getattr__(self, name):   # set_epoch, num_samples, notes...: the batches' own
        if name in ("_batches", "_dog"):
            raise AttributeError(name)
        return getattr(self._batches, name)

    def __iter__(self):
        return self._watched(iter(self._batches))

    def iterate(self, start: int = 0):
        """From batch `start` on (a resume in the middle of an epoch, engine/stop.py), each step watched as well."""
        return self._watched(self._batches.iterate(start))

    def _watched(self, batches):
        dog = self._dog
        try:
            for batch in batches:
                dog.step += 1
                dog.arm(STEP)
                if _INJECTED_HANG == f"{dog.rank}:{dog.step}":
                    _injected_hang()
                yield batch
                dog.disarm()   # the next batch's wait is the data's, not a collective's
        finally:
            dog.disarm()


def _injected_hang():
    time.sleep(3600)   # (tests only, NETTRAIN_TEST_HANG) this rank stops answering, as a deadlocked one does


__all__ = ["Watchdog", "watching", "attach", "guard", "steps", "backstop", "describe", "GRACE", "EXIT_CODE"]
