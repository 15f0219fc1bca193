"""Tables: a CSV's columns encoded as in training (data/table.py: numeric standardized, categorical one-hot,
missing cells filled, with statistics from the training split kept in the checkpoint as plain data). Predict takes
rows (a CSV file, dicts, a DataFrame); an exported graph takes the raw numeric cells, a missing one as NaN."""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ..data import table
from .base import Kind


class Table(Kind):
    name = "table"
    unit = "rows"
    record_fields = ("table",)   # the columns' encodings and statistics
    input_names = ["rows"]
    reads = "rows"

    def evidence(self, predictor, test) -> dict:   # the test split is held encoded, where predict takes raw rows
        from ..evidence import encoded_probs, examples, predictions
        x, y = examples(test)
        return predictions(predictor, x, y, probs_of=encoded_probs)

    def batch(self, info, inputs) -> torch.Tensor:
        return table.predict_batch(inputs, info.table)

    def evaluation_data_refusal(self, data) -> Optional[str]:   # arrays would skip the table's preprocessing
        return "this model was trained on a table; evaluate it on the held-out rows of another CSV file: " \
               "model.evaluate(data_dir='other.csv') (nettrain evaluate RUN --data-dir other.csv)"

    def export_refusal(self, info) -> Optional[str]:
        text = [col["name"] for col in info.table["columns"] if col["type"] != "numeric"]
        return f"this table has text columns ({', '.join(text)}), whose one-hot encoding is not in the graph " \
               f"yet" if text else None

    def input_spec(self, info) -> dict:
        names = [col["name"] for col in info.table["columns"]]
        return {"name": "rows", "dtype": "float32", "shape": [None, len(names)], "columns": names,
                "what": f"float32 rows of the columns {', '.join(names)} in this order; a missing cell is NaN"}

    def preprocessing(self, info, cfg) -> dict:
        return {"kind": "table", "columns": info.table["columns"],
                "in_graph": "NaN -> the column's training fill value, then (x - mean) / std"}

    def graph_prep(self, info, cfg) -> nn.Module:
        return TablePrep(info.table["columns"])

    def held_out(self, test, info, n: int):
        # back to the raw numeric cells the exported graph takes (standardized in training)
        columns = info.table["columns"]
        mean = torch.tensor([c["mean"] for c in columns])
        std = torch.tensor([c["std"] for c in columns])
        return (test.x[:n].float() * std + mean).to(torch.float32)

    def reference(self, predictor, x):
        names = [col["name"] for col in predictor.info.table["columns"]]
        return predictor.predict([dict(zip(names, row)) for row in x.tolist()])


class TablePrep(nn.Module):
    """Raw numeric cells -> the model's input: NaN filled with the column's training value, then standardized."""

    def __init__(self, columns: list):
        super().__init__()
        for key in ("fill", "mean", "std"):
            self.register_buffer(key, torch.tensor([col[key] for col in columns], dtype=torch.float32))

    def forward(self, x):
        return (torch.where(torch.isnan(x), self.fill, x) - self.mean) / self.std
