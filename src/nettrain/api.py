"""The Python API and the one place that wires data, model and engine together.

    run = nettrain.fit(dataset="mnist", model="mlp", epochs=1, data_dir="data")
    run = nettrain.fit(model=my_module, data=(x, y), loss="mse", optimizer="sgd", lr=0.2, epochs=200)
    model = nettrain.load("runs/xyz")          # best.pt of a run, or any checkpoint file
    model.predict(["cat.png", pil_image, uint8_array]).labels
    model.evaluate()                             # the test split it was trained with

`fit` takes the same keys as the config: shortcut names (lr, epochs, batch_size, optimizer, ...), dotted
keys (`**{"optim.momentum": 0.9}`), or whole sections (`optim={"momentum": 0.9}`).
"""
from __future__ import annotations

import math
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import nn

from . import __version__
from ._malloc import freed_memory_kept
from .config import SECTIONS, Config
from .data import ArrayData, Data, DataInfo, from_user_data, load_data, make_batches
from .data.images import is_image_file, read_image
from .engine import checkpoint as ckpt_io
from .engine.device import describe, resolve_device, resolve_precision
from .engine.lookahead import Lookahead
from .engine.loop import Step, evaluate as evaluate_pass, train_epoch
from .engine.optim import build_loss, build_optimizer, build_scheduler, default_loss_for, fast_forward
from .engine.progress import Progress
from .errors import CheckpointError, ConfigError, DataError, ModelError, NettrainError
from .models import build_model, check_fits
from .runs import RunDir, TensorBoardLog


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


# ---- results ---------------------------------------------------------------------------------------

@dataclass
class Predictions:
    """Model outputs for a batch of inputs: class probabilities (classification) or values (regression)."""
    probs: Optional[torch.Tensor]
    values: Optional[torch.Tensor]
    classes: Optional[list]

    @property
    def indices(self) -> list:
        return self.probs.argmax(1).tolist()

    @property
    def labels(self) -> list:
        return [self.classes[i] for i in self.indices]

    def topk(self, k: int = 3) -> list:
        """Per input, [(class name, probability), ...] best first."""
        p, i = self.probs.topk(min(k, self.probs.shape[1]), dim=1)
        return [[(self.classes[c], float(q)) for q, c in zip(ps, cs)] for ps, cs in zip(p.tolist(), i.tolist())]

    def __len__(self):
        return len(self.probs if self.probs is not None else self.values)


