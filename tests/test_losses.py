"""Losses that suit the model: nll for log-probabilities, a warning for nll on raw scores, and the user's own loss
class or function by path, end to end."""
import textwrap

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import nettrain
from nettrain.cli import main
from nettrain.runs import read_metrics
from conftest import QUIET_CPU_FP32


def _pairs(n=40):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 2, generator=g)
    return x, (x[:, 0] > 0).long()


class LogSoftmaxForward(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(2, 2)

    def forward(self, x):
        return F.log_softmax(self.layer(x), dim=1)


@pytest.mark.parametrize("make", [lambda: nn.Sequential(nn.Linear(2, 2), nn.LogSoftmax(dim=1)), LogSoftmaxForward],
                         ids=["LogSoftmax layer", "F.log_softmax in forward"])
def test_a_model_of_log_probabilities_gets_nll_by_default_said_in_one_line(tmp_path, capsys, make):
    run = nettrain.fit(model=make(), data=_pairs(), epochs=1, run_dir=tmp_path / "run", **QUIET_CPU_FP32)
    assert nettrain.Config.load(run.dir / "config.yaml").train.loss == "nll"
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "log-probabilities" in err and "loss nll" in err
    assert run.test["loss"] > 0


def test_raw_scores_keep_cross_entropy_silently(tmp_path, capsys):
    run = nettrain.fit(model=nn.Linear(2, 2), data=_pairs(), epochs=1, run_dir=tmp_path / "run", **QUIET_CPU_FP32)
    assert nettrain.Config.load(run.dir / "config.yaml").train.loss == "cross-entropy"
    assert capsys.readouterr().err == ""


def test_nll_on_raw_scores_is_warned_once(tmp_path, capsys):
    nettrain.fit(model=nn.Linear(2, 2), data=_pairs(), loss="nll", epochs=2, run_dir=tmp_path / "run", **QUIET_CPU_FP32)
    err = capsys.readouterr().err
    assert err.count("warning: loss nll takes log-probabilities") == 1 and err.count("\n") == 1


def test_the_users_loss_class_and_function_by_path_train(tmp_path, monkeypatch, capsys):
    # seed 002: a loss class whose __init__ takes no arguments, and a plain function, named by file:name
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my_losses.py").write_text(textwrap.dedent('''
        import torch
        from torch import nn
        from torch.nn import functional as F

        class CustomNLLLoss(nn.Module):
            def __init__(self):
                super().__init__()

            def forward(self, output, target):
                return F.nll_loss(F.log_softmax(output, dim=1), target)

        def customMseLoss(output, target):
            return torch.mean((output - target) ** 2)
        '''))
    common = ["--model", "mlp", "--model.args.hidden", "[8]", "--epochs", "2", "--run.progress", "none",
              "--run.tensorboard", "false", "--run.report", "false", "--precision", "32", "--device", "cpu"]
    assert main(["fit", "--dataset", "two-gaussians", "--loss", "my_losses.py:CustomNLLLoss", "--run-dir", "cls",
                 *common]) == 0
    assert main(["fit", "--dataset", "quadratic", "--loss", "my_losses.py:customMseLoss", "--run-dir", "reg",
                 *common]) == 0
    for run in ("cls", "reg"):
        rows = read_metrics(tmp_path / run / "metrics.csv")
        assert len(rows) == 2 and all(r["train_loss"] > 0 and r["val_loss"] > 0 for r in rows)
    assert main(["evaluate", "cls"]) == 0 and main(["evaluate", "reg"]) == 0
    assert "error" not in capsys.readouterr().err
