"""Writing a file so that a reader, a kill -9, a full disk or a read-only folder never leaves half of one.

Every file nettrain writes into a run directory goes through `write_file`: the new content goes to a temporary
next to the target and replaces it with one rename, so a reader sees the old file or the new one. A write that
fails (disk full, read-only, no permission) removes its temporary and raises one line saying what happened; the
previous file is left as it was.
"""
from __future__ import annotations

import errno
import os
from pathlib import Path

from .errors import NettrainError


class WriteError(NettrainError):
    """A file that could not be written: a full disk, a read-only or forbidden folder."""


def temporary(path: Path) -> Path:
    """The name a write of `path` uses until it is complete (--overwrite also removes these)."""
    return path.with_name(f".{path.name}.tmp")


def write_file(path, write, sync: bool = False):
    """Call `write(tmp)` to fill a temporary, then rename it onto `path`. `sync` flushes it to the disk first
    (checkpoints: a power cut must not leave a renamed but empty file)."""
    path = Path(path)
    tmp = temporary(path)
    try:
        write(tmp)
        if sync:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise write_error(path, e) from None
    except BaseException:   # torch.save wraps the disk's error in its own (RuntimeError), and Ctrl-C: no temporary
        try:
            tmp.unlink()
        except OSError:
            pass
        raise


def write_text(path, text: str, sync: bool = False):
    def write(tmp):
        with open(tmp, "w", newline="", encoding="utf-8") as f:   # newline="": csv's own line ends are kept
            f.write(text)
    write_file(path, write, sync)


def write_error(path: Path, e: OSError) -> WriteError:
    """One line for an OSError met while writing `path`."""
    path = Path(path)
    if e.errno == errno.ENOSPC or e.errno == errno.EDQUOT:
        return WriteError(f"disk full while writing {path}; free space on that disk and run again (nettrain fit "
                          f"--resume {path.parent} continues a run); the previous {path.name} is intact")
    if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return WriteError(f"cannot write into {path.parent} ({os.strerror(e.errno)}); make it writable, or choose "
                          f"another --run-dir")
    return WriteError(f"cannot write {path} ({e.strerror or e}); check the disk and the folder, then run again")
