"""Tables (data/table.py): a CSV with --target, scikit-learn's bundled tables, predict on rows, the task's metrics,
and one-line errors for bad tables. Every CSV here is a few rows the test writes."""
import json

import numpy as np
import pytest
import torch

import nettrain
from nettrain.api import resolve_config
from nettrain.cli import main
from nettrain.data import load_data
from nettrain.data.table import features, learn, split
from nettrain.engine.metrics import classification_metrics, regression_metrics
from nettrain.errors import CheckpointError, DataError
from nettrain.runs import RUN_FILES
from conftest import QUIET

FAST = {"run.progress": "none", "run.tensorboard": False, "run.report": False, "model": "mlp", "model.args.hidden": [16]}


def write(path, text):
    path.write_text(text)
    return path


def fruit_csv(tmp_path, n=40):
    """weight (numeric, one cell missing), color (text), fruit (the class): apples heavy and red."""
    rows = ["weight,color,fruit"]
    for i in range(n):
        apple = i % 2 == 0
        weight = "" if i == 3 else str(150 + i if apple else 20 + i)
        rows.append(f"{weight},{'red' if apple else 'green'},{'apple' if apple else 'grape'}")
    return write(tmp_path / "fruit.csv", "\n".join(rows) + "\n")


def fit_cli(tmp_path, *args):
    return main(["fit", *args, "--model", "mlp", "--run-dir", str(tmp_path / "run"), *QUIET])


def error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("nettrain: error: ") and err.count("\n") == 1 and "Traceback" not in err
    return err


# ---- fit on a CSV ------------------------------------------------------------------------------------

def test_csv_classification_from_the_cli_learns_and_records_its_preprocessing(tmp_path):
    csv_path = fruit_csv(tmp_path)
    assert fit_cli(tmp_path, "--dataset", "csv", "--data-dir", str(csv_path), "--target", "fruit", "--epochs", "30",
                   "--lr", "0.01", "--batch-size", "8") == 0
    state = torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    prep = state["data"]["table"]
    assert state["data"]["kind"] == "table" and state["data"]["classes"] == ["apple", "grape"]
    assert [c["type"] for c in prep["columns"]] == ["numeric", "categorical"]
    assert prep["columns"][1]["levels"] == ["green", "red"] and state["data"]["shape"] == [3]   # 1 + one-hot 2
    assert nettrain.Config.load(tmp_path / "run" / "config.yaml").data.target == "fruit"
    model = nettrain.load(tmp_path / "run")
    assert model.evaluate()["acc"] == 1.0
    assert model.predict([{"weight": 160, "color": "red"}, {"weight": "25", "color": "green"}]).labels == \
        ["apple", "grape"]


def test_statistics_and_fill_values_come_from_the_training_rows_only():
    frame = {"x": ["1", "", "3", "1000"], "c": ["a", "b", "b", "z"], "y": ["0", "1", "0", "1"]}
    prep = learn(frame, "y", "classification", ["0", "1"], np.array([0, 1, 2]))   # row 3 is held out
    x, c = prep["columns"]
    assert x["fill"] == 2.0 and x["mean"] == pytest.approx(2.0)   # the median of 1 and 3, not of 1, 3, 1000
    assert c["fill"] == "b" and c["levels"] == ["a", "b"]         # "z" is seen only in the held-out row
    encoded = features(frame, prep, str)
    assert encoded[1, 0] == 0.0                                   # the missing cell: the median, standardized
    assert encoded[3, 1:].tolist() == [0.0, 0.0]                  # an unseen level: all zeros


@pytest.mark.parametrize("values, task, expected", [
    (["a", "b", "a", "b", "a"], "auto", "classification"),
    (["1", "2", "1", "2", "3"], "auto", "classification"),      # few distinct integers: classes
    (["1.5", "2.25", "0.5", "3.0", "2"], "auto", "regression"),
    (["1", "2", "1", "2", "1"], "regression", "regression"),    # data.task overrides
])
def test_the_task_is_read_from_the_target_and_can_be_forced(tmp_path, values, task, expected):
    rows = "\n".join(f"{i},{v}" for i, v in enumerate(values * 2))
    csv_path = write(tmp_path / "t.csv", "x,y\n" + rows + "\n")
    cfg = resolve_config(None, {"dataset": "csv", "data_dir": str(csv_path), "target": "y",
                                         "data.task": task})
    data = load_data(cfg.data)
    assert data.info.task == expected and data.info.kind == "table"
    assert len(data.train) == 8 and len(data.test) == 2


