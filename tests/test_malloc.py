"""Training keeps freed tensor memory in the process (glibc): large blocks are reused, not unmapped and faulted in."""
import ctypes
import os

import numpy as np
import pytest
import torch

import nettrain
from nettrain import _malloc

LARGE = 64 << 20   # bytes: above glibc's largest mmap threshold (32 MiB), like the recipes' activations


class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]


@pytest.fixture
def libc(monkeypatch):
    for key in [k for k in os.environ if k.startswith(("MALLOC_", "GLIBC_TUNABLES"))]:
        monkeypatch.delenv(key)
    lib = _malloc._glibc()
    if lib is None or not hasattr(lib, "mallinfo2"):
        pytest.skip("needs glibc 2.33+ (mallinfo2)")
    lib.mallinfo2.restype = MallInfo2
    return lib


def mapped_while_alive(libc) -> int:
    """Bytes of a fresh tensor that malloc served with its own mmap. The tensor is larger than all the heap holds
    free (and than LARGE): a free chunk left in the heap by earlier tests could otherwise serve it."""
    before = libc.mallinfo2().hblkhd
    t = torch.empty(libc.mallinfo2().fordblks + LARGE, dtype=torch.uint8)
    mapped = libc.mallinfo2().hblkhd - before
    del t
    return mapped


def test_large_blocks_come_from_the_heap_while_kept_and_from_mmap_again_after(libc):
    assert mapped_while_alive(libc) >= LARGE                     # glibc's default: a mapping per large block
    with _malloc.freed_memory_kept() as kept:
        assert kept
        assert mapped_while_alive(libc) == 0                      # served from the heap ...
        assert libc.mallinfo2().fordblks >= LARGE                 # ... and, freed, kept there for the next step
    assert mapped_while_alive(libc) >= LARGE                      # the settings are put back


def test_a_block_inside_another_leaves_the_settings_to_the_outer_one(libc):
    with _malloc.freed_memory_kept() as outer:
        with _malloc.freed_memory_kept() as inner:   # e.g. evaluate() called during a training run
            assert outer and inner
        assert mapped_while_alive(libc) == 0                      # still kept after the inner block ends
    assert mapped_while_alive(libc) >= LARGE                      # and put back when the outer one does


def test_a_users_own_malloc_tuning_is_left_alone(libc, monkeypatch):
    monkeypatch.setenv("MALLOC_ARENA_MAX", "2")
    with _malloc.freed_memory_kept() as kept:
        assert not kept
        assert mapped_while_alive(libc) >= LARGE


def test_training_and_evaluating_on_the_cpu_keep_freed_memory_when_the_process_is_nettrains(tmp_path, malloc_calls):
    calls = malloc_calls
    g = np.random.default_rng(0)
    x, y = g.normal(size=(64, 4)).astype(np.float32), g.integers(0, 2, 64)
    run = nettrain.fit(data=(x, y), model="mlp", epochs=1, device="cpu", run_dir=tmp_path / "run",
                       tune_process=True, **{"run.progress": "none"})
    assert calls == [True]
    run.model.evaluate(data=(x, y))   # a library call: the caller's allocator is left alone
    with _malloc.tuning_allowed():    # as the command allows it for its own process
        run.model.evaluate(data=(x, y))
    assert calls == [True, False, True]
