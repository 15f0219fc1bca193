"""Metrics beyond loss and accuracy, each a small function of plain tensors: per-class precision, recall and F1
(and their macro means) from a confusion matrix, ROC-AUC of a two-class problem, and MSE, MAE and R^2 from
predictions and targets.

A classifier's outputs are its classes' scores, [N, classes], or, for two classes, one logit an example ([N, 1] or
[N] after a `squeeze()`: a binary head trained with BCEWithLogitsLoss), whose sigmoid is the second class's
probability. `one_logit`, `predicted_classes` and `class_probabilities` read both the same way everywhere."""
from __future__ import annotations

from typing import Optional

import torch

from ..catalog import METRICS as LISTED_METRICS
from ..registry import Registry


def classification_metrics(confusion: torch.Tensor) -> dict:
    """{"precision", "recall", "f1", "support": one value per class, "macro": their unweighted means} from a
    confusion matrix (rows: true class, columns: predicted). A class never predicted has precision 0 (as
    scikit-learn's zero_division=0), one never present recall 0; the macro mean is over every class."""
    cm = confusion.double()
    tp, predicted, actual = cm.diag(), cm.sum(0), cm.sum(1)
    precision = torch.where(predicted > 0, tp / predicted.clamp_min(1), torch.zeros_like(tp))
    recall = torch.where(actual > 0, tp / actual.clamp_min(1), torch.zeros_like(tp))
    both = precision + recall
    f1 = torch.where(both > 0, 2 * precision * recall / both.clamp_min(1e-300), torch.zeros_like(tp))
    return {"precision": precision.tolist(), "recall": recall.tolist(), "f1": f1.tolist(),
            "support": actual.long().tolist(),
            "macro": {"precision": precision.mean().item(), "recall": recall.mean().item(), "f1": f1.mean().item()}}


def one_logit(out: torch.Tensor) -> bool:
    """Is `out` a binary head's: one logit an example ([N, 1], or [N] / a 0-d value after the model's squeeze)?"""
    return out.ndim < 2 or (out.ndim == 2 and out.shape[1] == 1)


def predicted_classes(out: torch.Tensor) -> torch.Tensor:
    """Each example's class index: the highest score, or for a binary head logit > 0 (probability > 0.5)."""
    return (out.reshape(-1) > 0).long() if one_logit(out) else out.argmax(1)


def class_probabilities(out: torch.Tensor) -> torch.Tensor:
    """[N, classes] probabilities: softmax of the scores, or for a binary head [1 - sigmoid, sigmoid]."""
    if one_logit(out):
        p = out.reshape(-1, 1).float().sigmoid()
        return torch.cat([1 - p, p], 1)
    return out.softmax(1)


def positive_score(out: torch.Tensor) -> torch.Tensor:
    """For two classes: a score that orders examples as the second class's probability does (ROC-AUC's input)."""
    return out.reshape(-1) if one_logit(out) else out[:, 1] - out[:, 0]


def roc_auc(scores: torch.Tensor, y: torch.Tensor) -> Optional[float]:
    """The area under the ROC curve of class 1 against class 0 (scikit-learn's roc_auc_score); None when the
    examples hold only one class, or a score is NaN or infinite (a diverged epoch's: it is undefined)."""
    y = y.reshape(-1).cpu()
    if len(y) == 0 or bool((y == y[0]).all()) or not bool(torch.isfinite(scores).all()):
        return None
    from sklearn.metrics import roc_auc_score
    return float(roc_auc_score(y.numpy(), scores.reshape(-1).double().cpu().numpy()))


def multilabel_metrics(pred: torch.Tensor, y: torch.Tensor, labels: Optional[list] = None) -> dict:
    """Multi-label (several 0/1 targets an example, a logit each): the exact-match accuracy, the micro F1 over
    every (example, label) decision and each label's precision, recall and F1 (threshold: logit > 0)."""
    hit, want = (pred.reshape(len(pred), -1) > 0), (y.reshape(len(y), -1) > 0.5)
    tp, fp, fn = (hit & want).sum(0).double(), (hit & ~want).sum(0).double(), (~hit & want).sum(0).double()

    def f1(tp, fp, fn):
        return torch.where(tp > 0, 2 * tp / (2 * tp + fp + fn).clamp_min(1), torch.zeros_like(tp))
    precision = torch.where(tp + fp > 0, tp / (tp + fp).clamp_min(1), torch.zeros_like(tp))
    recall = torch.where(tp + fn > 0, tp / (tp + fn).clamp_min(1), torch.zeros_like(tp))
    names = labels or [str(i) for i in range(hit.shape[1])]
    per_label = {name: {"precision": precision[i].item(), "recall": recall[i].item(), "f1": f1(tp, fp, fn)[i].item(),
                        "support": int(want[:, i].sum())} for i, name in enumerate(names)}
    return {"exact_match": (hit == want).all(1).double().mean().item() if len(hit) else 0.0,
            "micro_f1": f1(tp.sum(), fp.sum(), fn.sum()).item(), "macro_f1": f1(tp, fp, fn).mean().item(),
            "per_label": per_label}


