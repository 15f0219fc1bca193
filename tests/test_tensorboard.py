"""TensorBoard: the run directory's event files hold the scalars, a sample image grid, the model graph, and at the
fit's end the report's figures and the HParams."""
import io
import json

import pytest
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import nettrain


@pytest.fixture(scope="module")
def tb_run(tmp_path_factory):
    return nettrain.fit(dataset="digits", model="cnn", epochs=2, precision="32", batch_size=256,
                        run_dir=tmp_path_factory.mktemp("tb") / "run", **{"run.progress": "none",
                                                                             "model.args.width": 8})


def accumulator(run_dir, purge=True):
    """`purge=False`: every event written, also those TensorBoard would hide (a step written again after a restart)."""
    ea = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"images": 0, "scalars": 0},
                          purge_orphaned_data=purge)
    ea.Reload()
    return ea


def test_scalars_per_epoch(tb_run):
    ea = accumulator(tb_run.dir)
    tags = ea.Tags()["scalars"]
    for tag in ("loss/train", "loss/test", "accuracy/train", "accuracy/test", "lr"):   # no validation split
        assert tag in tags
        assert [e.step for e in ea.Scalars(tag)] == [1, 2]
    assert "accuracy/val" not in tags
    assert [e.value for e in ea.Scalars("accuracy/test")] == \
        pytest.approx([r["val_acc"] for r in tb_run.metrics], rel=1e-6)


def test_sample_images_and_graph(tb_run):
    ea = accumulator(tb_run.dir)
    assert ea.Tags()["images"][0] == "samples"   # the report's figures follow it (test below)
    image = ea.Images("samples")[0]
    assert image.width > 8 and image.height > 8 and image.encoded_image_string[:4] == b"\x89PNG"
    assert ea.Tags()["graph"] is True
    graph = ea.Graph()
    assert any("Conv2d" in node.name or "conv" in node.op.lower() for node in graph.node)


def test_the_reports_figures_are_images_at_the_last_epoch(tb_run):
    ea = accumulator(tb_run.dir)
    figures = sorted((tb_run.dir / "figures").glob("*.png"))
    assert len(figures) == 7   # learning curves ... calibration: every figure the report drew
    for path in figures:
        events = ea.Images(f"report/{path.stem}")
        assert [e.step for e in events] == [2]
        assert events[0].encoded_image_string == path.read_bytes()   # the very PNG the report drew
        with Image.open(io.BytesIO(events[0].encoded_image_string)) as shown:
            assert (events[0].width, events[0].height) == shown.size and shown.size[0] > 300
    recorded = set(json.loads((tb_run.dir / ".nettrain-run.json").read_text())["files"])
    assert {f"tensorboard/{f.name}" for f in (tb_run.dir / "tensorboard").iterdir()} <= recorded   # --overwrite's


def test_hparams_hold_the_config_and_the_final_metrics(tb_run):
    from tensorboard.plugins.hparams import metadata
    ea = accumulator(tb_run.dir)
    content = ea.PluginTagToContent(metadata.PLUGIN_NAME)
    experiment = metadata.parse_experiment_plugin_data(content[metadata.EXPERIMENT_TAG])
    start = metadata.parse_session_start_info_plugin_data(content[metadata.SESSION_START_INFO_TAG])
    metrics = {m.name.tag for m in experiment.metric_infos}
    assert {"final/test_accuracy", "final/test_loss", "final/train_loss"} <= metrics
    hp = start.hparams
    assert hp["optim.lr"].number_value == pytest.approx(tb_run.model.config.optim.lr)
    assert hp["model.name"].string_value == "cnn" and hp["train.epochs"].number_value == 2
    assert hp["model.args.width"].number_value == 8 and hp["data.flip"].string_value == "false"
    assert not any(k.startswith("run.") for k in hp)   # where it logs is not a hyperparameter
    assert ea.Scalars("final/test_accuracy")[0].value == pytest.approx(tb_run.test["acc"], rel=1e-6)
    assert ea.Scalars("final/test_accuracy")[0].step == 2
    summary = json.loads((tb_run.dir / "test_metrics.json").read_text())   # what evaluate and the run dir say
    assert {f"final/test_macro_{k}" for k in ("precision", "recall", "f1")} <= metrics
    assert ea.Scalars("final/test_macro_f1")[0].value == pytest.approx(summary["macro"]["f1"], rel=1e-6)
    for name, scores in summary["per_class"].items():   # per class: scalars, not HParams columns
        assert ea.Scalars(f"final/test_f1/{name}")[0].value == pytest.approx(scores["f1"], rel=1e-6, abs=1e-7)
        assert ea.Scalars(f"final/test_recall/{name}")[0].value == pytest.approx(scores["recall"], abs=1e-7)
    assert "final/test_f1/0" not in metrics
    assert (tb_run.dir / "tensorboard").is_dir() and all(f.is_file() for f in (tb_run.dir / "tensorboard").iterdir())


def test_hparams_are_numbers_and_strings():
    from nettrain.config import Config
    from nettrain.tbreport import hparams_of
    flat = hparams_of(Config().override({"model.args.hidden": [256, 64], "train.tta": True}).to_dict())
    assert flat["model.args.hidden"] == "[256, 64]" and flat["train.tta"] == "true"
    assert all(isinstance(v, (int, float, str)) and not isinstance(v, bool) for v in flat.values())
    assert "data.mean" not in flat   # null: left out


def test_resumed_run_appends_scalars_without_duplicates(tb_run):
    run = nettrain.fit(resume=tb_run.dir, epochs=3, **{"run.progress": "none"})
    assert len(run.metrics) == 3
    steps = [e.step for e in accumulator(tb_run.dir, purge=False).Scalars("loss/train")]
    assert steps == [1, 2, 3]   # epochs 1 and 2 from the first fit, 3 from the resume: none twice


def test_no_batch_is_prepared_for_a_graph_when_tensorboard_is_off(tmp_path, monkeypatch):
    import nettrain.data.batches as batches
    calls = []
    real = batches.BatchPrep.__call__

    def counting(self, *args, **kwargs):
        calls.append(len(args[0]))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(batches.BatchPrep, "__call__", counting)
    counts = {}
    for on in (True, False):
        calls.clear()
        nettrain.fit(dataset="digits", model="cnn", epochs=1, precision="32", batch_size=256,
                     run_dir=tmp_path / f"tb-{on}", **{"run.progress": "none", "run.tensorboard": on,
                                                        "model.args.width": 8})
        counts[on] = len(calls)
    assert counts[False] == counts[True] - 1   # the graph's example batch, and nothing else


def test_a_regression_runs_final_r2_mse_and_mae_are_in_tensorboard(tmp_path):
    run = nettrain.fit(dataset="diabetes", epochs=2, run_dir=tmp_path / "run", **{"run.progress": "none"})
    summary = json.loads((run.dir / "test_metrics.json").read_text())
    ea = accumulator(run.dir)
    for key in ("r2", "mse", "mae"):
        assert ea.Scalars(f"final/test_{key}")[0].value == pytest.approx(summary[key], rel=1e-5)
