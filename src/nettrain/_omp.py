"""How torch's OpenMP threads wait for work: spin on an idle machine, sleep on a busy one.

A libgomp thread that waits at a barrier can spin (fast to wake) or sleep (leaves the core to others). Unset,
libgomp spins for a while and then sleeps, and on this project's 2-core CPU that lands between the two: the tutorial
CNN at batch 64 ran at 2,950-6,180 images/s from one run to the next (bimodal), and at 5,400-5,900 with
OMP_WAIT_POLICY=ACTIVE; the MNIST and CIFAR-10 recipes ran 2-3% faster with ACTIVE, with identical results. When
other processes keep the cores busy, spinning threads steal the cores that the working threads need (measured on a
shared 2-core CPU: the MNIST recipe took 284 s spinning, 73 s sleeping). So nettrain looks at how busy the CPU is
for a moment before torch loads and asks for OMP_WAIT_POLICY=ACTIVE when it is idle, PASSIVE when other work is
running. The choice changes timing only, never results. A user's own OMP_WAIT_POLICY or GOMP_SPINCOUNT is always
kept.
"""
from __future__ import annotations

import os
import sys
import time

BUSY_CORES = 0.5     # other processes using more than this many cores -> threads sleep instead of spinning
WINDOW = 0.05        # seconds to watch /proc/stat (its counters tick every 10 ms) ...
SAMPLES = 3          # ... in this many windows in a row: busy only if busy in every one. A single 0.1 s look
                     # at an idle 2-core machine read a passing blip as busy in 1 start of ~10 and the run was
                     # then twice as slow (tudui at batch 64: 2,860 against 5,400-5,900 images/s).


def _busy_and_total():
    """Jiffies the CPU spent working and in all, from the first line of /proc/stat (None where there is none)."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)   # idle + iowait
    return sum(fields) - idle, sum(fields)


def other_busy_cores(window: float = WINDOW, samples: int = SAMPLES):
    """How many cores other processes keep busy: the least seen in `samples` windows of `window` seconds while this
    process sleeps (a steady load shows in every window, a passing one does not)."""
    readings = []
    for i in range(samples + 1):
        if i:
            time.sleep(window)
        readings.append(_busy_and_total())
        if readings[-1] is None:
            return None
    busy = [(b1 - b0) / (t1 - t0) for (b0, t0), (b1, t1) in zip(readings, readings[1:]) if t1 > t0]
    return min(busy) * (os.cpu_count() or 1) if busy else None


def choose_wait_policy(environ, measure=other_busy_cores) -> str | None:
    """Sets OMP_WAIT_POLICY in `environ`: PASSIVE when the CPU is busy, ACTIVE when it is idle; returns the policy
    it set (None: the load could not be read, or the choice was not nettrain's to make)."""
    if "OMP_WAIT_POLICY" in environ or "GOMP_SPINCOUNT" in environ or "torch" in sys.modules:
        return None   # the user decided, or libgomp has already read its settings
    busy = measure()
    if busy is None:
        return None
    environ["OMP_WAIT_POLICY"] = "PASSIVE" if busy > BUSY_CORES else "ACTIVE"
    return environ["OMP_WAIT_POLICY"]
