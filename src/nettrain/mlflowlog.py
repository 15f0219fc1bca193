"""MLflow tracking: a fit logged to an MLflow tracking server or database as it trains, and a finished run
directory uploaded later (`nettrain mlflow-sync RUN`).

Tracking is on only when asked: `--run.mlflow URI` (`off`: never), else the variable NETTRAIN_MLFLOW_URI, else
MLflow's own MLFLOW_TRACKING_URI. What a fit logs: the resolved config flattened as params (as config.yaml records
it), each epoch's metrics.csv row with step = epoch, the test metrics (test_loss, test_accuracy, test_macro_f1, ...
at the last epoch's step), tags (dataset, data kind, model, nettrain version, git commit, device, host CPU) and, at
the end, the run's files as artifacts (config.yaml, metrics.csv, test_metrics.json, report.html, figures/,
best.safetensors, ...). The MLflow run's id is kept in the run directory (RUN_FILES["mlflow"]): a resume, or a later
mlflow-sync, continues that same MLflow run, logging only the epochs it lacks.

The run directory stays the record, and tracking never stops or slows training: the client runs in a thread of
its own, fed through a bounded queue (an epoch's row is a put that never waits); a server that is down or fails
gives one warning line, after which the fit logs nothing more to it (mlflow-sync uploads the run later). The client
is bounded too, where the user has not set MLflow's own variables: 2 retries 1 s and 2 s apart, 10 s a request
(MLflow's defaults, 7 retries with doubling waits and 120 s a request, would hold a fit's end for minutes). Under
torchrun only the main process logs. mlflow is imported only when tracking is on (`pip install 'nettrain[mlflow]'`).
"""
from __future__ import annotations

import importlib.util
import json
import logging
import os
import platform
import queue
import re
import sys
import threading
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from .config import read_yaml
from .errors import ConfigError, NettrainError
from .files import LIMITS, FileError, open_read, read_text, write_text
from .metrics_row import COLUMNS, is_extra
from .runs import RUN_FILES, RunDir, read_metrics
from .tbreport import figures_of, hparams_of

ENV = "NETTRAIN_MLFLOW_URI"
OFF = ("off", "")
INSTALL = "pip install 'nettrain[mlflow]'"
RUN_ID = re.compile(r"[0-9a-f]{32}")       # MLflow's run ids: a uuid4's 32 hex digits
# MLflow's client, unless the user set these: a bounded wait on a server that is down or slow, and quiet
CLIENT_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                   "MLFLOW_HTTP_REQUEST_TIMEOUT": "10", "MLFLOW_LOGGING_LEVEL": "WARNING"}
EXPERIMENT = "nettrain"     # the experiment runs go to, unless MLFLOW_EXPERIMENT_NAME names another
FINISH_WAIT = 60.0          # seconds a fit's end waits for the uploads still queued (artifacts: about 1 s a run)
QUEUE = 1024                # jobs waiting for the client: an epoch is one; a full queue means the server fell behind
PARAM_LENGTH, KEY_LENGTH = 500, 250   # MLflow servers before 2.x refuse longer param values; keys past 250
BATCH = 100                 # params (and 1000 metrics) per log_batch: a server's limits per request
NOT_PARAMS = {"run.dir", "run.overwrite", "run.mlflow"}   # where the run lives and is tracked, not what trained
# the run's files uploaded as artifacts, by RUN_FILES key, with their size limit (figures/ are the report's PNGs)
ARTIFACTS = {"config": "config", "metrics": "json", "test_metrics": "json", "confusion": "json",
             "environment": "json", "events": "json", "report": "json", "model_summary": "json",
             "best_safetensors": "checkpoint", "onnx": "onnx", "onnx_meta": "json"}


def tracking_uri(value: Optional[str]) -> Optional[str]:
    """The URI a fit logs to: run.mlflow when given (None for off), else NETTRAIN_MLFLOW_URI, else
    MLFLOW_TRACKING_URI; None when none asks for tracking."""
    if value is not None:
        return None if value.strip().lower() in OFF else value
    return os.environ.get(ENV) or os.environ.get("MLFLOW_TRACKING_URI") or None


