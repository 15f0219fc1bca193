"""Bad input ends in one line naming the problem and the fix, or is bounded: never a traceback, a hang, a process
the OOM killer ends, or silent acceptance. Each table maps a short description of the input (for the docs' table of
bad inputs) to what is given and a fragment of the one-line message."""
import os
import struct
import zlib

import numpy as np
import pytest
import torch

import nettrain
from nettrain.cli import main
from nettrain.config import read_yaml
from nettrain.errors import ConfigError, NettrainError, printable
from conftest import QUIET


def config_file(tmp_path, data: bytes) -> str:
    path = tmp_path / "config.yaml"
    path.write_bytes(data)
    return str(path)


def billion_laughs() -> bytes:
    """9 levels of 9 aliases each: 618 bytes that expand to 9^9 strings."""
    lines, prev = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]'], "a"
    for name in "bcdefghi":
        lines.append(f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]")
        prev = name
    return ("\n".join(lines) + "\nmodel:\n  args:\n    x: *i\n").encode()


FIT = {
    "more torch threads than 4 per CPU": (lambda t: ["--train.threads", "10000"],
                                          f"train.threads must be at most {4 * (os.cpu_count() or 1)}"),
    "10,000 data loader processes": (lambda t: ["--data.workers", "10000"],
                                     f"data.workers must be at most {4 * (os.cpu_count() or 1)}"),
    "a seed past 64 bits": (lambda t: ["--seed", str(2**70)], "train.seed must be in [0, 4294967295]"),
    "a negative split seed": (lambda t: ["--data.split_seed", "-1"], "data.split_seed must be in [0, 4294967295]"),
    "an image size of 100,000 (the OOM killer's)": (lambda t: ["--image-size", "100000"],
                                                    "data.image_size must be in [1, 4096]"),
    "a YAML 'billion laughs' of nested aliases": (lambda t: ["--config", config_file(t, billion_laughs())],
                                                  "expands to more than 10,000 values through its aliases"),
    "a YAML list that contains itself": (lambda t: ["--config", config_file(t, b"model:\n  args:\n    x: &a [*a]\n")],
                                         "contains itself through an alias"),
    "a YAML nested thousands deep": (lambda t: ["--config", config_file(t, b"[" * 5000 + b"]" * 5000)],
                                     "nested too deeply"),
    "a latin-1 config file": (lambda t: ["--config", config_file(t, "train: {epochs: 1} # caf\xe9".encode("latin-1"))],
                              "is not UTF-8 text (byte 0xe9 at offset 24)"),
    "a binary config file": (lambda t: ["--config", config_file(t, bytes(range(256)))], "is not UTF-8 text"),
    "mlp hidden sizes as a string": (lambda t: ["--model", "mlp", "--model.args.hidden", "abc"],
                                     "argument hidden must be a list of positive integers"),
    "a negative mlp hidden size": (lambda t: ["--model", "mlp", "--model.args.hidden", "[-3]"],
                                   "argument hidden must be a list of positive integers"),
    "mlp dropout past 1": (lambda t: ["--model", "mlp", "--model.args.dropout", "2"],
                           "argument dropout must be in [0, 1)"),
    "a cnn of width 0": (lambda t: ["--model.args.width", "0"], "argument width must be a positive integer, got 0"),
    "onecycle's pct_start past 1": (lambda t: ["--scheduler", "onecycle", "--sched.pct_start", "2"],
                                    "sched.pct_start must be in (0, 1)"),
    "one beta instead of two": (lambda t: ["--optim.betas", "[0.9]"], "optim.betas must be a list of 2 numbers"),
    "a beta of 1 or more": (lambda t: ["--optim.betas", "[0.9, 1.5]"], "optim.betas must be 2 numbers, each in [0, 1)"),
    "a negative final lr (gradient ascent)": (lambda t: ["--sched.min_lr", "-5"], "sched.min_lr must be at least 0"),
    "momentum 5": (lambda t: ["--optimizer", "sgd", "--momentum", "5"], "optim.momentum must be in [0, 1)"),
    "a negative warmup": (lambda t: ["--sched.warmup_epochs", "-1"], "sched.warmup_epochs must be at least 0"),
    "crop padding bigger than the images": (lambda t: ["--data.crop_padding", "1000"],
                                            "data.crop_padding must be smaller than the 8x8 images, got 1000"),
    "crop padding on vectors": (lambda t: ["--dataset", "two-gaussians", "--model", "mlp", "--data.crop_padding", "2"],
                                "data.crop_padding crops images, but this dataset's inputs are vectors"),
}


