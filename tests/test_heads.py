"""Binary and multi-label heads: a one-output model trained with BCEWithLogits (the user's loss or chosen for it),
a multi-label model on 0/1 target vectors, and what each reports."""
import json

import pytest
import torch
from torch import nn

import nettrain
from conftest import QUIET_CPU


def _blobs(n=400, seed=0):
    """Two separable clouds in 4 features: centred at -1.5 and +1.5 in every feature."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    x = torch.randn(n, 4, generator=g) + 3.0 * y.unsqueeze(1).float() - 1.5
    return x, y


class OneLogit(nn.Module):
    """A tutorial's binary classifier: one output, its logit."""

    def __init__(self, squeeze=False):
        super().__init__()
        self.fc, self.squeeze = nn.Linear(4, 1), squeeze

    def forward(self, x):
        out = self.fc(x)
        return out.squeeze() if self.squeeze else out


@pytest.fixture(scope="module")
def binary_run(tmp_path_factory):
    x, y = _blobs()
    return nettrain.fit(model=OneLogit(), data=(x, y), loss=nn.BCEWithLogitsLoss(), epochs=5, lr=0.1,
                        batch_size=64, run_dir=str(tmp_path_factory.mktemp("bin") / "run"), **QUIET_CPU)


def test_one_output_with_bce_trains_and_reports_f1_and_roc_auc(binary_run):
    test = json.loads((binary_run.dir / "test_metrics.json").read_text())
    assert test["accuracy"] > 0.9, test
    assert 0.9 < test["f1"] <= 1.0 and 0.95 < test["roc_auc"] <= 1.0, test
    assert binary_run.metrics[-1]["train_acc"] > 0.9   # the logit's sign, not argmax over one column


def test_binary_head_predicts_class_and_probability(binary_run):
    preds = binary_run.model.predict(torch.tensor([[3.0, 3.0, 3.0, 3.0], [-1.0, -1.0, -1.0, -1.0]]))
    assert preds.labels == ["1", "0"] or preds.labels == [1, 0], preds.labels
    assert preds.probs.shape == (2, 2) and torch.allclose(preds.probs.sum(1), torch.ones(2))
    assert preds.probs[0, 1] > 0.9 and preds.probs[1, 0] > 0.9


def test_one_output_chooses_bce_on_its_own(tmp_path, capsys):
    x, y = _blobs()
    run = nettrain.fit(model=OneLogit(squeeze=True), data=(x, y), epochs=5, lr=0.1, batch_size=64,
                       run_dir=str(tmp_path / "run"), **QUIET_CPU)
    assert "loss bce" in capsys.readouterr().err
    assert run.test["acc"] > 0.9 and run.test["roc_auc"] > 0.95


@pytest.mark.slow
def test_report_cards_show_f1_and_roc_auc(binary_run):
    from nettrain.api import report
    page = report(binary_run.dir, say=lambda line: None).read_text()
    assert 'id="test-roc-auc"' in page and "test ROC-AUC" in page and 'id="test-f1"' in page