def check(cfg) -> None:
    """Before anything is built: tracking asked for without the MLflow client is one line naming the install."""
    uri = tracking_uri(cfg.run.mlflow)
    if uri is not None and importlib.util.find_spec("mlflow") is None:
        raise ConfigError(f"MLflow tracking ({uri}) needs the MLflow client, which is not installed: {INSTALL} (or "
                          f"leave out --run.mlflow and unset {ENV} and MLFLOW_TRACKING_URI)")


def callbacks(cfg, run, is_main: bool) -> list:
    """The fit's MLflow callback, when tracking is on and this is the process that writes the run; else []."""
    uri = tracking_uri(cfg.run.mlflow)
    return [MlflowLog(uri, run)] if uri is not None and is_main and run.writes else []


# ---- what is logged, from the run's own data ----

def params_of(config: dict) -> dict:
    """The config as flat params (tbreport.hparams_of: lists and mappings as JSON text, unset keys left out), without
    where the run lives and is tracked; keys and values within MLflow's limits."""
    flat = {k: v for k, v in hparams_of(config).items() if k not in NOT_PARAMS}
    return {_key(k): str(v)[:PARAM_LENGTH] for k, v in flat.items()}


def _key(name: str) -> str:
    """A name as MLflow takes it: letters, digits, _ - . / and space (a user's args key may hold anything)."""
    return re.sub(r"[^\w\-./ ]", "_", name)[:KEY_LENGTH]


def host_cpu() -> str:
    """This machine's CPU model, from /proc/cpuinfo (Linux) or the platform."""
    try:
        for line in read_text("/proc/cpuinfo", LIMITS["json"], "cpu info").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except (FileError, UnicodeError):
        pass
    return platform.processor() or platform.machine()


def tags_of(run_path: Path, config: dict) -> dict:
    """The MLflow run's tags, from the run's config and environment.json (what trained, with which code, where)."""
    env = _json(run_path / RUN_FILES["environment"])
    git = env.get("git") if isinstance(env.get("git"), str) else None
    tags = {"mlflow.runName": run_path.name, "nettrain.run_dir": str(run_path.resolve()),
            "nettrain.dataset": (config.get("data") or {}).get("name"),
            "nettrain.model": (config.get("model") or {}).get("name"),
            "nettrain.data_kind": env.get("data_kind"), "nettrain.version": env.get("nettrain"),
            "nettrain.device": env.get("device"), "nettrain.precision": env.get("precision"),
            "nettrain.git": git, "mlflow.source.git.commit": git.split()[0] if git else None}
    return {k: str(v)[:PARAM_LENGTH] for k, v in tags.items() if v is not None}