class Predictor:
    """A trained model with the preprocessing it was trained with: what `nettrain.load` returns."""

    def __init__(self, module: nn.Module, info: DataInfo, config: Config, device=None, precision=None):
        self.module, self.info, self.config = module.eval(), info, config
        self.device = device or next(module.parameters()).device
        self.precision = precision or resolve_precision("32", self.device, info.kind)

    @property
    def classes(self) -> Optional[list]:
        return self.info.classes

    # inputs -> one uint8 NCHW (images) or float (vectors) batch
    def _image_array(self, a) -> torch.Tensor:
        c, h, w = self.info.shape
        if not isinstance(a, torch.Tensor):
            a = np.asarray(a)
            if not a.flags.writeable:   # PIL's and read_image's arrays: torch warns on read-only buffers
                a = a.copy()
        t = torch.as_tensor(a) if not isinstance(a, torch.Tensor) else a
        if t.is_floating_point():   # ToTensor convention: floats in [0, 1]
            t = (t.clamp(0, 1) * 255).round().to(torch.uint8)
        if t.dtype != torch.uint8:
            raise DataError(f"images must be uint8 arrays/tensors or floats in [0, 1], got {t.dtype}")
        numpy_layout = not isinstance(a, torch.Tensor)   # numpy/PIL are HWC, torch tensors CHW
        if t.ndim == 2:
            t = t[None, None]
        elif t.ndim == 3:
            if numpy_layout and t.shape[-1] in (1, 3, 4):
                t = t.permute(2, 0, 1)[None]        # one HWC image
            elif not numpy_layout and t.shape[0] in (1, 3, 4):
                t = t[None]                          # one CHW image
            else:
                t = t[:, None]                       # a batch of gray NHW images
        elif t.ndim == 4 and numpy_layout:
            t = t.permute(0, 3, 1, 2)
        if t.ndim != 4:
            raise DataError(f"cannot read images of shape {tuple(t.shape)}; give HW, HWC, NHWC (numpy) or CHW, NCHW "
                            f"(torch)")
        if t.shape[1] == 4:
            t = t[:, :3]
        if t.shape[1] != c:   # gray <-> RGB, like PIL's convert
            t = t.expand(-1, 3, -1, -1) if c == 3 else \
                (t.float() * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True).round().byte()
        if tuple(t.shape[2:]) != (h, w):
            t = torch.nn.functional.interpolate(t.float(), size=(h, w), mode="bilinear", antialias=True,
                                                align_corners=False).round().clamp(0, 255).byte()
        return t.contiguous()

    def _batch(self, inputs) -> torch.Tensor:
        if self.info.kind == "vector":
            return torch.as_tensor(np.asarray(inputs) if not isinstance(inputs, torch.Tensor) else inputs).float()
        if isinstance(inputs, (np.ndarray, torch.Tensor)):
            return self._image_array(inputs)
        if not isinstance(inputs, (list, tuple)):
            inputs = [inputs]
        c, h, _ = self.info.shape
        parts = []
        for item in inputs:
            if isinstance(item, (str, Path)):
                item = read_image(item, c, h)
            elif hasattr(item, "convert") and hasattr(item, "size"):   # a PIL image
                item = np.asarray(item.convert("L" if c == 1 else "RGB"))
            parts.append(self._image_array(item))
        return torch.cat(parts)

    @torch.no_grad()
    def predict(self, inputs, batch_size: int = 256) -> Predictions:
        """inputs: file paths, PIL images, uint8 numpy arrays (HW/HWC/NHWC), tensors (CHW/NCHW), or vectors."""
        x = self._batch(inputs)
        inputs_only = ArrayData(x, torch.zeros(len(x), dtype=torch.long))   # targets unused
        batches = make_batches(inputs_only, self.info, self.config.data, self.device, batch_size, train=False,
                               channels_last=self.config.train.channels_last)
        outs = []
        with self.precision.small_linears_in_float32(self.module):
            for xb, _ in batches:
                with self.precision.autocast():
                    outs.append(self.module(xb).float().cpu())
        out = torch.cat(outs) if outs else torch.zeros(0, self.info.outputs)
        if self.info.task == "classification":
            return Predictions(out.softmax(1), None, self.classes)
        return Predictions(None, out, None)

    def evaluate(self, data=None, data_dir=None, batch_size: Optional[int] = None) -> dict:
        """Loss, accuracy, per-class accuracy and confusion matrix (or MSE/MAE) on the test split of the dataset
        it was trained on (optionally from another `data_dir`), or on `data` given as (x, y)."""
        cfg = self.config
        if data is not None:
            split = from_user_data(data, data, self.classes, cfg.data).test   # all of it: no held-out split
        else:
            if cfg.data.name == "arrays":
                raise DataError("this model was trained on arrays given to nettrain.fit; pass them: "
                                "model.evaluate(data=(x, y))")
            dcfg = cfg.override({"data.dir": str(data_dir)}).data if data_dir else cfg.data
            loaded = load_data(dcfg)
            split = loaded.test
            if list(loaded.info.shape) != list(self.info.shape):
                raise DataError(f"the data in {data_dir or dcfg.dir} has inputs of shape {loaded.info.shape}, "
                                f"the model was trained on {self.info.shape}")
        loss_fn = build_loss(_loss_cfg(cfg, self.info.task))
        batches = make_batches(split, self.info, cfg.data, self.device, batch_size or cfg.train.eval_batch_size,
                               train=False, channels_last=cfg.train.channels_last)
        with freed_memory_kept(self.device.type == "cpu"), self.precision.small_linears_in_float32(self.module):
            return evaluate_pass(self.module, batches, loss_fn, self.precision, self.info.task == "classification",
                                 self.info.outputs, cfg.train.tta, cfg.train.tta_shift)


@dataclass
class Run:
    dir: Path
    metrics: list                      # one dict per epoch (the rows of metrics.csv)
    model: Predictor
    test: dict = field(default_factory=dict)   # final evaluation on the test split
    seconds: float = 0.0


