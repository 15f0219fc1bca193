"""A stop signal in the middle of an epoch (engine/stop.py): training stops at the next optimizer-step boundary,
last.pt keeps the epoch in progress, and --resume continues from that step to the uninterrupted run's numbers, bit
for bit on the CPU with one thread; in two processes, both stop after the same step. The stop is a real SIGTERM,
sent at a chosen step by the process itself (NETTRAIN_TEST_SIGNAL_AT, engine/stop.Check)."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

import nettrain
from nettrain import signals, wiring
from nettrain.cli import main
from nettrain.data import batches as batches_module
from nettrain.data.arrays import ArrayData, DataInfo
from nettrain.data.batches import BatchPrep, InMemoryBatches, LoaderBatches
from nettrain.data.custom import CustomData
from nettrain.data.text import TextData
from nettrain.engine.stop import AGREE_EVERY
from nettrain.metrics_row import MetricsRow
from nettrain.runs import read_metrics

from test_user_data import BiLSTM, Sequences, pad_collate

SRC = Path(__file__).resolve().parents[1] / "src"
COLUMNS = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr"]   # every column but the timings


def numbers(run_dir):
    return [{k: row[k] for k in COLUMNS} for row in read_metrics(Path(run_dir) / "metrics.csv")]


def same_weights(a, b, part="model"):
    x, y = (torch.load(Path(d) / "last.pt", weights_only=True)[part] for d in (a, b))
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


# ---- each batch kind starts an epoch from a batch: the same batches, and the same random numbers ---------------

IMAGE = DataInfo(kind="image", shape=[1, 6, 6], mean=[0.5], std=[0.25])


def images(n=52):
    g = torch.Generator().manual_seed(0)
    return ArrayData(torch.randint(0, 256, (n, 1, 6, 6), dtype=torch.uint8, generator=g), torch.arange(n))


class Images(Dataset):
    def __init__(self):
        self.data = images()

    def __len__(self):
        return len(self.data.y)

    def __getitem__(self, i):
        return self.data.x[i], int(self.data.y[i])


def in_memory(alternate=False):
    prep = BatchPrep(IMAGE, "cpu", crop_padding=1, flip=True, channels_last=False, alternate_flip=alternate)
    return InMemoryBatches(images(), prep, 5, train=True, shuffle=True, seed=4)


def kinds():
    text = TextData(torch.randint(1, 50, (300,), generator=torch.Generator().manual_seed(1)),
                    torch.tensor([5, 9, 3, 12, 7, 8, 6, 4, 10, 11, 2, 13, 9, 8, 7, 6] * 2 + [4]),
                    torch.arange(33) % 2)
    return {
        "in-memory": in_memory,
        "in-memory alternate flip": lambda: in_memory(alternate=True),
        "loader": lambda: LoaderBatches(Images(), BatchPrep(IMAGE, "cpu", crop_padding=1, flip=True,
                                                            channels_last=False), 5, train=True, shuffle=True, seed=4),
        "text": lambda: text.batches("cpu", 4, train=True, shuffle=True, seed=4, bucket=True),
        "custom": lambda: CustomData(Sequences(23, seed=2), pad_collate, "data").batches(
            "cpu", 4, "classification", shuffle=True, seed=4),
    }


def flat(batch):
    x, y = batch
    return [*(x if isinstance(x, (tuple, list)) else [x]), y]


@pytest.mark.parametrize("kind", list(kinds()))
@pytest.mark.parametrize("start", [1, 5])
def test_an_epoch_started_from_a_batch_is_the_rest_of_the_same_epoch(kind, start, monkeypatch):
    """In memory, two batches a chunk here (CHUNK_BYTES): batch 5 starts inside the third chunk, after two chunks
    skipped whole, whose crops and flips are drawn all the same."""
    monkeypatch.setattr(batches_module, "CHUNK_BYTES", 2 * 5 * 36 * 4)
    b = kinds()[kind]()
    b.set_epoch(3)
    whole = list(b)
    b.set_epoch(3)
    rest = list(b.iterate(start))
    assert len(rest) == len(whole) - start
    for got, expected in zip(rest, whole[start:]):
        assert all(torch.equal(u, v) for u, v in zip(flat(got), flat(expected)))


# ---- one process: the command stopped by SIGTERM at a step, then resumed ----------------------------------------

# momentum, a cosine schedule, EMA, Lookahead, dropout, seeded crops and flips and 2-batch accumulation: the state
# that must come back; digits: 1,438 training images, 45 batches of 32 an epoch, 23 optimizer steps
ARGS = ["fit", "--dataset", "digits", "--model", "mlp", "--model.args.dropout", "0.2", "--batch-size", "32",
        "--epochs", "2", "--precision", "32", "--device", "cpu", "--train.threads", "1", "--optimizer", "sgd",
        "--lr", "0.05", "--momentum", "0.9", "--train.ema", "0.9", "--train.lookahead", "3", "--train.accumulate", "2",
        "--data.flip", "true", "--data.crop_padding", "1", "--seed", "5", "--run.progress", "none",
        "--run.tensorboard", "false", "--run.report", "false"]


@pytest.mark.parametrize("epoch, tensorboard", [(2, "false"), (1, "true")])
def test_a_stop_in_the_middle_of_an_epoch_resumes_to_the_uninterrupted_run(tmp_path, monkeypatch, capsys, epoch,
                                                                          tensorboard):
    """In epoch 1 (with TensorBoard on), no epoch is whole yet: last.pt holds epoch 0 and the part of epoch 1."""
    args = ARGS + ["--run.tensorboard", tensorboard]
    assert main(args + ["--run-dir", str(tmp_path / "whole")]) == 0
    monkeypatch.setenv("NETTRAIN_TEST_SIGNAL_AT", f"{epoch}:7")   # SIGTERM to itself after step 7 of the epoch
    stopped = tmp_path / "stopped"
    assert main(args + ["--run-dir", str(stopped)]) == 128 + signal.SIGTERM
    err = capsys.readouterr().err
    assert f"nettrain: stopped at step 7 of 23 in epoch {epoch} of 2; {stopped / 'last.pt'} keeps it; continue " \
           f"with: nettrain fit --resume {stopped}\n" in err and err.endswith("nettrain: stopped by SIGTERM\n")
    kept = torch.load(stopped / "last.pt", weights_only=True)
    assert kept["epoch"] == epoch - 1 and len(kept["history"]) == epoch - 1   # the last whole epoch, as before
    assert {k: kept["partial"][k] for k in ("epoch", "batches", "steps")} == {"epoch": epoch, "batches": 14,
                                                                             "steps": 7}
    assert kept["partial"]["sums"][0]["seen"] == 14 * 32
    if epoch > 1:
        assert torch.load(stopped / "best.pt", weights_only=True)["epoch"] == 1   # best.pt: epoch ends only

    monkeypatch.delenv("NETTRAIN_TEST_SIGNAL_AT")
    from nettrain.engine.progress import Progress
    bars = []   # the progress bar of each epoch trained: (epoch, its batches, where it starts)
    monkeypatch.setattr(Progress, "start_epoch", lambda self, e, steps, done=0: bars.append((e, steps, done)))
    if epoch > 1:
        assert main(["fit", "--resume", str(stopped), "--epochs", "1"]) == 2   # its weights are epoch 2's, in part
        assert capsys.readouterr().err == f"nettrain: error: {stopped / 'last.pt'} was stopped in the middle of " \
                                          f"epoch 2; --epochs must be at least 2 to resume it (give --epochs 2 or more)\n"
    assert main(["fit", "--resume", str(stopped)]) == 0
    assert bars[0] == (epoch, 45, 14)   # the resumed epoch's bar starts at the batches done before the stop
    assert numbers(stopped) == numbers(tmp_path / "whole")   # epoch 2's row too: its first 14 batches carried on
    assert same_weights(stopped, tmp_path / "whole") and same_weights(stopped, tmp_path / "whole", "train_model")
    assert "partial" not in torch.load(stopped / "last.pt", weights_only=True)
    assert (stopped / "test_metrics.json").read_text() == (tmp_path / "whole" / "test_metrics.json").read_text()


def test_a_stop_during_validation_stops_after_the_epochs_checkpoint(tmp_path, monkeypatch, capsys):
    """A stop after the epoch's last step boundary (its last step, its validation, its checkpoint) lets the epoch
    end: last.pt keeps it whole, and the run stops before the next one."""
    evaluate = wiring.evaluate_pass

    def signalled(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        return evaluate(*args, **kwargs)
    monkeypatch.setattr(wiring, "evaluate_pass", signalled)
    run = tmp_path / "run"
    assert main(ARGS + ["--epochs", "3", "--run-dir", str(run)]) == 128 + signal.SIGTERM
    err = capsys.readouterr().err
    assert f"nettrain: stopped after epoch 1 of 3; {run / 'last.pt'} keeps epoch 1; continue with: nettrain fit " \
           f"--resume {run}\n" in err
    kept = torch.load(run / "last.pt", weights_only=True)
    assert kept["epoch"] == 1 and "partial" not in kept and len(read_metrics(run / "metrics.csv")) == 1


def test_a_stop_resumed_at_another_world_size_counts_every_ranks_part_once():
    from nettrain.engine.distributed import World
    from nettrain.engine.stop import resumed
    sums = [{"loss_sum": torch.tensor(v), "correct": c, "seen": 40, "wait": 0.1, "seconds": 1.0}
            for v, c in ((3.5, 30), (4.25, 31))]
    entry = {"epoch": 2, "batches": 5, "steps": 5, "world_size": 2, "sums": sums, "rng_at_start": {}}
    alone = resumed(entry, "last.pt", 1, 3, 90, 1, World())
    assert (alone.loss_sum.item(), alone.correct, alone.seen, alone.batches) == (7.75, 61, 80, 5)
    other = resumed(entry, "last.pt", 1, 3, 90, 1, World(rank=2, size=3))
    assert (other.loss_sum.item(), other.correct, other.seen) == (0.0, 0, 0)
    same = resumed(entry, "last.pt", 1, 3, 90, 1, World(rank=1, size=2))
    assert (same.loss_sum.item(), same.correct) == (4.25, 31)   # its own
    with pytest.raises(nettrain.errors.CheckpointError, match="does not fit this run"):
        resumed(entry, "last.pt", 1, 3, 5, 1, World())   # batch 5 of 5: no epoch stops after its last


def test_a_damaged_partial_entry_is_refused_in_one_line(tmp_path):
    from nettrain.engine import checkpoint as ckpt_io
    from nettrain.errors import CheckpointError
    from nettrain.kinds import KINDS
    nettrain.fit(dataset="two-gaussians", model="mlp", epochs=1, run_dir=tmp_path / "run",
                 **{"run.progress": "none", "run.tensorboard": False, "run.report": False})
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    sums = {"loss_sum": torch.tensor(1.0), "correct": 1, "seen": "2", "wait": 0.0, "seconds": 0.1}
    state["partial"] = {"epoch": 2, "batches": 1, "steps": 1, "world_size": 1, "sums": [sums], "rng_at_start": {}}
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="partial.sums must be one mapping of loss_sum") as e:
        ckpt_io.load(tmp_path / "bad.pt", kinds=KINDS)
    assert "\n" not in str(e.value)


# ---- the DataLoader path: a user's Dataset with a collate function, and a user's shuffling DataLoader -----------

@pytest.mark.parametrize("form", ["dataset", "dataloader"])
def test_a_stop_on_the_dataloader_path_resumes_exactly(tmp_path, monkeypatch, form):
    """The DataLoader's first batches are loaded again and dropped. A user's DataLoader that shuffles without a
    generator of its own draws its order from the global RNG when the epoch starts: the resume starts it under the
    RNG state of that moment, kept in last.pt."""
    train, val = Sequences(48, seed=9), Sequences(16, seed=10)
    options = dict(val_data=val, optimizer="adam", lr=0.01, batch_size=8, epochs=2, seed=1, **{"train.threads": 1},
                   run_dir=None, **{"run.progress": "none", "run.tensorboard": False, "run.report": False,
                                    "device": "cpu"})

    def data():
        return dict(data=DataLoader(train, batch_size=8, shuffle=True, collate_fn=pad_collate)) \
            if form == "dataloader" else dict(data=train, collate_fn=pad_collate)

    torch.manual_seed(0)
    nettrain.fit(model=BiLSTM(), **data(), **{**options, "run_dir": tmp_path / "whole"})
    torch.manual_seed(0)
    monkeypatch.setenv("NETTRAIN_TEST_SIGNAL_AT", "2:3")
    with signals.stop_signals(), pytest.raises(signals.Stopped):   # the command's handlers
        nettrain.fit(model=BiLSTM(), **data(), **{**options, "run_dir": tmp_path / "stopped"})
    assert torch.load(tmp_path / "stopped" / "last.pt", weights_only=True)["partial"]["batches"] == 3
    monkeypatch.delenv("NETTRAIN_TEST_SIGNAL_AT")
    nettrain.fit(resume=tmp_path / "stopped", model=BiLSTM(), **data(), **{**options, "run_dir": None})
    assert numbers(tmp_path / "stopped") == numbers(tmp_path / "whole")
    assert same_weights(tmp_path / "stopped", tmp_path / "whole")


class Counted(Dataset):
    """Sequences whose item `fail_at` (counting every __getitem__ call) brings the terminal's Ctrl-C and fails, as a
    DataLoader whose workers the Ctrl-C ended would (torch's workers exit on KeyboardInterrupt)."""

    def __init__(self, fail_at=None):
        self.items, self.calls, self.fail_at = Sequences(48, seed=9), 0, fail_at

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        self.calls += 1
        if self.calls == self.fail_at:
            os.kill(os.getpid(), signal.SIGINT)
            raise RuntimeError("DataLoader worker (pid 4242) exited unexpectedly")
        return self.items[i]


def test_a_ctrl_c_that_ends_the_dataloaders_workers_stops_at_the_step_boundary_before(tmp_path):
    options = dict(val_data=Sequences(16, seed=10), collate_fn=pad_collate, optimizer="adam", lr=0.01, batch_size=8,
                   epochs=2, seed=1, **{"train.threads": 1, "run.progress": "none", "run.tensorboard": False,
                                        "run.report": False, "device": "cpu"})
    whole = Counted()
    torch.manual_seed(0)
    nettrain.fit(model=BiLSTM(), data=whole, run_dir=tmp_path / "whole", **options)
    before_training = whole.calls - 2 * 48   # the model check's items, before epoch 1's 6 batches of 8
    torch.manual_seed(0)
    with signals.stop_signals(), pytest.raises(KeyboardInterrupt):   # the first item of epoch 2's batch 4
        nettrain.fit(model=BiLSTM(), data=Counted(before_training + 48 + 3 * 8 + 1), run_dir=tmp_path / "stopped",
                     **options)
    assert torch.load(tmp_path / "stopped" / "last.pt", weights_only=True)["partial"]["batches"] == 3
    nettrain.fit(resume=tmp_path / "stopped", model=BiLSTM(), data=Counted(), **options)
    assert numbers(tmp_path / "stopped") == numbers(tmp_path / "whole")
    assert same_weights(tmp_path / "stopped", tmp_path / "whole")


def test_without_the_commands_handlers_a_signal_is_not_deferred(tmp_path):
    """The Python API installs no handlers: flagged() changes nothing then, and a KeyboardInterrupt comes where it
    is raised, as before (last.pt keeps the last whole epoch)."""
    # Python's own handler, set here: a shell starting the tests in the background (`cmd &`) has SIGINT ignored
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt), signals.flagged():
            signal.raise_signal(signal.SIGINT)
    finally:
        signal.signal(signal.SIGINT, previous)


