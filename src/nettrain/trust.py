"""Files are data: which user code a checkpoint or a run directory may make nettrain import.

A checkpoint or a run's config.yaml may name a user spec (`nets.py:Net`, `my_pkg.losses:focal`). Loading one is
reading data, so such a spec is imported only when
  - the user gives it again (`--model`, `model=`): then the caller does not ask this module at all;
  - the user trusts the checkpoint (`--trust-code`, `trust_code=True`): what is imported is said on stderr;
  - it is the user's own code on this machine: `fit` records in the trust store (a JSON file in $NETTRAIN_HOME,
    default ~/.cache/nettrain) each spec it ran with the absolute path and sha256 of its file, and a checkpoint
    records the same (its "code" entry); a spec whose file is in the store with the hash it has now, and had
    when the run was trained, is imported without ceremony.
Anything else (a run folder from elsewhere, a file edited since) is refused in one line that names the fix.
"""
from __future__ import annotations

import fcntl
import json
import os
import sys
import time
from pathlib import Path
from typing import Optional

from . import usercode
from .errors import CheckpointError

STORE_NAME = "trusted-code.json"
ENTRY_KEYS = ("spec", "file", "name", "sha256")


def home() -> Path:
    return Path(os.environ.get("NETTRAIN_HOME") or "~/.cache/nettrain").expanduser()


def _read(path: Path) -> list:
    try:
        entries = json.loads(path.read_text(encoding="utf-8")).get("entries", [])
    except FileNotFoundError:
        return []
    except (OSError, ValueError, AttributeError):   # a damaged store trusts nothing; the refusal names the fix
        print(f"nettrain: warning: the trust store {path} is unreadable; no recorded code is trusted",
              file=sys.stderr)
        return []
    return [e for e in entries if isinstance(e, dict) and all(isinstance(e.get(k), str) for k in ENTRY_KEYS)]


def _key(entry: dict) -> tuple:
    return entry["file"], entry["name"], entry["sha256"]


def remember(origins) -> None:
    """Add the user's own code (`usercode.origin` dicts) to the trust store. Several fits may end at once: the store
    is rewritten under an exclusive lock and replaced atomically, so no fit's entries are lost."""
    origins = [o for o in origins if o]
    if not origins:
        return
    store = home() / STORE_NAME
    try:
        store.parent.mkdir(parents=True, exist_ok=True)
        with open(store.with_name(STORE_NAME + ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            entries = _read(store)
            known = {_key(e) for e in entries}
            added = [dict({k: o[k] for k in ENTRY_KEYS}, added=time.strftime("%Y-%m-%dT%H:%M:%S"))
                     for o in origins if _key(o) not in known]
            if not added:
                return
            tmp = store.with_name(f".{STORE_NAME}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"version": 1, "entries": entries + added}, indent=1), encoding="utf-8")
            os.replace(tmp, store)
    except OSError as e:   # a read-only home: training goes on; loading this run will ask for the model
        print(f"nettrain: warning: cannot record the run's code in {store} ({e.strerror}); loading the run will "
              f"need --model or --trust-code", file=sys.stderr)


def known(entry: dict) -> bool:
    return _key(entry) in {_key(e) for e in _read(home() / STORE_NAME)}


# How the user says "here is the code" or "I trust it", per caller (for the one-line refusal).
CLI_FIXES = {"model": "give the model: --model path/file.py:Class", "trust": "use --trust-code"}
RESUME_CLI_FIXES = dict(CLI_FIXES, loss="give it again: --loss SPEC", optimizer="give it again: --optimizer SPEC",
                        scheduler="give it again: --scheduler SPEC")
API_FIXES = {"model": "or pass your model: nettrain.load(path, model=YourModel(...))", "trust": "use trust_code=True",
             "collate": "pass it again: nettrain.load(path, collate_fn=your_collate)"}
RESUME_FIXES = {"model": "or pass your model: nettrain.fit(resume=run, model=YourModel(...))",
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
        path = Path(entry["file"]) if entry else None
        file = path if usercode.is_file_spec(where) and path is not None and path.is_file() else None
        if self.trust:
            if (spec, kind) not in self._said:
                self._said.add((spec, kind))
                print(f"nettrain: trusting {self.where}: importing {kind} {spec!r} from "
                      f"{file or usercode.locate(where) or where}", file=sys.stderr)
            return usercode.resolve(spec, kind, file=file)
        if entry is None:   # a class of __main__ or of a function, a module nettrain cannot find without importing it
            raise self._refuse(spec, kind, "whose source file is unknown")
        if not path.is_file():
            raise self._refuse(spec, kind, f"from {path}, which is not on this machine")
        now = usercode.digest(path)
        if now != entry["sha256"]:
            raise self._refuse(spec, kind, f"from {path}, which has changed since the run was trained")
        if not known(entry) or (not usercode.is_file_spec(where) and usercode.locate(where) != path):
            raise self._refuse(spec, kind, f"from {path}, which no nettrain fit on this machine has run")
        return usercode.resolve(spec, kind, file=file)

    def _refuse(self, spec: str, kind: str, why: str) -> CheckpointError:
        fix = self.fixes.get(kind)
        how = f"{fix}, or " if fix else ""
        return CheckpointError(f"{self.where} names the {kind} {spec!r} {why}, and a checkpoint's code is not run "
                               f"unasked; {how}{self.fixes['trust']} if you trust where it came from")
