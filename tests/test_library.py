"""nettrain as a library: importing it and calling fit leave the caller's process as they found it; the command
line alone tunes its own process."""
import os
import random
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

import nettrain
from nettrain import _malloc
from conftest import QUIET_CPU


def _tiny(tmp_path, name="run", **options):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(40, 3, generator=g), torch.arange(40) % 2
    return nettrain.fit(data=(x, y), model="mlp", epochs=1, batch_size=8, run_dir=tmp_path / name,
                        **{**QUIET_CPU, **options})


def _python(code: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout


def test_import_nettrain_sets_no_environment_and_loads_no_torch():
    # the OpenMP wait policy is the command's tuning of its own process: a script importing nettrain keeps libgomp's
    # default whichever it imports first, torch or nettrain
    out = _python("import os, sys, nettrain; print(os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules)")
    assert out.split() == ["None", "False"]


def test_the_command_still_chooses_the_wait_policy_before_torch_loads():
    out = _python("import os, sys; from nettrain import cli; cli.tune_own_process(); "
                  "print(os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules)")
    policy, torch_loaded = out.split()
    assert policy in ("ACTIVE", "PASSIVE") and torch_loaded == "False"


def test_fit_leaves_the_global_random_generators_as_they_were(tmp_path):
    # a notebook that draws new random data after a fit must not draw the same data as before it
    torch.manual_seed(123), random.seed(123), np.random.seed(123)
    expected = (torch.rand(3), random.random(), np.random.rand())
    torch.manual_seed(123), random.seed(123), np.random.seed(123)
    _tiny(tmp_path, seed=7)
    got = (torch.rand(3), random.random(), np.random.rand())
    assert torch.equal(got[0], expected[0]) and got[1:] == expected[1:]


def test_fit_puts_back_the_thread_count(tmp_path):
    before = torch.get_num_threads()
    other = 2 if before == 1 else 1
    _tiny(tmp_path, **{"train.threads": other})
    assert torch.get_num_threads() == before


def test_fit_tunes_the_allocator_only_when_asked(tmp_path, malloc_calls):
    calls = malloc_calls
    _tiny(tmp_path, "plain")
    _tiny(tmp_path, "tuned", tune_process=True)
    from nettrain.cli import main   # the command tunes its own process while it runs
    assert main(["fit", "--dataset", "two-gaussians", "--model", "mlp", "--epochs", "1", "--device", "cpu",
                 "--run-dir", str(tmp_path / "cli"), "--run.progress", "none", "--run.tensorboard", "false", "--run.report", "false"]) == 0
    assert calls == [False, True, True] and not _malloc.tuning()


def test_fit_leaves_no_hooks_on_the_users_module(tmp_path):
    net = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 2))
    g = torch.Generator().manual_seed(0)
    nettrain.fit(model=net, data=(torch.randn(32, 3, generator=g), torch.arange(32) % 2), epochs=1,
                 run_dir=tmp_path / "run", **{**QUIET_CPU, "precision": "bf16-mixed"})
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in net.modules())


def test_an_optimizers_own_options_are_flags(tmp_path):
    # rmsprop's alpha as --optim.alpha, as `nettrain list` advertises it, not only as --optim.args '{alpha: 0.9}'
    run = _tiny(tmp_path, optimizer="rmsprop", **{"optim.alpha": 0.9})
    assert nettrain.Config.load(run.dir / "config.yaml").optim.args == {"alpha": 0.9}
    state = torch.load(run.dir / "last.pt", weights_only=True)
    assert state["optimizer"]["param_groups"][0]["alpha"] == 0.9


def test_an_option_the_optimizer_does_not_take_is_refused_naming_the_valid_ones(tmp_path):
    with pytest.raises(nettrain.NettrainError, match=r"unknown key optim.alpha .*and optimizer adam's own: amsgrad"):
        _tiny(tmp_path, optimizer="adam", **{"optim.alpha": 0.9})
    assert not (tmp_path / "run").exists()
