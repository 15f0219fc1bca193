"""The one wiring place: a config and the user's objects (a model, data, a loss) become the run's parts.

`build` turns them into a `Training`: the data's batches, the model (built or the user's, checked on a batch), the
loss, the precision, the optimizer step, and the config resolved once: every choice the build makes (the model
`auto` means, the flattening of a Linear-first model's input, the loss for the task and the outputs, the speed
choices a user's model keeps) is written into it, so that config.yaml records exactly what trained. fit
(training.py) trains the parts; the lr finder (lrrange.py) runs its range test on them; load (api.py) rebuilds a
trained model from a checkpoint the same way (build_model, the recorded config).
"""
from __future__ import annotations

import logging
import math
import random
import sys
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch
from torch import nn

from .config import Config
from .data import Data, DataInfo, load_data, make_batches
from .data.table import in_target_units
from .engine import distributed, syncbn, watchdog
from .engine.device import resolve_device, resolve_precision
from .engine.lookahead import Lookahead
from .engine.loop import Step, evaluate as evaluate_pass, forward
from .engine.metrics import build_metrics
from .engine.optim import build_loss, build_optimizer, build_scheduler, default_loss_for, loss_for_outputs
from .engine.probe import Probe, probe_batch, say
from .errors import ConfigError
from .kinds import kind_of
from .models import MODELS, build_model, check_fits
from .models.flat import FlatInput, first_linear
from .resume import data_fingerprint
from .trust import Gate, is_user_spec, remember
from .usercode import origin


def seed_everything(seed: int):
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _check_tta(tc, info: DataInfo):
    if tc.tta and not kind_of(info).images:
        raise ConfigError(f"train.tta mirrors and shifts images, but this dataset's inputs have shape {info.shape}; "
                          f"set train.tta false")
    if tc.tta and tc.tta_shift >= min(info.shape[1:]):
        raise ConfigError(f"train.tta_shift must be smaller than the images ({info.shape[1]}x{info.shape[2]}), "
                          f"got {tc.tta_shift}")


@dataclass
class Training:
    """What a fit builds once before its first epoch: the data's batches, the model and its optimizer step."""
    cfg: Config
    data: Data
    info: DataInfo
    precision: object
    module: nn.Module                  # the user's or the built model: what checkpoints hold
    step: Step                         # its model is `module`, or `module` compiled
    train_batches: object
    val_batches: object
    steps_per_epoch: int               # optimizer steps (batches / accumulate)
    input_dtype: Optional[torch.dtype]   # in-memory images stored rounded to it (see _input_dtype), or None
    code: dict = field(default_factory=dict)   # kind -> where the user's code came from (checkpoints record it)
    fingerprint: dict = field(default_factory=dict)   # of the training data (resume.data_fingerprint)
    world: distributed.World = field(default_factory=distributed.World)   # the processes training together
    metrics: dict = field(default_factory=dict)   # train.metrics: name -> function (engine/metrics.py)

    @property
    def classification(self) -> bool:
        return self.info.task == "classification"

    @property
    def has_val(self) -> bool:
        """A validation split of its own (val_fraction, a val/ folder, val_data=): the test split never chooses."""
        return self.data.val is not None and self.data.val_chooses

    @property
    def eval_model(self) -> nn.Module:
        """What validation, the test and predictions use: the EMA average when there is one."""
        return self.step.ema.module if self.step.ema is not None else distributed.local(self.step.model)

    @property
    def channels_last(self) -> bool:
        return channels_last_for(self.cfg, self.info)

    def eval_batches(self, split):
        """`split`'s batches for an evaluation pass (the test's), made as validation's are."""
        return make_batches(split, self.info, self.cfg.data, self.precision.device, self.cfg.train.eval_batch_size,
                            train=False, channels_last=self.channels_last, input_dtype=self.input_dtype,
                            rank=self.world.rank, world_size=self.world.size)

    def evaluate(self, batches) -> dict:
        tc = self.cfg.train
        return in_target_units(evaluate_pass(self.eval_model, batches, self.step.loss_fn, self.precision,
                                             self.classification, self.info.outputs, tc.tta, tc.tta_shift,
                                             self.world, self.metrics, self.info.task == "multilabel"),
                               self.info.table)


def _auto_model(info) -> str:
    """The built-in model `--model auto` (the default) means for this data: its kind's (kinds/)."""
    name = kind_of(info).model
    if name is None:
        raise ConfigError("this data's batches come from a collate function, and no built-in model reads them; give "
                          "your own: model=YourModel() (Python) or --model path/file.py:Class")
    return name


