"""Files are data: the one place nettrain opens a file to read, writes one, makes a folder or deletes one.

A run folder may come from elsewhere (a download, an archive, a colleague's share), so what is in it is never
trusted to be what its name says:

- **Reads** (`read_bytes`, `read_text`, `open_read`) open without blocking and check, on the open descriptor, that
  the file is a regular file no larger than a limit given per kind of file: a FIFO, a device (`/dev/zero`), a
  directory or a file past the limit is one line naming it, never a hang or a memory blow-up.
- **Writes** (`write_file`, `write_text`, `append_text`) fill a temporary created exclusively under a random name
  (`O_CREAT | O_EXCL | O_NOFOLLOW`) and rename it onto the target, inside a folder reached from `root` one
  component at a time without following a link: a link planted where nettrain writes (the target, the lock, a
  temporary's name, a folder such as `figures -> ~/Pictures`) is never written through. The rename replaces a link
  at the target itself, not what it points to. A reader sees the old file or the new one; a failed write removes
  its temporary and raises one line, the previous file left as it was.
- **Folders** (`make_dir`) are made one component at a time below `root` and opened without following a link, so
  `tensorboard -> elsewhere` or `hang -> elsewhere` is refused before anything writes into it; `new_dir` makes a
  new run folder exclusively (a name already taken is never reused).
- **Deletes** (`remove`) unlink a name inside `root` reached the same way, so a record naming `sub/.bashrc` with
  `sub -> ~` deletes nothing outside the run.

No other module writes, makes a folder or deletes (tests/test_links.py reads every module to check it).

`root` is the folder the user chose (a run directory, compare's --out): links on the way to it are the user's own
(a home on another disk); below it, none is followed.
"""
from __future__ import annotations

import errno
import os
import secrets
import stat
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Optional

from .errors import NettrainError, printable as _p

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
# Limits by kind of file: each is far past what nettrain writes or a user gives, and far below what would exhaust
# the 24 GiB of a small machine once decoded.
LIMITS = {
    "config": 4 * MiB,          # a config is about 2 KiB
    "json": 64 * MiB,           # run files, sidecars (a 50,000-word vocabulary is about 1 MiB)
    "csv": 4 * GiB,             # the user's table or text file (SMS spam: 0.5 MiB)
    "text": 64 * MiB,           # one text of a folder of texts (an IMDB review: about 1 KiB)
    "image": 256 * MiB,         # one image file (Pillow also refuses decompression bombs)
    "checkpoint": 16 * GiB,     # a .pt file (resnet18 with Adam: about 130 MiB)
    "onnx": 16 * GiB,
    "npz": 16 * GiB,
    "idx": 4 * GiB,             # an MNIST-format file, also once unpacked from gzip (MNIST's largest: 47 MiB)
}
_KINDS = {stat.S_IFIFO: "a FIFO (named pipe)", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
          stat.S_IFSOCK: "a socket", stat.S_IFDIR: "a directory", stat.S_IFLNK: "a symbolic link"}


class FileError(NettrainError):
    """A file that cannot be read or written as nettrain must: not regular, too large, a link, a full disk."""


class WriteError(FileError):
    """A file that could not be written: a full disk, a read-only or forbidden folder, a link in the way."""


def _what(mode: int) -> str:
    return _KINDS.get(stat.S_IFMT(mode), "not a regular file")


def _size(n: int) -> str:
    for unit, size in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if n >= size:
            return f"{n / size:g} {unit}"
    return f"{n} bytes"


# ---- reading ----

def _open_regular(path, limit: int, what: str, follow: bool = True) -> int:
    """A descriptor of `path` checked to be a regular file of at most `limit` bytes. O_NONBLOCK: opening a FIFO
    returns at once instead of waiting for a writer."""
    path = Path(path)
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise FileError(f"{what} {_p(path)} does not exist; check the path") from None
    except OSError as e:
        if e.errno == errno.ELOOP and not follow:
            raise FileError(f"{what} {_p(path)} is a symbolic link, which nettrain does not follow here; replace it "
                            f"with the file itself") from None
        raise FileError(f"cannot read {what} {_p(path)} ({e.strerror}); check the file and its permissions") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise FileError(f"{what} {_p(path)} is {_what(st.st_mode)}, not a regular file; give a file")
        if st.st_size > limit:
            raise FileError(f"{what} {_p(path)} is {_size(st.st_size)}, past the {_size(limit)} a {what} may have; "
                            f"check that it is the right file")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextmanager
