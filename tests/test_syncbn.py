"""--sync-batchnorm (engine/syncbn.py). torch 2.14's SyncBatchNorm trains on GPUs only (its forward refuses CPU
tensors under a process group), so on the CPU these tests check the swap itself, the refusal, and that a model
trained holding SyncBatchNorm layers (one process, where SyncBatchNorm computes as BatchNorm) leaves a checkpoint of
plain BatchNorm weights that the built model loads and predicts with. The 2-process refusal on the CPU is checked by
the torchrun launch of test_ddp_paths.py."""
import json

import pytest
import torch
from torch import nn

import nettrain
from nettrain.cli import main
from nettrain.config import Config
from nettrain.engine import syncbn
from nettrain.engine.checkpoint import clean_state_dict
from nettrain.errors import ConfigError
from nettrain.models import build_model
from conftest import QUIET

QUIET_CPU_FLAGS = [*QUIET, "--device", "cpu"]


def cnn():
    torch.manual_seed(0)
    return build_model("cnn", [1, 8, 8], 3, {})


def test_the_swap_keeps_every_tensor_and_the_checkpoint_is_plain_batchnorm():
    model = cnn()
    params = [id(p) for p in model.parameters()]
    plain_keys = list(model.state_dict())
    synced = syncbn.convert(model, 2, torch.device("cuda"))   # the swap touches no device: testable on the CPU
    assert sum(isinstance(m, nn.SyncBatchNorm) for m in synced.modules()) == 3
    assert not any(type(m) in (nn.BatchNorm1d, nn.BatchNorm2d) for m in synced.modules())
    assert [id(p) for p in synced.parameters()] == params   # the optimizer built after it sees the same tensors
    state = clean_state_dict(synced)
    assert list(state) == plain_keys
    fresh = cnn()
    fresh.load_state_dict(state, strict=True)
    x = torch.randn(4, 1, 8, 8)
    assert torch.equal(fresh.eval()(x), synced.eval()(x))


def test_cpu_processes_are_refused_and_one_process_is_left_alone():
    model = cnn()
    with pytest.raises(ConfigError, match="sync_batchnorm needs GPUs") as e:
        syncbn.convert(model, 2, torch.device("cpu"))
    assert "\n" not in str(e.value)
    assert syncbn.convert(model, 1, torch.device("cpu")) is model   # nothing to synchronize
    assert Config().override({"sync_batchnorm": True}).train.sync_batchnorm


def test_a_model_trained_with_syncbatchnorm_layers_loads_and_predicts_in_one_process(tmp_path, monkeypatch):
    """The swap forced in one process (SyncBatchNorm then computes as BatchNorm: no process group): the run's
    model holds SyncBatchNorm layers, its checkpoint loads into the built cnn's plain BatchNorm, which predicts
    what the trained model does."""
    swapped = []
    monkeypatch.setattr(syncbn, "convert", lambda module, world_size, device:
                        swapped.append(nn.SyncBatchNorm.convert_sync_batchnorm(module)) or swapped[-1])
    run_dir = tmp_path / "run"
    assert main(["fit", "--dataset", "digits", "--model", "cnn", "--epochs", "1", "--data.limit", "256",
                 "--sync-batchnorm", "--run-dir", str(run_dir), *QUIET_CPU_FLAGS]) == 0
    assert Config.load(run_dir / "config.yaml").train.sync_batchnorm
    assert sum(isinstance(m, nn.SyncBatchNorm) for m in swapped[0].modules()) == 3   # it trained swapped
    trained = torch.load(run_dir / "last.pt", weights_only=True)["model"]
    loaded = nettrain.load(run_dir / "last.pt")
    assert sum(isinstance(m, nn.SyncBatchNorm) for m in loaded.module.modules()) == 0
    assert sum(isinstance(m, nn.BatchNorm2d) for m in loaded.module.modules()) == 3
    assert all(torch.equal(v, trained[k]) for k, v in loaded.module.state_dict().items())
    images = torch.randint(0, 256, (5, 8, 8), dtype=torch.uint8).numpy()
    assert len(loaded.predict(images).labels) == 5
    tested = json.loads((run_dir / "test_metrics.json").read_text())   # the trained, swapped model's test
    assert loaded.evaluate()["acc"] == tested["accuracy"]
