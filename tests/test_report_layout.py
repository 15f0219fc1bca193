"""The report as it reads: each kind of run's key numbers, the split each part names, the text model's summary, the
top losses, the environment, and the page at phone and desktop widths in Chromium."""
import re
import shutil
import subprocess

import numpy as np
import pytest
import torch

import nettrain
from nettrain.report.html import page
from nettrain.report.read import Record, predictions_problem

QUIET_WITH_REPORT = {"run.progress": "none", "run.tensorboard": False}   # the HTML report is written


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """A tiny digits run with a validation split, its report the fit's own."""
    run_dir = tmp_path_factory.mktemp("layout") / "digits"
    nettrain.fit(dataset="digits", model="mlp", epochs=2, run_dir=str(run_dir), **QUIET_WITH_REPORT,
                 **{"data.val_fraction": 0.2})
    return run_dir


@pytest.fixture(scope="module")
def regression_run(tmp_path_factory):
    """A 1-D regression without a validation split: each epoch is evaluated on the test split."""
    run_dir = tmp_path_factory.mktemp("layout") / "quadratic"
    return nettrain.fit(dataset="quadratic", model="mlp", epochs=2, run_dir=str(run_dir), **QUIET_WITH_REPORT)


def _cards(html: str) -> dict:
    return dict((label, value) for value, label in re.findall(r'<div class="card"><b[^>]*>([^<]*)</b><span>([^<]*)<',
                                                              html))


def test_a_regression_shows_r2_and_mae_and_names_the_split_it_was_evaluated_on(regression_run):
    html = (regression_run.dir / "report.html").read_text()
    cards = _cards(html)
    assert cards["test R\u00b2"] == f"{regression_run.test['r2']:.4g}"
    assert cards["test MAE"] == f"{regression_run.test['mae']:.4g}"
    assert len(set(cards.values())) == len(cards)   # no number twice (the loss here is the MSE itself)
    assert not any(label.startswith("last ") for label in cards)   # the epochs' split is the test cards' own
    assert "Loss and mean absolute error per epoch, on the training split and the test split" in html
    assert "regression: MAE" not in html and "accuracy" not in html.split("<h2>Epochs</h2>")[1].split("</table>")[0]
    headers = re.findall(r"<th>([^<]*)</th>", html.split("<h2>Epochs</h2>")[1].split("</table>")[0])
    assert {"test loss", "test MAE"} <= set(headers) and not any(h.startswith("val") for h in headers)


def test_a_classification_run_names_its_validation_split_alike(digits_run):
    html = (digits_run / "report.html").read_text()
    assert "last validation accuracy" in _cards(html)
    assert "Loss and accuracy per epoch, on the training split and the validation split" in html
    headers = re.findall(r"<th>([^<]*)</th>", html.split("<h2>Epochs</h2>")[1].split("</table>")[0])
    assert {"validation loss", "validation acc"} <= set(headers)


def test_top_losses_are_wrong_predictions_only(tmp_path):
    from nettrain.kinds.evidence import _classification
    probs = torch.tensor([[0.3, 0.25, 0.25, 0.2],    # right (class 0), loss 1.20
                          [0.4, 0.45, 0.1, 0.05],    # wrong (true 0), loss 0.92
                          [0.9, 0.05, 0.03, 0.02],   # right, loss 0.11
                          [0.1, 0.8, 0.05, 0.05]])   # wrong (true 0), loss 2.30
    y = torch.tensor([0, 0, 0, 0])
    out = _classification(probs, y, torch.zeros(4, 1, 2, 2, dtype=torch.uint8))
    assert out["top_pred"].tolist() == [1, 1] and out["top_loss"] == pytest.approx([-np.log(0.1), -np.log(0.4)])
    right = _classification(probs[[0, 2]], y[:2], torch.zeros(2, 1, 2, 2, dtype=torch.uint8))
    arrays = {k: np.asarray(v) for k, v in right.items()}
    assert len(arrays["top_true"]) == 0 and predictions_problem(arrays, 4) is None   # none wrong: none shown
    html = page(Record(path=tmp_path, predictions=arrays), [], "finished", False)
    assert "every test example evaluated was predicted right" in html


@pytest.mark.parametrize("device, shown", [("cpu (2 threads)", False), ("cuda:0 (NVIDIA H100 80GB HBM3)", True)])
def test_the_environment_names_the_device_that_trained_not_torchs_cuda_build(tmp_path, device, shown):
    html = page(Record(path=tmp_path, environment={"cuda": "13.0", "device": device}), [], "finished", False)
    assert bool(re.search(r"<td class=l>cuda</td><td class=l>13\.0</td>", html)) == shown
    assert ("13.0 (unused: the run trained on cpu (2 threads))" in html) != shown
    assert f"<td class=l>device</td><td class=l>{device}</td>" in html


