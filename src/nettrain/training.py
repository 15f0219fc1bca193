"""What `fit` does: build the batches, the model and its optimizer step from a config, open (or resume) the run
directory, train epoch by epoch (validating, logging and checkpointing each), and finish: test the model best.pt
holds, then the report.

`train` is the one place that wires data, models, engine and run directory together for training. It reads as its
steps: `_open_resumed` (a resumed run's directory and checkpoint, before anything is built), `build` (the data's
batches, the model and its step, and the config resolved once: every choice the build makes is in it, so that
config.yaml records what trained), `_continue` (the checkpoint put back), `_open_outputs` (the run directory, its
environment, TensorBoard and the live report), `_train_and_test` (the epoch loop `_epochs`, then `_test` of the model
best.pt holds) and `_finish` (the report, the returned Run). engine/loop.py is the step itself.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from . import __version__, _process, evidence, keep, mlflowlog, signals
from ._malloc import freed_memory_kept, tuning
from .callbacks import EarlyStopping, FitState, Hooks
from .config import Config, check_parallelism
from .data import Data
from .engine import checkpoint as ckpt_io, distributed, stop
from .engine.device import describe, resolve_device
from .engine.metrics import summary as metrics_summary
from .engine.loop import train_epoch
from .engine.optim import default_loss_for, fast_forward
from .engine.progress import Progress
from .errors import ConfigError, DivergedError, ModelError, NettrainError
from .kinds import KINDS, kind_of
from .metrics_row import MetricsRow
from .models.blame import failure
from .predictor import Predictor, format_report
from .report.live import LiveReport
from .resume import RECORDED, changes, check_changes, check_data, data_fingerprint, trained_processes, unfinished
from .runs import RUN_FILES, RunDir, write_atomically
from .stepscalars import StepScalars
from .tbreport import TensorBoardLog
from .trust import Gate
from .usercode import user_frame
from .wiring import Training, build, seed_everything


# Seconds to wait between the best.pt and last.pt writes of an improving epoch, so that a test can kill the run
# there (benchmarks/kill_campaign.py); read once, unset in real use.
_PAUSE_BETWEEN_CHECKPOINTS = float(os.environ.get("NETTRAIN_TEST_PAUSE_BETWEEN_CHECKPOINTS") or 0)

LAST = "last epoch"   # best["metric"] of a run without a validation split: best.pt holds the last epoch's weights


@dataclass
class Run:
    """What `fit` returns."""
    dir: Path
    metrics: list                      # one dict per epoch (the rows of metrics.csv)
    model: Predictor                   # the model best.pt holds
    test: dict = field(default_factory=dict)   # its evaluation on the test split
    seconds: float = 0.0


def train(cfg: Config, module: Optional[nn.Module], data: Optional[Data], resume_dir: Optional[Path],
          gate: Optional[Gate] = None, loss=None, callbacks: Optional[list] = None) -> Run:
    """Train as `cfg` says: on the user's `module` and `data` when given (else the config's model and dataset), in a
    new run directory, or continuing `resume_dir` from its last checkpoint. `gate` (trust.py): how the user specs
    of a resumed run's config, which is data, may be imported. `loss`: the user's loss object (cfg names it);
    `callbacks`: objects with callbacks.py's hooks, called at the fit's moments. The run
    directory is locked (runlock.py) while this writes into it. The caller's RNGs and thread count are as they
    were afterwards (_process.py)."""
    device = resolve_device(cfg.train.device)
    # under torchrun, this process's place among the others (engine/distributed.py); alone, world size 1
    with _process.kept(device), distributed.joined(device, cfg.dist.timeout) as world, contextlib.ExitStack() as held:
        return _train(cfg, module, data, resume_dir, held, gate, loss, world, callbacks or [])


def _train(cfg: Config, module: Optional[nn.Module], data: Optional[Data], resume_dir: Optional[Path],
           held: contextlib.ExitStack, gate: Optional[Gate], loss, world=distributed.World(),
           callbacks: list = ()) -> Run:
    """The fit, step by step (the module docstring names them); `held` closes what it opens (the lock, the page)."""
    t0 = time.perf_counter()
    check_parallelism(cfg)
    mlflowlog.check(cfg)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    progress = Progress(cfg.run.progress if world.is_main else "none", cfg.train.epochs)   # the main rank speaks
    # before anything is built: a refused change must not reach the optimizer
    resumed = _open_resumed(resume_dir, cfg, held, world, progress) if resume_dir is not None else None
    state = resumed.state if resumed is not None else None
    seed_everything(cfg.train.seed)
    t = build(cfg, module, data, fresh=state is None, gate=gate, loss=loss, world=world)
    progress.unit, progress.epochs = kind_of(t.info).unit, t.cfg.train.epochs   # the kind's default may set them
    if state is None:   # the models were made alike; what each rank draws from now on is its own
        world.own_random_streams(t.cfg.train.seed)
        so_far = _SoFar([], _first_best(t))
    else:
        so_far = _continue(t, resumed, progress)
        if (so_far.start_epoch >= t.cfg.train.epochs or so_far.stopped_early) and not so_far.finish:
            return _already_finished(t, resumed.run, so_far, progress, t0)
    out = _open_outputs(t, resumed, so_far, held, progress)
    out.hooks = _hooks(t, out, so_far, callbacks)
    _say_start(t, out, so_far)
    test = _train_and_test(t, out, so_far)
    return _finish(t, out, so_far, test, time.perf_counter() - t0)


def _already_finished(t: Training, run: RunDir, so_far: _SoFar, progress: Progress, t0: float) -> Run:
    """A resume of a run that trained its epochs and wrote its finish: nothing to do, and nothing is written, not
    even the environment; its model is best.pt's."""
    stopped = f" (stopped early: {so_far.stopped_early})" if so_far.stopped_early else ""
    progress.say(f"{run.path} already finished its {so_far.start_epoch} epochs{stopped}; give --epochs N to train "
                 f"further")
    _best_into_eval_model(t, run, so_far)
    return Run(run.path, so_far.metrics(), _predictor(t), {}, time.perf_counter() - t0)


