"""The Python API: nettrain.fit with the tutorials' own tensors and modules, nettrain.load, predict, evaluate."""
import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from sklearn.datasets import load_digits
from torch import nn

import nettrain
from nettrain.errors import ConfigError, DataError
from conftest import QUIET_CPU


class Net(nn.Module):
    """The regression tutorial's network: 1 -> 10 -> 1."""

    def __init__(self, n_feature=1, n_hidden=10, n_output=1):
        super().__init__()
        self.hidden = nn.Linear(n_feature, n_hidden)
        self.predict = nn.Linear(n_hidden, n_output)

    def forward(self, x):
        return self.predict(torch.relu(self.hidden(x)))


def test_quadratic_regression_with_the_tutorials_tensors_and_module(tmp_path):
    torch.manual_seed(1)
    x = torch.unsqueeze(torch.linspace(-1, 1, 100), dim=1)
    y = x.pow(2) + 0.2 * torch.rand(x.size())
    run = nettrain.fit(model=Net(1, 10, 1), data=(x, y), val_data=(x, y), loss="mse", optimizer="sgd", lr=0.2,
                       epochs=60, batch_size=10, run_dir=tmp_path / "run", **QUIET_CPU)
    assert run.test["mse"] <= 0.01 and run.metrics[-1]["val_loss"] <= 0.01
    assert run.metrics[-1]["train_acc"] is None and "acc" not in run.test
    assert isinstance(run.model.module, Net)
    cfg = nettrain.Config.load(run.dir / "config.yaml")
    assert cfg.model.name.endswith(":Net") and cfg.data.name == "arrays" and cfg.train.loss == "mse"
    pred = run.model.predict(x)
    assert pred.probs is None and pred.values.shape == (100, 1)
    assert torch.mean((pred.values - y) ** 2) <= 0.01
    # the run loads back with the user's class given, and evaluates on arrays
    loaded = nettrain.load(run.dir, model=Net(1, 10, 1))   # run.model is best.pt's
    assert torch.allclose(loaded.predict(x).values, pred.values, atol=1e-6)
    assert loaded.evaluate(data=(x, y))["mse"] == pytest.approx(run.test["mse"], rel=1e-5)


