"""`nettrain sweep`: one fit per combination of the values given, in one sweep directory, then their comparison.

    nettrain sweep --optimizer sgd,rmsprop,adam --lr 0.01,0.001 -- --dataset quadratic --model mlp --epochs 5

Before `--`: the keys to sweep, each with a comma list of values (`--section.key a,b` for any config key; a value
holding commas is bracketed: `--model.args.hidden [16],[32,16]`); after it: fit's own flags, the same for every run.
The runs are the cartesian product of the lists, trained one after the other in this process (api.fit), each in
SWEEP_DIR/<its values> (e.g. `optimizer=sgd,lr=0.01`). A comparison that is not a product (SGD, SGD with momentum,
RMSprop, Adam) is a list of named runs, each with its own settings (`--runs runs.yaml`, or the YAML itself):

    nettrain sweep --runs '{SGD: {optimizer: sgd}, Momentum: {optimizer: sgd, momentum: 0.8}}' -- --dataset mnist

each run in SWEEP_DIR/<its name>, times the product of any lists given beside it (`SGD,lr=0.01`). Every run's config
is checked, the names it gives (dataset, model, optimizer, scheduler, loss) looked up and its optimizer built on one
parameter (a setting it does not take: adam's momentum), before the first run starts: a typo in the last value
fails at once, with nothing written. A run that fails (diverges, does not fit the data) is recorded as failed with its
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

import yaml

from .config import SHORTCUTS, check_parallelism, parse_value
from .errors import NettrainError, printable
from .files import make_dir, new_dir

# the keys that name where a run goes: the sweep chooses them
PLACED = {"run_dir": "run.dir", "overwrite": "run.overwrite"}
SAFE = re.compile(r"[^A-Za-z0-9._=,+-]")   # a run's directory name: these characters, others become _
MAX_NAME = 100   # characters of a run's directory name (a file system allows 255 bytes)


@dataclass
class Planned:
    name: str      # the run's name: its values (`optimizer=sgd,lr=0.01`), or the name --runs gives it
    values: dict   # the settings it is given beyond the sweep's common ones (fit's keys)


@dataclass
class Outcome:
    name: str                  # the run's name (its folder in the sweep directory: the name in safe characters)
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


def flag_pairs(tokens: list, unexpected, missing) -> list:
    """[(key, text), ...] from ['--key', 'text', '--other=text']: the keys and values of sweep's and tune's own
    command lines. `unexpected(token)` and `missing(key)` make the errors for a token that is not a --flag and for a
    flag without a value."""
    pairs, i = [], 0
    while i < len(tokens):
        arg = tokens[i]
        if not arg.startswith("--") or len(arg) == 2:
            raise unexpected(arg)
        key, text = arg[2:], None
        if "=" in key:
            key, text = key.split("=", 1)
        elif i + 1 < len(tokens):
            i, text = i + 1, tokens[i + 1]
        if text is None:
            raise missing(key)
        pairs.append((key, text))
        i += 1
    return pairs


def parse_axes(tokens: list) -> dict:
    """['--optimizer', 'sgd,adam', '--optim.momentum=0.9,0.99'] -> {'optimizer': ['sgd', 'adam'], 'optim.momentum':
    [0.9, 0.99]}: each value read as YAML (as fit reads a flag's value)."""
    axes = {}
    pairs = flag_pairs(tokens, lambda arg: NettrainError(
        f"unexpected {arg!r} among the keys to sweep; give --key a,b,c pairs before --, and fit's flags after it: "
        f"nettrain sweep --lr 0.1,0.01 -- --dataset quadratic"), lambda key: NettrainError(
        f"--{key} has no values to sweep; give a comma list: --{key} a,b"))
    for key, text in pairs:
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
    return axes


# ---- the named runs (--runs) -------------------------------------------------------------------------

MAX_RUN_NAME = 80   # characters: a table cell and a legend line or two


def read_runs(source) -> dict:
    """--runs' value: a YAML file (.yaml, .yml) or the YAML itself, mapping each run's name to its settings (fit's
    keys, as after --: `optimizer: sgd`, `optim.momentum: 0.8`, or sections `optim: {momentum: 0.8}`); a dict is
    taken as read. -> {name: {key: value}}, sections spelt as dotted keys."""
    from .config import read_yaml
    if isinstance(source, dict):
        return _check_runs(source)
    text, where = str(source), "--runs"
    if text.lower().endswith((".yaml", ".yml")):
        from .files import LIMITS, read_text
        where = f"--runs {printable(text)}"
        try:
            text = read_text(text, LIMITS["config"], "runs file")
        except NettrainError as e:   # missing, a folder, too large, not UTF-8
            raise NettrainError(f"cannot read {where}: {e}") from None
    try:
        runs = read_yaml(text)
    except yaml.YAMLError as e:
        raise NettrainError(f"{where} is not YAML ({' '.join(str(e).split())[:200]}); give a mapping of run names to "
                            f"settings: '{{SGD: {{optimizer: sgd}}, Adam: {{optimizer: adam}}}}'") from None
    _no_name_twice(text, where)
    return _check_runs(runs, where)


def _no_name_twice(text: str, where: str):
    """A YAML mapping that gives a key twice keeps the last (PyYAML): a run would be lost without a word."""
    node = yaml.compose(text, Loader=yaml.SafeLoader)
    if not isinstance(node, yaml.MappingNode):
        return
    lines = {}
    for key, _ in node.value:
        if key.value in lines:
            raise NettrainError(f"{where} names the run {printable(key.value)!r} twice (lines {lines[key.value]} and "
                                f"{key.start_mark.line + 1}); give each run its own name")
        lines[key.value] = key.start_mark.line + 1


def _check_runs(runs, where: str = "runs") -> dict:
    from .config import SECTIONS
    example = "'{SGD: {optimizer: sgd}, Momentum: {optimizer: sgd, momentum: 0.8}}'"
    if not isinstance(runs, dict):
        raise NettrainError(f"{where} must map each run's name to its settings, as {example}")
    if not runs:
        raise NettrainError(f"{where} lists no runs; give a mapping of run names to settings, as {example}")
    checked = {}
    for name, settings in runs.items():
        text = str(name)
        if not (0 < len(text) <= MAX_RUN_NAME and text.isprintable() and text[0].isalnum()):
            raise NettrainError(f"{where}: run name {printable(text)[:MAX_RUN_NAME]!r} must start with a letter or "
                                f"digit and have at most {MAX_RUN_NAME} printable characters; rename it")
        if not isinstance(settings, dict):
            raise NettrainError(f"{where}: run {text!r} must be a mapping of settings, as {{optimizer: sgd, lr: "
                                f"0.01}}")
        checked[text] = {}
        for key, value in settings.items():   # sections as dotted keys, as nettrain.fit takes them
            items = {f"{key}.{k}": v for k, v in value.items()} if key in SECTIONS and isinstance(value, dict) \
                else {str(key): value}
            checked[text].update(items)
    return checked


def plan(axes: dict, runs: Optional[dict] = None) -> list:
    """The sweep's runs, in order: each named run (if any) times each combination of the lists."""
    combos = combinations(axes)
    if not runs:
        return [Planned(run_name(combo), combo) for combo in combos]
    return [Planned(name if not combo else f"{name},{run_name(combo)}", {**settings, **combo})
            for name, settings in runs.items() for combo in combos]


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
    return _folders([run_name(combo) for combo in combos])


def _folders(run_names: list) -> list:
    """Each run's directory name: its name in safe characters, unique, and short enough for any file system."""
    names, taken = [], set()
    for i, name in enumerate(run_names, 1):
        name = SAFE.sub("_", name)
        if len(name) > MAX_NAME:
            name = f"{name[:MAX_NAME - 8]}-{i}"
        if name in taken:   # values that differ only in unsafe characters ('a b' and 'a_b')
            name = f"{name}-{i}"
        taken.add(name)
        names.append(name)
    return names


def _key(key: str) -> str:
    return SHORTCUTS.get(key, key)


def check(axes: dict, options: dict, config=None, runs: Optional[dict] = None) -> list:
    """Every run's Config (api.resolve_config), its names looked up in the registries and its optimizer built; one
    line for the first that is wrong, naming the run."""
    from .api import resolve_config
    if not axes and not runs:
        raise NettrainError("nothing to sweep; give the keys to vary before --, each with a comma list: nettrain "
                            "sweep --optimizer sgd,adam --lr 0.01,0.001 -- --dataset quadratic (or named runs: "
                            "--runs runs.yaml)")
    _check_keys(axes, options, runs or {})
    configs = []
    for run in plan(axes, runs):
        given = {**options, **run.values}
        # lr auto is chosen by the finder when the run starts (api.fit); it is not a config value
        given = {k: v for k, v in given.items() if not (_key(k) == "optim.lr" and v == "auto")}
        try:
            cfg = resolve_config(config, given)
            check_names(cfg)
            check_parallelism(cfg)
        except NettrainError as e:
            raise type(e)(f"in the sweep's run {run.name}: {e}") from None
        try:
            check_optimizer(cfg)
        except NettrainError as e:
            fix = "; to give a setting to some optimizers only, list the runs instead: nettrain sweep --runs " \
                  "runs.yaml (see nettrain sweep --help)" if axes and not runs else ""
            raise type(e)(f"in the sweep's run {run.name}: {e}{fix}") from None
        configs.append(cfg)
    return configs


def _check_keys(axes: dict, options: dict, runs: dict):
    """No key the sweep chooses (where a run goes); no key given twice (swept, fixed after --, in a named run)."""
    for key in [*axes, *options, *(k for settings in runs.values() for k in settings)]:
        if key in PLACED or _key(key) in PLACED.values():
            raise NettrainError(f"{key} is chosen by the sweep (each run goes into SWEEP_DIR/<its values>); leave it "
                                f"out, and give --sweep-dir for the sweep's folder")
    both = {_key(k) for k in axes} & {_key(k) for k in options}
    if both:
        raise NettrainError(f"{sorted(both)[0]} is given both to sweep (before --) and fixed (after --); give it once")
    for name, settings in runs.items():
        for other, where in ((options, "fixed (after --)"), (axes, "swept (before --)")):
            both = {_key(k) for k in settings} & {_key(k) for k in other}
            if both:
                raise NettrainError(f"{sorted(both)[0]} is given both in the run {name!r} and {where}; give it once")


def check_optimizer(cfg):
    """A registered optimizer built as fit builds it, on one parameter: a setting it does not take (adam's
    momentum) or a value it refuses is found now, not after the runs before it have trained. A class of the
    user's is imported by the run itself."""
    import torch
    from .engine.optim import OPTIMIZERS, build_optimizer
    if cfg.optim.name in OPTIMIZERS:
        build_optimizer([torch.nn.Parameter(torch.zeros(2, 2))], cfg.optim, fast=False)


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
          tune_process: bool = False, say: Callable = print, runs=None) -> SweepResult:
    """Run one fit per combination of `axes` ({key: [values]}), for each of `runs` if given ({name: {key: value}},
    or --runs' YAML or file: read_runs), with `options` (fit's keys) in common, then compare them. `say`: where the
    sweep's own lines go (each fit prints its progress as fit does)."""
    from . import api
    options = dict(options or {})
    runs = read_runs(runs) if runs is not None else None
    configs = check(axes, options, config, runs)   # before anything is written
    planned = plan(axes, runs)
    folder = sweep_dir(sweep_dir_path, configs)
    result = SweepResult(folder)
    say(f"sweep: {len(planned)} run{'s' if len(planned) != 1 else ''} in {folder}")
    for i, (run, name) in enumerate(zip(planned, _folders([r.name for r in planned])), 1):
        outcome = Outcome(run.name, run.values, folder / name)
        say(f"sweep: run {i}/{len(planned)}: {run.name}")
        try:
            api.fit(config, trust_code=trust_code, tune_process=tune_process,
                    **{**options, **run.values, "run_dir": str(outcome.dir)})
        except NettrainError as e:   # this run's problem (it diverged, its model does not fit): the others go on
            from .errors import clean
            outcome.error = str(e)
            print(clean(f"nettrain: sweep run {run.name} failed: {e}"), file=sys.stderr)
        result.outcomes.append(outcome)
    result.comparison = _compare(result, axes, runs, configs)
    return result


