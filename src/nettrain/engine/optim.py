"""Optimizers, learning-rate schedules and losses by name: each builder returns a plain torch object.

Every schedule is stepped once per optimizer step (not per epoch), so warmup and decay are smooth and a
resumed run restores the schedule exactly from its state_dict (or, resumed for a different number of epochs,
rebuilds it over the new length and fast-forwards it to the step where training stopped).
"""
from __future__ import annotations

import inspect
import warnings

import torch
from torch import nn

from .. import catalog, config
from ..errors import ConfigError, closest
from ..registry import Registry
from .metrics import one_logit
from .muon import Muon

OPTIMIZERS = Registry("optimizer", catalog.OPTIMIZERS)
SCHEDULERS = Registry("scheduler", catalog.SCHEDULERS)
LOSSES = Registry("loss", catalog.LOSSES)

for _name, _cls in [("sgd", torch.optim.SGD), ("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW),
                    ("rmsprop", torch.optim.RMSprop), ("adagrad", torch.optim.Adagrad),
                    ("adadelta", torch.optim.Adadelta), ("muon", Muon)]:
    OPTIMIZERS.register(_name)(_cls)


FUSED = ("adam", "adamw")


def own_keywords(name: str):
    """A registered optimizer's own keywords, beyond the optim section's keys (config.py takes `optim.<keyword>` for
    them); None for a class of the user's, whose file is not imported to read its signature."""
    if name not in OPTIMIZERS:
        return None
    from ..config import OptimConfig
    import dataclasses
    fields = {f.name for f in dataclasses.fields(OptimConfig)}
    return [p for p in inspect.signature(OPTIMIZERS.get(name)).parameters
            if p not in ("params", "self") and p not in fields]


config.OWN_KEYWORDS["optim"] = own_keywords


def _user_class(name: str, kind: str, gate):
    """The user's optimizer or scheduler class (`pkg.mod.Class`, `pkg.mod:Class`, `file.py:Class`), type-checked
    before it is called; `gate` when the name comes from a checkpoint or run directory."""
    from .. import usercode
    return gate.resolve(name, kind) if gate is not None else usercode.resolve(name, kind)


def is_spec(name: str) -> bool:
    """A user spec rather than a registered name: registered names have neither dots nor colons."""
    return ":" in name or "." in name


def build_optimizer(params, cfg, gate=None, fast: bool = True) -> torch.optim.Optimizer:
    """`fast`: with nettrain's fused/foreach step where it applies (engine/probe.py checks it on a user's model)."""
    user = cfg.name not in OPTIMIZERS and is_spec(cfg.name)
    cls = _user_class(cfg.name, "optimizer", gate) if user else OPTIMIZERS.get(cfg.name)
    params_ = inspect.signature(cls).parameters
    accepted = [p for p in params_ if p not in ("params", "self")]
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params_.values())
    kwargs = {"lr": cfg.lr}
    if cfg.weight_decay or "weight_decay" in accepted:   # an added or user class may have no weight decay
        kwargs["weight_decay"] = cfg.weight_decay
    for key in ("momentum", "nesterov", "eps"):
        if getattr(cfg, key) is not None:
            kwargs[key] = getattr(cfg, key)
    if cfg.betas is not None:
        kwargs["betas"] = tuple(cfg.betas)
    if fast and not {"fused", "foreach"} & set(cfg.args):
        params = list(params)
        if cfg.name in FUSED and all(isinstance(p, torch.Tensor) and p.device.type in ("cpu", "cuda")
                                     and p.dtype.is_floating_point for p in params):
            # One fused kernel per step instead of ~10 small ops per tensor (CPU and CUDA): +8% on the MNIST
            # recipe's step.
            kwargs["fused"] = True
        elif "foreach" in accepted:
            # torch picks the multi-tensor path only on CUDA; on the CPU it saves the per-tensor Python loop too
            # (about 3% of the tutorial recipe's batch-16 step) and computes the same values.
            kwargs["foreach"] = True
    kwargs.update(cfg.args)
    bad = [k for k in kwargs if k not in accepted] if not takes_any else []
    if bad:
        raise ConfigError(f"optimizer {cfg.name!r} takes no {', '.join(bad)}{closest(bad[0], accepted)}; "
                          f"it takes: {', '.join(accepted)}")
    try:
        return cls(params, **kwargs)
    except (ValueError, TypeError, RuntimeError) as e:
        raise ConfigError(f"optimizer {cfg.name!r}: {e}; fix the optim.* values") from None
    except Exception as e:   # the user's class raised something else in its __init__
        if not user:
            raise
        from ..usercode import raised
        raise ConfigError(f"optimizer {cfg.name!r} failed to build ({raised(e)}); fix the class or its "
                          f"--optim.args") from None