def regression_metrics(pred: torch.Tensor, y: torch.Tensor) -> dict:
    """MSE and MAE over every value, and R^2 (1 - residual / total sum of squares, per target column, averaged as
    scikit-learn's r2_score does); R^2 is None when a column's targets are all equal (it is undefined)."""
    pred, y = pred.double().reshape(len(pred), -1), y.double().reshape(len(y), -1)
    diff = pred - y
    total = (y - y.mean(0)).pow(2).sum(0)
    r2 = None if len(y) == 0 or bool((total == 0).any()) else (1 - diff.pow(2).sum(0) / total).mean().item()
    n = max(diff.numel(), 1)
    return {"mse": diff.pow(2).sum().item() / n, "mae": diff.abs().sum().item() / n, "r2": r2}


def summary(result: dict, classes: Optional[list]) -> dict:
    """An evaluation as plain data (what test_metrics.json holds): loss and the task's metrics, per class by name."""
    out = {"examples": result["examples"], "loss": result["loss"],
           **({"metrics": {k.removeprefix("val_"): v for k, v in result["metrics"].items()}}
              if result.get("metrics") else {})}
    if "multilabel" in result:   # per label by name (the labels are the checkpoint's classes)
        m = dict(result["multilabel"] or {})
        names = list(classes or [])
        m["per_label"] = {names[i] if i < len(names) else key: v
                          for i, (key, v) in enumerate((m.get("per_label") or {}).items())}
        return {**out, **m}
    if "confusion" not in result:
        return {**out, **{k: result.get(k) for k in ("mse", "mae", "r2")}}
    m = classification_metrics(result["confusion"])
    per_class = {name: {k: m[k][i] for k in ("precision", "recall", "f1", "support")}
                 for i, name in enumerate(classes)}
    binary = {"f1": m["f1"][1], "roc_auc": result.get("roc_auc")} if len(classes) == 2 else {}
    return {**out, "accuracy": result["acc"], **binary, "macro": m["macro"], "per_class": per_class}


# ---- the run's own metrics (train.metrics) ----------------------------------------------------------------------

# name -> f(outputs, targets) -> float over a whole split: outputs [N, classes] (or a binary head's logits) and the
# class indices, or a regression's values and targets. `nettrain list` shows them; a user's is file.py:function.
METRICS = Registry("metric", LISTED_METRICS)


@METRICS.register("balanced_acc")
def balanced_accuracy(out: torch.Tensor, y: torch.Tensor) -> float:
    classes = out.shape[1] if out.dim() == 2 and out.shape[1] > 1 else 2
    cm = torch.bincount(y.long() * classes + predicted_classes(out), minlength=classes * classes)
    return classification_metrics(cm.view(classes, classes))["macro"]["recall"]


@METRICS.register("top5_acc")
def top5_accuracy(out: torch.Tensor, y: torch.Tensor) -> float:
    top = out.topk(min(5, out.shape[1]), dim=1).indices
    return (top == y.view(-1, 1)).any(1).double().mean().item()


def build_metrics(names: list, gate=None) -> dict:
    """name -> function for train.metrics: registered names, or the user's `file.py:function` (a checkpoint's
    names through its `gate`, trust.py)."""
    from .. import usercode
    from ..errors import ConfigError
    built = {}
    for name in names:
        if not isinstance(name, str):
            raise ConfigError(f"train.metrics holds metric names or file.py:function specs, got {name!r:.60}")
        if name in METRICS or ":" not in name:
            built[name] = METRICS.get(name)
        else:
            built[name.rsplit(":", 1)[1]] = gate.resolve(name, "metric") if gate is not None else \
                usercode.resolve(name, "metric")
    return built


def own_metrics(fns: dict, kept: list, world=None) -> dict:
    """{val_<name>: value} of each function on the whole split's outputs and targets (`kept`: this rank's
    (outputs, targets) batches; under many processes every rank's, gathered in rank order)."""
    out, y = torch.cat([o for o, _ in kept]), torch.cat([t for _, t in kept])
    if world is not None and world.size > 1:
        parts = [p for p in world.gather((out.cpu(), y.cpu())) if p is not None]
        out, y = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
    return {f"val_{name}": float(fn(out, y)) for name, fn in fns.items()}