def _loss_cfg(cfg: Config, task: str):
    return cfg.override({"train.loss": default_loss_for(task, cfg.train.loss)}).train


def _seed_everything(seed: int):
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# ---- fit -------------------------------------------------------------------------------------------

def fit(config=None, *, data=None, val_data=None, classes=None, resume=None, **options) -> Run:
    """Train a model; returns the Run (its directory, metrics and trained model). See the module docstring."""
    module = options.pop("model") if isinstance(options.get("model"), nn.Module) else None
    if resume is not None:
        run_dir = Path(resume)
        if not (run_dir / "config.yaml").exists() or not (run_dir / "last.pt").exists():
            raise CheckpointError(f"{run_dir} is not a run directory with a checkpoint to resume (no config.yaml "
                                  f"or last.pt); give the directory of a run started by nettrain fit")
        cfg = resolve_config(run_dir / "config.yaml", options)
    else:
        cfg = resolve_config(config, options)
    user_data = None
    if data is not None:
        if "dataset" in options or "data.name" in options:
            raise ConfigError("give either dataset=<name> or data=(x, y), not both")
        cfg = cfg.override({"data.name": "arrays"})
        user_data = from_user_data(data, val_data, classes, cfg.data)
    if module is not None:
        cfg = cfg.override({"model.name": f"{type(module).__module__}:{type(module).__qualname__}"})
    return _train(cfg, module, user_data, Path(resume) if resume is not None else None)


