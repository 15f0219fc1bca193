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
from .base import SHOWN_COLUMNS, Kind, class_table, first_batch, split_targets
from .evidence import encoded_probs, examples, predictions


class Table(Kind):
    name = "table"
    unit = "rows"
    record_fields = ("table",)   # the columns' encodings and statistics
    input_names = ["rows"]
    reads = "rows"
    # A few hundred rows: the generic 10 epochs of Adam 0.001 leave iris at 80-92%, below LogisticRegression.
    # Chosen on held-out parts of each table's training split (5 hold-outs, no test row; `python
    # benchmarks/defaults.py --select`, benchmarks/results/defaults_select.txt): recipes/tables.yaml's setting with
    # weight decay 0.5 for its 0.1 came closest to the linear baseline on its worst table (diabetes R^2 0.015
    # behind, against 0.025 for the recipe and 0.050 for the generic settings).
    training = {"mlp": {"model.args": {"hidden": [32], "dropout": 0.3}, "optim.name": "adamw", "optim.lr": 0.01,
                        "optim.weight_decay": 0.5, "sched.name": "cosine", "train.epochs": 50,
                        "train.batch_size": 32}}

    def evidence(self, predictor, test) -> dict:   # the test split is held encoded, where predict takes raw rows
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
        """The first `n` test rows back as the exported graph takes them (training holds them encoded)."""
        return table.cells(test.x[:n], info.table).to(torch.float32)

    def describe(self, data, cfg, n: int) -> str:
        """The target and its classes (or values) per split, each column's encoding with its training statistics,
        and the first rows of epoch 1's first batch as they were read."""
        prep, info = data.info.table, data.info
        target, columns = prep["target"], prep["columns"]
        splits = split_targets(data)
        lines = list(data.notes) + [f"{sum(len(y) for y in splits.values()):,} rows: "
                                    + ", ".join(f"{len(y):,} {name}" for name, y in splits.items())
                                    + f"; target column {target['name']!r}, {target['task']}"]
        if target["task"] == "classification":
            lines += class_table(info.classes, splits)
        else:
            y = data.train.y.double() * target["std"] + target["mean"]
            lines.append(f"  target on the training split: mean {target['mean']:.4g}, std {target['std']:.4g}, "
                         f"min {float(y.min()):.4g}, max {float(y.max()):.4g}")
        lines.append(f"{len(columns)} input columns, encoded with the training split's statistics:")
        width = max(len(c["name"][:28]) for c in columns)
        for c in columns:
            how = f"numeric      standardized: mean {c['mean']:.4g}, std {c['std']:.4g}; a missing cell -> " \
                  f"{c['fill']:.4g} (median)" if c["type"] == "numeric" else \
                  f"categorical  one-hot over {len(c['levels'])} levels ({', '.join(c['levels'][:6])[:60]}" \
                  f"{', ...' if len(c['levels']) > 6 else ''}); a missing cell -> {c['fill']!r} (most frequent)"
            lines.append(f"  {c['name'][:28]:<{width}}  {how}")
        x, y = first_batch(data, cfg)
        shown = min(n, len(y))
        values = table.cells(x[:shown], prep).tolist()
        lines.append(f"the first {shown} rows of epoch 1's first batch, as read (a missing cell as its fill):")
        kept = columns[:SHOWN_COLUMNS]
        more = [f"(+{len(columns) - len(kept)} more)"] if len(columns) > len(kept) else []
        names = [c["name"][:18] for c in kept] + more
        rows = [[_shown(c, v) for c, v in zip(kept, row)] + [""] * len(more) for row in values]
        if target["task"] == "classification":
            labels = [str(info.classes[k]) for k in y[:shown].tolist()]
        else:   # stored standardized
            labels = [_number(v * target["std"] + target["mean"], target) for v in y[:shown].flatten().tolist()]
        from ..report.columns import text_table
        head = [target["name"][:18]] + names
        lines.append(text_table(head, [[lab[:18]] + r for lab, r in zip(labels, rows)], left=len(head), indent="  "))
        return "\n".join(lines)

    def reference(self, predictor, x):
        columns = predictor.info.table["columns"]
        return predictor.predict([{col["name"]: _cell(col, v) for col, v in zip(columns, row)} for row in x.tolist()])


def _shown(col: dict, value: float) -> str:
    """A cell of `nettrain show`: a number in 4 significant digits, a text cell's level (clipped)."""
    if col["type"] == "numeric":
        return _number(value, col)
    return col["levels"][int(value)][:14] if value >= 0 else "(unseen)"


def _number(value: float, stats: dict) -> str:
    """4 significant digits; stored standardized in float32, a 0 comes back as about 1e-8 of its column's scale."""
    return f"{0.0 if abs(value) < 1e-6 * (abs(stats['mean']) + stats['std']) else value:.4g}"


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
