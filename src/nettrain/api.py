"""The Python API: `fit` (training.py does the work) and `load` (a predictor.py `Predictor`).

    run = nettrain.fit(dataset="mnist", model="mlp", epochs=1, data_dir="data")
    run = nettrain.fit(model=my_module, data=(x, y), loss="mse", optimizer="sgd", lr=0.2, epochs=200)
    model = nettrain.load("runs/xyz")          # best.pt of a run, or any checkpoint file
    model.predict(["cat.png", pil_image, uint8_array]).labels
    model.evaluate()                             # the test split it was trained with
    nettrain.report("runs/xyz")                  # figures and report.html, from the run directory alone

`fit` takes the same keys as the config: shortcut names (lr, epochs, batch_size, optimizer, ...), dotted
keys (`**{"optim.momentum": 0.9}`), or whole sections (`optim={"momentum": 0.9}`).
"""
from __future__ import annotations

import os
import sys
import types
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from . import usercode
from ._malloc import tuning_allowed
from .callbacks import check as check_callbacks
from .config import SECTIONS, Config
from .data import DataInfo, from_user_data
from .data.images import is_image_file
from .engine import checkpoint as ckpt_io
from .engine.device import resolve_device, resolve_precision
from .errors import CheckpointError, ConfigError, ModelError, NettrainError, clean
from .kinds import KINDS, kind_of
from .models import MODELS, build_model
from .models.flat import FlatInput
from .predictor import Predictions, Predictor, format_report
from .runs import MANIFEST, RUN_FILES, holds_no_run, lacks_evidence
from .trust import API_FIXES, CONFIG_FIXES, RESUME_FIXES, Gate, run_folder_of


# ---- configuration --------------------------------------------------------------------------------

def resolve_config(config=None, options: Optional[dict] = None) -> Config:
    """A Config from a Config, a dict, a YAML path or None (the defaults), with `options` applied."""
    if config is None:
        cfg = Config()
    elif isinstance(config, Config):
        cfg = config
    elif isinstance(config, dict):
        cfg = Config.from_dict(config)
    else:
        cfg = Config.load(config)
    flat = {}
    for key, value in (options or {}).items():
        if key in SECTIONS and isinstance(value, dict):
            flat.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            flat[key] = value
    return cfg.override(flat) if flat else cfg


# ---- fit -------------------------------------------------------------------------------------------

def _restarted(options: dict) -> tuple:
    """(the run directory to resume, the options) on an attempt that torchrun's agent restarted after a process of
    the job died (engine/elastic.py); (None, options) otherwise. A run directory the dead attempt made but had not
    yet written its config into is started again in place (`run.overwrite` deletes only nettrain's own files)."""
    from .engine import elastic
    from .runs import RunDir
    path = elastic.run_to_resume()
    if path is None:
        return None, options
    main = os.environ.get("RANK", "0") == "0"
    if not (path / "config.yaml").exists():
        return None, {**options, "run.dir": str(path), "run.overwrite": True}
    if main:
        print(f"nettrain: torchrun restarted the job (restart {elastic.restart_count()} of at most "
              f"{elastic.max_restarts()}): resuming {path} from its last checkpoint", flush=True)
        RunDir(path).add_event(event="restart", restart=elastic.restart_count(), max_restarts=elastic.max_restarts())
    # the lr finder chose the run's lr on the first attempt: its config.yaml holds it
    return path, {k: v for k, v in options.items() if not (k in ("lr", "optim.lr") and v == "auto")}


# the options by which the user names a kind of code anew, rather than take the resumed run's
OWN_KEYS = {"model": {"model", "model.name"}, "loss": {"loss", "train.loss"},
            "optimizer": {"optimizer", "optim.name"}, "scheduler": {"scheduler", "sched.name"},
            "metric": {"metrics", "train.metrics"}}


