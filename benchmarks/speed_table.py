"""The speed table: every row of nettrain against its reference, measured again in one run.

    python benchmarks/speed_table.py [--rows 1,2,3,4,6,7] [--pairs 3] [--data DIR] [--cifar] [--quick]
                                     [--out benchmarks/results/speed_table.txt]

Each side of a row is one child process, timed whole by this script (spawn to exit: imports, data, training, the
test); the two sides alternate, nettrain then its reference, --pairs times, so a change in the machine's load hits
both alike. The table gives the medians of the whole-process times, their ratio, the goal and whether it is met,
and the accuracy each side reported (mean over the pairs). The header names the date (UTC), the commit, the CPU,
its cores, torch and the 1-minute load average at the start and the end; a load over 1.5 at the start means
something else was running, and the figures are then no claim.

 row  nettrain                                               reference                       goal
 1    fit --config recipes/mnist-fast.yaml --data-dir DATA   mnist_tuned.py DATA 2           <= 0.25x at >= 99.0%
 2    fit --dataset cifar10 --model tudui --optimizer sgd    tutorial_loop.py DATA 1         >= 3x img/s, <= 0.5x
      --lr 0.01 --batch-size 16 --epochs 1                                                    whole process
 3    fit --dataset text (SMS spam) with benchmarks/text.py's bilstm settings   reference_text_loop.py   (none)
 4    fit --dataset text --data-dir sms_spam.csv --model bilstm   text_loop.py sms_spam.csv  <= 0.35x at >= 98.5%
 5    fit --config recipes/cifar10-fast.yaml                  airbench94_cpu.py DATA 1        <= 0.45x, < 2 GiB, at
      (only with --cifar or --rows 5: about 20 minutes a pair; the reference needs airbench==0.1.8)   its accuracy
 6    predict RUN one.png (a digits mlp run made once first)  python -c "import torch"       <= 1.1x
 7    list                                                    nettrain --help (beside it)     < 0.3 s
The reference scripts are read from ../shared/reference (or $NETTRAIN_REFERENCE); rows 2 and 5 decode the CIFAR-10
pack into a temporary folder first when DATA has no cifar10/train.npz (outside the timing). --quick trains row 4
one epoch a side: a check that the script works, whose table says so and claims nothing.
"""
from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import re
import sys
import tempfile
import types
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cifar10_fast import airbench_results  # noqa: E402
from common import (REPO, data_dir, fit_recipe, gib, last_metrics, mean, median, nettrain_cmd,  # noqa: E402
                    reference, run_timed, table)
from startup import ENV, commit, prepare  # noqa: E402
import text  # noqa: E402
import tutorial_speed  # noqa: E402

DEFAULT_ROWS = "1,2,3,4,6,7"
BUSY_LOAD = 1.5   # a 1-minute load average over this at the start: another process shares the cores


@dataclass
class Context:
    data: Path
    tmp: Path
    pairs: int
    quick: bool
    lines: list = field(default_factory=list)   # everything printed, for --out
    cifar_dir: Path | None = None

    def say(self, *lines):
        for line in lines:
            print(line, flush=True)
            self.lines.append(line)

    def cifar(self) -> Path:
        """A folder holding cifar10/{train,test}.npz: DATA's, or one decoded from DATA's pack once."""
        if (self.data / "cifar10" / "train.npz").exists():
            return self.data
        if self.cifar_dir is None:
            self.cifar_dir = self.tmp / "cifar"
            run_timed([sys.executable, self.data / "cifar10" / "build.py", self.cifar_dir / "cifar10"]).check()
        return self.cifar_dir


def alternate(ctx: Context, row: int, ours, theirs) -> tuple:
    """ours(i), theirs(i) for i in 0..pairs-1, in that order; each returns a timed process (.wall, maybe .acc)."""
    got = ([], [])
    for i in range(ctx.pairs):
        for name, side, out in (("nettrain", ours, got[0]), ("reference", theirs, got[1])):
            t = side(i)
            out.append(t)
            acc = f"  acc {t.acc:.2%}" if getattr(t, "acc", None) is not None else ""
            peak = f"  peak {gib(t.peak_rss)}" if t.peak_rss else ""
            ctx.say(f"row {row} pair {i}: {name:9} {t.wall:7.2f} s{acc}{peak}  load {t.load}")
    return got


