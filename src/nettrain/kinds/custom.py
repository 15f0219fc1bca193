"""A user's own Dataset batched by their collate function: batches of any structure (a tuple or dict of tensors),
which nettrain hands to the model as they are (engine/loop.forward). Predict batches raw items through the same
function; nothing of a fixed shape is there to trace or export."""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from ..errors import DataError
from .base import Kind, Predictions


class Custom(Kind):
    name = "custom"
    record_fields = ("collate",)   # the collate function's "module:function"
    traceable = False
    fixed_shape = False
    model = None        # batches of the user's collate function: only the user knows what reads them

    def evaluate_given(self, predictor, data, batch_size: Optional[int], collate_fn) -> Optional[dict]:
        """`data`, a Dataset or DataLoader, batched by the collate function: all of it, no held-out split."""
        from ..data.custom import custom_data
        from ..engine.loop import evaluate as evaluate_pass
        from ..engine.optim import build_loss, loss_config
        info, cfg = predictor.info, predictor.config
        _, split, _, _ = custom_data(data, data, predictor.classes, collate_fn or predictor.collate_fn, None)
        batches = split.batches(predictor.device, batch_size or cfg.train.eval_batch_size, info.task)
        loss_fn = predictor.loss_fn or build_loss(loss_config(cfg, info.task), predictor.gate)
        return evaluate_pass(predictor.module, batches, loss_fn, predictor.precision, info.task == "classification",
                             info.outputs, multilabel=info.task == "multilabel")

    def example(self, data):   # batches of the user's making: no fixed shape to make zeros of
        return data.train.example()[0]

    def evidence(self, predictor, test) -> dict:   # batches of the user's making: no fixed inputs to grid
        return {"task": np.array(predictor.info.task), "kind": np.array(predictor.info.kind)}

    def predict(self, predictor, items, batch_size: int, collate_fn=None):
        """Raw items, each paired with a placeholder target (the collate function expects (input, target) pairs;
        its targets are dropped), batched through the collate function and run in the model."""
        from ..data.custom import collate, to_device
        from ..engine.loop import forward
        collate_fn = collate_fn or predictor.collate_fn
        info = predictor.info
        if isinstance(items, (str, bytes)) or not hasattr(items, "__len__") or not len(items):
            raise DataError("nothing to predict: give a list of inputs, each as your Dataset's items hold them "
                            "(without the target)")
        items = list(items)
        if info.task == "classification" or info.outputs == 1:
            placeholder = torch.tensor(0 if info.task == "classification" else 0.0)
        else:
            placeholder = torch.zeros(info.outputs)
        outs = []
        with torch.no_grad():
            for i in range(0, len(items), batch_size):
                x, _ = collate(collate_fn, [(item, placeholder) for item in items[i:i + batch_size]], "predict")
                with predictor.precision.autocast():
                    out = forward(predictor.module, to_device(x, predictor.device)).float().cpu()
                outs.append(out.reshape(len(items[i:i + batch_size]), -1))   # a squeezed binary head's too
        out = torch.cat(outs)
        if info.task == "classification":
            from ..engine.metrics import class_probabilities
            return Predictions(class_probabilities(out), None, predictor.classes)
        if info.task == "multilabel":   # each label's probability, on its own
            return Predictions(out.sigmoid(), None, predictor.classes, multilabel=True)
        return Predictions(None, out, None)

    def export_refusal(self, info) -> Optional[str]:
        return "this run was trained through a collate function, whose batches have no fixed shape to export"