@dataclass
class _Resumed:
    """A resumed run before anything is built: its directory (locked), the checkpoint it continues from (None when
    it was stopped before its first: it starts again from epoch 0), its config as it trained, what the given config
    changes of it, and the config.yaml to write once an epoch under the change is kept (a new length)."""
    run: RunDir
    state: Optional[dict]
    saved: dict
    changed: dict
    record_config: Optional[Config] = None


def _open_resumed(resume_dir: Path, cfg: Config, held: contextlib.ExitStack, world, progress: Progress) -> _Resumed:
    """The run directory to resume, locked, with its checkpoint; a change the given config makes that a resume may
    not make is refused (resume.check_changes)."""
    run = world.run(RunDir, lambda: RunDir.open(resume_dir))
    held.callback(run.unlock)
    state = _resume_state(run, progress)
    # through Config: a key added since the run was made (data.task) reads as its default, not as a change
    saved = Config.from_dict(state["config"]) if state is not None else Config.load(run.config)
    task = ((state or {}).get("data") or {}).get("task")
    saved, given = _loss_of_task(saved, task).to_dict(), _loss_of_task(cfg, task).to_dict()
    changed = changes({**saved, "run": {}}, {**given, "run": {}})
    check_changes(run.path, changed, saved)
    resumed = _Resumed(run, state, saved, changed)
    if any(k in RECORDED for k in changed):   # config.yaml says so once an epoch of the new length is kept
        resumed.record_config = Config.from_dict(saved).override({k: changed[k][1] for k in changed if k in RECORDED})
    return resumed


def _loss_of_task(cfg: Config, task: Optional[str]) -> Config:
    """`cfg` with the loss its task trains with (a regression's default is MSE): a run made before config.yaml and
    the checkpoints recorded it says cross-entropy, and its later checkpoints mse, which is no change."""
    if task is None:
        return cfg
    try:
        return cfg.override({"train.loss": default_loss_for(task, cfg.train.loss)})
    except ConfigError:   # a loss the task cannot take: the build says so
        return cfg


@dataclass
class _SoFar:
    """What the epochs so far have kept, and where training stands: a metrics row an epoch (MetricsRow), the best
    epoch ({"metric", "value", "epoch"}: what chooses best.pt), the epochs done, a stopped epoch's batches done
    (engine/stop.py), a resumed run's finish still owed (resume.unfinished) and its new config.yaml; then the epoch
    in progress, and where a stop came (at a step boundary: the step last.pt keeps; or after an epoch's checkpoint);
    a callback's early stop (its reason, kept in the checkpoints)."""
    history: list
    best: dict
    start_epoch: int = 0
    partial: Optional[stop.Partial] = None
    finish: list = field(default_factory=list)
    record_config: Optional[Config] = None
    epoch: int = 0
    stopped_step: Optional[int] = None
    stopped_after: bool = False
    stopped_early: Optional[str] = None

    def metrics(self) -> list:
        """The rows as `Run.metrics` and the checkpoints hold them: plain dicts."""
        return [row.as_dict() for row in self.history]


def _first_best(t: Training) -> dict:
    """What chooses best.pt: a real validation split's accuracy (classification) or loss; without one, the last
    epoch (the test split may be shown each epoch, but it chooses nothing)."""
    metric = ("val_acc" if t.classification else "val_loss") if t.has_val else LAST
    return {"metric": metric, "value": None, "epoch": None}


