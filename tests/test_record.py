"""One record: config.yaml is the config that trained; every test number of a run (test_metrics.json,
confusion_matrix.csv, predictions.npz, the report, `Run.test`, `nettrain.load(run).evaluate()`) is that of the model
best.pt holds; metrics.csv's speed column counts the data kind's examples (texts/s for text), read back from old
runs too; and the training step stays one screen."""
import ast
import csv
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import nettrain
from nettrain.metrics_row import COLUMNS, MetricsRow
from nettrain.report.read import read
from nettrain.runs import read_metrics

QUIET = {"run.progress": "none", "run.tensorboard": False, "run.report": False}
TIMINGS = {"seconds", "examples_per_s", "data_wait"}
SRC = Path(nettrain.__file__).resolve().parent


def numbers(metrics: list) -> list:
    """The metrics rows without their timings (which no two runs share)."""
    return [{k: v for k, v in row.items() if k not in TIMINGS} for row in metrics]


def hparams(run_dir: Path) -> dict:
    from tensorboard.plugins.hparams import metadata
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    content = events.PluginTagToContent(metadata.PLUGIN_NAME)
    return metadata.parse_session_start_info_plugin_data(content[metadata.SESSION_START_INFO_TAG]).hparams


# ---- config.yaml is what trained ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def regression(tmp_path_factory):
    """A regression run (diabetes: MSE is its loss, the config left at the classification default)."""
    return nettrain.fit(dataset="diabetes", model="mlp", epochs=2, batch_size=64, precision="32",
                        run_dir=tmp_path_factory.mktemp("regression") / "run",
                        **{**QUIET, "run.tensorboard": True, "model.args.hidden": [8]})


def test_a_regression_run_records_the_mse_it_trains_with(regression):
    assert regression.model.info.task == "regression"
    assert yaml.safe_load((regression.dir / "config.yaml").read_text())["train"]["loss"] == "mse"
    assert torch.load(regression.dir / "best.pt", weights_only=True)["config"]["train"]["loss"] == "mse"
    assert hparams(regression.dir)["train.loss"].string_value == "mse"   # TensorBoard's HParams
    assert read(regression.dir).config["train"]["loss"] == "mse"   # what the report's config section shows


def test_a_fit_from_its_config_yaml_trains_the_same(regression, tmp_path):
    again = nettrain.fit(str(regression.dir / "config.yaml"), run_dir=tmp_path / "again", **QUIET)
    def trained(run_dir):   # config.yaml but where and how it logs
        return {k: v for k, v in yaml.safe_load((run_dir / "config.yaml").read_text()).items() if k != "run"}
    assert trained(again.dir) == trained(regression.dir)
    assert len(again.metrics) == 2 and numbers(again.metrics) == numbers(regression.metrics)
    assert again.test == regression.test


# ---- every test number is best.pt's ---------------------------------------------------------------------------

# digits with a validation split at lr 0.05: the validation accuracy peaks at epoch 2 of 4 (the later epochs tie
# it, which does not replace the best), so best.pt holds epoch 2 and the last epoch's weights differ from it
CHOSEN = dict(dataset="digits", model="mlp", epochs=4, batch_size=64, lr=0.05, precision="32", seed=0,
              **{"data.val_fraction": 0.1, "model.args.hidden": [16]})


def best_epoch(run_dir: Path) -> int:
    return torch.load(run_dir / "best.pt", weights_only=True)["epoch"]


def confusion(run_dir: Path) -> list:
    with open(run_dir / "confusion_matrix.csv", newline="") as f:
        return [[int(v) for v in row[1:]] for row in list(csv.reader(f))[1:]]


@pytest.fixture(scope="module")
def chosen(tmp_path_factory):
    run = nettrain.fit(run_dir=tmp_path_factory.mktemp("chosen") / "run", **{**QUIET, "run.report": True},
                       **CHOSEN)
    assert best_epoch(run.dir) < len(run.metrics) == 4, "the setup must make an earlier epoch the best"
    return run


def test_the_test_numbers_everywhere_are_those_of_the_model_in_best_pt(chosen):
    recorded = json.loads((chosen.dir / "test_metrics.json").read_text())
    again = nettrain.load(chosen.dir).evaluate()
    assert recorded["loss"] == chosen.test["loss"] == again["loss"]
    assert recorded["accuracy"] == chosen.test["acc"] == again["acc"]
    assert confusion(chosen.dir) == again["confusion"].tolist() == chosen.test["confusion"].tolist()
    assert chosen.model.evaluate()["loss"] == again["loss"]   # Run.model is best.pt's model too
    with np.load(chosen.dir / "predictions.npz", allow_pickle=False) as kept:   # what the report draws from
        assert float(kept["test_loss"]) == again["loss"] and float(kept["test_acc"]) == again["acc"]
        assert kept["correct"].mean() == pytest.approx(again["acc"], abs=1e-12)
    page = (chosen.dir / "report.html").read_text()
    assert f'<b id="test-accuracy">{100 * again["acc"]:.2f}%</b>' in page   # the report's headline


def test_the_last_epochs_weights_test_otherwise_than_best_pt(chosen, tmp_path):
    """The setup means something: the last epoch's model gives other test numbers than best.pt's."""
    last = nettrain.load(chosen.dir / "last.pt")
    assert torch.load(chosen.dir / "last.pt", weights_only=True)["epoch"] == 4
    assert last.evaluate()["loss"] != chosen.test["loss"]