def _with_kind_defaults(cfg: Config, module: Optional[nn.Module], info: DataInfo) -> Config:
    """`cfg` with the model `auto` means and, for a built-in model, its kind's training settings (Kind.training)
    where the user set none (Config.given); an optimizer the user named keeps torch's settings for it, not the ones
    chosen for another. Resolved once, before anything is built: config.yaml records what trained."""
    if module is not None:
        return cfg
    if cfg.model.name == "auto":
        cfg = cfg.override({"model.name": _auto_model(info)})
    defaults = kind_of(info).training.get(cfg.model.name, {})
    if "optim.name" in cfg.given():
        defaults = {key: value for key, value in defaults.items() if not key.startswith("optim.")}
    return cfg.with_defaults(defaults)


def build(cfg: Config, module: Optional[nn.Module], data: Optional[Data], fresh: bool,
           gate: Optional[Gate] = None, loss=None, world=distributed.World()) -> Training:
    """The data's batches, the model and its optimizer step, from `cfg`; the Training's config is `cfg` resolved
    (_with_kind_defaults, _resolve_model): from here on it is what trains and what the run records."""
    device = world.device(resolve_device(cfg.train.device))
    loaded, read_with = data or load_data(cfg.data), cfg.data
    cfg = _with_kind_defaults(cfg, module, loaded.info)
    # a kind's default for the data's own options (a text model's vocabulary): the file is read again with it
    data = load_data(cfg.data) if data is None and cfg.data != read_with else loaded
    tc, info = cfg.train, data.info
    _check_tta(tc, info)
    precision = resolve_precision(tc.precision, device, info.kind, tc.small_linears_fp32)
    cfg, module, loss_fn, precision, probe = _resolve_model(cfg, module, data, device, precision, gate, loss)
    tc, channels_last = cfg.train, channels_last_for(cfg, info)
    if channels_last:
        module.to(memory_format=torch.channels_last)
    if hasattr(module, "init_from_data") and fresh and hasattr(data.train, "x"):
        module.init_from_data(make_batches(data.train, info, cfg.data, device, 5000, train=False,
                                           channels_last=channels_last).__iter__().__next__()[0])
    if tc.sync_batchnorm:   # the same parameter and buffer tensors: the optimizer and checkpoints see no change
        module = syncbn.convert(module, world.size, device)
    input_dtype = _input_dtype(cfg, module, data, precision, probe)
    train_batches = make_batches(data.train, info, cfg.data, device, world.local_batch(tc.batch_size), train=True,
                                 shuffle=tc.shuffle, drop_last=tc.drop_last, seed=tc.seed, channels_last=channels_last,
                                 input_dtype=input_dtype, rank=world.rank, world_size=world.size)
    if len(train_batches) == 0:
        raise ConfigError(f"train.batch_size {tc.batch_size} with drop_last leaves no batch from "
                          f"{train_batches.num_samples} examples; lower the batch size")
    val_batches = make_batches(data.val, info, cfg.data, device, tc.eval_batch_size, train=False,
                               channels_last=channels_last, input_dtype=input_dtype, rank=world.rank,
                               world_size=world.size) if data.val is not None else None
    steps_per_epoch = math.ceil(len(train_batches) / tc.accumulate)
    step = _step(cfg, module, loss_fn, precision, probe, train_batches, steps_per_epoch, gate, world)
    train_batches = watchdog.steps(train_batches)   # many processes: each step watched for a hang; alone, as it is
    return Training(cfg, data, info, precision, module, step, train_batches, val_batches, steps_per_epoch,
                     input_dtype, _code_origins(cfg, gate, info.collate), data_fingerprint(data.train), world,
                     build_metrics(tc.metrics, gate))


def _resolve_model(cfg: Config, module: Optional[nn.Module], data: Data, device: torch.device, precision,
                   gate: Optional[Gate], loss) -> tuple:
    """(config, module, loss function, precision, probe): the model built (or the user's) and checked on the CPU,
    then moved, with every choice made for it written into the config, once: the model `auto` means, the flattening
    of its input, the loss for the task and the model's outputs, the speed choices a user's model keeps. The config
    returned is what trains: config.yaml, the report and TensorBoard's HParams record it; evaluate, predict and a
    resume run the model as it trained."""
    info = data.info
    user = module is not None or cfg.model.name not in MODELS
    if module is None:
        if not kind_of(info).fixed_shape and cfg.model.name in MODELS:
            raise ConfigError(f"model {cfg.model.name!r} takes inputs of a fixed shape, and this data's batches have "
                              f"none (a collate function or DataLoader makes them); give your own model=")
        module = build_model(cfg.model.name, info.shape, info.outputs, cfg.model.args, gate)
    if kind_of(info).images and (user or cfg.model.flatten):   # a built-in model only when asked, as load does
        module, cfg = _flat_input(module, cfg, info)
    out = check_fits(module, cfg.model.name, info.shape, info.outputs, info.task, _example(data))
    cfg = _loss_for_model(cfg, out, info)
    module.to(device)
    loss_fn = build_loss(cfg.train, gate, loss)
    # A user's model gets each speed choice only when it computes the same with it (engine/probe.py). Built-in
    # models are written for every choice and tested with them: no probe.
    probe = None
    if user:
        probe = Probe(module, *probe_batch(data, info, cfg, device, cfg.train.batch_size), loss_fn, precision,
                      cfg.model.name, say)
        cfg = _speed_choices(cfg, info, probe, precision)
        precision = resolve_precision(cfg.train.precision, device, info.kind, cfg.train.small_linears_fp32)
    return cfg, module, loss_fn, precision, probe


