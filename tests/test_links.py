"""A run folder from elsewhere writes nowhere else: links planted where nettrain writes (the lock, a temporary's
name, figures/, tensorboard/, hang/, a folder named in the record) are never written or deleted through, and one
writer (files.py) is the only code that writes, makes a folder or deletes."""
import ast
import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import nettrain
import nettrain.files as files
from nettrain.cli import main
from conftest import QUIET, QUIET_API

PACKAGE = Path(nettrain.__file__).resolve().parent
SRC = str(PACKAGE.parent)
VICTIM = "the user's own file\n"


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    """A finished one-epoch run with its report (figures/ and report.html), as a download would bring it."""
    return nettrain.fit(dataset="digits", model="mlp", epochs=1, batch_size=512, precision="32",
                        run_dir=tmp_path_factory.mktemp("base") / "run", **{"model.args.hidden": [8]},
                        **{**QUIET_API, "run.report": True}).dir


def downloaded(base: Path, where: Path, name: str = "dl") -> Path:
    """A copy of the base run, as a downloaded folder: its links are planted by the test."""
    return Path(shutil.copytree(base, where / name, symlinks=True))


def victim(where: Path, name: str = "victim.txt") -> Path:
    path = where / name
    path.write_text(VICTIM)
    return path


def plant(link: Path, target: Path):
    if link.is_file() or link.is_symlink():
        link.unlink()
    link.symlink_to(target)


def one_line_error(capsys, *names) -> str:
    err = capsys.readouterr().err
    assert err.startswith("nettrain: error: ") and err.count("\n") == 1, err
    for name in names:
        assert name in err, err
    return err


# ---- the lock ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("command", [["report"], ["fit", "--epochs", "2", *QUIET, "--resume"], ["export"]],
                         ids=["report", "resume", "export"])
def test_a_lock_planted_as_a_link_is_never_written_through(base_run, tmp_path, capsys, command):
    run = downloaded(base_run, tmp_path)
    target = victim(tmp_path)
    plant(run / ".nettrain-lock", target)
    assert main(command + [str(run)]) == 2
    one_line_error(capsys, ".nettrain-lock", "symbolic link")
    assert target.read_text() == VICTIM
    assert (run / ".nettrain-lock").is_symlink()


