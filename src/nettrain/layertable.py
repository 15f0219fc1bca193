"""A model's layer table by torchinfo (output shapes, parameters, multiply-adds): what `nettrain summary` prints and
a run's model_summary.txt keeps (evidence.py), one function for both.

torchinfo lists the modules a forward pass calls. A module whose weights the model uses through torch's functions
is never called (models/text.py's BiLSTM runs its nn.LSTM's weights through torch.lstm, two passes over the padded
batch), so torchinfo counted its parameters on the parent's row and showed no row of its own: such modules get
their row here, after the siblings registered before them, with no output shape.
"""
from __future__ import annotations

import re

import torch

from .errors import ConfigError, NettrainError

COLUMNS = ("output_size", "num_params", "mult_adds")
UNITS = {"NONE": "", "KILOBYTES": "k", "MEGABYTES": "M", "GIGABYTES": "G", "TERABYTES": "T"}


def layer_table(net: torch.nn.Module, depth: int, what: str, who: str, fix: str = "", device="cpu", **inputs) -> str:
    """torchinfo's layer table of `net` in eval mode on `inputs` (input_size and dtypes, or input_data) on `device`,
    under "input: `what`"; a model that does not take them is one line naming `who`, then `fix`. The model's
    weights, device and mode are as they were."""
    from torchinfo import summary as torchinfo_summary
    try:
        with torch.no_grad():
            stats = torchinfo_summary(net, depth=depth, verbose=0, device=device, mode="eval",
                                      row_settings=("var_names",), col_names=COLUMNS, **inputs)
    except NettrainError:
        raise
    except Exception as e:   # the model does not take these inputs: torchinfo wraps the model's own error
        cause = e.__cause__ or e
        first = str(cause).strip().splitlines()[0][:200] if str(cause).strip() else type(cause).__name__
        raise ConfigError(f"{who} does not take inputs of {what} ({type(cause).__name__}: {first}){fix}") from None
    stats = _with_uncalled(stats)
    # torchinfo 1.8.0 on Python 3.11+ prints its unit enum ("Total mult-adds (Units.MEGABYTES): 12.40"): say M
    table = re.sub(r"\(Units\.(\w+)\)", lambda m: f"({UNITS.get(m.group(1), m.group(1))})", str(stats))
    return f"input: {what}\n{table}"


def _with_uncalled(stats):
    """torchinfo's statistics with a row for each module of parameters that the forward pass never called."""
    from torchinfo.layer_info import LayerInfo
    from torchinfo.model_statistics import ModelStatistics
    from torchinfo.torchinfo import set_children_layers
    rows = stats.summary_list
    called = {id(row.module) for row in rows}
    added = False
    for parent in list(rows):
        for name, child in parent.module.named_children():
            if id(child) in called or not any(True for _ in child.parameters()):
                continue
            row = LayerInfo(name, child, parent.depth + 1, parent)
            row.calculate_num_params()
            rows.insert(_after_earlier_siblings(rows, parent, child), row)
            called.add(id(child))
            added = True
    if not added:
        return stats
    set_children_layers(rows)
    return ModelStatistics(rows, stats.input_size, stats.total_input, stats.formatting)


def _after_earlier_siblings(rows: list, parent, child) -> int:
    """Where `child`'s row goes: after the rows of the last sibling registered before it that has rows (its own
    and its descendants'), else right after `parent`'s row."""
    siblings = list(parent.module.children())
    earlier = {id(m) for m in siblings[:siblings.index(child)]}
    at = rows.index(parent) + 1
    for i in range(rows.index(parent) + 1, len(rows)):
        if rows[i].depth <= parent.depth:
            break
        if rows[i].depth == parent.depth + 1 and id(rows[i].module) in earlier:   # a child of `parent`
            at = i + 1
            while at < len(rows) and rows[at].depth > rows[i].depth:
                at += 1
    return at