def test_a_second_stop_signal_stops_at_once_unless_under_torchrun():
    with signals.stop_signals():
        with pytest.raises(signals.Stopped), signals.flagged(second_stops=True):
            signal.raise_signal(signal.SIGTERM)
            assert signals.pending() == signal.SIGTERM   # the first only sets the flag
            signal.raise_signal(signal.SIGTERM)
            raise AssertionError("the second signal did not stop")
        with pytest.raises(KeyboardInterrupt), signals.flagged(second_stops=False):
            signal.raise_signal(signal.SIGINT)
            signal.raise_signal(signal.SIGINT)   # torchrun's agent repeating the terminal's Ctrl-C
            assert signals.pending() == signal.SIGINT
        # a flag still pending when training ends is raised then (above: by flagged's exit)


# ---- two processes (torchrun, gloo): one of them, or the agent, gets SIGTERM in the middle of an epoch ----------

# dropout: each process draws its own masks (distributed.own_random_streams), which a resume must give back to each
TWO = ["fit", "--dataset", "digits", "--model", "mlp", "--model.args.dropout", "0.2", "--epochs", "3",
       "--batch-size", "16", "--precision", "32",
       "--seed", "3", "--train.threads", "1", "--optimizer", "sgd", "--lr", "0.05", "--momentum", "0.9",
       "--data.flip", "true", "--run.progress", "none", "--run.tensorboard", "false", "--run.report", "false",
       "--nproc", "2"]


