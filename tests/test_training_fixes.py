"""Training details that were silently wrong: accumulation's last group, val_fraction 0, images normalized to
[-1, 1], float class labels; and the tutorials' data options (data.limit, data.mean/std)."""
import pytest
import torch
from torch import nn

import nettrain
from conftest import QUIET_CPU_FP32


def test_a_short_last_accumulation_group_is_the_mean_of_its_own_batches(tmp_path):
    # 3 batches with accumulate 2: the second step has one batch, whose gradient must not be halved
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(6, 2, generator=g), torch.randn(6, 1, generator=g)
    net = nn.Linear(2, 1, bias=False)
    w0 = net.weight.detach().clone()
    nettrain.fit(model=net, data=(x, y), val_data=(x, y), loss="mse", optimizer="sgd", lr=0.1, epochs=1,
                 batch_size=2, scheduler="none", run_dir=tmp_path / "run",
                 **{**QUIET_CPU_FP32, "train.accumulate": 2, "train.shuffle": False})

    def grad(w, xb, yb):
        w = w.clone().requires_grad_()
        nn.functional.mse_loss(xb @ w.T, yb).backward()
        return w.grad
    w1 = w0 - 0.1 * (grad(w0, x[:2], y[:2]) + grad(w0, x[2:4], y[2:4])) / 2
    w2 = w1 - 0.1 * grad(w1, x[4:], y[4:])
    assert torch.allclose(net.weight.detach().cpu(), w2, atol=1e-6)


def _pairs(n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, generator=g), torch.arange(n) % 2


def test_val_fraction_0_holds_nothing_out_of_the_users_arrays(tmp_path):
    x, y = _pairs()
    run = nettrain.fit(data=(x, y), model="mlp", epochs=1, run_dir=tmp_path / "run", **QUIET_CPU_FP32,
                       **{"data.val_fraction": 0})
    assert run.metrics[0]["val_loss"] is None and run.test == {}
    # left out, 20% is still held out as the test split
    default = nettrain.fit(data=(x, y), model="mlp", epochs=1, run_dir=tmp_path / "default", **QUIET_CPU_FP32)
    assert default.test["examples"] == 8


def test_val_fraction_0_trains_on_every_example(tmp_path, monkeypatch):
    seen = []
    real = nettrain.wiring.make_batches

    def recording(data, *a, **k):
        seen.append(len(data))
        return real(data, *a, **k)
    monkeypatch.setattr(nettrain.wiring, "make_batches", recording)
    x, y = _pairs()
    nettrain.fit(data=(x, y), model="mlp", epochs=1, run_dir=tmp_path / "run",
                 **QUIET_CPU_FP32, **{"data.val_fraction": 0})
    assert seen[0] == 40


def test_images_normalized_to_minus_one_one_are_taken_as_images(tmp_path, capsys):
    # seed 004's transform: ToTensor() then Normalize((0.5,)*3, (0.5,)*3)
    g = torch.Generator().manual_seed(0)
    pixels = torch.randint(0, 256, (20, 3, 8, 8), generator=g, dtype=torch.uint8)
    x = (pixels.float() / 255 - 0.5) / 0.5
    run = nettrain.fit(data=(x, torch.arange(20) % 2), model="cnn", epochs=1, run_dir=tmp_path / "run",
                       **{**QUIET_CPU_FP32, "model.args.width": 4})
    assert run.model.info.kind == "image" and run.model.info.shape == [3, 8, 8]
    assert "normalized to [-1, 1]" in capsys.readouterr().err


def test_float_class_labels_are_classes_said_in_one_line_and_overridable(tmp_path, capsys):
    x, y = _pairs()
    run = nettrain.fit(data=(x, torch.Tensor(y.tolist())), model="mlp", epochs=1, run_dir=tmp_path / "cls",
                       **QUIET_CPU_FP32)
    assert run.model.info.task == "classification" and run.model.classes == ["0", "1"]
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "taken as class labels" in err and "data.task" in err
    reg = nettrain.fit(data=(x, torch.Tensor(y.tolist())), model="mlp", epochs=1, run_dir=tmp_path / "reg",
                       **{**QUIET_CPU_FP32, "data.task": "regression"})
    assert reg.model.info.task == "regression"
    values = nettrain.fit(data=(x, torch.randn(40)), model="mlp", epochs=1, run_dir=tmp_path / "values",
                          **QUIET_CPU_FP32)
    assert values.model.info.task == "regression"


def test_data_limit_trains_on_a_seeded_subset(tmp_path):
    run = nettrain.fit(dataset="two-gaussians", model="mlp", epochs=1, run_dir=tmp_path / "run",
                       **{**QUIET_CPU_FP32, "data.limit": 30, "model.args.hidden": [4]})
    assert run.metrics[0]["examples_per_s"] > 0
    from nettrain.config import Config
    from nettrain.data import load_data
    cfg = Config().override({"data.name": "two-gaussians", "data.limit": 30})
    data = load_data(cfg.data)
    assert len(data.train) == 30 and len(data.test) == len(load_data(Config().override(
        {"data.name": "two-gaussians"}).data).test)
    assert torch.equal(load_data(cfg.data).train.x, data.train.x)   # seeded: the same subset every time


def test_data_mean_and_std_replace_the_datasets_own(tmp_path):
    from nettrain.config import Config
    from nettrain.data import load_data
    data = load_data(Config().override({"data.mean": [0.5], "data.std": [0.5]}).data)   # digits, 1 channel
    assert data.info.mean == [0.5] and data.info.std == [0.5]
    with pytest.raises(nettrain.NettrainError, match="data.std must be positive"):
        load_data(Config().override({"data.std": [0.0]}).data)
    with pytest.raises(nettrain.NettrainError, match="inputs are vectors"):
        load_data(Config().override({"data.name": "two-gaussians", "data.mean": [0.5]}).data)