@SCHEDULERS.register("none")
def _none(opt, cfg, total_steps, steps_per_epoch):
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)


@SCHEDULERS.register("step")
def _step(opt, cfg, total_steps, steps_per_epoch):
    return torch.optim.lr_scheduler.StepLR(opt, max(1, round(cfg.step_epochs * steps_per_epoch)), cfg.gamma)


@SCHEDULERS.register("cosine")
def _cosine(opt, cfg, total_steps, steps_per_epoch):
    return torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, total_steps), eta_min=cfg.min_lr)


@SCHEDULERS.register("onecycle")
def _onecycle(opt, cfg, total_steps, steps_per_epoch):
    lr = opt.param_groups[0]["lr"]
    return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(2, total_steps),
                                               pct_start=cfg.pct_start)


def _user_scheduler(cls, name: str):
    """A builder like the registered ones for the user's LRScheduler class, called with sched.args, which are
    checked against its signature first."""
    def build(opt, cfg, total_steps, steps_per_epoch):
        from ..usercode import check_kwargs, raised
        check_kwargs(cls, cfg.args, f"scheduler {name!r}", skip=("self", "optimizer"))
        try:
            return cls(opt, **cfg.args)
        except (ValueError, TypeError) as e:
            raise ConfigError(f"scheduler {name!r}: {e}; fix the sched.args values") from None
        except Exception as e:
            raise ConfigError(f"scheduler {name!r} failed to build ({raised(e)}); fix the class or its "
                              f"--sched.args") from None
    return build


def build_scheduler(opt, cfg, epochs: int, steps_per_epoch: int, gate=None):
    if cfg.name not in SCHEDULERS and is_spec(cfg.name):
        builder = _user_scheduler(_user_class(cfg.name, "scheduler", gate), cfg.name)
    else:
        builder = SCHEDULERS.get(cfg.name)
        if cfg.args:
            raise ConfigError(f"sched.args are for a scheduler class of your own; {cfg.name!r} takes its settings "
                              f"from the sched.* keys")
    warmup = round(cfg.warmup_epochs * steps_per_epoch) if cfg.name != "onecycle" else 0
    total = epochs * steps_per_epoch
    main = builder(opt, cfg, total - warmup, steps_per_epoch)
    if not warmup:
        return main
    ramp = torch.optim.lr_scheduler.LinearLR(opt, start_factor=0.1, end_factor=1.0, total_iters=warmup)
    return torch.optim.lr_scheduler.SequentialLR(opt, [ramp, main], milestones=[warmup])


def fast_forward(scheduler, steps: int):
    """Step a freshly built schedule `steps` times, as training would have, so that it continues from there.

    Stepping (rather than setting last_epoch) takes every schedule, warmup milestones included, through the same
    calls as a run that trained those steps, so the lrs that follow are that run's, bit for bit."""
    with warnings.catch_warnings():   # no optimizer step has run yet, and none is meant to
        warnings.filterwarnings("ignore", r"Detected call of `lr_scheduler\.step\(\)` before", UserWarning)
        for _ in range(steps):
            scheduler.step()


@LOSSES.register("cross-entropy")
def _cross_entropy(cfg):
    return nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)


@LOSSES.register("nll")
def _nll(cfg):
    return nn.NLLLoss()


