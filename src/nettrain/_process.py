"""The caller's process as fit found it: a library call must not change a notebook's global state.

Training seeds Python's `random`, numpy's global generator and torch's (so that a run repeats), and may set torch's
thread count (train.threads). A script that draws random data after `nettrain.fit` would otherwise draw the same
data every time, and one that timed its own code afterwards would run on another number of threads. `kept()` saves
all of them and puts them back when training ends, however it ends.
"""
from __future__ import annotations

import contextlib
import random

import numpy as np
import torch


@contextlib.contextmanager
def kept(device: torch.device):
    """Within the block the RNGs and the thread count may change; on exit they are as they were. `device`: a CUDA
    device's generator is kept too (only the one training uses: forking all would start CUDA on every GPU)."""
    py_state, np_state, threads = random.getstate(), np.random.get_state(), torch.get_num_threads()
    cuda = [device] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=cuda):
            yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