def test_load_names_the_fix_when_the_users_class_cannot_be_found_again(tmp_path):
    """A class nettrain cannot import by name (defined in a function, a notebook cell, a deleted file) is asked for:
    nettrain.load(path, model=...)."""
    class Local(nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = nn.Linear(2, 2)

        def forward(self, x):
            return self.layer(x)

    x, y = torch.randn(20, 2), torch.arange(20) % 2
    run = nettrain.fit(model=Local(), data=(x, y), epochs=1, run_dir=tmp_path / "run", **QUIET_CPU)
    with pytest.raises(nettrain.NettrainError, match=r"; or pass your model: nettrain.load\(path, model=YourModel"):
        nettrain.load(run.dir)
    assert torch.equal(nettrain.load(run.dir, model=Local()).predict(x).probs, run.model.predict(x).probs)


def test_two_gaussians_classification_with_the_tutorials_tensors(tmp_path):
    torch.manual_seed(1)
    n_data = torch.ones(100, 2)
    x0, y0 = torch.normal(2 * n_data, 1), torch.zeros(100)
    x1, y1 = torch.normal(-2 * n_data, 1), torch.ones(100)
    x = torch.cat((x0, x1), 0).type(torch.FloatTensor)
    y = torch.cat((y0, y1), ).type(torch.LongTensor)
    model = nn.Sequential(nn.Linear(2, 10), nn.ReLU(), nn.Linear(10, 2))
    run = nettrain.fit(model=model, data=(x, y), classes=["plus", "minus"], optimizer="sgd", lr=0.02, epochs=50,
                       run_dir=tmp_path / "run", **QUIET_CPU)
    assert run.test["acc"] >= 0.99 and run.test["examples"] == 40   # 20% held out
    pred = run.model.predict(torch.tensor([[3.0, 2.0], [-2.0, -3.0]]))
    assert pred.labels == ["plus", "minus"] and pred.indices == [0, 1]
    assert torch.allclose(pred.probs.sum(1), torch.ones(2))


class Recorder(nn.Linear):
    """A linear layer that records the dtype of every input it computes with."""

    probing = False   # the probe's plain pass (engine/probe.py) runs autocast alone by design: not recorded

    def forward(self, x):
        if not Recorder.probing:
            self.dtypes.add(x.dtype)
        return super().forward(x)


def test_bf16_fit_runs_small_linear_layers_in_float32_and_leaves_no_hooks(tmp_path, monkeypatch):
    from nettrain.engine.probe import Probe
    plain_pass = Probe._pass

    def unrecorded(self, *args):
        Recorder.probing = True
        try:
            return plain_pass(self, *args)
        finally:
            Recorder.probing = False
    monkeypatch.setattr(Probe, "_pass", unrecorded)
    head = Recorder(8, 2)
    head.dtypes = set()
    model = nn.Sequential(nn.Linear(2, 8), head)   # tiny: both products are small
    x, y = torch.randn(64, 2), (torch.rand(64) > 0.5).long()
    run = nettrain.fit(model=model, data=(x, y), epochs=1, precision="bf16-mixed", run_dir=tmp_path / "run",
                       **QUIET_CPU)
    assert head.dtypes == {torch.float32}   # under bf16 autocast it would have been handed bfloat16
    assert not head._forward_pre_hooks and not head._forward_hooks
    run.model.predict(x[:4])
    assert head.dtypes == {torch.float32} and not head._forward_pre_hooks
    head.dtypes = set()   # train.small_linears_fp32 false: autocast as it is
    nettrain.fit(model=model, data=(x, y), epochs=1, precision="bf16-mixed", run_dir=tmp_path / "bf16",
                 **{"train.small_linears_fp32": False}, **QUIET_CPU)
    assert torch.bfloat16 in head.dtypes   # the shape check before training runs it once in float32, outside autocast


class ConvRecorder(nn.Conv2d):
    """A convolution that records the dtype of every input it is handed."""

    def forward(self, x):
        self.dtypes.add(x.dtype)
        return super().forward(x)


def test_bf16_fit_hands_images_over_rounded_and_trains_exactly_as_from_float32(tmp_path, monkeypatch):
    """Under bf16 autocast a conv-first model gets its batches stored normalized and rounded (one gather a
    batch); the run's every figure is bit for bit that of the float32 batches autocast would round itself."""
    monkeypatch.setattr("nettrain.data.batches.ROUNDED_MIN_BATCH", 1)   # digits' batches are small: large here
    def run(name):
        torch.manual_seed(0)
        conv = ConvRecorder(1, 8, 3, padding=1)
        conv.dtypes = set()
        model = nn.Sequential(conv, nn.ReLU(), nn.Flatten(), nn.Linear(8 * 8 * 8, 10))
        r = nettrain.fit(model=model, dataset="digits", epochs=2, precision="bf16-mixed", run_dir=tmp_path / name,
                         **QUIET_CPU)
        return conv.dtypes, [{k: v for k, v in row.items() if k not in ("seconds", "examples_per_s", "data_wait")}
                             for row in r.metrics], r.test

    dtypes, metrics, test = run("rounded")
    assert torch.bfloat16 in dtypes   # handed over rounded (the float32 input is the shape check's, before training)
    monkeypatch.setattr("nettrain.wiring._input_dtype", lambda *args: None)
    float_dtypes, float_metrics, float_test = run("float")
    assert torch.bfloat16 not in float_dtypes
    assert metrics == float_metrics
    assert test["loss"] == float_test["loss"] and torch.equal(test["confusion"], float_test["confusion"])


# ---- a digits model and every input form predict accepts ----------------------------------------------

@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    return nettrain.fit(dataset="digits", model="cnn", epochs=3, precision="32", lr=3e-3,
                        run_dir=tmp_path_factory.mktemp("api") / "digits", **{"model.args.width": 16}, **QUIET_CPU)


@pytest.fixture(scope="module")
def digit_images():
    d = load_digits()
    return np.round(d.images[:40] * 255 / 16).astype(np.uint8), d.target[:40]


def test_fit_returns_the_run(digits_run):
    assert digits_run.dir.is_dir() and (digits_run.dir / "best.pt").exists()
    assert [m["epoch"] for m in digits_run.metrics] == [1, 2, 3]
    assert set(digits_run.test) >= {"loss", "acc", "confusion", "examples"} and digits_run.test["acc"] >= 0.9
    assert isinstance(digits_run.model, nettrain.Predictor) and digits_run.model.classes == [str(i) for i in range(10)]
    assert digits_run.seconds > 0


def test_evaluate_returns_loss_accuracy_and_confusion(digits_run):
    model = nettrain.load(digits_run.dir / "last.pt")
    result = model.evaluate()   # the test split of the dataset it was trained on
    assert result["examples"] == 359
    assert result["acc"] == pytest.approx(digits_run.test["acc"]) and result["loss"] == pytest.approx(
        digits_run.test["loss"], rel=1e-5)
    cm = result["confusion"]
    assert cm.shape == (10, 10) and int(cm.sum()) == 359 and int(cm.diag().sum()) == round(result["acc"] * 359)
    report = nettrain.api.format_report(result, model.classes)
    assert "accuracy" in report and "confusion matrix" in report


def test_predict_accepts_every_input_form_alike(digits_run, digit_images, tmp_path):
    model = nettrain.load(digits_run.dir)
    images, labels = digit_images
    img = images[0]
    reference = model.predict(img[None]).probs   # NHW
    png = tmp_path / "digit.png"
    Image.fromarray(img).save(png)
    forms = {
        "HW": img, "HWC": img[..., None], "NHWC": img[None, ..., None], "list of HW": [img],
        "tensor CHW": torch.from_numpy(img)[None], "tensor NCHW": torch.from_numpy(img)[None, None],
        "float tensor in [0, 1]": torch.from_numpy(img)[None].float() / 255,
        "PIL L": Image.fromarray(img), "PIL RGB": Image.fromarray(img).convert("RGB"),
        "RGB HWC": np.repeat(img[..., None], 3, axis=2), "path str": str(png), "path": png,
        "read-only array": np.frombuffer(img.tobytes(), np.uint8).reshape(8, 8),
    }
    for name, value in forms.items():
        got = model.predict(value)
        assert len(got) == 1 and torch.allclose(got.probs, reference, atol=1e-6), name
    mixed = model.predict([img, str(png), Image.fromarray(img), torch.from_numpy(img)[None]])
    assert len(mixed) == 4 and all(torch.allclose(p, reference[0], atol=1e-6) for p in mixed.probs)


def test_predict_batches_are_accurate_and_resized(digits_run, digit_images):
    model = nettrain.load(digits_run.dir)
    images, labels = digit_images
    nhwc = model.predict(images[..., None])
    assert len(nhwc) == 40 and np.mean(np.array(nhwc.indices) == labels) >= 0.9
    assert torch.allclose(model.predict(images).probs, nhwc.probs)
    top = nhwc.topk(3)
    assert len(top) == 40 and len(top[0]) == 3 and top[0][0][0] == nhwc.labels[0]
    assert top[0][0][1] >= top[0][1][1] >= top[0][2][1]
    big = np.kron(images[:4], np.ones((4, 4), np.uint8))   # 32x32: resized to the model's 8x8
    assert model.predict(big).probs.shape == (4, 10)


def test_predict_rejects_what_it_cannot_read(digits_run):
    model = nettrain.load(digits_run.dir)
    with pytest.raises(DataError, match="uint8"):
        model.predict(np.zeros((8, 8), np.int32))
    with pytest.raises(DataError, match="cannot read images of shape"):
        model.predict(np.zeros((2, 2, 8, 8, 1), np.uint8))
    with pytest.raises(DataError, match="cannot read image"):
        model.predict(["no/such/file.png"])
    with pytest.raises(DataError, match="nothing to predict"):
        model.predict([])


def test_predict_on_a_vector_model_names_the_shape_it_takes(tmp_path, quiet):
    nettrain.fit(dataset="quadratic", model="mlp", epochs=1, run_dir=tmp_path / "run", **quiet)
    model = nettrain.load(tmp_path / "run")
    assert model.predict([[0.5], [0.1]]).values.shape == (2, 1) and model.predict([0.5]).values.shape == (1, 1)
    with pytest.raises(DataError, match=r"takes numbers shaped \(N, 1\), not files or text"):
        model.predict(["photo.png"])
    with pytest.raises(DataError, match=r"takes numbers shaped \(N, 1\), got shape \(2, 5\)"):
        model.predict(np.zeros((2, 5), np.float32))


# ---- options -------------------------------------------------------------------------------------------

def test_fit_options_as_shortcuts_dotted_keys_sections_and_yaml(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"data": {"name": "two-gaussians"}, "model": {"name": "mlp"},
                                      "train": {"epochs": 1}}))
    run = nettrain.fit(recipe, optimizer="sgd", optim={"momentum": 0.5}, **{"model.args.hidden": [4]},
                       run_dir=tmp_path / "run", **QUIET_CPU)
    cfg = nettrain.Config.load(run.dir / "config.yaml")
    assert cfg.data.name == "two-gaussians" and cfg.optim.name == "sgd" and cfg.optim.momentum == 0.5
    assert cfg.model.args == {"hidden": [4]} and cfg.train.epochs == 1
    layers = [m for m in run.model.module if isinstance(m, nn.Linear)]
    assert [m.out_features for m in layers] == [4, 2]


