"""Every data path at world size 2 against world size 1 (issue 29): one torchrun launch (gloo on the CPU) trains
the fits of ddp_paths.py in 2 processes; each test trains the same fit in this process and compares. The
per-epoch train losses agree within float-reduction noise: 1e-5 relative (the ranks' gradients are summed in
another order than one process's; seen: below 1e-6). Each test split holds an odd number of examples (11 images,
11 sequences, 13 texts, 21 table rows, 40 points split 19/21... see ddp_paths.py), so the ranks evaluate uneven
parts: the 2-process test accuracy equals exactly a 1-process evaluation of the same weights."""
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import nettrain

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))
import ddp_paths  # noqa: E402

SRC = TESTS.parent / "src"
RTOL = 1e-5   # float-reduction noise between 2 ranks' summed gradients and one process's
pytestmark = pytest.mark.slow   # every test compares with one torchrun job of 2 processes


@pytest.fixture(scope="module")
def launched(tmp_path_factory):
    """(2-process run directories, the input files): one launch for all the paths (about 15 s)."""
    work, out = tmp_path_factory.mktemp("inputs"), tmp_path_factory.mktemp("two")
    ddp_paths.write_inputs(work)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                           str(TESTS / "ddp_paths.py"), str(out), str(work)], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return out, work


@pytest.mark.parametrize("path", ddp_paths.PATHS)
def test_two_processes_train_and_evaluate_as_one(path, launched, tmp_path):
    out, work = launched
    two = out / path
    rows = list(csv.DictReader(open(two / "metrics.csv")))
    one = nettrain.fit(**ddp_paths.options(path, work), run_dir=str(tmp_path / "one"))
    assert len(rows) == len(one.metrics) == 2
    for r, m in zip(rows, one.metrics):
        assert float(r["train_loss"]) == pytest.approx(m["train_loss"], rel=RTOL)

    tested = json.loads((two / "test_metrics.json").read_text())
    if path == "collate":   # the user's model and collate function, given again
        alone = nettrain.load(two / "best.pt", model=ddp_paths.MeanEmbedding(), collate_fn=ddp_paths.pad) \
            .evaluate(data=ddp_paths.Sequences(11, 1))
    else:   # world size 1, the 2-process run's best.pt (what the test ran), its test split read again
        alone = nettrain.load(two / "best.pt").evaluate()
    assert alone["examples"] == tested["examples"] == one.test["examples"]
    assert tested["examples"] % 2 == 1   # the ranks' parts are uneven
    assert alone["acc"] == tested["accuracy"]   # exactly: every example counted once
    assert alone["loss"] == pytest.approx(tested["loss"], rel=RTOL)


def test_accumulation_all_reduces_once_per_optimizer_step(launched):
    """no_sync: of each group of 2 micro-batches only the last all-reduces (the tiny MLP's gradients fill one
    bucket): the table's 6 batches an epoch make 3 optimizer steps, 6 all-reduces in 2 epochs, where the same fit
    without accumulation all-reduces every batch, 12 times."""
    out, _ = launched
    assert json.loads((out / "table.all_reduces.json").read_text()) == 12
    assert json.loads((out / "accumulate.all_reduces.json").read_text()) == 6


def test_sync_batchnorm_is_refused_on_cpu_processes_in_one_line(launched):
    out, _ = launched
    said = (out / "syncbn.error.txt").read_text()
    assert said.startswith("train.sync_batchnorm needs GPUs") and "\n" not in said
    assert not (out / "syncbn").exists()   # refused before a run directory was made
