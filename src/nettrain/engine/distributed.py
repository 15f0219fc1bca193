"""Many processes on PyTorch's own engine: torchrun starts them (RANK, LOCAL_RANK and WORLD_SIZE in their
environment), torch.distributed joins them (gloo on the CPU, nccl on CUDA, LOCAL_RANK picking the GPU) and
DistributedDataParallel averages the gradients. No launcher, rendezvous or all-reduce of nettrain's own.

A single process is world size 1 on the same path: no process group is made and every collective returns its
input. Only the main rank writes (run directory, TensorBoard, progress, checkpoints): the others are given null
writers (`NullRun`, `NullLog`): the training code asks a run directory whether it `writes`, never its rank.

A stop (Ctrl-C, SIGTERM) reaches the processes from the terminal, from torchrun's agent (which forwards it to them
all), or from a scheduler to one of them. While training it only sets a flag (signals.py), which the processes agree
on at every optimizer-step boundary (`agree_stop`: one all-reduce of one integer, MAX): all of them stop after the
same step, where a rank stopping alone would leave the others waiting in the next gradient all-reduce (Lightning's
rank-0-only handler deadlocked them: lightning #20806). The main rank then keeps the epoch in progress in last.pt
(engine/stop.py) while the others wait at a barrier, and every process exits 128 + the signal.

`train.batch_size` is the global batch: each rank takes batch_size / world_size, and the learning rate is not scaled.
"""
from __future__ import annotations

import contextlib
import datetime
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from ..errors import ConfigError, NettrainError
from . import elastic, watchdog


