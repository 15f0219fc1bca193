"""What a checkpoint names is imported from exactly the files a fit on this machine ran (trust.py, usercode.py):
every package __init__.py on the way included, by real path and hash, and nothing the current folder supplies. A
config.yaml taken from a run folder is that run's data, not the user's program. Each attack runs the real command
in a fresh process (`python -m nettrain`, a console script, `python -c`), with its own NETTRAIN_HOME."""
import json
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

import nettrain
from nettrain.cli import main
from conftest import QUIET

SRC = str(Path(nettrain.__file__).resolve().parents[1])
SMALL = ["--dataset", "digits", "--epochs", "1", "--batch-size", "512", "--precision", "32"]

NET = """import helpers   # the user's own module beside the package, found on PYTHONPATH as when it trained
from torch import nn


class Net(nn.Module):
    def __init__(self, hidden=6):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))

    def forward(self, x):
        return self.body(x)
"""
# touches the file the test names in NETTRAIN_TEST_MARKER whenever it is imported
PAYLOAD = "import os, pathlib\npathlib.Path(os.environ['NETTRAIN_TEST_MARKER']).touch()\n"
# what `pip install` puts in bin/nettrain: sys.path[0] is that folder, not the current one
CONSOLE_SCRIPT = "import sys\nfrom nettrain.cli import main\nsys.exit(main())\n"
API_LOAD = """import sys
import nettrain
try:
    nettrain.load('.')
except nettrain.errors.NettrainError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
"""


def image(path: Path) -> Path:
    Image.fromarray(np.full((8, 8), 128, np.uint8)).save(path)
    return path


def run_cmd(argv, cwd, home, pythonpath, marker):
    env = dict(os.environ, NETTRAIN_HOME=str(home), PYTHONPATH=os.pathsep.join(map(str, pythonpath)),
               NETTRAIN_TEST_MARKER=str(marker))
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """`PYTHONPATH=proj nettrain fit --dataset digits --model mypkg.nets:Net`: proj/mypkg/__init__.py and nets.py
    (which imports proj/helpers.py) are the user's own, now in the trust store of `home`."""
    root = tmp_path_factory.mktemp("user")
    (root / "proj" / "mypkg").mkdir(parents=True)
    (root / "proj" / "mypkg" / "__init__.py").write_text('"""The user\'s models."""\n')
    (root / "proj" / "mypkg" / "nets.py").write_text(NET)
    (root / "proj" / "helpers.py").write_text("SCALE = 1\n")
    (root / "bin").mkdir()
    (root / "bin" / "nettrain").write_text(CONSOLE_SCRIPT)
    home = root / "home"
    proc = run_cmd([sys.executable, str(root / "bin" / "nettrain"), "fit", *SMALL, "--model", "mypkg.nets:Net",
                    "--run-dir", "run", *QUIET], root, home, [root / "proj", SRC], root / "unused")
    assert proc.returncode == 0, proc.stderr[-2000:]
    image(root / "x.png")
    return root


def downloaded(trained: Path, where: Path) -> Path:
    """dl/: a copy of the run (its checkpoints name mypkg.nets:Net), with mypkg/__init__.py carrying the payload
    and mypkg/nets.py a symbolic link to the trusted file."""
    dl = where / "dl"
    shutil.copytree(trained / "run", dl)
    (dl / "predictions.npz").unlink(missing_ok=True)   # so that report loads the model
    (dl / "mypkg").mkdir()
    (dl / "mypkg" / "__init__.py").write_text(PAYLOAD)
    (dl / "mypkg" / "nets.py").symlink_to(trained / "proj" / "mypkg" / "nets.py")
    image(dl / "x.png")
    return dl


