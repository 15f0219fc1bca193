"""`nettrain tune`: a hyperparameter search by Optuna (pip install 'nettrain[tune]'), every trial a normal fit.

    nettrain tune --lr loguniform:1e-4:1e-1 --optimizer choice:sgd,adam,adamw --trials 30 -- \\
        --dataset digits --model mlp --epochs 10 --data.val_fraction 0.1

Before `--`: the search space, each key (a fit flag or any config key) with a range: loguniform:LOW:HIGH,
uniform:LOW:HIGH, int:LOW:HIGH[:STEP] or choice:A,B,... (values read as fit reads a flag's value); or a space file
(--space space.yaml: `lr: loguniform:1e-4:1e-1` lines). After it: fit's own flags, the same for every trial. Every
range's ends and every choice are checked as configs before the first trial starts.

The sampler is TPE, seeded (--sampler-seed; the k-th process to join a study samples with seed + k, so that two
processes do not draw the same trials). Each epoch's held-out metric (the objective: by default the one that
chooses best.pt, val_acc for classification, val_loss otherwise) is reported to a pruner (median, or successive
halving), and a trial it prunes stops after that epoch (callbacks.py's fit.stop), then is recorded as pruned. The
test split never chooses: a tune without a validation split is refused (--data.val_fraction 0.1).

Every trial is a run directory, STUDY_DIR/trial-NNNN (tunes/<study> by default). The study lives in a database
(--storage URL; by default STUDY_DIR/study.db, SQLite): processes started with the same study and storage share it,
and a study run again goes on where it stopped. --trials N counts the study's trials, not the process's: a process
starts a trial only while the study holds fewer than N that finished (completed, pruned, or failed with their
one-line reason) or are running; a trial stopped by Ctrl-C or lost with its process does not count. --timeout S:
no trial starts after S seconds (the one running finishes).

At the end: best.yaml, the best trial's config as a recipe (`nettrain fit --config STUDY_DIR/best.yaml` trains it
again to the same held-out metric), the trials' table, history.png and importance.png (Optuna's own figures),
tune.html (a self-contained page), and compare.html of the best trials (report/compare.py).
"""
from __future__ import annotations

import base64
import fcntl
import io
import json
import math
import os
import re
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from .callbacks import Callback
from .config import SHORTCUTS, check_parallelism, parse_value, read_yaml
from .errors import ConfigError, NettrainError, clean, printable
from .files import LIMITS, FileError, is_regular, make_dir, open_lock, read_text, write_bytes, write_text

INSTALL = "nettrain tune needs Optuna; pip install 'nettrain[tune]' (optuna==5.0.0)"
SPEC_HELP = "loguniform:LOW:HIGH, uniform:LOW:HIGH, int:LOW:HIGH[:STEP] or choice:A,B,..."
KINDS = ("loguniform", "uniform", "int", "choice")
# the held-out metrics a study may optimize (metrics.csv's columns) and their natural direction
HELD_OUT = {"val_acc": "maximize", "val_loss": "minimize", "val_mae": "minimize"}
DIRECTIONS = {"max": "maximize", "min": "minimize", "maximize": "maximize", "minimize": "minimize"}
PLACED = {"run_dir", "run.dir", "overwrite", "run.overwrite"}   # the tune chooses where each trial goes
NOT_KEYS = {"config", "resume", "nproc", "max_restarts"}
SAFE = re.compile(r"[^A-Za-z0-9._-]")
DB, LOCK, RECIPE, PAGE = "study.db", ".nettrain-tune-lock", "best.yaml", "tune.html"
FIGURES = {"history.png": "optimization history: each trial's objective, and the best so far",
           "importance.png": "parameter importance (fANOVA): the share of the objective's variance each key explains"}
ATTR = "nettrain"   # the study's user attribute holding what it searches: a process joining it must search the same
# Optuna's heartbeat: a running trial whose process has not written for GRACE seconds (killed, its machine lost) is
# failed by the next process to start a trial, and stops counting toward --trials. 60 s beats cost one row update
# a minute; 3 missed beats before giving a trial up.
HEARTBEAT, GRACE = 60, 180


def _optuna():
    try:
        import optuna
    except ImportError:
        raise NettrainError(INSTALL) from None
    return optuna