def test_regression_predictions_and_errors_are_in_the_targets_units(tmp_path):
    rows = "\n".join(f"{x},{1000 + 50 * x}" for x in range(-10, 11))   # y = 1000 + 50x exactly
    csv_path = write(tmp_path / "line.csv", "x,price\n" + rows + "\n")
    run = nettrain.fit(dataset="csv", data_dir=str(csv_path), target="price", epochs=150, lr=0.01, batch_size=4,
                       weight_decay=0.0, run_dir=str(tmp_path / "run"),
                       **{**FAST, "model.args.hidden": []})   # a linear model, not shrunk by the tables' AdamW
    assert run.model.info.task == "regression"
    value = run.model.predict([{"x": 2}]).values.item()
    assert value == pytest.approx(1100, abs=5)                 # not the standardized ~0.16
    result = run.model.evaluate()
    assert result["r2"] > 0.999 and result["mae"] < 5
    pred = run.model.predict(str(csv_path)).values.squeeze(1)  # every row, the CSV's own target ignored
    assert pred.shape == (21,)


# ---- scikit-learn's tables ---------------------------------------------------------------------------

def test_iris_is_split_stratified_and_standardized_with_training_statistics():
    data = load_data(resolve_config(None, {"dataset": "iris"}).data)
    assert data.info.classes == ["setosa", "versicolor", "virginica"] and data.info.shape == [4]
    assert torch.bincount(data.test.y).tolist() == [10, 10, 10]
    assert data.train.x.mean(0).abs().max() < 1e-5 and data.test.x.mean(0).abs().max() > 1e-3
    assert load_data(resolve_config(None, {"dataset": "diabetes"}).data).info.task == "regression"


def test_a_target_for_a_dataset_with_its_own_is_refused():
    with pytest.raises(DataError, match="data.target and data.task"):
        load_data(resolve_config(None, {"dataset": "iris", "target": "species"}).data)


# ---- predict on rows ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def iris_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("iris")
    return nettrain.fit(dataset="iris", epochs=40, lr=0.01, batch_size=16, run_dir=str(out / "run"), **FAST)


FLOWER = {"sepal length (cm)": 5.1, "sepal width (cm)": 3.5, "petal length (cm)": 1.4, "petal width (cm)": 0.2}


