"""Every field nettrain reads from a file is checked before it is used, and every size before it is allocated: a
checkpoint's resume state (engine/checkfields.py: its RNG states, optimizer, scheduler, history and best record,
against the live objects they are restored into), an export's model.onnx.json (onnxpredict.py), the run files
the report reads (report/read.py) and a built-in model's sizes (models/zoo.py). A bad one is one line naming the
field and the fix, and nothing the user had is changed."""
import json
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import nettrain
from nettrain.cli import main
from nettrain.engine import checkpoint as ckpt_io
from nettrain.engine.distributed import World
from nettrain.errors import CheckpointError
from conftest import QUIET, QUIET_API

SRC = str(Path(nettrain.__file__).resolve().parents[1])
TINY = {"model.args.hidden": [8], "batch_size": 512}


def one_line(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("nettrain: error: ") and "\n" not in err and "Traceback" not in err, err
    return err


def limited_run(argv, cwd, gigabytes: int = 4) -> subprocess.CompletedProcess:
    """The CLI in a fresh process of at most `gigabytes` of address space: what would allocate more fails there
    (MemoryError) instead of taking the machine's memory."""
    limit = gigabytes * 2 ** 30
    return subprocess.run([sys.executable, "-m", "nettrain", *argv], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": SRC},
                          preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit)))


# ---- a checkpoint's resume state -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def adam_run(tmp_path_factory):
    """One epoch of Adam (its fused CPU step) with a validation split, so best.value is a number."""
    return nettrain.fit(dataset="digits", model="mlp", epochs=1, optimizer="adam", precision="32",
                        run_dir=tmp_path_factory.mktemp("adam") / "run", **{"data.val_fraction": 0.2}, **TINY,
                        **QUIET_API).dir


def crafted(run_dir: Path, tmp_path: Path, change) -> Path:
    """A copy of the run whose last.pt has `change(checkpoint)` made to it."""
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    ckpt = torch.load(run / "last.pt", weights_only=True)
    change(ckpt)
    torch.save(ckpt, run / "last.pt")
    return run


def with_partial(rng_at_start: dict):
    """A stop in the middle of epoch 2 (engine/stop.py's `partial` entry), with this RNG state at its start."""
    def change(c):
        c["partial"] = {"epoch": 2, "batches": 1, "steps": 1, "world_size": 1, "rng_at_start": rng_at_start,
                        "rng_at_start_ranks": [],
                        "sums": [{"loss_sum": torch.tensor(0.0), "correct": 0, "seen": 0, "wait": 0.0, "seconds": 0.0}]}
    return change


def short_rng():
    return {"torch": torch.zeros(10, dtype=torch.uint8)}


def invalid_rng():
    """The right size, with the Mersenne twister's position out of range (torch: "Invalid mt19937 state")."""
    return {"torch": torch.full_like(torch.get_rng_state(), 255)}


def drop(key):
    return lambda c: c.pop(key)


def set_in(path, value):
    def change(c):
        for key in path[:-1]:
            c = c[key]
        c[path[-1]] = value
    return change


# the case, the change to last.pt, the words the refusal must hold (the field), and the --epochs of the resume
# (2 continues training with the restored state; None resumes the finished run, with its schedule as it was)
RESUME_CASES = {
    "an rng state of the wrong size": (set_in(["rng"], short_rng()), "rng.torch", 2),
    "an rng state torch finds invalid": (set_in(["rng"], invalid_rng()), "rng.torch is not a valid RNG state", 2),
    "partial.rng_at_start of the wrong size": (with_partial(short_rng()), "partial.rng_at_start", 2),
    "rank 1's rng state of the wrong size": (set_in(["rng_ranks"], [ckpt_io.rng_state(), short_rng()]),
                                             "rng_ranks[1]", 2),
    "no rng": (drop("rng"), "lacks rng", 2),
    "no optimizer": (drop("optimizer"), "lacks optimizer", 2),
    "no history": (drop("history"), "lacks history", 2),
    "a string best.value": (set_in(["best", "value"], "high"), "best.value", 2),
    "a garbage scheduler state": (set_in(["scheduler"], {"step": 1, "last_epoch": "x"}), "scheduler", 2),
    "a scheduler of another length": (set_in(["scheduler", "T_max"], 0), "scheduler.T_max", None),
    "a scheduler stepped elsewhere": (set_in(["scheduler", "last_epoch"], 10 ** 12), "scheduler.last_epoch", None),
    "a string learning rate": (set_in(["optimizer", "param_groups", 0, "lr"], "fast"), "param_groups[0].lr", 2),
    "an adam state without its second moment": (lambda c: c["optimizer"]["state"][0].pop("exp_avg_sq"),
                                                "optimizer.state[0] lacks exp_avg_sq", 2),
    "the state of a parameter the model lacks": (set_in(["optimizer", "state", 99], {}), "optimizer.state", 2),
    "a history row of lists": (set_in(["history", 0, "train_loss"], [1.0]), "history[0].train_loss", 2),
}


