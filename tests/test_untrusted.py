"""Files are data: a checkpoint, a run directory or a .pt file never makes nettrain run code it names (trust.py,
usercode.py, engine/checkfields.py)."""
import copy
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

import nettrain
from nettrain.cli import main
from nettrain.errors import CheckpointError, ModelError, NettrainError
from conftest import QUIET, QUIET_API

SRC = str(Path(nettrain.__file__).resolve().parents[1])

EVIL = """import pathlib
pathlib.Path("PWNED_IMPORT").touch()   # runs when the file is imported


def X(*args, **kwargs):
    pathlib.Path("PWNED").touch()       # runs when it is called
"""


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    """A real small image run with registered names only (the trust store is not touched)."""
    return nettrain.fit(dataset="digits", model="mlp", epochs=1, batch_size=512, precision="32",
                        run_dir=tmp_path_factory.mktemp("base") / "run", **{"model.args.hidden": [8]}, **QUIET_API)


def merge(d: dict, change: dict) -> dict:
    d = copy.deepcopy(d)
    for section, values in change.items():
        d[section].update(values)
    return d


def evil_run(base: Path, where: Path, change: dict, record: bool = False) -> Path:
    """A copy of `base` whose checkpoints and config.yaml carry `change`, with evil.py beside them (`record`: and
    the checkpoints pass it off as the user's own code)."""
    run = where / "run"
    shutil.copytree(base, run)
    (run / "evil.py").write_text(EVIL)
    code = evil_code(run) if record else None
    for name in ("best.pt", "last.pt"):
        state = torch.load(run / name, weights_only=True)
        state["config"] = merge(state["config"], change)
        if code is not None:
            state["code"] = code
        torch.save(state, run / name)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    (run / "config.yaml").write_text(yaml.safe_dump(merge(cfg, change)))
    return run


def evil_code(run: Path) -> dict:
    """What an attacker would record to pass evil.py off as the user's own: its real path and hash."""
    sha = hashlib.sha256((run / "evil.py").read_bytes()).hexdigest()
    return {"model": {"spec": "evil.py:X", "file": str(run / "evil.py"), "name": "X", "sha256": sha},
            "loss": {"spec": "evil.py:X", "file": str(run / "evil.py"), "name": "X", "sha256": sha}}


PAYLOADS = {
    "model subprocess:run": {"model": {"name": "subprocess:run", "args": {"args": "touch PWNED", "shell": True}}},
    "model evil.py:X": {"model": {"name": "evil.py:X", "args": {}}},
    "loss this:x": {"train": {"loss": "this:x"}},
    "loss evil.py:X": {"train": {"loss": "evil.py:X"}},
    "optimizer subprocess:run": {"optim": {"name": "subprocess:run", "args": {"args": "touch PWNED", "shell": True}}},
    "scheduler os:system": {"sched": {"name": "os:system", "args": {"command": "touch PWNED"}}},
}
# which payloads each entry point uses (the others it ignores, and it must still run none of them)
USES = {"predict": ("model",), "evaluate": ("model", "loss"), "resume": ("model", "loss", "optimizer", "scheduler"),
        "config": ("model", "loss", "optimizer", "scheduler")}


def image(path: Path) -> str:
    Image.fromarray(np.full((8, 8), 128, np.uint8)).save(path)
    return str(path)


