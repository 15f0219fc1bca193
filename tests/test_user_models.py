"""The tutorials' own models, as their users wrote them, train by path: each speed choice that breaks or changes a
model is dropped for it in one line (engine/probe.py), a Linear-first model gets flattened images, and a bug in
the user's code is one line naming its file and line."""
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import nettrain
from nettrain.cli import main
from nettrain.engine.device import resolve_precision
from nettrain.engine.probe import Probe
from conftest import QUIET


# PyTorch's CIFAR-10 tutorial, verbatim (shared with benchmarks/user_models.py): line 19 is the .view that
# channels_last batches break
CIFAR_NET = (Path(__file__).resolve().parents[1] / "benchmarks" / "tutorial_net.py").read_text()

# the MNIST tutorial's MLP, whose training loop flattens the images (images.view(-1, 784)) before calling it
MNIST_MLP = """\
import torch.nn as nn
import torch.nn.functional as F


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 512)
        self.fc2 = nn.Linear(512, 128)
        self.fc3 = nn.Linear(128, 10)

    def forward(self, x):
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


model = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 128), nn.ReLU(), nn.Linear(128, 10))
"""

# the basics tutorial's classifier
BASICS_NET = """\
import torch
import torch.nn.functional as F


class Net(torch.nn.Module):
    def __init__(self, n_feature, n_hidden, n_output):
        super(Net, self).__init__()
        self.hidden = torch.nn.Linear(n_feature, n_hidden)
        self.out = torch.nn.Linear(n_hidden, n_output)

    def forward(self, x):
        x = F.relu(self.hidden(x))
        x = self.out(x)
        return x
"""


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def npz_images(tmp_path, shape, n=48, classes=10):
    """A data dir with train.npz and test.npz of random uint8 images shaped (n, *shape) (NHW or NHWC)."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "data"
    folder.mkdir()
    for split, count in (("train", n), ("test", n // 2)):
        np.savez(folder / f"{split}.npz", images=rng.integers(0, 256, (count, *shape), dtype=np.uint8),
                 labels=rng.integers(0, classes, count))
    return str(folder)


def fit(tmp_path, *args, run="run"):
    return main(["fit", *args, "--run-dir", str(tmp_path / run), "--epochs", "1", "--batch-size", "16", *QUIET])


def png(tmp_path, shape):
    from PIL import Image
    path = tmp_path / "x.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)).save(path)
    return str(path)


def config(tmp_path, run="run"):
    return nettrain.Config.load(tmp_path / run / "config.yaml")


def test_the_cifar_tutorial_net_trains_with_channels_last_dropped_in_one_line(tmp_path, capsys):
    data = npz_images(tmp_path, (32, 32, 3))
    net = write(tmp_path, "tutorial_net.py", CIFAR_NET)
    assert fit(tmp_path, "--dataset", "npz", "--data-dir", data, "--model", f"{net}:Net") == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nettrain: channels_last off: Net.forward calls .view on a channels_last tensor " \
        "(tutorial_net.py:19); .reshape or .flatten keeps the fast path" in err
    assert config(tmp_path).train.channels_last is False   # recorded: predict runs the model as it trained
    assert main(["predict", str(tmp_path / "run"), png(tmp_path, (32, 32, 3))]) == 0
    assert "x.png: " in capsys.readouterr().out


def test_the_same_net_with_reshape_keeps_channels_last(tmp_path, capsys):
    data = npz_images(tmp_path, (32, 32, 3))
    net = write(tmp_path, "reshape_net.py", CIFAR_NET.replace("x.view(", "x.reshape("))
    assert fit(tmp_path, "--dataset", "npz", "--data-dir", data, "--model", f"{net}:Net") == 0
    assert "off:" not in capsys.readouterr().err
    assert config(tmp_path).train.channels_last is True


@pytest.mark.parametrize("spec", ["Net", "model"])
def test_the_mnist_tutorial_mlp_gets_flattened_images_and_predicts(tmp_path, capsys, spec):
    """As a class and as a module-level nn.Sequential (`file.py:model`), on 28x28 gray images."""
    data = npz_images(tmp_path, (28, 28), n=64)
    mlp = write(tmp_path, "mnist_mlp.py", MNIST_MLP)
    assert fit(tmp_path, "--dataset", "npz", "--data-dir", data, "--model", f"{mlp}:{spec}") == 0
    err = capsys.readouterr().err
    layer = "fc1" if spec == "Net" else "0"
    assert err.count("\n") == 1 and f"images are flattened for {'Net' if spec == 'Net' else 'Sequential'}: its " \
        f"first layer {layer} = Linear(784, 512) takes an image's 1x28x28 = 784 values" in err
    cfg = config(tmp_path)
    assert cfg.model.flatten is True and cfg.train.channels_last is False
    state = torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    assert "inner.fc1.weight" not in state["model"]   # the user's own state_dict, loadable into the class as it is
    assert main(["predict", str(tmp_path / "run"), png(tmp_path, (28, 28))]) == 0
    images = np.random.default_rng(2).integers(0, 256, (3, 28, 28), dtype=np.uint8)
    assert len(nettrain.load(tmp_path / "run").predict(images).labels) == 3


def test_the_basics_tutorial_net_takes_its_arguments_from_flags(tmp_path, capsys):
    net = write(tmp_path, "basics_net.py", BASICS_NET)
    assert main(["fit", "--dataset", "two-gaussians", "--model", f"{net}:Net", "--model.args.n_feature", "2",
                 "--model.args.n_hidden", "10", "--model.args.n_output", "2", "--optimizer", "sgd", "--lr", "0.02",
                 "--epochs", "3", "--run-dir", str(tmp_path / "run"), *QUIET]) == 0
    assert "off:" not in capsys.readouterr().err
    assert nettrain.load(tmp_path / "run").evaluate()["acc"] >= 0.9


WRONG_LINEAR = """\
import torch.nn as nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.fc = nn.Linear(100, 10)

    def forward(self, x):
        x = self.conv(x).flatten(1)
        return self.fc(x)