class BinaryLogitLoss(nn.Module):
    """BCEWithLogitsLoss on a binary head's one logit an example ([N, 1] or [N]) against class indices 0/1, or on
    a multi-label model's logits against 0/1 target vectors of their shape."""

    def forward(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if y.numel() != out.numel():
            raise ConfigError(f"loss 'bce' takes one logit per target: the model outputs {list(out.shape)} for "
                              f"targets {list(y.shape)}; give the model one output for two classes (or one a label)")
        return nn.functional.binary_cross_entropy_with_logits(out, y.to(out.dtype).view_as(out))


@LOSSES.register("bce")
def _bce(cfg):
    return BinaryLogitLoss()


@LOSSES.register("mse")
def _mse(cfg):
    return nn.MSELoss()


@LOSSES.register("l1")
def _l1(cfg):
    return nn.L1Loss()


def build_loss(cfg, gate=None, obj=None):
    """A registered loss, or the user's `package.module:function` / `file.py:function` (or nn.Module loss class or
    instance); `gate` when the name comes from a checkpoint or run directory. `obj`: the user's loss object itself
    (nettrain.fit(loss=fn)), which cfg.loss names."""
    from .. import usercode
    if obj is not None:
        if not usercode.KINDS["loss"][1](obj):
            raise ConfigError(f"loss= takes {usercode.KINDS['loss'][0]}, got a {type(obj).__name__}")
    elif cfg.loss in LOSSES or ":" not in cfg.loss:
        return LOSSES.get(cfg.loss)(cfg)
    else:
        obj = gate.resolve(cfg.loss, "loss") if gate is not None else usercode.resolve(cfg.loss, "loss")
    if isinstance(obj, type):   # an nn.Module loss class: built without arguments
        try:
            obj = obj()
        except Exception as e:
            raise ConfigError(f"loss {cfg.loss!r} cannot be built without arguments ({usercode.raised(e)}); "
                              f"give a function, or an instance at module level") from None
    fn = obj
    code = getattr(fn, "__code__", None) or getattr(getattr(type(fn), "forward", None), "__code__", None)
    file = code.co_filename if code is not None else None

    def checked(outputs, targets):   # shape only: no host sync
        if not targets.is_floating_point() and one_logit(outputs) and outputs.numel() == targets.numel():
            # a binary head's one logit: the loss gets 0./1. shaped like it, as a tutorial's loop hands
            # BCEWithLogitsLoss `labels.float().unsqueeze(1)`
            targets = targets.to(outputs.dtype).view_as(outputs)
        try:
            loss = fn(outputs, targets)
        except Exception as e:   # the user's function failed: where in it, in one line
            raise ConfigError(f"loss {cfg.loss!r} raised {usercode.raised(e, file)}; fix the function") from None
        if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
            got = f"shape {tuple(loss.shape)}" if isinstance(loss, torch.Tensor) else type(loss).__name__
            raise ConfigError(f"loss {cfg.loss!r} returned {got}; it must return one number, a 0-d tensor "
                              f"(reduce it, e.g. with .mean())")
        return loss
    return checked


def loss_for_outputs(loss: str, outputs: torch.Tensor, label_smoothing: float = 0.0) -> tuple:
    """(the loss, a line to say or None) for a classifier whose outputs on a probe batch are `outputs`.

    Rows whose exp sums to 1 are log-probabilities (a model ending in LogSoftmax or F.log_softmax): the default
    cross-entropy becomes nll, which is what the tutorials use on them (cross-entropy's own log_softmax leaves
    log-probabilities as they are, so the numbers agree; with label smoothing cross-entropy stays). nll on raw scores
    is not a loss at all (the tutorial's run reached a test loss of -402): said once, before training."""
    rows = outputs.detach().float()
    if loss in ("cross-entropy", "nll") and one_logit(rows):
        return "bce", ("the model outputs one value an example for two classes (a binary head): loss bce "
                       "(BCEWithLogitsLoss: the value is the second class's logit)")
    log_probs = rows.ndim == 2 and rows.shape[1] > 1 and bool(torch.isfinite(rows).all()) and \
        bool(torch.allclose(rows.exp().sum(1), torch.ones(len(rows), device=rows.device), atol=1e-3))
    if loss == "cross-entropy" and log_probs and not label_smoothing:
        return "nll", ("the model outputs log-probabilities (each row's exp sums to 1, as after log_softmax): "
                       "loss nll")
    if loss == "nll" and not log_probs:
        return loss, ("warning: loss nll takes log-probabilities, but the model outputs raw scores (a row's exp "
                      "does not sum to 1), so the loss can fall below 0 without learning; end the model in "
                      "log_softmax, or use --loss cross-entropy")
    return loss, None


def default_loss_for(task: str, loss: str) -> str:
    """The loss for the task. Regression with the classification default means the user did not choose: MSE. A
    built-in loss that cannot take the task's targets is named now, not as a shape error in the first step."""
    if task == "regression" and loss == "cross-entropy":
        return "mse"
    if task == "multilabel" and loss in ("cross-entropy", "nll"):   # softmax would make the labels compete
        return "bce"
    if task == "classification" and loss in ("mse", "l1"):
        raise ConfigError(f"loss {loss!r} compares outputs with targets of their shape (regression), but this "
                          f"dataset has class labels; use cross-entropy or nll")
    if task == "regression" and loss == "nll":
        raise ConfigError("loss 'nll' takes class labels, but this dataset's targets are values; use mse or l1")
    return loss


def loss_config(cfg, task: str):
    """The train section of `cfg` (a Config) with its loss resolved for the task (cross-entropy or MSE when not
    given)."""
    return cfg.override({"train.loss": default_loss_for(task, cfg.train.loss)}).train
