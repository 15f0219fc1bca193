"""Getting a trained model back out: export of the tutorials' own models, command-line predict of a model trained
from the user's script, wrapped models saved bare, the run's preprocessing for plain PyTorch, per-epoch checkpoints."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import nettrain
from nettrain.cli import main
from conftest import QUIET, QUIET_CPU_FP32

SRC = str(Path(nettrain.__file__).resolve().parents[1])

# the CIFAR-10 tutorial's Net, smaller: conv, pool, then the `.view` that a channels_last tensor refuses
TUTORIAL_NET = """\
import torch.nn as nn
import torch.nn.functional as F


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(4, 8, 5)
        self.fc1 = nn.Linear(8 * 5 * 5, 10)

    def forward(self, x):
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = x.view(-1, 8 * 5 * 5)
        return self.fc1(x)
"""


def image_data(folder: Path, n: int = 48) -> str:
    """train.npz / test.npz of 32x32x3 uint8 images in 10 classes, each class a brightness a model can learn."""
    rng = np.random.default_rng(0)
    folder.mkdir()
    for split, count in (("train", n), ("test", n // 2)):
        labels = rng.integers(0, 10, count)
        images = rng.integers(0, 40, (count, 32, 32, 3)) + labels[:, None, None, None] * 20
        np.savez(folder / f"{split}.npz", images=images.astype(np.uint8), labels=labels)
    return str(folder)


@pytest.fixture(scope="module")
def tutorial_run(tmp_path_factory) -> Path:
    """The tutorial Net trained by path on 32x32x3 images (the probe drops channels_last for its `.view`), in float32
    on the CPU, so that predict, the exported graph and plain PyTorch compute alike."""
    tmp_path = tmp_path_factory.mktemp("tutorial")
    (tmp_path / "tutorial_net.py").write_text(TUTORIAL_NET)
    run = tmp_path / "run"
    with pytest.MonkeyPatch.context() as mp:   # the fit's trust store: the tests use it too (trusted_tutorial)
        mp.setenv("NETTRAIN_HOME", str(tmp_path / "home"))
        assert main(["fit", "--dataset", "npz", "--data-dir", image_data(tmp_path / "data"), "--model",
                     f"{tmp_path / 'tutorial_net.py'}:Net", "--run-dir", str(run), "--epochs", "2", "--batch-size",
                     "16", "--device", "cpu", "--precision", "32", *QUIET]) == 0
    return run


@pytest.fixture
def trusted_tutorial(tutorial_run, monkeypatch) -> Path:
    """tutorial_run, with the trust store its fit recorded the model's file in: loading it needs no flag."""
    monkeypatch.setenv("NETTRAIN_HOME", str(tutorial_run.parent / "home"))
    return tutorial_run


def held_out_images(run: Path) -> tuple:
    test = np.load(run.parent / "data" / "test.npz")
    return test["images"], test["labels"]   # N x 32 x 32 x 3 uint8, as a user has them


@pytest.mark.slow
def test_the_tutorial_net_trained_channels_last_exports_and_agrees_with_predict(trusted_tutorial):
    """The exported graph must feed the model contiguous NCHW inputs as training did, and compute what predict
    does."""
    import onnxruntime as ort
    run = trusted_tutorial
    assert nettrain.Config.load(run / "config.yaml").train.channels_last is False
    assert main(["export", str(run), "--format", "onnx"]) == 0
    assert main(["export", str(run), "--format", "torchscript"]) == 0
    images, _ = held_out_images(run)
    ours = nettrain.load(run).predict(images).probs.numpy()
    session = ort.InferenceSession(str(run / "model.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"images": images})[0], ours, rtol=1e-3, atol=1e-5)
    scripted = torch.jit.load(str(run / "model.torchscript.pt"))
    np.testing.assert_allclose(scripted(torch.from_numpy(images)).detach().numpy(), ours, rtol=1e-3, atol=1e-5)


@pytest.mark.slow
def test_the_documented_plain_pytorch_reload_gets_the_runs_test_accuracy(trusted_tutorial, monkeypatch):
    """docs/python-api.md, "The model in plain PyTorch", step by step: the class, load_state_dict from best.pt
    (or best.safetensors), the run's preprocessing (torchvision's Normalize with the checkpoint's data section, or
    nettrain.load(run).preprocess), then the test split: the accuracy test_metrics.json holds."""
    import json
    from PIL import Image
    from safetensors.torch import load_file
    from torchvision import transforms
    tutorial_run = trusted_tutorial
    monkeypatch.syspath_prepend(str(tutorial_run.parent))
    monkeypatch.delitem(sys.modules, "tutorial_net", raising=False)
    from tutorial_net import Net
    run = str(tutorial_run)

    state = torch.load(f"{run}/best.pt", weights_only=True)
    net = Net()
    net.load_state_dict(state["model"])
    net.eval()
    data = state["data"]
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize(data["mean"], data["std"])])

    from_safetensors = Net()
    from_safetensors.load_state_dict(load_file(f"{run}/best.safetensors"))
    preprocess = nettrain.load(run).preprocess
    images, labels = held_out_images(tutorial_run)
    with torch.no_grad():
        by_hand = torch.stack([transform(Image.fromarray(img)) for img in images])
        ours = torch.stack([preprocess(Image.fromarray(img)) for img in images])
        torch.testing.assert_close(ours, by_hand, rtol=0, atol=1e-5)
        torch.testing.assert_close(preprocess(images), ours)   # a batch, NHWC, as one call
        accuracies = [(model(x).argmax(1).numpy() == labels).mean() for model in (net, from_safetensors)
                      for x in (by_hand, ours)]
    recorded = json.loads((tutorial_run / "test_metrics.json").read_text())["accuracy"]
    assert accuracies == [pytest.approx(recorded)] * 4 and recorded > 0.2   # chance: 0.1


