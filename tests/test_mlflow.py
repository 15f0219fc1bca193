"""MLflow tracking (mlflowlog.py): a fit logged to a SQLite tracking database and read back with MLflow's client;
a resume continues the same MLflow run; a server that does not answer costs one warning line; `nettrain
mlflow-sync` uploads a run directory later. Skipped without the [mlflow] extra."""
import importlib.util
import json
import shutil
import types

import pytest

import nettrain
from conftest import QUIET_API
from nettrain import mlflowlog
from nettrain.cli import main
from nettrain.errors import ConfigError

# mlflow is imported by the tests that use it (a second of start-up, not paid by collecting the suite)
pytestmark = pytest.mark.skipif(importlib.util.find_spec("mlflow") is None,
                                reason="the [mlflow] extra: pip install -e '.[mlflow]'")

FIT = dict(dataset="digits", model="mlp", batch_size=512, device="cpu", **{"model.args.hidden": [8]}, **QUIET_API)
ID_FILE = "mlflow_run_id.txt"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One tracking database for the module (MLflow makes its tables once: seconds), its artifacts beside it."""
    from mlflow.tracking import MlflowClient
    where = tmp_path_factory.mktemp("mlflow")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(where)   # the experiment's artifact folder, ./mlruns, is made where it is first used
        client = MlflowClient(tracking_uri=f"sqlite:///{where / 'mlflow.db'}")
        client.create_experiment(mlflowlog.EXPERIMENT)
    return f"sqlite:///{where / 'mlflow.db'}", client


def runs_of(client, run_dir) -> list:
    """The MLflow runs that logged the nettrain run in `run_dir`."""
    experiment = client.get_experiment_by_name(mlflowlog.EXPERIMENT).experiment_id
    return [r for r in client.search_runs([experiment]) if r.data.tags.get("nettrain.run_dir") == str(run_dir)]


@pytest.mark.slow
def test_a_fit_stopped_and_resumed_is_one_mlflow_run_with_its_config_epochs_test_metrics_and_files(store, tmp_path):
    uri, client = store
    run_dir = (tmp_path / "run").resolve()
    report = {"run.report": True}   # report.html and figures/ among the artifacts
    nettrain.fit(epochs=1, run_dir=run_dir, metrics=["balanced_acc"], **{**FIT, **report, "run.mlflow": uri})
    run = nettrain.fit(resume=run_dir, epochs=2, **{**QUIET_API, **report, "run.mlflow": uri})
    [logged] = runs_of(client, run_dir)
    assert (run_dir / ID_FILE).read_text().strip() == logged.info.run_id and logged.info.status == "FINISHED"
    params = logged.data.params
    assert params["optim.lr"] == "0.001" and params["model.args.hidden"] == "[8]" and params["train.epochs"] == "1"
    assert logged.data.tags["resumed.train.epochs"] == "2"   # a param is fixed: the resume's new length is a tag
    assert not {"run.dir", "run.mlflow"} & set(params)
    assert logged.data.tags["nettrain.data_kind"] == "image" and logged.data.tags["nettrain.model"] == "mlp"
    for column in ("train_loss", "val_acc", "lr", "val_balanced_acc"):   # the run's own metric too
        history = client.get_metric_history(logged.info.run_id, column)
        assert [(m.step, m.value) for m in history] == [(row["epoch"], row[column]) for row in run.metrics]
    test = json.loads((run_dir / "test_metrics.json").read_text())
    assert logged.data.metrics["test_accuracy"] == test["accuracy"]
    assert logged.data.metrics["test_macro_f1"] == test["macro"]["f1"]
    assert logged.data.metrics["test_balanced_acc"] == test["metrics"]["balanced_acc"]
    files = {f.path for f in client.list_artifacts(logged.info.run_id)}
    assert {"report.html", "config.yaml", "metrics.csv", "best.safetensors", "test_metrics.json"} <= files
    assert "figures/learning_curves.png" in {f.path for f in client.list_artifacts(logged.info.run_id, "figures")}
    assert uri not in (run_dir / "config.yaml").read_text()   # where it is tracked is not the run's record


@pytest.mark.slow
def test_an_unreachable_tracking_server_costs_one_warning_line_and_the_fit_finishes(tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")   # port 9 (discard) refuses at once: no waits
    run = nettrain.fit(epochs=2, run_dir=tmp_path / "run", **{**FIT, "run.mlflow": "http://127.0.0.1:9"})
    assert [row["epoch"] for row in run.metrics] == [1, 2] and (run.dir / "test_metrics.json").exists()
    lines = capfd.readouterr().err.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("nettrain: warning: MLflow tracking at http://127.0.0.1:9 failed")
    assert f"nettrain mlflow-sync {run.dir} --run.mlflow http://127.0.0.1:9" in lines[0]
    assert not (run.dir / ID_FILE).exists()


@pytest.fixture(scope="module")
def untracked_run(tmp_path_factory):
    return nettrain.fit(epochs=1, run_dir=tmp_path_factory.mktemp("untracked") / "run", **FIT).dir


@pytest.mark.slow
def test_mlflow_sync_uploads_a_run_directory_and_a_second_sync_adds_no_epoch(store, untracked_run, tmp_path,
                                                                            capsys):
    uri, client = store
    run_dir = tmp_path / "run"
    shutil.copytree(untracked_run, run_dir)
    assert main(["mlflow-sync", str(run_dir), "--run.mlflow", uri]) == 0
    assert "epochs added: 1;" in capsys.readouterr().out
    [logged] = runs_of(client, run_dir.resolve())
    assert (run_dir / ID_FILE).read_text().strip() == logged.info.run_id
    assert logged.data.params["data.name"] == "digits" and logged.info.status == "FINISHED"
    assert {"config.yaml", "metrics.csv", "best.safetensors"} <= {f.path for f in
                                                                  client.list_artifacts(logged.info.run_id)}
    assert main(["mlflow-sync", str(run_dir), "--run.mlflow", uri]) == 0   # the same MLflow run, nothing twice
    assert "epochs added: 0;" in capsys.readouterr().out
    assert len(runs_of(client, run_dir.resolve())) == 1
    assert len(client.get_metric_history(logged.info.run_id, "train_loss")) == 1


def test_a_run_folder_is_data_its_run_id_file_only_32_hex_digits_and_no_file_linking_out_is_uploaded(
        untracked_run, tmp_path, capsys):
    """What mlflow-sync (and a resume) take from a run folder from elsewhere: the run id file only as 32 hex
    digits, and as artifacts only regular files reached without a link (report.html -> a secret is skipped)."""
    run_dir = tmp_path / "run"
    shutil.copytree(untracked_run, run_dir)
    (tmp_path / "secret").write_text("a key")
    (run_dir / "report.html").symlink_to(tmp_path / "secret")
    (run_dir / ID_FILE).write_text("../../elsewhere\n")
    assert mlflowlog.read_run_id(run_dir) is None
    assert "does not hold an MLflow run id (32 hex digits); logging to a new MLflow run" in capsys.readouterr().err
    found, skipped = mlflowlog._artifacts(run_dir)
    assert run_dir / "report.html" not in [path for path, _ in found] and run_dir / "config.yaml" in \
        [path for path, _ in found]
    assert len(skipped) == 1 and "report.html is a symbolic link" in skipped[0]
    (run_dir / ID_FILE).write_text("0123456789abcdef0123456789abcdef\n")
    assert mlflowlog.read_run_id(run_dir) == "0123456789abcdef0123456789abcdef"


def test_tracking_is_on_only_when_asked_and_off_wins(monkeypatch):
    assert mlflowlog.tracking_uri(None) is None
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///a.db")
    assert mlflowlog.tracking_uri(None) == "sqlite:///a.db"
    monkeypatch.setenv("NETTRAIN_MLFLOW_URI", "sqlite:///b.db")
    assert mlflowlog.tracking_uri(None) == "sqlite:///b.db"
    assert mlflowlog.tracking_uri("http://host:5000") == "http://host:5000"
    assert mlflowlog.tracking_uri("off") is None


def test_tracking_without_the_mlflow_client_is_one_line_naming_the_install_before_a_run_is_made(tmp_path,
                                                                                                 monkeypatch):
    missing = types.SimpleNamespace(util=types.SimpleNamespace(find_spec=lambda name: None))
    monkeypatch.setattr(mlflowlog, "importlib", missing)
    with pytest.raises(ConfigError, match=r"needs the MLflow client, which is not installed: pip install "
                                          r"'nettrain\[mlflow\]'"):
        nettrain.fit(epochs=1, run_dir=tmp_path / "run", **{**FIT, "run.mlflow": "sqlite:///x.db"})
    assert not (tmp_path / "run").exists()
