"""The report: figures and report.html from the run directory alone, live while a fit trains, `nettrain report`."""
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import nettrain
from nettrain.cli import main
from nettrain.report import live as live_module, stats
from nettrain.report.live import LiveReport
from nettrain.runlock import RunLock
from nettrain.runs import RunDir

QUIET_WITH_REPORT = {"run.progress": "none", "run.tensorboard": False}   # the HTML report is written
DIGITS_FIGURES = {"learning_curves.png", "lr_schedule.png", "confusion_matrix.png", "per_class.png",
                  "test_examples.png", "top_losses.png", "calibration.png"}
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """One tiny digits run, shared: its report is the fit's own, written when it ended."""
    run_dir = tmp_path_factory.mktemp("report") / "digits"
    nettrain.fit(dataset="digits", model="mlp", epochs=2, run_dir=str(run_dir), **QUIET_WITH_REPORT)
    return run_dir


@pytest.fixture
def digits_copy(digits_run, tmp_path):
    """A copy to write into (the lock file and all)."""
    return shutil.copytree(digits_run, tmp_path / "run")


def _check_png(path):
    assert path.read_bytes()[:8] == PNG, path
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.width > 100 and image.height > 100, (path, image.size)


def _recorded(run_dir) -> set:
    return set(json.loads((run_dir / ".nettrain-run.json").read_text())["files"])


def test_a_digits_fit_writes_every_figure_and_records_them(digits_run):
    figures = {p.name for p in (digits_run / "figures").iterdir()}
    assert figures == DIGITS_FIGURES
    for name in figures:
        _check_png(digits_run / "figures" / name)
    assert {f"figures/{n}" for n in figures} | {"report.html", "predictions.npz", "model_summary.txt"} \
        <= _recorded(digits_run)
    with np.load(digits_run / "predictions.npz", allow_pickle=False) as p:   # plain data, no pickled objects
        assert p["shown_images"].dtype == np.uint8 and p["shown_images"].shape[1:] == (8, 8, 1)
        tested = sum(int(v) for line in (digits_run / "confusion_matrix.csv").read_text().splitlines()[1:]
                     for v in line.split(",")[1:])
        assert len(p["confidence"]) == len(p["correct"]) == tested   # every test example
    assert "Total params" in (digits_run / "model_summary.txt").read_text()


@pytest.mark.parametrize("dataset, figure", [("quadratic", "regression_fit.png"),
                                             ("two-gaussians", "decision_boundary.png")])
def test_the_toy_tasks_get_their_own_figure(tmp_path, dataset, figure):
    run = nettrain.fit(dataset=dataset, model="mlp", epochs=2, run_dir=str(tmp_path / "run"), **QUIET_WITH_REPORT)
    figures = {p.name for p in (run.dir / "figures").iterdir()}
    assert figure in figures and "learning_curves.png" in figures
    for name in figures:
        _check_png(run.dir / "figures" / name)
    if dataset == "quadratic":   # a regression has no confusion matrix, calibration or image grid
        assert figures == {"learning_curves.png", "lr_schedule.png", "regression_fit.png"}
        html = (run.dir / "report.html").read_text()
        assert f"{run.test['mse']:.4g}" in html   # the test MSE is a key number


def test_the_final_page_is_self_contained_and_does_not_reload(digits_run):
    html = (digits_run / "report.html").read_text()
    assert "http-equiv" not in html
    assert not re.search(r"src=\"(?!data:)", html)   # nothing is fetched: no file, no network
    links = set(re.findall(r'href="([^"]*)"', html))   # followed on a click only: each figure's file, full size
    assert links == {f"figures/{name}" for name in DIGITS_FIGURES}
    assert "<script" not in html
    sources = re.findall(r'<img alt="[^"]*" src="([^"]*)"', html)
    assert len(sources) == len(DIGITS_FIGURES) and all(s.startswith("data:image/png;base64,") for s in sources)
    for section in ("Epochs", "Per class (test split)", "Timings", "Environment", "Resumes", "Configuration",
                    "Model"):
        assert f"<h2>{section}" in html


