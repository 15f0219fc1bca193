"""The `nettrain` command: the toy tasks end to end, `list`, evaluate, and one-line errors for bad input."""
import subprocess
import sys

import numpy as np
import pytest

import nettrain
from nettrain.cli import main
from nettrain.data import DATASETS
from nettrain.engine.optim import LOSSES, OPTIMIZERS, SCHEDULERS
from nettrain.models import MODELS
from nettrain.runs import read_metrics
from conftest import QUIET


def fit(tmp_path, *args):
    return main(["fit", *args, "--run-dir", str(tmp_path / "run"), *QUIET])


def test_quadratic_from_the_cli(tmp_path, capsys):
    assert fit(tmp_path, "--dataset", "quadratic", "--model", "mlp", "--model.args.hidden", "[10]",
               "--optimizer", "sgd", "--lr", "0.2", "--batch-size", "10", "--epochs", "60") == 0
    rows = read_metrics(tmp_path / "run" / "metrics.csv")
    assert len(rows) == 60 and rows[-1]["val_loss"] <= 0.01 and rows[-1]["train_acc"] is None
    assert nettrain.load(tmp_path / "run" / "last.pt").evaluate()["mse"] <= 0.01
    assert nettrain.Config.load(tmp_path / "run" / "config.yaml").train.loss == "mse"   # the loss that trained


def test_two_gaussians_from_the_cli(tmp_path):
    assert fit(tmp_path, "--dataset", "two-gaussians", "--model", "mlp", "--model.args.hidden", "[10]",
               "--optimizer", "sgd", "--lr", "0.02", "--epochs", "20") == 0
    rows = read_metrics(tmp_path / "run" / "metrics.csv")
    assert rows[-1]["val_acc"] >= 0.99
    assert nettrain.load(tmp_path / "run" / "last.pt").evaluate()["acc"] >= 0.99


