"""nettrain compare (report/compare.py) and nettrain sweep (sweep.py): tiny runs, their table, figure and page.
Bad inputs to both are in test_bad_input.py (COMPARE, SWEEP)."""
import re
import shutil
import subprocess

import pytest
import yaml
from PIL import Image

import nettrain
from nettrain.cli import main
from nettrain.errors import NettrainError
from nettrain.report.compare import HTML, PNG, compare
from nettrain.sweep import parse_axes, run_name, split_values, _names
from conftest import QUIET, QUIET_API

QUIET_HIDDEN_8 = {**QUIET_API, "model.args.hidden": [8]}
QUIET_HIDDEN_8_FLAGS = [*QUIET, "--model.args.hidden", "[8]"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two classification runs that differ in the lr alone (one with a validation split each), and a regression."""
    folder = tmp_path_factory.mktemp("compare") / "runs"
    for name, options in (("a", dict(dataset="two-gaussians", lr=0.01)), ("b", dict(dataset="two-gaussians", lr=0.001)),
                          ("q", dict(dataset="quadratic", lr=0.01))):
        nettrain.fit(model="mlp", epochs=2, run_dir=folder / name, **{"data.val_fraction": 0.2}, **QUIET_HIDDEN_8,
                     **options)
    return folder


def _check_png(path):
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.width > 300 and image.height > 200


def test_compare_shows_the_keys_that_differ_and_writes_the_figure_and_page(runs, capsys):
    assert main(["compare", str(runs / "a"), str(runs / "b")]) == 0
    out = capsys.readouterr().out
    header, row_a, row_b = out.splitlines()[:3]
    assert header.split()[:2] == ["run", "optim.lr"]   # the only key that differs
    for same in ("optim.name", "data.name", "model.name", "train.epochs", "run.dir"):
        assert same not in header
    assert "best val acc (epoch)" in header and "test acc" in header and "examples/s (mean)" in header   # vectors
    assert row_a.split()[:2] == ["a", "0.01"] and row_b.split()[:2] == ["b", "0.001"]
    assert re.search(r"\d+\.\d\d%", row_a)   # accuracies
    assert f"page {runs / HTML}" in out   # the runs' common folder by default
    _check_png(runs / PNG)
    page = (runs / HTML).read_text(encoding="utf-8")
    assert 'src="data:image/png;base64,' in page and not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    assert "<td class=l>0.001</td>" in page


def test_runs_of_different_tasks_are_compared_on_the_loss(runs, tmp_path):
    comparison = compare([runs / "a", runs / "q"], out=tmp_path / "out")
    header, rows = comparison.columns()
    assert "data.name" in header and "optim.lr" not in header   # both at lr 0.01
    assert "best val loss (epoch)" in header and "test loss" in header
    assert not any("acc" in h or "R2" in h for h in header)
    assert [r[0] for r in rows] == ["a", "q"]
    _check_png(tmp_path / "out" / PNG)


def test_compare_replaces_only_its_own_files(runs, tmp_path):
    out = tmp_path / "out"
    compare([runs / "a", runs / "b"], out=out)
    first = (out / HTML).read_text()
    compare([runs / "a"], out=out)   # its own files: replaced
    assert (out / HTML).read_text() != first and "1 run" in (out / HTML).read_text()
    (out / HTML).write_text("my notes")
    png = (out / PNG).read_bytes()
    with pytest.raises(NettrainError, match="exists and was not written by nettrain compare"):
        compare([runs / "a", runs / "b"], out=out)
    assert (out / HTML).read_text() == "my notes" and (out / PNG).read_bytes() == png   # nothing written
    (out / HTML).unlink()
    Image.new("RGB", (4, 4)).save(out / PNG)   # a PNG of the user's, without nettrain's mark
    mine = (out / PNG).read_bytes()
    with pytest.raises(NettrainError, match="compare.png exists and was not written by nettrain compare"):
        compare([runs / "a"], out=out)
    assert (out / PNG).read_bytes() == mine and not (out / HTML).exists()


def test_a_sweep_trains_each_combination_and_compares_them(tmp_path, capsys):
    sweep_dir = tmp_path / "sweep"
    assert main(["sweep", "--optimizer", "sgd,adam", "--lr", "0.01,0.001", "--sweep-dir", str(sweep_dir), "--",
                 "--dataset", "quadratic", "--model", "mlp", "--epochs", "1", *QUIET_HIDDEN_8_FLAGS]) == 0
    out = capsys.readouterr().out
    names = ["optimizer=sgd,lr=0.01", "optimizer=sgd,lr=0.001", "optimizer=adam,lr=0.01", "optimizer=adam,lr=0.001"]
    assert sorted(p.name for p in sweep_dir.iterdir() if p.is_dir()) == sorted(names)
    for name in names:
        config = yaml.safe_load((sweep_dir / name / "config.yaml").read_text())
        optimizer, lr = re.fullmatch(r"optimizer=(\w+),lr=([\d.]+)", name).groups()
        assert config["optim"]["name"] == optimizer and config["optim"]["lr"] == float(lr)
        assert config["train"]["epochs"] == 1 and config["data"]["name"] == "quadratic"
        assert any(line.startswith(name + " ") for line in out.splitlines())
    header = next(line for line in out.splitlines() if line.startswith("run "))
    assert header.split()[:3] == ["run", "optimizer", "lr"]
    _check_png(sweep_dir / PNG)
    assert 'src="data:image/png;base64,' in (sweep_dir / HTML).read_text()


def test_a_failed_run_is_recorded_and_the_sweep_goes_on(tmp_path, capsys):
    sweep_dir = tmp_path / "sweep"
    assert main(["sweep", "--lr", "1e30,0.01", "--sweep-dir", str(sweep_dir), "--", "--dataset", "quadratic",
                 "--model", "mlp", "--optimizer", "sgd", "--epochs", "1", *QUIET_HIDDEN_8_FLAGS]) == 1
    out, err = capsys.readouterr()
    failed = next(line for line in out.splitlines() if line.startswith("lr=1e+30 "))
    assert "failed: training diverged: the train loss is" in failed
    assert next(line for line in out.splitlines() if line.startswith("lr=0.01 ")).endswith(" ok")
    assert "1 of 2 sweep runs failed" in err
    assert (sweep_dir / "lr=0.01" / "best.pt").exists()
    assert "training diverged" in (sweep_dir / HTML).read_text()


def test_values_holding_commas_are_bracketed():
    assert split_values("sgd,adam") == ["sgd", "adam"]
    assert split_values("[16],[32, 16]") == ["[16]", "[32, 16]"]
    assert parse_axes(["--model.args.hidden", "[16],[32,16]", "--batch-size=8,16"]) == \
        {"model.args.hidden": [[16], [32, 16]], "batch_size": [8, 16]}
    with pytest.raises(NettrainError, match="lists 0.1 twice"):
        parse_axes(["--lr", "0.1,0.2,0.1"])


def test_run_names_are_safe_and_unique():
    assert run_name({"model.args.hidden": [32, 16], "lr": 0.001}) == "model.args.hidden=_32,16_,lr=0.001"
    assert run_name({"data.dir": "../x/y"}) == "data.dir=.._x_y"
    names = _names([{"data.dir": "a b"}, {"data.dir": "ab"}, {"x": "y" * 300}])
    assert len(set(names)) == 3 and all(len(n) <= 100 and "/" not in n for n in names)


def test_the_speed_columns_count_what_the_runs_hold(tmp_path, capsys):
    from test_text import texts_and_labels, write_csv
    plain = {"run.progress": "none", "run.tensorboard": False, "epochs": 1}
    path = write_csv(tmp_path / "t.csv", texts_and_labels())
    for name in ("t1", "t2"):
        nettrain.fit(dataset="text", data_dir=str(path), model="fasttext", run_dir=tmp_path / "runs" / name, **plain)
    nettrain.fit(dataset="digits", model="cnn", run_dir=tmp_path / "runs" / "img", **{**plain, "model.args.width": 8})
    page = (tmp_path / "runs" / "t1" / "report.html").read_text(encoding="utf-8")
    assert "texts/s (median epoch)" in page and "images/s" not in page
    assert "images/s (median epoch)" in (tmp_path / "runs" / "img" / "report.html").read_text(encoding="utf-8")
    capsys.readouterr()
    for names, label in ((["t1", "t2"], "texts/s (mean)"), (["t1", "img"], "examples/s (mean)")):
        assert main(["compare", *[str(tmp_path / "runs" / n) for n in names], "--out", str(tmp_path / label[:4])]) == 0
        assert label in capsys.readouterr().out.splitlines()[0]


# ---- the legend, the page and the loss column ----------------------------------------------------------

def _legend_and_axes(fig):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    FigureCanvasAgg(fig).draw()
    legend = fig.legends[0]
    return legend, [t.get_text() for t in legend.get_texts()], [ax.get_window_extent() for ax in fig.axes]


def test_the_legend_names_each_run_in_full_beside_the_plots(runs):
    from nettrain.report.compare import Entry, figure
    from nettrain.report.read import read
    record = read(runs / "a")
    # wide letters, and names alike for their first 70 characters: a legend that cut them made two entries the same
    names = ["W" * 70 + " first", "W" * 70 + " second", "sgd", "adam"]
    entries = [Entry(name, {"optim.lr": lr}, record) for name, lr in zip(names, (0.1, 0.01, 0.001, 0.0001))]
    legend, labels, axes = _legend_and_axes(figure(entries, "classification"))
    assert [label.replace("\n", "") for label in labels] == [f"{n}: optim.lr={lr}" for n, lr in
                                                            zip(names, ("0.1", "0.01", "0.001", "0.0001"))]
    box = legend.get_window_extent()
    assert all(box.x0 >= ax.x1 for ax in axes)   # right of every plot: no curve under it
    assert box.x1 <= legend.figure.bbox.x1 and box.y0 >= 0 and box.y1 <= legend.figure.bbox.y1   # on the figure


def test_without_held_out_data_the_table_shows_the_training_loss(tmp_path):
    import torch
    inputs = torch.randn(64, 3)
    for name in ("x", "y"):
        nettrain.fit(data=(inputs, (inputs[:, 0] > 0).long()), model="mlp", epochs=2, run_dir=tmp_path / name,
                     lr=0.01 if name == "x" else 0.001, **{**QUIET_HIDDEN_8, "data.val_fraction": 0})
    header, rows = compare([tmp_path / "x", tmp_path / "y"], out=tmp_path / "out").columns()
    assert "final train loss" in header and "best train acc (epoch)" in header
    column = header.index("final train loss")
    assert all(re.fullmatch(r"\d\.\d+", row[column]) for row in rows)


def test_the_per_epoch_columns_name_the_split_they_were_measured_on(runs, tmp_path):
    nettrain.fit(model="mlp", epochs=1, run_dir=tmp_path / "t", dataset="two-gaussians", lr=0.01, **QUIET_HIDDEN_8)
    header, _ = compare([tmp_path / "t", runs / "b"], out=tmp_path / "out").columns()
    assert "best held-out acc (epoch)" in header   # one run's was the test split, the other's the validation split
    header, _ = compare([tmp_path / "t"], out=tmp_path / "out").columns()
    assert "best test acc (epoch)" in header and "final test acc" in header and "best val acc (epoch)" not in header


def test_the_page_has_a_viewport_and_its_table_scrolls_in_its_own_box(runs, tmp_path):
    compare([runs / "a", runs / "b"], out=tmp_path)
    page = (tmp_path / HTML).read_text(encoding="utf-8")
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page
    assert re.search(r'<div class="?scroll"?><table>', page) and re.search(r"\.scroll\{[^}]*overflow-x:auto", page)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("chromium") is None, reason="no chromium on PATH (CI installs it: .ci/run)")
def test_chromium_at_phone_width_scrolls_the_table_not_the_page(runs, tmp_path):
    """390 px, a phone's width (an iframe: headless Chromium's window is 500 px at least): the page is no wider than
    that; the table scrolls inside its box."""
    compare([runs / "a", runs / "b", runs / "q"], out=tmp_path)
    probe = tmp_path / "probe.html"
    probe.write_text(f'<!DOCTYPE html><iframe id=f src="{HTML}" width=390 height=800></iframe><script>'
                     'const f = document.getElementById("f"); f.addEventListener("load", () => {'
                     'const d = f.contentDocument, box = d.querySelector("table").parentElement; '
                     'document.body.setAttribute("data-widths", [d.documentElement.scrollWidth, '
                     'd.defaultView.innerWidth, box.scrollWidth, box.clientWidth].join(","))});</script>')
    dom = subprocess.run([shutil.which("chromium"), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                          "--allow-file-access-from-files", "--dump-dom", probe.as_uri()], capture_output=True,
                         text=True, timeout=120).stdout
    widths = re.search(r'data-widths="(\d+),(\d+),(\d+),(\d+)"', dom)
    assert widths, dom[:500]
    page_width, screen, table_width, box_width = map(int, widths.groups())
    assert page_width <= screen and table_width > box_width, widths.groups()
