"""Start-up: the commands that need no tensor import no torch (1.7 s of a 2-core machine's start-up, where
`nettrain --help` takes 0.2 s), and predict imports only what a prediction uses. Each command runs in its own
process, which then says which of the heavy modules it holds."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import nettrain
from nettrain import catalog
from conftest import QUIET_API

SRC = str(Path(nettrain.__file__).resolve().parents[1])
# the modules each command is checked for, after it ran: torch itself, and what a prediction does not use
HEAVY = ("torch", "torchvision", "torch.utils.tensorboard", "tensorboard", "torch._dynamo", "matplotlib", "sklearn",
         "nettrain.training", "nettrain.report", "nettrain.engine.distributed")
PROBE = ("import json, sys\n"
         "from nettrain.cli import main\n"
         "try:\n"
         "    code = main(sys.argv[1:])\n"
         "except SystemExit as e:   # --help\n"
         "    code = e.code\n"
         f"print(json.dumps({{'code': code, 'loaded': [m for m in {HEAVY!r} if m in sys.modules]}}))\n")


def loaded_after(argv: list, cwd: Path, home: Path) -> list:
    """The heavy modules the command `nettrain ARGV` holds when it is done (it must succeed)."""
    env = {**os.environ, "PYTHONPATH": SRC, "NETTRAIN_HOME": str(home)}
    proc = subprocess.run([sys.executable, "-c", PROBE, *argv], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.splitlines()[-1])
    assert result["code"] == 0, proc.stderr[-2000:]
    return result["loaded"]


@pytest.mark.parametrize("argv", [["--help"], ["fit", "--help"], ["predict", "--help"], ["list"]])
def test_commands_without_runs_import_no_torch(tmp_path, nettrain_home, argv):
    assert "torch" not in loaded_after(argv, tmp_path, nettrain_home)


@pytest.mark.slow
def test_each_command_imports_only_what_it_uses(tmp_path, nettrain_home):
    """A fit without a report draws no figure (no matplotlib) and tiles TensorBoard's sample grid without
    torchvision; report and compare read the run's files without torch; predict loads no training code."""
    fit = ["fit", "--dataset", "digits", "--model", "mlp", "--model.args.hidden", "[8]", "--epochs", "1",
           "--batch-size", "512", "--run-dir", "a", "--run.progress", "none", "--run.report", "false"]
    loaded = loaded_after(fit, tmp_path, nettrain_home)
    assert "tensorboard" in loaded and not {"torchvision", "matplotlib"} & set(loaded)
    nettrain.api.report(tmp_path / "a", say=lambda line: None)   # makes a/predictions.npz from best.pt
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    from PIL import Image
    Image.new("L", (8, 8), 128).save(tmp_path / "one.png")
    assert "torch" not in loaded_after(["report", "a"], tmp_path, nettrain_home)
    assert "torch" not in loaded_after(["compare", "a", "b", "--out", "cmp"], tmp_path, nettrain_home)
    assert (tmp_path / "cmp" / "compare.html").is_file()
    assert loaded_after(["predict", "a", "one.png"], tmp_path, nettrain_home) == ["torch"]


def test_list_prints_what_the_registries_hold():
    """`nettrain list` reads catalog.py (no torch); the registries that build the same names are checked here."""
    from nettrain.data import DATASETS
    from nettrain.engine.metrics import METRICS
    from nettrain.engine.optim import LOSSES, OPTIMIZERS, SCHEDULERS
    from nettrain.models import MODELS
    registries = {"datasets": DATASETS, "models": MODELS, "optimizers": OPTIMIZERS, "losses": LOSSES,
                  "schedulers": SCHEDULERS, "metrics": METRICS}
    for title, lines in catalog.LISTED:
        assert dict(registries[title].describe()) == lines, f"catalog.py's {title} differ from the registry's"


def test_only_the_commands_that_train_watch_the_cpu_for_openmp(tmp_path, monkeypatch):
    """Choosing OpenMP's wait policy watches the CPU's load for 0.15 s (_omp.py): worth it before training, pure
    start-up cost for `nettrain list`, a report or a prediction."""
    from nettrain import _omp
    from nettrain.cli import main
    from conftest import QUIET
    chosen = []
    monkeypatch.setattr(_omp, "choose_wait_policy", lambda environ: chosen.append("chosen"))
    assert main(["list"]) == 0 and chosen == []
    assert main(["fit", "--dataset", "two-gaussians", "--model", "mlp", "--epochs", "1",
                 "--run-dir", str(tmp_path / "run"), *QUIET]) == 0
    assert chosen == ["chosen"]
