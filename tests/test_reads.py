"""Every file nettrain reads is a regular file of a bounded size, checked before it is opened (files.py): a FIFO, a
device such as /dev/zero, a folder where a file belongs or a file past its limit is one line naming it and exit
code 2, never a hang or a memory blow-up. The commands run in a subprocess with a timeout (a regression hangs
there, not here) and, where a device could be read without end, a cap on memory."""
import ast
import os
import re
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import nettrain
from nettrain import files
from nettrain.config import Config
from nettrain.data import text
from nettrain.errors import ConfigError, NettrainError
from test_text import texts_and_labels, write_csv
from conftest import QUIET, QUIET_API

SRC_DIR = Path(nettrain.__file__).resolve().parent
SRC = str(SRC_DIR.parent)
HANG_GUARD = 300    # seconds: each command ends in a few; only a regression (a read that blocks) reaches this
MEMORY_CAP = 6 << 30   # bytes of address space: importing torch maps about 3.2 GiB, reading /dev/zero would go on
QUIET_ONE_EPOCH = ["--epochs", "1", "--batch-size", "512", *QUIET]
QUIET_ONE_EPOCH_API = {"epochs": 1, "batch_size": 512, **QUIET_API}


def nettrain_cli(args: list, cwd: Path, memory: int = None) -> subprocess.CompletedProcess:
    """`python -m nettrain ARGS` in a fresh process with its own NETTRAIN_HOME (`memory`: a cap on its address
    space, so that a read without end fails there at once instead of filling the machine)."""
    env = dict(os.environ, PYTHONPATH=SRC, NETTRAIN_HOME=str(cwd / ".nettrain-home"), OMP_NUM_THREADS="1")
    cap = (lambda: resource.setrlimit(resource.RLIMIT_AS, (memory, memory))) if memory else None
    return subprocess.run([sys.executable, "-m", "nettrain", *map(str, args)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=HANG_GUARD, preexec_fn=cap)


def assert_refused(proc: subprocess.CompletedProcess, path: Path, what: str = "a FIFO (named pipe)", said=()):
    """Exit code 2 and one line naming `path` as `what`, not a regular file (after the lines starting as `said`)."""
    lines = proc.stderr.splitlines()
    assert proc.returncode == 2 and len(lines) == len(said) + 1, proc.stderr[-3000:]
    assert all(line.startswith(start) for line, start in zip(lines, said)), lines
    lines = lines[len(said):]
    assert lines[0].startswith("nettrain: error: ") and str(path) in lines[0], lines[0]
    assert f"is {what}, not a regular file" in lines[0], lines[0]


def fifo(path: Path) -> Path:
    os.mkfifo(path)   # opened for reading, it waits for a writer that never comes
    return path


@pytest.fixture(scope="module")
def table_run(tmp_path_factory) -> Path:
    where = tmp_path_factory.mktemp("table")
    rows = "\n".join(f"{i % 7},{i % 3},{'yes' if i % 2 else 'no'}" for i in range(40))
    (where / "table.csv").write_text(f"a,b,y\n{rows}\n")
    return nettrain.fit(dataset="csv", data_dir=str(where / "table.csv"), target="y", model="mlp",
                        run_dir=where / "run", **{"model.args.hidden": [8]}, **QUIET_ONE_EPOCH_API).dir


@pytest.fixture(scope="module")
def text_run(tmp_path_factory) -> Path:
    where = tmp_path_factory.mktemp("text")
    path = write_csv(where / "texts.csv", texts_and_labels())
    return nettrain.fit(dataset="text", data_dir=str(path), model="fasttext", run_dir=where / "run",
                        **QUIET_ONE_EPOCH_API).dir


def text_folder(root: Path) -> Path:
    """A folder of texts, one class a subfolder (pos/, neg/), as the text dataset reads it."""
    for i, (words, label) in enumerate(texts_and_labels(20)):
        (root / label).mkdir(parents=True, exist_ok=True)
        (root / label / f"{i}.txt").write_text(words)
    return root


# ---- the FIFOs the review found hanging a command: each is one line now ----

def test_a_fifo_config_is_one_line(tmp_path):
    config = fifo(tmp_path / "fifo.yaml")
    assert_refused(nettrain_cli(["fit", "--config", config, "--dataset", "digits", *QUIET_ONE_EPOCH], tmp_path), config)


@pytest.mark.slow   # a process of its own; the FIFO config, text and predict-file cases are the fast ones
def test_a_fifo_table_is_one_line(tmp_path):
    table = fifo(tmp_path / "fifo.csv")
    proc = nettrain_cli(["fit", "--dataset", "csv", "--data-dir", table, "--target", "y", *QUIET_ONE_EPOCH], tmp_path)
    assert_refused(proc, table)


def test_a_fifo_text_in_a_text_folder_is_one_line(tmp_path):
    folder = text_folder(tmp_path / "texts")
    planted = fifo(folder / "pos" / "zz.txt")
    proc = nettrain_cli(["fit", "--dataset", "text", "--data-dir", folder, "--model", "fasttext", *QUIET_ONE_EPOCH],
                        tmp_path)
    assert_refused(proc, planted)


@pytest.mark.slow   # a process of its own; the FIFO config, text and predict-file cases are the fast ones
def test_evaluate_of_a_fifo_checkpoint_is_one_line(tmp_path):
    checkpoint = fifo(tmp_path / "fifo.pt")
    assert_refused(nettrain_cli(["evaluate", checkpoint], tmp_path), checkpoint)


@pytest.mark.slow   # a process of its own; the FIFO config, text and predict-file cases are the fast ones
def test_evaluate_of_a_run_whose_data_dir_is_a_fifo_is_one_line(table_run, tmp_path):
    """A downloaded run names its own data: a FIFO there hung `evaluate`."""
    run = Path(shutil.copytree(table_run, tmp_path / "run"))
    data = fifo(tmp_path / "data.csv")
    for name in ("best.pt", "last.pt"):
        state = torch.load(run / name, weights_only=True)
        state["config"]["data"]["dir"] = str(data)
        torch.save(state, run / name)
    assert_refused(nettrain_cli(["evaluate", run], tmp_path), data)


def test_a_fifo_preprocessing_record_of_an_onnx_model_is_one_line(tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"an ONNX file")   # never parsed: its record is read first
    record = fifo(tmp_path / "model.onnx.json")
    assert_refused(nettrain_cli(["predict", tmp_path / "model.onnx", "x.png"], tmp_path), record)


def test_a_fifo_onnx_model_is_one_line(tmp_path):
    model = fifo(tmp_path / "model.onnx")
    (tmp_path / "model.onnx.json").write_text("{}")
    assert_refused(nettrain_cli(["predict", model, "x.png"], tmp_path), model)


@pytest.mark.parametrize("run", ["table_run", pytest.param("text_run", marks=pytest.mark.slow)])
def test_predict_file_of_a_fifo_is_one_line(run, request, tmp_path):
    rows = fifo(tmp_path / "fifo.csv")
    assert_refused(nettrain_cli(["predict", request.getfixturevalue(run), "--file", rows], tmp_path), rows)


@pytest.mark.slow   # a process of its own; the FIFO config, text and predict-file cases are the fast ones
def test_report_of_a_run_whose_metrics_are_a_fifo_is_one_line(table_run, tmp_path):
    run = Path(shutil.copytree(table_run, tmp_path / "run"))
    (run / "metrics.csv").unlink()
    metrics = fifo(run / "metrics.csv")
    # the report first makes predictions.npz, which a run fitted without a report lacks, and says so
    assert_refused(nettrain_cli(["report", run], tmp_path), metrics, said=["nettrain: predictions.npz made from"])


# ---- a device, a folder where a file belongs, a file past its limit ----

def test_a_text_linked_to_dev_zero_is_one_line_not_a_memory_blow_up(tmp_path):
    """`pos/zz.txt -> /dev/zero` grew fit to 24 GB; under a cap of a few GiB a regression fails at once."""
    folder = text_folder(tmp_path / "texts")
    (folder / "pos" / "zz.txt").symlink_to("/dev/zero")
    proc = nettrain_cli(["fit", "--dataset", "text", "--data-dir", folder, "--model", "fasttext", *QUIET_ONE_EPOCH],
                        tmp_path,
                        memory=MEMORY_CAP)
    assert_refused(proc, folder / "pos" / "zz.txt", "a character device")


def test_a_folder_named_like_a_text_is_not_read_as_one(tmp_path):
    """A folder `pos/x.txt` in a folder of texts is a deeper folder, which the text dataset does not read (it was
    an IsADirectoryError traceback); the texts beside it are read."""
    folder = text_folder(tmp_path / "texts")
    (folder / "pos" / "x.txt").mkdir()
    (folder / "pos" / "x.txt" / "inner.txt").write_text("not a text of the folder")
    rows = text.read_rows(folder, "text", "label")
    assert len(rows) == len(texts_and_labels(20)) == len(list(folder.glob("*/*.txt"))) - 1
    assert not any(where == "pos/x.txt" or t == "not a text of the folder" for where, t, _ in rows)


def test_a_file_past_its_limit_is_refused_before_it_is_read(tmp_path, monkeypatch):
    config = tmp_path / "big.yaml"
    config.write_text("train:\n  epochs: 3\n" + "# padding\n" * 20)
    texts = text_folder(tmp_path / "texts")
    monkeypatch.setitem(files.LIMITS, "config", 64)
    monkeypatch.setitem(files.LIMITS, "text", 16)
    size = config.stat().st_size
    with pytest.raises(ConfigError, match=re.escape(f"cannot read config: file {config} is {size} bytes, past the 64 "
                                                    f"bytes")):
        Config.load(config)
    with pytest.raises(NettrainError, match=r"text .*\.txt is \d+ bytes, past the 16 bytes a text may have"):
        text.read_rows(texts, "text", "label")


# ---- no module but files.py reads a file by its path ----

READERS = {"read_bytes", "read_text", "open_read"}   # files.py's: bytes, text or a checked file object
# calls that read what their first argument names: a path, or a file object
LOADERS = {"np.load", "numpy.load", "torch.load", "torch.jit.load", "Image.open", "PIL.Image.open", "onnx.load",
           "onnx.load_model", "ort.InferenceSession", "onnxruntime.InferenceSession", "gzip.open", "gzip.GzipFile",
           "bz2.open", "lzma.open", "tarfile.open", "zipfile.ZipFile", "zipfile.is_zipfile", "np.loadtxt",
           "np.genfromtxt", "np.fromfile", "np.memmap", "pickle.load", "json.load", "pd.read_csv", "pandas.read_csv",
           "shutil.copy", "shutil.copy2", "shutil.copyfile"}
OPENERS = {"open", "io.open", "io.FileIO", "codecs.open"}   # read unless their mode has w, a or x
SOURCE_KEYWORDS = {"f", "fp", "file", "fileobj", "path_or_bytes", "filename", "fname"}   # the loaders' own names
WRAPPERS = {"io.BytesIO", "BytesIO", "io.StringIO", "memoryview"}   # in-memory files of what was read
NOT_FILES = {"RunDir.open": "RunDir's constructor for an existing run: it takes the lock and reads nothing",
             "cls.open": "the same, inside RunDir"}
# (module, call): why it stays. A read listed here that the module no longer makes fails the test too.
ALLOWED = {
    ("_omp.py", "open"): "/proc/stat, a kernel file that is never a FIFO and is read one line at a time",
    ("report/read.py", "npz.zip.open"): "a member of predictions.npz, already opened through files.open_read: its "
                                        "header is read to bound the array before numpy allocates it",
}


def _dotted(node) -> str:
    """`a.b.c` of a name or attribute chain; '' for anything else (a call's result, a subscript)."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _dotted(node.value)
        return f"{inner}.{node.attr}" if inner else ""
    return ""


def _from_files(tree) -> tuple:
    """(the reader names imported from files.py, the names files.py itself is bound to)."""
    names, modules = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if (node.module or "").split(".")[-1] == "files":
                names |= {a.asname or a.name for a in node.names if a.name in READERS}
            modules |= {a.asname or a.name for a in node.names if a.name == "files"}
    return names, modules


class _Reads(ast.NodeVisitor):
    """The reads by path in one module, as (line, call) pairs."""

    def __init__(self, readers: set, files_modules: set):
        self.readers, self.files_modules = readers, files_modules
        self.found, self.checked = [], [set()]   # names bound to files.py's bytes, text or file objects, per scope

    def _is_reader(self, call) -> bool:
        if not isinstance(call, ast.Call):
            return False
        func = call.func
        if isinstance(func, ast.Name):
            return func.id in self.readers
        return isinstance(func, ast.Attribute) and func.attr in READERS and _dotted(func.value) in self.files_modules

    def _is_checked(self, node) -> bool:
        if isinstance(node, ast.Name):
            return any(node.id in scope for scope in self.checked)
        if isinstance(node, ast.Call) and _dotted(node.func) in WRAPPERS:
            return True
        return self._is_reader(node)

    def _bind(self, target, value):
        if isinstance(target, ast.Name) and self._is_checked(value):
            self.checked[-1].add(target.id)

    def visit_FunctionDef(self, node):
        self.checked.append(set())
        self.generic_visit(node)
        self.checked.pop()

    visit_AsyncFunctionDef = visit_Lambda = visit_FunctionDef

    def visit_With(self, node):
        for item in node.items:
            self.visit(item.context_expr)
            if item.optional_vars is not None:
                self._bind(item.optional_vars, item.context_expr)
        for statement in node.body:
            self.visit(statement)

    def visit_Assign(self, node):
        self.visit(node.value)
        for target in node.targets:
            self._bind(target, node.value)

    def visit_NamedExpr(self, node):
        self.visit(node.value)
        self._bind(node.target, node.value)

    def visit_Name(self, node):   # `opener = gzip.open if gz else open`: open handed on, to open a path later
        if node.id == "open" and isinstance(node.ctx, ast.Load):
            self.found.append((node.lineno, "open"))

    def visit_Attribute(self, node):   # `load = np.load`: a loader handed on
        if _dotted(node) in LOADERS:
            self.found.append((node.lineno, _dotted(node)))
        self.generic_visit(node)

    def visit_Call(self, node):
        name = _dotted(node.func)
        if name in OPENERS:
            mode = node.args[1] if len(node.args) > 1 else next((k.value for k in node.keywords if k.arg == "mode"),
                                                                 ast.Constant("r"))
            if not (isinstance(mode, ast.Constant) and set(str(mode.value)) & set("wax")):
                self.found.append((node.lineno, name))
            for arg in [*node.args, *node.keywords]:
                self.visit(arg)
            return
        if name == "os.open":
            if "O_WRONLY" not in ast.unparse(node):
                self.found.append((node.lineno, name))
        elif name in LOADERS:
            sources = node.args[:1] + [k.value for k in node.keywords if k.arg in SOURCE_KEYWORDS]
            if not sources or not all(self._is_checked(s) for s in sources):
                self.found.append((node.lineno, name))
        elif isinstance(node.func, ast.Attribute) and node.func.attr in ("read_text", "read_bytes", "open") \
                and _dotted(node.func.value) not in self.files_modules and name not in NOT_FILES:
            self.found.append((node.lineno, name or f"<...>.{node.func.attr}"))
        if isinstance(node.func, ast.Attribute):   # the receiver (a call in it), not the loader's own name again
            self.visit(node.func.value)
        elif not isinstance(node.func, ast.Name):
            self.visit(node.func)
        for arg in [*node.args, *node.keywords]:
            self.visit(arg)


def reads_by_path(source: str) -> list:
    """(line, call) of each read of a file by its path in a module's `source`: what files.py must do instead."""
    tree = ast.parse(source)
    visitor = _Reads(*_from_files(tree))
    visitor.visit(tree)
    return visitor.found


def test_no_module_but_files_reads_a_file_by_its_path():
    """The rule: outside files.py, a file is read only through files.read_bytes, read_text or open_read, which check
    that it is a regular file of a bounded size before they read it. So, in every other module of nettrain:

    - builtin `open` (and `io.open`, `os.open`) only writes (a mode with w, a or x), and is never handed on as a
      value (`opener = gzip.open if gz else open`);
    - `.read_text()`, `.read_bytes()` and `.open()` are never called on a path (`Path.open`), only on files.py;
    - the loaders that would open a path themselves (np.load, torch.load, torch.jit.load, Image.open, onnx.load,
      onnxruntime's InferenceSession, gzip, zipfile, tarfile, pickle.load, json.load) are given only what files.py
      handed out: a call of one of its readers, an io.BytesIO of it, or a name bound to one of those in the same
      function (`with open_read(...) as f:`, `data = read_bytes(...)`).

    ALLOWED names the few reads that stay, each with its reason; an entry that no longer matches a read fails too,
    so the list cannot outlive its reason."""
    found, used = [], set()
    for path in sorted(SRC_DIR.rglob("*.py")):
        module = path.relative_to(SRC_DIR).as_posix()
        if module == "files.py":
            continue
        for line, call in reads_by_path(path.read_text(encoding="utf-8")):
            if (module, call) in ALLOWED:
                used.add((module, call))
            else:
                found.append(f"{module}:{line}: {call}")
    assert not found, "files read by their path, not through files.py's readers:\n" + "\n".join(found)
    assert used == set(ALLOWED), f"ALLOWED entries that match no read any more: {set(ALLOWED) - used}"


def test_the_rule_sees_each_way_of_reading_a_path():
    """The checker itself: each way of reading a path is found, and each way through files.py is not."""
    bad = ["open(p)", "open(p, 'rb')", "open(p, mode='r')", "io.open(p)", "f = gzip.open if g else open",
           "p.read_text()", "Path(p).read_bytes()", "p.open()", "np.load(p)",
           "torch.load(str(p), weights_only=True)", "Image.open(p)", "onnx.load(p)", "ort.InferenceSession(str(p))",
           "json.load(open(p))",
           "zipfile.is_zipfile(p)", "gzip.open(p, 'rb')", "os.open(p, os.O_RDONLY)",
           "torch.load(f=p, weights_only=True)", "opener = gzip.open", "io.FileIO(p)", "codecs.open(p)",
           "shutil.copy(p, q)",
           "def g(p):\n    with open_read(p, 1) as f: pass\n    return np.load(p)"]   # f is checked, p is not
    for source in bad:
        assert reads_by_path("from .files import open_read, read_bytes\n" + source), source
    good = ["open(p, 'w')", "open(p, 'ab')", "os.open(p, os.O_WRONLY | os.O_CREAT)",
            "with open_read(p, 1) as f:\n    np.load(f)",
            "data = read_bytes(p, 1)\ntorch.load(io.BytesIO(data), weights_only=True)",
            "Image.open(io.BytesIO(read_bytes(p, 1)))", "ort.InferenceSession(read_bytes(p, 1))",
            "files.read_text(p, 1)", "with open_read(p, 1) as f, Image.open(f) as im: pass", "RunDir.open(p)"]
    for source in good:
        assert not reads_by_path("from .files import open_read, read_bytes\nfrom . import files\n" + source), source
