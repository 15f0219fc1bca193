"""`nettrain lr-find`: the learning-rate range test of lrrange.py (fastai's lr_find) on fit's config and options,
its suggestion said and its plot written to a file. `nettrain fit --lr auto` runs the same test first (api.py).
"""
from __future__ import annotations

import sys
from pathlib import Path

from .errors import ConfigError
from .lrrange import LRFind, find, suggest  # noqa: F401  (suggest: importable from here as before)


def lr_find(config=None, *, plot="lr_find.png", steps: int = 300, start_lr: float = 1e-7, end_lr: float = 10.0,
            data=None, val_data=None, classes=None, trust_code: bool = False, _fixes=None, **options) -> LRFind:
    """`nettrain lr-find`: fit's config and options; the plot written to `plot` (None: not written). The caller's
    process is left as it was (RNGs, threads), as by fit. A config from a run folder is that run's data, as for
    fit (trust.py)."""
    from . import _process
    from .api import _run_gate, resolve_config
    from .trust import CONFIG_FIXES, run_folder_of
    from .data import from_user_data
    from .engine.device import resolve_device
    from .errors import printable
    module = options.pop("model") if not isinstance(options.get("model", ""), str) else None
    cfg = resolve_config(config, options)
    gate = _run_gate(run_folder_of(config), trust_code, options, module, None, _fixes or CONFIG_FIXES,
                     resume=False) if run_folder_of(config) is not None else None
    user_data = None
    if data is not None:
        cfg = cfg.override({"data.name": "arrays"})
        user_data = from_user_data(data, val_data, classes, cfg.data, None)
    if plot is not None and Path(plot).exists():
        raise ConfigError(f"{printable(plot)} already exists; give another --out, or remove it")
    with _process.kept(resolve_device(cfg.train.device)):
        found = find(cfg, module=module, data=user_data, steps=steps, start_lr=start_lr, end_lr=end_lr,
                     plot=plot is not None, gate=gate)
    if plot is not None:
        found.save_plot(plot)
        print(f"nettrain: loss against lr plotted in {printable(plot)}", file=sys.stderr)
    return found
