"""Training details that were silently wrong: accumulation's last group, val_fraction 0, images normalized to
[-1, 1], float class labels; and the tutorials' data options (data.limit, data.mean/std)."""
import pytest
import torch
from torch import nn

import nettrain

QUIET = {"run.progress": "none", "run.tensorboard": False, "device": "cpu", "precision": "32"}


def test_a_short_last_accumulation_group_is_the_mean_of_its_own_batches(tmp_path):
    # 3 batches with accumulate 2: the second step has one batch, whose gradient must not be halved
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(6, 2, generator=g), torch.randn(6, 1, generator=g)
    net = nn.Linear(2, 1, bias=False)
    w0 = net.weight.detach().clone()
    nettrain.fit(model=net, data=(x, y), val_data=(x, y), loss="mse", optimizer="sgd", lr=0.1, epochs=1,
                 batch_size=2, scheduler="none", run_dir=tmp_path / "run",
                 **{**QUIET, "train.accumulate": 2, "train.shuffle": False})

    def grad(w, xb, yb):
        w = w.clone().requires_grad_()
        nn.functional.mse_loss(xb @ w.T, yb).backward()
        return w.grad
    w1 = w0 - 0.1 * (grad(w0, x[:2], y[:2]) + grad(w0, x[2:4], y[2:4])) / 2
    w2 = w1 - 0.1 * grad(w1, x[4:], y[4:])
    assert torch.allclose(net.weight.detach().cpu(), w2, atol=1e-6)
