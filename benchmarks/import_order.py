"""Does the import order change how fast a tutorial script trains? `import torch` then `import nettrain`, against
`import nettrain` then `import torch`, each in its own process, alternating, on the same fit.

Before nettrain left the process alone, `import nettrain` first set OMP_WAIT_POLICY (spin on an idle CPU) and
`import torch` first could not (libgomp had read its settings), so the same script trained at two speeds. Now
neither order sets anything: both run with libgomp's default, and the images/s should agree within the noise.

    python benchmarks/import_order.py [--repeats 3] [--epochs 5] [--model cnn] [--dataset digits]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

SCRIPT = """
import json, os, sys, tempfile
{imports}
run = nettrain.fit(dataset={dataset!r}, model={model!r}, epochs={epochs}, device="cpu",
                   run_dir=os.path.join(tempfile.mkdtemp(), "run"), **{{"run.progress": "none",
                   "run.tensorboard": False}})
rates = [r["examples_per_s"] for r in run.metrics[1:]] or [run.metrics[0]["examples_per_s"]]
print(json.dumps({{"omp": os.environ.get("OMP_WAIT_POLICY"), "images_per_s": sorted(rates)[len(rates) // 2]}}))
"""

ORDERS = {"torch first": "import torch\nimport nettrain", "nettrain first": "import nettrain\nimport torch"}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--model", default="cnn")
    p.add_argument("--dataset", default="digits")
    a = p.parse_args()
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    results = {name: [] for name in ORDERS}
    policies = {name: set() for name in ORDERS}
    for _ in range(a.repeats):
        for name, imports in ORDERS.items():   # alternating: a change in the machine's load hits both
            code = SCRIPT.format(imports=imports, dataset=a.dataset, model=a.model, epochs=a.epochs)
            with tempfile.TemporaryDirectory() as cwd:
                out = subprocess.run([sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True, text=True,
                                     check=True).stdout
            r = json.loads(out.strip().splitlines()[-1])
            results[name].append(r["images_per_s"])
            policies[name].add(r["omp"])
    print(f"{a.dataset} + {a.model}, {a.epochs} epochs, median epoch images/s per process, {a.repeats} alternating "
          f"runs each")
    print("| import order | OMP_WAIT_POLICY in the process | images/s (each run) | median |")
    print("|---|---|---|---|")
    for name, rates in results.items():
        print(f"| {name} | {', '.join(str(p) for p in sorted(policies[name], key=str))} | "
              f"{', '.join(f'{r:,.0f}' for r in rates)} | {statistics.median(rates):,.0f} |")
    ratio = statistics.median(results["nettrain first"]) / statistics.median(results["torch first"])
    print(f"nettrain first / torch first: {ratio:.3f}")


if __name__ == "__main__":
    main()
