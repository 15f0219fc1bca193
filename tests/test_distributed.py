"""Many processes (engine/distributed.py): the sharding of batches and evaluation, and two processes started by
`nettrain fit --nproc 2` (torchrun's own entry point, gloo on the CPU, standalone rendezvous on a local port)
against one process of the same config."""
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.data import Dataset

import nettrain
from nettrain.data import make_batches
from nettrain.data.arrays import ArrayData, DataInfo
from nettrain.data.batches import BatchPrep, InMemoryBatches, LoaderBatches
from nettrain.config import DataConfig
from nettrain.engine.distributed import NullRun, World
from nettrain.errors import ConfigError
from nettrain.runs import RunDir

SRC = Path(__file__).resolve().parents[1] / "src"


def vectors(n):
    return ArrayData(torch.arange(n).float().unsqueeze(1), torch.arange(n))


def epoch_batches(n, batch, rank, world, epoch=3, drop_last=False):
    b = InMemoryBatches(vectors(n), BatchPrep(DataInfo(kind="vector", shape=[1]), "cpu"), batch // world, train=True,
                        shuffle=True, drop_last=drop_last, seed=5, rank=rank, world_size=world)
    b.set_epoch(epoch)
    got = [y for _, y in b]
    assert len(got) == len(b)
    return got


@pytest.mark.parametrize("n, batch, world", [(100, 12, 2), (100, 12, 4), (96, 12, 3), (101, 12, 2)])
def test_same_global_batches_at_any_world_size(n, batch, world):
    """Rank r's k-th batch is the r-th contiguous slice of the one process's k-th batch; of the last, partial
    batch, what does not divide among the ranks (at most world - 1 examples) is left out."""
    alone = epoch_batches(n, batch, 0, 1)
    ranks = [epoch_batches(n, batch, r, world) for r in range(world)]
    assert len({len(r) for r in ranks}) == 1 and len(ranks[0]) == len(alone)   # every rank steps as often
    for k, whole in enumerate(alone):
        together = torch.cat([r[k] for r in ranks])
        assert len({len(r[k]) for r in ranks}) == 1   # equal shares: DDP's mean of means is the global mean
        assert torch.equal(together, whole[:len(together)])
        assert len(whole) - len(together) == (len(whole) % world)
    assert sum(len(b) for r in ranks for b in r) >= n - (world - 1)