def _train(cfg: Config, module: Optional[nn.Module], data: Optional[Data], resume_dir: Optional[Path]) -> Run:
    t0 = time.perf_counter()
    tc = cfg.train
    for key, value, low in (("train.epochs", tc.epochs, 1), ("train.batch_size", tc.batch_size, 1),
                            ("train.val_every", tc.val_every, 0), ("train.tta_shift", tc.tta_shift, 0),
                            ("train.accumulate", tc.accumulate, 1), ("train.eval_batch_size", tc.eval_batch_size, 1),
                            ("train.lookahead", tc.lookahead, 0)):
        if value < low:
            raise ConfigError(f"{key} must be at least {low}, got {value}")
    if not 0 < tc.lookahead_decay <= 1:
        raise ConfigError(f"train.lookahead_decay must be in (0, 1], got {tc.lookahead_decay}")
    if tc.threads:
        torch.set_num_threads(tc.threads)
    _seed_everything(tc.seed)
    device = resolve_device(tc.device)
    progress = Progress(cfg.run.progress, tc.epochs)

    # data
    data = data or load_data(cfg.data)
    info = data.info
    classification = info.task == "classification"
    precision = resolve_precision(tc.precision, device, info.kind, tc.small_linears_fp32)
    if tc.tta and info.kind != "image":
        raise ConfigError(f"train.tta mirrors and shifts images, but this dataset's inputs have shape {info.shape}; "
                          f"set train.tta false")
    if tc.tta and tc.tta_shift >= min(info.shape[1:]):
        raise ConfigError(f"train.tta_shift must be smaller than the images ({info.shape[1]}x{info.shape[2]}), "
                          f"got {tc.tta_shift}")

    # model (built and checked on the CPU, then moved)
    if module is None:
        module = build_model(cfg.model.name, info.shape, info.outputs, cfg.model.args)
    check_fits(module, cfg.model.name, info.shape, info.outputs, info.task)
    channels_last = tc.channels_last and info.kind == "image"
    module.to(device)
    if channels_last:
        module.to(memory_format=torch.channels_last)
    if hasattr(module, "init_from_data") and resume_dir is None and hasattr(data.train, "x"):
        module.init_from_data(make_batches(data.train, info, cfg.data, device, 5000, train=False,
                                           channels_last=channels_last).__iter__().__next__()[0])

    # the step
    loss_cfg = _loss_cfg(cfg, info.task)
    loss_fn = build_loss(loss_cfg)
    train_batches = make_batches(data.train, info, cfg.data, device, tc.batch_size, train=True, shuffle=tc.shuffle,
                                 drop_last=tc.drop_last, seed=tc.seed, channels_last=channels_last)
    if len(train_batches) == 0:
        raise ConfigError(f"train.batch_size {tc.batch_size} with drop_last leaves no batch from "
                          f"{train_batches.num_samples} examples; lower the batch size")
    val_batches = make_batches(data.val, info, cfg.data, device, tc.eval_batch_size, train=False,
                               channels_last=channels_last) if data.val is not None else None
    steps_per_epoch = math.ceil(len(train_batches) / tc.accumulate)
    optimizer = build_optimizer(module.parameters(), cfg.optim)
    scheduler = build_scheduler(optimizer, cfg.sched, tc.epochs, steps_per_epoch)
    ema = None
    if tc.ema:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
        ema = AveragedModel(module, multi_avg_fn=get_ema_multi_avg_fn(tc.ema), use_buffers=True)
    lookahead = Lookahead(module, tc.lookahead, tc.lookahead_decay, tc.epochs * steps_per_epoch) \
        if tc.lookahead else None
    model = _maybe_compile(module, tc.compile, train_batches, loss_fn, precision)
    step = Step(model, loss_fn, optimizer, scheduler, precision, precision.scaler(), tc.accumulate, tc.grad_clip, ema,
                lookahead)

    # the run directory
    history, best, start_epoch = [], {"metric": "val_acc" if classification else "val_loss", "value": None,
                                      "epoch": None}, 0
    if resume_dir is not None:
        run = RunDir(resume_dir)
        state = ckpt_io.load(run.last)
        ckpt_io.load_weights(module, state.get("train_model") or state["model"], str(run.last), cfg.model.name)
        history, best, start_epoch = state["history"], state["best"], state["epoch"]
        saved_epochs = state["config"]["train"]["epochs"]
        if saved_epochs == tc.epochs or start_epoch >= tc.epochs:   # an interrupted run: continue exactly
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
        else:
            _resume_over_new_length(optimizer, scheduler, state["optimizer"], start_epoch * steps_per_epoch)
            progress.say(f"resuming {run.path} at epoch {start_epoch} of {tc.epochs}: the lr schedule is "
                         f"{'stretched' if tc.epochs > saved_epochs else 'shortened'} from {saved_epochs} to "
                         f"{tc.epochs} epochs")
            _write_config(run, cfg)   # now an N-epoch run: a plain --resume continues it, not stops at the old end
        step.scaler.load_state_dict(state["scaler"])
        if ema is not None and state.get("ema"):
            ema.load_state_dict(state["ema"])
        if lookahead is not None and state.get("lookahead"):
            lookahead.load_state_dict(state["lookahead"])
        ckpt_io.set_rng_state(state["rng"])
        if start_epoch >= tc.epochs:
            progress.say(f"{run.path} already finished its {start_epoch} epochs; give --epochs N to train further")
    else:
        run = RunDir.create(cfg.run.dir, cfg.data.name, cfg.model.name, cfg.run.overwrite)
        _write_config(run, cfg)
    run.write_environment(device=describe(device), precision=precision.name, nettrain=__version__,
                          threads=torch.get_num_threads(), omp_wait_policy=os.environ.get("OMP_WAIT_POLICY"))
    tb = TensorBoardLog(run, cfg.run.tensorboard, purge_step=start_epoch + 1 if resume_dir else None)
    if resume_dir is None:
        if info.kind == "image" and hasattr(data.train, "x"):
            tb.images(data.train.x[:64])
        tb.graph(module, next(iter(val_batches or train_batches))[0][:2])
    n_params = sum(p.numel() for p in module.parameters())
    progress.say(f"nettrain: {cfg.data.name} ({train_batches.num_samples:,} train, "
                 f"{len(data.val) if data.val is not None else 0:,} val) | {cfg.model.name} ({n_params:,} parameters) "
                 f"| {describe(device)}, precision {precision.name} | run {run.path}")

    # Large activations are allocated and freed every step: keep the freed memory for reuse (see _malloc.py).
    # Small linear layers run in float32 under CPU bf16 autocast, where it is faster (see engine/device.py); a
    # compiled model is left to the compiler.
    eval_model = ema.module if ema is not None else model
    with freed_memory_kept(device.type == "cpu"), \
            precision.small_linears_in_float32(module, eval_model, enabled=not tc.compile):
        final_va = None
        for epoch in range(start_epoch + 1, tc.epochs + 1):
            train_batches.set_epoch(epoch)
            progress.start_epoch(epoch, len(train_batches))
            tr = train_epoch(step, train_batches, classification, progress)
            validate = val_batches is not None and (epoch == tc.epochs or (tc.val_every and epoch % tc.val_every == 0))
            va = evaluate_pass(eval_model, val_batches, loss_fn, precision, classification, info.outputs, tc.tta,
                               tc.tta_shift) if validate else {}
            final_va = va if epoch == tc.epochs else None
            row = {"epoch": epoch, "train_loss": tr["loss"], "train_acc": tr["acc"], "val_loss": va.get("loss"),
                   "val_acc": va.get("acc"), "val_mae": va.get("mae"), "lr": optimizer.param_groups[0]["lr"],
                   "seconds": round(tr["seconds"], 3), "images_per_s": round(tr["images"] / tr["seconds"], 1),
                   "data_wait": round(tr["data_wait"], 4)}
            history.append(row)
            run.write_metrics(history)
            tb.scalars(row, epoch)
            value = row[best["metric"]]
            improved = value is not None and (best["value"] is None or (value > best["value"] if classification
                                                                       else value < best["value"]))
            if improved:
                best = {"metric": best["metric"], "value": value, "epoch": epoch}
            state = {"model": ckpt_io.clean_state_dict(eval_model), "optimizer": optimizer.state_dict(),
                     "scheduler": scheduler.state_dict(), "scaler": step.scaler.state_dict(),
                     "ema": ema.state_dict() if ema is not None else None,
                     "lookahead": lookahead.state_dict() if lookahead is not None else None, "epoch": epoch,
                     "rng": ckpt_io.rng_state(),
                     "config": cfg.to_dict(), "data": info.to_dict(), "history": history, "best": best,
                     "nettrain_version": __version__}
            if ema is not None:   # training resumes from the raw weights; predictions use the average
                state["train_model"] = ckpt_io.clean_state_dict(module)
            ckpt_io.save(run.last, state)
            if improved or not run.best.exists():
                ckpt_io.save(run.best, state)
                ckpt_io.save_safetensors(run.best_safetensors, state["model"],
                                         {"classes": info.classes, "data": info.to_dict(), "epoch": epoch,
                                          "model": cfg.model.name})
            progress.end_epoch(row)
        tb.close()

        predictor = Predictor(unwrap_eval(eval_model), info, cfg, device, precision)
        test = {}
        if data.test is not None:
            test_batches = make_batches(data.test, info, cfg.data, device, tc.eval_batch_size, train=False,
                                        channels_last=channels_last)
            if final_va and data.test is data.val:   # the last validation was this very pass: do not repeat it
                test = final_va
            else:
                test = evaluate_pass(eval_model, test_batches, loss_fn, precision, classification, info.outputs, tc.tta,
                                     tc.tta_shift)
            if classification:
                run.write_confusion(test["confusion"], info.classes)
            progress.say(format_report(test, info.classes, "test"))
    seconds = time.perf_counter() - t0
    if best["epoch"] is not None:
        progress.say(f"best {best['metric']} {best['value']:.4f} at epoch {best['epoch']} -> {run.best}; "
                     f"{seconds:.1f}s in all")
    return Run(run.path, history, predictor, test, seconds)


