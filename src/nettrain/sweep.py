"""`nettrain sweep`: one fit per combination of the values given, in one sweep directory, then their comparison.

    nettrain sweep --optimizer sgd,rmsprop,adam --lr 0.01,0.001 -- --dataset quadratic --model mlp --epochs 5

Before `--`: the keys to sweep, each with a comma list of values (`--section.key a,b` for any config key; a value
holding commas is bracketed: `--model.args.hidden [16],[32,16]`); after it: fit's own flags, the same for every run.
The runs are the cartesian product of the lists, trained one after the other in this process (api.fit), each in
SWEEP_DIR/<its values> (e.g. `optimizer=sgd,lr=0.01`). Every combination's config is checked, and the names it gives
(dataset, model, optimizer, scheduler, loss) looked up, before the first run starts: a typo in the last value fails
at once, with nothing written. A run that fails (diverges, does not fit the data) is recorded as failed with its
one-line reason and the sweep goes on; the comparison (report/compare.py) ends it, in the sweep directory.
A sweep directory is not resumed: a stopped sweep's finished runs are compared with nettrain compare SWEEP_DIR/*.
"""
from __future__ import annotations

import itertools
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from .config import SHORTCUTS, check_parallelism, parse_value
from .errors import NettrainError, printable
from .files import make_dir, new_dir

# the keys that name where a run goes: the sweep chooses them
PLACED = {"run_dir": "run.dir", "overwrite": "run.overwrite"}
SAFE = re.compile(r"[^A-Za-z0-9._=,+-]")   # a run's directory name: these characters, others become _
MAX_NAME = 100   # characters of a run's directory name (a file system allows 255 bytes)


@dataclass
class Outcome:
    name: str                  # its directory's name in the sweep directory
    values: dict               # the swept keys' values
    dir: Path
    error: Optional[str] = None


@dataclass
class SweepResult:
    dir: Path
    outcomes: list = field(default_factory=list)
    comparison: object = None   # report.compare.Comparison

    @property
    def failed(self) -> list:
        return [o for o in self.outcomes if o.error is not None]


# ---- the command line's sweep keys ------------------------------------------------------------------

def split_values(text: str) -> list:
    """'sgd,adam' -> ['sgd', 'adam']; commas inside brackets or braces stay: '[16],[32, 16]' -> ['[16]', '[32, 16]']."""
    parts, depth, current = [], 0, ""
    for ch in text:
        if ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    return parts + [current]


def parse_axes(tokens: list) -> dict:
    """['--optimizer', 'sgd,adam', '--optim.momentum=0.9,0.99'] -> {'optimizer': ['sgd', 'adam'], 'optim.momentum':
    [0.9, 0.99]}: each value read as YAML (as fit reads a flag's value)."""
    axes, i = {}, 0
    while i < len(tokens):
        arg = tokens[i]
        if not arg.startswith("--") or len(arg) == 2:
            raise NettrainError(f"unexpected {arg!r} among the keys to sweep; give --key a,b,c pairs before --, and "
                                f"fit's flags after it: nettrain sweep --lr 0.1,0.01 -- --dataset quadratic")
        key = arg[2:]
        if "=" in key:
            key, text = key.split("=", 1)
        elif i + 1 < len(tokens):
            i += 1
            text = tokens[i]
        else:
            raise NettrainError(f"--{key} has no values to sweep; give a comma list: --{key} a,b")
        key = key.replace("-", "_") if "." not in key else key
        if key in ("config", "resume", "nproc"):
            raise NettrainError(f"--{key.replace('_', '-')} cannot be swept; give it after -- (the flags every run "
                                f"shares)" if key == "config" else
                                f"--{key} is not for a sweep (a sweep starts new runs, one process each in turn)")
        if key in axes:
            raise NettrainError(f"--{key} is given twice; give all its values in one comma list")
        texts = split_values(text)
        if any(not t.strip() for t in texts):
            raise NettrainError(f"--{key} {text!r} has an empty value; give values separated by single commas")
        values = [parse_value(t) for t in texts]
        repeated = [t for t, v in zip(texts, values) if values.count(v) > 1]
        if repeated:
            raise NettrainError(f"--{key} lists {repeated[0]} twice; give each value once")
        axes[key] = values
        i += 1
    return axes


# ---- checking every combination before the first run ------------------------------------------------

def combinations(axes: dict) -> list:
    """Every combination of the values, as {key: value}, the last key varying fastest."""
    return [dict(zip(axes, values)) for values in itertools.product(*axes.values())]


def run_name(values: dict) -> str:
    """{'optimizer': 'sgd', 'lr': 0.01} -> 'optimizer=sgd,lr=0.01' (safe characters only; no spaces: [32, 16] is
    _32,16_)."""
    from .report.compare import show
    return SAFE.sub("_", ",".join(f"{k}={show(v)}" for k, v in values.items()).replace(" ", ""))


def _names(combos: list) -> list:
    """Each combination's directory name: unique, and short enough for any file system."""
    names, taken = [], set()
    for i, combo in enumerate(combos, 1):
        name = run_name(combo)
        if len(name) > MAX_NAME:
            name = f"{name[:MAX_NAME - 8]}-{i}"
        if name in taken:   # values that differ only in unsafe characters ('a b' and 'a_b')
            name = f"{name}-{i}"
        taken.add(name)
        names.append(name)
    return names


