"""What each command costs as a whole process, against `python -c "import torch"` and `nettrain --help`.

    python benchmarks/startup.py [--repeats 5]

Trains one tiny run first (digits, mlp, 1 epoch, with its report), then times each command's whole process in
alternating pairs with both references (command, import torch, nettrain --help, command, ...), so a change in the
machine's load hits all three alike, and prints the medians, the ratios of the medians, the CPU and the commit.
Goals: list, report and compare import no torch (near `nettrain --help`); predict <= 1.1x `import torch`.
"""
from __future__ import annotations

import argparse
import datetime
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, nettrain_cmd, run_timed   # noqa: E402

QUIET = ["--run.progress", "none"]
# bytecode cached as an installed package has it: with PYTHONDONTWRITEBYTECODE set, every start compiles nettrain
ENV = {"PYTHONDONTWRITEBYTECODE": ""}
COMMANDS = {   # name -> arguments after `nettrain`, run in the folder that holds the run `r` and one.png
    "list": ["list"],
    "fit --help": ["fit", "--help"],
    "report r": ["report", "r"],
    "compare r r2": ["compare", "r", "r2", "--out", "cmp"],
    "predict r one.png": ["predict", "r", "one.png"],
    "evaluate r": ["evaluate", "r"],
    "fit digits 1 epoch": ["fit", "--dataset", "digits", "--model", "mlp", "--epochs", "1", "--run-dir", "f",
                           "--overwrite", *QUIET],
}


def cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def commit() -> str:
    out = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


def prepare(where: Path):
    """Two runs to report, compare, predict and evaluate, and one digit as a PNG."""
    for name, lr in (("r", "0.1"), ("r2", "0.05")):
        run_timed([*nettrain_cmd(), "fit", "--dataset", "digits", "--model", "mlp", "--epochs", "1", "--lr", lr,
                   "--run-dir", name, *QUIET], cwd=where, env=ENV).check()
    code = ("from sklearn.datasets import load_digits; from PIL import Image; import numpy as np; "
            "Image.fromarray((load_digits().images[0] * 15).astype(np.uint8)).save('one.png')")
    run_timed([sys.executable, "-c", code], cwd=where, env=ENV).check()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--only", nargs="*", help="time only these commands (names as printed)")
    a = p.parse_args()
    torch_ref = [sys.executable, "-c", "import torch"]
    help_ref = [*nettrain_cmd(), "--help"]
    chosen = {k: v for k, v in COMMANDS.items() if not a.only or k in a.only}
    with tempfile.TemporaryDirectory() as tmp:
        where = Path(tmp)
        prepare(where)
        rows = []
        for name, args in chosen.items():
            times = {"command": [], "import torch": [], "nettrain --help": []}
            for _ in range(a.repeats):   # alternating: command, then each reference, again and again
                for key, cmd in (("command", [*nettrain_cmd(), *args]), ("import torch", torch_ref),
                                 ("nettrain --help", help_ref)):
                    times[key].append(run_timed(cmd, cwd=where, env=ENV).check().wall)
            med = {k: statistics.median(v) for k, v in times.items()}
            rows.append((name, med["command"], med["import torch"], med["nettrain --help"]))
    print(f"# {datetime.date.today()}, {cpu()}, commit {commit()}; whole processes, medians of {a.repeats} "
          f"alternating triples (command, import torch, nettrain --help)")
    print("| command | seconds | import torch | ratio | nettrain --help | ratio |")
    print("|---|---|---|---|---|---|")
    for name, cmd_s, torch_s, help_s in rows:
        print(f"| nettrain {name} | {cmd_s:.2f} | {torch_s:.2f} | {cmd_s / torch_s:.2f}x | {help_s:.2f} | "
              f"{cmd_s / help_s:.2f}x |")


if __name__ == "__main__":
    main()