def nettrain_cli(args, signal_at=None):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    env.pop("NETTRAIN_TEST_SIGNAL_AT", None)
    if signal_at:
        env["NETTRAIN_TEST_SIGNAL_AT"] = signal_at
    return subprocess.run([sys.executable, "-m", "nettrain", *args], env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def two_whole(tmp_path_factory):
    run = tmp_path_factory.mktemp("two") / "whole"
    done = nettrain_cli(TWO + ["--run-dir", str(run)])
    assert done.returncode == 0, done.stderr[-2000:]
    return run


@pytest.mark.slow
@pytest.mark.parametrize("who", ["1", "agent"])
def test_two_processes_stop_at_the_same_step_and_resume_exactly(two_whole, tmp_path, who):
    """SIGTERM to rank 1 alone (rank 0 learns it from the steps' all-reduce, and writes the checkpoint), or to the
    torchrun agent (which forwards it to both, some steps later): one last.pt, with both ranks' sums of the epoch in
    progress; --resume --nproc 2 then ends with the uninterrupted 2-process run's numbers, exactly (the same
    reductions in the same order: seen equal to the last bit on this CPU)."""
    run = tmp_path / "stopped"
    stopped = nettrain_cli(TWO + ["--run-dir", str(run)], signal_at=f"2:5:{who}")
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stderr[-2000:]
    assert "Traceback" not in stopped.stderr and stopped.stderr.count("keeps") == 1   # said once, by rank 0
    kept = torch.load(run / "last.pt", weights_only=True)
    if who == "1":   # deterministic: rank 1's flag after step 5 is agreed on by both at the next agreed boundary,
        # step 8 (stop.AGREE_EVERY: started after step 7, waited for after step 8)
        assert AGREE_EVERY == 8
        assert f"stopped at step 8 of 90 in epoch 2 of 3; {run / 'last.pt'} keeps it" in stopped.stderr
        assert kept["partial"]["batches"] == 8 and kept["partial"]["world_size"] == 2
        assert [s["seen"] for s in kept["partial"]["sums"]] == [8 * 8, 8 * 8]   # each rank's own sums
    resumed = nettrain_cli(["fit", "--resume", str(run), "--nproc", "2"])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert numbers(run) == numbers(two_whole)
    assert same_weights(run, two_whole)
    kept = torch.load(two_whole / "last.pt", weights_only=True)   # the processes' streams: each its own
    assert len(kept["rng_ranks"]) == 2 and torch.equal(kept["rng_ranks"][0]["torch"], kept["rng"]["torch"])
    assert not torch.equal(kept["rng_ranks"][0]["torch"], kept["rng_ranks"][1]["torch"])
    assert json.loads((run / "test_metrics.json").read_text()) == \
        json.loads((two_whole / "test_metrics.json").read_text())


def test_the_progress_bar_counts_batches_from_where_it_starts(monkeypatch):
    from nettrain.engine.progress import Progress
    bar = Progress("bar", 2)
    bar.start_epoch(2, 45, done=14)
    assert (bar.bar.n, bar.bar.total) == (14, 45)
    bar.step(25, 0.5, 100.0)   # 11 batches since the resumed start: the bar is at 25, not 14 + 25
    assert bar.bar.n == 25
    bar.end_epoch(MetricsRow(epoch=2, train_loss=0.5, lr=0.1, seconds=1.0, examples_per_s=100.0, data_wait=0.0))
