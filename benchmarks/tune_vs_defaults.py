"""nettrain tune against the recipe's defaults and against a grid sweep of the same budget, on scikit-learn's
bundled tables and the sentiment-sentence files.

    python benchmarks/tune_vs_defaults.py [DATA] [--datasets iris wine ...] [--trials 30]

Each dataset is trained three ways, all holding out a fifth of the training split for validation
(data.val_fraction 0.2) and choosing on it alone: (1) the recipe as it is (recipes/tables.yaml,
recipes/sentiment.yaml); (2) `nettrain tune` of --trials trials (TPE, median pruning) over the recipe's learning
rate, optimizer and width; (3) `nettrain sweep` of a grid over the same keys with as many runs (the lrs spread
log-evenly over the same range). For (2) and (3) the chosen run is the one with the best held-out metric (val_acc,
or val_loss for diabetes); printed are its held-out metric, its test metric (accuracy, or R^2 for diabetes: read
once, after the choice), the runs trained and the whole wall time of each way, in this process.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nettrain
from nettrain.sweep import sweep
from nettrain.tune import Settings, parse_space, tune

REPO = Path(__file__).resolve().parents[1]
TABLES = ("iris", "wine", "breast-cancer", "diabetes")
TEXTS = ("amazon", "imdb", "yelp")
QUIET = {"run.progress": "none", "run.report": False, "run.tensorboard": False}
LR_RANGE = {"tables": (1e-3, 1e-1), "texts": (2e-3, 2e-1)}
# the keys searched beside the lr, and their values: the tune chooses among them, the grid takes them all
OTHERS = {"tables": {"optimizer": ["adam", "adamw", "sgd"], "model.args.hidden": [[32], [64, 32]]},
          "texts": {"optimizer": ["adam", "adamw", "sgd"], "model.args.embed": [16, 64]}}


def datasets(names: list, data: Path) -> list:
    """(name, family, fit options) of each dataset asked for."""
    out = []
    for name in names:
        if name in TABLES:
            out.append((name, "tables", {"dataset": name}))
        elif name in TEXTS:
            file = data / "sentiment-sentences" / f"{name}.csv"
            if not file.exists():
                sys.exit(f"{file} not found; give the staged datasets' folder as DATA")
            out.append((name, "texts", {"dataset": "text", "data_dir": str(file)}))
        else:
            sys.exit(f"unknown dataset {name!r}; give some of {', '.join(TABLES + TEXTS)}")
    return out


def recipe(family: str) -> str:
    return str(REPO / "recipes" / ("tables.yaml" if family == "tables" else "sentiment.yaml"))


def run_scores(run_dir: Path, metric: str) -> tuple:
    """(best held-out metric, test metric) of a run directory: accuracy, or R^2 for a regression."""
    with open(run_dir / "metrics.csv", newline="") as f:
        values = [float(r[metric]) for r in csv.DictReader(f) if r["val_split"] == "val" and r[metric]]
    with open(run_dir / "test_metrics.json") as f:
        test = json.load(f)
    held = max(values) if metric == "val_acc" else min(values)
    return held, test.get("accuracy", test.get("acc", test.get("r2")))


def grid(family: str, budget: int) -> dict:
    """The sweep's axes: every value of the other keys, and as many lrs (log-even) as the budget leaves."""
    others = OTHERS[family]
    n = max(1, budget // math.prod(len(v) for v in others.values()))
    low, high = LR_RANGE[family]
    lrs = [float(f"{low * (high / low) ** (i / max(1, n - 1)):.3g}") for i in range(n)] if n > 1 else \
        [float(f"{math.sqrt(low * high):.3g}")]
    return {"lr": lrs, **others}


def space(family: str):
    low, high = LR_RANGE[family]
    tokens = ["--lr", f"loguniform:{low}:{high}"]
    for key, values in OTHERS[family].items():
        tokens += [f"--{key}", "choice:" + ",".join(json.dumps(v).replace(" ", "") for v in values)]
    return parse_space(tokens)


def three_ways(name: str, family: str, options: dict, trials: int, work: Path) -> list:
    metric = "val_loss" if name == "diabetes" else "val_acc"
    base = {**options, **QUIET, "data.val_fraction": 0.2}
    rows = []
    t0 = time.perf_counter()
    run = nettrain.fit(recipe(family), run_dir=str(work / f"{name}-defaults"), **base)
    rows.append([name, "recipe defaults", *run_scores(run.dir, metric), 1, time.perf_counter() - t0])
    t0 = time.perf_counter()
    result = tune(space(family), base, recipe(family),
                  Settings(trials=trials, study=name, study_dir=str(work / f"{name}-tune"), compare=0),
                  say=lambda line: None)
    best_dir = result.dir / result.best.user_attrs["dir"]
    rows.append([name, f"tune ({sum(t.state.name == 'PRUNED' for t in result.trials)} pruned)",
                 *run_scores(best_dir, metric), len(result.trials), time.perf_counter() - t0])
    t0 = time.perf_counter()
    axes = grid(family, trials)
    swept = sweep(axes, base, recipe(family), str(work / f"{name}-sweep"), say=lambda line: None)
    scored = [(run_scores(o.dir, metric), o) for o in swept.outcomes if o.error is None]
    best = (max if metric == "val_acc" else min)(scored, key=lambda s: s[0][0])
    rows.append([name, "grid sweep", *best[0], len(swept.outcomes), time.perf_counter() - t0])
    return rows


def header(args) -> str:
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip() or "unknown"
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import optuna
    import torch
    return (f"# python benchmarks/tune_vs_defaults.py {' '.join(sys.argv[1:])}\n# {time.strftime('%Y-%m-%d %H:%M %Z')}, "
            f"commit {commit}, {cpu} ({os.cpu_count()} CPUs), torch {torch.__version__}, optuna {optuna.__version__}, "
            f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data", nargs="?", default=os.environ.get("NETTRAIN_DATA") or REPO.parent / "shared" / "datasets")
    p.add_argument("--datasets", nargs="+", default=list(TABLES + TEXTS))
    p.add_argument("--trials", type=int, default=30, help="the tune's trials and the grid's runs")
    args = p.parse_args()
    print(header(args), flush=True)
    print("| dataset | way | held-out (val_acc; diabetes val_loss) | test (accuracy; diabetes R^2) | runs | wall s |")
    print("|---|---|---|---|---|---|", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name, family, options in datasets(args.datasets, Path(args.data)):
            for row in three_ways(name, family, options, args.trials, Path(tmp)):
                print(f"| {row[0]} | {row[1]} | {row[2]:.4f} | {row[3]:.4f} | {row[4]} | {row[5]:.1f} |", flush=True)


if __name__ == "__main__":
    main()