def predict_elsewhere(tmp_path, run: Path, image: Path, home) -> subprocess.CompletedProcess:
    """`nettrain predict RUN IMAGE` as the command runs it: a fresh process in another folder, its own sys.path
    (not the folder of the user's script), the trust store in `home`."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(exist_ok=True)
    code = "import sys; from nettrain.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, "predict", str(run), str(image)], cwd=elsewhere,
                          capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": SRC, "NETTRAIN_HOME": str(home), "OMP_NUM_THREADS": "1"})


@pytest.mark.slow
def test_a_model_trained_from_the_users_script_predicts_from_the_command_line(tmp_path, monkeypatch, capsys,
                                                                               nettrain_home):
    """`from tutorial_net import Net; nettrain.fit(model=Net(), ...)` in a script, then `nettrain predict RUN x.png`:
    the fit recorded the class's file in the trust store, so the command imports exactly those bytes. The same run
    under another trust store (a run folder from elsewhere) or after the file changed is refused."""
    from PIL import Image
    script_dir = tmp_path / "project"
    script_dir.mkdir()
    (script_dir / "tutorial_net.py").write_text(TUTORIAL_NET)
    monkeypatch.syspath_prepend(str(script_dir))   # as `python train.py` puts the script's folder first
    monkeypatch.delitem(sys.modules, "tutorial_net", raising=False)
    from tutorial_net import Net
    run = nettrain.fit(model=Net(), dataset="npz", data_dir=image_data(tmp_path / "data"), epochs=1, batch_size=16,
                       run_dir=tmp_path / "run", **QUIET_CPU_FP32).dir
    image = tmp_path / "x.png"
    pixels = np.load(tmp_path / "data" / "test.npz")["images"][0]
    Image.fromarray(pixels).save(image)
    done = predict_elsewhere(tmp_path, run, image, nettrain_home)
    assert done.returncode == 0, done.stderr
    label = nettrain.load(run).predict(pixels).labels[0]
    assert done.stdout.startswith(f"{image}: {label} ") and done.stderr == ""
    # the refusals in this process, with the script's folder gone from sys.path as it is from the command's
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(script_dir)])
    monkeypatch.delitem(sys.modules, "tutorial_net")
    monkeypatch.setenv("NETTRAIN_HOME", str(tmp_path / "another-home"))   # a run folder from elsewhere
    assert main(["predict", str(run), str(image)]) == 2
    assert "which no nettrain fit on this machine has run" in capsys.readouterr().err
    monkeypatch.setenv("NETTRAIN_HOME", str(nettrain_home))
    (script_dir / "tutorial_net.py").write_text(TUTORIAL_NET + "\nimport pathlib; pathlib.Path('EDITED').touch()\n")
    assert main(["predict", str(run), str(image)]) == 2
    assert "which has changed since the run was trained" in capsys.readouterr().err
    assert "tutorial_net" not in sys.modules and not Path("EDITED").exists()


class Model(nn.Module):
    def __init__(self, n_in=5, n_out=2):   # defaults: a run records a model instance's class, not its arguments
        super().__init__()
        self.fc = nn.Linear(n_in, n_out)

    def forward(self, x):
        return self.fc(x)


@pytest.fixture
def one_process_group(tmp_path):
    """A gloo process group of this process alone, as a script that wraps its model in DDP makes one."""
    import torch.distributed as dist
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


@pytest.mark.parametrize("wrapper", ["DataParallel", "DistributedDataParallel"])
def test_a_wrapped_model_is_saved_and_recorded_bare(tmp_path, capsys, request, wrapper):
    if wrapper == "DistributedDataParallel":
        request.getfixturevalue("one_process_group")
    wrap = getattr(nn.parallel, wrapper)
    x = torch.randn(64, 5, generator=torch.Generator().manual_seed(0))
    y = (x[:, 0] > 0).long()
    run = nettrain.fit(model=wrap(Model(5, 2)), data=(x, y), epochs=1, batch_size=16, run_dir=tmp_path / "run",
                       **QUIET_CPU_FP32).dir
    assert f"nettrain: {wrapper} taken off: the run trains and saves the Model inside it" in capsys.readouterr().err
    state = torch.load(run / "best.pt", weights_only=True)
    assert sorted(state["model"]) == ["fc.bias", "fc.weight"]
    assert state["config"]["model"]["name"] == f"{__name__}:Model"
    expected = nettrain.load(run).predict(x[:4]).probs
    assert isinstance(nettrain.load(run).module, Model)
    torch.testing.assert_close(nettrain.load(run, model=Model(5, 2)).predict(x[:4]).probs, expected)
    torch.testing.assert_close(nettrain.load(run, model=nn.DataParallel(Model(5, 2))).predict(x[:4]).probs, expected)


DIGITS = ["--dataset", "digits", "--model", "mlp", "--model.args.hidden", "[8]", "--batch-size", "512", "--device",
          "cpu", "--precision", "32", "--data.val_fraction", "0.2", *QUIET]


def recorded(run: Path) -> list:
    import json
    return json.loads((run / ".nettrain-run.json").read_text())["files"]


def test_save_every_keeps_a_loadable_checkpoint_per_epoch_that_a_resume_never_overwrites(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["fit", *DIGITS, "--epochs", "3", "--save-every", "1", "--run-dir", str(run)]) == 0
    kept = sorted(p.name for p in run.glob("epoch_*.pt"))
    assert kept == ["epoch_001.pt", "epoch_002.pt", "epoch_003.pt"] and set(kept) <= set(recorded(run))
    for epoch, name in enumerate(kept, 1):
        assert torch.load(run / name, weights_only=True)["epoch"] == epoch
        assert len(nettrain.load(run / name).predict(np.zeros((2, 8, 8), np.uint8)).labels) == 2
    assert nettrain.Config.load(run / "config.yaml").run.save_every == 1
    before = {name: (run / name).read_bytes() for name in kept}
    for name in ("best.pt", "last.pt"):   # as a kill after epoch_003.pt and before last.pt leaves the run
        (run / name).write_bytes(before["epoch_002.pt"])
    capsys.readouterr()
    assert main(["fit", "--resume", str(run), "--epochs", "4", *QUIET]) == 0
    assert "epoch_003.pt is left as it was: a per-epoch checkpoint is never overwritten" in capsys.readouterr().err
    assert {name: (run / name).read_bytes() for name in kept} == before
    assert torch.load(run / "epoch_004.pt", weights_only=True)["epoch"] == 4


def test_keep_best_keeps_the_k_best_epochs_by_the_runs_metric(tmp_path):
    from nettrain.runs import read_metrics
    run = tmp_path / "run"
    assert main(["fit", *DIGITS, "--epochs", "5", "--keep-best", "2", "--optimizer", "sgd", "--lr", "0.5",
                 "--run-dir", str(run)]) == 0
    rows = read_metrics(run / "metrics.csv")
    best = sorted(rows, key=lambda r: (float(r["val_acc"]), -int(r["epoch"])), reverse=True)[:2]
    assert sorted(p.name for p in run.glob("epoch_*.pt")) == sorted(f"epoch_{int(r['epoch']):03d}.pt" for r in best)
    assert torch.load(run / "best.pt", weights_only=True)["epoch"] == int(best[0]["epoch"])
    assert main(["fit", "--overwrite", *DIGITS, "--epochs", "1", "--run-dir", str(run)]) == 0
    assert not list(run.glob("epoch_*.pt"))   # recorded, so --overwrite deleted them


def test_preprocess_turns_a_tables_raw_rows_into_what_its_model_takes(tmp_path):
    run = nettrain.fit(dataset="iris", model="mlp", epochs=1, run_dir=tmp_path / "run", **{"model.args.hidden": [8]},
                       **QUIET_CPU_FP32)
    model = nettrain.load(run.dir)
    names = [c["name"] for c in model.info.table["columns"]]
    rows = [dict(zip(names, values)) for values in ([5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3])]
    x = model.preprocess(rows)
    assert x.shape == (2, len(names)) and x.dtype == torch.float32
    assert not torch.allclose(x, torch.tensor([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]))   # standardized
    with torch.no_grad():
        torch.testing.assert_close(model.module(x).softmax(1), model.predict(rows).probs)