def _continue(t: Training, resumed: _Resumed, progress: Progress) -> _SoFar:
    """A resumed run's checkpoint put back (weights, optimizer, RNG: `_resume`), with the epoch it stopped in
    (engine/stop.py) and the finish it still owes (`_unfinished`)."""
    run, state, tc = resumed.run, resumed.state, t.cfg.train
    check_data(run.path, state.get("data_fingerprint"), data_fingerprint(t.data.train))
    # a stop in the middle of an epoch: this rank's part of it, checked against this run (engine/stop.py)
    partial = stop.resumed(state.get("partial"), state["path"], state["epoch"], tc.epochs, len(t.train_batches),
                           tc.accumulate, t.world)
    history, best, start_epoch = _resume(t, run, state, progress)
    so_far = _SoFar(history, best, start_epoch, partial, _unfinished(t, run, resumed.saved, start_epoch),
                    resumed.record_config)
    if Config.from_dict(state["config"]).train.epochs == tc.epochs:   # more epochs given: training goes on
        so_far.stopped_early = state.get("stopped_early")
    if so_far.finish:   # the epochs are kept, the test or the report is not: the finish is done now (_unfinished)
        progress.say(f"nettrain: {run.path} trained its {start_epoch} epochs but was stopped before its finish "
                     f"({', '.join(so_far.finish)} not written); finishing it: the test, then the report")
    if start_epoch < tc.epochs or so_far.finish:
        _say_other_world(run, state, t.world)
    return so_far


@dataclass
class _Outputs:
    """Where the fit's record goes: its run directory (distributed.NullRun on the ranks but the main one),
    TensorBoard, the live report and the progress lines."""
    run: RunDir
    tb: TensorBoardLog
    live: LiveReport
    progress: Progress
    hooks: Hooks = field(default_factory=lambda: Hooks([], None))


def _open_outputs(t: Training, resumed: Optional[_Resumed], so_far: _SoFar, held: contextlib.ExitStack,
                  progress: Progress) -> _Outputs:
    """The run directory, new (with its config.yaml: the config as built) or the resumed one, its environment and
    events, TensorBoard and the live report."""
    cfg, world, device = t.cfg, t.world, t.precision.device
    if resumed is None:
        run = world.run(RunDir, lambda: RunDir.create(cfg.run.dir, cfg.data.name, cfg.model.name, cfg.run.overwrite))
        held.callback(run.unlock)
        _write_config(run, cfg)   # resolved in build: what trains
        if t.info.vocab is not None and run.writes:   # the text kind's vocabulary, readable without torch (text.py)
            write_atomically(run.claim(run.path / RUN_FILES["vocab"]), json.dumps({"tokens": t.info.vocab}))
    else:
        run = resumed.run
    unit = kind_of(t.info).unit   # what the speed counts: images, texts, rows
    if resumed is None or resumed.state is None:
        run.write_environment(device=describe(device), precision=t.precision.name, nettrain=__version__,
                              threads=torch.get_num_threads(), omp_wait_policy=os.environ.get("OMP_WAIT_POLICY"),
                              data_kind=t.info.kind, speed_unit=unit)   # what the report counts
    if resumed is not None:
        run.add_event(event="resume", from_epoch=so_far.start_epoch, epochs=cfg.train.epochs,
                      threads=torch.get_num_threads(), device=describe(device),
                      changed={k: list(v) for k, v in resumed.changed.items()}, argv=sys.argv,
                      processes=world.size, trained_processes=trained_processes(resumed.state) if resumed.state
                      else None, finish=so_far.finish)
    purge = so_far.start_epoch + 1 if resumed is not None else None
    tb = world.only_main(lambda: TensorBoardLog(run, cfg.run.tensorboard, purge_step=purge, unit=unit),
                         distributed.NullLog())
    live = LiveReport(run, cfg.train.epochs, cfg.run.report and world.is_main)
    held.callback(live.close)   # a fit that stops leaves a page that no longer reloads
    live.begin(so_far.start_epoch)   # the first page, before epoch 1: no figures
    if so_far.start_epoch == 0:
        if kind_of(t.info).images and hasattr(t.data.train, "x"):
            tb.images(t.data.train.x[:64])
        if kind_of(t.info).traceable:   # not a tuple or dict batch input, which the graph cannot trace
            tb.graph(t.module, t.val_batches or t.train_batches)
    return _Outputs(run, tb, live, progress)


