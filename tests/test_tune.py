"""nettrain tune (tune.py): an Optuna study of fits, shared by processes, stopped and resumed, its best trial a recipe
that trains again to the same held-out metric."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

import nettrain
from conftest import QUIET, QUIET_API
from nettrain.errors import ConfigError, NettrainError
from nettrain.tune import Settings, parse_space, tune

optuna = pytest.importorskip("optuna")

SRC = str(Path(nettrain.__file__).resolve().parents[1])
# digits with a held-out fifth: 1,150 training images, 288 validation; tiny and fast
FIT = {"dataset": "digits", "model": "mlp", "model.args.hidden": [8], "epochs": 2, "batch_size": 128,
       "device": "cpu", "precision": "32", "data.val_fraction": 0.2, **QUIET_API}
FIT_FLAGS = ["--dataset", "digits", "--model", "mlp", "--model.args.hidden", "[8]", "--epochs", "3",
             "--batch-size", "128", "--device", "cpu", "--precision", "32", "--data.val_fraction", "0.2", *QUIET]


def states(folder: Path) -> list:
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{folder / 'study.db'}")
    return [t.state.name for t in sorted(study.get_trials(), key=lambda t: t.number)]


# ---- refused before the first trial, in one line, with nothing written ------------------------------------

@pytest.mark.parametrize("spec, words", [
    ("normal:0:1", "loguniform:LOW:HIGH"), ("loguniform:0:1", "positive ends"), ("uniform:1:0.5", "not below"),
    ("int:1.5:4", "whole numbers"), ("int:0:10:3", "divide"), ("choice:sgd", "two or more"),
    ("choice:sgd,sgd", "twice"), ("uniform:a:b", "with numbers"),
])
def test_a_bad_range_is_refused_in_one_line(spec, words):
    with pytest.raises(ConfigError, match=words) as e:
        parse_space(["--lr", spec])
    assert "\n" not in str(e.value)


def test_ranges_are_read_as_fit_reads_values():
    space = parse_space(["--lr", "loguniform:1e-4:1e-1", "--model.args.hidden=choice:[8],[16, 8]",
                         "--batch-size", "int:32:256:32"])
    assert (space["lr"].low, space["lr"].high) == (1e-4, 1e-1)
    assert space["model.args.hidden"].choices == ([8], [16, 8])   # a list is a config value, stored as its text
    assert space["model.args.hidden"].labels == ("[8]", "[16, 8]")
    assert (space["batch_size"].low, space["batch_size"].high, space["batch_size"].step) == (32, 256, 32)


def test_every_choice_is_checked_as_a_config_before_the_first_trial(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    space = parse_space(["--optimizer", "choice:sgd,adamm", "--lr", "loguniform:1e-4:1e-1"])
    with pytest.raises(NettrainError, match=r"optimizer=adamm.*adam") as e:   # named with its closest match
        tune(space, FIT, settings=Settings(trials=2))
    assert "\n" not in str(e.value)
    assert list(tmp_path.iterdir()) == []


def test_a_tune_without_a_validation_split_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"--data.val_fraction 0.1"):
        tune(parse_space(["--lr", "loguniform:1e-4:1e-1"]), {**FIT, "data.val_fraction": None})
    with pytest.raises(ConfigError, match=r"test split never chooses"):
        tune(parse_space(["--lr", "loguniform:1e-4:1e-1"]), FIT, settings=Settings(objective="accuracy"))
    with pytest.raises(ConfigError, match=r"--direction max or min"):   # a metric of --metrics: its way is given
        tune(parse_space(["--lr", "loguniform:1e-4:1e-1"]), {**FIT, "metrics": ["balanced_acc"]},
             settings=Settings(objective="val_balanced_acc"))
    assert list(tmp_path.iterdir()) == []


def test_without_optuna_the_tune_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)   # import optuna raises ImportError
    with pytest.raises(NettrainError, match=r"pip install 'nettrain\[tune\]'"):
        tune(parse_space(["--lr", "loguniform:1e-4:1e-1"]), FIT)


# ---- a study stopped and resumed, in this process --------------------------------------------------------

class Trouble(nettrain.Callback):
    """After its first epoch, the trial run in `name`'s folder raises what `raises` gives: a fit's own error (a
    NettrainError, as a diverged run raises), or KeyboardInterrupt (the user's Ctrl-C)."""

    def __init__(self, raises: dict):
        self.raises = raises

    def on_epoch_end(self, fit, epoch, metrics):
        if fit.run_dir.name in self.raises:
            raise self.raises[fit.run_dir.name]


@pytest.fixture(scope="module")
def resumed(tmp_path_factory):
    """A study of 3 trials, its second failing and its third stopped by Ctrl-C, then run again to 4 that count."""
    folder = tmp_path_factory.mktemp("tune") / "study"
    space = parse_space(["--lr", "loguniform:1e-3:3e-1", "--optimizer", "choice:sgd,adam"])
    settings = Settings(study="s", study_dir=str(folder), pruner="none")
    trouble = Trouble({"trial-0001": NettrainError("the trial's own problem"), "trial-0002": KeyboardInterrupt()})
    lines = []
    with pytest.raises(KeyboardInterrupt):
        tune(space, {**FIT, "callbacks": [trouble]}, settings=Settings(**{**vars(settings), "trials": 3}),
             say=lines.append)
    first = states(folder)
    result = tune(space, FIT, settings=Settings(**{**vars(settings), "trials": 4}), say=lines.append)
    return folder, first, result, lines


@pytest.mark.slow
def test_a_stopped_study_goes_on_where_it_stopped(resumed):
    folder, first, result, lines = resumed
    assert first == ["COMPLETE", "FAIL", "FAIL"]
    assert "tune: trial-0001 failed: the trial's own problem" in lines
    assert any("run the same command again" in line for line in lines)
    # the failed trial counts toward --trials 4, the one stopped by Ctrl-C does not: the second run ran two more
    assert result.ran == 2
    assert [t.state.name for t in result.trials] == ["COMPLETE", "FAIL", "FAIL", "COMPLETE", "COMPLETE"]
    rows = result.table().splitlines()
    assert rows[2].split()[1] == "failed" and rows[2].endswith("the trial's own problem")
    assert rows[3].split()[1] == "stopped"
    for n in range(5):   # every trial a normal run directory
        assert (folder / f"trial-{n:04d}" / "config.yaml").exists()
    page = (folder / "tune.html").read_text()
    assert page.count('src="data:image/png;base64,') == 2 and "http" not in page.replace("http-equiv", "")
    for name in ("history.png", "importance.png", "compare.html", "best.yaml"):
        assert (folder / name).stat().st_size > 0


@pytest.mark.slow
def test_the_best_trials_recipe_trains_again_to_the_same_held_out_metric(resumed, tmp_path):
    folder, _, result, _ = resumed
    values = {t.number: t.value for t in result.trials if t.value is not None}
    assert result.best.value == max(values.values()) and len(set(values.values())) > 1
    run = nettrain.fit(str(result.recipe), run_dir=tmp_path / "refit")   # the seed is in the recipe: the same run
    assert max(row["val_acc"] for row in run.metrics) == result.best.value


@pytest.mark.slow
def test_a_study_is_joined_only_with_what_it_searches(resumed, tmp_path):
    folder, *_ = resumed
    space = parse_space(["--lr", "loguniform:1e-4:1e-1", "--optimizer", "choice:sgd,adam"])
    with pytest.raises(ConfigError, match=r"study s searched space.lr = loguniform:0.001:0.3.*new --study"):
        tune(space, FIT, settings=Settings(study="s", study_dir=str(folder), trials=9))
    # its trials' folders are not taken over by a new study whose database does not know them
    with pytest.raises(ConfigError, match=r"holds trial-0000 and 4 more trials.*--storage"):
        tune(space, FIT, settings=Settings(study="s", study_dir=str(folder), storage=f"sqlite:///{tmp_path}/x.db"))


# ---- two processes on one study -----------------------------------------------------------------------------

@pytest.mark.slow
def test_two_processes_share_one_study_of_8_trials_some_pruned(tmp_path):
    folder = tmp_path / "study"
    env = {**os.environ, "PYTHONPATH": SRC, "NETTRAIN_HOME": str(tmp_path / "home")}
    command = [sys.executable, "-m", "nettrain", "tune", "--lr", "loguniform:1e-5:1", "--trials", "8",
               "--study", "s", "--study-dir", str(folder), "--pruner", "halving", "--", *FIT_FLAGS]
    workers = [subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True) for _ in range(2)]
    outputs = [w.communicate(timeout=300) for w in workers]
    for worker, (out, err) in zip(workers, outputs):
        assert worker.returncode == 0, err
        assert "best trial-" in out and "page " in out
    # each trial ran once, by one of the two; 8 in all (the count and the new trial are made under one lock)
    started = [{line.split(":")[1].strip() for line in out.splitlines() if line.startswith("tune: trial-")
                and "lr=" in line} for out, _ in outputs]
    assert started[0].isdisjoint(started[1])
    assert started[0] | started[1] == {f"trial-{n:04d}" for n in range(8)}
    found = states(folder)
    assert len(found) == 8 and set(found) <= {"COMPLETE", "PRUNED"} and "PRUNED" in found
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{folder / 'study.db'}")
    assert study.user_attrs["processes"] == 2   # two samplers, seeds 0 and 1: not the same draws


def test_a_text_files_held_out_split_chooses(tmp_path):
    """data.val_fraction on a file of texts holds out a validation split that chooses (as it does for a table), so
    a tune of the sentiment files optimizes its held-out accuracy."""
    from nettrain.api import resolve_config
    from nettrain.tune import held_out
    rows = [f"{'good fine great' if i % 2 else 'bad poor awful'} text number {i}" for i in range(60)]
    (tmp_path / "t.csv").write_text("text,label\n" + "\n".join(f"{r},{'pos' if i % 2 else 'neg'}"
                                                               for i, r in enumerate(rows)))
    cfg = resolve_config(None, {"dataset": "text", "data_dir": str(tmp_path / "t.csv"), "data.val_fraction": 0.2})
    assert held_out(cfg, None, None) == ("val_acc", "maximize")