def open_read(path, limit: int, what: str = "file", follow: bool = True, text: bool = False, **kwargs):
    """`with open_read(path, LIMITS["csv"], "table") as f:` a file object (binary, or text with `text` and open()'s
    keyword arguments) of a regular file of at most `limit` bytes."""
    fd = _open_regular(path, limit, what, follow)
    with os.fdopen(fd, "r" if text else "rb", **kwargs) as f:
        yield f


def read_bytes(path, limit: int, what: str = "file", follow: bool = True) -> bytes:
    """The whole of a regular file of at most `limit` bytes. Read for its size as checked plus one byte, never for
    `limit` (read(n) allocates n bytes first: 16 GiB for a checkpoint's limit); a file that grows is refused."""
    fd = _open_regular(path, limit, what, follow)
    with os.fdopen(fd, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        data = f.read(size + 1)
        while len(data) <= limit and (more := f.read(min(limit + 1 - len(data), 1 << 20))):
            data += more
    if len(data) > limit:
        raise FileError(f"{what} {_p(path)} grew past the {_size(limit)} a {what} may have while it was read")
    return data


def read_text(path, limit: int, what: str = "file", follow: bool = True, errors: str = "strict",
              encoding: str = "utf-8") -> str:
    """`read_bytes` decoded; text that is not UTF-8 (with errors="strict") is one line naming the byte."""
    data = read_bytes(path, limit, what, follow)
    try:
        return data.decode(encoding, errors)
    except UnicodeDecodeError as e:
        raise FileError(f"{what} {_p(path)} is not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}); save "
                        f"it as UTF-8") from None


def is_regular(path) -> bool:
    """Is `path` a regular file (following links)? Never opens it, so a FIFO cannot block."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


# ---- the way to a folder, with no link below the root ----

def _parts(path: Path, root: Optional[Path]) -> tuple:
    """(root, the components from root to path's parent, path's name)."""
    path = Path(path)
    if root is None:
        return path.parent, (), path.name
    root = Path(root)
    try:
        rel = path.relative_to(root)
    except ValueError:
        raise FileError(f"{_p(path)} is not inside {_p(root)}; nettrain writes only inside the folder it was "
                        f"given") from None
    if not rel.parts or ".." in rel.parts:
        raise FileError(f"{_p(path)} is not a file inside {_p(root)}; nettrain writes only inside the folder it "
                        f"was given")
    return root, rel.parts[:-1], rel.parts[-1]


def _open_dir(root: Path, parts, create: bool = False) -> int:
    """A descriptor of root/parts..., each component opened without following a link (made when `create`)."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
    try:
        fd = os.open(root, flags | os.O_NOFOLLOW)
    except OSError as e:
        raise _dir_error(root, e) from None
    here = root
    try:
        for part in parts:
            here = here / part
            if create:
                try:
                    os.mkdir(part, 0o755, dir_fd=fd)
                except FileExistsError:
                    pass
                except OSError as e:   # a read-only or full disk, a forbidden folder
                    raise _dir_error(here, e) from None
            try:
                child = os.open(part, flags | os.O_NOFOLLOW, dir_fd=fd)
            except OSError as e:
                raise _dir_error(here, e) from None
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def _dir_error(path: Path, e: OSError) -> FileError:
    if e.errno in (errno.ELOOP, errno.ENOTDIR, errno.EEXIST) and os.path.islink(path):
        return WriteError(f"{_p(path)} is a symbolic link (to {_p(os.readlink(path))}), and nettrain does not write "
                          f"through "
                          f"links; remove the link, or choose another folder")
    if e.errno == errno.ENOTDIR:
        return WriteError(f"{_p(path)} is a file where nettrain needs a folder; move it away, or choose another folder")
    return write_error(path, e)


def make_dir(path, root=None) -> Path:
    """Make `path` (and its parents below `root`) as real folders, refusing any link on the way; returns it.
    Without `root`, the user's own path is made as given and only its last component must not be a link."""
    path = Path(path)
    if root is None:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as e:   # a dangling link or a file in its place, a read-only disk
            raise _dir_error(path, e) from None
        os.close(_open_dir(path, ()))
        return path
    base, parts, name = _parts(path, root) if Path(path) != Path(root) else (Path(root), (), None)
    os.close(_open_dir(base, parts + ((name,) if name else ()), True))
    return path


def new_dir(path) -> bool:
    """Make the folder `path`, which must not exist yet: False when its name is taken (by a run started in the same
    second, or anything else: never reused). Its parents are the user's own place and are made as needed, following
    a link among them (runs -> /data/runs); the new folder itself is real, made by this call."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _dir_error(path.parent, e) from None
    try:
        path.mkdir()
    except FileExistsError:
        return False
    except OSError as e:
        raise _dir_error(path, e) from None
    return True


# ---- writing ----

def temporary_prefix(path: Path) -> str:
    """The start of the names a write of `path` uses until it is complete: `.NAME.` then random hex, then `.tmp`
    (--overwrite removes what a kill left of these)."""
    return f".{Path(path).name}."


def write_file(path, write: Callable, sync: bool = False, root=None):
    """Call `write(f)` with a binary file object to fill a new temporary beside `path`, then rename it onto
    `path`. `sync` flushes it to the disk first (checkpoints: a power cut must not leave a renamed but empty
    file). `root`: the folder the write must stay in (the run directory); none of the folders below it may be a
    link. Without `root`, the target's own folder must not be a link."""
    path = Path(path)
    base, parts, name = _parts(path, root)
    dfd = _open_dir(base, parts)
    had = _exists(name, dfd)
    try:
        tmp, fd = _new_temporary(name, dfd, lambda e: write_error(path, e, had, base))
        try:
            with os.fdopen(fd, "wb") as f:
                write(f)
                f.flush()
                if sync:
                    os.fsync(f.fileno())
            os.replace(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        except OSError as e:
            _unlink_quietly(tmp, dfd)
            if e.errno == errno.EISDIR:
                raise WriteError(f"{_p(path)} is a folder where nettrain writes a file; move it away, or choose "
                                 f"another "
                                 f"folder") from None
            raise write_error(path, e, had, base) from None
        except BaseException:   # torch.save wraps the disk's error in its own (RuntimeError), and Ctrl-C
            _unlink_quietly(tmp, dfd)
            raise
    finally:
        os.close(dfd)


def _new_temporary(name: str, dfd: int, error: Callable) -> tuple:
    """(name, descriptor) of a new, empty temporary for `name` in the folder `dfd`. O_EXCL | O_NOFOLLOW: whatever
    is already there under the chosen name (a link planted to catch the write) is never opened; another random name
    is drawn instead (48 bits: a name met by chance, never one guessed ahead)."""
    for _ in range(8):
        tmp = f".{name}.{secrets.token_hex(6)}.tmp"
        try:
            return tmp, os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644,
                                dir_fd=dfd)
        except FileExistsError:
            continue
        except OSError as e:
            raise error(e) from None
    raise error(OSError(errno.EEXIST, "every temporary name tried was taken"))


def write_text(path, text: str, sync: bool = False, root=None):
    write_file(path, lambda f: f.write(text.encode("utf-8")), sync, root)


def write_bytes(path, data: bytes, sync: bool = False, root=None):
    write_file(path, lambda f: f.write(data), sync, root)


def append_text(path, text: str, root=None):
    """Append `text` to `path` (made if absent), never through a link: one short write, whole or absent after a
    kill."""
    path = Path(path)
    base, parts, name = _parts(path, root)
    dfd = _open_dir(base, parts)
    try:
        fd = os.open(name, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                     0o644, dir_fd=dfd)
    except OSError as e:
        raise _link_or_write_error(path, e) from None
    finally:
        os.close(dfd)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise WriteError(f"{_p(path)} is {_what(os.fstat(fd).st_mode)}, not a regular file; remove it")
        os.write(fd, text.encode("utf-8"))
    except OSError as e:
        raise write_error(path, e) from None
    finally:
        os.close(fd)


def open_lock(path, root=None) -> int:
    """A read-write descriptor of the lock file `path` (made if absent), never through a link, and only of a
    regular file (a FIFO planted as the lock neither blocks nor is written). `root`: as for write_file."""
    path = Path(path)
    base, parts, name = _parts(path, root)
    dfd = _open_dir(base, parts)
    try:
        fd = os.open(name, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o644, dir_fd=dfd)
    except OSError as e:
        raise _link_or_write_error(path, e) from None
    finally:
        os.close(dfd)
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise WriteError(f"{_p(path)} is {_what(mode)}, not nettrain's lock file; remove it, then run again")
    return fd


def _link_or_write_error(path: Path, e: OSError) -> FileError:
    if e.errno == errno.ELOOP:
        return WriteError(f"{_p(path)} is a symbolic link, and nettrain does not write through links; remove it, then "
                          f"run again")
    return write_error(path, e)


# ---- deleting ----

def _folder_of(path: Path, root) -> Optional[tuple]:
    """(a descriptor of `path`'s folder, reached from `root` without following a link; `path`'s name), or None when
    a folder on the way is a link, missing or outside `root`."""
    try:
        base, parts, name = _parts(Path(path), root)
        return _open_dir(base, parts), name
    except FileError:
        return None


def remove(path, root) -> bool:
    """Delete the file `path` inside `root` (a link there is removed itself, never what it points to); the folders
    on the way must be real folders below `root`. False when it was not there (or a folder on the way is a link:
    then nothing is deleted)."""
    if (found := _folder_of(path, root)) is None:
        return False
    dfd, name = found
    try:
        st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            return False
        os.unlink(name, dir_fd=dfd)
        return True
    except FileNotFoundError:
        return False
    except OSError as e:
        raise write_error(Path(path), e) from None
    finally:
        os.close(dfd)


def remove_dir(path, root) -> bool:
    """Remove the folder `path` inside `root` if it is empty and a real folder; False otherwise."""
    if (found := _folder_of(path, root)) is None:
        return False
    dfd, name = found
    try:
        os.rmdir(name, dir_fd=dfd)
        return True
    except OSError:
        return False
    finally:
        os.close(dfd)


def temporaries(path, root) -> list:
    """The temporaries a write of `path` (inside `root`) left behind: `.NAME.<hex>.tmp`, and the older `.NAME.tmp`."""
    path = Path(path)
    if (found := _folder_of(path, root)) is None:
        return []
    dfd, name = found
    try:
        names = os.listdir(dfd)
    except OSError:
        return []
    finally:
        os.close(dfd)
    prefix = f".{name}."
    return [path.with_name(n) for n in names
            if n == f".{name}.tmp" or (n.startswith(prefix) and n.endswith(".tmp")
                                        and all(c in "0123456789abcdef" for c in n[len(prefix):-4]))]


def _exists(name: str, dfd: int) -> bool:
    try:
        os.stat(name, dir_fd=dfd, follow_symlinks=False)
        return True
    except OSError:
        return False


def _unlink_quietly(name: str, dfd: int):
    try:
        os.unlink(name, dir_fd=dfd)
    except OSError:
        pass


def write_error(path, e: OSError, had: Optional[bool] = None, root=None) -> WriteError:
    """One line for an OSError met while writing `path`. `had`: whether a previous file was there (the message
    says it is intact only when there was one). `root`: the run directory the hint to resume names (default: the
    file's folder; figures/x.png is written into its run, not into figures/)."""
    path = Path(path)
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        kept = f"; the previous {path.name} is intact" if had else ""
        return WriteError(f"disk full while writing {_p(path)}; free space on that disk and run again (nettrain fit "
                          f"--resume {root if root is not None else path.parent} continues a run){kept}")
    if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return WriteError(f"cannot write into {_p(path.parent)} ({os.strerror(e.errno)}); make it writable, or choose "
                          f"another --run-dir")
    if e.errno == errno.ELOOP:
        return WriteError(f"{_p(path)} is a symbolic link, and nettrain does not write through links; remove it, then "
                          f"run again")
    return WriteError(f"cannot write {_p(path)} ({e.strerror or e}); check the disk and the folder, then run again")