@dataclass(frozen=True)
class World:
    """This process's place among the processes torchrun started (rank 0 of 1 without torchrun)."""
    rank: int = 0
    local_rank: int = 0
    size: int = 1
    backend: Optional[str] = None   # "gloo" or "nccl" once joined; None at world size 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self, device: torch.device) -> torch.device:
        """The GPU of this process on its machine (LOCAL_RANK) when training is on CUDA without an index."""
        if self.size > 1 and device.type == "cuda" and device.index is None:
            return torch.device("cuda", self.local_rank)
        return device

    def local_batch(self, batch_size: int) -> int:
        """This rank's share of the global batch `batch_size`; refused unless every rank gets the same share (DDP
        averages the ranks' mean gradients, which is the global batch's mean only for equal shares)."""
        if batch_size % self.size:
            raise ConfigError(f"train.batch_size {batch_size} is the global batch and must divide evenly among the "
                              f"{self.size} processes; give a multiple of {self.size}, e.g. --batch-size "
                              f"{max(self.size, batch_size // self.size * self.size)}")
        return batch_size // self.size

    def own_random_streams(self, seed: int):
        """From here on, each rank draws its own random numbers (dropout masks, a DataLoader's worker seeds). Every
        rank was seeded alike so that the models start alike; left alike, each rank would draw the very dropout masks
        of the others on its own examples. Rank 0 keeps its stream: world size 1 is the single process's."""
        if self.rank:
            torch.manual_seed((seed * 2_654_435_761 + self.rank) % 2**63)

    def random_states(self, state: dict) -> list:
        """Every rank's RNG state (checkpoint.rng_state()), in rank order, for a checkpoint (one process: [])."""
        return self.gather(state) if self.size > 1 else []

    def mine(self, ranks) -> Optional[dict]:
        """This rank's entry of a checkpoint's per-rank RNG states (random_states), or None when it holds none for
        this world size (then every rank takes the main rank's state, and the others go on with own_random_streams)."""
        if self.size > 1 and isinstance(ranks, list) and len(ranks) == self.size:
            return ranks[self.rank]
        return None

    def wrap(self, model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        """The model under DistributedDataParallel (checkpoint.unwrap takes it off again), or as it is alone."""
        if self.size == 1:
            return model
        ids = [device.index] if device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def only_main(self, make, null):
        """What the main rank makes (a writer), and `null` on the others."""
        return make() if self.is_main else null

    def run(self, kind: type, make):
        """The run directory (of class `kind`, runs.RunDir) the main rank makes or opens and locks; on the others, a
        NullRun of the same path."""
        run = make() if self.is_main else None
        path = self.broadcast(str(run.path) if run is not None else None)
        if run is not None:   # where a restarted attempt (torchrun --max-restarts) finds the run to resume
            elastic.record_run(run.path)
        run = run if run is not None else NullRun(path, kind)
        watchdog.attach(run)   # every rank's stacks go into the run directory on a hang
        return run

    def _comm_device(self, like: torch.Tensor) -> torch.device:
        return like.device if self.backend == "nccl" else torch.device("cpu")   # gloo reduces CPU tensors

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The element-wise sum of `tensor` over the ranks (a new tensor on its device); `tensor` itself alone."""
        if self.size == 1:
            return tensor
        out = tensor.detach().to(self._comm_device(tensor), copy=True)
        with watchdog.guard("all_reduce"):
            torch.distributed.all_reduce(out, op=torch.distributed.ReduceOp.SUM)
        return out.to(tensor.device)

    def gather(self, obj) -> list:
        """Every rank's `obj`, in rank order (for values that do not sum, such as regression outputs)."""
        if self.size == 1:
            return [obj]
        out = [None] * self.size
        with watchdog.guard("all_gather_object"):
            torch.distributed.all_gather_object(out, obj)
        return out

    def broadcast(self, obj):
        """The main rank's `obj` on every rank (the run directory's path it chose)."""
        if self.size == 1:
            return obj
        box = [obj]
        with watchdog.guard("broadcast_object_list"):
            torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def agree_stop(self, signum: int) -> int:
        """The stop signal any rank has received (the largest number), or 0: every rank calls this at the same step
        boundary, and all of them stop after that step or none does. Alone: `signum`, a plain int (no collective,
        no device sync). Under nccl the integer goes through a gloo group of its own, on the CPU: no wait for the
        GPU's queued work, which a CUDA tensor's .item() would add to every step."""
        if self.size == 1:
            return signum
        flag = torch.tensor([signum], dtype=torch.int32)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX, group=_cpu_group(self.backend))
        return int(flag[0])

    def start_agreeing(self, signum: int):
        """agree_stop's all-reduce, started and not waited for (the training loop waits for it a step later, so
        that its round trip overlaps the step instead of adding to it): what `agreed_on` takes."""
        flag = torch.tensor([signum], dtype=torch.int32)
        work = torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX, group=_cpu_group(self.backend),
                                            async_op=True)
        return flag, work

    @staticmethod
    def agreed_on(started) -> int:
        """The signal a started agreement (start_agreeing) came to, once every rank's part has arrived."""
        flag, work = started
        work.wait()
        return int(flag[0])

    def barrier(self):
        """Every rank waits here for the others (the main rank writing a stop's checkpoint before any exits)."""
        if self.size > 1:
            torch.distributed.barrier(group=_cpu_group(self.backend))

    def shard(self, n: int) -> tuple:
        """This rank's contiguous part [lo, hi) of n examples to evaluate: every example in exactly one part, none
        repeated to even the parts out (their sums are all-reduced once at the end, so uneven parts cannot hang)."""
        return n * self.rank // self.size, n * (self.rank + 1) // self.size

    def train_sums(self, result: dict) -> dict:
        """An epoch's training result (engine/loop.train_epoch) over every rank's examples: the mean loss and
        accuracy of all of them, and the examples of all ranks (its seconds are this rank's, which all share)."""
        if self.size == 1:
            return result
        n = result["examples"]
        acc = result["acc"]
        total = self.sum(torch.tensor([result["loss"] * n, round((acc or 0.0) * n), n], dtype=torch.float64))
        loss_sum, correct, examples = total.tolist()
        examples = max(int(examples), 1)
        return {**result, "loss": loss_sum / examples, "acc": correct / examples if acc is not None else None,
                "examples": int(examples)}

    def evaluation_sums(self, loss_sum: torch.Tensor, seen: int, confusion: torch.Tensor, outs: list, ys: list,
                        classification: bool):
        """An evaluation's sums over every rank's shard, in one all-reduce: the loss sum, the count and the confusion
        matrix (counts below 2**53 are exact in float64); a regression's outputs and targets are gathered whole
        (R^2 needs the spread of all targets), in rank order, i.e. in the order of one process."""
        if self.size == 1:
            return loss_sum, seen, confusion, outs, ys
        packed = torch.cat([loss_sum.double().view(1), torch.tensor([seen], dtype=torch.float64,
                                                                    device=loss_sum.device), confusion.double()])
        total = self.sum(packed)
        loss_sum, seen, confusion = total[0], int(total[1].item()), total[2:].round().long()
        if not classification:   # every rank, even one whose part is empty, joins the gather
            device = loss_sum.device
            parts = self.gather((torch.cat(outs).cpu(), torch.cat(ys).cpu()) if outs else None)
            parts = [p for p in parts if p is not None]
            outs = [p[0].to(device) for p in parts]
            ys = [p[1].to(device) for p in parts]
        return loss_sum, seen, confusion, outs, ys


_cpu_groups = {}   # the default process group -> the gloo group beside it, for stop flags under nccl


def _cpu_group(backend: Optional[str]):
    """A process group for small CPU tensors: the default one under gloo; under nccl a gloo group made once, the
    first time every rank asks (new_group is itself collective: all ranks reach their first stop check together)."""
    if backend != "nccl":
        return None
    world = torch.distributed.group.WORLD
    if world not in _cpu_groups:
        _cpu_groups.clear()
        _cpu_groups[world] = torch.distributed.new_group(backend="gloo")
    return _cpu_groups[world]


def local(model: torch.nn.Module) -> torch.nn.Module:
    """The model without its DDP wrapper: what evaluation runs, each rank on its own part of the examples (DDP's
    forward may sync buffers, a collective that ranks with uneven parts would not all join)."""
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


def from_env() -> World:
    """The world torchrun describes in the environment; world size 1 without it."""
    size = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if size <= 1:
        return World()
    return World(rank=int(os.environ.get("RANK", "0")), local_rank=int(os.environ.get("LOCAL_RANK", "0")), size=size)


