"""Imports point one way (docs/architecture.md): the layers and forbidden imports of pyproject.toml's
[tool.importlinter], checked by import-linter, and no cycle between modules, imports inside functions included."""
import ast
import graphlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").is_file())
SRC = ROOT / "src"


def module_graph(src: Path, package: str = "nettrain") -> dict:
    """Module -> the modules of `package` it imports anywhere in its code, inside functions too. `from . import x`
    and `from pkg import x` import the submodule pkg.x when there is one (pkg itself is imported before any of its
    submodules, so that is no edge), else pkg."""
    files = {}
    for path in (src / package).rglob("*.py"):
        parts = path.relative_to(src).with_suffix("").parts
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {}
    for name, path in files.items():
        here = name if path.name == "__init__.py" else name.rpartition(".")[0]
        imported = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = here.split(".")[:len(here.split(".")) - node.level + 1]
                    base = ".".join(up + ([node.module] if node.module else []))
                imported.update(f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names)
        graph[name] = {m for m in imported if m in files and m != name}
    return graph


def cycle_in(graph: dict):
    """One cycle of `graph` as [a, b, ..., a], or None."""
    try:
        tuple(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as e:
        return e.args[1]
    return None


def test_no_module_imports_itself_back_through_others():
    cycle = cycle_in(module_graph(SRC))
    assert cycle is None, "an import cycle, counting imports inside functions: " + " -> ".join(cycle)


def test_the_cycle_finder_counts_imports_inside_functions(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "low.py").write_text("from . import high   # the package's submodule\n")
    (pkg / "high.py").write_text("def f():\n    from .low import g\n")
    graph = module_graph(tmp_path, "pkg")
    assert graph == {"pkg": set(), "pkg.low": {"pkg.high"}, "pkg.high": {"pkg.low"}}
    assert sorted(cycle_in(graph)[:2]) == ["pkg.high", "pkg.low"]
    (pkg / "high.py").write_text("from . import __name__ as name   # the package, already imported\n")
    assert cycle_in(module_graph(tmp_path, "pkg")) is None


def lint_imports(src: Path) -> subprocess.CompletedProcess:
    """import-linter's `lint-imports` on the package in `src`, with this project's contracts. Its graph (grimp)
    holds every import statement, those inside functions too: a bad import inside a function breaks a contract
    (test_a_bad_import_inside_a_function_breaks_the_contract)."""
    pytest.importorskip("importlinter")   # the test extra installs it
    command = "from importlinter.cli import lint_imports_command; lint_imports_command()"
    return subprocess.run([sys.executable, "-c", command, "--no-cache", "--no-logo",
                           "--config", str(ROOT / "pyproject.toml")],
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(src)},
                          capture_output=True, text=True, timeout=300)


def test_imports_keep_the_layers_and_forbidden_imports_of_pyproject():
    done = lint_imports(SRC)
    assert done.returncode == 0 and "0 broken" in done.stdout, done.stdout[-4000:] + done.stderr[-2000:]


def test_a_bad_import_inside_a_function_breaks_the_contract(tmp_path):
    shutil.copytree(SRC / "nettrain", tmp_path / "nettrain", ignore=shutil.ignore_patterns("__pycache__"))
    batches = tmp_path / "nettrain" / "data" / "batches.py"
    batches.write_text(batches.read_text() + "\n\ndef images(info):\n    from ..kinds import kind_of\n"
                       "    return kind_of(info).images\n")
    done = lint_imports(tmp_path)
    assert done.returncode == 1, done.stdout[-4000:] + done.stderr[-2000:]
    assert "nettrain.data.batches -> nettrain.kinds" in done.stdout


def test_data_and_the_engine_name_the_image_and_token_id_kinds_as_the_kinds_do():
    """data/ and engine/ read which kinds hold images or token ids below kinds/ (data/arrays.py)."""
    from nettrain.data.arrays import IMAGE_KINDS, TOKEN_ID_KINDS
    from nettrain.kinds import KINDS
    assert IMAGE_KINDS == tuple(name for name, kind in KINDS.items() if kind.images)
    assert TOKEN_ID_KINDS == tuple(name for name, kind in KINDS.items() if "dtype" in kind.record_fields)