"""


def test_a_bug_in_the_users_forward_is_one_line_with_its_file_and_line(tmp_path, capsys):
    net = write(tmp_path, "wrong_net.py", WRONG_LINEAR)
    assert fit(tmp_path, "--model", f"{net}:Net") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(
        "nettrain: error: RuntimeError: mat1 and mat2 shapes cannot be multiplied (2x144 and 100x10) at "
        "wrong_net.py:12 (layer fc = Linear(in_features=100, out_features=10, bias=True)); a linear layer takes "
        "100 features here but gets 144: model ")
    assert "does not fit inputs of shape [1, 8, 8] (the data's)" in err
    assert fit(tmp_path, "--model", f"{net}:Net", "--debug", run="again") == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and 'wrong_net.py", line 12, in forward' in err
    assert "nettrain.errors.ModelError: RuntimeError: mat1 and mat2" in err


LATE_BUG = """\
import torch.nn as nn


class Net(nn.Module):
    calls = 0

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        Net.calls += 1
        if Net.calls > 12:
            raise ValueError("a bug that shows in training")
        return self.fc(x.flatten(1))
"""


def test_a_bug_that_shows_only_in_training_is_one_line_too(tmp_path, capsys, monkeypatch):
    net = write(tmp_path, "late_bug.py", LATE_BUG)
    assert fit(tmp_path, "--model", f"{net}:Net") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(
        "nettrain: error: ValueError: a bug that shows in training at late_bug.py:14 in epoch 1 ")
    monkeypatch.setenv("NETTRAIN_DEBUG", "1")
    assert fit(tmp_path, "--model", f"{net}:Net", run="again") == 2
    assert 'late_bug.py", line 14, in forward' in capsys.readouterr().err


def test_a_model_that_fails_only_in_training_mode_is_one_line_before_the_first_step(tmp_path, capsys):
    net = write(tmp_path, "train_bug.py", LATE_BUG.replace("Net.calls > 12", "self.training"))
    assert fit(tmp_path, "--model", f"{net}:Net") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(
        "nettrain: error: ValueError: a bug that shows in training at train_bug.py:14: model ") and \
        "fails in a training step; fix the model" in err
    assert not (tmp_path / "run").exists()   # refused before a run directory is made


# reads its input's memory in storage order: a channels_last batch silently gives other features
RAW_MEMORY = """\
import torch
import torch.nn as nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 8 * 8, 10)

    def forward(self, x):
        x = self.conv(x)
        return self.fc(x.as_strided((x.shape[0], x[0].numel()), (x[0].numel(), 1)))
