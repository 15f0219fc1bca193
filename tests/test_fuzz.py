"""Fuzzing what nettrain reads from a run folder (hypothesis): one field at a time of a real checkpoint, of a real
export's model.onnx.json and of the run files the report reads is replaced by a value of another type, shape or
size (non-finite, huge, empty, absent), and the code the commands run on it (loading, predict, evaluate, a
resume; the torch-free predict; the report's reading and drawing) must succeed or say one line (a NettrainError):
never another exception, a crash or a hang. The examples are bounded (max_examples, each small), and those
that train or draw a full report are marked slow."""
import copy
import io
import json
import math
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from hypothesis import HealthCheck, Phase, given, settings, strategies as st

import nettrain
from nettrain.cli import main
from nettrain.engine import checkpoint as ckpt_io
from nettrain.errors import NettrainError
from nettrain.kinds import KINDS
from conftest import QUIET_API

TINY = {"model.args.hidden": [8], "batch_size": 512}
FUZZ = settings(deadline=None, database=None, derandomize=True,
                phases=[Phase.explicit, Phase.generate, Phase.shrink],   # no explain phase: minutes per failure
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


class _Delete:
    def __repr__(self):
        return "<the field left out>"


DELETE = _Delete()   # a replacement that leaves the field out


def paths(obj, prefix=(), depth=6) -> list:
    """Every field of a nest of mappings and lists, as key paths (of a long list, its first two and last items)."""
    out = []
    if depth == 0:
        return out
    if isinstance(obj, dict):
        items = list(obj.items())
    elif isinstance(obj, (list, tuple)):
        items = [(i, obj[i]) for i in sorted({0, 1, len(obj) - 1}) if 0 <= i < len(obj)]
    else:
        return out
    for key, value in items:
        out.append(prefix + (key,))
        out += paths(value, prefix + (key,), depth - 1)
    return out


def replaced(obj, path, value):
    """A deep copy of `obj` with the field at `path` set to `value` (or removed: DELETE)."""
    obj = copy.deepcopy(obj)
    parent = obj
    for key in path[:-1]:
        parent = parent[key]
    if isinstance(parent, tuple):   # torch.load gives tuples (betas): rebuilt as a list with the change
        return replaced_in_tuple(obj, path, value)
    if value is DELETE:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return obj


def replaced_in_tuple(obj, path, value):
    parent = obj
    for key in path[:-2]:
        parent = parent[key]
    items = list(parent[path[-2]])
    if value is DELETE:
        del items[path[-1]]
    else:
        items[path[-1]] = value
    parent[path[-2]] = tuple(items)
    return obj


def at(obj, path):
    for key in path:
        obj = obj[key]
    return obj


PLAIN = [DELETE, None, True, 0, -1, 3, 2 ** 31, 2 ** 63, 10 ** 30, 0.5, -1e-3, math.nan, math.inf, -math.inf, 1e308,
         "", "x", "\x1b[2J", "a" * 5000, [], [1, 2], ["a"], {}, {"a": 1}, [[1]]]


def variants(value) -> list:
    """Values to put where `value` was: of other types, and of its own type changed in size or shape."""
    out = list(PLAIN)
    if isinstance(value, torch.Tensor):
        flat = value.flatten()
        out += [torch.zeros(0), torch.tensor(1.0), torch.empty(0, 10 ** 9), torch.cat([flat, flat]),
                value.to(torch.int64), value.to(torch.uint8), value.to(torch.bool), value.to(torch.float16),
                torch.full(value.shape, math.nan), torch.full(value.shape, math.inf), value.unsqueeze(0)]
        if value.numel() > 1:
            out += [flat[:-1], flat]
        if value.dim() >= 1:
            out += [value.float().to_sparse()]
        if value.dim() == 2:
            out += [value.T]
        if value.is_floating_point():
            out += [value.to(torch.complex64), value.double()]
    elif isinstance(value, bool):
        out += [not value]
    elif isinstance(value, int):
        out += [value + 1, value - 1, -value, value * 1000, float(value)]
    elif isinstance(value, float):
        out += [value * 2, -value, int(value)]
    elif isinstance(value, (list, tuple)):
        out += [list(value[:1]), list(value) + list(value[:1]), list(value) * 3, list(reversed(value)),
                tuple(value)]
    elif isinstance(value, dict):
        out += [{k: v for k, v in list(value.items())[1:]}, {**value, "unexpected": 1}]
    return out


def said_in_one_line(capsys, rc: int):
    """A command's outcome: success, or its error said in one line (never a traceback)."""
    err = capsys.readouterr().err
    assert "Traceback" not in err, err[-3000:]
    if rc != 0:
        lines = [line for line in err.splitlines() if line.startswith("nettrain: error: ")]
        assert rc in (1, 2) and lines, err[-3000:]


def one_line(e: NettrainError):
    assert "\n" not in str(e) and str(e).strip(), repr(str(e))


# ---- a checkpoint's fields -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A run of Adam (its fused CPU step) with a validation split, an EMA of the weights and Lookahead: every
    field a checkpoint can hold; and its last.pt as loaded."""
    run = nettrain.fit(dataset="digits", model="mlp", epochs=1, optimizer="adam", precision="32",
                       run_dir=tmp_path_factory.mktemp("fuzz") / "run", **TINY, **QUIET_API,
                       **{"data.val_fraction": 0.2, "train.ema": 0.9, "train.lookahead": 2}).dir
    return run, torch.load(run / "last.pt", weights_only=True)


def checkpoint_fields(ckpt) -> list:
    return sorted(paths(ckpt), key=str)


def mutated_run(trained, folder: Path, path, value) -> Path:
    run, ckpt = trained
    copy_ = folder / "run"
    shutil.copytree(run, copy_)
    torch.save(replaced(ckpt, path, value), copy_ / "last.pt")
    return copy_


def draw_field(data, fields: list, sample):
    path = data.draw(st.sampled_from(fields), label="field")
    return path, data.draw(st.sampled_from(variants(at(sample, path))), label="value")


@settings(FUZZ, max_examples=50)
@given(data=st.data())
def test_a_checkpoint_field_changed_loads_predicts_and_resumes_or_says_one_line(trained, capsys, data):
    """Loading (evaluate, predict, export, nettrain.load), predicting with it, and resuming the finished run
    (every state restored, nothing trained)."""
    path, value = draw_field(data, checkpoint_fields(trained[1]), trained[1])
    with tempfile.TemporaryDirectory() as folder:
        run = mutated_run(trained, Path(folder), path, value)
        try:
            ckpt_io.load(run / "last.pt", kinds=KINDS)
            predictor = nettrain.load(run / "last.pt")
            predictor.predict(np.zeros((2, 8, 8, 1), dtype=np.uint8))
        except NettrainError as e:
            one_line(e)
        said_in_one_line(capsys, main(["fit", "--resume", str(run)]))


@pytest.mark.slow
@settings(FUZZ, max_examples=150)
@given(data=st.data())
def test_a_checkpoint_field_changed_resumes_training_and_evaluates_or_says_one_line(trained, capsys, data):
    """A resume that trains an epoch more with what was restored (a fused Adam step over the moments), and
    `nettrain evaluate` of the checkpoint on its test split."""
    path, value = draw_field(data, checkpoint_fields(trained[1]), trained[1])
    with tempfile.TemporaryDirectory() as folder:
        run = mutated_run(trained, Path(folder), path, value)
        said_in_one_line(capsys, main(["evaluate", str(run / "last.pt")]))
        said_in_one_line(capsys, main(["fit", "--resume", str(run), "--epochs", "2"]))


# ---- model.onnx.json's fields ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """An image, a text and a table model, each trained for an epoch and exported once: (model.onnx, its record,
    what predict is given)."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from PIL import Image
    from test_text import texts_and_labels, write_csv
    from nettrain.export import export
    folder = tmp_path_factory.mktemp("exports")
    texts = write_csv(folder / "texts.csv", texts_and_labels())
    runs = {"image": nettrain.fit(dataset="digits", model="mlp", epochs=1, run_dir=folder / "image", **TINY,
                                  **QUIET_API),
            "text": nettrain.fit(dataset="text", data_dir=str(texts), model="fasttext", epochs=1,
                                 run_dir=folder / "text", **{"model.args.embed": 8}, **QUIET_API),
            "table": nettrain.fit(dataset="iris", model="mlp", epochs=1, run_dir=folder / "table", **TINY,
                                  **QUIET_API)}
    png, rows = folder / "digit.png", folder / "rows.csv"
    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8)).save(png)
    rows.write_text("sepal length (cm),sepal width (cm),petal length (cm),petal width (cm)\n5.1,3.5,1.4,0.2\n")
    given_ = {"image": [str(png)], "text": ["free prize now", "see you"], "table": ["--file", str(rows)]}
    out = {}
    for kind, run in runs.items():
        export(run.dir, "onnx", say=lambda line: None)
        out[kind] = (run.dir / "model.onnx", json.loads((run.dir / "model.onnx.json").read_text()), given_[kind])
    return out


