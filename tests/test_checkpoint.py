"""Checkpoints: plain tensors that load anywhere with torch.load(weights_only=True), and clear errors when they
do not match."""
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from torch import nn

import nettrain
from nettrain.cli import main
from nettrain.engine import checkpoint as ckpt_io
from nettrain.errors import CheckpointError
from nettrain.kinds import KINDS
from conftest import QUIET_CPU


def bright_or_dark(n=96, size=8, seed=0):
    """uint8 NHWC colour images whose class is their brightness: learnable in a few steps."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    x = rng.integers(0, 120, (n, size, size, 3)) + 120 * y[:, None, None, None]
    return x.astype(np.uint8), y


@pytest.fixture(scope="module")
def tudui_run(tmp_path_factory):
    x, y = bright_or_dark()
    return nettrain.fit(data=(x, y), val_data=bright_or_dark(32, seed=1), classes=["dark", "bright"], model="tudui",
                        epochs=2, batch_size=32, precision="32", run_dir=tmp_path_factory.mktemp("ck") / "run",
                        **QUIET_CPU)


# The tutorial's network, written out by hand; the script must not import nettrain (it is made unimportable).
PLAIN_TORCH = textwrap.dedent("""
    import sys
    sys.modules["nettrain"] = None   # any import of nettrain now fails
    import torch
    from torch import nn
    from safetensors.torch import load_file

    run_dir, x_path, out_path = sys.argv[1:]
    def tudui():
        return nn.Sequential(
            nn.Conv2d(3, 32, 5, 1, 2), nn.MaxPool2d(2),
            nn.Conv2d(32, 32, 5, 1, 2), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 5, 1, 2), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64, 64), nn.Linear(64, 2))

    def outputs(state_dict):
        model = tudui()
        model.load_state_dict(state_dict)   # strict: every key and shape matches
        with torch.no_grad():
            return model.eval()(x)

    x = torch.load(x_path, weights_only=True)
    last = torch.load(run_dir + "/last.pt", weights_only=True)
    best = torch.load(run_dir + "/best.pt", weights_only=True)
    torch.save({"last": outputs(last["model"]), "best": outputs(best["model"]),
                "safetensors": outputs(load_file(run_dir + "/best.safetensors")),
                "classes": last["data"]["classes"], "epoch": last["epoch"]}, out_path)
    assert not any(name.startswith("nettrain") for name in sys.modules if sys.modules[name] is not None)