def _given_kinds(options: dict) -> set:
    keys = set(options) | {f"{k}.{sub}" for k, v in options.items() if k in SECTIONS and isinstance(v, dict)
                           for sub in v}
    return {kind for kind, names in OWN_KEYS.items() if names & keys}


def _run_gate(run_dir: Path, trust_code: bool, options: dict, module, loss, fixes: dict,
              resume: bool = True) -> Gate:
    """How the user code a run folder's config names is imported (trust.py): by the record of the run's checkpoint
    (best.pt is the newer after a stop between the two writes; a run stopped before its first checkpoint has none,
    and its config's specs go through the trust store alone), but what the user gives anew is their own. A new
    run from the folder's config (not `resume`) needs no readable checkpoint: without one, the store alone."""
    own = _given_kinds(options) | ({"model"} if module is not None else set()) | \
        ({"loss"} if loss is not None else set())
    kept = [p for p in (run_dir / "last.pt", run_dir / "best.pt") if p.exists()]
    try:
        code = ckpt_io.load(kept[0], kinds=KINDS).get("code") if kept else None
    except NettrainError:
        if resume:
            raise
        code = None
    return Gate(run_dir, code, trust_code, own, fixes)


def _config_and_gate(config, resume, options: dict, trust_code: bool, module, loss, fixes: Optional[dict]):
    """The run's config (a resumed run's own, or the one given) and, where that config is a run's data, its Gate."""
    if resume is None:
        cfg, gate = resolve_config(config, options), None
        if run_folder_of(config) is not None:   # a run's config.yaml is that run's data, not the user's program
            gate = _run_gate(run_folder_of(config), trust_code, options, module, loss, fixes or CONFIG_FIXES,
                             resume=False)
        return cfg, gate
    run_dir = Path(resume)
    if not (run_dir / "config.yaml").exists():   # without last.pt it starts again from epoch 0 (training.py)
        raise _no_run_to_resume(run_dir)
    cfg = resolve_config(run_dir / "config.yaml", options)
    return cfg, _run_gate(run_dir, trust_code, options, module, loss, fixes or RESUME_FIXES)


def _no_run_to_resume(run_dir: Path) -> CheckpointError:
    """Why `run_dir`, which has no config.yaml, cannot be resumed, and what to do instead."""
    if holds_no_run(run_dir):
        return CheckpointError(f"{run_dir} holds no run to resume: a fit was stopped there before it wrote "
                               f"anything but its lock; start the run again: nettrain fit ... --run-dir "
                               f"{run_dir}")
    if (run_dir / MANIFEST).exists():
        return CheckpointError(f"{run_dir} has no config.yaml to resume: the run stopped before it wrote it; "
                               f"start it again with nettrain fit ... --run-dir {run_dir} --overwrite")
    return CheckpointError(f"{run_dir} is not a run directory with a checkpoint to resume (no config.yaml); "
                           f"give the directory of a run started by nettrain fit")


def _bare(module: nn.Module) -> nn.Module:
    """The model a DataParallel or DistributedDataParallel of the user's holds: nettrain trains, saves and records
    that (its devices are nettrain's choice: several GPUs by torchrun, docs/distributed.md)."""
    bare = ckpt_io.without_parallel(module)
    if bare is not module:
        print(f"nettrain: {type(module).__name__} taken off: the run trains and saves the {type(bare).__name__} "
              f"inside it (several GPUs: torchrun)", file=sys.stderr)
    return bare


def _naming_user_objects(cfg, module, loss):
    """`cfg` naming the model and loss objects the caller gave (the config holds names, not objects)."""
    if module is not None:
        cfg = cfg.override({"model.name": f"{type(module).__module__}:{type(module).__qualname__}"})
    if loss is not None:   # the config holds a name: the function's, or the loss module's class
        named = loss if isinstance(loss, types.FunctionType) else type(loss)
        cfg = cfg.override({"train.loss": f"{named.__module__}:{named.__qualname__}"})
    return cfg


