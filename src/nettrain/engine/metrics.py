"""Metrics beyond loss and accuracy, each a small function of plain tensors: per-class precision, recall and F1
(and their macro means) from a confusion matrix, and MSE, MAE and R^2 from predictions and targets."""
from __future__ import annotations

from typing import Optional

import torch


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
    out = {"examples": result["examples"], "loss": result["loss"]}
    if "confusion" not in result:
        return {**out, **{k: result.get(k) for k in ("mse", "mae", "r2")}}
    m = classification_metrics(result["confusion"])
    per_class = {name: {k: m[k][i] for k in ("precision", "recall", "f1", "support")}
                 for i, name in enumerate(classes)}
    return {**out, "accuracy": result["acc"], "macro": m["macro"], "per_class": per_class}
