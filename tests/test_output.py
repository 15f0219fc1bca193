"""What nettrain prints and writes from data is safe and says what it did: a number that is not finite is refused,
not read as text; a model whose outputs are not finite is refused, not printed as "nan%"; names and values read
from files reach the terminal without their control characters and a spreadsheet as text, never as a formula;
Python's warnings are one line each."""
import csv
import re
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

import nettrain
from nettrain.cli import main
from nettrain.errors import ModelError, clean
from nettrain.report.read import read
from conftest import QUIET

TINY = ["--model", "mlp", "--model.args.hidden", "[8]", "--epochs", "1", "--batch-size", "512", *QUIET]
# a class name that retitles the terminal window, one that clears the screen, a C1 control sequence introducer
TITLE, CLEAR, CSI = "\x1b]0;pwned\x07", "\x1b[2J", "x\x9b31m"
FORMULAS = ['=HYPERLINK("http://evil.example","click")', "+1+cmd", "@SUM(A1)", "-2+3", "'quoted"]   # (a cell is stripped: no tab first)
CLASSES = [TITLE, CLEAR, CSI, *FORMULAS, "-1", "plain"]
CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")   # every control character but the newline


def write_table(path, target="y", classes=CLASSES, rows_per_class=8, cell=None):
    """A CSV table: two numeric columns, a text one and the target; `cell` = (row, column, text) overrides one."""
    rng = np.random.RandomState(0)
    rows = [[f"{rng.normal(k):.3f}", f"{rng.normal():.3f}", rng.choice(["red", "blue"]), c]
            for _ in range(rows_per_class) for k, c in enumerate(classes)]
    if cell is not None:
        rows[cell[0]][["a", "b", "color", target].index(cell[1])] = cell[2]
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["a", "b", "color", target])
        w.writerows(rows)
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two table runs whose class names carry terminal escapes and spreadsheet formulas, the second with a target
    column named with an escape (a config value: data.target)."""
    where = tmp_path_factory.mktemp("output")
    made = []
    for name, target in (("one", "y"), ("two", "y" + CLEAR)):
        table = write_table(where / f"{name}.csv", target)
        nettrain.fit(dataset="csv", data_dir=str(table), target=target, model="mlp", epochs=1, batch_size=512,
                     run_dir=where / name, **{"model.args.hidden": [8], "run.progress": "none",
                                              "run.tensorboard": False, "run.report": False})
        made.append(where / name)
    return made


def assert_no_control_characters(text: str):
    found = CONTROL.search(text)
    assert found is None, f"{found.group()!r} reached the terminal at {text[max(0, found.start() - 40):found.end()]!r}"


def test_names_and_values_from_a_run_reach_the_terminal_without_their_escapes(runs, tmp_path, capsys):
    one, two = runs
    capsys.readouterr()
    assert main(["evaluate", str(one)]) == 0
    out = capsys.readouterr().out
    assert_no_control_characters(out)
    for name in CLASSES:   # each class's line, its name escaped (\x1b, \x07, \x9b)
        assert f"  {clean(name)} " in out
    assert main(["predict", str(one), "--file", str(write_table(tmp_path / "rows.csv", rows_per_class=1)),
                 "--topk", str(len(CLASSES))]) == 0
    out = capsys.readouterr().out
    assert_no_control_characters(out)
    assert out.count(clean(TITLE)) == len(CLASSES)   # every row lists every class
    assert main(["compare", str(one), str(two), "--out", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert_no_control_characters(captured.out + captured.err)
    assert f"y{clean(CLEAR)}" in captured.out   # data.target, the key that differs


def test_the_fit_s_log_shows_the_data_s_class_names_without_their_escapes(tmp_path, capsys):
    table = write_table(tmp_path / "t.csv")
    assert main(["fit", "--dataset", "csv", "--data-dir", str(table), "--target", "y", *TINY, "--run.progress",
                 "lines", "--run-dir", str(tmp_path / "run")]) == 0
    captured = capsys.readouterr()
    assert_no_control_characters(captured.out + captured.err)
    assert f"  {clean(TITLE)} " in captured.out   # the test's per-class table


def test_an_error_quoting_a_run_s_class_names_is_one_clean_line(runs, tmp_path, capsys):
    """Evaluating on a table with a class the model does not know names the model's classes, read from the run."""
    table = write_table(tmp_path / "other.csv", classes=["unknown", *CLASSES])
    capsys.readouterr()
    assert main(["evaluate", str(runs[0]), "--data-dir", str(table)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nettrain: error: ") and err.count("\n") == 1 and clean(TITLE) in err
    assert_no_control_characters(err)


def test_class_names_are_text_in_confusion_matrix_csv_never_formulas(runs):
    with open(runs[0] / "confusion_matrix.csv", newline="", encoding="utf-8") as f:
        header = next(csv.reader(f))[1:]
    by_name = dict(zip(sorted(CLASSES), header))
    for name in FORMULAS:   # a spreadsheet shows a cell starting with a single quote as the text after it
        assert by_name[name] == "'" + name
    assert by_name["-1"] == "-1" and by_name["plain"] == "plain"   # a number is no formula
    assert read(runs[0]).classes == sorted(CLASSES)   # the report reads the names back as they were


@pytest.mark.parametrize("value", ["inf", "1e400", "-Infinity", "+nan"])
@pytest.mark.parametrize("column", ["a", "y"])
def test_a_number_that_is_not_finite_in_a_column_of_numbers_is_refused_by_column_and_line(tmp_path, capsys, value,
                                                                                        column):
    """One such cell used to turn the column into text: a one-hot block of one level per distinct number."""
    table = write_table(tmp_path / "t.csv", classes=["0", "1"], rows_per_class=24, cell=(6, column, value))
    assert main(["fit", "--dataset", "csv", "--data-dir", str(table), "--target", "y", *TINY, "--run-dir",
                 str(tmp_path / "run")]) == 2
    fix = "remove the row" if column == "y" else "leave the cell empty (filled with the column's training median)"
    assert capsys.readouterr().err == (
        f"nettrain: error: {table} line 8: column {column!r} holds {value!r}, a number that is not finite (float64 "
        f"ends at 1.8e308), where every other cell is a number; give a finite number there, or {fix}\n")
    assert not (tmp_path / "run").exists()


def test_inf_among_text_is_a_level_like_any_other(tmp_path, capsys):
    """(The refusal above stays out of the way of a text column.)"""
    table = write_table(tmp_path / "t.csv", classes=["0", "1"], rows_per_class=24, cell=(6, "color", "inf"))
    assert main(["fit", "--dataset", "csv", "--data-dir", str(table), "--target", "y", *TINY, "--run-dir",
                 str(tmp_path / "run")]) == 0
    color = next(c for c in torch.load(tmp_path / "run" / "best.pt", weights_only=True)["data"]["table"]["columns"]
                 if c["name"] == "color")
    assert color["type"] == "categorical" and set(color["levels"]) <= {"blue", "inf", "red"}


def test_predict_refuses_a_row_with_a_number_that_is_not_finite(runs, tmp_path, capsys):
    rows = write_table(tmp_path / "rows.csv", rows_per_class=1, cell=(2, "b", "1e400"))
    capsys.readouterr()
    assert main(["predict", str(runs[0]), "--file", str(rows)]) == 2
    assert capsys.readouterr().err == (
        f"nettrain: error: {rows} line 4: column 'b' holds '1e400', a number that is not finite (float64 ends at "
        f"1.8e308); give a finite number, or leave the cell empty for the training median "
        f"{nettrain.load(runs[0]).info.table['columns'][1]['fill']:g}\n")


def test_a_model_whose_outputs_are_not_finite_is_refused_naming_the_checkpoint(runs, tmp_path, capsys):
    """Weights holding NaN (a damaged file, a diverged run from elsewhere) used to print "nan%" and exit 0."""
    state = torch.load(runs[0] / "best.pt", weights_only=True)
    weight = next(k for k, v in state["model"].items() if v.is_floating_point())
    state["model"][weight][0] = float("nan")
    torch.save(state, tmp_path / "nan.pt")
    rows = write_table(tmp_path / "rows.csv", rows_per_class=1)
    capsys.readouterr()
    assert main(["predict", str(tmp_path / "nan.pt"), "--file", str(rows)]) == 2
    assert capsys.readouterr().err == (
        f"nettrain: error: the outputs of {tmp_path / 'nan.pt'} are not finite (NaN or infinity) for "
        f"{len(CLASSES)} of {len(CLASSES)} inputs: its weights hold NaN or infinity ({weight}); retrain it, or use "
        f"another checkpoint\n")
    with pytest.raises(ModelError, match="are not finite"):
        nettrain.load(tmp_path / "nan.pt").predict(str(rows))


def test_an_onnx_model_whose_outputs_are_not_finite_is_refused_too(runs, tmp_path, capsys):
    """(nettrain export refuses such a run: the exported file is damaged afterwards, as a download may be.)"""
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from onnx import numpy_helper
    run = tmp_path / "run"
    shutil.copytree(runs[0], run)
    assert main(["export", str(run)]) == 0
    model = onnx.load(str(run / "model.onnx"))
    for init in model.graph.initializer:
        if init.data_type == onnx.TensorProto.FLOAT:
            init.CopyFrom(numpy_helper.from_array(np.full_like(numpy_helper.to_array(init), np.inf), init.name))
    onnx.save(model, str(run / "model.onnx"))
    rows = write_table(tmp_path / "rows.csv", rows_per_class=1)
    capsys.readouterr()
    assert main(["predict", str(run / "model.onnx"), "--file", str(rows)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"nettrain: error: the outputs of {run / 'model.onnx'} are not finite (NaN or infinity) "
                          f"for {len(CLASSES)} of {len(CLASSES)} inputs") and err.count("\n") == 1


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    return nettrain.fit(dataset="digits", model="mlp", epochs=1, batch_size=512, precision="32",
                        run_dir=tmp_path_factory.mktemp("image") / "run",
                        **{"model.args.hidden": [8], "run.progress": "none", "run.tensorboard": False,
                           "run.report": False}).dir


def test_python_warnings_are_one_line_each_said_once(image_run, tmp_path, capsys, monkeypatch):
    """Pillow's DecompressionBombWarning (for an image past Image.MAX_IMAGE_PIXELS, here lowered to 100 pixels, so
    that a 12x12 image is one) used to come with Pillow's file name, line number and source line, once per image."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    images = []
    for i in range(3):
        images.append(tmp_path / f"{i}.png")
        Image.fromarray(np.full((12, 12), 40 * i, dtype=np.uint8)).save(images[-1])
    capsys.readouterr()
    assert main(["predict", str(image_run), *map(str, images)]) == 0
    captured = capsys.readouterr()
    assert captured.err == "nettrain: warning: Image size (144 pixels) exceeds limit of 100 pixels, could be " \
                           "decompression bomb DOS attack.\n"
    assert len(captured.out.splitlines()) == 3
