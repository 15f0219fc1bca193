"""The manual: the README a newcomer reads first, and docs/ built as a site by mkdocs with --strict, so that a broken
link or anchor, or a page left out of the nav, fails the tests."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
README_MAX_LINES = 250   # read in five minutes; the manual is docs/
SETUP = "python3 -m venv .venv && .venv/bin/pip install -e '.[test]' && .venv/bin/nettrain fit"
TESTS = ".venv/bin/python -m pytest -q -n 2 --dist loadfile"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The site as `mkdocs build --strict` writes it, and what the build printed."""
    out = tmp_path_factory.mktemp("site")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")   # material's notice about its successor: not a warning of ours
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)
    return out, done


def test_the_docs_build_with_strict(site):
    out, done = site
    assert done.returncode == 0, done.stdout + done.stderr
    assert (out / "index.html").is_file()
    assert (out / "bad-inputs" / "index.html").is_file()   # the generated catalogue is part of the site


def test_the_readme_is_short():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) < README_MAX_LINES, f"README.md has {len(lines)} lines; move detail into docs/"


def test_the_readmes_first_code_block_sets_up_runs_and_tests():
    text = README.read_text(encoding="utf-8")
    first = re.search(r"```[a-z]*\n(.*?)```", text, flags=re.S)
    assert first is not None, "README.md has no code block"
    commands = [line for line in first.group(1).splitlines() if line and not line.startswith("#")]
    assert commands == [SETUP, TESTS]
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert ci[-1] == TESTS   # CI runs exactly the README's test command, last


def _anchors(html: Path) -> set:
    return set(re.findall(r'\bid="([^"]+)"', html.read_text(encoding="utf-8")))


def test_the_readmes_links_into_docs_resolve(site):
    out, done = site
    assert done.returncode == 0, done.stdout + done.stderr
    links = re.findall(r"\]\(([^)\s]+)\)", README.read_text(encoding="utf-8"))
    local = [link for link in links if "://" not in link and not link.startswith("#")]
    assert local, "README.md links to no page of the manual"
    for link in local:
        path, _, anchor = link.partition("#")
        assert (ROOT / path).exists(), f"README.md links to {path}, which does not exist"
        if anchor:   # docs/x.md#a is the site's x/index.html with an element of id a
            page = out / Path(path).relative_to("docs").with_suffix("") / "index.html"
            if Path(path).name == "index.md":
                page = out / "index.html"
            assert anchor in _anchors(page), f"README.md links to {link}: {path} has no heading #{anchor}"