def _test_accuracy(run_dir) -> str:
    rows = [line.split(",") for line in (run_dir / "confusion_matrix.csv").read_text().splitlines()[1:]]
    cm = np.array([[int(v) for v in r[1:]] for r in rows])
    return f"{100 * np.trace(cm) / cm.sum():.2f}%"


# Written into a copy of the page: when it has loaded, every image's decoded width goes into the DOM that
# --dump-dom prints (0 for an image the browser could not decode).
PROBE = ('<script>window.addEventListener("load", () => document.body.setAttribute("data-widths", '
         '[...document.images].map(i => i.naturalWidth).join(",")));</script>')


def _chromium(*args):
    return subprocess.run([shutil.which("chromium"), "--headless", "--no-sandbox", "--disable-gpu",
                           "--hide-scrollbars", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(shutil.which("chromium") is None, reason="no chromium on PATH (CI installs it: .ci/run)")
def test_chromium_renders_the_page_with_every_image_and_the_final_accuracy(digits_run, tmp_path):
    page = tmp_path / "probe.html"
    page.write_text((digits_run / "report.html").read_text().replace("</body>", PROBE + "</body>"))
    dom = _chromium("--dump-dom", page.as_uri()).stdout
    widths = re.search(r'data-widths="([\d,]*)"', dom)
    assert widths, dom[:500]
    widths = [int(w) for w in widths.group(1).split(",")]
    assert len(widths) == len(DIGITS_FIGURES) and all(w > 0 for w in widths), widths
    accuracy = _test_accuracy(digits_run)
    assert re.search(rf'id="test-accuracy">{re.escape(accuracy)}<', dom)
    shot = tmp_path / "report.png"   # kept in the test's tmp dir, to look at
    _chromium(f"--screenshot={shot}", "--window-size=1280,1800", (digits_run / "report.html").as_uri())
    _check_png(shot)


def test_nettrain_report_rebuilds_a_finished_run(digits_copy, capsys):
    shutil.rmtree(digits_copy / "figures")
    (digits_copy / "report.html").unlink()
    assert main(["report", str(digits_copy)]) == 0
    assert capsys.readouterr().out.strip() == f"report {digits_copy / 'report.html'}"
    assert {p.name for p in (digits_copy / "figures").iterdir()} == DIGITS_FIGURES
    assert _test_accuracy(digits_copy) in (digits_copy / "report.html").read_text()


@pytest.mark.parametrize("what", ["missing", "folder", "file"])
def test_nettrain_report_refuses_a_non_run_in_one_line(tmp_path, capsys, what):
    target = tmp_path / "x"
    if what == "folder":
        target.mkdir()
        (target / "notes.txt").write_text("mine")
    elif what == "file":
        target.write_text("mine")
    assert main(["report", str(target)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith(f"nettrain: error: {target} ")
    assert "give the directory of a run" in err
    if what == "folder":   # nothing written into it
        assert [p.name for p in target.iterdir()] == ["notes.txt"]


def test_nettrain_report_waits_for_the_runs_writer(digits_copy, capsys):
    with RunLock(digits_copy):   # a fit still writing it
        assert main(["report", str(digits_copy)]) == 2
    assert "is in use by another nettrain process" in capsys.readouterr().err


def test_overwrite_deletes_the_report_with_the_run(digits_copy):
    (digits_copy / "figures" / "mine.txt").write_text("the user's")
    nettrain.fit(dataset="two-gaussians", model="mlp", epochs=1, run_dir=str(digits_copy), overwrite=True,
                 **QUIET_WITH_REPORT, **{"run.report": False})
    assert not (digits_copy / "report.html").exists() and not (digits_copy / "predictions.npz").exists()
    assert [p.name for p in (digits_copy / "figures").iterdir()] == ["mine.txt"]   # only what nettrain wrote


def test_a_run_from_elsewhere_is_data(digits_copy, capsys):
    """Broken or hostile files are named on the page, escaped, never run or unpickled."""
    csv = (digits_copy / "confusion_matrix.csv").read_text().splitlines()
    csv[0] = csv[0].replace(",0,", ',"<script>alert(1)</script>",', 1)
    (digits_copy / "confusion_matrix.csv").write_text("\n".join(csv) + "\n")
    (digits_copy / "predictions.npz").write_bytes(b"not an npz")
    with open(digits_copy / "events.jsonl", "a") as f:
        f.write('{"event": "resume", "from_epoch": 1}\n{"cut\n')
    assert main(["report", str(digits_copy)]) == 0
    html = (digits_copy / "report.html").read_text()
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "predictions.npz could not be read" in html and "events.jsonl has an unreadable line" in html
    assert {p.name for p in (digits_copy / "figures").iterdir()} >= {"confusion_matrix.png", "per_class.png"}


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_live_updates_stay_within_their_budget_and_a_stopped_page_stops_reloading(digits_copy):
    clock = Clock()
    live = LiveReport(RunDir(digits_copy), epochs=10, clock=clock)
    page = digits_copy / "report.html"
    (digits_copy / "figures" / "learning_curves.png").unlink()
    assert live.begin()   # as the fit starts: a page without figures
    assert "epoch 1 of 10 started" in page.read_text() and "<img" not in page.read_text()
    clock.now = 0.1   # an epoch of 0.1 s: even the page alone (PAGE_ESTIMATE) would add more than 2%
    live.page_estimate = live_module.PAGE_ESTIMATE
    assert live.epoch_end(1) is None
    clock.now = 2.0   # 2 s: a drawing (estimated at FIRST_ESTIMATE) would add far more than 2%, the page fits
    assert live.epoch_end(2) == "page"
    assert "epoch 2 of 10 done" in page.read_text() and "<img" not in page.read_text()
    assert not (digits_copy / "figures" / "learning_curves.png").exists()   # nothing drawn
    clock.now = live_module.FIRST_ESTIMATE / live_module.BUDGET + 1
    assert live.epoch_end(3) == "figures"
    assert '<meta http-equiv="refresh"' in page.read_text() and "epoch 3 of 10" in page.read_text()
    assert (digits_copy / "figures" / "learning_curves.png").exists()
    assert live.spent == live.estimate == 0   # the fake clock stood still while it wrote: a free update
    assert live.epoch_end(4) == "figures"
    live.spent, live.estimate = 10.0, 1.0   # then: the updates so far have used up the budget
    clock.now += 1
    assert live.epoch_end(5) is None
    live.spent = 0.0   # a page's budget left, not a drawing's: the page keeps the figures drawn last
    assert live.epoch_end(6) == "page" and "figures as of epoch 4" in page.read_text()
    assert "learning_curves" in page.read_text()
    assert live.epoch_end(10) is None   # the last epoch: the full report follows instead
    live.close()   # the fit stopped
    assert "http-equiv" not in page.read_text()


def test_a_fit_rewrites_the_live_page_at_epoch_ends(tmp_path, monkeypatch):
    monkeypatch.setattr(live_module, "BUDGET", 1e9)   # every epoch, whatever it costs
    pages = []
    real = live_module.write

    def write(run, **kw):
        path = real(run, **kw)
        pages.append((kw.get("live", False), path.read_text()))
        return path
    monkeypatch.setattr(live_module, "write", write)
    nettrain.fit(dataset="two-gaussians", model="mlp", epochs=3, run_dir=str(tmp_path / "run"), **QUIET_WITH_REPORT)
    # the first page as the fit starts, epochs 1 and 2 live, then the full page
    assert [is_live for is_live, _ in pages] == [True, True, True, False]
    assert all(('http-equiv="refresh"' in html) == is_live for is_live, html in pages)
    assert "epoch 1 of 3 started" in pages[0][1] and "<img" not in pages[0][1]   # before epoch 1: no figures
    assert "epoch 1 of 3 done" in pages[1][1] and "learning_curves" in pages[1][1]
    assert "decision_boundary" in pages[-1][1] and "decision_boundary" not in pages[1][1]


def test_run_report_false_writes_no_report(tmp_path):
    run = nettrain.fit(dataset="quadratic", model="mlp", epochs=1, run_dir=str(tmp_path / "run"), **QUIET_WITH_REPORT,
                       **{"run.report": False})
    assert not (run.dir / "report.html").exists() and not (run.dir / "figures").exists()


def test_per_class_scores_and_calibration():
    cm = np.array([[8, 2, 0], [1, 9, 0], [0, 0, 0]])   # class 2: never present, never predicted
    s = stats.per_class(cm)
    assert s["precision"][:2] == pytest.approx([8 / 9, 9 / 11]) and s["recall"][:2] == pytest.approx([0.8, 0.9])
    assert s["f1"][0] == pytest.approx(2 * (8 / 9) * 0.8 / (8 / 9 + 0.8))
    assert np.isnan(s["precision"][2]) and np.isnan(s["recall"][2]) and list(s["support"]) == [10, 10, 0]
    c = stats.calibration(np.array([0.95, 0.95, 0.55, 0.55, 1.0]), np.array([1, 1, 1, 0, 1]), bins=10)
    assert list(c["count"][[5, 9]]) == [2, 3] and c["accuracy"][5] == 0.5 and c["accuracy"][9] == 1.0
    assert c["ece"] == pytest.approx((2 * 0.05 + 3 * abs(1 - (0.95 + 0.95 + 1) / 3)) / 5)


@pytest.mark.skipif(shutil.which("git") is None, reason="no git")
def test_the_environment_names_the_git_commit(tmp_path, monkeypatch):
    from nettrain.runs import git_commit
    monkeypatch.chdir(tmp_path)
    assert git_commit() is None   # not a repository
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    subprocess.run(git + ["init", "-q"], check=True)
    (tmp_path / "a.py").write_text("1")
    subprocess.run(git + ["add", "a.py"], check=True)
    subprocess.run(git + ["commit", "-qm", "x"], check=True)
    sha = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert git_commit() == sha
    (tmp_path / "a.py").write_text("2")
    assert git_commit() == f"{sha} + changes"


def test_the_report_imports_no_training_code():
    """It is built from the run directory alone: its modules import, of nettrain, only the run directory's own
    modules (runs, its metrics rows, atomic writes, errors), never data, models, engine or training."""
    import ast
    import nettrain.report
    allowed = {"nettrain.errors", "nettrain.runs", "nettrain.metrics_row", "nettrain.files"}
    folder = Path(nettrain.report.__file__).parent
    for source in folder.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                target = ("nettrain" if node.level == 2 else "nettrain.report") + (f".{node.module}" if node.module
                                                                                   else "")
                assert target.startswith("nettrain.report") or target in allowed, (source.name, target)
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
                assert not any(n.startswith("nettrain") for n in names), (source.name, names)


def _texts_csv(path) -> Path:
    """Two classes told apart by one word, two labels in ten contradicting it (confidently wrong examples); the
    texts keep their case and markup (the report shows them as written, escaped), every other one 400+ characters."""
    import csv
    import random
    rng = random.Random(0)
    filler = ["the", "Food", "was", "very", "service", "place", "and", "really", "quite", "so"]
    rows = []
    for i in range(80):
        label = "pos" if i % 2 else "neg"
        words = rng.sample(filler, 4) + ["<i>GOOD</i>" if label == "pos" else "<b>bad</b>", f"w{i % 7}"]
        rng.shuffle(words)
        text = " ".join(words) + (" and then" * 50 if i % 4 < 2 else "")
        rows.append((text, {"pos": "neg", "neg": "pos"}[label] if i % 10 in (3, 8) else label))
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([("text", "label"), *rows])
    return path


def test_a_text_runs_top_losses_are_its_test_texts(tmp_path):
    from nettrain.config import Config
    from nettrain.data.text import load_text
    data = _texts_csv(tmp_path / "t.csv")
    run = nettrain.fit(dataset="text", data_dir=str(data), model="fasttext", epochs=2, batch_size=8, lr=0.1,
                       run_dir=str(tmp_path / "run"), **QUIET_WITH_REPORT)
    test = load_text(Config().override({"data.name": "text", "data.dir": str(data)}).data).test
    with np.load(run.dir / "predictions.npz", allow_pickle=False) as p:   # plain data: a unicode array
        texts, loss, probs, true = p["top_texts"], p["top_loss"], p["top_probs"], p["top_true"]
        assert texts.dtype.kind == "U" and len(p["confidence"]) == len(p["correct"]) == len(test)
        assert int(p["correct"].sum()) == round(run.test["acc"] * len(test))
        wrong = int((~p["correct"]).sum())
        assert (p["top_pred"] != true).all()   # the wrong ones only, however few
    clipped = {t if len(t) <= 300 else t[:299] + "\u2026" for t in test.texts}
    assert len(texts) == min(12, wrong) > 0 and set(texts.tolist()) <= clipped   # the raw strings, as written
    assert any(len(t) == 300 and t.endswith("\u2026") for t in texts)
    assert list(loss) == sorted(loss, reverse=True)
    assert loss == pytest.approx(-np.log(probs[np.arange(len(true)), true]), rel=1e-4)
    figures = {p.name for p in (run.dir / "figures").iterdir()}
    assert {"top_losses.png", "calibration.png", "confusion_matrix.png"} <= figures
    _check_png(run.dir / "figures" / "top_losses.png")
    html = (run.dir / "report.html").read_text()
    table = html[html.index('id="top-texts"'):]
    assert "&lt;i&gt;GOOD&lt;/i&gt;" in table and "<i>GOOD" not in html and "<b>bad" not in html   # data, not markup
    first = texts[0]
    assert first.replace("<", "&lt;").replace(">", "&gt;") in table


@pytest.mark.parametrize("epochs, ticks", [(1, [1]), (2, [1, 2])])
def test_a_short_runs_curves_have_whole_epoch_ticks(tmp_path, epochs, ticks):
    from nettrain.report.figures import learning_curves, lr_schedule
    from nettrain.metrics_row import MetricsRow
    from nettrain.report.read import Record
    rows = [MetricsRow(epoch=e, train_loss=1.0 / e, val_loss=1.2 / e, train_acc=0.5, val_acc=0.6, lr=0.1)
            for e in range(1, epochs + 1)]
    rec = Record(path=tmp_path, metrics=rows)
    for fig in (learning_curves(rec), lr_schedule(rec)):
        for ax in fig.axes:   # not 0.96 ... 1.04 around one epoch
            assert list(ax.get_xticks()) == ticks


def test_the_shown_test_images_are_spread_through_a_split_stored_by_class():
    import torch
    from nettrain.kinds.evidence import SHOWN, _classification
    y = torch.arange(10).repeat_interleave(100)   # 1,000 examples stored class by class, as CIFAR-10's staged split
    probs = torch.full((1000, 10), 0.1)
    out = _classification(probs, y, torch.zeros(1000, 1, 4, 4, dtype=torch.uint8))
    assert len(out["shown_true"]) == SHOWN and set(out["shown_true"].tolist()) == set(range(10))


def test_report_of_a_run_fit_without_one_makes_its_predictions_first(tmp_path, capsys):
    run = nettrain.fit(dataset="digits", model="mlp", epochs=1, run_dir=str(tmp_path / "run"), **QUIET_WITH_REPORT,
                       **{"run.report": False})   # as the speed recipes train: no figures, no predictions.npz
    assert not (run.dir / "predictions.npz").exists()
    assert main(["report", str(run.dir)]) == 0
    assert "predictions.npz made from best.pt on the test split (359 examples)" in capsys.readouterr().err
    assert {"test_examples.png", "top_losses.png", "calibration.png"} <= {p.name for p in (run.dir / "figures").iterdir()}
    recorded = json.loads((run.dir / ".nettrain-run.json").read_text())["files"]
    assert "predictions.npz" in recorded   # --overwrite knows it