ATTACKS = {   # name: (argv after the interpreter, PYTHONPATH before nettrain's own src)
    "python -m nettrain predict": (["-m", "nettrain", "predict", ".", "x.png"], []),
    "PYTHONPATH=. nettrain predict": (["BIN", "predict", ".", "x.png"], ["."]),
    "PYTHONPATH=. nettrain summary": (["BIN", "summary", "."], ["."]),
    "PYTHONPATH=. nettrain export": (["BIN", "export", "."], ["."]),
    "PYTHONPATH=. nettrain evaluate": (["BIN", "evaluate", "."], ["."]),
    "PYTHONPATH=. nettrain fit --resume": (["BIN", "fit", "--resume", ".", "--epochs", "2"], ["."]),
    "python -c nettrain.load('.')": (["-c", API_LOAD], []),
}


@pytest.mark.slow
@pytest.mark.parametrize("attack", ATTACKS)
def test_a_package_planted_beside_a_run_runs_nothing(trained, tmp_path, attack):
    """The trusted nets.py is reached through dl/mypkg, whose __init__.py is not the one the fit ran: nothing is
    imported, and the one line names the file and the fix."""
    dl = downloaded(trained, tmp_path)
    args, path = ATTACKS[attack]
    argv = [sys.executable, *[str(trained / "bin" / "nettrain") if a == "BIN" else a for a in args]]
    proc = run_cmd(argv, dl, trained / "home", [*path, SRC], tmp_path / "PWNED")
    assert not (tmp_path / "PWNED").exists()
    assert proc.returncode == 2, proc.stderr[-2000:]
    err = proc.stderr
    assert err.count("\n") == 1 and "Traceback" not in err, err
    planted, trusted = (dl / "mypkg" / "__init__.py").resolve(), (trained / "proj" / "mypkg" / "__init__.py").resolve()
    assert f"would run {planted} instead of {trusted}, as a fit on this machine did" in err
    assert ("--model" in err and "--trust-code" in err) or "trust_code=True" in err


@pytest.mark.slow
def test_report_of_a_planted_run_leaves_the_model_figures_out_and_runs_nothing(trained, tmp_path):
    dl = downloaded(trained, tmp_path)
    proc = run_cmd([sys.executable, str(trained / "bin" / "nettrain"), "report", "."], dl, trained / "home",
                   [".", SRC], tmp_path / "PWNED")
    assert not (tmp_path / "PWNED").exists()
    assert proc.returncode == 0 and (dl / "report.html").exists(), proc.stderr[-2000:]
    assert "figures of the model's predictions are left out" in proc.stderr and "would run" in proc.stderr
    assert not (dl / "predictions.npz").exists()


@pytest.mark.slow
def test_the_users_own_package_loads_without_ceremony(trained, tmp_path):
    """From proj's parent with PYTHONPATH=proj (as it trained), and from proj itself with python -m (found in the
    current folder, which then also supplies helpers.py)."""
    bin_ = str(trained / "bin" / "nettrain")
    for argv, cwd, path in [([bin_, "predict", "run", "x.png"], trained, [trained / "proj", SRC]),
                            (["-m", "nettrain", "predict", "run", "x.png"], trained, [trained / "proj", SRC]),
                            (["-m", "nettrain", "predict", "../run", "../x.png"], trained / "proj", [SRC])]:
        proc = run_cmd([sys.executable, *argv], cwd, trained / "home", path, tmp_path / "unused")
        assert proc.returncode == 0 and proc.stderr == "", proc.stderr[-2000:]
        assert proc.stdout.startswith(f"{argv[-1]}: ")


@pytest.mark.slow
def test_the_current_folder_supplies_no_module_to_trusted_code(trained, tmp_path):
    """`cd dl && PYTHONPATH=proj python -m nettrain predict .`: mypkg is the trusted one (from proj), but its
    `import helpers` would find dl/helpers.py first; the current folder is not searched for it, proj is."""
    dl = tmp_path / "dl"
    shutil.copytree(trained / "run", dl)
    (dl / "helpers.py").write_text(PAYLOAD)
    proc = run_cmd([sys.executable, "-m", "nettrain", "predict", ".", str(trained / "x.png")], dl, trained / "home",
                   [trained / "proj", SRC], tmp_path / "PWNED")
    assert not (tmp_path / "PWNED").exists()
    assert proc.returncode == 0 and proc.stdout.startswith(f"{trained / 'x.png'}: "), proc.stderr[-2000:]


