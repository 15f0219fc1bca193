#!/usr/bin/env python3
"""The classic tutorials as nettrain commands, side by side with plain-PyTorch loops: the accuracy goals.

Each row runs one tutorial program as a `nettrain fit` command (a subprocess, `--run.progress lines`, its own
run directory), reads the run's metrics.csv and printed test result, runs the plain reference loop of the same
recipe where there is one, and checks the goal. One markdown table is printed at the end:

    task | command | nettrain accuracy | reference accuracy | seconds/epoch | images/s | goal | met

Rows (--only a,b,c; default all):
    digits        `nettrain fit` with no arguments: >= 97% test accuracy, whole process < 30 s
    mnist-mlp     the MNIST MLP tutorial recipe, 1 epoch: >= 96%; beside a plain loop of the same recipe
    mnist-study   mnist-mlp over --seeds seeds: nettrain (auto precision and fp32) vs the plain loop (fp32
                  and bf16), to tell a nettrain weakness from seed and precision noise
    mnist-cnn     the small BN CNN on MNIST: >= 99.0% within 3 epochs
    cifar10       the tudui CIFAR-10 tutorial, 10 epochs, nettrain's defaults: accuracy after 1 and 10 epochs
                  within 2 points of benchmarks/reference_tutorial_loop.py run the same way (--normalize --cosine:
                  the plain loop given nettrain's two default choices by hand)
    cifar10-parity  nettrain set to the tutorial's own arithmetic (--data.normalize false --scheduler none
                  --precision 32) against the tutorial's loop exactly as written
    lenet         the official PyTorch CIFAR-10 tutorial (LeNet, batch 4, SGD 0.001 momentum 0.9, 2 epochs):
                  >= 50%; beside reference_tutorial_loop.py --lenet
    quadratic     the regression tutorial (1-10-1 net, SGD 0.2, full batch, 200 steps): test MSE <= 0.01
    two-gaussians the classification tutorial (2-10-2 net, SGD 0.02, full batch, 100 steps): >= 99%
    imagefolder   CIFAR-10 written as an image folder (build.py --imagefolder): tudui trains 1 epoch on it and
                  `nettrain predict RUN DIR/test/cat/...` prints class names

usage: python benchmarks/tutorial_recipes.py [--data DATA] [--only cifar10,lenet] [--quick] [--seeds 3]
       DATA defaults to $NETTRAIN_DATA, else ../shared/datasets relative to the repository root; it must hold
       MNIST/raw/*.gz and cifar10/{train,test}.npz (python DATA/cifar10/build.py).
--quick runs fewer epochs (goals that need the full recipe are then reported as "n/a (quick)").
Accuracy is the point here; seconds and images/s are as measured on a possibly shared machine (the load
average is printed with the table).
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def default_data_dir() -> str:
    return os.environ.get("NETTRAIN_DATA") or str(REPO / ".." / "shared" / "datasets")


# ---- running things ---------------------------------------------------------------------------------

@dataclass
class Proc:
    rc: int
    out: str
    wall: float
    cpu: float      # user + sys seconds of the child


def run(argv: list, cwd: Path, label: str, env=None) -> Proc:
    """Run argv, echo its output to stderr prefixed with `label` (the log), return output and timings."""
    print(f"[{label}] $ {shlex.join(str(a) for a in argv)}", file=sys.stderr, flush=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    p = subprocess.Popen([str(a) for a in argv], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, env=env)
    lines = []
    for line in p.stdout:
        lines.append(line)
        print(f"[{label}] {line}", end="", file=sys.stderr, flush=True)
    rc = p.wait()
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if rc:
        print(f"[{label}] exit code {rc}", file=sys.stderr, flush=True)
    return Proc(rc, "".join(lines), wall, cpu)


@dataclass
class NettrainRun:
    proc: Proc
    metrics: list            # rows of metrics.csv (floats)
    test: dict               # {"acc": ...} or {"mse": ...} parsed from the printed test line
    run_dir: Path

    @property
    def ok(self) -> bool:
        return self.proc.rc == 0 and bool(self.test)

    def val_acc(self, epoch: int):
        for row in self.metrics:
            if int(row["epoch"]) == epoch:
                return row.get("val_acc")
        return None

    def mean(self, key: str):
        vals = [r[key] for r in self.metrics if r.get(key) is not None]
        return statistics.mean(vals) if vals else None


def parse_test(out: str) -> dict:
    m = re.search(r"^test: loss ([\d.]+)\s+accuracy ([\d.]+)%", out, re.M)
    if m:
        return {"loss": float(m.group(1)), "acc": float(m.group(2)) / 100}
    m = re.search(r"^test: loss ([\d.]+)\s+mse ([\d.]+)\s+mae ([\d.]+)", out, re.M)
    if m:
        return {"loss": float(m.group(1)), "mse": float(m.group(2)), "mae": float(m.group(3))}
    return {}


def read_metrics(path: Path) -> list:
    import csv
    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return [{k: (None if v in ("", None) else v if k == "val_split" else float(v)) for k, v in row.items()}
                for row in csv.DictReader(f)]


def parse_result(out: str) -> dict:
    for line in reversed(out.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    return {}


# ---- formatting ------------------------------------------------------------------------------------

def pct(x, digits=2) -> str:
    return "-" if x is None else f"{100 * x:.{digits}f}%"


def num(x, fmt="{:.1f}") -> str:
    return "-" if x is None else fmt.format(x)


@dataclass
class Row:
    task: str
    command: str
    nettrain: str = "-"
    reference: str = "-"
    sec_per_epoch: str = "-"
    images_per_s: str = "-"
    goal: str = ""
    met: object = None           # True, False, or a string such as "n/a (quick)"
    notes: list = field(default_factory=list)


def met_text(met) -> str:
    return {True: "yes", False: "**NO**", None: "-"}.get(met, met) if not isinstance(met, str) else met


def markdown_table(rows: list) -> str:
    head = ["task", "command", "nettrain accuracy", "reference accuracy", "seconds/epoch", "images/s", "goal", "met"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r.task, f"`{r.command}`", r.nettrain, r.reference, r.sec_per_epoch, r.images_per_s, r.goal,
                 met_text(r.met)]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


# ---- the bench -------------------------------------------------------------------------------------

class Bench:
    def __init__(self, data: Path, work: Path, quick: bool, seeds: int):
        self.data, self.work, self.quick, self.seeds = data, work, quick, seeds
        self.py = sys.executable
        self.n = 0

    def nettrain(self, label: str, args: list, subcommand="fit") -> NettrainRun:
        """`nettrain fit ARGS` in its own run directory under the work dir."""
        self.n += 1
        run_dir = self.work / f"run{self.n:02d}-{label}"
        argv = [self.py, "-m", "nettrain", subcommand, *args, "--run-dir", run_dir, "--run.progress", "lines"]
        proc = run(argv, self.work, label)
        return NettrainRun(proc, read_metrics(run_dir / "metrics.csv"), parse_test(proc.out), run_dir)

    def script(self, label: str, argv: list, cache: bool = False) -> tuple:
        """Run a reference script; with `cache`, its RESULT is kept in the work dir and reused by a later
        invocation with the same --work (the 10-epoch CIFAR-10 reference takes half an hour on 2 cores)."""
        key = self.work / f"reference-{label}-{'-'.join(str(a) for a in argv[1:] if str(a) != str(self.data))}.json"
        if cache and key.exists():
            print(f"[{label}] reusing {key}", file=sys.stderr, flush=True)
            return None, json.loads(key.read_text())
        proc = run([self.py, *argv], self.work, label)
        result = parse_result(proc.out)
        if cache and result:
            key.write_text(json.dumps(result))
        return proc, result

    def shown(self, args: list, data_placeholder="DATA") -> str:
        """The command as a user types it: the data dir written as DATA."""
        out = []
        for a in args:
            s = str(a)
            if s == str(self.data):
                s = data_placeholder
            out.append(s if re.fullmatch(r"[\w./:=,+-]+", s) else shlex.quote(s))
        return "nettrain fit " + " ".join(out)

    # ---- rows ----

    def digits(self) -> list:
        r = self.nettrain("digits", [])
        acc = r.test.get("acc")
        row = Row("digits: default `nettrain fit` (8x8 digits, small CNN, 10 epochs)", "nettrain fit",
                  nettrain=pct(acc), sec_per_epoch=num(r.mean("seconds"), "{:.2f}"),
                  images_per_s=num(r.mean("examples_per_s"), "{:,.0f}"),
                  goal=f">= 97% in < 30 s whole process (measured {r.proc.wall:.1f} s wall, "
                       f"{r.proc.cpu:.1f} s CPU)")
        row.met = bool(r.ok and acc >= 0.97 and r.proc.wall < 30)
        if r.ok and acc >= 0.97 and r.proc.wall >= 30:
            row.notes.append(f"digits: accuracy met; wall {r.proc.wall:.1f} s >= 30 s (CPU {r.proc.cpu:.1f} s; "
                             f"see the load average: the CPU is shared)")
        return [row]

    MNIST_MLP = ["--dataset", "mnist", "--model", "mlp", "--optimizer", "adam", "--lr", "0.002",
                 "--batch-size", "64", "--epochs", "1"]

    def mnist_args(self, extra=()) -> list:
        args = list(self.MNIST_MLP)
        args[2:2] = ["--data-dir", self.data]
        return args + list(extra)

    def plain_mnist(self, label: str, seed: int, bf16: bool, epochs: int = 1) -> tuple:
        argv = [Path(__file__), "--plain-mnist-mlp", "--data", self.data, "--seed", str(seed),
                "--epochs", str(epochs)] + (["--bf16"] if bf16 else [])
        return self.script(label, argv)

    def mnist_mlp(self) -> list:
        args = self.mnist_args()
        r = self.nettrain("mnist-mlp", args)
        _, ref = self.plain_mnist("mnist-mlp-plain", 0, bf16=False)
        acc = r.test.get("acc")
        ref_ep = ref.get("epochs", [{}])[-1] if ref else {}
        row = Row("MNIST MLP tutorial (784-512-128-10, Adam 0.002, batch 64, 1 epoch)", self.shown(args),
                  nettrain=pct(acc), reference=pct(ref_ep.get("test_acc")) + " (plain loop, fp32)",
                  sec_per_epoch=f"{num(r.mean('seconds'))} / {num(ref_ep.get('seconds'))}",
                  images_per_s=f"{num(r.mean('examples_per_s'), '{:,.0f}')} / "
                               f"{num(ref_ep.get('images_per_s'), '{:,.0f}')}",
                  goal=">= 96%", met=bool(r.ok and acc >= 0.96))
        return [row]

    def mnist_study(self) -> list:
        """Same recipe over seeds: nettrain auto / fp32 vs the plain loop fp32 / bf16."""
        variants = {"nettrain (auto precision)": [], "nettrain --precision 32": [], "plain loop fp32": [],
                    "plain loop bf16 autocast": []}
        precision_used = set()
        for seed in range(self.seeds):
            r = self.nettrain(f"mnist-seed{seed}", self.mnist_args(["--seed", str(seed)]))
            m = re.search(r"precision ([\w-]+)", r.proc.out)
            if m:
                precision_used.add(m.group(1))
            variants["nettrain (auto precision)"].append(r.test.get("acc"))
            r = self.nettrain(f"mnist-seed{seed}-fp32", self.mnist_args(["--seed", str(seed), "--precision", "32"]))
            variants["nettrain --precision 32"].append(r.test.get("acc"))
            for bf16, name in ((False, "plain loop fp32"), (True, "plain loop bf16 autocast")):
                _, ref = self.plain_mnist(f"mnist-plain-seed{seed}{'-bf16' if bf16 else ''}", seed, bf16)
                variants[name].append(ref["epochs"][-1]["test_acc"] if ref else None)
        lines = []
        for name, accs in variants.items():
            ok = [a for a in accs if a is not None]
            sd = statistics.stdev(ok) if len(ok) > 1 else 0.0
            lines.append(f"{name}: mean {pct(statistics.mean(ok) if ok else None)} +- {100 * sd:.2f} "
                         f"(seeds 0-{self.seeds - 1}: {', '.join(pct(a) for a in accs)})")
        self.study = lines
        net = [a for a in variants["nettrain (auto precision)"] if a is not None]
        plain = [a for a in variants["plain loop fp32"] if a is not None]
        row = Row(f"MNIST MLP over {self.seeds} seeds (auto precision: {', '.join(sorted(precision_used))})",
                  self.shown(self.mnist_args(["--seed", "S"])),
                  nettrain=f"mean {pct(statistics.mean(net) if net else None)} "
                           f"(min {pct(min(net) if net else None)})",
                  reference=f"mean {pct(statistics.mean(plain) if plain else None)} "
                            f"(min {pct(min(plain) if plain else None)}) plain fp32",
                  goal=">= 96% every seed", met=bool(net and len(net) == self.seeds and min(net) >= 0.96))
        row.notes += lines
        return [row]

    def mnist_cnn(self) -> list:
        epochs = 1 if self.quick else 3
        args = ["--dataset", "mnist", "--data-dir", self.data, "--model", "cnn", "--optimizer", "adam", "--lr", "0.003",
                "--scheduler", "onecycle", "--batch-size", "128", "--epochs", str(epochs)]
        r = self.nettrain("mnist-cnn", args)
        acc = r.test.get("acc")
        per_epoch = ", ".join(pct(r.val_acc(e)) for e in range(1, epochs + 1))
        row = Row(f"MNIST CNN (small BN CNN, {epochs} epochs)", self.shown(args),
                  nettrain=f"{pct(acc)} (per epoch: {per_epoch})",
                  sec_per_epoch=num(r.mean("seconds")), images_per_s=num(r.mean("examples_per_s"), "{:,.0f}"),
                  goal=">= 99.0% within 3 epochs")
        row.met = bool(r.ok and acc >= 0.99) if not self.quick else "n/a (quick)"
        return [row]

    def cifar10(self, parity: bool = False) -> list:
        """Default: nettrain's defaults against the plain loop given the same two choices by hand (standardized
        inputs, cosine lr: reference_tutorial_loop.py --normalize --cosine), i.e. both run the same way.
        parity: nettrain set to the tutorial's own arithmetic (no normalization, constant lr, fp32) against the
        tutorial's loop exactly as written."""
        epochs = 2 if self.quick else 10
        args = ["--dataset", "cifar10", "--data-dir", self.data, "--model", "tudui", "--optimizer", "sgd",
                "--lr", "0.01", "--batch-size", "16", "--epochs", str(epochs)]
        if parity:
            args += ["--data.normalize", "false", "--scheduler", "none", "--precision", "32"]
        r = self.nettrain("cifar10-tudui" + ("-parity" if parity else ""), args)
        same_way = [] if parity else ["--normalize", "--cosine"]
        ref_proc, ref = self.script("cifar10-reference", [HERE / "reference_tutorial_loop.py", self.data,
                                                           "--epochs", str(epochs), *same_way], cache=True)
        ref_rows = {e["epoch"]: e for e in ref.get("epochs", [])}
        checks, parts_n, parts_r = [], [], []
        for e in (1, epochs):
            a, b = r.val_acc(e), ref_rows.get(e, {}).get("test_acc")
            parts_n.append(f"e{e} {pct(a)}")
            parts_r.append(f"e{e} {pct(b)}")
            checks.append(a is not None and b is not None and abs(a - b) <= 0.02)
        ref_sec = statistics.mean(e["seconds"] for e in ref_rows.values()) if ref_rows else None
        ref_ips = statistics.mean(e["images_per_s"] for e in ref_rows.values()) if ref_rows else None
        what = ("CIFAR-10 tudui, nettrain with the tutorial's arithmetic (ToTensor only, constant lr, fp32) against "
                "the tutorial's loop as written" if parity else
                "CIFAR-10 tudui tutorial, nettrain's defaults against the plain loop with the same normalization "
                "and cosine lr")
        row = Row(f"{what} (batch 16, SGD 0.01, {epochs} epochs)", self.shown(args),
                  nettrain=", ".join(parts_n),
                  reference=", ".join(parts_r) + f" (reference_tutorial_loop.py{' ' if same_way else ''}"
                                                 f"{' '.join(same_way)})",
                  sec_per_epoch=f"{num(r.mean('seconds'))} / {num(ref_sec)}",
                  images_per_s=f"{num(r.mean('examples_per_s'), '{:,.0f}')} / {num(ref_ips, '{:,.0f}')}",
                  goal="within 2 points of the reference after 1 and after 10 epochs")
        row.met = bool(r.ok and all(checks)) if not self.quick else ("n/a (quick)" if all(checks) else False)
        if ref_proc is None:
            row.notes.append(f"cifar10{' parity' if parity else ''}: reference result reused from an earlier run "
                             f"with this --work dir")
        row.notes.append(f"cifar10{' parity' if parity else ''} per epoch, nettrain: "
                         + ", ".join(pct(r.val_acc(e)) for e in range(1, epochs + 1)))
        row.notes.append("cifar10 per epoch, reference: " + ", ".join(pct(ref_rows[e]["test_acc"])
                                                                       for e in sorted(ref_rows)))
        return [row]

    def lenet(self) -> list:
        epochs = 1 if self.quick else 2
        args = ["--dataset", "cifar10", "--data-dir", self.data, "--model", "lenet", "--optimizer", "sgd",
                "--lr", "0.001", "--momentum", "0.9", "--batch-size", "4", "--epochs", str(epochs)]
        r = self.nettrain("cifar10-lenet", args)
        ref_proc, ref = self.script("lenet-reference", [HERE / "reference_tutorial_loop.py", self.data, "--lenet",
                                                         "--epochs", str(epochs)], cache=True)
        ref_rows = ref.get("epochs", [])
        acc = r.test.get("acc")
        ref_acc = ref_rows[-1]["test_acc"] if ref_rows else None
        row = Row(f"CIFAR-10 LeNet tutorial (official; batch 4, SGD 0.001 momentum 0.9, {epochs} epochs)",
                  self.shown(args), nettrain=pct(acc),
                  reference=f"{pct(ref_acc)} (reference_tutorial_loop.py --lenet)",
                  sec_per_epoch=f"{num(r.mean('seconds'))} / "
                                f"{num(statistics.mean(e['seconds'] for e in ref_rows) if ref_rows else None)}",
                  images_per_s=f"{num(r.mean('examples_per_s'), '{:,.0f}')} / " + num(
                      statistics.mean(e['images_per_s'] for e in ref_rows) if ref_rows else None, '{:,.0f}'),
                  goal=">= 50% (tutorial: 51-55%)")
        row.met = bool(r.ok and acc >= 0.50) if not self.quick else "n/a (quick)"
        if ref_proc is None:
            row.notes.append("lenet: reference result reused from an earlier run with this --work dir")
        return [row]

    def toy(self, name: str) -> list:
        if name == "quadratic":
            args = ["--dataset", "quadratic", "--model", "mlp", "--model.args.hidden", "[10]", "--optimizer", "sgd",
                    "--lr", "0.2", "--batch-size", "100", "--epochs", "200"]
        else:
            args = ["--dataset", "two-gaussians", "--model", "mlp", "--model.args.hidden", "[10]", "--optimizer",
                    "sgd", "--lr", "0.02", "--batch-size", "200", "--epochs", "100"]
        r = self.nettrain(name, args)
        _, ref = self.script(f"{name}-plain", [Path(__file__), "--plain-toy", name])
        if name == "quadratic":
            mse = r.test.get("mse")
            row = Row("regression tutorial (y = x^2 + noise; 1-10-1 net, SGD 0.2, full batch, 200 steps)",
                      self.shown(args), nettrain=f"test MSE {num(mse, '{:.4f}')}",
                      reference=f"test MSE {num(ref.get('mse'), '{:.4f}')} (plain loop)",
                      goal="MSE <= 0.01", met=bool(r.ok and mse <= 0.01))
        else:
            acc = r.test.get("acc")
            row = Row("classification tutorial (two Gaussians; 2-10-2 net, SGD 0.02, full batch, 100 steps)",
                      self.shown(args), nettrain=pct(acc), reference=f"{pct(ref.get('acc'))} (plain loop)",
                      goal=">= 99%", met=bool(r.ok and acc >= 0.99))
        row.sec_per_epoch = num(r.mean("seconds"), "{:.4f}")
        row.images_per_s = f"whole process {r.proc.wall:.1f} s"
        return [row]

    def imagefolder(self) -> list:
        folder = self.work / "cifar10-folder"
        build = self.data / "cifar10" / "build.py"
        t = time.perf_counter()
        p = run([self.py, build, "--imagefolder", folder], self.work, "imagefolder-build")
        build_s = time.perf_counter() - t
        if p.rc:
            return [Row("image folder", "build.py --imagefolder", goal="trains and predicts", met=False,
                        notes=["build.py --imagefolder failed: " + p.out[-300:]])]
        args = ["--dataset", "imagefolder", "--data-dir", folder, "--model", "tudui", "--optimizer", "sgd",
                "--lr", "0.01", "--batch-size", "16", "--epochs", "1"]
        r = self.nettrain("imagefolder", args)
        cats = sorted((folder / "test" / "cat").iterdir())[:5]
        pred = run([self.py, "-m", "nettrain", "predict", r.run_dir, *cats], self.work, "imagefolder-predict")
        classes = sorted(d.name for d in (folder / "train").iterdir() if d.is_dir() and not d.name.startswith("."))
        lines = [ln for ln in pred.out.splitlines() if any(ln.startswith(f"{c}: ") for c in cats)]
        firsts = [ln.split(": ", 1)[1].split()[0] for ln in lines]
        predicted_ok = pred.rc == 0 and len(firsts) == len(cats) and all(c in classes for c in firsts)
        acc = r.test.get("acc")
        shown = self.shown(args).replace(str(folder), "DIR")
        row = Row("image folder (CIFAR-10 as DIR/{train,test}/<class>/*.jpg, tudui, 1 epoch) + predict",
                  shown + f" && nettrain predict RUN DIR/test/cat/{cats[0].name} ...(5 files)",
                  nettrain=f"{pct(acc)} after 1 epoch; predict: {', '.join(firsts) or 'nothing'}",
                  sec_per_epoch=num(r.mean("seconds")), images_per_s=num(r.mean("examples_per_s"), "{:,.0f}"),
                  goal="trains; predict prints class names", met=bool(r.ok and acc > 0.2 and predicted_ok))
        row.notes.append(f"imagefolder: build.py --imagefolder {build_s:.0f} s; nettrain fit whole process "
                         f"{r.proc.wall:.0f} s (first run decodes the JPEGs into the folder's cache)")
        row.notes.append("imagefolder predict output: " + " | ".join(lines))
        return [row]