def _json(path: Path) -> dict:
    """A run's JSON file as a mapping; {} when it is missing, not regular, or not a JSON object."""
    try:
        value = json.loads(read_text(path, LIMITS["json"], "run file", follow=False))
    except (FileError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def test_metrics(test: dict) -> dict:
    """test_metrics.json's numbers as metric names: test_loss, test_accuracy (or test_mse, test_mae, test_r2),
    test_f1 and test_roc_auc (two classes), test_macro_precision, test_macro_recall, test_macro_f1, and the run's
    own metrics (train.metrics) as test_<name>."""
    out = {f"test_{k}": test.get(k) for k in ("loss", "accuracy", "mse", "mae", "r2", "f1", "roc_auc")}
    for group, prefix in (("macro", "test_macro_"), ("metrics", "test_")):
        values = test.get(group) if isinstance(test.get(group), dict) else {}
        out.update({_key(f"{prefix}{k}"): v for k, v in values.items()})
    return {k: float(v) for k, v in out.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def read_run_id(run_path: Path) -> Optional[str]:
    """The MLflow run id kept in the run directory, or None: the file is data, taken only as 32 hex digits."""
    path = Path(run_path) / RUN_FILES["mlflow"]
    if not path.exists() and not path.is_symlink():
        return None
    try:
        text = read_text(path, 1024, "MLflow run id file", follow=False).strip()
    except FileError as e:
        _warn(f"{e}; logging to a new MLflow run")
        return None
    if not RUN_ID.fullmatch(text):
        _warn(f"{path} does not hold an MLflow run id (32 hex digits); logging to a new MLflow run")
        return None
    return text


def _warn(message: str):
    print(f"nettrain: warning: {message}", file=sys.stderr, flush=True)


def _artifacts(run_path: Path) -> tuple:
    """([(path, folder in the MLflow run or None)] of the run's files to upload, [skipped: why]): regular files of
    a bounded size reached without a link below the run (a run folder from elsewhere may hold a FIFO, or a
    `report.html -> ~/.ssh/id_rsa`, which is never uploaded)."""
    wanted = [(run_path / RUN_FILES[key], None, limit) for key, limit in ARTIFACTS.items()]
    wanted += [(path, RUN_FILES["figures"], "image") for _, path in figures_of(run_path)]
    found, skipped = [], []
    for path, folder, limit in wanted:
        if not path.exists() and not path.is_symlink():
            continue
        if folder is not None and (run_path / folder).is_symlink():
            skipped.append(f"{path}: {run_path / folder} is a symbolic link")
            continue
        try:
            with open_read(path, LIMITS[limit], "artifact", follow=False):
                pass
        except FileError as e:
            skipped.append(str(e))
            continue
        found.append((path, folder))
    return found, skipped


# ---- the client ----

def _client(uri: str):
    """MLflow's client for `uri`, its HTTP budget and logging bounded as CLIENT_DEFAULTS say unless the user set
    them; urllib3's retry lines from nettrain's thread are left out (the fit says one line itself)."""
    for name, value in CLIENT_DEFAULTS.items():
        os.environ.setdefault(name, value)
    logging.getLogger("urllib3.connectionpool").addFilter(_OWN_THREAD)
    try:
        from mlflow.tracking import MlflowClient
    except ImportError as e:
        raise ConfigError(f"MLflow tracking needs the MLflow client ({e}): {INSTALL}") from None
    return MlflowClient(tracking_uri=uri)


class _NotOwnThread(logging.Filter):
    def filter(self, record) -> bool:
        return record.threadName != THREAD


THREAD = "nettrain-mlflow"
_OWN_THREAD = _NotOwnThread()


@dataclass
class Upload:
    """One nettrain run's MLflow run, through `client`: opened (the kept id's run, else a new one), then its
    epochs, test metrics and artifacts; an epoch already logged (by the run before a resume) is not logged again."""
    client: object
    run_id: Optional[str] = None
    steps: set = field(default_factory=set)
    params: int = 0
    rows: int = 0

    def start(self, run_id: Optional[str], config: dict, tags: dict) -> str:
        from mlflow.entities import Param, RunTag
        from mlflow.exceptions import MlflowException
        had = {}
        if run_id is not None:
            try:
                had = self.client.get_run(run_id).data.params
                self.steps = {m.step for m in self.client.get_metric_history(run_id, "train_loss")}
                self.client.update_run(run_id, status="RUNNING")
            except MlflowException as e:   # a run of another store (the URI changed): a new run there
                if e.error_code != "RESOURCE_DOES_NOT_EXIST":
                    raise
                run_id = None
        if run_id is None:
            run_id = self.client.create_run(_experiment(self.client), run_name=tags.get("mlflow.runName")).info.run_id
        self.run_id = run_id
        params = params_of(config)
        # a resume's new value of a param (train.epochs): MLflow's params are fixed, so it is a tag
        changed = {f"resumed.{k}": v for k, v in params.items() if k in had and had[k] != v}
        new = [Param(k, v) for k, v in params.items() if k not in had]
        tags = [RunTag(k, v) for k, v in {**tags, **changed}.items()]
        for i in range(0, max(len(new), len(tags)), BATCH):
            self.client.log_batch(run_id, params=new[i:i + BATCH], tags=tags[i:i + BATCH])
        self.params = len(params)
        return run_id

    def log_rows(self, rows: list):
        """metrics.csv rows (dicts), each at step = its epoch, those the MLflow run lacks; the run's own metrics
        (val_<name>) with the named columns."""
        from mlflow.entities import Metric
        now = int(time.time() * 1000)
        metrics = []
        for row in rows:
            epoch = row.get("epoch")
            if not isinstance(epoch, int) or epoch in self.steps:
                continue
            self.steps.add(epoch)
            self.rows += 1
            metrics += [Metric(k, float(v), now, epoch) for k, v in row.items()
                        if (k in COLUMNS or is_extra(k)) and k != "epoch" and isinstance(v, (int, float))
                        and not isinstance(v, bool)]
        for i in range(0, len(metrics), 1000):
            self.client.log_batch(self.run_id, metrics=metrics[i:i + 1000])

    def finish(self, run_path: Path, ended: bool = True) -> list:
        """The test metrics (test_metrics.json's) and the run's files; the MLflow run ended when the fit has (a run
        stopped before its test stays RUNNING). Returns the files skipped (not regular, past their size, behind a
        link)."""
        from mlflow.entities import Metric
        now, step = int(time.time() * 1000), max(self.steps, default=0)
        test = test_metrics(_json(run_path / RUN_FILES["test_metrics"]))
        if test:
            self.client.log_batch(self.run_id, metrics=[Metric(k, v, now, step) for k, v in test.items()])
        found, skipped = _artifacts(run_path)
        for path, folder in found:
            self.client.log_artifact(self.run_id, str(path), folder)
        if ended:
            self.client.set_terminated(self.run_id, "FINISHED")
        return skipped


def _experiment(client) -> str:
    """The experiment's id: MLFLOW_EXPERIMENT_ID, else the one MLFLOW_EXPERIMENT_NAME (or "nettrain") names, made
    when missing."""
    if os.environ.get("MLFLOW_EXPERIMENT_ID"):
        return os.environ["MLFLOW_EXPERIMENT_ID"]
    name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or EXPERIMENT
    found = client.get_experiment_by_name(name)
    return found.experiment_id if found is not None else client.create_experiment(name)


# ---- while a fit trains: a thread of its own ----

class _Worker:
    """A thread that runs jobs (functions of an Upload) in order; the first that fails says one warning line and
    the rest are dropped. `put` never waits: a full queue is a server that fell behind, said the same way."""

    def __init__(self, uri: str, run_path: Path):
        self.uri, self.run_path, self.failed = uri, run_path, False
        self.abandoned = False   # the fit's end stopped waiting: its run directory is no longer this thread's to write
        self.jobs = queue.Queue(QUEUE)
        self.thread = threading.Thread(target=self._loop, name=THREAD, daemon=True)
        self.thread.start()

    def put(self, job: Optional[Callable]) -> bool:
        try:
            self.jobs.put_nowait(job)
            return True
        except queue.Full:
            self._fail("it fell behind (more than 1024 uploads waiting)")
            return False

    def _loop(self):
        upload = None
        while (job := self.jobs.get()) is not None:
            if self.failed:
                continue
            try:
                upload = upload or Upload(_client(self.uri))
                job(upload)
            except Exception as e:   # the server, the network, the client: the run directory keeps the record
                self._fail(_reason(e))

    def _fail(self, reason: str):
        if not self.failed:
            self.failed = True
            _warn(f"MLflow tracking at {self.uri} failed ({reason}); training goes on and {self.run_path} keeps "
                  f"the record: nettrain mlflow-sync {self.run_path} --run.mlflow {self.uri} uploads it later")

    def close(self, wait: float) -> bool:
        """Let the queued jobs run, for `wait` seconds at most; True when they have."""
        if self.put(None):
            self.thread.join(wait)
        self.abandoned = self.thread.is_alive()
        if self.abandoned and not self.failed:
            self._fail(f"its uploads took longer than {wait:.0f} s")
        return not self.abandoned


def _reason(e: Exception) -> str:
    """An exception as a short clause: its type and first line."""
    first = (str(e).strip().splitlines() or [""])[0]
    return f"{type(e).__name__}: {first[:160]}" if first else type(e).__name__


class MlflowLog:
    """The callback (callbacks.py) that logs a fit to MLflow through a _Worker: the main thread only queues."""

    def __init__(self, uri: str, run: RunDir):
        self.uri, self.run = uri, run
        self.worker = None

    def on_fit_start(self, fit):
        self.worker = _Worker(self.uri, self.run.path)
        weakref.finalize(self, self.worker.put, None)   # a fit that raised: the thread ends once its jobs are done
        run_id = read_run_id(self.run.path)
        id_file = self.run.claim(self.run.path / RUN_FILES["mlflow"])   # recorded here, by the run's writer
        config, tags = fit.config, {**tags_of(self.run.path, fit.config), "nettrain.cpu": host_cpu()}
        history, worker = [dict(row) for row in fit.history], self.worker

        def start(upload: Upload):
            new_id = upload.start(run_id, config, tags)
            if new_id != run_id and not worker.abandoned:
                write_text(id_file, new_id + "\n", root=self.run.path)
            upload.log_rows(history)
        self.worker.put(start)

    def on_epoch_end(self, fit, epoch: int, metrics: dict):
        row = dict(metrics)
        self.worker.put(lambda upload: upload.log_rows([row]))

    def on_fit_end(self, fit, test: dict):
        self.worker.put(lambda upload: upload.finish(self.run.path))
        self.worker.close(FINISH_WAIT)


# ---- nettrain mlflow-sync RUN ----

@dataclass
class Synced:
    """What mlflow-sync uploaded: the MLflow run, its params, the epochs it lacked, the files, the files skipped."""
    run_id: str
    uri: str
    params: int
    rows: int
    artifacts: int
    skipped: list


def sync(run_path, uri: Optional[str] = None) -> Synced:
    """Upload a run directory to MLflow from its files (config.yaml, environment.json, metrics.csv,
    test_metrics.json, the artifacts): the MLflow run it logged to when it has one (only the epochs missing there
    are added), else a new one, whose id is then kept in the run. The run is locked meanwhile: not while a fit
    writes it."""
    uri = tracking_uri(uri)
    if uri is None:
        raise ConfigError(f"mlflow-sync needs a tracking URI: give --run.mlflow URI (e.g. sqlite:///mlflow.db), or "
                          f"set {ENV} or MLFLOW_TRACKING_URI")
    run_path = Path(run_path)
    if not (run_path / RUN_FILES["config"]).is_file():
        raise ConfigError(f"{run_path} is not a run directory (no config.yaml); give the directory of a run "
                          f"started by nettrain fit")
    run = RunDir.open(run_path)
    try:
        return _sync_locked(run, uri)
    finally:
        run.unlock()


def _sync_locked(run: RunDir, uri: str) -> Synced:
    config = read_yaml(read_text(run.config, LIMITS["config"], "config", follow=False)) or {}
    if not isinstance(config, dict):
        raise ConfigError(f"{run.config} is not a mapping of config sections; give a run nettrain fit wrote")
    rows = [row.as_dict() for row in read_metrics(run.metrics)] if run.metrics.exists() else []
    run_id = read_run_id(run.path)
    upload = Upload(_client(uri))
    try:
        new_id = upload.start(run_id, config, tags_of(run.path, config))
        upload.log_rows(rows)
        epochs = (config.get("train") or {}).get("epochs")
        ended = run.test_metrics.exists() or bool(rows and isinstance(epochs, int) and rows[-1]["epoch"] >= epochs)
        skipped = upload.finish(run.path, ended)
    except NettrainError:
        raise
    except Exception as e:
        raise NettrainError(f"MLflow at {uri} failed ({_reason(e)}); check that the server runs and the URI is "
                            f"right, then run nettrain mlflow-sync {run.path} again") from None
    if new_id != run_id:
        write_text(run.claim(run.path / RUN_FILES["mlflow"]), new_id + "\n", root=run.path)
    return Synced(new_id, uri, upload.params, upload.rows, len(_artifacts(run.path)[0]), skipped)
