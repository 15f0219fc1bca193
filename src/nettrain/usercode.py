"""The one place where a user spec (`package.module:Name`, `path/to/file.py:Name`) becomes an object.

    cls = resolve("my_nets.py:Net", "model")       # an nn.Module subclass (or an nn.Module instance)
    fn = resolve("my_losses:focal", "loss")         # an nn.Module subclass/instance or a plain Python function

What a spec resolves to is type-checked before anything is called: a spec cannot name an arbitrary callable
(`subprocess:run`, `os:system`) and have nettrain call it. A module of the standard library is refused without
being imported: no model, loss or optimizer lives there, and importing some of them has effects (`this`).
Whether a spec may be resolved at all when it comes from a checkpoint or a run directory is trust.py's concern;
what it has verified is imported here exactly (`resolve(..., verified=...)`): the bytes it hashed, from the real
paths it checked, package by package, with nothing else found on the way.
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.machinery
import importlib.util
import inspect
import os
import sys
import traceback
import types
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from . import files
from .callbacks import HOOKS
from .errors import ModelError

# A Python source file nettrain hashes or runs: far past any real one (torch/__init__.py is about 100 KiB), and a
# bound on what a recorded path (a FIFO, /dev/zero) can make nettrain read.
SOURCE_LIMIT = 64 * files.MiB

# kind -> (what it must be, in words; the check)
KINDS = {
    "model": ("a torch.nn.Module subclass (or a torch.nn.Module instance)",
              lambda o: (inspect.isclass(o) and issubclass(o, nn.Module)) or isinstance(o, nn.Module)),
    "optimizer": ("a torch.optim.Optimizer subclass",
                  lambda o: inspect.isclass(o) and issubclass(o, torch.optim.Optimizer)),
    "scheduler": ("a torch.optim.lr_scheduler.LRScheduler subclass",
                  lambda o: inspect.isclass(o) and issubclass(o, torch.optim.lr_scheduler.LRScheduler)),
    "loss": ("an nn.Module subclass or instance, or a Python function f(outputs, targets)",
             lambda o: (inspect.isclass(o) and issubclass(o, nn.Module)) or isinstance(o, nn.Module)
             or isinstance(o, types.FunctionType)),
    # a checkpoint records the collate function fit was given (data/custom.py); only a plain function is called
    "collate": ("a Python function f(items) -> (inputs, targets)", lambda o: isinstance(o, types.FunctionType)),
    "metric": ("a Python function f(outputs, targets) -> float", lambda o: isinstance(o, types.FunctionType)),
    # built without arguments (callbacks.py); named by the user's config or command line only, never a run's
    "callback": ("a class with callback methods (on_fit_start, on_step_end, on_epoch_end, on_fit_end)",
                 lambda o: inspect.isclass(o) and any(callable(getattr(o, hook, None)) for hook in HOOKS)),
}


def _library_dirs() -> tuple:
    """Where code that is not the user's lives: Python's own library, the installed packages (torch), nettrain."""
    import site
    import sysconfig
    dirs = {sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    dirs |= set(site.getsitepackages()) | {str(Path(torch.__file__).parents[1]), str(Path(__file__).parent)}
    return tuple(str(Path(d).resolve()) + "/" for d in dirs if d)


_LIBRARIES = _library_dirs()


def is_library(filename: str) -> bool:
    """Is `filename` (a traceback frame's) Python's, an installed package's or nettrain's, rather than the user's?"""
    return filename.startswith("<") or str(Path(filename).resolve()).startswith(_LIBRARIES)


def user_frame(e: BaseException, file: Optional[str] = None):
    """The innermost traceback frame of `e` in `file` when given (the user's model file), else the innermost one in
    the user's code (not Python's, torch's or nettrain's), else None."""
    frames = traceback.extract_tb(e.__traceback__) if e.__traceback__ else []
    mine = [f for f in frames if f.filename == file] if file is not None else []
    mine = mine or [f for f in frames if not is_library(f.filename)]
    return mine[-1] if mine else None


def raised(e: BaseException, file: Optional[str] = None) -> str:
    """`Type: message at file:line` (one line, no trace): the line is the innermost frame in the user's code, in
    `file` when given (the user's model, not the torch function it called), else where it was raised."""
    if isinstance(e, SyntaxError):
        return f"SyntaxError: {e.msg} at {Path(e.filename or '?').name}:{e.lineno}"
    frames = traceback.extract_tb(e.__traceback__) if e.__traceback__ else []
    message = str(e).strip().splitlines()[0] if str(e).strip() else ""
    frame = user_frame(e, file) or (frames[-1] if frames else None)
    return f"{type(e).__name__}: {message}" + (f" at {Path(frame.filename).name}:{frame.lineno}" if frame else "")


def source_file(obj) -> Optional[str]:
    """The user's source file of a class or of an instance's class, or None for library code (nn.Sequential)."""
    cls = obj if inspect.isclass(obj) else type(obj)
    try:
        path = inspect.getsourcefile(cls)
    except (TypeError, OSError):
        return None
    return path if path and not is_library(path) else None


def split(spec: str, what: str) -> tuple:
    """'where:Name' -> (where, Name); 'pkg.mod.Name' is accepted as 'pkg.mod:Name'."""
    if ":" in spec:
        where, name = spec.rsplit(":", 1)
    elif "." in spec and not spec.endswith(".py"):
        where, name = spec.rsplit(".", 1)
    else:
        raise ModelError(f"{what} {spec!r} is not a registered name nor 'module:Name' / 'file.py:Name'")
    if not where or not name:
        raise ModelError(f"{what} {spec!r} is not 'module:Name' / 'file.py:Name'; give both parts")
    return where, name


def is_file_spec(where: str) -> bool:
    return where.endswith(".py")


def stdlib(where: str) -> bool:
    """Is `where` (a dotted module name) part of Python's standard library? Decided by name, without importing."""
    top = where.split(".")[0]
    return top in sys.stdlib_module_names or top in sys.builtin_module_names


def read_source(path) -> bytes:
    """A source file's bytes: a regular file of at most SOURCE_LIMIT (a FIFO or a device is one line, no hang)."""
    return files.read_bytes(path, SOURCE_LIMIT, "Python file")


def digest(path: Path) -> str:
    return hashlib.sha256(read_source(path)).hexdigest()


def _search_dir(path: Path) -> Path:
    """The folder the import system searched to find the source file `path` (a package's __init__.py is found in
    the folder above its own)."""
    return path.parents[1] if path.name == "__init__.py" else path.parent


def package_folders(chain: list) -> Optional[list]:
    """For each package of `chain` ([(name, real path or None), ...], outermost first) but the last module: the
    folder its submodules are loaded from (a regular package's own; a namespace package's, the one its next module
    is in). None when that cannot be told: a namespace package last, or followed by another."""
    folders = []
    for (name, path), (child, child_path) in zip(chain, chain[1:]):
        if path is None and child_path is None:
            return None
        folders.append(path.parent if path is not None else _search_dir(child_path))
    return folders if chain and chain[-1][1] is not None else None


def _located(name: str, search) -> tuple:
    """(real path of the source module `name` runs or None for a namespace package, the folders its submodules are
    looked for in or None, was it imported already), by the finders alone; ValueError when it cannot be told."""
    module = sys.modules.get(name)
    if module is not None:
        file, path = getattr(module, "__file__", None), getattr(module, "__path__", None)
        if file is None and path is None:
            raise ValueError(name)
        return (Path(file).resolve() if file else None), (list(path) if path is not None else None), True
    if search is None and "." in name:
        raise ValueError(name)   # a submodule of a module that is not a package
    spec = importlib.util.find_spec(name) if search is None else \
        importlib.machinery.PathFinder.find_spec(name, search)   # a top-level name: the finders only, no import
    if spec is None:
        raise ValueError(name)
    if spec.origin is None or not spec.has_location:   # a namespace package: folders, no file
        if spec.submodule_search_locations is None:
            raise ValueError(name)
        return None, list(spec.submodule_search_locations), False
    return Path(spec.origin).resolve(), spec.submodule_search_locations, False


def locate_chain(where: str) -> Optional[list]:
    """Every module `import where` would run, outermost package first, as [(name, real path of its source file or
    None for a namespace package)], found by the finders without importing anything (a parent package's __init__
    is not run). A module already imported counts as what its __file__ names, and a package already imported must
    look for its submodules in the one folder its next module is in. None when it cannot be told (a compiled
    module, a namespace package without a module after it) or for the standard library."""
    if is_file_spec(where) or stdlib(where):
        return None
    parts, chain, searched = where.split("."), [], []
    try:
        search = None
        for i in range(len(parts)):
            name = ".".join(parts[:i + 1])
            path, search, imported = _located(name, search if i else None)
            if path is not None and path.suffix != ".py":
                return None
            chain.append((name, path))
            searched.append((imported, [Path(p).resolve() for p in search or ()]))
    except (ImportError, ValueError, OSError, RuntimeError):   # RuntimeError: a link loop on the way
        return None
    folders = package_folders(chain)
    if folders is None:
        return None
    for (imported, search), folder in zip(searched, folders):
        if imported and search != [folder]:
            return None   # a package imported before looks for its next module elsewhere than where it is
    return chain


def locate(where: str) -> Optional[Path]:
    """The source file `import where` would run (`locate_chain`'s last), or the real path of a file spec."""
    if is_file_spec(where):
        return Path(where).expanduser().resolve()
    chain = locate_chain(where)
    return chain[-1][1] if chain else None


class _VerifiedLoader(importlib.machinery.SourceFileLoader):
    """Runs the bytes that were hashed: never what the file holds by the time it is opened again, nor a cached
    .pyc beside it."""

    def __init__(self, fullname: str, path: Path, source: bytes):
        super().__init__(fullname, str(path))
        self.source = source

    def get_code(self, fullname):
        return compile(self.source, self.path, "exec", dont_inherit=True)


def _is_current_dir(entry, here: str) -> bool:
    return entry in ("", ".") or (isinstance(entry, str) and os.path.realpath(entry) == here)


@contextlib.contextmanager
def _current_dir_unless(root: Path):
    """While verified code runs: the current folder ('' or its path, as `python -m` and `PYTHONPATH=.` put it on
    sys.path) is no place to import from, unless the verified code was found there (`root`). A folder the user
    is in (a download) must not supply a module the trusted code imports by name (`import helpers`)."""
    try:
        here = os.path.realpath(os.getcwd())
    except OSError:   # the current folder was deleted: '' finds nothing there
        here = None
    removed = [(i, p) for i, p in enumerate(sys.path) if here is not None and _is_current_dir(p, here)]
    if here is None or str(root) == here or not removed:
        yield
        return
    original = list(sys.path)
    sys.path[:] = [p for i, p in enumerate(original) if (i, p) not in removed]
    trimmed = list(sys.path)
    try:
        yield
    finally:
        if sys.path == trimmed:
            sys.path[:] = original
        else:   # the code changed sys.path itself: keep its change, put the current folder back where it was
            for i, p in removed:
                sys.path.insert(min(i, len(sys.path)), p)


class _VerifiedFinder:
    """Ahead of every other finder while one verified chain is imported: each of its modules, whoever imports it
    (nettrain, or its package's __init__), is found at its verified path and runs its verified bytes; a namespace
    package looks for its submodules in its one verified folder. Other names: not this finder's."""

    def __init__(self, chain: list, folders: list):
        self.modules = {name: (path, source, folder) for (name, path, source), folder in zip(chain, folders + [None])}

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in self.modules:
            return None
        path, source, folder = self.modules[fullname]
        if path is None:   # the import system gives a spec without a loader a namespace package's
            spec = importlib.machinery.ModuleSpec(fullname, None, is_package=True)
            spec.submodule_search_locations = [str(folder)]
            return spec
        return importlib.util.spec_from_file_location(
            fullname, path, loader=_VerifiedLoader(fullname, path, source),
            submodule_search_locations=[str(path.parent)] if path.name == "__init__.py" else None)


def _import_verified(chain: list):
    """The module `chain`'s last names, imported from exactly the verified files: `chain` is [(name, real path or
    None for a namespace package, the bytes that were hashed)], outermost package first. A module imported before
    must come from its verified file (trust.py checked it; checked again here, after the import)."""
    folders = package_folders([(name, path) for name, path, _ in chain])
    if folders is None:
        raise ModelError(f"cannot tell where the packages of {chain[-1][0]} load their modules from")
    first = chain[0][1]
    finder = _VerifiedFinder(chain, folders)
    with _current_dir_unless(_search_dir(first) if first is not None else folders[0].parent):
        sys.meta_path.insert(0, finder)
        try:
            module = importlib.import_module(chain[-1][0])
        finally:
            sys.meta_path.remove(finder)
    for name, path, _ in chain:
        file = getattr(sys.modules.get(name), "__file__", None)
        if (Path(os.path.realpath(file)) if file else None) != path:
            raise ModelError(f"{name} is imported from {file or 'no file'}, not from {path}, which was verified; "
                             f"start Python again without it")
    return module


def _import_file(where: str, what: str, source: Optional[bytes] = None):
    """The module of a file spec, run from the bytes read (or `source`: the bytes that were verified)."""
    path = Path(os.path.realpath(Path(where).expanduser()))
    if not os.path.lexists(path):
        raise ModelError(f"{what} file {where} does not exist; give the path of a .py file")
    if source is None:
        source = read_source(path)
    module_name = f"nettrain_user_{path.stem}"
    module = sys.modules.get(module_name)
    sha = hashlib.sha256(source).hexdigest()   # an edited file is run again (a notebook)
    if module is None or getattr(module, "__file__", None) != str(path) or \
            getattr(module, "_nettrain_source", None) != sha:
        spec_ = importlib.util.spec_from_file_location(module_name, path,
                                                       loader=_VerifiedLoader(module_name, path, source))
        module = importlib.util.module_from_spec(spec_)
        module._nettrain_source = sha
        sys.modules[module_name] = module   # so checkpoints and pickling can find it again
        try:
            spec_.loader.exec_module(module)
        except BaseException:
            del sys.modules[module_name]   # a file that failed must not be found half-run next time
            raise
    return module


def resolve(spec: str, kind: str, verified: Optional[list] = None, file: Optional[Path] = None):
    """The object `spec` names, checked to be what a `kind` must be (KINDS) before anything of it is called.
    `verified` (trust.py, for a spec a checkpoint names): [(module name, real path, bytes)] of exactly the files
    to run, outermost package first (a file spec: one, its name None); nothing else is imported for it.
    `file`: load a file spec from this path instead, as Python would (where a trusted checkpoint recorded it)."""
    what = kind
    where, name = split(spec, what)
    if not is_file_spec(where) and stdlib(where):
        raise ModelError(f"{what} {spec!r} names the Python standard library module {where.split('.')[0]!r}, "
                         f"which holds no {kind}; give {KINDS[kind][0]} of your own or of a library")
    try:
        if is_file_spec(where) and verified:
            with _current_dir_unless(verified[0][1].parent):
                module = _import_file(str(verified[0][1]), what, verified[0][2])
        elif is_file_spec(where):
            module = _import_file(str(file or where), what)
        else:
            module = _import_verified(verified) if verified else importlib.import_module(where)
    except ModelError:
        raise
    except files.FileError as e:
        raise ModelError(f"{what} {spec!r}: {e}") from None
    except ImportError as e:
        raise ModelError(f"cannot import {where!r} for {what} {spec!r}: {e}; check the module name and that it is "
                         f"on PYTHONPATH") from None
    except Exception as e:   # the user's file itself fails: a syntax error, a line that raises when it runs
        raise ModelError(f"{where} fails to load ({raised(e)}); fix the file") from None
    return _attribute(module, spec, kind, where, name)


def _attribute(module, spec: str, kind: str, where: str, name: str):
    """`module`'s attribute `name` (a qualname: Outer.Inner), checked to be what a `kind` must be."""
    obj = module
    for part in name.split("."):
        if not hasattr(obj, part):
            names = [n for n in dir(module) if not n.startswith("_")]
            raise ModelError(f"{where} has no {name!r} for {kind}; it defines: {', '.join(names[:20])}")
        obj = getattr(obj, part)
    must, check = KINDS[kind]
    if not check(obj):
        got = f"the class {obj.__name__}" if inspect.isclass(obj) else f"a {type(obj).__name__}"
        raise ModelError(f"{kind} {spec!r} is {got}, not {must}; nettrain calls nothing else as a {kind}")
    return obj


def load_object(spec: str, what: str):
    """Kept for callers of the old name: `resolve` for a model."""
    return resolve(spec, what if what in KINDS else "model")


def origin(spec: str) -> Optional[dict]:
    """Where an already resolved spec's code lives, as plain data: {spec, file, name, sha256}, and for a module
    spec its `chain`: every module its import runs, outermost package first, as [{module, file, sha256}] (a
    namespace package's file and sha256 null). None when it has no source file (a class defined in a function or
    a notebook cell) or it cannot be told without importing."""
    try:
        where, name = split(spec, "spec")
    except ModelError:
        return None
    if "<locals>" in name or where == "__main__":
        return None
    try:
        if is_file_spec(where):
            path = locate(where)
            return {"spec": spec, "file": str(path), "name": name, "sha256": digest(path)}
        chain = locate_chain(where)
        if chain is None:
            return None
        links = [{"module": module, "file": str(path) if path else None, "sha256": digest(path) if path else None}
                 for module, path in chain]
    except (files.FileError, OSError, RuntimeError):   # gone, not a regular file, a link loop
        return None
    return {"spec": spec, "file": links[-1]["file"], "name": name, "sha256": links[-1]["sha256"], "chain": links}


def check_kwargs(cls, kwargs: dict, what: str, skip=("self",)):
    """Name the keyword arguments `cls` does not take, before it is called."""
    from .errors import ConfigError, closest
    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    accepted = [p for p in params if p not in skip]
    bad = [k for k in kwargs if k not in accepted]
    if bad:
        raise ConfigError(f"{what} takes no {', '.join(bad)}{closest(bad[0], accepted)}; "
                          f"it takes: {', '.join(accepted) or 'nothing'}")