@settings(FUZZ, max_examples=60)
@given(data=st.data())
def test_a_model_onnx_json_field_changed_predicts_or_says_one_line(exports, capsys, data):
    kind = data.draw(st.sampled_from(sorted(exports)), label="export")
    model, meta, inputs = exports[kind]
    path, value = draw_field(data, sorted(paths(meta), key=str), meta)
    if isinstance(value, torch.Tensor):
        value = value.tolist() if value.layout == torch.strided and value.numel() < 100 else None
    with tempfile.TemporaryDirectory() as folder:
        shutil.copy(model, Path(folder) / "model.onnx")
        (Path(folder) / "model.onnx.json").write_text(json.dumps(replaced(meta, path, value)))
        said_in_one_line(capsys, main(["predict", str(Path(folder) / "model.onnx"), *inputs]))


# ---- the run files the report reads ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def reported(tmp_path_factory):
    """Runs with their report's files: images (the test images, top losses, calibration, confusion matrix), a 2-D
    classification (the decision regions) and a 1-D regression (its curve)."""
    folder = tmp_path_factory.mktemp("reported")
    options = {**QUIET_API, "run.report": True}
    return [nettrain.fit(dataset="digits", model="mlp", epochs=2, run_dir=folder / "digits", **TINY, **options).dir,
            nettrain.fit(dataset="two-gaussians", model="mlp", epochs=1, run_dir=folder / "gauss", **options).dir,
            nettrain.fit(dataset="quadratic", model="mlp", epochs=1, run_dir=folder / "quad", **options).dir]