""")


def test_checkpoint_loads_into_a_hand_written_model_without_nettrain(tudui_run, tmp_path):
    x = torch.randn(5, 3, 8, 8)
    torch.save(x, tmp_path / "x.pt")
    script = tmp_path / "plain.py"
    script.write_text(PLAIN_TORCH)
    proc = subprocess.run([sys.executable, str(script), str(tudui_run.dir), str(tmp_path / "x.pt"),
                           str(tmp_path / "out.pt")],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    got = torch.load(tmp_path / "out.pt", weights_only=True)
    with torch.no_grad():
        expected = tudui_run.model.module.eval()(x)
    assert torch.allclose(got["best"], expected, atol=1e-5)   # the model fit returns is best.pt's
    assert torch.equal(got["best"], got["safetensors"])
    assert got["classes"] == ["dark", "bright"] and got["epoch"] == 2


def test_checkpoint_contents_are_plain(tudui_run):
    ckpt = torch.load(tudui_run.dir / "last.pt", weights_only=True)
    assert ckpt["format_version"] == ckpt_io.FORMAT_VERSION and ckpt["epoch"] == 2
    assert ckpt["nettrain_version"] == nettrain.__version__
    assert ckpt["config"]["model"]["name"] == "tudui" and ckpt["data"]["shape"] == [3, 8, 8]
    assert set(ckpt["optimizer"]) == {"state", "param_groups"} and "torch" in ckpt["rng"]
    keys = list(ckpt["model"])
    assert all(isinstance(v, torch.Tensor) for v in ckpt["model"].values())
    assert not any(k.startswith(("module.", "_orig_mod.")) for k in keys)
    assert keys[0] == "0.weight" and keys[-1] == "8.bias"


def test_clean_state_dict_strips_wrapper_prefixes():
    class Compiled(nn.Module):   # what torch.compile's OptimizedModule looks like to state_dict
        def __init__(self, inner):
            super().__init__()
            self._orig_mod = inner

    model = nn.Sequential(nn.Linear(2, 3))
    wrapped = Compiled(Compiled(model))
    assert list(wrapped.state_dict()) == ["_orig_mod._orig_mod.0.weight", "_orig_mod._orig_mod.0.bias"]
    clean = ckpt_io.clean_state_dict(wrapped)
    assert list(clean) == ["0.weight", "0.bias"]
    assert clean["0.weight"].data_ptr() != model[0].weight.data_ptr()   # a copy, not the live weights


def test_save_is_atomic_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "c.pt"
    data = {"kind": "vector", "shape": [2], "task": "regression", "classes": None, "outputs": 1, "mean": [],
            "std": [], "image_size": None}   # load checks every field (test_untrusted.py)
    ckpt_io.save(path, {"model": {"w": torch.ones(2)}, "config": {}, "data": data, "epoch": 1})
    ckpt_io.save(path, {"model": {"w": torch.zeros(2)}, "config": {}, "data": data, "epoch": 2})
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]
    assert ckpt_io.load(path, kinds=KINDS)["epoch"] == 2


def test_load_predicts_like_the_trained_model(tudui_run):
    x, _ = bright_or_dark(10, seed=2)
    last = nettrain.load(tudui_run.dir / "last.pt")
    assert last.classes == ["dark", "bright"]
    best = nettrain.load(tudui_run.dir)   # a run directory means its best.pt, the model fit returns
    assert torch.allclose(best.predict(x).probs, tudui_run.model.predict(x).probs, atol=1e-6)
    best_epoch = torch.load(tudui_run.dir / "best.pt", weights_only=True)["epoch"]
    # val_data= is a validation split: it chooses best.pt
    assert best_epoch == max(range(1, 3), key=lambda e: (tudui_run.metrics[e - 1]["val_acc"], -e))
    assert best.predict(x).labels == best.predict(list(x)).labels


def test_load_errors(tudui_run, tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        nettrain.load(tmp_path / "nope.pt")
    with pytest.raises(CheckpointError, match="holds no best.pt or last.pt"):
        nettrain.load(tmp_path)
    (tmp_path / "garbage.pt").write_bytes(b"garbage" * 10)
    with pytest.raises(CheckpointError, match="not a readable nettrain checkpoint"):
        nettrain.load(tmp_path / "garbage.pt")
    torch.save(nn.Linear(2, 2).state_dict(), tmp_path / "plain.pt")   # a state_dict, not a nettrain checkpoint
    with pytest.raises(CheckpointError, match="not a nettrain checkpoint \\(missing format_version, model"):
        nettrain.load(tmp_path / "plain.pt")
    ckpt = torch.load(tudui_run.dir / "best.pt", weights_only=True)
    torch.save({**ckpt, "format_version": 99}, tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match="newer than this nettrain"):
        nettrain.load(tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match="another model"):
        nettrain.load(tudui_run.dir, model=nn.Sequential(nn.Flatten(), nn.Linear(192, 2)))


def other_model_checkpoint(run, tmp_path):
    ckpt = torch.load(run.dir / "best.pt", weights_only=True)
    ckpt["config"]["model"]["name"] = "cnn"   # says cnn, holds tudui's weights
    torch.save(ckpt, tmp_path / "other.pt")
    return tmp_path / "other.pt"


@pytest.mark.parametrize("which", ["other model", "garbage", "directory without checkpoint"])
def test_cli_evaluate_bad_checkpoints_give_one_line(tudui_run, tmp_path, capsys, which):
    if which == "other model":
        path = other_model_checkpoint(tudui_run, tmp_path)
        expected = "holds weights of another model than 'cnn'"
    elif which == "garbage":
        path = tmp_path / "garbage.pt"
        path.write_bytes(np.random.default_rng(0).bytes(1000))
        expected = "is not a readable nettrain checkpoint"
    else:
        path, expected = tmp_path, "holds no best.pt or last.pt"
    assert main(["evaluate", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("nettrain: error: ") and expected in captured.err
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err and captured.out == ""


def test_evaluate_a_run_trained_on_arrays_asks_for_them(tudui_run):
    with pytest.raises(nettrain.NettrainError, match=r"pass them: model.evaluate\(data=\(x, y\)\)"):
        nettrain.load(tudui_run.dir).evaluate()
    assert main(["evaluate", str(tudui_run.dir)]) == 2
    result = nettrain.load(tudui_run.dir).evaluate(data=bright_or_dark(32, seed=1))
    assert result["examples"] == 32 and result["acc"] == pytest.approx(tudui_run.test["acc"])