# ---- the search space --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Dimension:
    """One key's range: `kind` one of KINDS; `choices` the values as the config takes them."""
    key: str
    kind: str
    low: float = 0
    high: float = 0
    step: int = 1
    choices: tuple = ()

    @property
    def labels(self) -> tuple:
        """The choices as Optuna stores them: the values themselves when they are plain (str, int, float, bool,
        None), their text otherwise (a list: [32, 16])."""
        if all(v is None or isinstance(v, (str, int, float, bool)) for v in self.choices):
            return self.choices
        from .report.compare import show
        return tuple(show(v) for v in self.choices)

    @property
    def spec(self) -> str:
        from .report.compare import show
        if self.kind == "choice":
            return "choice:" + ",".join(show(v) for v in self.choices)
        return f"{self.kind}:{self.low}:{self.high}" + (f":{self.step}" if self.kind == "int" and self.step != 1 else "")

    def suggest(self, trial):
        if self.kind == "choice":
            return self.value(trial.suggest_categorical(self.key, self.labels))
        if self.kind == "int":
            return trial.suggest_int(self.key, self.low, self.high, step=self.step)
        return trial.suggest_float(self.key, self.low, self.high, log=self.kind == "loguniform")

    def value(self, param):
        """The config's value of Optuna's stored `param`."""
        return self.choices[self.labels.index(param)] if self.kind == "choice" else param

    def extremes(self) -> list:
        return list(self.choices) if self.kind == "choice" else [self.low, self.high]


def parse_spec(key: str, text) -> Dimension:
    """'loguniform:1e-4:1e-1' -> Dimension; one line naming the problem otherwise. A YAML list is a choice."""
    if isinstance(text, list):
        text = "choice:" + ",".join(json.dumps(v) if not isinstance(v, str) else v for v in text)
    kind, _, rest = str(text).partition(":")
    if kind not in KINDS or not rest:
        raise ConfigError(f"--{key} {str(text)!r} is not a range to search; give {SPEC_HELP} (e.g. --lr "
                          f"loguniform:1e-4:1e-1), and fixed values after --")
    if kind == "choice":
        return _choice(key, rest)
    parts = [parse_value(p) for p in rest.split(":")]
    wanted = int if kind == "int" else (int, float)
    if len(parts) not in ((2, 3) if kind == "int" else (2,)) or \
            any(isinstance(p, bool) or not isinstance(p, wanted) for p in parts):
        form = "int:LOW:HIGH[:STEP] with whole numbers" if kind == "int" else f"{kind}:LOW:HIGH with numbers"
        raise ConfigError(f"--{key} {text!r} is not {form}; e.g. --{key} {kind}:{'16:128' if kind == 'int' else '1e-4:1e-1'}")
    low, high, step = parts[0], parts[1], parts[2] if len(parts) == 3 else 1
    if not low < high:
        raise ConfigError(f"--{key} {text!r} has LOW {low} not below HIGH {high}; give the smaller end first")
    if kind == "loguniform" and low <= 0:
        raise ConfigError(f"--{key} {text!r}: a loguniform range takes positive ends (log of {low}); give LOW > 0, "
                          f"or use uniform:")
    if kind == "int" and (step < 1 or (high - low) % step):
        raise ConfigError(f"--{key} {text!r}: STEP {step} must be 1 or more and divide HIGH - LOW ({high - low})")
    return Dimension(key, kind, float(low) if kind != "int" else low, float(high) if kind != "int" else high, step)


def _choice(key: str, rest: str) -> Dimension:
    from .sweep import split_values
    texts = split_values(rest)
    if any(not t.strip() for t in texts):
        raise ConfigError(f"--{key} choice:{rest} has an empty value; give values separated by single commas")
    values = [parse_value(t) for t in texts]
    if len(values) < 2:
        raise ConfigError(f"--{key} choice:{rest} has one value; give two or more, or fix it after --: --{key} "
                          f"{rest}")
    repeated = [t for t, v in zip(texts, values) if values.count(v) > 1]
    if repeated:
        raise ConfigError(f"--{key} choice:{rest} lists {repeated[0]} twice; give each value once")
    return Dimension(key, "choice", choices=tuple(values))


def _key(key: str) -> str:
    return key.replace("-", "_") if "." not in key else key