def _speed_choices(cfg: Config, info: DataInfo, probe: Probe, precision) -> Config:
    """The config without the speed choices the user's model computes otherwise with (engine/probe.py)."""
    tc, off = cfg.train, {}
    if channels_last_for(cfg, info) and not probe.channels_last():
        off["train.channels_last"] = False
    if precision.name == "bf16-mixed" and precision.device.type == "cpu" and tc.small_linears_fp32 \
            and not tc.compile and not probe.small_linears():
        off["train.small_linears_fp32"] = False
    return cfg.override(off) if off else cfg


def _step(cfg: Config, module: nn.Module, loss_fn, precision, probe: Optional[Probe], train_batches,
          steps_per_epoch: int, gate: Optional[Gate], world) -> Step:
    """The optimizer step: the optimizer (a user's model gets the fast fused step only when it computes the same),
    the lr schedule, the EMA and Lookahead when asked, the model compiled and wrapped for many processes."""
    tc = cfg.train
    optimizer = build_optimizer(module.parameters(), cfg.optim, gate) if probe is None else \
        probe.optimizer(lambda fast: build_optimizer(module.parameters(), cfg.optim, gate, fast=fast))
    scheduler = build_scheduler(optimizer, cfg.sched, tc.epochs, steps_per_epoch, gate)
    ema = None
    if tc.ema:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
        ema = AveragedModel(module, multi_avg_fn=get_ema_multi_avg_fn(tc.ema), use_buffers=True)
    lookahead = Lookahead(module, tc.lookahead, tc.lookahead_decay, tc.epochs * steps_per_epoch) \
        if tc.lookahead else None
    model = world.wrap(_maybe_compile(module, tc.compile, train_batches, loss_fn, precision, probe),
                       precision.device)
    return Step(model, loss_fn, optimizer, scheduler, precision, precision.scaler(), tc.accumulate, tc.grad_clip, ema,
                lookahead)


def _example(data: Data):
    """A real first batch input for the model check when zeros of the recorded shape would not do: custom batches
    (no fixed shape), texts and token ids (integers); None otherwise (each kind's example())."""
    return kind_of(data.info).example(data)


def _loss_for_model(cfg: Config, out: torch.Tensor, info: DataInfo) -> Config:
    """The config with the loss that trains: the task's (a regression's default is MSE, engine/optim.py's
    default_loss_for; a loss the task cannot take is refused now) and, for a classifier, the one that suits its
    outputs (loss_for_outputs: log-probabilities take nll), judged once on the model check's outputs (check_fits:
    two zero inputs, or the data's first items) before training: no check, and no host sync, in the training
    steps."""
    loss = default_loss_for(info.task, cfg.train.loss)
    if info.task == "classification" and loss in ("cross-entropy", "nll"):
        loss, note = loss_for_outputs(loss, out, cfg.train.label_smoothing)
        if note:
            print(note if note.startswith("warning") else f"nettrain: {note}", file=sys.stderr)
    return cfg.override({"train.loss": loss}) if loss != cfg.train.loss else cfg


def _code_origins(cfg: Config, gate: Optional[Gate], collate: Optional[str] = None) -> dict:
    """Where the user's code named in `cfg` came from (file and sha256), for the checkpoints; the user's own (not a
    resumed checkpoint's) is added to the trust store, so that loading this run later needs no flag."""
    specs = {"model": cfg.model.name, "loss": cfg.train.loss, "optimizer": cfg.optim.name, "scheduler": cfg.sched.name,
             "collate": collate}   # the collate function is always the user's: fit was given it, not a checkpoint
    code, own = {}, []
    for kind, spec in specs.items():
        if not spec or not is_user_spec(kind, spec):
            continue
        if gate is not None and not gate.owns(kind) and kind != "collate":   # the checkpoint's record, as trusted
            if isinstance(gate.code.get(kind), dict) and gate.code[kind].get("spec") == spec:
                code[kind] = gate.code[kind]
            continue
        found = origin(spec)
        if found:
            code[kind] = found
            own.append(found)
    remember(own)
    return code