def csv_cells(text: str) -> list:
    return [line.split(",") for line in text.splitlines()]


CELLS = ["", "x", "-1", "0", "1e400", "inf", "nan", "-inf", "99999999999999999999999", "1.5", "3", "\x1b[2J",
         "a,b", '"']


def mutate_csv(data, text: str) -> str:
    """One cell of a CSV file replaced, or a row or column dropped, or a row repeated."""
    rows = csv_cells(text)
    how = data.draw(st.sampled_from(["cell", "drop row", "drop column", "repeat row", "empty"]), label="csv")
    if how == "empty" or not rows:
        return ""
    r = data.draw(st.integers(0, len(rows) - 1), label="row")
    c = data.draw(st.integers(0, max(len(row) for row in rows) - 1), label="column")
    if how == "cell" and c < len(rows[r]):
        rows[r][c] = data.draw(st.sampled_from(CELLS), label="cell value")
    elif how == "drop row":
        del rows[r]
    elif how == "drop column":
        rows = [[v for i, v in enumerate(row) if i != c] for row in rows]
    elif how == "repeat row":
        rows.insert(r, list(rows[r]))
    return "\n".join(",".join(row) for row in rows) + "\n"


def mutate_json(data, value):
    """One field of a JSON (or YAML) document replaced by a value of another kind."""
    fields = sorted(paths(value), key=str)
    if not fields:
        return data.draw(st.sampled_from([v for v in PLAIN if v is not DELETE]), label="document")
    path = data.draw(st.sampled_from(fields), label="field")
    new = data.draw(st.sampled_from([v for v in variants(at(value, path)) if not isinstance(v, torch.Tensor)]),
                    label="value")
    return replaced(value, path, new)