def parse_space(tokens: list) -> dict:
    """['--lr', 'loguniform:1e-4:1e-1', '--optimizer=choice:sgd,adam'] -> {key: Dimension}."""
    from .sweep import flag_pairs
    space = {}
    for key, text in flag_pairs(tokens, lambda arg: ConfigError(
            f"unexpected {arg!r} in the search space; give --key RANGE pairs before -- and fit's flags after it: "
            f"nettrain tune --lr loguniform:1e-4:1e-1 -- --dataset digits"),
            lambda key: ConfigError(f"--{key} has no range; give {SPEC_HELP}")):
        _add(space, _key(key), text)
    return space


def read_space(path) -> dict:
    """A space file: a YAML mapping of keys to ranges (`lr: loguniform:1e-4:1e-1`; a list is a choice)."""
    try:
        data = read_yaml(read_text(path, LIMITS["config"], "space file"))
    except FileError as e:
        raise ConfigError(f"cannot read the space file: {e}") from None
    except Exception as e:   # yaml's errors, an undecodable file
        raise ConfigError(f"space file {printable(path)} is not YAML ({str(e).splitlines()[0]}); give lines like "
                          f"lr: loguniform:1e-4:1e-1") from None
    if not isinstance(data, dict) or not data:
        raise ConfigError(f"space file {printable(path)} holds no mapping of keys to ranges; give lines like "
                          f"lr: loguniform:1e-4:1e-1")
    space = {}
    for key, text in data.items():
        _add(space, _key(str(key)), text)
    return space


def _add(space: dict, key: str, text):
    if key in NOT_KEYS or key in PLACED:
        raise ConfigError(f"--{key} cannot be searched: " + ("the tune puts each trial in STUDY_DIR/trial-NNNN "
                          "(give --study-dir for the study's folder)" if key in PLACED else
                          "give it after -- (fit's flags, the same for every trial)" if key == "config" else
                          "a tune starts new runs, one process each in turn"))
    if key in space:
        raise ConfigError(f"--{key} is given twice in the search space; give it once")
    space[key] = parse_spec(key, text)


# ---- checking before the first trial -----------------------------------------------------------------

def config_options(options: dict) -> dict:
    """fit's options as a config holds them: callbacks as their specs only (objects given in Python are not)."""
    given = options.get("callbacks")
    if given is None or isinstance(given, str):
        return dict(options)
    specs = [c for c in given if isinstance(c, str)] if isinstance(given, (list, tuple)) else []
    return {**{k: v for k, v in options.items() if k != "callbacks"}, **({"callbacks": specs} if specs else {})}


def check(space: dict, options: dict, config=None):
    """The base Config (fit's options, no searched key); every range's ends and every choice resolved as a config
    and its names looked up (sweep.check_names), one line for the first that is wrong."""
    from .api import resolve_config
    from .report.compare import show
    from .sweep import check_names, check_optimizer
    if not space:
        raise ConfigError("nothing to search; give ranges before --: nettrain tune --lr loguniform:1e-4:1e-1 -- "
                          "--dataset digits --data.val_fraction 0.1")
    canon = {SHORTCUTS.get(k, k): k for k in options}
    for key in options:
        if key in PLACED or key in NOT_KEYS:
            raise ConfigError(f"--{key.replace('_', '-')} is not for a tune: it puts each trial in "
                              f"STUDY_DIR/trial-NNNN (give --study-dir), one fit at a time in this process")
    both = [k for k in space if SHORTCUTS.get(k, k) in canon]
    if both:
        raise ConfigError(f"{both[0]} is given both to search (before --) and fixed (after --); give it once")
    if any(options.get(k) == "auto" for k in ("lr", "optim.lr")):
        raise ConfigError("lr auto chooses one run's learning rate; in a tune search it: --lr loguniform:1e-4:1e-1")
    options = config_options(options)
    first = {k: d.extremes()[0] for k, d in space.items()}
    for key, dim in space.items():
        for value in dim.extremes():
            try:
                cfg = resolve_config(config, {**options, **first, key: value})
                check_names(cfg)
                check_parallelism(cfg)
                check_optimizer(cfg)   # a setting the optimizer does not take (adam's momentum), found now
            except NettrainError as e:
                raise type(e)(f"in the search space, {key}={show(value)}: {e}") from None
    return resolve_config(config, options)


