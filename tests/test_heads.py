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


class AttentionBiLSTM(nn.Module):
    """An article's BiLSTM: word scores pooled by attention, one logit out. Its `squeeze()` drops the word axis of
    a batch of one-word texts (the scores of [B, 1, 1] become [B]), so such a batch fails where real ones do not."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(2000, 8, padding_idx=0)
        self.lstm = nn.LSTM(8, 8, batch_first=True, bidirectional=True)
        self.attn, self.fc = nn.Linear(16, 1), nn.Linear(16, 1)

    def forward(self, tokens, lengths):
        out, _ = self.lstm(self.emb(tokens))
        weights = self.attn(out).squeeze().softmax(1)
        return self.fc((weights.unsqueeze(2) * out).sum(1)).squeeze()


def _texts(path, n=120):
    """A labelled CSV whose first two texts are one word each (a file sorted by length starts so)."""
    rows = ["text,label", "ok,ham", "hi,ham"]
    for i in range(n):
        rows.append(f"win a free prize now call {i},spam" if i % 2 else f"see you at lunch tomorrow {i},ham")
    path.write_text("\n".join(rows) + "\n")
    return path


def test_model_check_runs_on_a_representative_batch_not_the_first_two_texts(tmp_path):
    run = nettrain.fit(model=AttentionBiLSTM(), dataset="text", data_dir=str(_texts(tmp_path / "t.csv")), epochs=3,
                       lr=0.02, batch_size=16, run_dir=str(tmp_path / "run"), **QUIET_CPU)
    assert run.test["acc"] > 0.9, run.test


class ThreeOutputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(x)


def test_a_model_that_does_not_fit_is_named_at_its_forward(tmp_path):
    x, y = _blobs(40)
    with pytest.raises(nettrain.NettrainError) as e:
        nettrain.fit(model=ThreeOutputs(), data=(x, y), epochs=1, run_dir=str(tmp_path / "run"), **QUIET_CPU)
    line = ThreeOutputs.forward.__code__.co_firstlineno
    assert f"(forward at test_heads.py:{line}) outputs [2, 3]" in str(e.value), str(e.value)
    assert "[batch, 1]: one logit" in str(e.value)