def wall(ts) -> float:
    return median([t.wall for t in ts])


def accuracy(ts) -> float:
    return mean([t.acc for t in ts])


def cell(ts, digits=1) -> str:
    """'7.8 s, 99.16%': the median whole-process seconds and, where the side reports one, its mean accuracy."""
    acc = f", {accuracy(ts):.2%}" if getattr(ts[0], "acc", None) is not None else ""
    return f"{wall(ts):.{digits}f} s{acc}"


def verdict(ok: bool, why_not: str = "") -> str:
    return "yes" if ok else f"no{f' ({why_not})' if why_not else ''}"


def last_float(pattern: str, out: str) -> float:
    return float(re.findall(pattern, out)[-1])


def test_accuracy(run_dir: Path) -> float:
    """The test at the end of the fit (test_metrics.json), else the last epoch's validation accuracy."""
    test = run_dir / "test_metrics.json"
    return json.loads(test.read_text())["accuracy"] if test.exists() else last_metrics(run_dir)["val_acc"]


def row_mnist(ctx: Context) -> list:
    recipe, ref = REPO / "recipes" / "mnist-fast.yaml", reference("mnist_tuned.py")

    def ours(i):
        t, rows = fit_recipe(recipe, ctx.data, i, ctx.tmp / f"mnist{i}")
        t.acc = rows[-1]["val_acc"]
        return t

    def theirs(i):
        r = run_timed([sys.executable, ref, ctx.data, 2]).check()
        r.acc = last_float(r"test acc ([0-9.]+)", r.out)
        return r

    a, b = alternate(ctx, 1, ours, theirs)
    ratio = wall(a) / wall(b)
    return [["MNIST >= 99.0% (`recipes/mnist-fast.yaml`)", cell(a), f"`mnist_tuned.py` {cell(b)}",
             f"{ratio:.2f}x", "<= 0.25x at >= 99.0%",
             verdict(ratio <= 0.25 and accuracy(a) >= 0.99, f"{ratio / 0.25:.2f}x the goal")]]


def row_tutorial(ctx: Context) -> list:
    data, ref = ctx.cifar(), reference("tutorial_loop.py")

    def theirs(i):
        r = run_timed([sys.executable, ref, data, 1]).check()
        per_epoch = [float(v) for v in re.findall(r"train [0-9.]+s ([0-9.]+) img/s", r.out)]
        r.ips = len(per_epoch) / sum(1 / v for v in per_epoch)
        r.acc = last_float(r"test acc ([0-9.]+)", r.out)
        return r

    a, b = alternate(ctx, 2, lambda i: tutorial_speed.nettrain_run(data, 1, [], ctx.tmp, f"tudui{i}"), theirs)
    ips = median([t.ips for t in a]) / median([t.ips for t in b])
    whole = wall(a) / wall(b)
    return [["tutorial recipe, tudui batch 16, 1 epoch: training img/s", f"{median([t.ips for t in a]):,.0f} img/s",
             f"tutorial loop {median([t.ips for t in b]):,.0f} img/s", f"{ips:.2f}x img/s", ">= 3x img/s",
             verdict(ips >= 3, f"{ips / 3:.0%} of the goal")],
            ["tutorial recipe, whole process", cell(a), f"tutorial loop {cell(b)}", f"{whole:.2f}x", "<= 0.5x",
             verdict(whole <= 0.5, f"{whole / 0.5:.2f}x the goal")]]


def row_text_settings(ctx: Context) -> list:
    sms = ctx.data / "sms-spam" / "sms_spam.csv"

    def timed(result: dict):   # text.py's sides return dicts: the fields alternate() prints
        return types.SimpleNamespace(wall=result["seconds"], acc=result["acc"], train=result["train_seconds"],
                                     peak_rss=0, load=(round(os.getloadavg()[0], 2),))

    def ours(i):
        (ctx.tmp / f"text{i}").mkdir()
        return timed(text.nettrain_side(sms, text.BILSTM, {}, ctx.tmp / f"text{i}"))

    a, b = alternate(ctx, 3, ours, lambda i: timed(text.reference_side(sms, {})))
    ratio = wall(a) / wall(b)
    train = median([t.train for t in a]) / median([t.train for t in b])
    return [["SMS spam, bilstm, benchmark settings (`benchmarks/text.py`)", cell(a),
             f"hand-written padding loop {cell(b)}", f"{ratio:.2f}x (training {train:.2f}x)", "", ""]]