def _say_start(t: Training, out: _Outputs, so_far: _SoFar):
    """The fit's first lines: the data, the model, the device, the run directory; the processes; the data's notes."""
    cfg, tc, world, say_line = t.cfg, t.cfg.train, t.world, out.progress.say
    n_params = sum(p.numel() for p in t.module.parameters())
    held_out = f"{len(t.data.val) if t.data.val is not None else 0:,} {'val' if t.has_val else 'test'}"
    trained = t.train_batches.num_samples * world.size   # every rank's share
    say_line(f"nettrain: {cfg.data.name} ({trained:,} train, {held_out}) | {cfg.model.name} ({n_params:,} "
             f"parameters) | {describe(t.precision.device)}, precision {t.precision.name} | run {out.run.path}")
    if world.size > 1:
        say_line(f"nettrain: {world.size} processes ({world.backend}) | global batch {tc.batch_size} = "
                 f"{tc.batch_size // world.size} per process x {world.size} | lr {cfg.optim.lr:g}, not scaled "
                 f"(train.batch_size is the global batch)")
    for note in t.data.notes + getattr(t.train_batches, "notes", []):
        say_line(f"nettrain: {note}")
    if not t.has_val and t.val_batches is not None and so_far.start_epoch < tc.epochs:
        model = "EMA of the weights" if tc.ema else "last epoch's weights"
        say_line(f"no validation split: the test split is shown each epoch but chooses nothing; the model is the "
                 f"{model} (to keep the best epoch, hold out data: --data.val_fraction 0.1)")


def _train_and_test(t: Training, out: _Outputs, so_far: _SoFar) -> dict:
    """The epochs, then the test; a stop says where it stopped and how to go on, the user's code failing says where.
    Large activations are allocated and freed every step: the freed memory is kept for reuse (see _malloc.py).
    Small linear layers run in float32 under CPU bf16 autocast, where it is faster (see engine/device.py); a
    compiled model is left to the compiler."""
    tc = t.cfg.train
    with freed_memory_kept(t.precision.device.type == "cpu" and tuning()), \
            t.precision.small_linears_in_float32(t.module, t.eval_model, enabled=not tc.compile):
        try:
            try:
                # a stop signal only sets a flag while training: it stops at a step boundary (engine/stop.py); a
                # second one at once, except under torchrun, whose agent repeats a Ctrl-C to processes that had it
                with signals.flagged(second_stops=not distributed.is_launched()):
                    out.hooks.fit_start()
                    final_va = _epochs(t, out, so_far)
            finally:
                out.tb.close()
            return _test(t, out, so_far, final_va)
        except KeyboardInterrupt:   # say how to go on; the checkpoints are whole (written atomically)
            if out.run.writes:   # once, by the rank that wrote them
                said = _stopped(out.run, so_far.epoch, tc.epochs, so_far.stopped_step, t.steps_per_epoch,
                                so_far.stopped_after)
                print(f"\n{said}", file=sys.stderr)
            raise
        except NettrainError:
            raise
        except Exception as e:   # the user's code raised: one line naming where (a bug of nettrain's keeps its trace)
            if user_frame(e) is None:
                raise
            raise ModelError(f"{failure(e, t.module)} in epoch {len(so_far.history) + 1} (the data's inputs are "
                             f"shaped {t.info.shape} each); fix the code there (--debug prints the whole "
                             f"traceback)") from e


def _finish(t: Training, out: _Outputs, so_far: _SoFar, test: dict, seconds: float) -> Run:
    """After the test: the best epoch said, what the report needs of the model recorded, then the report and
    TensorBoard's figures and HParams (the main rank's: NullLog on the others)."""
    best, run, tc = so_far.best, out.run, t.cfg.train
    if best["epoch"] is not None and best["metric"] != LAST:
        out.progress.say(f"best {best['metric']} {best['value']:.4f} at epoch {best['epoch']} -> {run.best}; "
                         f"{seconds:.1f}s in all")
    elif best["epoch"] is not None:
        out.progress.say(f"model: the {'EMA weights after' if tc.ema else 'weights of'} epoch {best['epoch']} (the "
                         f"last; no validation split chose among epochs) -> {run.best}; {seconds:.1f}s in all")
    predictor = _predictor(t)
    if t.cfg.run.report and t.world.is_main:   # what the figures need of the model, then the full report
        evidence.record(run, predictor, t.data.test, test)
        out.progress.say(f"report {out.live.finish()}")
    out.tb.finish(run, t.cfg.to_dict(), so_far.history)
    try:
        out.hooks.fit_end(test)
    except Exception as e:   # the user's callback raised: where, in one line (a bug of nettrain's keeps its trace)
        if isinstance(e, NettrainError) or user_frame(e) is None:
            raise
        raise ModelError(f"{failure(e, t.module)} in a callback's on_fit_end; fix the code there (--debug prints "
                         f"the whole traceback)") from e
    return Run(run.path, so_far.metrics(), predictor, test, seconds)


def _predictor(t: Training) -> Predictor:
    """The model that evaluates (best.pt's at the finish), as `Run.model`."""
    return Predictor(ckpt_io.unwrap(t.eval_model, keep_input=True), t.info, t.cfg, t.precision.device, t.precision,
                     loss_fn=t.step.loss_fn, collate_fn=getattr(t.data.train, "collate_fn", None))