@contextlib.contextmanager
def joined(device: torch.device, timeout: Optional[float] = None):
    """This process's World inside the block: under torchrun, its process group (gloo for the CPU, nccl for CUDA),
    made on entry and torn down on exit when this block made it; alone, world size 1 and nothing to make. `timeout`
    (dist.timeout, seconds): the hang watchdog's (engine/watchdog.py), with the process group's own timeout past it."""
    world = from_env()
    if world.size == 1:
        yield world
        return
    dist = torch.distributed
    backend = "nccl" if device.type == "cuda" else "gloo"
    made = not dist.is_initialized()
    if made:
        if backend == "nccl":
            torch.cuda.set_device(world.local_rank)
        seconds = watchdog.backstop(timeout) if timeout else None
        options = {"timeout": datetime.timedelta(seconds=seconds)} if seconds else {}
        store = elastic.attempt_store(seconds or 1800)   # restarted (--max-restarts): keys of this attempt's own
        if store is not None:
            options.update(store=store, rank=world.rank, world_size=world.size)
        dist.init_process_group(backend=backend, **options)
    else:
        backend = dist.get_backend()
    try:
        with watchdog.watching(world, timeout):
            yield World(world.rank, world.local_rank, world.size, backend)
    except RuntimeError as e:
        lost = _peer_lost(e)
        if lost is None:
            raise
        raise PeerLostError(f"rank {world.rank}: a collective failed because another process of the job ended "
                            f"({lost}); that process's output says why (under --max-restarts torchrun restarts the "
                            f"job, which resumes the run)") from e
    finally:
        if made and dist.is_initialized():
            dist.destroy_process_group()


class PeerLostError(NettrainError):
    """A collective that failed because another process of the job ended (killed, or stopped by its own error)."""


def _peer_lost(e: RuntimeError):
    """What gloo or NCCL said when a peer process went away (its connection closed or reset), or None for
    another error. gloo raises a plain RuntimeError whose message starts with its source file: "[.../pair.cc:561]
    Connection closed by peer [127.0.0.1]:30087. This is typically caused by a remote worker crashing ..."."""
    text = str(e)
    if "gloo" not in text and "NCCL" not in text:   # a user's own "Read error" is the user's, not a peer's
        return None
    found = re.search(r"(Connection (?:closed|reset) by peer|Read error|Socket closed|NCCL communicator was "
                      r"aborted|remote process exited)", text)
    return f"{'NCCL' if 'NCCL' in text else 'gloo'}: {found.group(1)}" if found else None


class NullRun:
    """The run directory as a rank other than the main one sees it: its paths (to read a resumed checkpoint and to
    name files in messages) and writers that write nothing. It never takes the directory's lock. `kind`: the
    run directory's class (runs.RunDir, passed in: the engine does not import the run directory), whose path
    properties it shares."""
    writes = False

    def __init__(self, path, kind: type):
        self.path = Path(path)
        self._kind = kind

    def __getattr__(self, name):
        attr = getattr(self.__dict__.get("_kind"), name, None)
        if isinstance(attr, property):   # a file's path (last, best, metrics, ...): read through RunDir's property
            return attr.fget(self)
        if name.startswith("write_") or name in ("add_event", "lock", "unlock"):
            return _nothing
        raise AttributeError(name)


class NullLog:
    """TensorBoard on a rank other than the main one: nothing."""

    def __getattr__(self, name):
        return _nothing


def _nothing(*args, **kwargs):
    return None


def launch(nproc: int, argv: list, max_restarts: int = 0) -> int:
    """`nettrain fit --nproc N ...`: the same command in N processes on this machine, started by torchrun's own
    entry point (torch.distributed.run, standalone rendezvous on a free local port); returns the exit code. With
    `max_restarts`, a process that dies makes torchrun restart them all (up to that many times), and the run
    resumes from its last checkpoint (engine/elastic.py)."""
    import logging
    from torch.distributed import run as torchrun
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    # the machine's cores shared among the processes (torchrun would set 1 thread each, with a warning banner)
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    args = torchrun.parse_args(["--standalone", f"--nproc-per-node={nproc}", f"--max-restarts={max_restarts}", "-m",
                                "nettrain", *argv])
    # a failed process has said what went wrong in its one line: the agent's own error log would only repeat it
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    try:
        torchrun.run(args)
    except ChildFailedError as e:   # pass the failed process's exit code on
        codes = [f.exitcode for f in e.failures.values() if f.exitcode]
        return next((c for c in codes if c > 0), 128 - min(codes) if codes else 1)
    except SignalException as e:   # SIGTERM, SIGHUP: the agent has stopped the processes, which said so
        return 128 + int(e.sigval)
    return 0


def is_launched() -> bool:
    """Is this process one of torchrun's (then --nproc is torchrun's business, not this process's)?"""
    return "TORCHELASTIC_RUN_ID" in os.environ or int(os.environ.get("WORLD_SIZE", "1") or 1) > 1


__all__ = ["World", "from_env", "joined", "NullRun", "NullLog", "launch", "is_launched", "PeerLostError"]
