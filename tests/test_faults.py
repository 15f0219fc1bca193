"""Faults of a job of many processes: the hang watchdog (engine/watchdog.py), restarts under --max-restarts that
resume the run (engine/elastic.py), a peer that died, and two torchrun nodes on loopback."""
import csv
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

import pytest
import torch

import nettrain
from nettrain.cli import _without, main
from nettrain.config import Config
from nettrain.engine import distributed, elastic, watchdog
from nettrain.errors import ConfigError
from nettrain.resume import RESUMABLE
from nettrain.runs import RunDir
from conftest import QUIET

SRC = Path(__file__).resolve().parents[1] / "src"
CONFIG = ["--dataset", "digits", "--model", "mlp", "--epochs", "2", "--batch-size", "64", "--precision", "32",
          "--seed", "3", "--train.threads", "1"]


def env(**extra):
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
            "OMP_NUM_THREADS": "1", **extra}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- the watchdog's parts, in this process ----

def summary(rank, collective, call="f (a/b.py:1)", what=watchdog.STEP, step=3):
    return {"rank": rank, "collective": collective, "call": call, "what": what, "step": step, "seconds": 3.1}


def test_the_line_names_the_stuck_rank_its_call_and_what_the_others_waited_in(tmp_path):
    line = watchdog.describe({0: summary(0, "loss.backward (DDP's gradient all-reduce)"),
                              1: summary(1, None, "_injected_hang (nettrain/engine/watchdog.py:9)"),
                              2: summary(2, "loss.backward (DDP's gradient all-reduce)")}, 3, 5, tmp_path / "hang")
    assert line.startswith("rank 1 of 3 is stuck in _injected_hang (nettrain/engine/watchdog.py:9) (training step 3)")
    assert "rank 0, 2 in loss.backward (DDP's gradient all-reduce)" in line and "\n" not in line
    assert f"{tmp_path / 'hang'}/rank*.txt" in line and "--dist.timeout more than 5" in line


def test_under_an_asynchronous_backend_the_rank_behind_is_the_stuck_one():
    """NCCL queues the all-reduce and returns: the waiting rank runs on to its next device sync, steps ahead of the
    stuck one, outside any collective's frame."""
    line = watchdog.describe({0: summary(0, None, "train_epoch (nettrain/engine/loop.py:83)", step=25),
                              1: summary(1, None, "load (user/mydata.py:41)", step=3)}, 2, 5, None)
    assert line.startswith("rank 1 of 2 is stuck in load (user/mydata.py:41) (training step 3), while the others")
    assert "rank 0 in train_epoch (nettrain/engine/loop.py:83), at step 25 (a wait on the device)" in line


def test_a_rank_that_gave_no_stack_is_named_and_mismatched_collectives_are_said():
    silent = watchdog.describe({0: summary(0, "torch.distributed.all_reduce", what="all_reduce")}, 2, 5, None)
    assert "rank 1 gave no stack" in silent and "rank 0 in torch.distributed.all_reduce" in silent
    assert "on stderr" in silent
    mismatch = watchdog.describe({0: summary(0, "torch.distributed.all_reduce"),
                                  1: summary(1, "torch.distributed.broadcast_object_list")}, 2, 5, None)
    assert "collectives that do not match: rank 0 in torch.distributed.all_reduce; rank 1 in " \
           "torch.distributed.broadcast_object_list" in mismatch


def frames(*where):
    return [traceback.FrameSummary(f, 1, name) for f, name in where]


def test_the_collective_is_read_from_the_stack():
    c10d = "/x/site-packages/torch/distributed/distributed_c10d.py"
    stack = frames(("/x/nettrain/engine/distributed.py", "broadcast"), ("/x/torch/distributed/c10d_logger.py",
                                                                         "wrapper"), (c10d, "broadcast_object_list"),
                   (c10d, "broadcast"))
    assert watchdog._collective(stack, "broadcast_object_list") == "torch.distributed.broadcast_object_list"
    backward = frames(("/x/nettrain/engine/loop.py", "train_epoch"), ("/x/torch/autograd/graph.py",
                                                                      "_engine_run_backward"))
    assert watchdog._collective(backward, watchdog.STEP) == "loss.backward (DDP's gradient all-reduce)"
    assert watchdog._collective(backward, None) is None   # a backward outside a watched step: no collective
    assert watchdog._collective(frames(("/x/nettrain/engine/watchdog.py", "_injected_hang")), watchdog.STEP) is None