def _stopped(run: RunDir, epoch: Optional[int], epochs: int, step: Optional[int] = None, steps: int = 0,
             after: bool = False) -> str:
    """What an interrupted fit says: where it stopped, the epoch last.pt really holds (read from it: the
    interruption may have come between an epoch's end and its checkpoint) and how to go on. `step`: the stop came at
    that step boundary, whose checkpoint last.pt holds (engine/stop.py); `after`: it came after the epoch's."""
    if step is not None:
        return f"nettrain: stopped at step {step} of {steps} in epoch {epoch} of {epochs}; {run.last} keeps it; " \
               f"continue with: nettrain fit --resume {run.path}"
    kept, where = ckpt_io.saved_epoch(run.last), run.last
    best = ckpt_io.saved_epoch(run.best) if run.best.exists() else None
    if best is not None and (kept is None or best > kept):   # best.pt is written first: newer after a stop between
        kept, where = best, run.best
    if kept is not None and kept >= epochs:
        return f"nettrain: stopped after the last epoch, in the test or the report; {where} keeps epoch {kept}; " \
               f"finish the run (its test and report) with: nettrain fit --resume {run.path}"
    at = f"stopped {'after' if after else 'in'} epoch {epoch} of {epochs}" if epoch else \
        "stopped before the first epoch"
    if kept is None:
        return f"nettrain: {at}; no epoch had been kept, so nettrain fit --resume {run.path} starts it again"
    return f"nettrain: {at}; {where} keeps epoch {kept}; continue with: nettrain fit --resume {run.path}"


def _unfinished(t: Training, run: RunDir, saved: dict, start_epoch: int) -> list:
    """What the finish of a resumed run that has trained all its epochs did not write (resume.unfinished), as the
    main rank sees it; [] while epochs remain. The report is owed when the run drew one and this resume does not turn
    it off."""
    if start_epoch < t.cfg.train.epochs:
        return []
    report = bool(saved.get("run", {}).get("report", True)) and t.cfg.run.report
    return t.world.broadcast(unfinished(run.path, t.data.test is not None, report) if t.world.is_main else None)


def _say_other_world(run: RunDir, state: dict, world):
    """A resume in another number of processes than the checkpoint's (--nproc): said on stderr, once."""
    before = trained_processes(state)
    if before != world.size and world.is_main:
        print(f"nettrain: warning: {run.path} was trained in {before} process{'es' * (before > 1)} and resumes in "
              f"{world.size}: the batches are split and the random numbers drawn otherwise, so the result will not "
              f"be bit for bit an uninterrupted run's (--nproc {before} resumes exactly)", file=sys.stderr)


def _resume_state(run: RunDir, progress: Progress) -> Optional[dict]:
    """The checkpoint a resume continues from: last.pt, or best.pt when it is newer (best.pt is written before
    last.pt, so a kill between the two leaves the newer epoch in best.pt alone); None when the run was stopped
    before its first checkpoint (it starts again from epoch 0)."""
    last = ckpt_io.load_resumable(run.last, kinds=KINDS) if run.last.exists() else None
    best_epoch = ckpt_io.saved_epoch(run.best) if run.best.exists() else None
    if best_epoch is not None and (last is None or best_epoch > last["epoch"]):
        progress.say(f"resuming from {run.best} (epoch {best_epoch}): it was written just before {run.last} "
                     f"{'was' if last is None else 'of that epoch was'} replaced when the run stopped")
        state = ckpt_io.load_resumable(run.best, kinds=KINDS)
        # last.pt catches up (the same checkpoint): a run stopped there in its last epoch is then whole
        _save_last(run, {k: v for k, v in state.items() if k != "path"})
        return state
    if last is not None and best_epoch is not None and last["best"]["epoch"] is not None \
            and best_epoch < last["best"]["epoch"] == last["epoch"] and "partial" not in last:
        # a run of an older nettrain, killed between the last.pt and best.pt writes: last.pt is the best epoch
        progress.say(f"{run.best} held epoch {best_epoch}, {run.last} the best epoch {last['epoch']}: best.pt is "
                     f"rewritten from it")
        _save_best(run, last)
    return last