def array_variants(a: np.ndarray) -> list:
    """Arrays to put where predictions.npz's `a` was: other kinds, shapes, sizes and values."""
    out = [np.array("text"), np.array(["a"] * max(1, a.size)), np.zeros(0), np.array(math.nan), np.array(7),
           np.full(a.shape, math.nan), np.full(a.shape, math.inf), np.full(a.shape, -1), np.full(a.shape, 10 ** 9),
           a.reshape(-1), a[None], np.zeros((2, 3, 4, 5, 6), dtype=np.uint8)]
    if a.dtype.kind in "biuf":
        out += [a.astype(np.float64), np.nan_to_num(a).astype(np.int64), a.astype(bool)]
    if a.ndim:
        out += [np.concatenate([a.reshape(-1)] * 2), a[:1], a[1:]]
    return out


def mutate_npz(data, file: Path):
    with np.load(file) as npz:
        arrays = {k: npz[k] for k in npz.files}
    key = data.draw(st.sampled_from(sorted(arrays)), label="array")
    new = data.draw(st.sampled_from([DELETE] + array_variants(arrays[key])), label="replacement")
    if new is DELETE:
        del arrays[key]
    else:
        arrays[key] = new
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    file.write_bytes(buffer.getvalue())


def mutate_run_file(data, run: Path) -> str:
    names = sorted(p.name for p in run.iterdir() if p.suffix in (".csv", ".json", ".jsonl", ".yaml", ".npz")
                   and p.name != "manifest.json" and not p.name.startswith("."))
    name = data.draw(st.sampled_from(names), label="file")
    file = run / name
    if name.endswith(".npz"):
        mutate_npz(data, file)
    elif name.endswith(".csv"):
        file.write_text(mutate_csv(data, file.read_text()))
    elif name.endswith(".yaml"):
        file.write_text(yaml.safe_dump(mutate_json(data, yaml.safe_load(file.read_text()))))
    elif name.endswith(".jsonl"):
        lines = [json.loads(line) for line in file.read_text().splitlines()] or [{"event": "resume"}]
        file.write_text("\n".join(json.dumps(mutate_json(data, line)) for line in lines) + "\n")
    else:
        file.write_text(json.dumps(mutate_json(data, json.loads(file.read_text()))))
    return name


# the figures drawn from each file (report/figures.py); the page (report/html.py) reads them all
DRAWN_FROM = {"metrics.csv": ("learning_curves", "lr_schedule"),
              "confusion_matrix.csv": ("confusion_matrix", "per_class_scores", "test_examples", "top_losses",
                                       "decision_boundary"),
              "predictions.npz": ("test_examples", "top_losses", "calibration", "decision_boundary",
                                  "regression_fit")}


def drawn_report(run: Path, changed: str):
    """What `nettrain report` computes, without writing it: the record read, the figures drawn from the `changed`
    file (the others are as the fit drew them), the page."""
    from nettrain.report import status_of
    from nettrain.report.figures import FIGURES, png
    from nettrain.report.html import page
    from nettrain.report.read import read
    rec = read(run)
    drawn = []
    for name, caption, draw, _ in FIGURES:
        if draw.__name__ in DRAWN_FROM.get(changed, ()):
            fig = draw(rec)
            if fig is not None:
                drawn.append((name, caption, png(fig)))
    page(rec, drawn, status_of(rec), live=False)


@settings(FUZZ, max_examples=25)
@given(data=st.data())
def test_a_run_file_field_changed_is_reported_or_noted(reported, data):
    """The report reads every file as data: a file it cannot use is left out with a note, never a traceback."""
    source = data.draw(st.sampled_from(reported), label="run")
    with tempfile.TemporaryDirectory() as folder:
        run = Path(folder) / "run"
        shutil.copytree(source, run)
        drawn_report(run, mutate_run_file(data, run))


@pytest.mark.slow
@settings(FUZZ, max_examples=60)
@given(data=st.data())
def test_many_run_file_fields_changed_are_reported_or_noted(reported, data):
    """As above, with more examples and several files changed at once, through the command."""
    source = data.draw(st.sampled_from(reported), label="run")
    with tempfile.TemporaryDirectory() as folder:
        run = Path(folder) / "run"
        shutil.copytree(source, run)
        for _ in range(data.draw(st.integers(1, 3), label="files changed")):
            mutate_run_file(data, run)
        assert main(["report", str(run)]) == 0