@pytest.mark.slow
def test_a_file_spec_runs_only_its_verified_file(tmp_path):
    """Trained as `python -m nettrain fit --model nets.py:Net` in proj (whose helpers.py it imports); a copy of
    the run with nets.py a link to the trusted file and a helpers.py beside it runs the trusted file alone."""
    proj, home = tmp_path / "proj", tmp_path / "home"
    proj.mkdir()
    (proj / "nets.py").write_text(NET)
    (proj / "helpers.py").write_text("SCALE = 1\n")
    proc = run_cmd([sys.executable, "-m", "nettrain", "fit", *SMALL, "--model", "nets.py:Net", "--run-dir", "run",
                    *QUIET], proj, home, [SRC], tmp_path / "unused")
    assert proc.returncode == 0, proc.stderr[-2000:]
    dl = tmp_path / "dl"
    shutil.copytree(proj / "run", dl)
    (dl / "nets.py").symlink_to(proj / "nets.py")
    (dl / "helpers.py").write_text(PAYLOAD)
    img = image(tmp_path / "x.png")
    proc = run_cmd([sys.executable, "-m", "nettrain", "predict", ".", str(img)], dl, home, [SRC], tmp_path / "PWNED")
    assert not (tmp_path / "PWNED").exists()
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr[-2000:]
    assert "No module named 'helpers'" in proc.stderr   # proj, where helpers.py is, is not on this path
    proc = run_cmd([sys.executable, "-m", "nettrain", "predict", "run", str(img)], proj, home, [SRC], tmp_path / "x")
    assert proc.returncode == 0 and proc.stdout.startswith(f"{img}: "), proc.stderr[-2000:]


# ---- a run folder's config.yaml ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    return nettrain.fit(dataset="digits", model="mlp", epochs=1, batch_size=512, precision="32",
                        run_dir=tmp_path_factory.mktemp("base") / "run", **{"model.args.hidden": [8]},
                        **{"run.progress": "none", "run.tensorboard": False, "run.report": False})


def planted_run(base: Path, where: Path, model_file: str) -> Path:
    """A copy of `base` whose checkpoints and config.yaml name `net.py:Net` beside them, with `model_file` there."""
    run = where / "dl"
    shutil.copytree(base, run)
    (run / "net.py").write_text(model_file)
    for name in ("best.pt", "last.pt"):
        state = torch.load(run / name, weights_only=True)
        state["config"]["model"] = {**state["config"]["model"], "name": "net.py:Net", "args": {}}
        torch.save(state, run / name)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["model"] = {**cfg["model"], "name": "net.py:Net", "args": {}}
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    return run


def store(home: Path) -> list:
    path = home / "trusted-code.json"
    return json.loads(path.read_text())["entries"] if path.exists() else []


def test_a_run_folders_config_imports_nothing_unasked(base_run, tmp_path, monkeypatch, capsys, nettrain_home):
    """Run from inside the folder, where its relative `net.py:Net` is found (and was imported as the user's)."""
    run = planted_run(base_run.dir, tmp_path, PAYLOAD + NET.replace("import helpers", ""))
    monkeypatch.setenv("NETTRAIN_TEST_MARKER", str(tmp_path / "PWNED"))
    monkeypatch.chdir(run)
    assert main(["fit", "--config", "config.yaml", "--run-dir", str(tmp_path / "again"), *QUIET]) == 2
    err = capsys.readouterr().err
    assert not (tmp_path / "PWNED").exists() and store(nettrain_home) == []
    assert err.count("\n") == 1 and "'net.py:Net'" in err and "--model path/file.py:Class, or use --trust-code" in err
    with pytest.raises(nettrain.errors.CheckpointError, match=r"nettrain.fit\(config, model=YourModel"):
        nettrain.fit(run / "config.yaml", run_dir=tmp_path / "again", **{"run.progress": "none"})
    for argv in (["fit", "--config", "config.yaml", "--lr", "auto", "--run-dir", str(tmp_path / "auto"), *QUIET],
                 ["lr-find", "--config", "config.yaml", "--out", str(tmp_path / "lr.png")]):   # the lr finder's too
        assert main(argv) == 2
        assert "--model path/file.py:Class, or use --trust-code" in capsys.readouterr().err
    assert not (tmp_path / "PWNED").exists()


