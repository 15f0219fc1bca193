"""The contributor's walk (docs/architecture.md, "Adding a piece"): a toy optimizer, model, data kind with its
dataset, metric and command, each added through its registry alone, works end to end as the built-in ones do."""
import numpy as np
import pytest
import torch
from torch import nn

import nettrain
from conftest import QUIET_CPU_FP32
from nettrain.data.arrays import ArrayData, Source
from nettrain.data.sources import DATASETS
from nettrain.engine.optim import OPTIMIZERS
from nettrain.kinds import KINDS
from nettrain.kinds.vector import Vector
from nettrain.models import MODELS


def added(monkeypatch, registry, name: str, fn, help: str):
    """`fn` registered as `name` for this test only (the registry's own decorator, then taken out again)."""
    monkeypatch.setattr(registry, "_items", dict(registry._items))
    registry.register(name, help)(fn)


class SignSGD(torch.optim.Optimizer):
    """signSGD: each weight moves by lr in the direction of its gradient's sign."""

    def __init__(self, params, lr=0.01):
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.add_(p.grad.sign(), alpha=-group["lr"])


def test_an_optimizer_added_to_the_registry_trains_and_is_recorded(tmp_path, monkeypatch):
    added(monkeypatch, OPTIMIZERS, "signsgd", SignSGD, "signSGD: steps of lr in the gradient's sign")
    run = nettrain.fit(dataset="two-gaussians", model="mlp", optimizer="signsgd", lr=0.01, epochs=2,
                       run_dir=tmp_path / "run", **QUIET_CPU_FP32, **{"model.args.hidden": [8]})
    assert run.test["acc"] > 0.9
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert state["config"]["optim"]["name"] == "signsgd" and state["optimizer"]["param_groups"][0]["lr"] >= 0


def test_a_model_added_to_the_registry_is_built_with_its_args_and_loads(tmp_path, monkeypatch):
    def linear(shape, outputs, bias=True):
        return nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(shape)), outputs, bias=bias))
    added(monkeypatch, MODELS, "linear", linear, "one linear layer on the flattened inputs")
    run = nettrain.fit(dataset="two-gaussians", model="linear", epochs=2, run_dir=tmp_path / "run",
                       **QUIET_CPU_FP32, **{"model.args.bias": False})
    loaded = nettrain.load(tmp_path / "run")
    assert loaded.module[1].bias is None and run.test["acc"] > 0.9


class Signal(Vector):
    """A toy kind: 1-D signals, read and predicted as vectors are; what is its own is its name and speed unit."""
    name = "signal"
    unit = "signals"


def sines(cfg, root):
    """Sines of two frequencies, 32 samples each, with a random phase."""
    def draw(seed):
        g = torch.Generator().manual_seed(seed)
        freq = torch.randint(0, 2, (200,), generator=g)
        phase = torch.rand(200, 1, generator=g) * 6.28
        t = torch.linspace(0, 6.28, 32)
        return ArrayData(torch.sin((freq[:, None] + 1) * t + phase), freq)
    return Source(draw(cfg.split_seed), draw(cfg.split_seed + 1), ["slow", "fast"], kind="signal")


def test_a_data_kind_and_its_dataset_added_through_the_registries_train_report_and_predict(tmp_path, monkeypatch):
    monkeypatch.setitem(KINDS, "signal", Signal())
    added(monkeypatch, DATASETS, "sines", sines, "sines of two frequencies (a toy signal kind)")
    run = nettrain.fit(dataset="sines", model="mlp", epochs=15, lr=0.01, run_dir=tmp_path / "run", **QUIET_CPU_FP32,
                       **{"model.args.hidden": [16]})
    assert run.model.info.kind == "signal" and run.test["acc"] > 0.8
    env = (tmp_path / "run" / "environment.json").read_text()
    assert '"speed_unit": "signals"' in env
    loaded = nettrain.load(tmp_path / "run")   # the checkpoint's kind is checked against KINDS, which has it now
    x = sines(nettrain.Config().data, None).test.x[:4]
    assert loaded.predict(x).labels == run.model.predict(x).labels


def test_a_metric_added_to_the_registry_is_computed_each_epoch_and_on_the_test(tmp_path, monkeypatch):
    from nettrain.engine.metrics import METRICS

    def error_rate(out, y):
        return (out.argmax(1) != y).double().mean().item()
    added(monkeypatch, METRICS, "error_rate", error_rate, "the share of examples classed wrongly")
    run = nettrain.fit(dataset="two-gaussians", model="mlp", epochs=2, metrics=["error_rate"],
                       run_dir=tmp_path / "run", **QUIET_CPU_FP32, **{"model.args.hidden": [8]})
    assert [row["val_error_rate"] for row in run.metrics] == \
        [pytest.approx(1 - row["val_acc"]) for row in run.metrics]
    assert run.test["metrics"]["val_error_rate"] == pytest.approx(1 - run.test["acc"])
    written = (tmp_path / "run" / "metrics.csv").read_text().splitlines()[0]
    assert written.endswith(",val_error_rate")


def test_a_command_added_to_the_registry_parses_runs_and_is_in_the_help(monkeypatch, capsys):
    from nettrain import cli

    def parser(sub):
        hello = sub.add_parser("hello", help="greet someone")
        hello.add_argument("name")

    def run(args, rest, argv):
        cli.say(f"hello {args.name}")
        return 0
    monkeypatch.setitem(cli.COMMANDS, "hello", cli.Command(parser, run, needs_torch=lambda args: False))
    assert cli.main(["hello", "world"]) == 0
    assert capsys.readouterr().out == "hello world\n"
    with pytest.raises(SystemExit) as exited:   # rest "none": what argparse does not know is an error
        cli.main(["hello", "world", "--extra"])
    assert exited.value.code == 2 and "unrecognized arguments: --extra" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    assert "hello" in capsys.readouterr().out