def _resume(t: Training, run: RunDir, state: dict, progress: Progress):
    """Put the checkpoint's weights, optimizer, schedule, averages and RNG back; returns its history (MetricsRow),
    best and epoch. Given more or fewer epochs than it was started with, the lr schedule is refitted to the new end."""
    s, tc = t.step, t.cfg.train
    where = state["path"]
    ckpt_io.load_weights(t.module, state.get("train_model") or state["model"], where, t.cfg.model.name)
    start_epoch = state["epoch"]
    saved_epochs = Config.from_dict(state["config"]).train.epochs
    exact = saved_epochs == tc.epochs or start_epoch >= tc.epochs   # an interrupted run: continue exactly
    # the steps of an epoch stopped in its middle too (engine/stop.py)
    steps_done = start_epoch * t.steps_per_epoch + (state.get("partial") or {}).get("steps", 0)
    ckpt_io.check_restorable(state, s, steps_done, schedule=exact)
    if exact:
        ckpt_io.load_optimizer(s.optimizer, state["optimizer"])
        s.scheduler.load_state_dict(state["scheduler"])
    else:
        _resume_over_new_length(s.optimizer, s.scheduler, state["optimizer"], steps_done)
        progress.say(f"resuming {run.path} at epoch {start_epoch} of {tc.epochs}: the lr schedule is "
                     f"{'stretched' if tc.epochs > saved_epochs else 'shortened'} from {saved_epochs} to "
                     f"{tc.epochs} epochs")
    if state["scaler"]:   # {}: written without float16 scaling, which a scaler enabled now starts afresh
        s.scaler.load_state_dict(state["scaler"])
    if s.ema is not None and state.get("ema"):
        s.ema.load_state_dict(state["ema"])
    if s.lookahead is not None and state.get("lookahead"):
        s.lookahead.load_state_dict(state["lookahead"])
    mine = t.world.mine(state.get("rng_ranks"))
    ckpt_io.set_rng_state(mine or state["rng"], f"rng_ranks[{t.world.rank}]" if mine else "rng")
    if mine is None:   # a checkpoint of another world size: the main rank's state, and each other rank its own
        t.world.own_random_streams(tc.seed + start_epoch)
    if start_epoch < tc.epochs and state.get("threads") not in (None, torch.get_num_threads()):
        print(f"warning: {run.path} was trained on {state['threads']} threads and resumes on "
              f"{torch.get_num_threads()}: the result will not be bit for bit an uninterrupted run's (--train.threads "
              f"{state['threads']} resumes exactly)", file=sys.stderr)
    return [MetricsRow.from_dict(row) for row in state["history"]], state["best"], start_epoch


def _checkpoint(t: Training, epoch: int, so_far: _SoFar) -> dict:
    """Everything a resume needs, and the weights predictions use."""
    s = t.step
    state = {"model": ckpt_io.clean_state_dict(t.eval_model), "optimizer": s.optimizer.state_dict(),
             "scheduler": s.scheduler.state_dict(), "scaler": s.scaler.state_dict(),
             "ema": s.ema.state_dict() if s.ema is not None else None,
             "lookahead": s.lookahead.state_dict() if s.lookahead is not None else None, "epoch": epoch,
             "rng": ckpt_io.rng_state(), "config": t.cfg.to_dict(), "data": t.info.to_dict(),
             "history": so_far.metrics(), "best": so_far.best, "nettrain_version": __version__, "code": t.code,
             "threads": torch.get_num_threads(), "data_fingerprint": t.fingerprint,
             "rng_ranks": t.world.random_states(ckpt_io.rng_state()), "stopped_early": so_far.stopped_early}
    if s.ema is not None:   # training resumes from the raw weights; predictions use the average
        state["train_model"] = ckpt_io.clean_state_dict(t.module)
    return state