def _input_dtype(cfg: Config, module: nn.Module, data: Data, precision, probe=None) -> Optional[torch.dtype]:
    """The autocast dtype when in-memory images may be stored normalized and rounded to it: the model then computes
    exactly what it would from float32 batches (checked on one example), while each batch costs one gather instead
    of a conversion and two passes of arithmetic. None keeps uint8 storage and float32 batches; so does
    torch.compile, whose graph the eager check does not vouch for."""
    if precision.dtype is None or not kind_of(data.info).images or not hasattr(data.train, "x") or cfg.train.compile:
        return None
    one = make_batches(data.train.subset(slice(0, 1)), data.info, cfg.data, precision.device, 1, train=False,
                       channels_last=channels_last_for(cfg, data.info))
    x = next(iter(one))[0]
    with precision.small_linears_in_float32(module):   # `probe`: a user's model that fails on it is said so
        takes = probe.rounded_input(x) if probe is not None else precision.takes_rounded_input(module, x)
    return precision.dtype if takes else None


def _flat_input(module: nn.Module, cfg: Config, info: DataInfo) -> tuple:
    """The user's model, wrapped to take flattened images (models/flat.py) when model.flatten says so, or, left to
    nettrain (null), when its first layer is an nn.Linear over a whole image and it fails on images as they are
    but not on them flattened; with the config that records it. Its batches are then contiguous: the model reads
    the NCHW order, and channels_last would only add a copy per batch."""
    flatten = cfg.model.flatten
    if flatten is None:
        layer = first_linear(module, info.shape)
        if layer is None or _fits(module, info.shape) or not _fits(FlatInput(module), info.shape):
            return module, cfg
        c, h, w = info.shape
        say(f"images are flattened for {type(module).__name__}: its first layer {layer} takes an image's "
            f"{c}x{h}x{w} = {c * h * w} values (as a tutorial's loop does images.view(-1, {c * h * w})), in training, "
            f"evaluation and predict")
    elif not flatten:
        return module, cfg
    return FlatInput(module), cfg.override({"model.flatten": True, "train.channels_last": False})


def _fits(module: nn.Module, shape) -> bool:
    """Does `module` take a batch of two zero inputs of `shape`? (check_fits says why not.)"""
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            module(torch.zeros(2, *shape))
        return True
    except Exception:
        return False
    finally:
        module.train(was_training)


def channels_last_for(cfg: Config, info: DataInfo) -> bool:
    return cfg.train.channels_last and kind_of(info).images


def _maybe_compile(module, enabled: bool, batches, loss_fn, precision, probe=None):
    """torch.compile the model and warm it up with a forward and backward pass on a real batch, and on the epoch's
    last, smaller batch when there is one (its other shape would recompile inside the first epoch's timing); the
    weights, buffers, gradients and RNG are then put back as they were. A failure falls back to eager with a
    warning, before training starts; so does, for a user's model (`probe`), a compiled model that computes
    otherwise than eager."""
    if not enabled:
        return module
    saved = {k: v.detach().clone() for k, v in module.state_dict().items()}
    cuda = [precision.device] if precision.device.type == "cuda" else []
    if not cuda:   # inductor's "No CUDA runtime is found, using CUDA_HOME" (a CUDA build of torch on the CPU) in
        logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)   # every process: nothing to act on
    with torch.random.fork_rng(devices=cuda):   # the warm-up draws no random numbers the run would have drawn
        try:
            compiled = torch.compile(module)
            x, y = next(iter(batches))
            last = batches.num_samples % len(y)
            # a custom batch (a tuple or dict of inputs) is not cut: its own last batch compiles when it comes
            for n in [len(y)] + ([last] if last and not batches.drop_last and isinstance(x, torch.Tensor) else []):
                with precision.autocast():
                    loss = loss_fn(forward(compiled, x if n == len(y) else x[:n]), y[:n])
                loss.backward()
            if probe is not None and not probe.compiled(compiled):
                compiled = module
        except Exception as e:
            print(f"warning: torch.compile failed ({type(e).__name__}: {str(e).splitlines()[0][:120]}); "
                  f"training without it", file=sys.stderr)
            compiled = module
    with torch.no_grad():
        module.load_state_dict(saved)
    module.zero_grad(set_to_none=True)
    return compiled
