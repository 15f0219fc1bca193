"""Shared helpers for the side-by-side benchmarks: where things are, timed child processes, tables.

Every benchmark runs nettrain and its reference as separate processes, one after the other (alternating when
repeated, so a change in the machine's load hits both), and measures each whole process: wall-clock time from
spawn to exit, CPU time, and peak resident memory (from `os.wait4`, per child).

Paths: DATA is the first argument, else $NETTRAIN_DATA, else ../shared/datasets beside the repository; the
reference scripts are read from $NETTRAIN_REFERENCE, else ../shared/reference. Nothing is copied from there.
"""
from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def data_dir(arg=None) -> Path:
    return Path(arg or os.environ.get("NETTRAIN_DATA") or REPO.parent / "shared" / "datasets")


def reference(name: str) -> Path:
    path = Path(os.environ.get("NETTRAIN_REFERENCE") or REPO.parent / "shared" / "reference") / name
    if not path.exists():
        sys.exit(f"reference script {path} not found; set NETTRAIN_REFERENCE to the folder that holds it")
    return path


def nettrain_cmd() -> list:
    """The `nettrain` console script of this interpreter's environment (what a user types)."""
    script = Path(sys.executable).parent / "nettrain"
    return [str(script)] if script.exists() else [sys.executable, "-m", "nettrain"]


@dataclass
class Timed:
    cmd: list
    wall: float          # seconds, spawn to exit
    cpu: float           # user + system seconds of the child
    peak_rss: int        # bytes, the child's maximum resident set
    rc: int
    out: str             # stdout + stderr
    load: tuple          # 1-minute load average before and after

    def check(self):
        if self.rc != 0:
            sys.exit(f"command failed ({self.rc}): {' '.join(map(str, self.cmd))}\n{self.out[-3000:]}")
        return self


def run_timed(cmd, cwd=None, env=None, timeout=None) -> Timed:
    """Run `cmd` to completion; wall time, CPU time and peak RSS of that one process."""
    cmd = [str(c) for c in cmd]
    load0 = os.getloadavg()[0]
    with tempfile.TemporaryFile("w+") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=cwd,
                                env={**os.environ, **(env or {})}, text=True)
        deadline = None if timeout is None else start + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if deadline and time.perf_counter() > deadline:
                proc.kill()
            time.sleep(0.02)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read()
    return Timed(cmd, wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024, proc.returncode, text,
                 (round(load0, 2), round(os.getloadavg()[0], 2)))


def all_metrics(run_dir) -> list:
    """metrics.csv's rows as dicts of floats (a run made before its speed column was named examples_per_s called it
    images_per_s: read under the new name)."""
    with open(Path(run_dir) / "metrics.csv", newline="") as f:
        return [{("examples_per_s" if k == "images_per_s" else k): (None if v in ("", None) else v
                                                                    if k == "val_split" else float(v))
                 for k, v in r.items()} for r in csv.DictReader(f)]


def last_metrics(run_dir) -> dict:
    return all_metrics(run_dir)[-1]


def recipe_args(doc: str, recipe: str, repeats: int, extra=()):
    """The arguments every recipe-vs-reference script takes: DATA, --repeats, --recipe (plus `extra` flags:
    (name, kwargs) pairs for add_argument)."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", nargs="?")
    ap.add_argument("--repeats", type=int, default=repeats)
    ap.add_argument("--recipe", default=str(REPO / "recipes" / recipe))
    for name, kwargs in extra:
        ap.add_argument(name, **kwargs)
    return ap.parse_args()


def fit_recipe(recipe, data, seed, run_dir) -> tuple:
    """One timed, quiet `nettrain fit --config RECIPE` run: (Timed, its metrics.csv rows)."""
    t = run_timed(nettrain_cmd() + ["fit", "--config", recipe, "--data-dir", data, "--seed", seed,
                                    "--run-dir", run_dir, "--run.progress", "none"]).check()
    return t, all_metrics(run_dir)


def recipe_runs(recipe, data, repeats: int):
    """Yields (seed, Timed, metrics rows) for fit_recipe runs with seeds 0..repeats-1, each in a temporary run dir
    (the caller runs its reference between them, so the two alternate)."""
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeats):
            t, rows = fit_recipe(recipe, data, i, Path(tmp) / f"run{i}")
            yield i, t, rows


def median(xs):
    return statistics.median(xs)


def mean(xs):
    return sum(xs) / len(xs)


def gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def table(headers: list, rows: list) -> str:
    """A Markdown table (what RESULTS.md holds)."""
    cells = [[str(c) for c in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"
    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(cells[0]), rule] + [line(r) for r in cells[1:]])


def machine() -> str:
    import platform
    try:
        import torch
        threads = torch.get_num_threads()
        tv = torch.__version__
    except ImportError:
        threads, tv = "?", "?"
    model = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model or platform.processor()}, {os.cpu_count()} cores ({threads} torch threads), torch {tv}"


def header(title: str):
    print(f"# {title}\n{time.strftime('%Y-%m-%d %H:%M')} | {machine()} | load average {os.getloadavg()[0]:.2f}\n",
          flush=True)
