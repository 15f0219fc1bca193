"""The numbers the report derives from the run's records: per-class scores, calibration, timings."""
from __future__ import annotations

from typing import Optional

import numpy as np


def per_class(confusion: np.ndarray) -> dict:
    """Precision, recall and F1 per class from a [true, predicted] confusion matrix, and each class's support.
    A class never predicted has no precision (nan), one never present no recall: shown as such, not as 0."""
    cm = np.asarray(confusion, dtype=np.float64)
    hits = np.diag(cm)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = hits / cm.sum(0)
        recall = hits / cm.sum(1)
        f1 = 2 * precision * recall / (precision + recall)
    f1 = np.where((precision == 0) & (recall == 0), 0.0, f1)   # 0/0 there: no hit at all scores 0, not nan
    return {"precision": precision, "recall": recall, "f1": f1, "support": cm.sum(1).astype(np.int64)}


def accuracy(confusion: Optional[np.ndarray]) -> Optional[float]:
    if confusion is None or confusion.sum() == 0:
        return None
    return float(np.trace(confusion) / confusion.sum())


def calibration(confidence: np.ndarray, correct: np.ndarray, bins: int = 10) -> dict:
    """Reliability: per confidence bin, the examples' mean confidence, their accuracy and their count; and the
    expected calibration error (the count-weighted mean gap)."""
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)   # confidence 1.0 is in the last bin
    count = np.bincount(which, minlength=bins)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_conf = np.bincount(which, confidence, bins) / count
        acc = np.bincount(which, correct, bins) / count
    used = count > 0
    ece = float((np.abs(acc - mean_conf)[used] * count[used]).sum() / max(count.sum(), 1))
    return {"edges": edges, "confidence": mean_conf, "accuracy": acc, "count": count, "ece": ece}


def timings(metrics: list) -> dict:
    """Training time, examples/s and the data-wait share over the epochs recorded (MetricsRow)."""
    seconds = [r.seconds for r in metrics if r.seconds is not None]
    speed = [r.examples_per_s for r in metrics if r.examples_per_s is not None]
    wait = [r.data_wait for r in metrics if r.data_wait is not None]
    return {"seconds": sum(seconds), "epochs": len(metrics),
            "examples_per_s": float(np.median(speed)) if speed else None,
            "data_wait": float(np.mean(wait)) if wait else None, "data_wait_max": max(wait) if wait else None}