def test_a_resume_that_finishes_a_run_tests_best_pt(chosen, tmp_path, monkeypatch):
    def stopped_in_the_test(*args, **kwargs):
        raise KeyboardInterrupt   # Ctrl-C while the test split is evaluated, after the last epoch's checkpoints
    monkeypatch.setattr("nettrain.training.metrics_summary", stopped_in_the_test)
    with pytest.raises(KeyboardInterrupt):
        nettrain.fit(run_dir=tmp_path / "run", **QUIET, **CHOSEN)
    monkeypatch.undo()
    assert not (tmp_path / "run" / "test_metrics.json").exists()
    finished = nettrain.fit(resume=tmp_path / "run", **QUIET)
    assert (tmp_path / "run" / "test_metrics.json").read_text() == (chosen.dir / "test_metrics.json").read_text()
    assert finished.test["loss"] == nettrain.load(tmp_path / "run").evaluate()["loss"] == chosen.test["loss"]


def test_without_a_validation_split_best_pt_is_the_last_epoch(tmp_path):
    plain = {k: v for k, v in CHOSEN.items() if k != "data.val_fraction"}
    run = nettrain.fit(run_dir=tmp_path / "run", **QUIET, **plain)
    assert best_epoch(run.dir) == 4 and run.test["loss"] == nettrain.load(run.dir).evaluate()["loss"]


# ---- the speed counts the data's examples ------------------------------------------------------------------------

def test_a_text_run_says_texts_per_second_in_every_record(tmp_path, capsys):
    rng = random.Random(0)
    path = tmp_path / "texts.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for i in range(40):
            w.writerow([" ".join(rng.sample(["a", "b", "c", "d", "e", "f"], 3) + ["good" if i % 2 else "bad"]),
                        "pos" if i % 2 else "neg"])
    run = nettrain.fit(dataset="text", data_dir=str(path), model="fasttext", epochs=1, batch_size=8,
                       run_dir=tmp_path / "run", **{**QUIET, "run.progress": "lines", "run.tensorboard": True})
    assert " texts/s " in capsys.readouterr().out
    header = (run.dir / "metrics.csv").read_text().splitlines()[0].split(",")
    assert header == COLUMNS and "examples_per_s" in header and "images_per_s" not in header
    assert run.metrics[0]["examples_per_s"] > 0 and "images_per_s" not in run.metrics[0]
    events = EventAccumulator(str(run.dir / "tensorboard"))
    events.Reload()
    speeds = [tag for tag in events.Tags()["scalars"] if tag.startswith("speed/")]
    assert speeds == ["speed/texts_per_s"]
    assert json.loads((run.dir / "environment.json").read_text())["speed_unit"] == "texts"


def test_an_old_runs_images_per_s_column_reads_as_its_speed(tmp_path):
    from nettrain.report.html import _epochs_table
    (tmp_path / "metrics.csv").write_text("epoch,train_loss,train_acc,val_loss,val_acc,val_mae,lr,seconds,"
                                          "images_per_s,data_wait,val_split\n1,0.5,0.8,0.4,0.9,,0.001,1.0,1234.0,"
                                          "0.01,test\n")
    row = read_metrics(tmp_path / "metrics.csv")[0]
    assert row.examples_per_s == 1234.0 and row.epoch == 1 and row.val_split == "test" and row.padding_waste is None
    assert "1,234" in _epochs_table(read(tmp_path))   # the report's table shows it


def test_a_resumed_old_run_keeps_the_speed_of_its_earlier_epochs(tmp_path):
    """A checkpoint written before the column was renamed holds images_per_s in its history: a resume maps it."""
    run = nettrain.fit(dataset="two-gaussians", model="mlp", epochs=1, batch_size=512, run_dir=tmp_path / "run",
                       **{**QUIET, "model.args.hidden": [8]})
    speed = run.metrics[0]["examples_per_s"]
    for name in ("last.pt", "best.pt"):   # as an older nettrain wrote them
        state = torch.load(run.dir / name, weights_only=True)
        state["history"] = [{("images_per_s" if k == "examples_per_s" else k): v for k, v in row.items()}
                            for row in state["history"]]
        torch.save(state, run.dir / name)
    resumed = nettrain.fit(resume=run.dir, epochs=2, **QUIET)
    assert [row.examples_per_s for row in read_metrics(run.dir / "metrics.csv")][0] == speed
    assert resumed.metrics[0]["examples_per_s"] == speed


def test_a_metrics_row_names_every_column_once():
    row = MetricsRow.from_dict({"epoch": 3, "train_loss": 0.5, "images_per_s": 10.0, "unknown": 1})
    assert row.examples_per_s == 10.0 and row["epoch"] == 3 and row.get("unknown") is None
    assert list(row.as_dict()) == COLUMNS and len(set(COLUMNS)) == len(COLUMNS)
    with pytest.raises(KeyError):
        row["images_per_s"]


# ---- the step on one screen ---------------------------------------------------------------------------------

def functions(path: Path) -> dict:
    tree = ast.parse(path.read_text())
    return {node.name: node for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}


def test_the_step_loop_fits_one_screen_and_no_training_function_is_long():
    loop = functions(SRC / "engine" / "loop.py")
    steps = [node for node in ast.walk(loop["train_epoch"]) if isinstance(node, ast.For)]
    assert len(steps) == 1 and steps[0].end_lineno - steps[0].lineno + 1 <= 30
    assert not [n for n in ast.walk(steps[0]) if isinstance(n, ast.Try)]   # the stop's bookkeeping is beside it
    for path in (SRC / "training.py", SRC / "wiring.py", SRC / "engine" / "loop.py"):
        long = {name: node.end_lineno - node.lineno + 1 for name, node in functions(path).items()
                if node.end_lineno - node.lineno + 1 > 60}
        assert not long, (path.name, long)