def test_fit_errors(tmp_path):
    with pytest.raises(ConfigError, match="either dataset=<name> or data="):
        nettrain.fit(dataset="digits", data=(torch.zeros(4, 2), torch.zeros(4, dtype=torch.long)), **QUIET_CPU)
    with pytest.raises(ConfigError, match="train.epochs must be at least 1"):
        nettrain.fit(dataset="two-gaussians", model="mlp", epochs=0, run_dir=tmp_path / "r", **QUIET_CPU)
    with pytest.raises(ConfigError, match="train.tta mirrors and shifts images.*set train.tta false"):
        nettrain.fit(dataset="two-gaussians", model="mlp", train={"tta": True}, run_dir=tmp_path / "r", **QUIET_CPU)
    with pytest.raises(ConfigError, match="train.tta_shift must be smaller than the images"):
        nettrain.fit(dataset="digits", train={"tta": True, "tta_shift": 8}, run_dir=tmp_path / "r", **QUIET_CPU)
    with pytest.raises(ConfigError, match=r"train.lookahead_decay must be in \(0, 1\], got 1.5"):
        nettrain.fit(dataset="two-gaussians", model="mlp", train={"lookahead": 5, "lookahead_decay": 1.5},
                     run_dir=tmp_path / "r", **QUIET_CPU)
    with pytest.raises(ConfigError, match="train.lookahead must be at least 0"):
        nettrain.fit(dataset="two-gaussians", model="mlp", train={"lookahead": -1}, run_dir=tmp_path / "r", **QUIET_CPU)
    with pytest.raises(ConfigError, match="unknown option 'epoch'.*did you mean 'epochs'"):
        nettrain.fit(epoch=3, **QUIET_CPU)
    with pytest.raises(nettrain.NettrainError, match="not a run directory with a checkpoint to resume"):
        nettrain.fit(resume=tmp_path)
    assert not (tmp_path / "r").exists()   # nothing written for a run that never started


