"""How torch's OpenMP threads wait for work: spin (libgomp's default) on an idle machine, sleep on a busy one.

libgomp lets a thread that waits at a barrier spin for ~300k iterations before it sleeps. On an idle machine
that is what makes small steps fast (the MNIST recipe's step ran 1.5-1.9x faster spinning than sleeping on an
idle 2-core CPU). When other processes keep the cores busy, spinning threads steal the cores that the working
threads need (measured on a shared 2-core CPU: the MNIST recipe took 284 s spinning, 73 s sleeping). So nettrain
looks at how busy the CPU is for a moment before torch loads, and asks for OMP_WAIT_POLICY=PASSIVE only when
other work is running. The choice changes timing only, never results. A user's own OMP_WAIT_POLICY or
GOMP_SPINCOUNT is always kept.
"""
from __future__ import annotations

import os
import sys
import time

BUSY_CORES = 0.5     # other processes using more than this many cores -> threads sleep instead of spinning
WINDOW = 0.1         # seconds to watch /proc/stat (its counters tick every 10 ms)


def _busy_and_total():
    """Jiffies the CPU spent working and in all, from the first line of /proc/stat (None where there is none)."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)   # idle + iowait
    return sum(fields) - idle, sum(fields)


def other_busy_cores(window: float = WINDOW):
    """How many cores other processes keep busy, watched for `window` seconds while this process sleeps."""
    first = _busy_and_total()
    if first is None:
        return None
    time.sleep(window)
    second = _busy_and_total()
    total = second[1] - first[1]
    if total <= 0:
        return None
    return (second[0] - first[0]) / total * (os.cpu_count() or 1)


def choose_wait_policy(environ, measure=other_busy_cores) -> str | None:
    """Sets OMP_WAIT_POLICY=PASSIVE in `environ` when the CPU is busy; returns the policy it set (or None)."""
    if "OMP_WAIT_POLICY" in environ or "GOMP_SPINCOUNT" in environ or "torch" in sys.modules:
        return None   # the user decided, or libgomp has already read its settings
    busy = measure()
    if busy is not None and busy > BUSY_CORES:
        environ["OMP_WAIT_POLICY"] = "PASSIVE"
        return "PASSIVE"
    return None