def _callback_objects(options: dict) -> tuple:
    """(the callback objects given as callbacks=, the options with the specs among them as run.callbacks)."""
    given = options.get("callbacks")
    if given is None:
        return [], options
    given = [given] if isinstance(given, str) else given
    objects = check_callbacks([c for c in given if not isinstance(c, str)] if isinstance(given, (list, tuple))
                              else given)
    specs = [c for c in given if isinstance(c, str)]
    rest = {k: v for k, v in options.items() if k != "callbacks"}
    return objects, {**rest, "run.callbacks": specs} if specs else rest


def _callbacks_of_config(cfg: Config, gate: Optional[Gate], given: bool) -> list:
    """The callbacks a config names (run.callbacks: file.py:Class specs), each built without arguments. A run's
    config is data: its specs are imported only when given again (--callbacks), as a resume's progress bar is."""
    specs = cfg.run.callbacks
    if not specs:
        return []
    if gate is not None and not given:
        print(f"nettrain: the run's callbacks ({', '.join(map(str, specs))}) are not imported from its config; give "
              f"them again with --callbacks to use them", file=sys.stderr)
        return []
    built = []
    for spec in specs:
        if not isinstance(spec, str):
            raise ConfigError(f"run.callbacks holds callback classes as file.py:Class or package.module:Class, got "
                              f"{spec!r:.60}")
        cls = usercode.resolve(spec, "callback")
        try:
            built.append(cls())
        except Exception as e:
            raise ConfigError(f"callback {spec!r} cannot be built without arguments ({usercode.raised(e)}); give "
                              f"it defaults, or pass an instance: nettrain.fit(callbacks=[...])") from None
    return built


def _metrics_of_run(cfg: Config, gate: Optional[Gate]) -> Config:
    """A run's config is data: its train.metrics that name the user's functions (file.py:function) are computed
    only when given again (--metrics); registered names are kept. Metrics watch the run, as callbacks do."""
    if gate is None or gate.owns("metric"):
        return cfg
    user = [m for m in cfg.train.metrics if isinstance(m, str) and ":" in m]
    if not user:
        return cfg
    print(f"nettrain: the run's metric functions ({', '.join(user)}) are not imported from its config; give them "
          f"again with --metrics to compute them", file=sys.stderr)
    return cfg.override({"train.metrics": [m for m in cfg.train.metrics if m not in user]})


def fit(config=None, *, data=None, val_data=None, classes=None, collate_fn=None, resume=None,
        trust_code: bool = False, tune_process: bool = False, _fixes: Optional[dict] = None, **options) -> Run:
    """Train a model; returns the Run (its directory, metrics and trained model). See the module docstring.
    A resumed run's config is data, and so is a config file taken from a run folder (trust.run_folder_of): the user
    code it names runs only as trust.py allows (`trust_code=True` to trust it, or give the model again). The
    caller's process is left as it was (RNGs, threads, allocator); `tune_process=True` lets training on the CPU
    keep freed memory in the process, as the command does (_malloc.py).

    `data`/`val_data` may also be a torch Dataset batched by your `collate_fn` (items of any shape: sequences
    padded per batch), or a ready DataLoader, used with its own batch size, sampler and collate (data/custom.py).
    A resume with your DataLoader is exact only when its order is: nettrain calls `sampler.set_epoch(epoch)`
    before each epoch when the sampler has one (a DistributedSampler, seeded); a Dataset nettrain batches itself
    is ordered by (seed, epoch) and always resumes exactly."""
    if collate_fn is not None and data is None:
        raise ConfigError("collate_fn= batches the items of data=; give data= (a torch Dataset) with it")
    if resume is None:   # a restart by torchrun --max-restarts resumes the run its first attempt made
        resume, options = _restarted(options)
    auto_lr = any(options.get(k) == "auto" for k in ("lr", "optim.lr"))
    if auto_lr:   # lr="auto": the lr finder chooses it below (lrrange.py)
        if resume is not None:
            raise ConfigError("lr auto chooses the learning rate of a new run; a resumed run keeps its own (leave out "
                              "--lr)")
        options = {k: v for k, v in options.items() if not (k in ("lr", "optim.lr") and v == "auto")}
    callbacks, options = _callback_objects(options)
    module = _bare(options.pop("model")) if isinstance(options.get("model"), nn.Module) else None
    loss = options.pop("loss") if options.get("loss") is not None and not isinstance(options["loss"], str) else None
    cfg, gate = _config_and_gate(config, resume, options, trust_code, module, loss, _fixes)
    user_data = None
    if data is not None:
        if "dataset" in options or "data.name" in options:
            raise ConfigError("give either dataset=<name> or data=(x, y), not both")
        cfg = cfg.override({"data.name": "arrays"})
        user_data = from_user_data(data, val_data, classes, cfg.data, collate_fn)
    cfg = _naming_user_objects(cfg, module, loss)
    found = None
    if auto_lr:
        from .lrrange import find_for_fit
        cfg, found = find_for_fit(cfg, module, user_data, loss, tune_process, gate)
    with tuning_allowed(tune_process):
        callbacks += _callbacks_of_config(cfg, gate, given="callbacks" in options or "run.callbacks" in options)
        cfg = _metrics_of_run(cfg, gate)
        from .training import train   # here: predict and evaluate load no training code (api.__getattr__)
        run = train(cfg, module, user_data, Path(resume) if resume is not None else None, gate, loss, callbacks)
    if found is not None:
        from .lrrange import keep_plot
        keep_plot(found, run.dir)
    return run