def test_steps_arm_the_watchdog_for_each_step_and_guard_nests(tmp_path):
    batches = [1, 2, 3]
    assert watchdog.steps(batches) is batches   # no watchdog (one process): the batches themselves
    with watchdog.watching(distributed.World(rank=0, size=2), 60) as dog:
        wrapped = watchdog.steps(batches)
        assert len(wrapped) == 3 and wrapped.count(2) == 1   # the batches' own attributes
        seen = []
        for b in wrapped:
            seen.append((b, dog.what, dog.armed_at is not None))
            with watchdog.guard("all_reduce"):
                assert dog.what == "all_reduce"
            assert dog.what == watchdog.STEP and dog.armed_at is not None   # the step's arming, back
        assert seen == [(1, watchdog.STEP, True), (2, watchdog.STEP, True), (3, watchdog.STEP, True)]
        assert dog.armed_at is None and dog.step == 3   # disarmed once the epoch's batches are done
    assert watchdog._active is None and not dog._thread.is_alive()


def test_the_dump_names_the_main_threads_function(tmp_path):
    """The watchdog thread reads where the main thread is and writes faulthandler's stacks of every thread."""
    dog = watchdog.Watchdog(rank=1, size=2, timeout=5)
    dog.folder = tmp_path / "hang"
    dog.arm(watchdog.STEP)
    got, done = [], threading.Lock()
    done.acquire()
    main = threading.main_thread().ident

    def look():   # once the main thread waits in waiting_for_a_peer (its innermost Python frame: acquire is C)
        try:
            deadline = time.monotonic() + 120
            while sys._current_frames()[main].f_code.co_name != "waiting_for_a_peer" and time.monotonic() < deadline:
                time.sleep(0.001)
            got.append(dog.summary())
            dog._dump(got[0])
        finally:
            done.release()

    def waiting_for_a_peer():   # blocked, as in a collective, until the other thread has looked at it
        other = threading.Thread(target=look)
        other.start()
        assert done.acquire(timeout=120), "the watchdog thread never wrote its dump"
        other.join()

    waiting_for_a_peer()
    assert got[0]["call"].startswith("waiting_for_a_peer (") and "test_faults.py:" in got[0]["call"]
    assert got[0]["collective"] is None
    text = (tmp_path / "hang" / "rank1.txt").read_text()
    assert text.startswith("nettrain watchdog: rank 1 of 2 (dist.timeout 5 s): its main thread is in "
                           "waiting_for_a_peer")
    assert "in waiting_for_a_peer" in text and "in look" in text   # faulthandler's lines, both threads
    assert not list((tmp_path / "hang").glob(".*.tmp"))


def test_dist_timeout_is_a_config_key_a_resume_may_change():
    assert Config().dist.timeout == 300.0 and Config().override({"dist.timeout": None}).dist.timeout is None
    for bad in (0, -1):
        with pytest.raises(ConfigError, match=r"dist.timeout must be in \(0, inf\)"):
            Config().override({"dist.timeout": bad})
    assert "dist.timeout" in RESUMABLE
    assert watchdog.backstop(300) == 640   # torch's own timeout past the watchdog's report (300 + GRACE)


def test_a_lost_peer_is_one_line():
    gloo = RuntimeError("[/__w/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:561] Connection closed by peer "
                        "[127.0.0.1]:30087. This is typically caused by a remote worker crashing.")
    assert distributed._peer_lost(gloo) == "gloo: Connection closed by peer"
    assert distributed._peer_lost(RuntimeError("mat1 and mat2 shapes cannot be multiplied")) is None
    assert distributed._peer_lost(RuntimeError("Read error in my_dataset.py: Connection reset by peer")) is None


# ---- restarts: the run an earlier attempt made ----

@pytest.fixture
def job_store(monkeypatch):
    """A job's store, as torchrun's agent keeps it, and the environment it gives its processes."""
    port = free_port()
    server = torch.distributed.TCPStore("127.0.0.1", port, is_master=True, wait_for_workers=False)
    for k, v in {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "TORCHELASTIC_RUN_ID": "job1",
                 "TORCHELASTIC_MAX_RESTARTS": "2", "TORCHELASTIC_RESTART_COUNT": "0"}.items():
        monkeypatch.setenv(k, v)
    yield server


