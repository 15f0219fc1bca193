"""The one place where a user spec (`package.module:Name`, `path/to/file.py:Name`) becomes an object.

    cls = resolve("my_nets.py:Net", "model")       # an nn.Module subclass (or an nn.Module instance)
    fn = resolve("my_losses:focal", "loss")         # an nn.Module subclass/instance or a plain Python function

What a spec resolves to is type-checked before anything is called: a spec cannot name an arbitrary callable
(`subprocess:run`, `os:system`) and have nettrain call it. A module of the standard library is refused without
being imported: no model, loss or optimizer lives there, and importing some of them has effects (`this`).
Whether a spec may be resolved at all when it comes from a checkpoint or a run directory is trust.py's concern.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.machinery
import importlib.util
import inspect
import sys
import traceback
import types
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from .errors import ModelError

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


def digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def locate(where: str) -> Optional[Path]:
    """The source file `import where` would run, found by the import system's finders alone: nothing is imported
    (a parent package's __init__ is not run). None when it cannot be told (a namespace, a compiled module)."""
    if is_file_spec(where):
        return Path(where).expanduser().resolve()
    if stdlib(where):
        return None
    parts = where.split(".")
    try:
        if where in sys.modules:
            origin = getattr(sys.modules[where], "__file__", None)
            return Path(origin).resolve() if origin else None
        spec = importlib.util.find_spec(parts[0])   # a top-level name: the finders only, no import
        for i in range(1, len(parts)):
            if spec is None or not spec.submodule_search_locations:
                return None
            spec = importlib.machinery.PathFinder.find_spec(".".join(parts[:i + 1]),
                                                            list(spec.submodule_search_locations))
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin or not spec.has_location or not spec.origin.endswith(".py"):
        return None
    return Path(spec.origin).resolve()


def _import_file(where: str, what: str):
    path = Path(where).expanduser().resolve()
    if not path.is_file():
        raise ModelError(f"{what} file {where} does not exist; give the path of a .py file")
    module_name = f"nettrain_user_{path.stem}"
    module = sys.modules.get(module_name)
    source = digest(path)   # an edited file is run again (a notebook)
    if module is None or getattr(module, "__file__", None) != str(path) or \
            getattr(module, "_nettrain_source", None) != source:
        spec_ = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec_)
        module._nettrain_source = source
        sys.modules[module_name] = module   # so checkpoints and pickling can find it again
        try:
            spec_.loader.exec_module(module)
        except BaseException:
            del sys.modules[module_name]   # a file that failed must not be found half-run next time
            raise
    return module


def resolve(spec: str, kind: str, file: Optional[Path] = None):
    """The object `spec` names, checked to be what a `kind` must be (KINDS) before anything of it is called.
    `file`: load a file spec from this absolute path instead (where a checkpoint recorded it)."""
    what = kind
    where, name = split(spec, what)
    if not is_file_spec(where) and stdlib(where):
        raise ModelError(f"{what} {spec!r} names the Python standard library module {where.split('.')[0]!r}, "
                         f"which holds no {kind}; give {KINDS[kind][0]} of your own or of a library")
    try:
        module = _import_file(str(file) if file else where, what) if is_file_spec(where) \
            else importlib.import_module(where)
    except ModelError:
        raise
    except ImportError as e:
        raise ModelError(f"cannot import {where!r} for {what} {spec!r}: {e}; check the module name and that it is "
                         f"on PYTHONPATH") from None
    except Exception as e:   # the user's file itself fails: a syntax error, a line that raises when it runs
        raise ModelError(f"{where} fails to load ({raised(e)}); fix the file") from None
    obj = module
    for part in name.split("."):   # a qualname: Outer.Inner
        if not hasattr(obj, part):
            names = [n for n in dir(module) if not n.startswith("_")]
            raise ModelError(f"{where} has no {name!r} for {what}; it defines: {', '.join(names[:20])}")
        obj = getattr(obj, part)
    must, check = KINDS[kind]
    if not check(obj):
        got = f"the class {obj.__name__}" if inspect.isclass(obj) else f"a {type(obj).__name__}"
        raise ModelError(f"{what} {spec!r} is {got}, not {must}; nettrain calls nothing else as a {kind}")
    return obj


def load_object(spec: str, what: str):
    """Kept for callers of the old name: `resolve` for a model."""
    return resolve(spec, what if what in KINDS else "model")


def origin(spec: str) -> Optional[dict]:
    """Where an already resolved spec's code lives, as plain data: {spec, file, name, sha256}. None when it has no
    source file (a class defined in a function or a notebook cell)."""
    try:
        where, name = split(spec, "spec")
    except ModelError:
        return None
    if "<locals>" in name or where == "__main__":
        return None
    path = locate(where)
    if path is None or not path.is_file():
        return None
    return {"spec": spec, "file": str(path), "name": name, "sha256": digest(path)}


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


def is_user_spec(kind: str, spec: str) -> bool:
    """Does `spec` name user code rather than a registered name? Loss specs need a colon (`cross-entropy` and
    `nll` are names); optimizers and schedulers may also be dotted (`torch.optim.ASGD`)."""
    if kind == "collate":   # there are no registered collate functions
        return ":" in spec
    from .engine.optim import LOSSES, OPTIMIZERS, SCHEDULERS
    from .models import MODELS
    registry = {"model": MODELS, "loss": LOSSES, "optimizer": OPTIMIZERS, "scheduler": SCHEDULERS}[kind]
    return spec not in registry and (":" in spec or (kind in ("optimizer", "scheduler") and "." in spec))