def test_each_example_is_augmented_alike_at_any_world_size():
    """A rank's crops and flips are those its examples get in one process: the numbers of the global batch are drawn
    and the rank's slice kept."""
    g = torch.Generator().manual_seed(0)
    data = ArrayData(torch.randint(0, 256, (48, 1, 6, 6), dtype=torch.uint8, generator=g), torch.arange(48))
    info = DataInfo(kind="image", shape=[1, 6, 6], mean=[0.5], std=[0.25])

    def batches(rank, world):
        prep = BatchPrep(info, "cpu", crop_padding=2, flip=True, channels_last=False)
        b = InMemoryBatches(data, prep, 8 // world, train=True, shuffle=True, seed=7, rank=rank, world_size=world)
        b.set_epoch(2)
        return list(b)

    alone = batches(0, 1)
    ranks = [batches(r, 2) for r in range(2)]
    for k, (x, y) in enumerate(alone):
        assert torch.equal(torch.cat([r[k][1] for r in ranks]), y)
        assert torch.equal(torch.cat([r[k][0] for r in ranks]), x)


def test_drop_last_drops_the_partial_global_batch():
    ranks = [epoch_batches(100, 12, r, 2, drop_last=True) for r in range(2)]
    assert [len(r) for r in ranks] == [8, 8] and all(len(b) == 6 for r in ranks for b in r)


def test_the_global_batch_must_divide_among_the_processes():
    assert World(rank=1, size=4).local_batch(64) == 16
    with pytest.raises(ConfigError, match="multiple of 4, e.g. --batch-size 60") as e:
        World(size=4).local_batch(63)
    assert "\n" not in str(e.value)


def test_evaluation_shards_cover_every_example_once_unpadded():
    data = vectors(7)
    info = DataInfo(kind="vector", shape=[1])
    parts = [torch.cat([y for _, y in make_batches(data, info, DataConfig(), "cpu", 2, train=False, rank=r,
                                                   world_size=2)]) for r in range(2)]
    assert [p.tolist() for p in parts] == [[0, 1, 2], [3, 4, 5, 6]]   # contiguous, uneven, nothing repeated
    assert [World(rank=r, size=2).shard(7) for r in range(2)] == [(0, 3), (3, 7)]


class Items(Dataset):
    def __len__(self):
        return 11

    def __getitem__(self, i):
        return torch.tensor([float(i)]), i


def test_loader_batches_use_a_distributed_sampler_reseeded_each_epoch():
    prep = BatchPrep(DataInfo(kind="vector", shape=[1]), "cpu")

    def epoch(rank, e):
        b = LoaderBatches(Items(), prep, 2, train=True, shuffle=True, seed=1, rank=rank, world_size=2)
        b.set_epoch(e)
        return torch.cat([y for _, y in b]).tolist()

    first = [epoch(r, 1) for r in range(2)]
    assert len(first[0]) == len(first[1]) == 5 and not set(first[0]) & set(first[1])   # 11 // 2 each, disjoint
    assert first != [epoch(r, 2) for r in range(2)]   # set_epoch reshuffles


def test_other_ranks_write_nothing(tmp_path):
    run = NullRun(tmp_path / "run", RunDir)
    run.write_metrics([{"epoch": 1}])
    run.add_event(event="resume")
    run.unlock()
    assert run.last == tmp_path / "run" / "last.pt" and not run.writes   # paths, to read a resumed checkpoint
    assert not (tmp_path / "run").exists()
    with pytest.raises(AttributeError):
        run.claim   # noqa: B018  (a checkpoint write on another rank is a bug, not a silent no-op)


CONFIG = ["--dataset", "digits", "--model", "mlp", "--epochs", "2", "--batch-size", "64", "--precision", "32",
          "--seed", "3", "--train.threads", "1"]


@pytest.mark.slow   # a torchrun job of 2 processes
def test_two_processes_train_as_one_and_only_the_main_rank_writes(tmp_path):
    """digits: 1,438 train examples (22 global batches of 64 and one of 30, which splits evenly) and 359 test
    examples (odd: the ranks evaluate 179 and 180). The train losses of 2 processes equal 1 process's up to
    float-reduction noise (1e-5 relative; seen: 1e-7); the test accuracy equals exactly a 1-process evaluation
    of the same weights."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    runs = tmp_path / "runs"
    done = subprocess.run([sys.executable, "-m", "nettrain", "fit", *CONFIG, "--nproc", "2", "--run-dir",
                           str(runs / "two")], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("nettrain: 2 processes (gloo) | global batch 64 = 32 per process x 2") == 1
    assert done.stdout.count("epoch 2/2") == 1   # the main rank speaks, once

    assert sorted(p.name for p in runs.iterdir()) == ["two"]   # one run directory, no other rank's
    two = runs / "two"
    rows = list(csv.DictReader(open(two / "metrics.csv")))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert {"best.pt", "last.pt", "best.safetensors"} <= {p.name for p in two.iterdir()}
    assert not [p for p in two.iterdir() if p.name.startswith(".") and p.name != ".nettrain-lock"
                and "tmp" in p.name]

    one = nettrain.fit(dataset="digits", model="mlp", epochs=2, batch_size=64, precision="32", seed=3,
                       run_dir=str(tmp_path / "one"), **{"train.threads": 1})
    for r, m in zip(rows, one.metrics):
        assert float(r["train_loss"]) == pytest.approx(m["train_loss"], rel=1e-5)
        assert float(r["train_acc"]) == pytest.approx(m["train_acc"], abs=1 / 1438)

    tested = json.loads((two / "test_metrics.json").read_text())
    assert tested["examples"] == 359
    alone = nettrain.load(two, device="cpu").evaluate()   # world size 1, the 2-process run's weights
    assert alone["examples"] == 359 and alone["acc"] == tested["accuracy"]
    assert alone["loss"] == pytest.approx(tested["loss"], rel=1e-5)


@pytest.mark.slow   # a torchrun job of 2 processes
def test_a_stop_signal_stops_every_process(tmp_path):
    """SIGTERM to `nettrain fit --nproc 2` (as a scheduler sends it): torchrun's agent stops both processes, none is
    left waiting in an all-reduce, the command exits 128 + 15 and last.pt keeps a whole epoch."""
    import signal
    import time
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    run = tmp_path / "run"
    p = subprocess.Popen([sys.executable, "-m", "nettrain", "fit", "--dataset", "digits", "--model", "mlp", "--epochs",
                          "1000", "--nproc", "2", "--run-dir", str(run)], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (run / "last.pt").exists() and time.monotonic() < deadline and p.poll() is None:
            time.sleep(0.2)
        assert (run / "last.pt").exists(), p.stderr.read() if p.poll() is not None else "no epoch in 60 s"
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=60)   # a hang fails here
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 128 + signal.SIGTERM, err[-2000:]
    assert "Traceback" not in err
    assert nettrain.load(run / "last.pt", device="cpu").evaluate()["examples"] == 359


@pytest.mark.slow   # a torchrun job of 2 processes
def test_two_processes_evaluate_a_regression_whole(tmp_path):
    """R^2 needs every target: the ranks' outputs are gathered, so the 2-process test metrics are those of the whole
    test split (MSE equals the MSE loss; the same as a 1-process evaluation of the same weights)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    run = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "nettrain", "fit", "--dataset", "quadratic", "--model", "mlp",
                           "--epochs", "2", "--batch-size", "20", "--precision", "32", "--nproc", "2", "--run-dir",
                           str(run)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    tested = json.loads((run / "test_metrics.json").read_text())
    assert tested["examples"] == 100 and tested["mse"] == pytest.approx(tested["loss"], rel=1e-6)
    alone = nettrain.load(run, device="cpu").evaluate()
    for key in ("mse", "mae", "r2"):
        assert alone[key] == pytest.approx(tested[key], rel=1e-5)


@pytest.mark.slow
def test_compile_and_bf16_autocast_train_under_ddp(tmp_path):
    """torch.compile of the DDP-wrapped model (inductor, on the CPU) and bf16 autocast, in 2 processes: the compiled
    model trains (no fall-back to eager), the losses are those of 1 process within bf16's rounding (BatchNorm-free
    mlp: the per-process batch of 32 changes nothing but the reduction order), the inductor's CUDA_HOME notice is not
    printed."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    config = ["--dataset", "digits", "--model", "mlp", "--epochs", "2", "--batch-size", "64", "--precision",
              "bf16-mixed", "--train.compile", "true", "--seed", "3", "--train.threads", "1", "--run.report", "false",
              "--run.tensorboard", "false", "--run.progress", "none"]
    done = subprocess.run([sys.executable, "-m", "nettrain", "fit", *config, "--nproc", "2", "--run-dir",
                           str(tmp_path / "two")], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "torch.compile failed" not in done.stderr and "CUDA_HOME" not in done.stderr
    alone = subprocess.run([sys.executable, "-m", "nettrain", "fit", *config, "--run-dir", str(tmp_path / "one")],
                           env=env, capture_output=True, text=True, timeout=600)
    assert alone.returncode == 0, alone.stderr[-2000:]
    two, one = (list(csv.DictReader(open(tmp_path / r / "metrics.csv"))) for r in ("two", "one"))
    for a, b in zip(two, one):
        assert float(a["train_loss"]) == pytest.approx(float(b["train_loss"]), rel=0.03)
    assert float(two[-1]["val_acc"]) > 0.9
