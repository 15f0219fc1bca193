"""TensorBoard: the run directory's event files hold the scalars, a sample image grid and the model graph."""
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import nettrain


@pytest.fixture(scope="module")
def tb_run(tmp_path_factory):
    return nettrain.fit(dataset="digits", model="cnn", epochs=2, precision="32", batch_size=256,
                        run_dir=tmp_path_factory.mktemp("tb") / "run", **{"run.progress": "none",
                                                                             "model.args.width": 8})


def accumulator(run_dir):
    ea = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
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
    assert ea.Tags()["images"] == ["samples"]
    image = ea.Images("samples")[0]
    assert image.width > 8 and image.height > 8 and image.encoded_image_string[:4] == b"\x89PNG"
    assert ea.Tags()["graph"] is True
    graph = ea.Graph()
    assert any("Conv2d" in node.name or "conv" in node.op.lower() for node in graph.node)


def test_resumed_run_appends_scalars_without_duplicates(tb_run):
    run = nettrain.fit(resume=tb_run.dir, epochs=3, **{"run.progress": "none"})
    assert len(run.metrics) == 3
    steps = [e.step for e in accumulator(tb_run.dir).Scalars("loss/train")]
    assert sorted(set(steps)) == [1, 2, 3] and steps[-1] == 3


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