"""


def test_a_choice_that_silently_changes_the_result_is_dropped(tmp_path, capsys):
    x = torch.randint(0, 256, (32, 3, 8, 8), dtype=torch.uint8)
    net = write(tmp_path, "raw_memory.py", RAW_MEMORY)
    run = nettrain.fit(model=f"{net}:Net", data=(x, torch.randint(0, 10, (32,))), epochs=1, batch_size=16,
                       run_dir=str(tmp_path / "run"), **{"run.progress": "none", "run.tensorboard": False, "run.report": False})
    err = capsys.readouterr().err
    assert "channels_last off: Net's outputs or gradients with it differ from the plain computation's by" in err
    assert run.model.config.train.channels_last is False


def test_a_fused_optimizer_step_that_fails_is_dropped(tmp_path, capsys, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no fused kernel here")
    monkeypatch.setattr(torch, "_fused_adam_", broken)
    net = write(tmp_path, "basics_net.py", BASICS_NET)
    assert main(["fit", "--dataset", "two-gaussians", "--model", f"{net}:Net", "--model.args.n_feature", "2",
                 "--model.args.n_hidden", "10", "--model.args.n_output", "2", "--optimizer", "adam", "--epochs", "1",
                 "--run-dir", str(tmp_path / "run"), *QUIET]) == 0
    assert "nettrain: fused Adam off: Net fails with it (RuntimeError: no fused kernel here" in capsys.readouterr().err


def test_a_compiled_model_that_computes_otherwise_is_dropped(tmp_path, capsys, monkeypatch):
    class Doubled(nn.Module):   # a "compiler" that changes the result
        def __init__(self, m):
            super().__init__()
            self._orig_mod = m

        def forward(self, x):
            return 2 * self._orig_mod(x)
    monkeypatch.setattr(torch, "compile", lambda m, **k: Doubled(m))
    net = write(tmp_path, "basics_net.py", BASICS_NET)
    run = nettrain.fit(model=f"{net}:Net", dataset="two-gaussians", compile=True, epochs=1,
                       run_dir=str(tmp_path / "run"), **{"model.args": {"n_feature": 2, "n_hidden": 10, "n_output": 2},
                                                          "run.progress": "none", "run.tensorboard": False, "run.report": False})
    assert "torch.compile off: Net's outputs or gradients with it differ" in capsys.readouterr().err
    assert run.metrics


def test_the_probe_leaves_weights_gradients_and_rng_as_they_were():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.5), nn.Flatten(),
                          nn.Linear(4 * 6 * 6, 10))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = torch.randn(8, 3, 8, 8), torch.randint(0, 10, (8,))
    rng, py, npy = torch.get_rng_state(), random.getstate(), np.random.get_state()[1].copy()
    probe = Probe(model, x, y, nn.CrossEntropyLoss(), resolve_precision("bf16-mixed", torch.device("cpu"), "image"),
                  "seq", lambda line: pytest.fail(line))
    assert probe.in_eval   # dropout draws random numbers: compared in eval mode
    assert probe.channels_last() and probe.small_linears()
    optimizer = probe.optimizer(lambda fast: torch.optim.Adam(model.parameters(), foreach=fast))
    assert optimizer.defaults["foreach"] and not optimizer.state   # a fresh one
    model.to(memory_format=torch.contiguous_format)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(rng, torch.get_rng_state()) and random.getstate() == py
    assert np.array_equal(np.random.get_state()[1], npy)