def held_out(base, objective: Optional[str], direction: Optional[str]) -> tuple:
    """(metric, direction): the held-out metric to optimize, after loading the data once to see that it has a
    validation split and what its task is."""
    from .data import load_data
    data = load_data(base.data)
    if not data.val_chooses:
        raise ConfigError(f"nettrain tune chooses on a validation split and {base.data.name} has none here (the test "
                          f"split never chooses); hold one out: --data.val_fraction 0.1")
    task = data.info.task
    metric = objective or ("val_acc" if task == "classification" else "val_loss")
    # the run's own metrics (train.metrics: registered names, file.py:function) are validated as val_<name> too
    own = {f"val_{str(m).rsplit(':', 1)[-1]}" for m in base.train.metrics}
    if metric not in HELD_OUT and metric not in own:
        raise ConfigError(f"--objective {metric!r} is not a held-out metric; give one of "
                          f"{', '.join([*HELD_OUT, *sorted(own)])} (the validation split's: the test split never "
                          f"chooses; val_<name> for a metric of --metrics)")
    if metric in ("val_acc", "val_mae") and (metric == "val_acc") != (task == "classification"):
        raise ConfigError(f"--objective {metric} is not measured on {task} data; give "
                          f"{'val_acc' if task == 'classification' else 'val_mae'} or val_loss")
    if direction is not None and direction not in DIRECTIONS:
        raise ConfigError(f"--direction {direction!r} is not max or min")
    if direction is None and metric not in HELD_OUT:
        raise ConfigError(f"--objective {metric} is your metric: say which way is better, --direction max or min")
    return metric, DIRECTIONS[direction] if direction else HELD_OUT[metric]


# ---- the study: its folder, its database, its lock --------------------------------------------------

@dataclass
class Settings:
    """The tune's own options (the command's flags before --, beside the space)."""
    trials: int = 20
    timeout: Optional[float] = None
    study: Optional[str] = None
    study_dir: Optional[str] = None
    storage: Optional[str] = None
    space: Optional[str] = None        # a space file
    objective: Optional[str] = None
    direction: Optional[str] = None
    pruner: str = "median"
    prune_from_epoch: int = 1          # no trial is pruned before this epoch
    prune_after_trials: int = 5        # median: no pruning until this many trials completed
    sampler_seed: int = 0
    compare: int = 5                   # the best trials compared at the end

    def check(self):
        for flag, value, low in (("--trials", self.trials, 1), ("--prune-from-epoch", self.prune_from_epoch, 1),
                                 ("--prune-after-trials", self.prune_after_trials, 0), ("--compare", self.compare, 0),
                                 ("--sampler-seed", self.sampler_seed, 0)):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ConfigError(f"{flag} takes a whole number of {low} or more, got {value!r}")
        if self.timeout is not None and not self.timeout > 0:
            raise ConfigError(f"--timeout takes seconds above 0, got {self.timeout!r}")
        if self.pruner not in ("median", "halving", "none"):
            raise ConfigError(f"--pruner {self.pruner!r} is not median, halving or none")
        if self.study is not None and (SAFE.search(self.study) or not 0 < len(self.study) <= 100):
            raise ConfigError(f"--study {self.study!r}: give a name of letters, digits, '.', '_' and '-' (100 at "
                              f"most)")


class StudyLock:
    """flock on STUDY_DIR/.nettrain-tune-lock: one process at a time counts the study's trials and starts one (so
    that two processes together never start more than --trials), or writes the study's summary. The kernel
    releases it when its process ends, however it ends. Idempotent release: the trial releases it once started."""

    def __init__(self, folder: Path):
        self.path, self._fd = folder / LOCK, None

    def acquire(self) -> "StudyLock":
        if self._fd is None:
            fd = open_lock(self.path, root=self.path.parent)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)   # held for milliseconds (a count and a new trial), or a summary
            except BaseException:
                os.close(fd)
                raise
            self._fd = fd
        return self

    def release(self):
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def masked(url: str) -> str:
    """A database URL as it may be printed: its password hidden."""
    return re.sub(r"://([^:/@]*):[^@/]*@", r"://\1:***@", url)


def open_storage(optuna, url: str, own_db: Optional[Path]):
    """Optuna's RDBStorage of `url`, heartbeats on. `own_db`: the default SQLite file, which must be a file."""
    if own_db is not None and os.path.lexists(own_db) and (own_db.is_symlink() or not is_regular(own_db)):
        raise ConfigError(f"{printable(own_db)} is not the study's database file (a link, or not a file); move it "
                          f"away, or give --storage")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            try:
                return optuna.storages.RDBStorage(url, heartbeat_interval=HEARTBEAT, grace_period=GRACE)
            except Exception:   # a process on another machine made the new database's tables at the same moment:
                # its commit is what failed ours, so the second try finds them made
                return optuna.storages.RDBStorage(url, heartbeat_interval=HEARTBEAT, grace_period=GRACE)
    except Exception as e:   # SQLAlchemy's: a malformed URL, a server not answering, a driver not installed
        reason = clean(str(e).splitlines()[0] if str(e) else type(e).__name__)[:200]
        raise ConfigError(f"cannot open the study's storage {masked(url)} ({reason}); give sqlite:///PATH.db or a "
                          f"database URL (postgresql://USER@HOST/DB)") from None