def test_a_restarted_attempt_resumes_the_run_of_the_first(tmp_path, job_store, monkeypatch, quiet):
    """The first attempt records its run directory in the job's store; the restart (TORCHELASTIC_RESTART_COUNT 1)
    resumes it, though its command line names no --resume, and says so in events.jsonl."""
    run = tmp_path / "run"
    first = nettrain.fit(dataset="two-gaussians", model="mlp", epochs=1, run_dir=str(run), **quiet)
    assert elastic.run_to_resume() is None   # the first attempt itself
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    assert elastic.run_to_resume() == run
    again = nettrain.fit(dataset="two-gaussians", model="mlp", epochs=2, run_dir=str(run), **quiet)
    assert [m["epoch"] for m in again.metrics] == [1, 2] and again.metrics[0] == first.metrics[0]
    events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
    assert [e["event"] for e in events] == ["restart", "resume"]
    assert events[0]["restart"] == 1 and events[0]["max_restarts"] == 2 and events[1]["from_epoch"] == 1
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "another-job")   # the store's key is this job's alone
    assert elastic.run_to_resume() is None


def test_a_restart_starts_again_a_run_the_first_attempt_made_but_had_not_written(tmp_path, job_store, monkeypatch,
                                                                                     quiet):
    run = tmp_path / "run"
    RunDir.create(run, "two-gaussians", "mlp", False).unlock()   # made, then killed before config.yaml
    elastic.record_run(run)
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    done = nettrain.fit(dataset="two-gaussians", model="mlp", epochs=1, run_dir=str(run), **quiet)
    assert [m["epoch"] for m in done.metrics] == [1] and (run / "config.yaml").exists()


# ---- the command ----

def test_max_restarts_needs_nproc_and_is_checked(capsys):
    assert main(["fit", "--max-restarts", "2", "--dataset", "digits"]) == 2
    assert "--max-restarts restarts the processes of --nproc N; give --nproc too" in capsys.readouterr().err
    assert main(["fit", "--nproc", "2", "--max-restarts", "-1"]) == 2
    assert "--max-restarts must be 0 or more" in capsys.readouterr().err
    assert _without(["fit", "--max-restarts", "2", "--max-r=3", "--nproc=2", "--npr", "2", "--epochs", "1"],
                    "--max-restarts", 4) == ["fit", "--nproc=2", "--npr", "2", "--epochs", "1"]


@pytest.mark.slow   # a torchrun job of 2 processes: 20-50 s on a busy 2-core machine
def test_a_hung_rank_is_reported_with_every_ranks_stack(tmp_path):
    """Rank 1 stops answering at step 3 (NETTRAIN_TEST_HANG); rank 0 waits for it in DDP's gradient all-reduce.
    Within dist.timeout (3 s) and a poll (<= 1 s) both ranks' stacks are in RUN/hang, the job ends within GRACE of
    that with one line naming rank 1 and its call, exit code 2, and --overwrite knows the files."""
    run = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "nettrain", "fit", *CONFIG, *QUIET, "--nproc", "2", "--dist.timeout",
                           "3", "--run-dir", str(run)], env=env(NETTRAIN_TEST_HANG="1:3"), capture_output=True,
                          text=True, timeout=240)
    ended = time.time()
    assert done.returncode == watchdog.EXIT_CODE, done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("nettrain: error:")]
    assert len(errors) == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert errors[0].startswith("nettrain: error: rank 1 of 2 is stuck in _injected_hang "
                                "(nettrain/engine/watchdog.py:")
    assert "(training step 3), while the others waited for it over 3 s (dist.timeout): rank 0 in loss.backward " \
           "(DDP's gradient all-reduce)" in errors[0]
    stacks = {r: (run / "hang" / f"rank{r}.txt") for r in (0, 1)}
    one, zero = stacks[1].read_text(), stacks[0].read_text()
    assert "in _injected_hang" in one and "in train_epoch" in one
    assert "in _engine_run_backward" in zero and "in train_epoch" in zero
    for text in (zero, one):   # seconds into step 3 when the stack was taken: the timeout, a poll and slack
        seconds = float(text.split(" s into training step 3")[0].rsplit(" ", 1)[1])
        assert 3 - 0.5 <= seconds < 3 + 1 + 2   # (a rank flagged by the other may have armed a little later)
    assert ended - max(p.stat().st_mtime for p in stacks.values()) < watchdog.GRACE + 5
    RunDir.create(run, "digits", "mlp", overwrite=True).unlock()   # the record names them: --overwrite deletes them
    assert not (run / "hang").exists()