def test_a_trusted_run_folders_config_is_trusted_for_that_fit_only(base_run, tmp_path, monkeypatch, capsys,
                                                                   nettrain_home):
    run = planted_run(base_run.dir, tmp_path, NET.replace("import helpers", ""))
    monkeypatch.chdir(run)
    assert main(["fit", "--config", "config.yaml", "--run-dir", str(tmp_path / "again"), "--trust-code",
                 *QUIET]) == 0
    assert "nettrain: trusting" in capsys.readouterr().err
    assert store(nettrain_home) == []   # the run folder's net.py did not become the user's own code
    assert main(["fit", "--config", "config.yaml", "--run-dir", str(tmp_path / "given"), "--model",
                 str(run / "net.py") + ":Net", *QUIET]) == 0   # given anew: the user's own, as any --model
    assert [e["file"] for e in store(nettrain_home)] == [str((run / "net.py").resolve())]


def test_the_users_own_run_config_repeats_the_run_without_flags(tmp_path, monkeypatch, nettrain_home):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "nets.py").write_text(NET.replace("import helpers", ""))
    assert main(["fit", *SMALL, "--model", "nets.py:Net", "--run-dir", "run", *QUIET]) == 0
    assert main(["fit", "--config", "run/config.yaml", "--run-dir", "again", *QUIET]) == 0
    assert nettrain.load(tmp_path / "again").info.classes == nettrain.load(tmp_path / "run").info.classes