def searched(space: dict, base, metric: str, direction: str) -> dict:
    """What the study searches, as stored in it: a process joining it must search the same."""
    config = {k: v for k, v in base.to_dict().items() if k != "run"}   # where and how runs are written: free
    kept = {"space": {k: d.spec for k, d in space.items()}, "objective": metric, "direction": direction,
            "config": config}
    return json.loads(json.dumps(kept, default=str))


def _changed(name: str, stored: dict, wanted: dict) -> str:
    from .report.compare import flatten, show
    old, new = flatten(stored), flatten(wanted)
    key = next(k for k in list(new) + list(old) if old.get(k, "(none)") != new.get(k, "(none)"))
    return (f"study {name} searched {key} = {show(old.get(key, '(none)'))}, and this tune gives "
            f"{show(new.get(key, '(none)'))}; run it as it was started to go on, or give a new --study name")


def open_study(optuna, storage, name: str, direction: str, what: dict, settings: Settings, lock: StudyLock):
    """The study `name` in `storage` (made if new), with this process's sampler (seed + the processes that joined
    before) and pruner; refused in one line when it searches something else."""
    with lock:
        try:
            study = optuna.load_study(study_name=name, storage=storage)
        except KeyError:   # a new study (another machine may make it at the same moment: load_if_exists)
            _no_earlier_trials(lock.path.parent, name)
            study = optuna.create_study(storage=storage, study_name=name, direction=direction, load_if_exists=True)
        stored = study.user_attrs.get(ATTR)
        if stored is None:
            study.set_user_attr(ATTR, what)
        elif stored != what:
            raise ConfigError(_changed(name, stored, what))
        joined = int(study.user_attrs.get("processes", 0))
        study.set_user_attr("processes", joined + 1)
    sampler = optuna.samplers.TPESampler(seed=settings.sampler_seed + joined)
    return optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=_pruner(optuna, settings))


def _no_earlier_trials(folder: Path, name: str):
    """A new study's folder holds no trial directories of another (its database deleted, or another storage): the
    new trials' numbers would meet them."""
    earlier = sorted(p.name for p in folder.glob("trial-*"))
    if earlier:
        raise ConfigError(f"{printable(folder)} holds {earlier[0]} and {len(earlier) - 1} more trials of a study that "
                          f"its storage does not have ({name}); give its --storage to go on with it, or another "
                          f"--study-dir")


def _pruner(optuna, s: Settings):
    # the steps are the epochs, from 1: a pruner never prunes at a step below its warm-up or first rung
    if s.pruner == "none":
        return optuna.pruners.NopPruner()
    if s.pruner == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=s.prune_from_epoch)
    return optuna.pruners.MedianPruner(n_startup_trials=s.prune_after_trials, n_warmup_steps=s.prune_from_epoch)


def state_of(trial) -> str:
    """complete, pruned, failed (its own error), stopped (Ctrl-C), lost (its process ended), running, waiting."""
    state = trial.state.name.lower()
    if state != "fail":
        return state
    return "failed" if "error" in trial.user_attrs else "stopped" if "stopped" in trial.user_attrs else "lost"


def counted(trials: list) -> tuple:
    """(the trials that count toward --trials as finished, those running)."""
    states = [state_of(t) for t in trials]
    return sum(s in ("complete", "pruned", "failed") for s in states), states.count("running")


# ---- the trials -------------------------------------------------------------------------------------------

MAX_REASON = 500   # characters of a failed trial's reason kept in the study


@dataclass
class Plan:
    """What every trial shares: the space, fit's options and config, the study's folder and objective."""
    space: dict
    options: dict
    config: object
    folder: Path
    metric: str
    direction: str
    trust_code: bool = False
    tune_process: bool = False

    def values(self, params: dict) -> dict:
        """A trial's stored params as config values."""
        return {k: d.value(params[k]) for k, d in self.space.items() if k in params}


