"""nettrain sweep's list of runs (--runs: named configurations, beside or instead of the product), and every run of
a sweep checked, its optimizer's settings included, before the first one trains."""
import pytest
import yaml

from nettrain.cli import main
from nettrain.errors import NettrainError
from nettrain.sweep import check, plan, read_runs
from conftest import QUIET

FIT = ["--dataset", "two-gaussians", "--model", "mlp", "--epochs", "1", "--batch-size", "512", "--model.args.hidden",
       "[8]", *QUIET]
OPTIMIZERS = "SGD: {optimizer: sgd}\nMomentum: {optimizer: sgd, momentum: 0.8}\nRMSprop: {optimizer: rmsprop}\n" \
             "Adam: {optimizer: adam}\n"


def _refused(capsys, tmp_path, args, *expected):
    assert main(["sweep", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nettrain: error: ") and err.count("\n") == 1, err
    for text in expected:
        assert text in err, err
    assert list(tmp_path.iterdir()) == [p for p in tmp_path.iterdir() if p.suffix == ".yaml"]   # no run, no folder


def test_a_product_with_a_setting_one_optimizer_does_not_take_is_refused_before_any_run(tmp_path, monkeypatch,
                                                                                         capsys):
    monkeypatch.chdir(tmp_path)
    _refused(capsys, tmp_path, ["--optimizer", "sgd,rmsprop,adam", "--momentum", "0,0.8", "--", *FIT],
             "in the sweep's run optimizer=adam,momentum=0: optimizer 'adam' takes no momentum",
             "list the runs instead: nettrain sweep --runs")


@pytest.mark.slow
def test_the_four_optimizers_of_the_tutorial_in_one_sweep(tmp_path, capsys):
    (tmp_path / "optimizers.yaml").write_text(OPTIMIZERS)
    sweep_dir = tmp_path / "sweep"
    assert main(["sweep", "--runs", str(tmp_path / "optimizers.yaml"), "--sweep-dir", str(sweep_dir), "--", *FIT,
                 "--lr", "0.01"]) == 0
    out = capsys.readouterr().out
    assert sorted(p.name for p in sweep_dir.iterdir() if p.is_dir()) == ["Adam", "Momentum", "RMSprop", "SGD"]
    optim = {name: yaml.safe_load((sweep_dir / name / "config.yaml").read_text())["optim"]
             for name in ("SGD", "Momentum", "RMSprop", "Adam")}
    assert [(o["name"], o["momentum"], o["lr"]) for o in optim.values()] == \
        [("sgd", None, 0.01), ("sgd", 0.8, 0.01), ("rmsprop", None, 0.01), ("adam", None, 0.01)]
    header, *rows = [line.split() for line in out.splitlines()[out.splitlines().index(next(
        line for line in out.splitlines() if line.startswith("run "))):][:5]]
    assert header[:3] == ["run", "optimizer", "momentum"]
    assert [row[:3] for row in rows] == [["SGD", "sgd", "null"], ["Momentum", "sgd", "0.8"],
                                         ["RMSprop", "rmsprop", "null"], ["Adam", "adam", "null"]]
    assert "Momentum" in (sweep_dir / "compare.html").read_text()


def test_named_runs_times_a_product_and_their_names(tmp_path):
    runs = read_runs("{SGD: {optimizer: sgd, momentum: 0.8}, Adam: {optim: {name: adam}}}")
    assert runs == {"SGD": {"optimizer": "sgd", "momentum": 0.8}, "Adam": {"optim.name": "adam"}}
    planned = plan({"lr": [0.1, 0.01]}, runs)
    assert [(p.name, p.values) for p in planned] == [
        ("SGD,lr=0.1", {"optimizer": "sgd", "momentum": 0.8, "lr": 0.1}),
        ("SGD,lr=0.01", {"optimizer": "sgd", "momentum": 0.8, "lr": 0.01}),
        ("Adam,lr=0.1", {"optim.name": "adam", "lr": 0.1}), ("Adam,lr=0.01", {"optim.name": "adam", "lr": 0.01})]
    assert [cfg.optim.name for cfg in check({"lr": [0.1, 0.01]}, {"dataset": "two-gaussians"}, runs=runs)] == \
        ["sgd", "sgd", "adam", "adam"]


BAD_RUNS = {
    "a setting the last run's optimizer does not take": (
        OPTIMIZERS.replace("{optimizer: adam}", "{optimizer: adam, momentum: 0.9}"), [],
        "in the sweep's run Adam: optimizer 'adam' takes no momentum"),
    "a name given twice": ("a: {lr: 0.1}\na: {lr: 0.2}\n", [], "names the run 'a' twice (lines 1 and 2)"),
    "not a mapping": ("- {lr: 0.1}\n", [], "must map each run's name to its settings"),
    "a run's settings that are not a mapping": ("a: 0.1\n", [], "run 'a' must be a mapping of settings"),
    "a name that starts with a dot": ("..: {lr: 0.1}\n", [], "run name '..'"),
    "a key both in a run and fixed": ("a: {lr: 0.1}\n", ["--lr", "0.2"], "is given both in the run 'a'"),
    "a key both in a run and swept": ("a: {lr: 0.1}\n", ["SWEPT"], "is given both in the run 'a'"),
    "a run directory in a run": ("a: {run_dir: x}\n", [], "is chosen by the sweep"),
    "a misspelt key in a run": ("a: {optim.momentun: 0.9}\n", [], "in the sweep's run a: "),
    "no runs": ("{}\n", [], "lists no runs"),
}


@pytest.mark.parametrize("case", BAD_RUNS)
def test_a_bad_list_of_runs_is_refused_before_any_run(tmp_path, monkeypatch, capsys, case):
    text, after, expected = BAD_RUNS[case]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs.yaml").write_text(text)
    swept = ["--lr", "0.1,0.2"] if after == ["SWEPT"] else []
    _refused(capsys, tmp_path, ["--runs", "runs.yaml", *swept, "--", *FIT, *([] if swept else after)], expected)


def test_a_runs_file_that_cannot_be_read_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _refused(capsys, tmp_path, ["--runs", "missing.yaml", "--", *FIT], "missing.yaml")
    with pytest.raises(NettrainError, match="not YAML"):
        read_runs("{a: [")
