import nettrain
from nettrain.cli import main


def test_default_fit_on_digits_reaches_97_percent(tmp_path):
    run = nettrain.fit(run_dir=tmp_path / "run", epochs=10, **{"run.progress": "none"})
    assert run.test["acc"] >= 0.97
    assert (run.dir / "best.pt").exists() and (run.dir / "metrics.csv").exists()
    assert len(run.metrics) == 10


def test_cli_fit_then_predict_on_an_array(tmp_path, capsys):
    assert main(["fit", "--epochs", "2", "--run-dir", str(tmp_path / "r"), "--run.progress", "none"]) == 0
    model = nettrain.load(tmp_path / "r")
    from sklearn.datasets import load_digits
    import numpy as np
    d = load_digits()
    images = np.round(d.images[:50] * 255 / 16).astype(np.uint8)
    preds = model.predict(images)
    assert len(preds) == 50
    assert np.mean(np.array(preds.labels) == d.target[:50].astype(str)) > 0.8