ROWS = ["digits", "mnist-mlp", "mnist-study", "mnist-cnn", "cifar10", "cifar10-parity", "lenet", "quadratic",
        "two-gaussians", "imagefolder"]


# ---- the plain loops (run as subprocesses of this file) ---------------------------------------------

def plain_mnist_mlp(data: Path, seed: int, bf16: bool, epochs: int) -> dict:
    """The MNIST MLP tutorial written by hand: ToTensor + Normalize((0.1307,), (0.3081,)), shuffled DataLoader
    of batch 64, Flatten-Linear(784,512)-ReLU-Linear(512,128)-ReLU-Linear(128,10), Adam lr 0.002, CE."""
    import numpy as np
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset
    torch.manual_seed(seed)

    def idx(name):
        with gzip.open(data / "MNIST" / "raw" / f"{name}.gz", "rb") as f:
            b = f.read()
        nd = b[3]
        dims = np.frombuffer(b, ">u4", nd, 4)
        return torch.from_numpy(np.frombuffer(b, np.uint8, offset=4 + 4 * nd).reshape(dims).copy())

    prep = lambda x: ((x.float() / 255 - 0.1307) / 0.3081).unsqueeze(1)   # noqa: E731
    train = TensorDataset(prep(idx("train-images-idx3-ubyte")), idx("train-labels-idx1-ubyte").long())
    test = TensorDataset(prep(idx("t10k-images-idx3-ubyte")), idx("t10k-labels-idx1-ubyte").long())
    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 128), nn.ReLU(),
                        nn.Linear(128, 10))
    opt = torch.optim.Adam(net.parameters(), lr=0.002)
    loss_fn = nn.CrossEntropyLoss()
    ctx = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else \
        (lambda: torch.autocast("cpu", enabled=False))
    loader = DataLoader(train, batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(seed))
    rows = []
    for epoch in range(1, epochs + 1):
        t = time.perf_counter()
        for x, y in loader:
            with ctx():
                loss = loss_fn(net(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        seconds = time.perf_counter() - t
        net.eval()
        correct = 0
        with torch.no_grad(), ctx():
            for x, y in DataLoader(test, batch_size=1000):
                correct += (net(x).argmax(1) == y).sum().item()
        net.train()
        rows.append({"epoch": epoch, "seconds": round(seconds, 2), "images_per_s": round(len(train) / seconds, 1),
                     "test_acc": correct / len(test)})
        print(f"epoch {epoch}  {seconds:.1f}s  test acc {correct / len(test):.2%}", flush=True)
    return {"epochs": rows, "seed": seed, "bf16": bf16}


def plain_toy(name: str) -> dict:
    """The two toy tutorials written by hand (their own data recipe; evaluated on a fresh draw)."""
    import torch
    from torch import nn
    torch.manual_seed(0)
    if name == "quadratic":
        x = torch.linspace(-1, 1, 100).unsqueeze(1)
        y, y_test = x.pow(2) + 0.2 * torch.rand(x.size()), x.pow(2) + 0.2 * torch.rand(x.size())
        net = nn.Sequential(nn.Linear(1, 10), nn.ReLU(), nn.Linear(10, 1))
        opt, loss_fn = torch.optim.SGD(net.parameters(), lr=0.2), nn.MSELoss()
        for _ in range(200):
            loss = loss_fn(net(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            return {"mse": loss_fn(net(x), y_test).item()}
    centre = torch.ones(100, 2)
    def draw():
        return (torch.cat([torch.normal(2 * centre, 1), torch.normal(-2 * centre, 1)]),
                torch.cat([torch.zeros(100), torch.ones(100)]).long())
    (x, y), (x_test, y_test) = draw(), draw()
    net = nn.Sequential(nn.Linear(2, 10), nn.ReLU(), nn.Linear(10, 2))
    opt, loss_fn = torch.optim.SGD(net.parameters(), lr=0.02), nn.CrossEntropyLoss()
    for _ in range(100):
        loss = loss_fn(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return {"acc": (net(x_test).argmax(1) == y_test).float().mean().item()}


# ---- main ------------------------------------------------------------------------------------------

def load_average() -> str:
    try:
        return " ".join(f"{v:.1f}" for v in os.getloadavg()) + f" on {os.cpu_count()} CPUs"
    except OSError:
        return "?"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=default_data_dir(), help="data directory (MNIST/raw, cifar10/*.npz)")
    p.add_argument("--only", default=None, help=f"comma-separated rows: {','.join(ROWS)}")
    p.add_argument("--quick", action="store_true", help="fewer epochs, for development")
    p.add_argument("--seeds", type=int, default=3, help="seeds for mnist-study (default 3)")
    p.add_argument("--work", default=None, help="keep run directories here (default: a temporary folder, removed); "
                   "reference results cached there are reused by the next run with the same --work")
    p.add_argument("--json", default=None, help="also write the rows as JSON to this file")
    p.add_argument("--plain-mnist-mlp", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--plain-toy", default=None, help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--epochs", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--bf16", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    data = Path(args.data).resolve()

    if args.plain_mnist_mlp:
        print("RESULT " + json.dumps(plain_mnist_mlp(data, args.seed, args.bf16, args.epochs)))
        return 0
    if args.plain_toy:
        print("RESULT " + json.dumps(plain_toy(args.plain_toy)))
        return 0

    rows = ROWS if not args.only else [r.strip() for r in args.only.split(",") if r.strip()]
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        p.error(f"unknown rows {', '.join(unknown)}; choose from {', '.join(ROWS)}")
    need_cifar = {"cifar10", "cifar10-parity", "lenet"} & set(rows)
    if need_cifar and not (data / "cifar10" / "train.npz").exists():
        p.error(f"{data / 'cifar10' / 'train.npz'} missing; run: python {data / 'cifar10' / 'build.py'}")

    work = Path(args.work).resolve() if args.work else Path(tempfile.mkdtemp(prefix="nettrain-tutorials-"))
    work.mkdir(parents=True, exist_ok=True)
    bench = Bench(data, work, args.quick, args.seeds)
    started, load_start = time.strftime("%Y-%m-%d %H:%M:%S %Z"), load_average()
    results = []
    t0 = time.perf_counter()
    try:
        for name in rows:
            method = {"quadratic": lambda: bench.toy("quadratic"), "cifar10-parity": lambda: bench.cifar10(True),
                      "two-gaussians": lambda: bench.toy("two-gaussians")}.get(name) or \
                getattr(bench, name.replace("-", "_"))
            t = time.perf_counter()
            try:
                got = method()
            except Exception as e:   # a crashed row is a result too
                got = [Row(name, "-", goal="-", met=False, notes=[f"{name}: crashed: {type(e).__name__}: {e}"])]
            for r in got:
                r.notes.append(f"{name}: row took {time.perf_counter() - t:.0f} s")
            results += got
            print(f"--- {name} done ({time.perf_counter() - t:.0f} s)", file=sys.stderr, flush=True)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)

    import torch
    print(f"# nettrain tutorial recipes ({'quick' if args.quick else 'full'})")
    print(f"started {started}; {time.perf_counter() - t0:.0f} s in all; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; load average at start {load_start}, at end {load_average()}")
    print("command: python benchmarks/tutorial_recipes.py " + " ".join(sys.argv[1:] if argv is None else argv))
    print("seconds/epoch and images/s: nettrain / reference (training only, per epoch); DATA is the data directory\n")
    print(markdown_table(results))
    notes = [n for r in results for n in r.notes]
    if notes:
        print("\nnotes:")
        for n in notes:
            print(f"- {n}")
    if args.json:
        Path(args.json).write_text(json.dumps([r.__dict__ for r in results], indent=2, default=str))
    return 0 if all(r.met is True or isinstance(r.met, str) for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
