"""One writer at a time per run directory: fit, resume and --overwrite (and any later command that writes into a
run, such as a report) hold `RunLock` while they write.

The lock is `fcntl.flock` on `RUN/.nettrain-lock`. The kernel releases it when the holder's process ends, however
it ends (kill -9 included), so a dead holder is never in the way and there is nothing stale to clean up. The file
holds the holder's pid, host, command and start time as text, for the message a second writer gets. The file is
never deleted: a writer that unlinked it could let two others lock two different files of the same name.
"""
from __future__ import annotations

import fcntl
import os
import shlex
import socket
import sys
import time
from pathlib import Path

from .files import open_lock, read_text, write_error, FileError
from .errors import NettrainError

LOCK_NAME = ".nettrain-lock"


class RunLockedError(NettrainError):
    """Another process is writing into the run directory."""


class RunLock:
    """`with RunLock(run_dir): ...`, or acquire() / release(). Not reentrant."""

    def __init__(self, run_dir, command: str = None):
        self.path = Path(run_dir) / LOCK_NAME
        program = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
        program = "nettrain" if program == "__main__.py" else program   # python -m nettrain
        self.command = command or shlex.join([program] + sys.argv[1:])
        self._fd = None

    def acquire(self) -> "RunLock":
        fd = open_lock(self.path, root=self.path.parent)   # never through a link planted as the lock, never a FIFO
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(fd)
            os.close(fd)
            raise RunLockedError(f"{self.path.parent} is in use by another nettrain process ({holder}); wait for it "
                                 f"to finish or stop it, or choose another --run-dir") from None
        try:
            text = (f"pid {os.getpid()}\nhost {socket.gethostname()}\ncommand {self.command}\n"
                    f"since {time.strftime('%Y-%m-%d %H:%M:%S %Z')}\n")
            os.ftruncate(fd, 0)
            os.pwrite(fd, text.encode(), 0)
        except OSError as e:
            os.close(fd)
            raise write_error(self.path, e) from None
        self._fd = fd
        return self

    def release(self):
        if self._fd is not None:
            os.close(self._fd)   # closing the descriptor releases the flock
            self._fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def holder(run_dir) -> dict:
    """What the lock file says of its last holder: {pid, host, command, since} (empty when there is none)."""
    try:
        text = read_text(Path(run_dir) / LOCK_NAME, 64 * 1024, "lock file", follow=False, errors="replace")
    except (OSError, FileError):
        return {}
    return dict(line.split(" ", 1) for line in text.splitlines() if " " in line)


def _read(fd: int) -> str:
    try:
        text = os.pread(fd, 4096, 0).decode("utf-8", "replace")
    except OSError:
        text = ""
    info = dict(line.split(" ", 1) for line in text.splitlines() if " " in line)
    if not info:
        return "holder unknown"
    return f"pid {info.get('pid', '?')} on {info.get('host', '?')}, running {info.get('command', '?')!r} " \
           f"since {info.get('since', '?')}"
