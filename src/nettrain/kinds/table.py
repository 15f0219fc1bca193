"""Tables: a CSV's columns encoded as in training (data/table.py: numeric standardized, categorical one-hot,
missing cells filled, with statistics from the training split kept in the checkpoint as plain data). Predict takes
rows (a CSV file, dicts, a DataFrame); an exported graph takes one float per column: a numeric cell as it is, a text
cell as its level's index in the column's `levels` (model.onnx.json; -1: a level training never saw), a missing
cell of either as NaN. The graph fills, standardizes and one-hot encodes as training did; the levels' lookup, like a
text model's vocabulary, is plain data beside it (onnxpredict.py reads it without torch)."""
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

    def input_spec(self, info) -> dict:
        columns = info.table["columns"]
        names = [col["name"] for col in columns]
        text = [col["name"] for col in columns if col["type"] != "numeric"]
        coded = f"; a text column's cell ({', '.join(text)}) is its level's index in preprocessing.columns[].levels, " \
                f"-1 for a level not among them" if text else ""
        return {"name": "rows", "dtype": "float32", "shape": [None, len(names)], "columns": names,
                "levels": {col["name"]: col["levels"] for col in columns if col["type"] != "numeric"},
                "what": f"float32 rows of the columns {', '.join(names)} in this order; a missing cell is NaN{coded}"}

    def preprocessing(self, info, cfg) -> dict:
        return {"kind": "table", "columns": info.table["columns"],
                "in_graph": "NaN -> the column's training fill value, then (x - mean) / std; a text column's level "
                            "index -> its one-hot columns (all zero for -1)"}

    def graph_prep(self, info, cfg) -> nn.Module:
        return TablePrep(info.table["columns"])

    def held_out(self, test, info, n: int):
        """The first `n` test rows back as the exported graph takes them (training holds them encoded): a numeric
        cell unstandardized, a text column's one-hot block as its level's index (-1 when all zero)."""
        x, cells, at = test.x[:n].double(), [], 0
        for col in info.table["columns"]:
            if col["type"] == "numeric":
                cells.append(x[:, at] * col["std"] + col["mean"])
                at += 1
            else:
                block = x[:, at:at + len(col["levels"])]
                cells.append(torch.where(block.amax(1) > 0, block.argmax(1).double(), -1.0))
                at += len(col["levels"])
        return torch.stack(cells, 1).to(torch.float32)

    def reference(self, predictor, x):
        columns = predictor.info.table["columns"]
        return predictor.predict([{col["name"]: _cell(col, v) for col, v in zip(columns, row)} for row in x.tolist()])


def _cell(col: dict, value: float):
    """A graph input's cell as predict takes it: a number, or a text column's level (a level index of -1 as a text
    training never saw)."""
    if col["type"] == "numeric":
        return value
    return col["levels"][int(value)] if value >= 0 else "\0 a level training never saw"


class TablePrep(nn.Module):
    """The graph's input cells -> the model's input, as data/table.py's features() does: a numeric cell NaN-filled
    with its column's training value and standardized; a text column's level index (NaN: the training fill level)
    one-hot over its levels, all zero for -1."""

    def __init__(self, columns: list):
        super().__init__()
        self.columns = [(i, col["type"] == "numeric", len(col.get("levels", ()))) for i, col in enumerate(columns)]
        fill = [col["fill"] if col["type"] == "numeric" else float(col["levels"].index(col["fill"]))
                if col["fill"] in col["levels"] else -1.0 for col in columns]
        self.register_buffer("fill", torch.tensor(fill, dtype=torch.float32))
        for key, neutral in (("mean", 0.0), ("std", 1.0)):
            self.register_buffer(key, torch.tensor([col[key] if col["type"] == "numeric" else neutral
                                                    for col in columns], dtype=torch.float32))

    def forward(self, x):
        x = (torch.where(torch.isnan(x), self.fill, x) - self.mean) / self.std   # text columns: mean 0, std 1
        if all(numeric for _, numeric, _ in self.columns):
            return x
        blocks = []
        for i, numeric, levels in self.columns:
            cell = x[:, i:i + 1]
            blocks.append(cell if numeric else
                          (cell == torch.arange(levels, device=x.device, dtype=x.dtype)).to(x.dtype))
        return torch.cat(blocks, 1)