class Pruning(Callback):
    """Reports each validated epoch's metric to the trial; stops the fit after the epoch its pruner prunes."""

    def __init__(self, trial, metric: str):
        self.trial, self.metric, self.reason = trial, metric, None

    def on_epoch_end(self, fit, epoch: int, metrics: dict):
        value = metrics.get(self.metric)
        if value is None or metrics.get("val_split") != "val":
            return
        self.trial.report(float(value), epoch)
        if self.trial.should_prune():
            self.reason = f"pruned after epoch {epoch}: {self.metric} {value:.4g} behind the study's other trials"
            fit.stop(self.reason)


def best_value(rows: list, metric: str, direction: str) -> float:
    """The trial's objective: its best validated `metric` (what best.pt keeps, for the metric that chooses it)."""
    values = [row[metric] for row in rows if row.get("val_split") == "val" and row.get(metric) is not None]
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        raise NettrainError(f"the fit measured no finite {metric} on the validation split ({len(values)} "
                            f"validated epochs); give --train.val_every 1")
    return (max if direction == "maximize" else min)(finite)


def _fit_options(options: dict, params: dict, run_dir: Path, pruning: Pruning) -> dict:
    given = options.get("callbacks")
    callbacks = ([given] if isinstance(given, str) else list(given or [])) + [pruning]
    return {**options, **params, "run_dir": str(run_dir), "callbacks": callbacks}


def _shown(values: dict) -> str:
    from .report.compare import show
    return ", ".join(f"{k}={show(v)}" for k, v in values.items())


class Objective:
    """Optuna's objective: one fit in STUDY_DIR/trial-NNNN with the trial's values; its failure's one line kept."""

    def __init__(self, plan: Plan, lock: StudyLock, say: Callable):
        self.plan, self.lock, self.say = plan, lock, say

    def __call__(self, trial):
        self.lock.release()   # the trial is in the study now: other processes count it
        from . import api
        plan = self.plan
        values = {k: d.suggest(trial) for k, d in plan.space.items()}
        name = f"trial-{trial.number:04d}"
        trial.set_user_attr("dir", name)
        self.say(f"tune: {name}: {_shown(values)}")
        pruning = Pruning(trial, plan.metric)
        try:
            run = api.fit(plan.config, trust_code=plan.trust_code, tune_process=plan.tune_process,
                          **_fit_options(plan.options, values, plan.folder / name, pruning))
            value = best_value(run.metrics, plan.metric, plan.direction)
        except NettrainError as e:   # this trial's problem (it diverged, its values do not fit): the study goes on
            trial.set_user_attr("error", clean(str(e))[:MAX_REASON])
            self.say(clean(f"tune: {name} failed: {e}"))
            raise
        except KeyboardInterrupt:
            trial.set_user_attr("stopped", "a stop signal (Ctrl-C)")
            raise
        if pruning.reason is not None:
            trial.set_user_attr("pruned", pruning.reason)
            self.say(f"tune: {name} {pruning.reason}")
            raise _optuna().TrialPruned(pruning.reason)
        self.say(f"tune: {name}: {plan.metric} {value:.4g}")
        return value


def run_trials(optuna, study, objective: Objective, settings: Settings, lock: StudyLock) -> int:
    """Start trials until the study holds --trials that count (counted) or --timeout passed; returns how many this
    process ran. The count and the new trial are made under the study's lock."""
    started, ran = time.monotonic(), 0
    while settings.timeout is None or time.monotonic() - started < settings.timeout:
        lock.acquire()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(study)
            done, running = counted(study.get_trials(deepcopy=False))
            if done + running >= settings.trials:
                break
            study.optimize(objective, n_trials=1, catch=(NettrainError,))
        finally:
            lock.release()
        ran += 1
    return ran


# ---- the end: recipe, table, figures, page, comparison ------------------------------------------------

