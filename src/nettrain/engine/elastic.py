"""What torchrun's elastic agent offers the processes it starts, for the two uses nettrain makes of it: the job's
key-value store (a TCPStore the agent keeps at MASTER_ADDR:MASTER_PORT through every restart of the job) and the
restart count (TORCHELASTIC_RESTART_COUNT, 0 on the first attempt).

Under `torchrun --max-restarts K` (or `nettrain fit --nproc N --max-restarts K`), a worker that dies makes the agent
stop the others and start them all again. The main rank records the run directory it made or resumed in the store;
a restarted attempt finds it there and resumes that run from its last checkpoint, instead of making a new run
directory (the default name has the time in it) or refusing the one given with --run-dir as taken. The store, not
a file or an environment variable, says which run is this job's: a run directory left by another job is never
resumed by mistake.
"""
from __future__ import annotations

import datetime
import os
from pathlib import Path
from typing import Optional


def restart_count() -> int:
    """How many times torchrun's agent has restarted this job's processes (0: the first attempt, or no torchrun)."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0)


def max_restarts() -> int:
    """The restarts torchrun allows this job (--max-restarts; 0 without torchrun)."""
    return int(os.environ.get("TORCHELASTIC_MAX_RESTARTS", "0") or 0)


def _job() -> Optional[str]:
    return os.environ.get("TORCHELASTIC_RUN_ID") if "MASTER_ADDR" in os.environ else None


def key(name: str) -> str:
    """A key of nettrain's in the job's store (the job's own run id in it: a store shared by jobs keeps them apart)."""
    return f"nettrain/{_job()}/{name}"


def connect(timeout: float = 60.0):
    """A new client of the job's store (its own connection: a thread may block on it without blocking another's), or
    None outside torchrun's agent."""
    if _job() is None:
        return None
    import torch.distributed as dist
    return dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), is_master=False,
                         timeout=datetime.timedelta(seconds=timeout))


def record_run(path) -> None:
    """The main rank: `path` is this job's run directory, for a restarted attempt to resume. Only when the job may
    be restarted (a store connection otherwise buys nothing)."""
    if max_restarts() > 0 and _job() is not None:
        connect().set(key("run"), str(path))


def run_to_resume() -> Optional[Path]:
    """On a restarted attempt, the run directory an earlier attempt of this job made (None on the first attempt,
    or when the earlier one died before making it: the restart then starts the run as the command says)."""
    if restart_count() == 0 or _job() is None:
        return None
    store = connect()
    if not store.check([key("run")]):
        return None
    return Path(store.get(key("run")).decode())


def attempt_store(timeout: float):
    """On a restarted attempt, the job's store under a prefix of this attempt's own, for init_process_group; None on
    the first attempt (torch's own env:// rendezvous) and without torchrun. The agent keeps one store through every
    restart, and torch's rendezvous reuses its keys: a restarted process could read the address a dead one had
    published and fail to connect (gloo: "connectFullMesh failed ... Connection refused", seen here on 1 restart in
    2; NCCL alike, pytorch #167288)."""
    n = restart_count()
    if n == 0 or _job() is None:
        return None
    import torch.distributed as dist
    return dist.PrefixStore(key(f"attempt{n}"), connect(timeout))


__all__ = ["restart_count", "max_restarts", "key", "connect", "record_run", "run_to_resume", "attempt_store"]