@pytest.mark.parametrize("case", RESUME_CASES)
def test_a_bad_resume_field_is_one_line_naming_it(adam_run, tmp_path, capsys, case):
    change, named, epochs = RESUME_CASES[case]
    run = crafted(adam_run, tmp_path, change)
    before = (run / "last.pt").read_bytes()
    err = one_line(capsys, ["fit", "--resume", str(run)] + (["--epochs", str(epochs)] if epochs else []))
    assert named in err and "last.pt" in err
    assert (run / "last.pt").read_bytes() == before   # nothing the user had is changed


def test_an_adam_moment_of_the_wrong_shape_is_refused_before_the_fused_step(adam_run, tmp_path):
    """The fused Adam step reads the moment as the parameter's size: a smaller one was written past its end (a
    segmentation fault, or glibc's abort), in a process of its own here."""
    run = crafted(adam_run, tmp_path, set_in(["optimizer", "state", 0, "exp_avg"], torch.zeros(3, 3)))
    done = limited_run(["fit", "--resume", str(run), "--epochs", "2"], tmp_path)
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert "optimizer.state[0].exp_avg has shape [3, 3], where its parameter has [8, 64]" in done.stderr


def test_a_resume_of_the_runs_own_checkpoint_is_not_refused(adam_run, tmp_path):
    """The checks refuse what does not fit, not the run's own state: it resumes and trains a second epoch."""
    run = crafted(adam_run, tmp_path, lambda c: None)
    assert main(["fit", "--resume", str(run), "--epochs", "2"]) == 0
    assert torch.load(run / "last.pt", weights_only=True)["epoch"] == 2


def test_a_ranks_rng_state_is_checked_where_it_is_restored(adam_run):
    """Under torchrun each rank restores its own entry of rng_ranks (World.mine): a bad one is named on that
    rank, and the process's RNG is left as it was."""
    ranks = [ckpt_io.rng_state(), short_rng()]
    mine = World(rank=1, size=2).mine(ranks)
    before = torch.get_rng_state()
    with pytest.raises(CheckpointError, match=r"rng_ranks\[1\]\.torch must be a uint8 tensor of"):
        ckpt_io.set_rng_state(mine, "rng_ranks[1]")
    assert torch.equal(torch.get_rng_state(), before)