def test_a_module_the_forward_pass_never_calls_gets_its_own_row():
    from nettrain.layertable import layer_table

    class Functional(torch.nn.Module):   # its Linear's weights used through torch's function, as BiLSTM's LSTM
        def __init__(self):
            super().__init__()
            self.first = torch.nn.Linear(3, 4)
            self.second = torch.nn.Linear(4, 2)

        def forward(self, x):
            return torch.nn.functional.linear(self.first(x), self.second.weight, self.second.bias)

    table = layer_table(Functional(), 3, "1 x 3", "model", input_size=(1, 3))
    rows = [line for line in table.splitlines() if "\u2500" in line]
    assert [r.split()[0][2:] for r in rows] == ["Linear", "Linear"] and "(second)" in rows[1]
    assert "10" in rows[1].split() and "Total params: 26" in table


def _texts_csv(path):
    import csv
    rows = [(f"the {'good' if i % 2 else 'bad'} food w{i % 5}", "pos" if i % 2 else "neg") for i in range(60)]
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([("text", "label"), *rows])
    return path


def test_a_text_runs_model_section_is_nettrain_summarys_table_with_its_lstm(tmp_path):
    from nettrain.summary import summary
    run = nettrain.fit(dataset="text", data_dir=str(_texts_csv(tmp_path / "t.csv")), model="bilstm", epochs=1,
                       batch_size=16, run_dir=str(tmp_path / "run"), device="cpu", **QUIET_WITH_REPORT)
    kept = (run.dir / "model_summary.txt").read_text()
    assert kept == summary(run.dir) + "\n"   # the table `nettrain summary RUN` prints
    lstm = sum(p.numel() for p in run.model.module.lstm.parameters())
    assert re.search(rf"LSTM \(lstm\) +-- +{lstm:,} ", kept)
    total = sum(p.numel() for p in run.model.module.parameters())
    assert f"Total params: {total:,}" in kept
    html = (run.dir / "report.html").read_text()
    assert "LSTM (lstm)" in html.split("<h2>Model</h2>")[1]


# Injected into a copy of the page, shown in an iframe of the width to test (headless Chromium's window is at least
# 500 px wide): once loaded, the page's width, whether every table sits in its own scrolling box and every table box
# and image within the width, posted to the frame around it, which --dump-dom prints.
PROBE = ('<script>addEventListener("load", () => { const w = innerWidth, fits = e => e.getBoundingClientRect().right '
         '<= w + 0.5; const tables = [...document.querySelectorAll("table")].map(t => t.parentElement); '
         'parent.postMessage([w, document.documentElement.scrollWidth, tables.length, tables.every(b => '
         'b.classList.contains("scroll") && fits(b)), document.images.length, [...document.images].every(fits)]'
         '.join(","), "*"); });</script>')
FRAME = ('<body style="margin:0"><iframe src="probe.html" width="{width}" height="900" style="border:0"></iframe>'
         '<script>addEventListener("message", e => document.body.setAttribute("data-probe", e.data));</script></body>')


def _layout(report, tmp_path, width: int) -> list:
    (tmp_path / "probe.html").write_text(report.read_text().replace("</body>", PROBE + "</body>"))
    (tmp_path / "frame.html").write_text(FRAME.format(width=width))
    dom = subprocess.run([shutil.which("chromium"), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                          f"--window-size={width + 20},900", "--virtual-time-budget=10000", "--dump-dom",
                          (tmp_path / "frame.html").as_uri()], capture_output=True, text=True, timeout=120).stdout
    found = re.search(r'data-probe="([^"]*)"', dom)
    assert found, dom[:500]
    return found.group(1).split(",")


@pytest.mark.skipif(shutil.which("chromium") is None, reason="no chromium on PATH (CI installs it: .ci/run)")
@pytest.mark.parametrize("width", [390, 1280])
@pytest.mark.parametrize("which", ["digits", "regression"])
def test_the_page_fits_a_phone_and_a_desktop_and_links_each_figure_at_full_size(digits_run, regression_run, tmp_path,
                                                                                which, width):
    run_dir = digits_run if which == "digits" else regression_run.dir
    html = (run_dir / "report.html").read_text()
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html
    inner, scroll, tables, boxed, images, fitting = _layout(run_dir / "report.html", tmp_path, width)
    assert int(inner) == width and int(scroll) <= width   # nothing widens the page
    assert int(tables) >= 3 and boxed == "true"   # each table scrolls inside its own box, within the width
    assert int(images) == len(list((run_dir / "figures").iterdir())) and fitting == "true"   # scaled to the width
    for name in re.findall(r'<figure id="[^"]*"><a href="figures/([^"]*)"><img', html):   # the file, full size
        assert (run_dir / "figures" / name).is_file()
    assert len(re.findall(r'<figure id="[^"]*"><a href="figures/', html)) == int(images)