@dataclass
class TuneResult:
    dir: Path
    name: str
    storage: str                       # its URL, password hidden
    metric: str
    direction: str
    keys: list                         # the searched keys
    ran: int                           # the trials this process ran
    trials: list                       # Optuna's FrozenTrials, by number
    best: object = None                # the best completed trial
    best_values: dict = field(default_factory=dict)
    recipe: Optional[Path] = None
    figures: list = field(default_factory=list)
    html: Optional[Path] = None
    comparison: object = None          # report.compare.Comparison of the best trials
    notes: list = field(default_factory=list)

    def rows(self) -> tuple:
        """(header, rows) of the trials' table: the shown values as text."""
        from .report.compare import show
        header = ["trial", "state", self.metric, *self.keys, "epochs", "note"]
        rows = []
        for t in self.trials:
            value = "-" if t.value is None else f"{t.value:.4g}"
            values = [show(t.params[k]) if k in t.params else "-" for k in self.keys]
            note = t.user_attrs.get("error") or t.user_attrs.get("pruned") or t.user_attrs.get("stopped") or ""
            note = "best" if self.best is not None and t.number == self.best.number else note
            rows.append([f"trial-{t.number:04d}", state_of(t), value, *values,
                         str(max(t.intermediate_values, default=0)), note])
        return header, rows

    def table(self) -> str:
        from .report.columns import text_table
        header, rows = self.rows()
        return text_table([clean(c) for c in header], [[clean(c) for c in r] for r in rows], left=2, left_last=True)


def best_of(trials: list, direction: str):
    done = [t for t in trials if t.state.name == "COMPLETE" and t.value is not None]
    sign = -1 if direction == "maximize" else 1
    return sorted(done, key=lambda t: (sign * t.value, t.number))


def write_recipe(plan: Plan, result: TuneResult) -> Path:
    """best.yaml: the best trial's config, which `nettrain fit --config` trains again (the same seed, the same
    held-out metric)."""
    from .api import resolve_config
    cfg = resolve_config(plan.config, {**config_options(plan.options), **result.best_values, "run.dir": None,
                                       "run.overwrite": False})
    best, path = result.best, plan.folder / RECIPE
    head = [f"nettrain tune, study {result.name}: trial-{best.number:04d}, the best {plan.metric} on the held-out "
            f"split ({best.value:.6g}) of {len(result.trials)} trials", f"  {_shown(result.best_values)}",
            f"  nettrain fit --config {path}"]
    write_text(path, "".join(f"# {clean(line)}\n" for line in head) + cfg.to_yaml(), root=plan.folder)
    return path


def figures(optuna, study, metric: str) -> tuple:
    """({file name: PNG bytes}, notes): Optuna's optimization history and parameter importances (matplotlib), each
    left out with a note when the study cannot draw it yet."""
    import matplotlib
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as vis
    images, notes = {}, []
    drawings = {"history.png": lambda: vis.plot_optimization_history(study, target_name=metric),
                "importance.png": lambda: vis.plot_param_importances(
                    study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0), target_name=metric)}
    for name, draw in drawings.items():
        with matplotlib.rc_context(), warnings.catch_warnings():   # Optuna sets a style sheet: ours is kept
            warnings.simplefilter("ignore")   # ExperimentalWarning
            try:
                ax = draw()
            except (ValueError, RuntimeError) as e:   # too few completed trials, no variation
                notes.append(f"{name} left out: {clean(str(e)).splitlines()[0][:200]}")
                continue
            buffer = io.BytesIO()
            ax.figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")   # the legend drawn outside too
            plt.close(ax.figure)
        images[name] = buffer.getvalue()
    return images, notes


def page(result: TuneResult, images: dict) -> str:
    """tune.html: the study's summary, the trials' table and the figures inline (base64), nothing fetched."""
    from .report.html import CSS, _e, _table
    header, rows = result.rows()
    done, running = counted(result.trials)
    best = "no trial completed yet" if result.best is None else \
        (f"best: trial-{result.best.number:04d}, {_e(result.metric)} {result.best.value:.6g} "
         f"({_e(_shown(result.best_values))}); recipe <a href=\"{RECIPE}\">{RECIPE}</a>")
    links = ' &middot; <a href="compare.html">compare.html</a> (the best trials)' if result.comparison else ""
    figs = "".join(f'<figure><img alt="{_e(n)}" src="data:image/png;base64,{base64.b64encode(b).decode()}">'
                   f"<figcaption>{_e(FIGURES[n])}</figcaption></figure>" for n, b in images.items())
    notes = "".join(f'<p class="note">{_e(n)}</p>' for n in result.notes)
    return (f'<!doctype html><html><head><meta charset="utf-8"><meta name="generator" content="nettrain tune">'
            f"<title>nettrain tune: {_e(result.name)}</title><style>{CSS}</style></head><body>"
            f"<h1>nettrain tune: {_e(result.name)}</h1>"
            f'<p class="status">{_e(result.direction)} {_e(result.metric)} (the validation split); {done} trials '
            f"done, {running} running; storage {_e(result.storage)}</p><p>{best}{links}</p>{notes}"
            f"<h2>Figures</h2>{figs or '<p>none yet</p>'}<h2>Trials</h2>"
            f"{_table([_e(c) for c in header], [[_e(c) for c in r] for r in rows], left=2)}</body></html>")