# ---- load ------------------------------------------------------------------------------------------

PRECISIONS = ("auto", "32", "bf16-mixed", "16-mixed")


def load(path, model=None, device: str = "cpu", trust_code: bool = False, _fixes: Optional[dict] = None,
         collate_fn=None, precision: Optional[str] = None) -> Predictor:
    """A trained model from a run directory (its best.pt) or a checkpoint file.

    A checkpoint is data: the user code its config names (a model class, a loss) is imported only when it is the
    user's own, trained on this machine and unchanged since (see trust.py), or with `trust_code=True`. Otherwise
    give `model`: an instance of your own class, or its spec ("my_nets.py:Net", built with the run's model.args).
    A model trained on a Dataset with a collate function predicts on raw items through it: the checkpoint records
    the function's module:qualname, resolved by the same rules, or give it again as `collate_fn`. `precision`: what
    predictions compute in, by default the run's own (bf16 autocast where it trained so); "32" computes as an
    exported model does, which then agrees with it on every input (a bf16 near-tie can tip the other way)."""
    fixes = _fixes or API_FIXES
    if precision is not None and precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    state = ckpt_io.load(path, kinds=KINDS)
    cfg = Config.from_dict(state["config"]).override({"data.download": False})   # reading a file fetches nothing
    info = DataInfo.from_dict(state["data"])
    gate = Gate(state["path"], state.get("code"), trust_code, fixes=fixes)
    if model is None and cfg.model.name in MODELS:
        _check_size(cfg, info, state)
    if model is None or isinstance(model, str):
        try:
            model = build_model(model or cfg.model.name, info.shape, info.outputs, cfg.model.args,
                                gate if model is None else None)
        except ModelError as e:
            raise ModelError(f"{e}; {fixes['model']}") from None
    elif not isinstance(model, nn.Module):
        raise ModelError(f"model= takes an instance of your nn.Module class or its spec 'file.py:Class', got "
                         f"{type(model).__name__}")
    ckpt_io.load_weights(model, state["model"], state["path"], cfg.model.name)
    if cfg.model.flatten and kind_of(info).images:   # trained on flattened images (models/flat.py)
        model = FlatInput(model)
    dev = resolve_device(device)
    model.to(dev)
    if cfg.train.channels_last and kind_of(info).images:
        model.to(memory_format=torch.channels_last)
    if collate_fn is None and info.collate:   # recorded for custom data only (engine/checkfields.py)
        try:
            collate_fn = gate.resolve(info.collate, "collate")
        except ModelError as e:   # a function gone from its module, or not a plain function
            raise ModelError(f"{e}; {fixes.get('collate', 'give collate_fn=')}") from None
    return Predictor(model.eval(), info, cfg, dev,
                     resolve_precision(precision or cfg.train.precision, dev, info.kind, cfg.train.small_linears_fp32),
                     gate,
                     collate_fn=collate_fn)


