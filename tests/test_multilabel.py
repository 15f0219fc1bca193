"""Multi-label heads: float 0/1 target vectors [N, labels] train with BCEWithLogits (data.task multilabel, chosen
automatically), report each label's F1 and the micro and macro F1, and predict each label's probability."""
import json

import pytest
import torch

import nettrain
from conftest import QUIET_API
from nettrain.engine.checkfields import data_problem
from nettrain.engine.metrics import multilabel_metrics
from nettrain.kinds import KINDS

LABELS = ["a", "b", "c"]


def _data(n=600):
    x = torch.randn(n, 6, generator=torch.Generator().manual_seed(0))
    y = torch.stack([x[:, 0] > 0, x[:, 1] + x[:, 2] > 0, x[:, 3] > 0.5], 1).float()
    return x, y


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    x, y = _data()
    run_dir = tmp_path_factory.mktemp("ml") / "run"
    return nettrain.fit(data=(x[:500], y[:500]), val_data=(x[500:], y[500:]), classes=LABELS, model="mlp",
                        epochs=4, batch_size=64, lr=0.01, optimizer="adam", device="cpu", run_dir=run_dir,
                        **QUIET_API)


def test_multi_hot_targets_train_multilabel_and_report_per_label_and_micro_macro_f1(run):
    x, y = _data()
    test = json.loads((run.dir / "test_metrics.json").read_text())
    with torch.no_grad():
        logits = run.model.module(x[500:])
    want = multilabel_metrics(logits, y[500:])   # the metrics of the very outputs, computed apart
    assert test["micro_f1"] == pytest.approx(want["micro_f1"]) and test["micro_f1"] > 0.8
    assert test["macro_f1"] == pytest.approx(want["macro_f1"])
    assert list(test["per_label"]) == LABELS
    assert [v["f1"] for v in test["per_label"].values()] == pytest.approx([v["f1"] for v in
                                                                          want["per_label"].values()])
    assert not (run.dir / "confusion_matrix.csv").exists()
    assert run.metrics[-1]["val_micro_f1"] == pytest.approx(test["micro_f1"])   # validated each epoch
    saved = torch.load(run.dir / "best.pt", weights_only=True)
    assert saved["data"]["task"] == "multilabel" and saved["config"]["train"]["loss"] == "bce"
    assert saved["best"]["metric"] == "val_loss"   # what chooses best.pt
    assert data_problem(saved["data"], KINDS) is None


def test_predict_gives_each_labels_probability_and_the_labels_above_half(run):
    x, _ = _data()
    p = nettrain.load(run.dir).predict(x[:8])
    with torch.no_grad():
        want = run.model.module(x[:8]).sigmoid()
    assert p.probs.shape == (8, 3) and torch.allclose(p.probs, want, atol=1e-6)
    assert p.labels == [[LABELS[j] for j in range(3) if want[i, j] > 0.5] for i in range(8)]
    assert any(len(labels) > 1 for labels in p.labels)   # several labels at once, which softmax cannot give


def test_a_multilabel_dataset_trains_with_bce_said_in_one_line(tmp_path, capfd):
    x, y = _data(200)
    data = torch.utils.data.TensorDataset(x, y)
    run = nettrain.fit(data=data, model="mlp", epochs=1, batch_size=64, device="cpu", run_dir=tmp_path / "run",
                       **QUIET_API)
    assert "multi-label" in capfd.readouterr().err
    assert torch.load(run.dir / "best.pt", weights_only=True)["data"]["task"] == "multilabel"
    assert set(json.loads((run.dir / "test_metrics.json").read_text())["per_label"]) == {"0", "1", "2"}