def _digits_cnn(tmp_path, name, **kw):
    run = nettrain.fit(dataset="digits", model="cnn", epochs=1, precision="32", run_dir=tmp_path / name, **QUIET_CPU,
                       **kw)
    return run.metrics[-1]


def test_compile_warm_up_leaves_no_trace(tmp_path, monkeypatch):
    # an identity "compile": the warm-up's forward and backward run, then weights, BN buffers, grads and RNG must
    # be exactly as before, so the run equals an uncompiled one
    plain = _digits_cnn(tmp_path, "plain")
    sizes = []
    monkeypatch.setattr(torch, "compile", lambda m, **k: (
        m.register_forward_pre_hook(lambda module, args: sizes.append(len(args[0]))), m)[1])
    warmed = _digits_cnn(tmp_path, "warmed", compile=True)
    assert warmed["train_loss"] == plain["train_loss"] and warmed["val_acc"] == plain["val_acc"]
    # both of the epoch's batch shapes are compiled before it is timed: 1,438 images = 22 x 64 + 30
    assert sizes[:3] == [64, 30, 64]


def test_compile_failure_falls_back_to_eager_with_a_warning(tmp_path, monkeypatch, capsys):
    plain = _digits_cnn(tmp_path, "plain")

    def broken(m, **k):
        raise RuntimeError("no C++ compiler found\nmore detail")
    monkeypatch.setattr(torch, "compile", broken)
    fallback = _digits_cnn(tmp_path, "fallback", compile=True)
    assert "warning: torch.compile failed (RuntimeError: no C++ compiler found); training without it" in \
        capsys.readouterr().err
    assert fallback["train_loss"] == plain["train_loss"]
