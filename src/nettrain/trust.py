"""Files are data: which user code a checkpoint or a run directory may make nettrain import.

A checkpoint or a run's config.yaml may name a user spec (`nets.py:Net`, `my_pkg.losses:focal`). Loading one is
reading data, so such a spec is imported only when
  - the user gives it again (`--model`, `model=`): then the caller does not ask this module at all;
  - the user trusts the checkpoint (`--trust-code`, `trust_code=True`): what is imported is said on stderr;
  - it is the user's own code on this machine: `fit` records in the trust store (a JSON file in $NETTRAIN_HOME,
    default ~/.cache/nettrain) each spec it ran with the real path and sha256 of every file its import runs (a
    module spec's packages' __init__.py files too), and a checkpoint records the same (its "code" entry). A spec
    is imported without ceremony when the files Python's finders locate for it now (without importing anything)
    are those of a store entry, path for path, with the hashes they have now and had when the run was trained;
    then exactly those bytes are run (usercode.resolve's `verified`), never another file found on the way. A
    module spec the finders do not find at all (a script's own folder is not on the command's sys.path) is taken
    from the files the checkpoint records, by the same hashes and store entry (Gate._recorded).
Anything else (a run folder from elsewhere, a package planted in the current folder, a file edited since) is
refused in one line that names the fix. A config.yaml taken from a run folder is that run's data, by the same
rules (`run_folder_of`). docs/threat-model.md says what each kind of file may do.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Optional

from . import files, usercode
from .engine.optim import LOSSES, OPTIMIZERS, SCHEDULERS
from .errors import CheckpointError
from .models import MODELS

STORE_NAME = "trusted-code.json"
ENTRY_KEYS = ("spec", "file", "name", "sha256")
# the store holds one entry per spec and file version a fit ran: a few KiB each, far below this in a lifetime
STORE_LIMIT = files.LIMITS["json"]
# files that only nettrain puts in a run folder: a config beside one of them is that run's record, not the user's
RUN_MARKERS = (".nettrain-run.json", "best.pt", "last.pt", "environment.json", "events.jsonl")


def home() -> Path:
    return Path(os.environ.get("NETTRAIN_HOME") or "~/.cache/nettrain").expanduser()


def _read(path: Path) -> list:
    if not os.path.lexists(path):
        return []
    try:
        entries = json.loads(files.read_text(path, STORE_LIMIT, "trust store")).get("entries", [])
    except (files.FileError, ValueError, AttributeError):   # a damaged store trusts nothing; the refusal names the fix
        print(f"nettrain: warning: the trust store {path} is unreadable; no recorded code is trusted",
              file=sys.stderr)
        return []
    return [e for e in entries if isinstance(e, dict) and all(isinstance(e.get(k), str) for k in ENTRY_KEYS)]


def chain_of(entry: dict) -> Optional[tuple]:
    """The files an entry vouches for: ((module, file, sha256), ...), outermost package first. An entry without a
    `chain` vouches for its one file only: a file spec's, or a top-level module's (a dotted module's packages
    would be unvouched: None). None too for a malformed chain."""
    where = entry["spec"].rsplit(":", 1)[0] if ":" in entry["spec"] else entry["spec"].rsplit(".", 1)[0]
    chain = entry.get("chain")
    if chain is None:
        if usercode.is_file_spec(where) or "." not in where:
            return (("" if usercode.is_file_spec(where) else where, entry["file"], entry["sha256"]),)
        return None
    if not isinstance(chain, list) or not chain or not all(
            isinstance(c, dict) and isinstance(c.get("module"), str) and
            ((isinstance(c.get("file"), str) and isinstance(c.get("sha256"), str)) or
             (c.get("file") is None and c.get("sha256") is None)) for c in chain):
        return None
    links = tuple((c["module"], c["file"], c["sha256"]) for c in chain)
    if [m for m, _, _ in links] != [".".join(where.split(".")[:i + 1]) for i in range(len(where.split(".")))] or \
            links[-1][1:] != (entry["file"], entry["sha256"]):
        return None   # a chain that is not this spec's
    return links


def _key(entry: dict) -> tuple:
    return entry["file"], entry["name"], entry["sha256"], chain_of(entry)


def remember(origins) -> None:
    """Add the user's own code (`usercode.origin` dicts) to the trust store. Several fits may end at once: the store
    is rewritten under an exclusive lock and replaced atomically, so no fit's entries are lost. Neither the store,
    its lock nor its temporary is ever written through a link (files.py)."""
    origins = [o for o in origins if o]
    if not origins:
        return
    store = home() / STORE_NAME
    try:
        files.make_dir(store.parent)
        lock = files.open_lock(store.with_name(STORE_NAME + ".lock"))
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            entries = _read(store)
            known = {_key(e) for e in entries}
            now = time.strftime("%Y-%m-%dT%H:%M:%S")
            added = [dict({k: o[k] for k in ENTRY_KEYS + ("chain",) if k in o}, added=now)
                     for o in origins if _key(o) not in known]
            if added:
                files.write_text(store, json.dumps({"version": 1, "entries": entries + added}, indent=1))
        finally:
            os.close(lock)
    except (OSError, files.FileError) as e:   # a read-only home: training goes on; loading this run will ask for it
        print(f"nettrain: warning: cannot record the run's code in {store} ({getattr(e, 'strerror', None) or e}); "
              f"loading the run will need --model or --trust-code", file=sys.stderr)


def known(entry: dict) -> bool:
    key = _key(entry)
    return key[3] is not None and key in {_key(e) for e in _read(home() / STORE_NAME)}


def is_user_spec(kind: str, spec: str) -> bool:
    """Does `spec` name user code rather than a registered name? Loss specs need a colon (`cross-entropy` and
    `nll` are names); optimizers and schedulers may also be dotted (`torch.optim.ASGD`)."""
    if kind == "collate":   # there are no registered collate functions
        return ":" in spec
    registry = {"model": MODELS, "loss": LOSSES, "optimizer": OPTIMIZERS, "scheduler": SCHEDULERS}[kind]
    return spec not in registry and (":" in spec or (kind in ("optimizer", "scheduler") and "." in spec))


def run_folder_of(config) -> Optional[Path]:
    """The run folder a config file sits in (beside a file only nettrain writes into a run), or None: the user's
    own config. A run folder's config is that run's data, so its user code is imported by the rules above."""
    if not isinstance(config, (str, os.PathLike)):
        return None
    folder = Path(config).expanduser().parent
    return folder if any(os.path.lexists(folder / name) for name in RUN_MARKERS) else None


# How the user says "here is the code" or "I trust it", per caller (for the one-line refusal).
CLI_FIXES = {"model": "give the model: --model path/file.py:Class", "trust": "use --trust-code"}
RESUME_CLI_FIXES = dict(CLI_FIXES, loss="give it again: --loss SPEC", optimizer="give it again: --optimizer SPEC",
                        scheduler="give it again: --scheduler SPEC")
API_FIXES = {"model": "or pass your model: nettrain.load(path, model=YourModel(...))", "trust": "use trust_code=True",
             "collate": "pass it again: nettrain.load(path, collate_fn=your_collate)"}
RESUME_FIXES = {"model": "or pass your model: nettrain.fit(resume=run, model=YourModel(...))",
                "trust": "use trust_code=True"}
CONFIG_FIXES = {"model": "or pass your model: nettrain.fit(config, model=YourModel(...))",
                "trust": "use trust_code=True"}


class Gate:
    """Resolves the user specs recorded in one checkpoint or run directory (`where`), by the rules above."""

    def __init__(self, where, code: Optional[dict] = None, trust: bool = False, own=(), fixes: Optional[dict] = None):
        self.where, self.code, self.trust = str(where), code or {}, trust
        self.own = set(own)               # kinds the user gave anew (resume --model): resolved as their own code
        self.fixes = fixes or CLI_FIXES
        self._said = set()

    def owns(self, kind: str) -> bool:
        return kind in self.own

    def resolve(self, spec: str, kind: str):
        if kind in self.own:
            return usercode.resolve(spec, kind)
        where, name = usercode.split(spec, kind)
        recorded = self.code.get(kind)
        if not (isinstance(recorded, dict) and recorded.get("spec") == spec and recorded.get("name") == name):
            recorded = None   # a record of another spec, or of another name in a trusted file, vouches for nothing
        if not usercode.is_file_spec(where) and usercode.stdlib(where):
            return usercode.resolve(spec, kind)   # refused there, by name, without an import
        entry = recorded or usercode.origin(spec)
        if self.trust:
            return self._trusted(spec, kind, where, entry)
        if entry is None:   # a class of __main__ or of a function, a module nettrain cannot find without importing it
            raise self._refuse(spec, kind, "whose source file is unknown")
        return usercode.resolve(spec, kind, verified=self._verified(spec, kind, where, entry))

    def _trusted(self, spec: str, kind: str, where: str, entry: Optional[dict]):
        """--trust-code: imported as Python would, said on stderr (a file spec from the file its record names)."""
        path = Path(os.path.realpath(entry["file"])) if entry else None
        file = path if usercode.is_file_spec(where) and path is not None and files.is_regular(path) else None
        if (spec, kind) not in self._said:
            self._said.add((spec, kind))
            print(f"nettrain: trusting {self.where}: importing {kind} {spec!r} from "
                  f"{file or usercode.locate(where) or where}", file=sys.stderr)
        return usercode.resolve(spec, kind, file=file)

    def _located(self, spec: str, kind: str, where: str, entry: dict) -> list:
        """[(module, real path or None)]: what importing the spec would run now, found without importing."""
        if usercode.is_file_spec(where):
            return [("", Path(os.path.realpath(entry["file"])))]
        now = usercode.locate_chain(where) or self._recorded(entry)
        if now is None:
            raise self._refuse(spec, kind, f"from {entry['file']}, which `import {where}` does not find here as it "
                                           f"was trained (check PYTHONPATH)")
        return now

    @staticmethod
    def _recorded(entry: dict) -> Optional[list]:
        """Where the record says a module spec's files are, for a spec `import` does not find here: a class a
        script imported from its own folder (`from tutorial_net import Net`), which the command (another folder on
        sys.path) cannot import by name. Those files are then held to the same rule as a file spec's: each must be
        there, unchanged, and the trust store's (a fit on this machine ran them), or the spec is refused."""
        links = chain_of(entry)
        if links is None or any(file is not None and not os.path.isabs(file) for _, file, _ in links):
            return None
        return [(module, Path(os.path.realpath(file)) if file is not None else None) for module, file, _ in links]

    def _verified(self, spec: str, kind: str, where: str, entry: dict) -> list:
        """The files importing `spec` would run now, each the one the record and the trust store name, with the
        hash it had when the run was trained: [(module, real path, its bytes)], outermost first; or the refusal."""
        links, now = chain_of(entry), self._located(spec, kind, where, entry)
        for (_, file, _), (_, path) in zip(links or (), now):   # the same names: both are `where`'s packages
            if (str(path) if path else None) != file:
                raise self._refuse(spec, kind, f"whose import here would run {path or 'a namespace package'} instead "
                                               f"of {file or 'a namespace package'}, as a fit on this machine did")
        verified = [(module or None, path, self._source(spec, kind, path)) for module, path in now]
        hashes = [hashlib.sha256(source).hexdigest() if source is not None else None for _, _, source in verified]
        expected = [sha for _, _, sha in links] if links is not None else [*hashes[:-1], entry["sha256"]]
        changed = [path for (_, path, _), sha, want in zip(verified, hashes, expected) if sha != want]
        if changed:
            raise self._refuse(spec, kind, f"from {changed[0]}, which has changed since the run was trained")
        here = {k: v for k, v in entry.items() if k != "chain"} | {"file": str(now[-1][1]), "sha256": hashes[-1]}
        if not usercode.is_file_spec(where):
            here["chain"] = [{"module": m, "file": str(p) if p else None, "sha256": h}
                             for (m, p), h in zip(now, hashes)]
        if not known(here):
            raise self._refuse(spec, kind, f"from {now[-1][1]}, which no nettrain fit on this machine has run")
        return verified

    def _source(self, spec: str, kind: str, path: Optional[Path]) -> Optional[bytes]:
        """The bytes of one file to verify (None for a namespace package, which has none)."""
        if path is None:
            return None
        if not os.path.lexists(path):
            raise self._refuse(spec, kind, f"from {path}, which is not on this machine")
        try:
            return usercode.read_source(path)
        except files.FileError:
            raise self._refuse(spec, kind, f"from {path}, which is not a readable regular file") from None

    def _refuse(self, spec: str, kind: str, why: str) -> CheckpointError:
        fix = self.fixes.get(kind)
        how = f"{fix}, or " if fix else ""
        return CheckpointError(f"{self.where} names the {kind} {spec!r} {why}, and a checkpoint's code is not run "
                               f"unasked; {how}{self.fixes['trust']} if you trust where it came from")