@pytest.mark.parametrize("case", FIT)
def test_fit_refuses_in_one_line_and_writes_nothing(tmp_path, capsys, case):
    args, expected = FIT[case]
    assert main(["fit", "--epochs", "1", *args(tmp_path), "--run-dir", str(tmp_path / "run"), *QUIET]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nettrain: error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert expected in err
    assert not (tmp_path / "run").exists()


def images(n, size=8, channels=None, seed=0):
    shape = (n, size, size) if channels is None else (n, size, size, channels)
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8))


class Strings(torch.utils.data.Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, i):
        return "a string", 1


def nan_at(x, index):
    x = x.clone()
    x[index] = float("nan")
    return x


VECTORS, LABELS, VALUES = torch.randn(20, 3), torch.arange(20) % 2, torch.randn(20, 1)
API = {
    "val_data of another width": (dict(data=(VECTORS, LABELS), val_data=(torch.randn(10, 4), LABELS[:10])),
                                  "val_data's inputs are shaped (4,) each but data's are (3,)"),
    "12x12 val_data images against 8x8 training images": (
        dict(data=(images(20), LABELS), val_data=(images(10, size=12), LABELS[:10])),
        "val_data's inputs are shaped (1, 12, 12) each but data's are (1, 8, 8)"),
    "val_data targets of another width": (dict(data=(VECTORS, VALUES), val_data=(VECTORS, torch.randn(20, 2))),
                                          "val_data's targets are shaped (2,) each but data's are (1,)"),
    "5-channel NHWC images": (dict(data=(images(20, channels=5), LABELS)),
                              "uint8 images shaped (20, 8, 8, 5): the shape has no dimension of 1, 3 or 4 channels"),
    "images whose layout could be NCHW or NHWC": (dict(data=(images(20, size=3, channels=3)[:, :1], LABELS)),
                                                  "could be NCHW or NHWC"),
    "a Dataset of strings": (dict(data=Strings()), "the Dataset's items must be (input, target) pairs of numbers"),
    "a Dataset of inputs without targets": (dict(data=torch.utils.data.TensorDataset(VECTORS)),
                                            "the Dataset's items must be (input, target) pairs"),
    "an empty Dataset": (dict(data=torch.utils.data.TensorDataset(VECTORS[:0], LABELS[:0])), "the Dataset is empty"),
    "NaN regression targets": (dict(data=(VECTORS, nan_at(VALUES, (3, 0)))),
                               "data's targets hold 1 NaN or infinite value, the first at index [3, 0]"),
    "infinite inputs": (dict(data=(VECTORS.index_put((torch.tensor([1, 5]), torch.tensor([2, 0])),
                                                     torch.tensor(float("inf"))), LABELS)),
                        "data's inputs hold 2 NaN or infinite values, the first at index [1, 2]"),
    "NaN in val_data's inputs": (dict(data=(VECTORS, LABELS), val_data=(nan_at(VECTORS, (0, 0)), LABELS)),
                                 "val_data's inputs hold 1 NaN"),
}


@pytest.mark.parametrize("case", API)
def test_fit_on_bad_arrays_refuses_before_training(tmp_path, case):
    kwargs, expected = API[case]
    model = "mlp"
    with pytest.raises(NettrainError) as e:
        nettrain.fit(model=model, epochs=1, run_dir=tmp_path / "run", **kwargs,
                     **{"run.progress": "none", "run.tensorboard": False, "run.report": False})
    assert expected in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "run").exists()


def test_nhwc_and_nchw_images_train_with_their_channels(tmp_path):
    """The layout is read from the channel dimension: RGBA NHWC drops its alpha, as image files do."""
    run = nettrain.fit(model="cnn", data=(images(20, channels=4), LABELS), epochs=1, run_dir=tmp_path / "run",
                       **{"run.progress": "none", "run.tensorboard": False, "run.report": False, "model.args.width": 4})
    assert run.model.info.shape == [3, 8, 8]


# ---- predict and evaluate ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    return nettrain.fit(dataset="digits", model="mlp", epochs=1, run_dir=tmp_path_factory.mktemp("d") / "run",
                        **{"model.args.hidden": [16], "run.progress": "none", "run.tensorboard": False, "run.report": False})


