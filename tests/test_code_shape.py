"""Simple code: no function in the package is longer than 60 lines (a function fits on one screen)."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "nettrain"
MAX_LINES = 60


def long_functions(package: Path = PACKAGE) -> list:
    """'path:line name (N lines)' for every function or method under `package` over MAX_LINES lines."""
    found = []
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_LINES:
                    found.append(f"{path.relative_to(package).as_posix()}:{node.lineno} {node.name} ({lines} lines)")
    return found


def test_the_scan_finds_a_long_method_and_only_it(tmp_path):
    body = "".join(f"        x{i} = {i}\n" for i in range(MAX_LINES - 1))   # with def and return: MAX_LINES + 1
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "long.py").write_text(f"def short():\n    return 1\n\n\nclass A:\n    def long(self):\n{body}"
                                              f"        return 2\n")
    (tmp_path / "fits.py").write_text("def fits():\n" + "".join(f"    y{i} = {i}\n" for i in range(MAX_LINES - 1)))
    assert long_functions(tmp_path) == [f"sub/long.py:6 long ({MAX_LINES + 1} lines)"]


def test_no_function_is_over_60_lines():
    assert long_functions() == []