def row_text_alone(ctx: Context) -> list:
    sms, ref = ctx.data / "sms-spam" / "sms_spam.csv", reference("text_loop.py")
    epochs = ["--epochs", "1"] if ctx.quick else []

    def ours(i):
        run_dir = ctx.tmp / f"bilstm{i}"
        t = run_timed(nettrain_cmd() + ["fit", "--dataset", "text", "--data-dir", sms, "--model", "bilstm",
                                        "--run-dir", run_dir, *epochs]).check()
        t.acc = test_accuracy(run_dir)
        return t

    def theirs(i):
        r = run_timed([sys.executable, ref, sms, *epochs]).check()
        r.acc = json.loads(r.out.strip().splitlines()[-1])["acc"]
        return r

    a, b = alternate(ctx, 4, ours, theirs)
    ratio = wall(a) / wall(b)
    return [[f"SMS spam, `--model bilstm` and nothing else{' (QUICK: 1 epoch a side)' if ctx.quick else ''}",
             cell(a), f"`text_loop.py` {cell(b)}", f"{ratio:.2f}x", "<= 0.35x at >= 98.5%",
             verdict(ratio <= 0.35 and accuracy(a) >= 0.985, f"{ratio / 0.35:.2f}x the goal")]]


def row_cifar(ctx: Context) -> list:
    name = "CIFAR-10 at airbench94's accuracy (`recipes/cifar10-fast.yaml`)"
    if importlib.util.find_spec("airbench") is None:
        return [[name, "", "airbench94 not installed: pip install airbench==0.1.8", "", "", "not measured"]]
    data, recipe, ref = ctx.cifar(), REPO / "recipes" / "cifar10-fast.yaml", reference("airbench94_cpu.py")

    def ours(i):
        t, rows = fit_recipe(recipe, data, i, ctx.tmp / f"cifar{i}")
        t.acc = rows[-1]["val_acc"]
        return t

    def theirs(i):   # airbench seeds its one run 0, whatever the pair
        r = run_timed([sys.executable, ref, data, 1]).check()
        r.acc = airbench_results(r.out)[-1][0]
        return r

    a, b = alternate(ctx, 5, ours, theirs)
    ratio, peak = wall(a) / wall(b), max(t.peak_rss for t in a)
    ok = ratio <= 0.45 and peak < 2 * 2**30 and accuracy(a) >= accuracy(b)
    return [[name, f"{cell(a, 0)}, {gib(peak)}", f"airbench94 on the CPU {cell(b, 0)}, "
             f"{gib(max(t.peak_rss for t in b))}", f"{ratio:.2f}x", "<= 0.45x, < 2 GiB, >= its accuracy",
             verdict(ok)]]


def startup_folder(ctx: Context) -> Path:
    """The folder holding the tiny digits runs `r`, `r2` and one digit as one.png (made once, untimed)."""
    where = ctx.tmp / "startup"
    if not where.exists():
        where.mkdir()
        prepare(where)
    return where


def command(where: Path, cmd: list):
    return lambda i: run_timed(cmd, cwd=where, env=ENV).check()


def row_predict(ctx: Context) -> list:
    where = startup_folder(ctx)
    a, b = alternate(ctx, 6, command(where, [*nettrain_cmd(), "predict", "r", "one.png"]),
                     command(where, [sys.executable, "-c", "import torch"]))
    ratio = wall(a) / wall(b)
    return [["`nettrain predict RUN one.png`, whole process", cell(a, 2), f'`python -c "import torch"` '
             f"{cell(b, 2)}", f"{ratio:.2f}x", "<= 1.1x", verdict(ratio <= 1.1, f"{ratio / 1.1:.2f}x the goal")]]