def _key(key: str) -> str:
    return SHORTCUTS.get(key, key)


def check(axes: dict, options: dict, config=None) -> list:
    """Every combination's Config (api.resolve_config), its names looked up in the registries; one line for the
    first that is wrong, naming the combination."""
    from .api import resolve_config
    if not axes:
        raise NettrainError("nothing to sweep; give the keys to vary before --, each with a comma list: nettrain "
                            "sweep --optimizer sgd,adam --lr 0.01,0.001 -- --dataset quadratic")
    for key in list(axes) + list(options):
        if key in PLACED or _key(key) in PLACED.values():
            raise NettrainError(f"{key} is chosen by the sweep (each run goes into SWEEP_DIR/<its values>); leave it "
                                f"out, and give --sweep-dir for the sweep's folder")
    both = {_key(k) for k in axes} & {_key(k) for k in options}
    if both:
        raise NettrainError(f"{sorted(both)[0]} is given both to sweep (before --) and fixed (after --); give it once")
    configs = []
    for combo in combinations(axes):
        given = {**options, **combo}
        # lr auto is chosen by the finder when the run starts (api.fit); it is not a config value
        given = {k: v for k, v in given.items() if not (_key(k) == "optim.lr" and v == "auto")}
        try:
            cfg = resolve_config(config, given)
            check_names(cfg)
            check_parallelism(cfg)
        except NettrainError as e:
            raise type(e)(f"in the sweep's run {run_name(combo)}: {e}") from None
        configs.append(cfg)
    return configs


def check_names(cfg):
    """The names a config gives, looked up as fit would (a typo is named with its closest match); a spec of the
    user's code (file.py:Class) is imported by the run itself."""
    from .data import DATASETS
    from .engine.optim import LOSSES, OPTIMIZERS, SCHEDULERS
    from .models import MODELS
    from .trust import is_user_spec
    DATASETS.get(cfg.data.name)
    for kind, name, registry in (("model", cfg.model.name, MODELS), ("optimizer", cfg.optim.name, OPTIMIZERS),
                                 ("scheduler", cfg.sched.name, SCHEDULERS), ("loss", cfg.train.loss, LOSSES)):
        if not is_user_spec(kind, name) and not (kind == "model" and name == "auto"):
            registry.get(name)


# ---- the sweep directory and the runs ---------------------------------------------------------------

def sweep_dir(path, configs: list) -> Path:
    """The sweep's folder, made now: `path` (new or empty), else runs/sweep-<dataset>-N, the first N free."""
    if path is not None:
        path = Path(path)
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise NettrainError(f"sweep directory {printable(path)} already exists; choose another --sweep-dir (a "
                                f"sweep is not resumed or overwritten)")
        return make_dir(path)
    datasets = {c.data.name for c in configs}
    stem = f"sweep-{datasets.pop()}" if len(datasets) == 1 else "sweep"
    runs = Path("runs")
    if runs.exists() and not runs.is_dir():
        raise NettrainError("a file named runs is where sweep directories go; move it, or give --sweep-dir")
    for n in itertools.count(1):   # mkdir claims a name atomically: two sweeps started together get their own
        path = runs / f"{stem}-{n}"
        if new_dir(path):
            return path


def sweep(axes: dict, options: Optional[dict] = None, config=None, sweep_dir_path=None, trust_code: bool = False,
          tune_process: bool = False, say: Callable = print) -> SweepResult:
    """Run one fit per combination of `axes` ({key: [values]}) with `options` (fit's keys) in common, then compare
    them. `say`: where the sweep's own lines go (each fit prints its progress as fit does)."""
    from . import api
    from .report.compare import Entry, write
    from .report.read import read
    options = dict(options or {})
    configs = check(axes, options, config)   # before anything is written
    combos = combinations(axes)
    folder = sweep_dir(sweep_dir_path, configs)
    result = SweepResult(folder)
    say(f"sweep: {len(combos)} run{'s' if len(combos) != 1 else ''} in {folder}")
    for i, (combo, name) in enumerate(zip(combos, _names(combos)), 1):
        outcome = Outcome(name, combo, folder / name)
        say(f"sweep: run {i}/{len(combos)}: {name}")
        try:
            api.fit(config, trust_code=trust_code, tune_process=tune_process,
                    **{**options, **combo, "run_dir": str(outcome.dir)})
        except NettrainError as e:   # this run's problem (it diverged, its model does not fit): the others go on
            from .errors import clean
            outcome.error = str(e)
            print(clean(f"nettrain: sweep run {name} failed: {e}"), file=sys.stderr)
        result.outcomes.append(outcome)
    entries = []
    for o in result.outcomes:
        record = read(o.dir) if (o.dir / "metrics.csv").exists() else None
        entries.append(Entry(o.name, dict(o.values), record, o.error))
    result.comparison = write(entries, list(axes), folder)
    return result


__all__ = ["sweep", "parse_axes", "split_values", "combinations", "check", "SweepResult", "Outcome"]
