"""The OpenMP wait policy: sleep when other processes keep the CPU busy, spin when idle."""
import sys

import pytest

from nettrain import _omp


@pytest.fixture
def torch_not_loaded(monkeypatch):
    # the choice is only made before torch loads; pretend it has not loaded yet
    monkeypatch.delitem(sys.modules, "torch", raising=False)


def test_busy_cpu_makes_threads_sleep(torch_not_loaded):
    env = {}
    assert _omp.choose_wait_policy(env, measure=lambda: 1.7) == "PASSIVE"
    assert env == {"OMP_WAIT_POLICY": "PASSIVE"}


def test_idle_cpu_makes_threads_spin(torch_not_loaded):
    env = {}
    assert _omp.choose_wait_policy(env, measure=lambda: 0.1) == "ACTIVE"
    assert env == {"OMP_WAIT_POLICY": "ACTIVE"}


def test_unknown_load_keeps_default(torch_not_loaded):
    env = {}
    assert _omp.choose_wait_policy(env, measure=lambda: None) is None
    assert env == {}


@pytest.mark.parametrize("key", ["OMP_WAIT_POLICY", "GOMP_SPINCOUNT"])
def test_users_own_setting_is_kept(torch_not_loaded, key):
    env = {key: "ACTIVE" if key == "OMP_WAIT_POLICY" else "1000"}
    before = dict(env)
    assert _omp.choose_wait_policy(env, measure=lambda: 5.0) is None
    assert env == before


def test_nothing_set_once_torch_is_loaded():
    import torch  # noqa: F401  (libgomp has read its settings: changing them now would only mislead)
    env = {}
    assert _omp.choose_wait_policy(env, measure=lambda: 5.0) is None
    assert env == {}


def test_measures_a_real_cpu_reading():
    busy = _omp.other_busy_cores(window=0.05)
    if busy is None:
        pytest.skip("no /proc/stat here")
    assert 0.0 <= busy <= (__import__("os").cpu_count() or 1) + 1e-6


def test_a_passing_blip_is_not_a_busy_cpu(monkeypatch):
    """Only a load seen in every window counts: one busy window among idle ones is another process starting or
    ending, and sleeping threads would halve the run's speed for nothing."""
    def readings(busy_per_window):   # cumulative (busy, total) jiffies as /proc/stat would give them
        busy, total, out = 0, 0, [(0, 0)]
        for b in busy_per_window:
            busy, total = busy + b, total + 10
            out.append((busy, total))
        return iter(out)

    monkeypatch.setattr(_omp.time, "sleep", lambda s: None)
    cores = __import__("os").cpu_count() or 1
    monkeypatch.setattr(_omp, "_busy_and_total", readings([8, 0, 1]).__next__)
    assert _omp.other_busy_cores(samples=3) == pytest.approx(0.0)
    monkeypatch.setattr(_omp, "_busy_and_total", readings([8, 6, 7]).__next__)
    assert _omp.other_busy_cores(samples=3) == pytest.approx(0.6 * cores)