def compare_best(plan: Plan, result: TuneResult, k: int):
    """nettrain compare of the best k completed trials whose run directories are here (report/compare.py)."""
    from .report.compare import compare
    dirs = [plan.folder / t.user_attrs["dir"] for t in best_of(result.trials, plan.direction)
            if (plan.folder / t.user_attrs.get("dir", "-") / "metrics.csv").exists()][:k]
    if not dirs or k == 0:
        return None
    try:
        return compare(dirs, out=plan.folder)
    except NettrainError as e:
        result.notes.append(f"compare.html left out: {e}")
        return None


def finish(optuna, study, plan: Plan, result: TuneResult, settings: Settings) -> TuneResult:
    """The study's summary files in its folder, from every trial it holds (other processes' too)."""
    result.trials = sorted(study.get_trials(deepcopy=True), key=lambda t: t.number)
    ranked = best_of(result.trials, plan.direction)
    if ranked:
        result.best = ranked[0]
        result.best_values = plan.values(result.best.params)
        result.recipe = write_recipe(plan, result)
    images, notes = figures(optuna, study, plan.metric) if ranked else ({}, [])
    result.notes += notes
    for name, data in images.items():
        write_bytes(plan.folder / name, data, root=plan.folder)
        result.figures.append(plan.folder / name)
    result.comparison = compare_best(plan, result, settings.compare)
    result.html = plan.folder / PAGE
    write_text(result.html, page(result, images), root=plan.folder)
    return result


# ---- the whole tune ---------------------------------------------------------------------------------------

def tune(space: dict, options: Optional[dict] = None, config=None, settings: Optional[Settings] = None,
         trust_code: bool = False, tune_process: bool = False, say: Callable = print) -> TuneResult:
    """Search `space` ({key: Dimension}: parse_space, read_space) over fits with `options` (fit's keys) in common;
    see the module docstring. `say`: where the tune's own lines go (each fit prints its progress as fit does)."""
    optuna = _optuna()
    s = settings or Settings()
    s.check()
    space = _merged(space, s)
    options = dict(options or {})
    base = check(space, options, config)   # before anything is written
    metric, direction = held_out(base, s.objective, s.direction)
    name = s.study or SAFE.sub("_", str(base.data.name))[:100]
    folder = make_dir(Path(s.study_dir) if s.study_dir else Path("tunes") / name)
    lock, url = StudyLock(folder), s.storage or f"sqlite:///{(folder / DB).resolve()}"
    with lock:   # the processes of one study folder make a new database's tables one at a time
        storage = open_storage(optuna, url, folder / DB if s.storage is None else None)
    plan = Plan(space, options, config, folder, metric, direction, trust_code, tune_process)
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)   # the tune says what happens, in its own lines
    try:
        study = open_study(optuna, storage, name, direction, searched(space, base, metric, direction), s, lock)
        done, _ = counted(study.get_trials(deepcopy=False))
        say(f"tune: study {name} in {folder} ({masked(url)}): {direction} {metric}; {done} of {s.trials} trials "
            f"done")
        try:
            ran = run_trials(optuna, study, Objective(plan, lock, say), s, lock)
        except KeyboardInterrupt:
            say(f"tune: stopped; study {name} keeps its finished trials: run the same command again to go on")
            raise
        result = TuneResult(folder, name, masked(url), metric, direction, list(space), ran, [])
        with lock:
            return finish(optuna, study, plan, result, s)
    finally:
        optuna.logging.set_verbosity(verbosity)


def _merged(space: dict, s: Settings) -> dict:
    """The command line's ranges and the space file's (--space), each key given once."""
    if not s.space:
        return dict(space)
    given = read_space(s.space)
    both = sorted(set(given) & set(space))
    if both:
        raise ConfigError(f"{both[0]} is in the space file {printable(s.space)} and on the command line; give it once")
    return {**given, **space}


__all__ = ["tune", "parse_space", "read_space", "parse_spec", "Settings", "TuneResult", "Dimension", "Pruning"]