def test_progress_lines_and_test_report_are_printed(tmp_path, capsys):
    assert main(["fit", "--dataset", "two-gaussians", "--model", "mlp", "--epochs", "2", "--run-dir",
                 str(tmp_path / "run"), "--run.progress", "lines", "--run.tensorboard", "false", "--run.report", "false", "--run.report", "false"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("nettrain: two-gaussians") and "epoch 1/2" in out and "epoch 2/2" in out
    assert "test: loss" in out and "confusion matrix" in out and "| test loss" in out
    # no validation split: the test split chose nothing, the model is the last epoch's
    assert "(200 train, 200 test)" in out and "best val_acc" not in out and "model: the weights of epoch 2" in out


def test_dotted_options_reach_the_run(tmp_path):
    assert fit(tmp_path, "--dataset", "two-gaussians", "--model", "mlp", "--epochs", "1", "--optimizer", "sgd",
               "--optim.momentum", "0.9", "--optim.nesterov=true", "--model.args.hidden", "[6, 4]",
               "--sched.name", "cosine", "--train.grad_clip", "1.0") == 0
    cfg = nettrain.Config.load(tmp_path / "run" / "config.yaml")
    assert cfg.optim.momentum == 0.9 and cfg.optim.nesterov is True and cfg.model.args == {"hidden": [6, 4]}
    assert cfg.sched.name == "cosine" and cfg.train.grad_clip == 1.0
    import torch
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert state["optimizer"]["param_groups"][0]["momentum"] == 0.9
    assert state["model"]["1.weight"].shape == (6, 2)


def test_list_names_everything(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for registry in (DATASETS, MODELS, OPTIMIZERS, LOSSES, SCHEDULERS):
        for name in registry.names():
            assert f"  {name} " in out
    assert "config shortcuts:" in out


def test_fit_help_lists_every_registered_optimizer_scheduler_and_loss():
    """cli.py names them without importing torch (a fast --help); this keeps those lists in step."""
    from nettrain.cli import FIT_FLAGS
    for flag, registry in (("--optimizer", OPTIMIZERS), ("--scheduler", SCHEDULERS), ("--loss", LOSSES)):
        listed = {name.strip() for name in FIT_FLAGS[flag][2].replace(" or ", ", ").split(",")}
        assert set(registry.names()) <= listed, f"{flag}'s help lacks {set(registry.names()) - listed}"


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "fit" in capsys.readouterr().out


# ---- bad input: exit 2, one line on stderr, no traceback ------------------------------------------------

def user_model_file(tmp_path):
    path = tmp_path / "wrong_net.py"
    path.write_text("from torch import nn\n\nclass Net(nn.Sequential):\n"
                    "    def __init__(self):\n        super().__init__(nn.Flatten(), nn.Linear(64, 3))\n")
    return f"{path}:Net"


def malformed_npz(tmp_path):
    (tmp_path / "arrays").mkdir()
    np.savez(tmp_path / "arrays" / "train.npz", images=np.zeros((4, 8, 8), np.float32), labels=np.zeros(4, int))
    return str(tmp_path / "arrays")


def model_file(tmp_path, name, text):
    (tmp_path / name).write_text(text)
    return f"{tmp_path / name}:Net"


def empty_npz(tmp_path):
    (tmp_path / "empty").mkdir()
    np.savez(tmp_path / "empty" / "train.npz", images=np.zeros((0, 8, 8), np.uint8), labels=np.zeros(0, int))
    return str(tmp_path / "empty")


def photo_folder(tmp_path):
    from PIL import Image
    for name in ("cat", "dog"):
        (tmp_path / "photos" / "train" / name).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(tmp_path / "photos" / "train" / name / f"{i}.png")
    return str(tmp_path / "photos")


def bad_config_file(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text("trian:\n  epochs: 3\ntrain:\n  epochz: 3\n  batch_size: big\n")
    return str(path)


BAD_INPUT = {
    "unknown dataset": (lambda t: ["--dataset", "cifar11"], "unknown dataset 'cifar11' (did you mean 'cifar10'?)"),
    "model typo": (lambda t: ["--model", "tudiu"], "unknown model 'tudiu' (did you mean 'tudui'?)"),
    "unknown optimizer": (lambda t: ["--optimizer", "sdg"], "unknown optimizer 'sdg' (did you mean 'sgd'?)"),
    "unknown scheduler": (lambda t: ["--scheduler", "cosin"], "unknown scheduler 'cosin' (did you mean 'cosine'?)"),
    "npz dir missing": (lambda t: ["--dataset", "npz", "--data-dir", str(t / "nope")], "does not exist"),
    "imagefolder dir missing": (lambda t: ["--dataset", "imagefolder", "--data-dir", str(t / "nope")],
                                "does not exist"),
    "mnist missing": (lambda t: ["--dataset", "mnist", "--data-dir", str(t)], "MNIST not found in"),
    "model too big for the data": (lambda t: ["--model", "lenet"], "needs images of at least 16x16"),
    "user model wrong output size": (lambda t: ["--model", user_model_file(t)], "outputs [2, 3]"),
    "malformed npz": (lambda t: ["--dataset", "npz", "--data-dir", malformed_npz(t)], "must be uint8"),
    "optimizer hyperparameter it lacks": (lambda t: ["--optimizer", "adam", "--momentum", "0.9"],
                                          "optimizer 'adam' takes no momentum"),
    "unknown config key": (lambda t: ["--train.epoch", "3"], "unknown key train.epoch (did you mean 'epochs'?)"),
    "wrong type": (lambda t: ["--epochs", "3", "--train.batch_size", "many"], "train.batch_size must be an integer"),
    "unknown flag": (lambda t: ["--learning-rate", "0.1"], "unknown option 'learning_rate'"),
    "missing config file": (lambda t: ["--config", str(t / "nope.yaml")], "cannot read config"),
    "config file with three problems": (lambda t: ["--config", bad_config_file(t)],
                                        "unknown section 'trian' (did you mean 'train'?)"),
    "cuda without a gpu": (lambda t: ["--device", "cuda:7"], "cuda:7"),
    "16-bit on the cpu": (lambda t: ["--device", "cpu", "--precision", "16-mixed"], "16-mixed needs a GPU"),
    "resume nothing": (lambda t: ["--resume", str(t)], "not a run directory with a checkpoint to resume"),
    "batch larger than the data with drop_last": (lambda t: ["--batch-size", "5000", "--train.drop_last", "true"],
                                                   "leaves no batch from 1438 examples; lower the batch size"),
    "empty npz": (lambda t: ["--dataset", "npz", "--data-dir", empty_npz(t)], "train.npz holds no examples"),
    "val_fraction on a folder read from disk": (
        lambda t: ["--dataset", "imagefolder", "--data-dir", photo_folder(t), "--data.in_memory", "no",
                   "--data.val_fraction", "0.2"], "data.val_fraction needs an in-memory dataset"),
    "image model on vectors": (lambda t: ["--dataset", "quadratic", "--model", "fastcnn"],
                               "model 'fastcnn' needs images, but this dataset's inputs are vectors"),
    "negative crop padding": (lambda t: ["--data.crop_padding", "-1"], "data.crop_padding must be at least 0, got -1"),
    "negative grad clip (would ascend)": (lambda t: ["--train.grad_clip", "-1"], "train.grad_clip must be in (0, inf)"),
    "label smoothing past 1": (lambda t: ["--train.label_smoothing", "2"], "train.label_smoothing must be in [0, 1)"),
    "ema decay past 1": (lambda t: ["--train.ema", "2"], "train.ema must be in (0, 1)"),
    "regression loss on class labels": (lambda t: ["--loss", "mse"], "loss 'mse' compares outputs with targets of"),
    "user model file that does not parse": (
        lambda t: ["--model", model_file(t, "bad_syntax.py", "class Net(:\n")],
        "bad_syntax.py fails to load (SyntaxError: invalid syntax at bad_syntax.py:1)"),
    "user model whose __init__ raises": (
        lambda t: ["--model", model_file(t, "boom.py", "from torch import nn\nclass Net(nn.Module):\n"
                                                        "    def __init__(self):\n        raise ValueError('no')\n")],
        "failed (ValueError: no at boom.py:4); fix the class or its --model.args"),
    "too many blocks for the image size": (lambda t: ["--model", "fastcnn", "--model.args.widths", "[8, 8, 8, 8, 8]"],
                                           "needs images of at least 16 pixels a side for 5 blocks, these are 8x8"),
}


@pytest.mark.parametrize("case", BAD_INPUT)
def test_bad_input_gives_one_line_and_exit_code_2(tmp_path, capsys, case):
    args, expected = BAD_INPUT[case]
    if case == "cuda without a gpu":
        import torch
        if torch.cuda.device_count() > 7:
            pytest.skip("this machine has a cuda:7")
    assert main(["fit", "--epochs", "1", *args(tmp_path), "--run-dir", str(tmp_path / "run"), *QUIET]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("nettrain: error: ") and captured.err.count("\n") == 1
    assert expected in captured.err and "Traceback" not in captured.err
    if case == "config file with three problems":   # all of them, in the same line
        assert "train.epochz" in captured.err and "train.batch_size must be an integer" in captured.err
    assert not (tmp_path / "run").exists()   # nothing half-made


def test_ctrl_c_is_one_line_and_exit_code_130(monkeypatch, capsys):
    def interrupted(*args, **kw):
        raise KeyboardInterrupt
    monkeypatch.setattr("nettrain.api.fit", interrupted)
    assert main(["fit", "--epochs", "1"]) == 130
    assert capsys.readouterr().err == "nettrain: interrupted\n"


def test_a_real_process_exits_2_with_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "nettrain", "fit", "--model", "resnet19", "--run-dir",
                           str(tmp_path / "run")], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("nettrain: error: unknown model 'resnet19' (did you mean 'resnet18'?)")
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


def test_a_reader_that_leaves_early_gets_no_traceback(tmp_path):
    """`nettrain list | head`: the pipe closes before nettrain writes; it stops quietly (exit 141, as Unix tools)."""
    proc = subprocess.Popen([sys.executable, "-m", "nettrain", "list"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=tmp_path)
    proc.stdout.close()   # before the child has started: its first write finds no reader
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141 and err == ""


def test_unrecognized_arguments_outside_fit(capsys):
    with pytest.raises(SystemExit) as e:
        main(["list", "--bogus"])
    assert e.value.code == 2 and "unrecognized arguments: --bogus" in capsys.readouterr().err


# ---- evaluate and predict ------------------------------------------------------------------------------

def npz_folder(path, seed, n=60, n_test=20, size=6):
    """Bright vs dark 6x6 gray images, as an npz dataset folder."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    x = (rng.integers(0, 100, (n, size, size)) + 150 * y[:, None, None]).astype(np.uint8)
    path.mkdir()
    np.savez(path / "train.npz", images=x, labels=y, classes=np.array(["dark", "bright"]))
    np.savez(path / "test.npz", images=x[:n_test], labels=y[:n_test])
    return path


def test_evaluate_on_another_data_dir(tmp_path, capsys):
    npz_folder(tmp_path / "a", 0)
    npz_folder(tmp_path / "b", 1, n=40, n_test=30)
    assert fit(tmp_path, "--dataset", "npz", "--data-dir", str(tmp_path / "a"), "--model", "mlp", "--epochs", "5",
               "--lr", "0.01") == 0
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "run")]) == 0   # its own test split
    assert "/20)" in capsys.readouterr().out
    assert main(["evaluate", str(tmp_path / "run"), "--data-dir", str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    assert "/30)" in out and "bright" in out   # b's 30 test images, not a's 20
    (tmp_path / "c").mkdir()
    np.savez(tmp_path / "c" / "train.npz", images=np.zeros((4, 5, 5), np.uint8), labels=np.zeros(4, int))
    assert main(["evaluate", str(tmp_path / "run"), "--data-dir", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert "inputs of shape [1, 5, 5]" in err and err.count("\n") == 1


def test_predict_needs_an_image_model(tmp_path, capsys):
    assert fit(tmp_path, "--dataset", "two-gaussians", "--model", "mlp", "--epochs", "1") == 0
    capsys.readouterr()
    assert main(["predict", str(tmp_path / "run"), "x.png"]) == 2
    assert "needs a model trained on images" in capsys.readouterr().err