def _write_config(run: RunDir, cfg: Config):
    """config.yaml: the run's record, without where it lives (a copied run directory stays valid)."""
    run.write_config(cfg.override({"run.dir": None, "run.overwrite": False}).to_yaml())


def _resume_over_new_length(optimizer, scheduler, saved_optimizer: dict, steps_done: int):
    """Resume with `scheduler`, freshly built over a different number of epochs than the checkpoint's.

    The saved scheduler state, and the lr, initial_lr (onecycle: max_lr, min_lr, momentum) in the saved param
    groups, describe the old length: restoring them would run the old schedule past its end (a cosine rises
    again). So keep only the per-parameter state (momentum buffers, Adam moments), put back the hyperparameters
    the fresh scheduler was built on, and step it to where training stopped."""
    fresh = [{k: v for k, v in group.items() if k != "params"} for group in optimizer.param_groups]
    optimizer.load_state_dict(saved_optimizer)
    for group, hyperparameters in zip(optimizer.param_groups, fresh):
        group.update(hyperparameters)
    fast_forward(scheduler, steps_done)


def unwrap_eval(model):
    return ckpt_io.unwrap(model)


def _maybe_compile(module, enabled: bool, batches, loss_fn, precision):
    """torch.compile the model and warm it up with one forward and backward pass on a real batch, so that neither
    graph compiles inside the first epoch's timing; the weights, buffers, gradients and RNG are then put back as
    they were. A failure falls back to eager with a warning, before training starts."""
    if not enabled:
        return module
    saved = {k: v.detach().clone() for k, v in module.state_dict().items()}
    cuda = [precision.device] if precision.device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):   # the warm-up draws no random numbers the run would have drawn
        try:
            compiled = torch.compile(module)
            x, y = next(iter(batches))
            with precision.autocast():
                loss = loss_fn(compiled(x), y)
            loss.backward()
        except Exception as e:
            print(f"warning: torch.compile failed ({type(e).__name__}: {str(e).splitlines()[0][:120]}); "
                  f"training without it", file=sys.stderr)
            compiled = module
    with torch.no_grad():
        module.load_state_dict(saved)
    module.zero_grad(set_to_none=True)
    return compiled