def _check_size(cfg: Config, info: DataInfo, state: dict):
    """A built-in model's size, from the checkpoint's model.args, against the weights it holds: built first on the
    meta device (no memory), so that args that would allocate far more than the file holds (hidden: [10**9]) are
    refused before they are."""
    try:
        with torch.device("meta"):
            probe = build_model(cfg.model.name, info.shape, info.outputs, cfg.model.args)
    except NettrainError as e:
        raise CheckpointError(f"{state['path']}: {e}") from None
    except Exception as e:   # args of the wrong type for the builder (a string for a width)
        raise CheckpointError(f"{state['path']} holds model.args {cfg.model.args} that model {cfg.model.name!r} "
                              f"cannot be built with ({type(e).__name__}); give a checkpoint written by nettrain "
                              f"fit") from None
    need = sum(t.numel() for t in probe.state_dict().values())
    have = sum(t.numel() for t in state["model"].values())
    if need > have:
        raise CheckpointError(f"{state['path']} holds weights of another model than {cfg.model.name!r} (with "
                              f"model.args {cfg.model.args} it has {need:,} weights, the file {have:,}); use the "
                              f"model and data it was trained with")


def report(run_dir, say=None) -> Path:
    """Draw the figures and write report.html of a run directory (a finished or stopped run) from its files
    alone; returns the page's path. See nettrain/report/. A finished run whose fit drew no report (`run.report:
    false`, as the speed recipes train) lacks what the model-based figures need (predictions.npz: the test images
    with their predictions, top losses, calibration): it is made first, once, from best.pt on the run's test split
    (evidence.py), said in one line; a run whose data or code cannot be loaded here gets the other figures."""
    from .report import build
    from .report.read import check_run_dir
    path = check_run_dir(run_dir)
    if lacks_evidence(path):
        _record_evidence(path, say or (lambda line: print(clean(line), file=sys.stderr)))
    return build(path)


def _record_evidence(path: Path, say):
    import json
    from . import evidence
    from .files import LIMITS, read_text
    from .runs import RunDir
    try:
        predictor = load(path / RUN_FILES["best"])
        test = kind_of(predictor.info).load_for_model(predictor.config.data, predictor.info).test
        result = json.loads(read_text(path / RUN_FILES["test_metrics"], LIMITS["json"], "run file"))
    except (NettrainError, OSError, ValueError) as e:
        say(f"nettrain: the figures of the model's predictions are left out: {e}")
        return
    result = {**result, "acc": result.get("accuracy")} if "accuracy" in result else result
    run = RunDir(path)
    run.lock(command="nettrain report")
    try:
        evidence.record(run, predictor, test, result)
    finally:
        run.unlock()
    say(f"nettrain: {RUN_FILES['predictions']} made from {RUN_FILES['best']} on the test split ({len(test):,} "
        f"examples), for the report's figures of the model's predictions")


def checkpoint_run_dir(path) -> Optional[Path]:
    p = Path(path)
    d = p if p.is_dir() else p.parent
    return d if (d / "config.yaml").exists() else None


def __getattr__(name):
    """`Run` (training.py's), imported when first asked for: `nettrain predict` and `evaluate` import api but need
    no training code (its import pulls in the report writer and the distributed helpers)."""
    if name == "Run":
        from .training import Run
        return Run
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["fit", "load", "report", "Run", "Predictor", "Predictions", "resolve_config", "format_report",
           "NettrainError", "is_image_file"]