def test_predict_on_nothing_names_what_it_takes(digits_run):
    with pytest.raises(NettrainError, match="cannot predict on a NoneType; give image file paths"):
        digits_run.model.predict(None)
    with pytest.raises(NettrainError, match="images must be numbers"):
        digits_run.model.predict([[None, "x"]])
    with pytest.raises(NettrainError, match="topk takes the number of classes to list per input, at least 1"):
        digits_run.model.predict(np.zeros((1, 8, 8), np.uint8)).topk(0)


@pytest.mark.parametrize("topk", ["-1", "0"])
def test_predict_topk_below_one(digits_run, capsys, topk):
    assert main(["predict", str(digits_run.dir), "x.png", "--topk", topk]) == 2
    assert capsys.readouterr().err == f"nettrain: error: --topk must be at least 1 (the classes shown per file), " \
                                      f"got {topk}\n"


def png_header(path, width, height):
    """A PNG that declares width x height pixels and holds none: Pillow refuses it from the header."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
                     + chunk(b"IEND", b""))


def test_predict_gives_each_bad_file_its_line_and_predicts_the_rest(digits_run, tmp_path, capsys):
    from PIL import Image
    good = [tmp_path / "one.png", tmp_path / "two\nlines.png", tmp_path / os.fsdecode(b"bad\xffutf8.png")]
    for path in good:
        Image.new("L", (8, 8), 128).save(path, format="PNG")
    png_header(tmp_path / "bomb.png", 30000, 30000)
    os.mkfifo(tmp_path / "fifo.png")   # opening it would wait for a writer forever
    assert main(["predict", str(digits_run.dir), *map(str, good), str(tmp_path / "bomb.png"),
                 str(tmp_path / "fifo.png")]) == 1
    out, err = capsys.readouterr()
    assert out.count("\n") == 3   # one line per good file, the newline in a name escaped
    assert f"'{tmp_path}/two\\nlines.png': " in out and f"'{tmp_path}/bad\\xffutf8.png': " in out
    lines = err.splitlines()
    assert len(lines) == 2 and "Traceback" not in err
    assert "bomb.png: 900,000,000 pixels, more than the 178,956,970 Pillow decodes" in lines[0]
    assert "fifo.png: it is a FIFO, not a regular file; give image files" in lines[1]


def test_printable_escapes_what_would_break_a_line():
    assert printable("plain/été.png") == "plain/été.png"
    assert printable("a\nb\t.png") == "'a\\nb\\t.png'"
    assert printable(os.fsdecode(b"x\xff.png")) == "'x\\xff.png'"


def test_evaluate_prints_and_leaves_the_run_directory_alone(digits_run, capsys):
    matrix = digits_run.dir / "confusion_matrix.csv"
    matrix.write_text("the user's own edit\n")
    assert main(["evaluate", str(digits_run.dir)]) == 0
    assert "confusion matrix" in capsys.readouterr().out
    assert matrix.read_text() == "the user's own edit\n"


def test_evaluate_on_a_data_dir_that_is_missing_or_not_read(digits_run, tmp_path, capsys):
    assert main(["evaluate", str(digits_run.dir), "--data-dir", str(tmp_path / "nonexistent")]) == 2
    assert "which is bundled with scikit-learn and reads no data directory" in capsys.readouterr().err
    np.savez(tmp_path / "train.npz", images=images(6).numpy(), labels=np.arange(6) % 2)
    run = nettrain.fit(dataset="npz", data_dir=tmp_path, model="mlp", epochs=1, run_dir=tmp_path / "run",
                       **{"model.args.hidden": [4], "run.progress": "none", "run.tensorboard": False, "run.report": False})
    assert main(["evaluate", str(run.dir), "--data-dir", str(tmp_path / "nonexistent")]) == 2
    err = capsys.readouterr().err
    assert f"data directory {tmp_path / 'nonexistent'} does not exist" in err and err.count("\n") == 1


def test_yaml_aliases_within_the_bound_still_work():
    assert read_yaml("x: &x {a: 1}\ny: *x") == {"x": {"a": 1}, "y": {"a": 1}}
    with pytest.raises(ConfigError):
        read_yaml(billion_laughs().decode())


def test_evaluate_on_arrays_of_another_shape(tmp_path):
    run = nettrain.fit(model="mlp", data=(VECTORS, LABELS), epochs=1, run_dir=tmp_path / "run",
                       **{"model.args.hidden": [4], "run.progress": "none", "run.tensorboard": False, "run.report": False})
    with pytest.raises(NettrainError, match=r"the data's inputs are shaped \[4\] each, the model was trained on \[3\]"):
        run.model.evaluate(data=(torch.randn(5, 4), LABELS[:5]))


def test_the_docs_catalogue_lists_every_case():
    """docs/bad-inputs.md is made from the tests (docs/make_bad_inputs.py): a case added here and not there means the
    catalogue was not made again."""
    from pathlib import Path
    catalogue = (Path(__file__).resolve().parents[1] / "docs" / "bad-inputs.md").read_text(encoding="utf-8")
    missing = [case for case in list(FIT) + list(API) + list(COMPARE) + list(SWEEP) if case not in catalogue]
    assert not missing, f"run docs/make_bad_inputs.py: {missing}"


# ---- compare and sweep (report/compare.py, sweep.py) --------------------------------------------------

def not_a_run(t, run):
    (t / "notes").mkdir()
    return [str(t / "notes")]


def no_epoch_yet(t, run):
    (t / "new").mkdir()
    (t / "new" / ".nettrain-run.json").write_text('{"files": []}')   # what a fit writes first
    return [str(run), str(t / "new")]


def users_page(t, run):
    (t / "out").mkdir()
    (t / "out" / "compare.html").write_text("my notes")
    return [str(run), "--out", str(t / "out")]


COMPARE = {
    "compare with no run": (lambda t, run: [], "no run to compare; give run directories"),
    "compare a folder that is not a run": (not_a_run, "is not a nettrain run directory"),
    "compare the folder that holds the runs": (lambda t, run: [str(run.parent)], "holds runs but is not one"),
    "compare a path that does not exist": (lambda t, run: [str(run), str(t / "nowhere")], "nowhere does not exist"),
    "compare a run that has not finished an epoch": (no_epoch_yet, "has no finished epoch to compare yet"),
    "compare a run given twice": (lambda t, run: [str(run), str(run) + "/"], "is given twice"),
    "compare --out into a run directory": (lambda t, run: [str(run), "--out", str(run)], "is a run directory"),
    "compare over a compare.html of the user's": (users_page, "exists and was not written by nettrain compare"),
}


@pytest.mark.parametrize("case", COMPARE)
def test_compare_refuses_in_one_line(digits_run, tmp_path, capsys, case):
    args, expected = COMPARE[case]
    given = args(tmp_path, digits_run.dir)
    assert main(["compare", *given]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nettrain: error: ") and err.count("\n") == 1 and expected in err
    assert not (digits_run.dir / "compare.html").exists() and not (digits_run.dir.parent / "compare.html").exists()


SWEEP = {
    "a sweep value of the wrong type": (["--lr", "0.01,abc"], [],
                                        "in the sweep's run lr=abc: invalid config: optim.lr must be a number"),
    "a misspelt optimizer among a sweep's values": (["--optimizer", "sgd,adam,rmsprop,adagrad,adamm"], [],
                                                    "unknown optimizer 'adamm' (did you mean 'adam'?)"),
    "a misspelt key to sweep": (["--optim.momentun", "0.9,0.99"], [], "optim.momentun"),
    "an empty value in a sweep": (["--lr", "0.1,,0.2"], [], "has an empty value"),
    "nothing to sweep": ([], [], "nothing to sweep"),
    "a key both swept and fixed": (["--lr", "0.1,0.2"], ["--optim.lr", "0.3"], "is given both to sweep"),
    "a run directory given to a sweep": (["--lr", "0.1,0.2"], ["--run-dir", "x"], "is chosen by the sweep"),
    "--resume in a sweep": (["--lr", "0.1,0.2"], ["--resume", "x"], "--resume is not for a sweep"),
}


@pytest.mark.parametrize("case", SWEEP)
def test_sweep_refuses_before_any_run_starts(tmp_path, monkeypatch, capsys, case):
    """Every combination is checked first: a bad fifth value writes nothing, not even the sweep's folder."""
    before, after, expected = SWEEP[case]
    monkeypatch.chdir(tmp_path)
    assert main(["sweep", *before, "--", "--dataset", "two-gaussians", "--model", "mlp", "--epochs", "1", *QUIET,
                 *after]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nettrain: error: ") and err.count("\n") == 1 and expected in err
    assert list(tmp_path.iterdir()) == []