def format_report(result: dict, classes, split: str = "test") -> str:
    n = result["examples"]
    if "acc" not in result:
        return f"{split}: loss {result['loss']:.5f}  mse {result['mse']:.5f}  mae {result['mae']:.5f}  ({n} examples)"
    cm = result["confusion"]
    lines = [f"{split}: loss {result['loss']:.4f}  accuracy {result['acc']:.2%} ({int(cm.diag().sum())}/{n})"]
    width = max(8, max(len(c) for c in classes))
    lines.append(f"  {'class':<{width}}  accuracy")
    for name, correct, total in zip(classes, cm.diag().tolist(), cm.sum(1).tolist()):
        acc = f"{correct / total:7.2%}  ({correct}/{total})" if total else "      -"
        lines.append(f"  {name:<{width}}  {acc}")
    if len(classes) <= 20:
        cell = max(5, len(str(int(cm.max()))) + 1)
        lines.append("  confusion matrix (rows: true class, columns: predicted)")
        lines.append("  " + " " * width + "".join(f"{c[:cell - 1]:>{cell}}" for c in classes))
        for name, row in zip(classes, cm.tolist()):
            lines.append(f"  {name:<{width}}" + "".join(f"{v:>{cell}}" for v in row))
    return "\n".join(lines)


# ---- load ------------------------------------------------------------------------------------------

def load(path, model: Optional[nn.Module] = None, device: str = "cpu") -> Predictor:
    """A trained model from a run directory (its best.pt) or a checkpoint file. Give `model` (an instance of
    your own class) when the class cannot be imported by name."""
    state = ckpt_io.load(path)
    cfg = Config.from_dict(state["config"])
    info = DataInfo.from_dict(state["data"])
    if model is None:
        try:
            model = build_model(cfg.model.name, info.shape, info.outputs, cfg.model.args)
        except ModelError as e:
            raise ModelError(f"{e}; or pass your model: nettrain.load(path, model=YourModel(...))") from None
    ckpt_io.load_weights(model, state["model"], state["path"], cfg.model.name)
    dev = resolve_device(device)
    model.to(dev)
    if cfg.train.channels_last and info.kind == "image":
        model.to(memory_format=torch.channels_last)
    return Predictor(model.eval(), info, cfg, dev,
                     resolve_precision(cfg.train.precision, dev, info.kind, cfg.train.small_linears_fp32))


def checkpoint_run_dir(path) -> Optional[Path]:
    p = Path(path)
    d = p if p.is_dir() else p.parent
    return d if (d / "config.yaml").exists() else None


__all__ = ["fit", "load", "Run", "Predictor", "Predictions", "resolve_config", "format_report", "NettrainError",
           "is_image_file"]