def test_predict_prints_one_prediction_per_csv_row(iris_run, tmp_path, capsys):
    rows = write(tmp_path / "rows.csv", ",".join(FLOWER) + "\n5.1,3.5,1.4,0.2\n6.7,3.0,5.2,2.3\n")
    capsys.readouterr()
    assert main(["predict", str(iris_run.dir), "--file", str(rows)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"{rows} row 1: setosa ") and "virginica" in lines[1]
    assert main(["predict", str(iris_run.dir), str(rows), "--json"]) == 0   # the path as an argument too
    out = json.loads(capsys.readouterr().out)["predictions"]
    assert [r["predictions"][0]["class"] for r in out] == ["setosa", "virginica"]


class FakeFrame:
    """What predict reads of a pandas DataFrame (pandas is not a dependency): columns and to_dict("records")."""

    def __init__(self, records):
        self.records, self.columns = records, list(records[0])

    def to_dict(self, orient):
        assert orient == "records"
        return self.records


def test_python_predict_takes_dicts_a_dataframe_and_missing_cells(iris_run):
    model = nettrain.load(iris_run.dir)
    probs = model.predict([FLOWER]).probs
    assert model.predict(FakeFrame([FLOWER])).probs.tolist() == probs.tolist()
    assert model.predict(FLOWER).labels == ["setosa"]   # one dict: one row
    partial = {k: v for k, v in FLOWER.items() if k != "sepal width (cm)"}   # the absent cell: the training median
    assert model.predict([partial]).probs.shape == (1, 3)


def test_bad_rows_at_predict_are_one_line_naming_the_row(iris_run, tmp_path, capsys):
    model = nettrain.load(iris_run.dir)
    with pytest.raises(DataError, match=r"row 2: column 'petal length \(cm\)' holds 'long'"):
        model.predict([FLOWER, {**FLOWER, "petal length (cm)": "long"}])
    with pytest.raises(DataError, match="'petal lenght' .* is not one the model was trained on"):
        model.predict([{"petal lenght": 1.0}])
    rows = write(tmp_path / "rows.csv", ",".join(FLOWER) + "\n5.1,3.5,1.4,0.2\n6.7,x,5.2,2.3\n")
    capsys.readouterr()
    assert main(["predict", str(iris_run.dir), "--file", str(rows)]) == 2
    err = error_line(capsys)
    assert f"{rows} line 3: column 'sepal width (cm)' holds 'x'" in err and not capsys.readouterr().out


# ---- metrics -----------------------------------------------------------------------------------------

def test_classification_metrics_match_scikit_learn():
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support
    y = np.array([0, 0, 1, 1, 1, 2, 2, 0, 1, 2, 2])
    p = np.array([0, 1, 1, 1, 0, 2, 1, 0, 1, 2, 1])
    m = classification_metrics(torch.from_numpy(confusion_matrix(y, p)))
    ref = precision_recall_fscore_support(y, p, zero_division=0)
    for key, values in zip(("precision", "recall", "f1"), ref[:3]):
        assert m[key] == pytest.approx(values.tolist())
        assert m["macro"][key] == pytest.approx(values.mean())
    never_predicted = classification_metrics(torch.tensor([[2, 0], [1, 0]]))
    assert never_predicted["precision"][1] == 0.0 and never_predicted["f1"][1] == 0.0


def test_regression_metrics_match_scikit_learn():
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score
    g = torch.Generator().manual_seed(0)
    y, pred = torch.randn(50, 1, generator=g), torch.randn(50, 1, generator=g)
    m = regression_metrics(pred, y)
    assert m["r2"] == pytest.approx(r2_score(y, pred)) and m["mse"] == pytest.approx(mean_squared_error(y, pred))
    assert m["mae"] == pytest.approx(mean_absolute_error(y, pred))
    assert regression_metrics(pred, torch.ones(50, 1))["r2"] is None   # constant targets: undefined


def test_the_run_records_test_metrics_and_evaluate_prints_them(iris_run, capsys):
    assert RUN_FILES["test_metrics"] == "test_metrics.json"
    saved = json.loads((iris_run.dir / "test_metrics.json").read_text())
    assert set(saved["per_class"]) == {"setosa", "versicolor", "virginica"}
    assert saved["macro"]["f1"] == pytest.approx(classification_metrics(iris_run.test["confusion"])["macro"]["f1"])
    assert "test_metrics.json" in json.loads((iris_run.dir / ".nettrain-run.json").read_text())["files"]
    capsys.readouterr()
    assert main(["evaluate", str(iris_run.dir)]) == 0
    out = capsys.readouterr().out
    assert "macro precision" in out and "F1" in out and "setosa" in out


def test_a_regression_run_records_mse_mae_and_r2(tmp_path):
    run = nettrain.fit(dataset="diabetes", epochs=1, run_dir=str(tmp_path / "run"), **FAST)
    saved = json.loads((tmp_path / "run" / "test_metrics.json").read_text())
    assert set(saved) >= {"mse", "mae", "r2"} and saved["r2"] == pytest.approx(run.test["r2"])
    assert saved["mse"] > 100   # diabetes progression's own units (about 25-346), not standardized


def test_evaluate_on_another_csv_applies_the_trained_preprocessing(tmp_path, capsys):
    csv_path = fruit_csv(tmp_path)
    assert fit_cli(tmp_path, "--dataset", "csv", "--data-dir", str(csv_path), "--target", "fruit", "--epochs",
                   "1") == 0
    (tmp_path / "other").mkdir()
    other = fruit_csv(tmp_path / "other")
    write(other, other.read_text().replace(",red,", ",blue,"))   # a level training never saw: all zeros
    model = nettrain.load(tmp_path / "run")
    probs = model.predict(str(other)).probs   # every row, encoded as in training
    labels = ["apple" if i % 2 == 0 else "grape" for i in range(40)]
    _, test = split(40, labels, 0)
    y = torch.tensor([i % 2 for i in test])
    result = model.evaluate(data_dir=str(other))   # its held-out 20%: relearned, "blue" would be a level
    assert result["examples"] == 8
    assert result["loss"] == pytest.approx(-probs[test, y].log().mean().item(), rel=1e-4)
    assert main(["evaluate", str(tmp_path / "run"), "--data-dir", str(tmp_path / "missing.csv")]) == 2
    assert "missing.csv does not exist" in error_line(capsys)


# ---- bad tables: one line each, nothing written ---------------------------------------------------------

@pytest.mark.parametrize("text, target, message", [
    ("a,b\n1,2\n3,4\n", "label", "there is no target column 'label'; the columns are: 'a', 'b'"),
    ("a,y\n1,x\n2,x\n3,x\n", "y", "the target column 'y' holds one class only (x)"),
    ("a,b,y\n1,2,0\n3,4\n5,6,1\n", "y", "line 3 has 2 cells but the header has 3 columns"),
    ("", "y", "is empty"),
    ("a,y\n", "y", "has a header but no rows of data"),
    ("a,y\n1,0\n2,\n3,1\n", "y", "line 3: the target column 'y' is empty"),
])
def test_bad_tables_are_refused_in_one_line_and_nothing_is_written(tmp_path, capsys, text, target, message):
    csv_path = write(tmp_path / "bad.csv", text)
    assert fit_cli(tmp_path, "--dataset", "csv", "--data-dir", str(csv_path), "--target", target) == 2
    assert message in error_line(capsys)
    assert not (tmp_path / "run").exists() and csv_path.read_text() == text


def test_a_csv_without_target_names_its_columns(tmp_path, capsys):
    csv_path = write(tmp_path / "t.csv", "a,b\n1,2\n3,4\n")
    assert fit_cli(tmp_path, "--dataset", "csv", "--data-dir", str(csv_path)) == 2
    assert "--target COLUMN (the columns of" in error_line(capsys)


def test_a_checkpoint_with_a_damaged_table_record_is_refused(iris_run, tmp_path):
    state = torch.load(iris_run.dir / "best.pt", weights_only=True)
    state["data"]["table"]["columns"][0]["std"] = -1.0
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="std > 0"):
        nettrain.load(tmp_path / "bad.pt")
    state["data"]["table"] = None
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="data.table must be a mapping"):
        nettrain.load(tmp_path / "bad.pt")


def test_a_table_of_the_target_alone_is_refused(tmp_path, capsys):
    csv_path = write(tmp_path / "t.csv", "y\n1\n2\n")
    assert fit_cli(tmp_path, "--dataset", "csv", "--data-dir", str(csv_path), "--target", "y") == 2
    assert "no column besides the target 'y'" in error_line(capsys)


def test_a_run_made_before_the_table_keys_existed_still_resumes(tmp_path):
    """A checkpoint's config without data.target/data.task (an older nettrain's) reads them as their defaults: a
    resume must not see `data.task: None -> auto` as a change and refuse."""
    run = tmp_path / "run"
    nettrain.fit(dataset="two-gaussians", epochs=1, run_dir=str(run), **FAST)
    for name in ("last.pt", "best.pt"):
        state = torch.load(run / name, weights_only=True)
        del state["config"]["data"]["target"], state["config"]["data"]["task"]
        torch.save(state, run / name)
    resumed = nettrain.fit(resume=str(run), epochs=2)
    assert [row["epoch"] for row in resumed.metrics] == [1, 2]