@pytest.fixture(scope="module")
def cli_results(base_run, tmp_path_factory):
    """Every payload through every CLI entry point, in one fresh process (it must not have imported `this`)."""
    cases = []
    for payload, change in PAYLOADS.items():
        for entry in USES:
            where = tmp_path_factory.mktemp("evil")
            run = evil_run(base_run.dir, where, change, record="evil" in payload)
            argv = {"predict": ["predict", str(run), image(where / "x.png")],
                    "evaluate": ["evaluate", str(run)],
                    "resume": ["fit", "--resume", str(run), "--epochs", "2"],
                    "config": ["fit", "--config", str(run / "config.yaml"), "--run-dir", str(where / "again"),
                               *QUIET]}[entry]
            cases.append({"payload": payload, "entry": entry, "argv": argv, "cwd": str(run)})
    script = """
import contextlib, io, json, os, sys
from nettrain.cli import main
cases = json.loads(sys.stdin.read())
for case in cases:
    os.chdir(case["cwd"])
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        case["rc"] = main(case["argv"])
    case["err"], case["this"] = err.getvalue(), "this" in sys.modules
print(json.dumps(cases))
"""
    env = dict(os.environ, PYTHONPATH=SRC, NETTRAIN_HOME=str(tmp_path_factory.mktemp("home")))
    proc = subprocess.run([sys.executable, "-c", script], input=json.dumps(cases), capture_output=True, text=True,
                          env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return {(c["payload"], c["entry"]): c for c in json.loads(proc.stdout.splitlines()[-1])}


@pytest.mark.parametrize("entry", USES)
@pytest.mark.parametrize("payload", PAYLOADS)
def test_a_payload_in_a_run_folder_leaves_no_trace(cli_results, payload, entry):
    case = cli_results[(payload, entry)]
    run = Path(case["cwd"])
    assert not case["this"]
    # a run folder's config.yaml is that run's data, as its checkpoint is: its evil.py is not imported either
    assert not (run / "PWNED_IMPORT").exists() and not (run / "PWNED").exists()
    kind = payload.split()[0]
    if kind in USES[entry]:
        assert case["rc"] == 2, case
        assert case["err"].startswith("nettrain: error: ") and case["err"].count("\n") == 1, case["err"]
        assert "Traceback" not in case["err"]
    else:
        assert case["rc"] in (0, 2) and "Traceback" not in case["err"]


@pytest.mark.parametrize("payload", ["model subprocess:run", "model evil.py:X", "loss this:x", "loss evil.py:X"])
def test_nettrain_load_runs_nothing_a_checkpoint_names(base_run, tmp_path, monkeypatch, payload):
    run = evil_run(base_run.dir, tmp_path, PAYLOADS[payload], record="evil" in payload)
    monkeypatch.chdir(run)
    with pytest.raises(NettrainError) as e:
        nettrain.load(run).evaluate()   # the model is built by load, the loss by evaluate
    assert "\n" not in str(e.value)
    assert "standard library" in str(e.value) if "evil" not in payload else "trust_code=True" in str(e.value)
    assert not (run / "PWNED").exists() and not (run / "PWNED_IMPORT").exists()
    assert "this" not in sys.modules


def test_standard_library_specs_are_refused_without_an_import():
    from nettrain.usercode import resolve
    for spec, kind in [("this:x", "loss"), ("subprocess:run", "model"), ("os:system", "scheduler"),
                       ("os.path.join", "optimizer")]:
        with pytest.raises(ModelError, match="standard library module"):
            resolve(spec, kind)
    assert "this" not in sys.modules


def test_what_a_spec_names_is_type_checked_before_it_is_called(tmp_path):
    from nettrain.usercode import resolve
    (tmp_path / "tools.py").write_text(EVIL)
    monkey = tmp_path / "tools.py"
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        for kind in ("model", "optimizer", "scheduler"):
            with pytest.raises(ModelError, match=rf"is a function, not .*; nettrain calls nothing else as a {kind}"):
                resolve(f"{monkey}:X", kind)
        with pytest.raises(ModelError, match="is the class Linear, not a torch.optim.Optimizer subclass"):
            resolve("torch.nn:Linear", "optimizer")
        with pytest.raises(ModelError, match="is a builtin_function_or_method, not an nn.Module"):
            resolve("torch:relu", "loss")   # a callable, but not a plain Python function
        assert not (tmp_path / "PWNED").exists()
    finally:
        os.chdir(cwd)


# ---- the user's own code --------------------------------------------------------------------------------------

NET = """from torch import nn


class Net(nn.Module):
    def __init__(self, hidden=6):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))

    def forward(self, x):
        return self.body(x)
"""


def test_own_model_loads_without_flags_and_a_changed_or_unknown_one_is_refused(tmp_path, monkeypatch, capsys,
                                                                              nettrain_home):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "nets.py").write_text(NET)
    run = nettrain.fit(dataset="digits", model="nets.py:Net", epochs=1, batch_size=512, precision="32",
                       run_dir=tmp_path / "run", **QUIET_API)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")   # the relative spec is found from another directory
    img = image(tmp_path / "x.png")
    x = np.full((2, 8, 8), 128, np.uint8)
    expected = run.model.predict(x).probs
    assert torch.allclose(nettrain.load(run.dir).predict(x).probs, expected)
    assert main(["predict", str(run.dir), img]) == 0
    capsys.readouterr()

    (tmp_path / "nets.py").write_text(NET + "# edited\n")   # changed since: refused
    with pytest.raises(CheckpointError, match=r"nets.py:Net' from .*nets.py, which has changed since the run was "
                                              r"trained.*model=YourModel\(...\)\), or use trust_code=True"):
        nettrain.load(run.dir)
    assert main(["predict", str(run.dir), img]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--model path/file.py:Class, or use --trust-code" in err
    (tmp_path / "nets.py").write_text(NET)
    (nettrain_home / "trusted-code.json").unlink()   # a run folder from elsewhere: not known on this machine
    with pytest.raises(CheckpointError, match="which no nettrain fit on this machine has run"):
        nettrain.load(run.dir)

    # ... and loads when the user gives the model or trusts the checkpoint
    sys.path.insert(0, str(tmp_path))
    try:
        from nets import Net
    finally:
        sys.path.remove(str(tmp_path))
    assert torch.allclose(nettrain.load(run.dir, model=Net()).predict(x).probs, expected)
    assert main(["predict", str(run.dir), img, "--model", str(tmp_path / "nets.py") + ":Net"]) == 0
    capsys.readouterr()
    assert main(["predict", str(run.dir), img, "--trust-code"]) == 0
    assert f"importing model 'nets.py:Net' from {tmp_path / 'nets.py'}" in capsys.readouterr().err
    assert torch.allclose(nettrain.load(run.dir, trust_code=True).predict(x).probs, expected)


def test_a_record_vouches_only_for_the_name_it_was_made_for(tmp_path, monkeypatch):
    """Another class of a trusted file is not trusted by the record of the one the user trained."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "nets.py").write_text(NET + "\n\nclass Other(Net):\n    pass\n")
    run = nettrain.fit(dataset="digits", model="nets.py:Net", epochs=1, batch_size=512, precision="32",
                       run_dir=tmp_path / "run", **QUIET_API)
    state = torch.load(run.dir / "best.pt", weights_only=True)
    state["config"]["model"]["name"] = "nets.py:Other"
    state["code"]["model"]["spec"] = "nets.py:Other"   # the record keeps name Net, which the store knows
    torch.save(state, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="'nets.py:Other' from .*nets.py, which no nettrain fit on this"):
        nettrain.load(tmp_path / "other.pt")
    assert nettrain.load(run.dir) is not None


def test_resume_of_a_run_with_an_unknown_model_takes_the_model_from_the_command_line(tmp_path, monkeypatch, capsys,
                                                                                     nettrain_home):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "nets.py").write_text(NET)
    assert main(["fit", "--dataset", "digits", "--model", "nets.py:Net", "--epochs", "1", "--batch-size", "512",
                 "--precision", "32", "--run-dir", "run", *QUIET]) == 0
    (nettrain_home / "trusted-code.json").unlink()
    assert main(["fit", "--resume", "run", "--epochs", "2"]) == 2
    assert "--model path/file.py:Class" in capsys.readouterr().err
    assert main(["fit", "--resume", "run", "--epochs", "2", "--model", "nets.py:Net"]) == 0
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=True)["epoch"] == 2


# ---- crafted checkpoint fields -----------------------------------------------------------------------------------

def _set(path):
    def change(state):
        *keys, last = path
        target = state
        for k in keys:
            target = target[k]
        return keys, last, target
    return change


FIELDS = {
    "format_version a string": (lambda s: s.update(format_version="1"), "format_version must be a positive integer"),
    "format_version None": (lambda s: s.update(format_version=None), "format_version must be a positive integer"),
    "model a list": (lambda s: s.update(model=[1, 2]), "model must be a state_dict"),
    "model not of tensors": (lambda s: s["model"].update(extra=3), "model must be a state_dict"),
    "config a list": (lambda s: s.update(config=[1]), "config must be a mapping, got list"),
    "data a list": (lambda s: s.update(data=[1]), "data must be a mapping"),
    "data with an extra key": (lambda s: s["data"].update(evil=1), "data must have exactly the keys"),
    "short classes": (lambda s: s["data"].update(classes=["a", "b"]), "data.classes names 2 classes but the model"),
    "classes not strings": (lambda s: s["data"].update(classes=list(range(10))), "data.classes must be a list of"),
    "empty mean": (lambda s: s["data"].update(mean=[]), "data.mean must have one value per channel (1), got 0"),
    "huge shape": (lambda s: s["data"].update(shape=[1, 100000, 100000]), "more than the limit of 33,554,432"),
    "negative shape": (lambda s: s["data"].update(shape=[1, -8, 8]), "data.shape must be a list of 1 to 3"),
    "negative epoch": (lambda s: s.update(epoch=-1), "epoch must be a non-negative integer"),
    "code not a mapping": (lambda s: s.update(code=["x"]), "code must map kinds"),
    "a model far larger than its weights": (lambda s: s["config"]["model"]["args"].update(hidden=[10 ** 7]),
                                            "it has 750,000,010 weights, the file 610"),
    "history not a list": (lambda s: s.update(history="x"), "history must be a list, got str"),
    "rng without a torch state": (lambda s: s.update(rng={"torch": [1]}), "rng.torch must be a uint8 tensor"),
    "a process's rng without a torch state": (lambda s: s.update(rng_ranks=[s["rng"], {"torch": "x"}]),
                                              "rng_ranks[1].torch must be a uint8 tensor"),
}


@pytest.mark.parametrize("case", FIELDS)
def test_a_crafted_checkpoint_field_is_one_line(base_run, tmp_path, capsys, case):
    edit, expected = FIELDS[case]
    state = torch.load(base_run.dir / "best.pt", weights_only=True)
    edit(state)
    torch.save(state, tmp_path / "crafted.pt")
    assert main(["predict", str(tmp_path / "crafted.pt"), image(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nettrain: error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert expected in err


class Payload:
    pass


def test_a_pickled_object_is_refused_without_torchs_advice(tmp_path, capsys):
    torch.save({"model": Payload()}, tmp_path / "object.pt")
    assert main(["predict", str(tmp_path / "object.pt"), image(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "weights_only" not in err
    assert "holds Python objects (such as test_untrusted.Payload)" in err
    (tmp_path / "garbage.pt").write_bytes(b"\x80\x02garbage" * 10)
    with pytest.raises(CheckpointError, match="not a readable nettrain checkpoint") as e:
        nettrain.load(tmp_path / "garbage.pt")
    assert "weights_only" not in str(e.value) and "\n" not in str(e.value)


# ---- the user's loss, optimizer and scheduler ------------------------------------------------------------------

def test_a_user_loss_that_raises_is_one_line_naming_its_line(tmp_path, capsys):
    (tmp_path / "losses.py").write_text("import torch.nn.functional as F\n\n\ndef loss(out, y):\n"
                                        "    return F.cross_entropy(out, y[:1])\n")
    rc = main(["fit", "--dataset", "two-gaussians", "--model", "mlp", "--epochs", "1", "--loss",
               f"{tmp_path / 'losses.py'}:loss", "--run-dir", str(tmp_path / "run"), *QUIET])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert "raised ValueError: Expected input batch_size" in err and "at losses.py:5; fix the function" in err


def test_an_optimizer_and_a_scheduler_class_of_ones_own_by_import_path(tmp_path):
    (tmp_path / "sched.py").write_text("import torch\n\n\nclass Halve(torch.optim.lr_scheduler.StepLR):\n"
                                       "    def __init__(self, optimizer, every=1):\n"
                                       "        super().__init__(optimizer, every, 0.5)\n")
    run = nettrain.fit(dataset="two-gaussians", model="mlp", epochs=2, batch_size=400, optimizer="torch.optim.ASGD",
                       scheduler=f"{tmp_path / 'sched.py'}:Halve", run_dir=tmp_path / "run",
                       **{"optim.args": {"t0": 1000}, "sched.args": {"every": 1}}, **QUIET_API)
    assert [round(m["lr"] / 1e-3, 4) for m in run.metrics] == [0.5, 0.25]
    with pytest.raises(NettrainError, match=r"optimizer 'torch.optim.ASGD' takes no t1 \(did you mean 't0'\?\)"):
        nettrain.fit(dataset="two-gaussians", model="mlp", optimizer="torch.optim.ASGD", run_dir=tmp_path / "r2",
                     **{"optim.args": {"t1": 1000}}, **QUIET_API)
    with pytest.raises(NettrainError, match=r"scheduler '.*:Halve' takes no evry"):
        nettrain.fit(dataset="two-gaussians", model="mlp", scheduler=f"{tmp_path / 'sched.py'}:Halve",
                     run_dir=tmp_path / "r3", **{"sched.args": {"evry": 1}}, **QUIET_API)
    with pytest.raises(NettrainError, match="standard library module 'subprocess'"):
        nettrain.fit(dataset="two-gaussians", model="mlp", optimizer="subprocess.Popen", run_dir=tmp_path / "r4",
                     **QUIET_API)


def halved_cross_entropy(outputs, targets):
    return torch.nn.functional.cross_entropy(outputs, targets) / 2


def test_fit_takes_a_loss_object_and_records_its_name(tmp_path):
    run = nettrain.fit(dataset="two-gaussians", model="mlp", epochs=1, loss=halved_cross_entropy,
                       run_dir=tmp_path / "fn", **QUIET_API)
    assert run.model.config.train.loss == "test_untrusted:halved_cross_entropy"
    full = nettrain.fit(dataset="two-gaussians", model="mlp", epochs=1, loss=torch.nn.CrossEntropyLoss(),
                        run_dir=tmp_path / "module", **QUIET_API)
    assert full.model.config.train.loss == "torch.nn.modules.loss:CrossEntropyLoss"
    assert run.test["loss"] == pytest.approx(full.test["loss"] / 2, rel=1e-3)   # Adam: the same steps, but eps
    # the runs load back without flags: fit recorded the code as the user's own
    assert nettrain.load(run.dir).evaluate()["loss"] == pytest.approx(run.test["loss"], rel=1e-5)
    assert nettrain.load(full.dir).evaluate()["loss"] == pytest.approx(full.test["loss"], rel=1e-5)
    with pytest.raises(NettrainError, match="loss= takes an nn.Module subclass or instance, or a Python function"):
        nettrain.fit(dataset="two-gaussians", model="mlp", loss=print, run_dir=tmp_path / "bad", **QUIET_API)