@pytest.mark.slow
def test_two_processes_refuse_a_bad_rank_1_rng_state_in_one_line_each(tmp_path):
    """`fit --nproc 2 --resume` of a checkpoint whose rank 1 RNG state is cut short: each rank says it in one line
    (rank 1 raised torch's traceback), and torchrun exits with the ranks' status."""
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    argv = [sys.executable, "-m", "nettrain", "fit", "--dataset", "digits", "--model", "mlp", "--model.args.hidden",
            "[8]", "--batch-size", "64", "--epochs", "1", "--precision", "32", "--nproc", "2", *QUIET]
    run = tmp_path / "run"
    done = subprocess.run(argv + ["--run-dir", str(run)], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    ckpt = torch.load(run / "last.pt", weights_only=True)
    assert len(ckpt["rng_ranks"]) == 2
    ckpt["rng_ranks"][1] = short_rng()
    torch.save(ckpt, run / "last.pt")
    done = subprocess.run([sys.executable, "-m", "nettrain", "fit", "--resume", str(run), "--epochs", "2",
                           "--nproc", "2"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert "rng_ranks[1].torch must be a uint8 tensor of" in done.stderr


# ---- a built-in model's sizes ----------------------------------------------------------------------------------

def test_a_layer_width_beyond_the_limit_is_one_line(capsys):
    err = one_line(capsys, ["fit", "--dataset", "digits", "--model", "mlp", "--model.args.hidden", "[10000000000]",
                            "--epochs", "1", *QUIET])
    assert "hidden" in err and "16,777,216" in err and "--model.args.hidden" in err


def test_a_model_of_too_many_parameters_is_refused_before_it_is_allocated(tmp_path):
    """Two layers of 100,000: 10 billion parameters (40 GB), each width within the limit: counted on the meta
    device, refused in a process that could not have allocated them."""
    done = limited_run(["fit", "--dataset", "digits", "--model", "mlp", "--model.args.hidden", "[100000, 100000]",
                        "--epochs", "1", "--run-dir", str(tmp_path / "run"), *QUIET], tmp_path)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "10,007,600,010 parameters" in done.stderr and "1,000,000,000" in done.stderr
    assert "--model.args" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


# ---- model.onnx.json -------------------------------------------------------------------------------------------

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """A tiny image model and a tiny text model, each trained for an epoch and exported once for the module."""
    from test_text import texts_and_labels, write_csv
    from nettrain.export import export
    folder = tmp_path_factory.mktemp("exports")
    image = nettrain.fit(dataset="digits", model="mlp", epochs=1, run_dir=folder / "image", **TINY, **QUIET_API)
    texts = write_csv(folder / "texts.csv", texts_and_labels())
    text = nettrain.fit(dataset="text", data_dir=str(texts), model="fasttext", epochs=1, run_dir=folder / "text",
                        **{"model.args.embed": 8}, **QUIET_API)
    for run in (image, text):
        export(run.dir, "onnx", say=lambda line: None)
    png = folder / "digit.png"
    from PIL import Image
    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8)).save(png)
    return {"image": (image.dir, [str(png)]), "text": (text.dir, ["free prize now"])}


def edit(path, value):
    def change(meta):
        for key in path[:-1]:
            meta = meta[key]
        if value is KeyError:
            del meta[path[-1]]
        else:
            meta[path[-1]] = value
    return change


def more_words(meta):
    p = meta["preprocessing"]
    p["vocab"] = p["vocab"] + [f"word{i}" for i in range(1000)]


# the case, the export it edits, the edit, the words the refusal must hold
SIDECAR_CASES = {
    "no preprocessing": ("image", edit(["preprocessing"], KeyError), "preprocessing must be an object"),
    "kind a list": ("image", edit(["preprocessing", "kind"], ["image"]), "with a kind"),
    "classes null": ("image", edit(["classes"], None), "classes must be a list"),
    "classes short": ("image", edit(["classes"], ["0", "1"]), "classes names 2 classes, but the graph has 10"),
    "a bogus dtype": ("image", edit(["input", "dtype"], "bogus"), "input.dtype must be the graph's 'uint8'"),
    "width a string": ("image", edit(["preprocessing", "width"], "8"), "preprocessing.width"),
    "height a string": ("image", edit(["preprocessing", "height"], "8"), "preprocessing.height"),
    "channels 7": ("image", edit(["preprocessing", "channels"], 7), "preprocessing.channels"),
    "no input": ("image", edit(["input"], KeyError), "it has no 'input'"),
    "input.shape a string": ("image", edit(["input", "shape"], "x"), "input.shape"),
    "vocab an int": ("text", edit(["preprocessing", "vocab"], 5), "preprocessing.vocab must be a list"),
    "no vocab for text": ("text", edit(["preprocessing", "vocab"], KeyError), "preprocessing.vocab must be a list"),
    "a vocabulary larger than the embedding": ("text", more_words, "more than the model's embedding takes"),
    "max_len a string": ("text", edit(["preprocessing", "max_len"], "5"), "preprocessing.max_len"),
    "text classes short": ("text", edit(["classes"], ["neg"]), "classes names 1 classes, but the graph has 2"),
    "tokenizer a list": ("text", edit(["preprocessing", "tokenizer"], ["words"]), "preprocessing.tokenizer"),
}


def crafted_export(exports, kind, change, tmp_path) -> tuple:
    run, inputs = exports[kind]
    folder = tmp_path / "ship"
    folder.mkdir()
    shutil.copy(run / "model.onnx", folder / "model.onnx")
    meta = json.loads((run / "model.onnx.json").read_text())
    change(meta)
    (folder / "model.onnx.json").write_text(json.dumps(meta))
    return folder / "model.onnx", inputs


@pytest.mark.parametrize("case", SIDECAR_CASES)
def test_a_bad_model_onnx_json_field_is_one_line_naming_it(exports, tmp_path, capsys, case):
    kind, change, named = SIDECAR_CASES[case]
    model, inputs = crafted_export(exports, kind, change, tmp_path)
    err = one_line(capsys, ["predict", str(model), *inputs])
    assert named in err and "model.onnx.json" in err and "nettrain export RUN" in err


def test_the_exports_own_model_onnx_json_predicts(exports, capsys):
    for kind, (run, inputs) in exports.items():
        assert main(["predict", str(run / "model.onnx"), *inputs]) == 0
    assert "%" in capsys.readouterr().out


def test_an_image_size_of_200000_is_refused_before_anything_is_allocated(exports, tmp_path):
    """Pillow's resize to 200000 x 200000 asked for 40 GB: the size is refused from the record, in a process that
    could not have allocated it."""
    def huge(meta):
        meta["preprocessing"].update(width=200000, height=200000)
        meta["input"]["shape"] = [None, 200000, 200000, 1]
    model, inputs = crafted_export(exports, "image", huge, tmp_path)
    done = limited_run(["predict", str(model), *inputs], tmp_path)
    assert done.returncode == 2, done.stderr[-2000:]
    assert len(done.stderr.strip().splitlines()) == 1
    assert "input.shape" in done.stderr and "more than the limit of 33,554,432" in done.stderr


def test_the_torch_free_bounds_are_the_checkpoints():
    from nettrain import onnxpredict
    from nettrain.engine import checkfields
    assert onnxpredict.MAX_INPUT_VALUES == checkfields.MAX_INPUT_VALUES
    assert onnxpredict.MAX_IMAGE_SIZE == checkfields.MAX_IMAGE_SIZE
    assert onnxpredict.MAX_OUTPUTS == checkfields.MAX_OUTPUTS


# ---- the run files the report reads ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def report_run(tmp_path_factory):
    """A run with its report's files (predictions.npz, confusion_matrix.csv...)."""
    return nettrain.fit(dataset="digits", model="mlp", epochs=1, run_dir=tmp_path_factory.mktemp("rep") / "run",
                        **TINY, **{"run.progress": "none", "run.tensorboard": False}).dir


def npz_with(**arrays):
    def change(run):
        with np.load(run / "predictions.npz") as npz:
            kept = {k: npz[k] for k in npz.files}
        np.savez_compressed(run / "predictions.npz", **{**kept, **arrays})
    return change


def text_of(name, text):
    return lambda run: (run / name).write_text(text)


def declaring_a_huge_array(run):
    """An .npy member whose header declares 8 GB of float64 (the file itself: a few hundred bytes)."""
    import zipfile
    header = "{'descr': '<f8', 'fortran_order': False, 'shape': (1073741824,), }"
    header += " " * (63 - (len(header) + 10) % 64) + "\n"
    with zipfile.ZipFile(run / "predictions.npz") as z:
        members = {name: z.read(name) for name in z.namelist()}
    members["confidence.npy"] = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode()
    with zipfile.ZipFile(run / "predictions.npz", "w") as z:
        for name, data in members.items():
            z.writestr(name, data)


# the case, the change to the run, the file the report's note names, words of the note
REPORT_CASES = {
    "a string top_loss": (npz_with(top_loss=np.array(["high"] * 12)), "predictions.npz", "top_loss"),
    "a predicted class beyond the classes": (npz_with(top_pred=np.full(12, 99)), "predictions.npz", "top_pred"),
    "an array declaring 8 GB": (declaring_a_huge_array, "predictions.npz", "8,589,934,592 bytes"),
    "a count too large for 64 bits": (text_of("confusion_matrix.csv", "x,a,b\na,99999999999999999999999,1\nb,1,1\n"),
                                      "confusion_matrix.csv", "is not a count"),
    "a negative count": (text_of("confusion_matrix.csv", "x,a,b\na,-5,1\nb,1,1\n"), "confusion_matrix.csv",
                         "is not a count"),
    "an epoch of inf": (text_of("metrics.csv", "epoch,train_loss\ninf,1\n"), "metrics.csv", "epoch inf"),
    "a resume record whose changes are a number": (text_of("events.jsonl", '{"event": "resume", "changed": 5}\n'),
                                                   "events.jsonl", "not a resume's record"),
}


@pytest.mark.parametrize("case", REPORT_CASES)
def test_a_bad_run_file_is_left_out_of_the_report_with_a_note(report_run, tmp_path, capsys, case):
    change, name, words = REPORT_CASES[case]
    run = tmp_path / "run"
    shutil.copytree(report_run, run)
    change(run)
    assert main(["report", str(run)]) == 0
    assert "Traceback" not in capsys.readouterr().err
    from nettrain.report.read import read
    notes = [n for n in read(run).notes if n.startswith(name)]
    assert len(notes) == 1 and words in notes[0], read(run).notes
    import html
    assert html.escape(notes[0]) in (run / "report.html").read_text()