def _compare(result: SweepResult, axes: dict, runs: Optional[dict], configs: list):
    """The comparison, in the sweep directory: a column for each swept key and each key a named run sets (its value
    in every run, set or not: Adam's momentum is null), the columns whose value is the same in every run left out."""
    from .report.compare import Entry, flatten, write
    from .report.read import read
    keys = list(axes)
    if runs:
        spelt = {}   # a key spelt two ways in two runs (optimizer, optim.name) is one column, the first spelling
        for settings in runs.values():
            for key in settings:
                spelt.setdefault(_key(key), key)
        keys = list(dict.fromkeys([*spelt.values(), *axes]))
    values = []
    for o, cfg in zip(result.outcomes, configs):
        given = {_key(k): v for k, v in o.values.items()}
        flat = flatten(cfg.to_dict())
        values.append({k: given.get(_key(k), flat.get(_key(k))) for k in keys})
    if runs:
        differ = [k for k in keys if len({repr(v[k]) for v in values}) > 1]
        keys = differ or keys
    entries = [Entry(o.name, {k: v[k] for k in keys}, read(o.dir) if (o.dir / "metrics.csv").exists() else None,
                     o.error, named=True) for o, v in zip(result.outcomes, values)]
    return write(entries, keys, result.dir)


__all__ = ["sweep", "parse_axes", "split_values", "combinations", "check", "check_optimizer", "plan", "read_runs",
           "SweepResult", "Outcome", "Planned"]