def test_the_resume_refusal_advises_only_what_is_safe(base_run, tmp_path, monkeypatch, capsys):
    """A refused change on a downloaded run: the advice says how its code is given, and following it runs none."""
    run = planted_run(base_run.dir, tmp_path, PAYLOAD + NET.replace("import helpers", ""))
    monkeypatch.setenv("NETTRAIN_TEST_MARKER", str(tmp_path / "PWNED"))
    monkeypatch.chdir(run)
    assert main(["fit", "--resume", str(run), "--lr", "0.5"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "its model 'net.py:Net' runs there only if a fit on this machine ran it: " \
        "otherwise give your own (--model SPEC), or add --trust-code if you trust where the run came from" in err
    advice = err.split("start a new run with the change: nettrain ")[1].split(";")[0].split()
    assert advice == ["fit", "--config", f"{run}/config.yaml", "--optim.lr", "0.5", "--run-dir", "NEW"]
    assert main([*advice[:-1], str(tmp_path / "new"), *QUIET]) == 2
    assert "--model path/file.py:Class, or use --trust-code" in capsys.readouterr().err
    assert not (tmp_path / "PWNED").exists()


# ---- in one process: modules imported before, namespace packages, the trust store's own files ---------------------

@pytest.fixture
def package(tmp_path, monkeypatch):
    """proj/inpkg/nets.py, importable; `regular`: with an __init__.py. Its modules leave sys.modules afterwards."""
    def make(name: str, regular: bool) -> Path:
        proj = tmp_path / "proj"
        (proj / name).mkdir(parents=True)
        if regular:
            (proj / name / "__init__.py").write_text("")
        (proj / name / "nets.py").write_text(NET.replace("import helpers", ""))
        monkeypatch.syspath_prepend(str(proj))
        made.append(name)
        return proj
    made = []
    yield make
    for name in made:
        for module in (name, f"{name}.nets"):
            sys.modules.pop(module, None)


def small_fit(model: str, run_dir: Path):
    return nettrain.fit(dataset="digits", model=model, epochs=1, batch_size=512, precision="32", run_dir=run_dir,
                        **{"run.progress": "none", "run.tensorboard": False, "run.report": False})


def test_modules_imported_before_count_as_the_files_they_came_from(package, tmp_path, monkeypatch):
    proj = package("inpkg", regular=True)
    run = small_fit("inpkg.nets:Net", tmp_path / "run")
    x = np.full((1, 8, 8), 128, np.uint8)
    expected = run.model.predict(x).probs
    assert torch.allclose(nettrain.load(run.dir).predict(x).probs, expected)   # imported already: taken as it is
    for module in ("inpkg", "inpkg.nets"):
        del sys.modules[module]
    assert torch.allclose(nettrain.load(run.dir).predict(x).probs, expected)   # loaded from the verified files
    assert sys.modules["inpkg.nets"].__file__ == str((proj / "inpkg" / "nets.py").resolve())
    assert sys.modules["inpkg"].nets is sys.modules["inpkg.nets"]
    other = types.ModuleType("inpkg")
    other.__file__, other.__path__ = str(tmp_path / "other" / "__init__.py"), [str(tmp_path / "other")]
    monkeypatch.setitem(sys.modules, "inpkg", other)   # imported from elsewhere: not the package the fit ran
    with pytest.raises(nettrain.errors.CheckpointError, match="inpkg.nets:Net' whose import here would run "):
        nettrain.load(run.dir)


def test_a_namespace_package_loads_and_a_planted_init_in_front_of_it_is_refused(package, tmp_path, monkeypatch):
    package("nspkg", regular=False)
    run = small_fit("nspkg.nets:Net", tmp_path / "run")
    chain = torch.load(run.dir / "best.pt", weights_only=True)["code"]["model"]["chain"]
    assert [(c["module"], c["file"]) for c in chain][0] == ("nspkg", None)
    for module in ("nspkg", "nspkg.nets"):
        del sys.modules[module]
    dl = tmp_path / "dl"
    (dl / "nspkg").mkdir(parents=True)
    (dl / "nspkg" / "__init__.py").write_text(PAYLOAD)
    (dl / "nspkg" / "nets.py").symlink_to(tmp_path / "proj" / "nspkg" / "nets.py")
    monkeypatch.setenv("NETTRAIN_TEST_MARKER", str(tmp_path / "PWNED"))
    monkeypatch.syspath_prepend(str(dl))
    with pytest.raises(nettrain.errors.CheckpointError, match="whose import here would run .*dl/nspkg/__init__.py "
                                                              "instead of a namespace package, as a fit on this"):
        nettrain.load(run.dir)
    assert not (tmp_path / "PWNED").exists() and "nspkg" not in sys.modules
    sys.path.remove(str(dl))
    assert nettrain.load(run.dir).predict(np.zeros((1, 8, 8), np.uint8)).labels is not None


def test_the_trust_store_is_never_written_through_a_link_nor_read_from_a_fifo(tmp_path, monkeypatch, capsys,
                                                                                nettrain_home):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "nets.py").write_text(NET.replace("import helpers", ""))
    victim = tmp_path / "victim.txt"
    victim.write_text("the user's file\n")
    (nettrain_home / "trusted-code.json.lock").symlink_to(victim)
    small_fit("nets.py:Net", tmp_path / "run")
    assert victim.read_text() == "the user's file\n"
    assert "cannot record the run's code" in capsys.readouterr().err
    (nettrain_home / "trusted-code.json.lock").unlink()
    (nettrain_home / "trusted-code.json").symlink_to(victim)   # read through (the user's own link), then replaced
    small_fit("nets.py:Net", tmp_path / "run2")
    assert victim.read_text() == "the user's file\n" and not (nettrain_home / "trusted-code.json").is_symlink()
    (nettrain_home / "trusted-code.json").unlink()
    os.mkfifo(nettrain_home / "trusted-code.json")
    with pytest.raises(nettrain.errors.CheckpointError, match="which no nettrain fit on this machine has run"):
        nettrain.load(tmp_path / "run")   # a FIFO for a store: unreadable, so nothing is trusted, and no hang
    assert "the trust store" in capsys.readouterr().err
