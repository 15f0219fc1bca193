"""Precision, recall and F1 per class and their macro averages, from a confusion matrix (rows: true class,
columns: predicted): the numbers sklearn.metrics.precision_recall_fscore_support gives, with a class never
predicted (or never present) scored 0 rather than dividing by zero."""
from __future__ import annotations

import torch


def class_scores(confusion: torch.Tensor) -> dict:
    """{"precision": [...], "recall": [...], "f1": [...], "support": [...], "macro": {precision, recall, f1}}."""
    cm = confusion.double()
    hits = cm.diag()
    predicted, support = cm.sum(0), cm.sum(1)
    precision = torch.where(predicted > 0, hits / predicted.clamp_min(1), torch.zeros_like(hits))
    recall = torch.where(support > 0, hits / support.clamp_min(1), torch.zeros_like(hits))
    both = precision + recall
    f1 = torch.where(both > 0, 2 * precision * recall / both.where(both > 0, torch.ones_like(both)),
                     torch.zeros_like(hits))
    return {"precision": precision.tolist(), "recall": recall.tolist(), "f1": f1.tolist(),
            "support": support.long().tolist(),
            "macro": {"precision": precision.mean().item(), "recall": recall.mean().item(), "f1": f1.mean().item()}}