@pytest.mark.slow   # the planted lock and figures/ links of the same run are refused in-process by the fast tests above
def test_a_downloaded_run_is_reported_on_by_a_fresh_process_without_writing_through_its_links(base_run, tmp_path):
    """The real command, in a process of its own: the lock planted as a link first, then figures/ as one."""
    run = downloaded(base_run, tmp_path)
    target = victim(tmp_path)
    pictures = tmp_path / "Pictures"
    pictures.mkdir()
    picture = victim(pictures, "learning_curves.png")
    plant(run / ".nettrain-lock", target)
    shutil.rmtree(run / "figures")
    plant(run / "figures", pictures)
    env = {**os.environ, "NETTRAIN_HOME": str(tmp_path / "home"), "PYTHONPATH": SRC}
    for planted in (".nettrain-lock", "figures"):
        done = subprocess.run([sys.executable, "-m", "nettrain", "report", str(run)], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
        assert done.stderr.startswith(f"nettrain: error: {run / planted} is a symbolic link"), done.stderr
        (run / planted).unlink()   # the user removes the link, as the line says; the next one is found
    assert target.read_text() == VICTIM and picture.read_text() == VICTIM and os.listdir(pictures) == [picture.name]


# ---- temporaries -----------------------------------------------------------------------------------------------

def test_report_temporaries_planted_as_links_are_never_written_through(base_run, tmp_path, capsys):
    """The old fixed name, and names of the new form: planted, none is opened."""
    run = downloaded(base_run, tmp_path)
    planted = {".report.html.tmp": victim(tmp_path, "a.txt"),
               ".report.html.0123456789ab.tmp": victim(tmp_path, "b.txt"),
               ".report.html.anything.tmp": victim(tmp_path, "c.txt")}
    for name, target in planted.items():
        plant(run / name, target)
    assert main(["report", str(run)]) == 0
    for name, target in planted.items():
        assert target.read_text() == VICTIM and (run / name).is_symlink()
    report = run / "report.html"
    assert not report.is_symlink() and "<html" in report.read_text()


def test_a_temporary_name_drawn_where_a_link_was_planted_is_not_opened(tmp_path, monkeypatch):
    """Even the very name the writer draws, planted as a link ahead of it, is never opened: another is drawn."""
    drawn = iter(["0123456789ab"])
    token_hex = files.secrets.token_hex
    monkeypatch.setattr(files.secrets, "token_hex", lambda n: next(drawn, None) or token_hex(n))
    run = tmp_path / "run"
    run.mkdir()
    target = victim(tmp_path)
    plant(run / ".report.html.0123456789ab.tmp", target)
    files.write_text(run / "report.html", "<html>the report</html>", root=run)
    assert target.read_text() == VICTIM and (run / ".report.html.0123456789ab.tmp").is_symlink()
    assert (run / "report.html").read_text() == "<html>the report</html>"
    assert sorted(os.listdir(run)) == [".report.html.0123456789ab.tmp", "report.html"]


def test_a_figures_link_is_refused_and_the_pictures_it_points_to_are_kept(base_run, tmp_path, capsys):
    run = downloaded(base_run, tmp_path)
    pictures = tmp_path / "Pictures"
    pictures.mkdir()
    names = sorted(p.name for p in (base_run / "figures").iterdir())   # the seven figures the report draws
    for i, name in enumerate(names):
        (pictures / name).write_bytes(b"the user's picture %d" % i)
    shutil.rmtree(run / "figures")
    plant(run / "figures", pictures)
    assert main(["report", str(run)]) == 2
    one_line_error(capsys, f"{run / 'figures'} is a symbolic link")
    assert len(names) == 7 and sorted(p.name for p in pictures.iterdir()) == sorted(names)
    assert all((pictures / n).read_bytes() == b"the user's picture %d" % i for i, n in enumerate(names))


def test_compare_temporaries_planted_beside_the_runs_are_never_written_through(base_run, tmp_path, capsys):
    folder = tmp_path / "dl"
    folder.mkdir()
    a, b = downloaded(base_run, folder, "a"), downloaded(base_run, folder, "b")
    planted = {".compare.html.tmp": victim(tmp_path, "html.txt"), ".compare.png.tmp": victim(tmp_path, "png.txt")}
    for name, target in planted.items():
        plant(folder / name, target)
    assert main(["compare", str(a), str(b)]) == 0
    for name, target in planted.items():
        assert target.read_text() == VICTIM and (folder / name).is_symlink()
    assert not (folder / "compare.html").is_symlink() and "nettrain compare" in (folder / "compare.html").read_text()


def test_a_metrics_temporary_planted_before_a_resume_is_never_written_through(base_run, tmp_path, capsys):
    run = downloaded(base_run, tmp_path)
    target = victim(tmp_path)
    plant(run / ".metrics.csv.tmp", target)
    assert main(["fit", "--resume", str(run), "--epochs", "3", *QUIET]) == 0
    assert target.read_text() == VICTIM
    assert len(nettrain.runs.read_metrics(run / "metrics.csv")) == 3


# ---- folders of the run ------------------------------------------------------------------------------------

def test_a_tensorboard_link_is_refused_and_its_folder_left_alone(base_run, tmp_path, capsys):
    run = downloaded(base_run, tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    victim(elsewhere, "notes.txt")
    if (run / "tensorboard").exists():
        shutil.rmtree(run / "tensorboard")
    plant(run / "tensorboard", elsewhere)
    assert main(["fit", "--resume", str(run), "--epochs", "2", *QUIET, "--run.tensorboard", "true"]) == 2
    one_line_error(capsys, f"{run / 'tensorboard'} is a symbolic link")
    assert [p.name for p in elsewhere.iterdir()] == ["notes.txt"] and (elsewhere / "notes.txt").read_text() == VICTIM


def test_the_hang_watchdog_writes_no_stacks_through_a_hang_link(tmp_path, capfd):
    """hang/rank{R}.txt goes into the run's own hang/ folder; a link planted in its place gets nothing (the stacks
    go to stderr, with the reason)."""
    from nettrain.engine.watchdog import Watchdog
    run = tmp_path / "run"
    run.mkdir()
    dog = Watchdog(0, 2, 10.0)
    summary = {"rank": 0, "collective": None, "call": "step (loop.py:1)", "what": None, "step": 3, "seconds": 1.0}
    dog.folder = run / "hang"
    dog._dump(summary)
    written = (run / "hang" / "rank0.txt").read_text()
    assert written.startswith("nettrain watchdog: rank 0 of 2") and "test_the_hang_watchdog" in written
    assert os.listdir(run / "hang") == ["rank0.txt"]

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    other = tmp_path / "other"
    other.mkdir()
    plant(other / "hang", elsewhere)
    dog.folder = other / "hang"
    capfd.readouterr()
    dog._dump(summary)   # faulthandler writes to stderr's descriptor
    err = capfd.readouterr().err
    assert f"{other / 'hang'} is a symbolic link" in err and "nettrain watchdog: rank 0 of 2" in err
    assert not list(elsewhere.iterdir())


def test_an_image_cache_link_in_a_data_folder_is_not_followed(tmp_path, monkeypatch):
    """.nettrain-cache planted as a link in an image folder: the decode cache goes to the user's cache folder."""
    from PIL import Image
    from nettrain.config import Config
    from nettrain.data import load_data
    root = tmp_path / "photos"
    for split in ("train", "val"):
        for label, name in enumerate(["dark", "light"]):
            (root / split / name).mkdir(parents=True)
            for i in range(2):
                Image.new("RGB", (8, 8), (40 + 160 * label,) * 3).save(root / split / name / f"{i}.png")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    plant(root / ".nettrain-cache", elsewhere)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    data = load_data(Config().override({"dataset": "imagefolder", "data_dir": str(root)}).data)
    assert len(data.train) == 4
    assert not list(elsewhere.iterdir())
    assert sorted(p.name.split("-")[0] for p in (tmp_path / "cache" / "nettrain").iterdir()) == ["train", "val"]


# ---- --overwrite -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dotfiles", [False, True], ids=["file", "dotfiles-link"])
def test_overwrite_deletes_nothing_through_a_linked_folder_named_in_the_record(base_run, tmp_path, capsys, dotfiles):
    """A record naming `sub/.bashrc`, with `sub -> home`: --overwrite deletes neither home/.bashrc (a file, or, as
    a dotfiles manager leaves it, a link to the real one) nor home/..bashrc.tmp (its temporary's old name)."""
    run = downloaded(base_run, tmp_path)
    home = tmp_path / "home"
    home.mkdir()
    if dotfiles:
        (home / "dotfiles").mkdir()
        (home / ".bashrc").symlink_to(victim(home / "dotfiles", "bashrc"))
    else:
        victim(home, ".bashrc")
    temporary = victim(home, "..bashrc.tmp")
    (run / "sub").symlink_to(home)
    record = json.loads((run / ".nettrain-run.json").read_text())
    record["files"].append("sub/.bashrc")
    (run / ".nettrain-run.json").write_text(json.dumps(record))
    assert main(["fit", "--dataset", "digits", "--model", "mlp", "--model.args.hidden", "[8]", "--epochs", "1",
                 "--batch-size", "512", *QUIET, "--run-dir", str(run), "--overwrite"]) == 0
    assert (home / ".bashrc").read_text() == VICTIM and temporary.read_text() == VICTIM
    assert (home / ".bashrc").is_symlink() == dotfiles
    assert (run / "sub").is_symlink() and (run / "last.pt").is_file()


# ---- a full disk ---------------------------------------------------------------------------------------------

def test_a_full_disk_says_the_previous_file_is_intact_only_when_there_was_one(tmp_path, capsys, monkeypatch):
    def disk_full(f):
        f.write(b"half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    with pytest.raises(files.WriteError) as first:
        files.write_file(tmp_path / "new.bin", disk_full, root=tmp_path)
    assert str(first.value).startswith(f"disk full while writing {tmp_path / 'new.bin'}")
    assert "intact" not in str(first.value)
    victim(tmp_path, "old.txt")
    with pytest.raises(files.WriteError, match="; the previous old.txt is intact$"):
        files.write_file(tmp_path / "old.txt", disk_full, root=tmp_path)
    assert os.listdir(tmp_path) == ["old.txt"] and (tmp_path / "old.txt").read_text() == VICTIM

    # a fit whose first checkpoint meets a full disk: there was no previous one to speak of
    def fills_the_disk(obj, f):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(torch, "save", fills_the_disk)
    run = tmp_path / "run"
    assert main(["fit", "--dataset", "two-gaussians", "--model", "mlp", "--epochs", "1", *QUIET,
                 "--run-dir", str(run)]) == 2
    err = one_line_error(capsys, f"disk full while writing {run}/", f"nettrain fit --resume {run} continues")
    assert "intact" not in err


# ---- one writer ------------------------------------------------------------------------------------------------

# What may write outside files.py, each with its reason: (module, function) -> why.
ALLOWED = {
    ("export.py", "write_and_check"): "a private folder from tempfile.TemporaryDirectory (mode 0700, a random name, "
                                      "outside any run) for the exporters, which take a path; the file is copied "
                                      "from there through files.write_file",
    ("export.py", "_write"): "torch.jit and torch.onnx write the exported model into that private folder",
    ("trust.py", "*"): "the trust store in NETTRAIN_HOME (the user's own folder, not a run) keeps its own lock and "
                       "rename",
}
PATH_METHODS = {"write_text", "write_bytes", "touch", "mkdir", "unlink", "rmdir", "symlink_to", "hardlink_to"}
OS_CALLS = {"open", "replace", "rename", "renames", "unlink", "remove", "mkdir", "makedirs", "rmdir", "removedirs",
            "link", "symlink", "truncate", "mkfifo", "mknod"}
SHUTIL_CALLS = {"rmtree", "move", "copy", "copy2", "copyfile", "copytree", "copymode", "copystat", "chown",
                "make_archive", "unpack_archive"}
TEMPFILE_CALLS = {"mkstemp", "mkdtemp", "NamedTemporaryFile", "TemporaryFile", "SpooledTemporaryFile",
                  "TemporaryDirectory"}
# serialisers, and which positional argument is where they write
SAVERS = {("np", "save"): 0, ("np", "savez"): 0, ("np", "savez_compressed"): 0, ("np", "savetxt"): 0,
          ("numpy", "save"): 0, ("numpy", "savez"): 0, ("numpy", "savez_compressed"): 0, ("torch", "save"): 1}
ANY_SAVERS = {"save": 0, "savefig": 0, "print_png": 0, "print_figure": 0}


def _dotted(node) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return ""


class WriterFinder(ast.NodeVisitor):
    """Every call in a module that writes, makes a folder or deletes by path. Serialisers (np.save*, torch.save,
    savefig, print_png, any `.save`) may write into a file object: a parameter named `f` of the enclosing function
    or lambda (nettrain's name for the binary file object files.write_file hands to `write(f)`), or a name the
    function bound to io.BytesIO() / io.StringIO(). A call on a module nettrain imports relatively (ckpt_io.save)
    is nettrain's own, checked in its own module."""

    def __init__(self, module: str, tree: ast.Module):
        self.module, self.found, self.scopes = module, [], []
        self.own = {a.asname or a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level
                    for a in n.names}

    def _scope(self, node):
        params = {a.arg for a in (*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs)} & {"f"}
        buffers = set()
        if not isinstance(node, ast.Lambda):
            for n in ast.walk(node):
                if isinstance(n, ast.Assign) and isinstance(n.value, ast.Call) and \
                        _dotted(n.value.func) in ("io.BytesIO", "io.StringIO"):
                    buffers.update(t.id for t in n.targets if isinstance(t, ast.Name))
        name = getattr(node, "name", None) or (self.scopes[-1][0] if self.scopes else "<module>")
        self.scopes.append((name, params | buffers))
        self.generic_visit(node)
        self.scopes.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _scope

    def _file_object(self, arg) -> bool:
        return isinstance(arg, ast.Name) and any(arg.id in names for _, names in self.scopes)

    def _flag(self, node, what: str):
        function = self.scopes[-1][0] if self.scopes else "<module>"
        if (self.module, function) not in ALLOWED and (self.module, "*") not in ALLOWED:
            self.found.append(f"{self.module}:{node.lineno} {function}: {what}")

    def visit_Call(self, node):
        self.generic_visit(node)
        name = _dotted(node.func)
        first = node.args[0] if node.args else None
        if name in ("open", "io.open", "os.open"):
            mode = node.args[1] if len(node.args) > 1 else next((k.value for k in node.keywords if k.arg == "mode"),
                                                                None)
            writes = name == "os.open" or not (mode is None or isinstance(mode, ast.Constant)
                                               and not set(str(mode.value)) & set("wax+"))
            if writes and _dotted(first) != "os.devnull":   # the null device: output thrown away
                self._flag(node, f"{name}(...) to write")
        elif name.startswith("os.") and name[3:] in OS_CALLS or name.startswith("shutil.") and \
                name[7:] in SHUTIL_CALLS or name.startswith("tempfile.") and name[9:] in TEMPFILE_CALLS:
            self._flag(node, name)
        elif name == "torch.onnx.export" or name == "torch.jit.save":
            self._flag(node, name)
        elif isinstance(node.func, ast.Attribute):
            self._method(node, name)

    def _method(self, node, name: str):
        attr, receiver = node.func.attr, _dotted(node.func.value)
        if attr in PATH_METHODS:
            self._flag(node, f".{attr}()")
        elif attr in ("rename", "replace") and len(node.args) == 1 and not node.keywords:   # str.replace takes two
            self._flag(node, f".{attr}()")
        elif (receiver, attr) in SAVERS or (attr in ANY_SAVERS and receiver.split(".")[0] not in self.own):
            index = SAVERS.get((receiver, attr), ANY_SAVERS.get(attr))
            dest = node.args[index] if len(node.args) > index else None
            if not self._file_object(dest):
                self._flag(node, f"{name}() into a path")


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        module = path.relative_to(PACKAGE).as_posix()
        if module != "files.py":
            yield module, ast.parse(path.read_text(encoding="utf-8"), module)


def test_only_files_py_writes_makes_folders_or_deletes():
    """Outside files.py no module calls a writing, folder-making or deleting primitive: open() with a mode holding
    w, a, x or +, os.open (both allowed for os.devnull), Path.write_text/write_bytes/touch/mkdir/unlink/rmdir/
    rename/replace, os.replace/rename/unlink/remove/mkdir/makedirs/rmdir, shutil's copiers, movers and rmtree,
    tempfile's makers, torch.onnx.export, and serialisers (np.save*, torch.save, savefig, print_png, any .save)
    into a path. A serialiser writing into a file object is allowed: its destination is a parameter named `f` of
    the enclosing function or lambda (by nettrain's convention the file object files.write_file hands to
    `write(f)`) or a name that function bound to io.BytesIO(). ALLOWED lists the exceptions, each with its
    reason. SummaryWriter is checked by the next test."""
    found = []
    for module, tree in _modules():
        finder = WriterFinder(module, tree)
        finder.visit(tree)
        found += finder.found
    assert not found, "write through files.py (write_file, make_dir, remove...) instead:\n" + "\n".join(found)


def test_the_one_summary_writer_makes_its_folder_first():
    """SummaryWriter writes its event files by path into its folder: it is made in exactly one place, which makes
    that folder with files.make_dir(root=run) first (a planted `tensorboard -> elsewhere` is refused)."""
    places = []
    for module, tree in _modules():
        for function in ast.walk(tree):
            if not isinstance(function, ast.FunctionDef):
                continue
            calls = [n for n in ast.walk(function) if isinstance(n, ast.Call)]
            writers = [c for c in calls if _dotted(c.func).endswith("SummaryWriter")]
            if writers:
                made = [c.lineno for c in calls if _dotted(c.func) == "make_dir"
                        and any(k.arg == "root" for k in c.keywords)]
                places.append((module, function.name, bool(made) and min(made) < min(c.lineno for c in writers)))
    assert places == [("runs.py", "tensorboard_writer", True)]


def test_the_finder_finds_what_it_looks_for():
    """The rule above, on code that breaks it and code that keeps it."""
    breaks = """
import os, shutil, numpy as np, torch
from pathlib import Path
def f(run, x):
    open(run / "a", "w"); open(run / "b", mode="ab"); os.open(run, os.O_WRONLY); Path(run).mkdir()
    (run / "c").write_text("x"); (run / "d").unlink(); os.replace(run, x); shutil.rmtree(run)
    np.savez(run / "e.npz", a=x); torch.save(x, run / "f.pt"); x.savefig(run / "g.png"); (run / "h").replace(x)
def h(path, x):
    np.save(path, x)   # a path handed in is not a file object
"""
    keeps = """
import io, os, numpy as np, torch
from .engine import checkpoint as ckpt_io
def f(run, x):
    open(run / "a"); open(run / "b", "rb"); os.open(os.devnull, os.O_WRONLY); "a.b".replace(".", "/")
    write_file(run / "c", lambda f: np.savez(f, a=x)); buffer = io.BytesIO(); x.savefig(buffer)
    ckpt_io.save(run / "last.pt", x)
def g(obj, f):
    torch.save(obj, f)
"""
    for source, count in ((breaks, 13), (keeps, 0)):
        tree = ast.parse(source)
        finder = WriterFinder("example.py", tree)
        finder.visit(tree)
        assert len(finder.found) == count, finder.found