def _epochs(t: Training, out: _Outputs, so_far: _SoFar) -> Optional[dict]:
    """Train from the epoch after `so_far.start_epoch` to the end, validating, logging and checkpointing each;
    returns the last epoch's validation (None if it did not validate). A stop signal (signals.flagged) ends training
    at the next step boundary, with the epoch in progress in last.pt, or after an epoch's checkpoint."""
    tc = t.cfg.train
    final_va = None
    for epoch in range(so_far.start_epoch + 1, tc.epochs + 1 if not so_far.stopped_early else 0):
        so_far.epoch = epoch
        t.train_batches.set_epoch(epoch)
        done, so_far.partial = so_far.partial, None   # the batches a resumed stop had done of its first epoch
        out.progress.start_epoch(epoch, len(t.train_batches), done.batches if done else 0)
        check = stop.Check(t.world, epoch, done.batches // tc.accumulate if done else 0)
        result = train_epoch(t.step, t.train_batches, t.classification, out.progress, stop=check, done=done)
        if result.get("stopped"):
            _stop_in_epoch(t, out.run, so_far, result)
        late = check.finish()   # agreed on in the epoch's last step: the epoch ends, then the run stops
        validate = t.val_batches is not None and (epoch == tc.epochs or (tc.val_every and epoch % tc.val_every == 0))
        va = t.evaluate(t.val_batches) if validate else {}
        final_va = va if epoch == tc.epochs else None
        row = _metrics_row(t, epoch, t.world.train_sums(result), va)
        so_far.history.append(row)
        out.hooks.epoch_end(epoch, row.as_dict(), so_far.metrics())   # before the checkpoint, which keeps a stop
        so_far.stopped_early = out.hooks.state.stop_reason
        out.run.write_metrics(so_far.history)
        out.tb.scalars(row, epoch)
        out.progress.end_epoch(row)
        _keep(t, out.run, so_far, row)
        out.live.epoch_end(epoch)
        signum = stop.agreed(t.world) or late   # a stop that came in the epoch's last steps, validation, checkpoint
        if signum:
            so_far.stopped_after = True
            raise signals.stop(signum)
        if so_far.stopped_early:
            out.progress.say(f"stopped early after epoch {epoch} of {tc.epochs}: {so_far.stopped_early}")
            out.run.add_event(event="stopped_early", epoch=epoch, reason=so_far.stopped_early)
            return va or None
    return final_va


def _metrics_row(t: Training, epoch: int, tr: dict, va: dict) -> MetricsRow:
    """The epoch's row of metrics.csv from its training sums over every rank (`tr`) and its validation (`va`)."""
    row = MetricsRow(epoch=epoch, train_loss=tr["loss"], train_acc=tr["acc"], val_loss=va.get("loss"),
                     val_acc=va.get("acc"), val_mae=va.get("mae"), lr=t.step.optimizer.param_groups[0]["lr"],
                     seconds=round(tr["seconds"], 3), examples_per_s=round(tr["examples"] / tr["seconds"], 1),
                     data_wait=round(tr["data_wait"], 4), val_split=("val" if t.has_val else "test") if va else None,
                     extra=va.get("metrics", {}))
    for name, value in getattr(t.train_batches, "epoch_metrics", dict)().items():   # a kind's own (padding_waste)
        setattr(row, name, value)
    return row


def _keep(t: Training, run: RunDir, so_far: _SoFar, row: MetricsRow):
    """The epoch's checkpoints: best.pt when it is the best so far (without a validation split, every epoch is),
    then last.pt; and a resume's new config.yaml once an epoch under it is kept. A diverged epoch is kept nowhere."""
    epoch, best = row.epoch, so_far.best
    if not math.isfinite(row.train_loss):   # before any checkpoint: the weights are NaN or inf now
        kept = f"; {run.last} keeps epoch {epoch - 1}" if run.last.exists() else ""
        raise DivergedError(f"training diverged: the train loss is {row.train_loss} in epoch {epoch}; lower "
                            f"the learning rate (optim.lr is {t.cfg.optim.lr:g}) or clip the gradients "
                            f"(--train.grad_clip 1.0){kept}")
    if best["metric"] == LAST:   # no validation split: the model is the last epoch's (the test chooses nothing)
        value, improved = None, True
    else:
        value = getattr(row, best["metric"])
        improved = value is not None and (best["value"] is None or (value > best["value"] if t.classification
                                                                   else value < best["value"]))
    if improved:
        best.update(value=value, epoch=epoch)
    state = _checkpoint(t, epoch, so_far)
    _check_finite(state, epoch, run, t.cfg.optim.lr)
    keep.save_epoch(run, state, t.cfg.run, so_far.history, best, t.classification)   # --save-every, --keep-best
    # best first: a kill between the two writes leaves best.pt ahead of last.pt (a resume starts from the
    # newer), never behind last.pt's record of the best epoch
    if improved or not run.best.exists():
        _save_best(run, state)
        if _PAUSE_BETWEEN_CHECKPOINTS:   # the kill campaign's window (benchmarks/kill_campaign.py)
            time.sleep(_PAUSE_BETWEEN_CHECKPOINTS)
    _save_last(run, state)
    if so_far.record_config is not None:
        _write_config(run, so_far.record_config)
        so_far.record_config = None


def _stop_in_epoch(t: Training, run: RunDir, so_far: _SoFar, result: dict):
    """A stop agreed at a step boundary of the epoch in progress: the main rank keeps it in last.pt (the last
    whole epoch's number, and `partial`: engine/stop.py), the others wait for it; then every rank raises the stop."""
    epoch = so_far.epoch
    state = _checkpoint(t, epoch - 1, so_far)
    state["partial"] = stop.record(result["partial"], epoch, t.world, t.cfg.train.accumulate)
    _check_finite(state, epoch, run, t.cfg.optim.lr)
    _save_last(run, state)
    if so_far.record_config is not None:   # last.pt now holds the new length: config.yaml says so, as a resume reads
        _write_config(run, so_far.record_config)   # both
    t.world.barrier()
    so_far.stopped_step = state["partial"]["steps"]
    raise signals.stop(result["stopped"])


def _save_last(run: RunDir, state: dict):
    if run.writes:   # the main rank's (distributed.NullRun on the others)
        ckpt_io.save(run.claim(run.last), state)


def _save_best(run: RunDir, state: dict):
    if not run.writes:   # the main rank's (distributed.NullRun on the others)
        return
    info = state["data"]
    ckpt_io.save_safetensors(run.claim(run.best_safetensors), state["model"],
                             {"classes": info.get("classes"), "data": info, "epoch": state["epoch"],
                              "model": state["config"]["model"]["name"]})
    ckpt_io.save(run.claim(run.best), state)


def _check_finite(state: dict, epoch: int, run: RunDir, lr: float):
    """A finite loss does not make finite weights (a BatchNorm running variance can overflow alone): every float
    tensor of the weights is checked, with one device sync an epoch, before a checkpoint keeps it."""
    tensors = {name: v for part in ("model", "train_model") for name, v in (state.get(part) or {}).items()
               if v.is_floating_point()}
    if not tensors:
        return
    finite = torch.stack([torch.isfinite(v).all() for v in tensors.values()])
    if bool(finite.all()):
        return
    name = list(tensors)[int((~finite).nonzero()[0])]
    kept = f"; {run.last} keeps epoch {epoch - 1}" if run.last.exists() else ""
    raise DivergedError(f"training diverged: {name} holds inf or NaN after epoch {epoch} (the loss is finite); "
                        f"lower the learning rate (optim.lr is {lr:g}) or clip the gradients (--train.grad_clip "
                        f"1.0){kept}")


def _test(t: Training, out: _Outputs, so_far: _SoFar, final_va: Optional[dict]) -> dict:
    """The test split's evaluation of the model best.pt holds (the last validation when that was this very split
    and model), reported and saved."""
    loaded = _best_into_eval_model(t, out.run, so_far)
    if t.data.test is None:
        return {}
    if final_va and t.data.test is t.data.val and not loaded:   # the last validation was this very pass
        test = final_va
    else:
        test = t.evaluate(t.eval_batches(t.data.test))
    if t.classification:
        out.run.write_confusion(test["confusion"], t.info.classes)
    out.run.write_test_metrics(metrics_summary(test, t.info.classes))
    out.progress.say(format_report(test, t.info.classes, "test"))
    return test


def _best_into_eval_model(t: Training, run: RunDir, so_far: _SoFar) -> bool:
    """Put best.pt's weights into the model that evaluates when it holds another epoch's (a validation split chose
    an earlier one than the last), so that the test, the report's predictions and the returned model are those of
    best.pt, which `nettrain.load(run)` gives; True when they were put back. Every rank reads the file, as a resume
    does; it was written before any rank passed the last epoch's stop agreement, the barrier says so plainly."""
    best = so_far.best["epoch"]
    held = so_far.history[-1].epoch if so_far.history else None
    if best is None or best == held:   # without a validation split, best.pt is always the last epoch
        return False
    t.world.barrier()
    state = ckpt_io.load(run.best, kinds=KINDS)
    ckpt_io.load_weights(t.eval_model, state["model"], state["path"], t.cfg.model.name)
    return True


def _write_config(run: RunDir, cfg: Config):
    """config.yaml: the run's record, without where it lives (a copied run directory stays valid)."""
    run.write_config(cfg.override({"run.dir": None, "run.overwrite": False, "run.mlflow": None}).to_yaml())


def _resume_over_new_length(optimizer, scheduler, saved_optimizer: dict, steps_done: int):
    """Resume with `scheduler`, freshly built over a different number of epochs than the checkpoint's.

    The saved scheduler state, and the lr, initial_lr (onecycle: max_lr, min_lr, momentum) in the saved param
    groups, describe the old length: restoring them would run the old schedule past its end (a cosine rises
    again). So keep only the per-parameter state (momentum buffers, Adam moments), put back the hyperparameters
    the fresh scheduler was built on, and step it to where training stopped."""
    fresh = [{k: v for k, v in group.items() if k != "params"} for group in optimizer.param_groups]
    ckpt_io.load_optimizer(optimizer, saved_optimizer)
    for group, hyperparameters in zip(optimizer.param_groups, fresh):
        group.update(hyperparameters)
    fast_forward(scheduler, steps_done)




def _hooks(t: Training, out: _Outputs, so_far: _SoFar, callbacks: list) -> Hooks:
    """The fit's callbacks (callbacks.py) with what they see of it: MLflow tracking first when asked (mlflowlog.py),
    early stopping next when --train.patience asks, on the metric that chooses best.pt. The step's per-step call only when a callback has on_step_end."""
    if t.cfg.train.patience is not None:
        if not t.has_val:
            raise ConfigError(f"train.patience {t.cfg.train.patience} stops on the validation split, and this run "
                              f"has none; hold out data: --data.val_fraction 0.1")
        metric = so_far.best["metric"]
        callbacks = [EarlyStopping(metric, t.cfg.train.patience, "max" if metric.endswith("acc") else "min")] + \
            list(callbacks)
    callbacks = mlflowlog.callbacks(t.cfg, out.run, t.world.is_main) + list(callbacks)   # MLflow, when asked
    if t.cfg.run.log_every_n_steps and out.run.writes:   # the per-step scalars: the main process's
        callbacks.append(StepScalars(out.run, t.cfg.run.log_every_n_steps, t.cfg.run.tensorboard))
    state = FitState(out.run.path if out.run.writes else None, t.cfg.to_dict(), t.module, t.step.optimizer,
                     t.world.is_main, so_far.start_epoch, so_far.start_epoch * t.steps_per_epoch, so_far.metrics())
    hooks = Hooks(callbacks, state)
    t.step.on_step = hooks.step_end if hooks.stepping else None
    return hooks
