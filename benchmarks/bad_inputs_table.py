"""The table of crafted and bad inputs: each test of the files-are-data suites is one input tried, by category.

    python benchmarks/bad_inputs_table.py [--slow]

Runs the suites below with pytest (a JUnit XML report in a temporary folder) and prints, per category, how many
inputs were tried (test cases; a fuzz test counts its hypothesis examples), how many were handled (passed) and the
problems (failed or errored), then the CPU and the commit, so a result names where it was measured.
"""
from __future__ import annotations

import argparse
import platform
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CATEGORIES = {
    "test_untrusted.py": "code named by a run folder or checkpoint",
    "test_untrusted_imports.py": "imports through a trusted module's package or folder",
    "test_links.py": "writes and deletes through planted links",
    "test_reads.py": "reads: FIFOs, devices, folders, files past their limit",
    "test_bad_fields.py": "bad fields: checkpoint, model.onnx.json, run files, model sizes",
    "test_fuzz.py": "fuzzed fields (hypothesis)",
    "test_output.py": "unsafe or silent output: escapes, formulas, non-finite numbers, warnings",
    "test_unfinished.py": "runs that could not be finished or reused",
    "test_bad_input.py": "bad configs and arguments",
}


def cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slow", action="store_true", help="include the slow tests")
    args = ap.parse_args()
    files = [f"tests/{name}" for name in CATEGORIES if (REPO / "tests" / name).exists()]
    with tempfile.TemporaryDirectory() as tmp:
        xml = Path(tmp) / "report.xml"
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={xml}",
               "--hypothesis-show-statistics", *files] + ([] if args.slow else ["-m", "not slow"])
        out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True).stdout
        cases = ET.parse(xml).getroot().iter("testcase")
        rows = {name: [0, 0, 0] for name in CATEGORIES}
        examples = _examples(out)
        for case in cases:
            name = Path(case.get("file") or case.get("classname", "").replace(".", "/") + ".py").name
            name = next((n for n in CATEGORIES if case.get("classname", "").endswith(n[:-3])), name)
            if name not in rows or case.find("skipped") is not None:
                continue
            tried = examples.get(case.get("name"), 1)
            failed = case.find("failure") is not None or case.find("error") is not None
            rows[name][0] += tried
            rows[name][1] += 0 if failed else tried
            rows[name][2] += 1 if failed else 0
    print(f"{'category':<74} {'tried':>6} {'handled':>8} {'problems':>8}")
    for name, (tried, handled, problems) in rows.items():
        if tried:
            print(f"{CATEGORIES[name]:<74} {tried:>6} {handled:>8} {problems:>8}")
    total = [sum(r[i] for r in rows.values()) for i in range(3)]
    print(f"{'all':<74} {total[0]:>6} {total[1]:>8} {total[2]:>8}")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    print(f"{'(slow tests included)' if args.slow else '(fast tier)'}; commit {commit.stdout.strip()}; {cpu()}")


def _examples(out: str) -> dict:
    """test name -> the number of hypothesis examples it ran (its statistics block: '- N passing examples')."""
    found, name = {}, None
    for line in out.splitlines():
        m = re.match(r"\S*::(\S+):$", line.strip())
        if m:
            name = m.group(1)
        m = re.search(r"- (\d+) passing(?: examples?)?, (\d+) failing", line)
        if m and name:
            found[name] = found.get(name, 0) + int(m.group(1)) + int(m.group(2))
    return found


if __name__ == "__main__":
    main()