@pytest.mark.slow
def test_a_killed_worker_restarts_the_job_which_resumes_the_run(tmp_path):
    """kill -9 of rank 1 after epoch 1's checkpoint under --max-restarts 1: torchrun restarts both processes, which
    resume the run from last.pt; the job ends with exit 0, the metrics of all 4 epochs, and events.jsonl says so.
    Rank 1 is held at step 120 (of 90 per epoch) on the first attempt, so that the kill comes before the end."""
    run = tmp_path / "run"
    p = subprocess.Popen([sys.executable, "-m", "nettrain", "fit", "--dataset", "digits", "--model", "mlp",
                          "--epochs", "4", "--batch-size", "16", "--nproc", "2", "--max-restarts", "1", "--run-dir",
                          str(run), *QUIET], env=env(NETTRAIN_TEST_HANG="1:120"), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        while not (run / "last.pt").exists() and time.monotonic() < deadline and p.poll() is None:
            time.sleep(0.1)
        assert (run / "last.pt").exists(), p.communicate()[1][-3000:] if p.poll() is not None else "no epoch"
        os.kill(_worker(p.pid, rank=1), signal.SIGKILL)
        out, err = p.communicate(timeout=240)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, err[-3000:]
    assert "torchrun restarted the job (restart 1 of at most 1)" in out
    # rank 0, in one line: its peer's socket closed, or torchrun's agent stopped it first
    assert "a collective failed because another process of the job ended (gloo:" in err or "SIGTERM" in err
    assert "Traceback" not in err
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert [r["epoch"] for r in rows] == ["1", "2", "3", "4"]
    events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
    assert [e["event"] for e in events] == ["restart", "resume"] and events[1]["from_epoch"] >= 1
    assert json.loads((run / "test_metrics.json").read_text())["examples"] == 359


def _worker(launcher: int, rank: int) -> int:
    """The pid of the process of `rank` that torchrun's agent (in the `launcher` process) started."""
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            environ = (d / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if ppid == launcher and f"RANK={rank}".encode() in environ:
            return int(d.name)
    raise AssertionError(f"no process of rank {rank} under {launcher}")


@pytest.mark.slow
def test_two_torchrun_nodes_on_loopback_train_as_one_job(tmp_path):
    """Two `torchrun --nnodes=2` invocations (one process each) meet at a c10d rendezvous on 127.0.0.1 and train
    together: world size 2, and the same per-epoch losses as `fit --nproc 2` of the same config (the same
    arithmetic: equal up to float-reduction noise, 1e-6 relative)."""
    port, shared = free_port(), tmp_path / "nodes"
    nodes = [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc-per-node=1",
                               "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}", "--rdzv-id=loopback",
                               f"--node-rank={i}", "-m", "nettrain", "fit", *CONFIG, *QUIET, "--run.progress", "lines",
                               "--run-dir", str(shared)], env=env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    try:
        outs = [n.communicate(timeout=240) for n in nodes]
    finally:
        for n in nodes:
            if n.poll() is None:
                n.kill()
    assert [n.returncode for n in nodes] == [0, 0], outs[0][1][-2000:] + outs[1][1][-2000:]
    said = "".join(out for out, _ in outs)
    assert said.count("nettrain: 2 processes (gloo) | global batch 64 = 32 per process x 2") == 1
    one_node = tmp_path / "one-node"
    done = subprocess.run([sys.executable, "-m", "nettrain", "fit", *CONFIG, *QUIET, "--nproc", "2", "--run-dir",
                           str(one_node)], env=env(), capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    two, one = (list(csv.DictReader(open(d / "metrics.csv"))) for d in (shared, one_node))
    assert [r["epoch"] for r in two] == ["1", "2"]
    for a, b in zip(two, one):
        for key in ("train_loss", "val_loss", "val_acc"):
            assert float(a[key]) == pytest.approx(float(b[key]), rel=1e-6)


def test_each_restarted_attempt_joins_through_keys_of_its_own(job_store, monkeypatch):
    """torch's rendezvous reuses the agent's store through restarts: a restarted process could read the address a
    dead one published. A restarted attempt's process group gets a prefix of its own."""
    assert elastic.attempt_store(10) is None   # the first attempt: torch's own rendezvous
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    first = elastic.attempt_store(10)
    first.set("rank_0", "address of a process now dead")
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "2")
    assert not elastic.attempt_store(10).check(["rank_0"]) and first.check(["rank_0"])