def row_list(ctx: Context) -> list:
    where = startup_folder(ctx)
    a, b = alternate(ctx, 7, command(where, [*nettrain_cmd(), "list"]), command(where, [*nettrain_cmd(), "--help"]))
    return [["`nettrain list`", cell(a, 2), f"`nettrain --help` {cell(b, 2)}", f"{wall(a) / wall(b):.2f}x",
             "< 0.3 s", verdict(wall(a) < 0.3, f"{wall(a) / 0.3:.2f}x the goal")]]


ROWS = {1: row_mnist, 2: row_tutorial, 3: row_text_settings, 4: row_text_alone, 5: row_cifar, 6: row_predict,
        7: row_list}


def cpu() -> str:
    """The CPU's model, its cores and whether it has the bf16 paths the recipes lean on (AMX, AVX-512 BF16)."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")),
                 "unknown CPU")
    flags = set(next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), []))
    bf16 = [name for flag, name in (("amx_bf16", "AMX-BF16"), ("avx512_bf16", "AVX-512 BF16")) if flag in flags]
    return f"{model}, {os.cpu_count()} cores, {' + '.join(bf16) or 'no AMX-BF16 nor AVX-512 BF16'}"


def torch_version() -> str:
    """Asked of a child: torch imported here would count in every child's peak memory (fork copies this process)."""
    out = run_timed([sys.executable, "-c", "import torch; print(torch.__version__, torch.get_num_threads())"])
    version, threads = out.check().out.split()[-2:]
    return f"torch {version} ({threads} threads)"


def header(ctx: Context, chosen: list):
    load = os.getloadavg()[0]
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    ctx.say("# nettrain speed table", "",
            f"{now} | commit {commit()} | {cpu()} | {torch_version()} | load average at start {load:.2f}",
            f"rows {', '.join(map(str, chosen))}; {ctx.pairs} alternating pair(s) per row (nettrain, reference); "
            f"whole processes timed from spawn to exit; medians; nettrain is `{' '.join(nettrain_cmd())}`")
    if load > BUSY_LOAD:
        ctx.say(f"WARNING: load average {load:.2f} > {BUSY_LOAD} at the start: the machine is busy, these figures "
                "are not claims (rerun on a quiet machine)")
    if ctx.quick:
        ctx.say("QUICK: row 4 trains 1 epoch a side; a check of the script, not a measurement")
    ctx.say("")


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", default=DEFAULT_ROWS, help=f"comma-separated row numbers 1-7 (default {DEFAULT_ROWS})")
    ap.add_argument("--pairs", type=int, default=3, help="alternating nettrain/reference pairs per row (default 3)")
    ap.add_argument("--data", help="the staged datasets (default: ../shared/datasets beside the repository)")
    ap.add_argument("--cifar", action="store_true", help="add row 5 (CIFAR-10 vs airbench94: 20+ minutes a pair)")
    ap.add_argument("--quick", action="store_true", help="row 4 at 1 epoch a side: checks the script, claims nothing")
    ap.add_argument("--out", help="also write the output, table included, to this file (Markdown)")
    args = ap.parse_args()
    try:
        chosen = sorted({int(r) for r in args.rows.split(",") if r.strip()} | ({5} if args.cifar else set()))
    except ValueError:
        ap.error(f"--rows {args.rows!r}: give row numbers separated by commas, e.g. --rows 1,2,4")
    if not chosen or not set(chosen) <= set(ROWS) or args.pairs < 1:
        ap.error(f"--rows takes numbers 1-7 and --pairs at least 1 (got --rows {args.rows}, --pairs {args.pairs})")
    return args, chosen


def main():
    args, chosen = parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["NETTRAIN_HOME"] = str(Path(tmp) / "home")   # the runs' trust store stays out of the user's
        ctx = Context(data_dir(args.data), Path(tmp), args.pairs, args.quick)
        header(ctx, chosen)
        rows = [r for n in chosen for r in ROWS[n](ctx)]
    ctx.say("", table(["row", "nettrain", "reference", "ratio", "goal", "met?"], rows), "",
            f"load average at end {os.getloadavg()[0]:.2f}")
    if args.out:
        Path(args.out).write_text("\n".join(ctx.lines) + "\n")


if __name__ == "__main__":
    main()
