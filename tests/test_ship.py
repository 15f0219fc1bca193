"""Seeing and shipping a model: `nettrain summary`, the lr finder (`lr-find`, `fit --lr auto`), `nettrain export`
(ONNX, TorchScript) with the preprocessing in the graph, and `nettrain predict model.onnx` without torch."""
import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import nettrain
from nettrain.cli import main
from nettrain.runs import MANIFEST

QUIET_WITH_REPORT = {"run.progress": "none", "run.tensorboard": False}   # the HTML report is written
SRC = str(Path(nettrain.__file__).resolve().parents[1])

ort = pytest.importorskip("onnxruntime")   # the test extra installs it; elsewhere these tests skip cleanly
pytest.importorskip("onnxscript")


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """A small digits CNN, trained once for the module (2 epochs), and its ONNX export."""
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NETTRAIN_HOME", str(home))
        run = nettrain.fit(dataset="digits", model="cnn", epochs=2, run_dir=tmp_path_factory.mktemp("r") / "run",
                           **QUIET_WITH_REPORT)
        from nettrain.export import export
        export(run.dir, "onnx", say=lambda line: None)
    return run.dir


def one_line_error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("nettrain: error: ") and "\n" not in err and "Traceback" not in err
    return err


# ---- summary --------------------------------------------------------------------------------------------------

def test_summary_of_tudui_on_cifar10_shapes_needs_no_data(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("NETTRAIN_DATA", str(tmp_path))   # no CIFAR-10 here: the known shape is used
    assert main(["summary", "--dataset", "cifar10", "--model", "tudui"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith(("├", "│", "└"))]
    shapes = [r.split("[")[1].split("]")[0] for r in rows if "[" in r]
    assert shapes[:7] == ["1, 32, 32, 32", "1, 32, 16, 16", "1, 32, 16, 16", "1, 32, 8, 8", "1, 64, 8, 8",
                          "1, 64, 4, 4", "1, 1024"]
    assert "Linear" in rows[7] and "65,600" in rows[7]   # 1024 features -> 64: 1024 * 64 + 64 parameters
    assert "Total params: 145,578" in out and "Total mult-adds (M): 12.40" in out


def test_summary_with_shape_and_classes_and_model_args(capsys):
    assert main(["summary", "--model", "mlp", "--shape", "2", "--classes", "3", "--model.args.hidden", "[7]"]) == 0
    out = capsys.readouterr().out
    assert "[1, 7]" in out and "[1, 3]" in out and f"Total params: {2 * 7 + 7 + 7 * 3 + 3}" in out


def test_summary_of_a_run_uses_its_shape(digits_run, capsys):
    assert main(["summary", str(digits_run)]) == 0
    out = capsys.readouterr().out
    params = sum(p.numel() for p in nettrain.load(digits_run).module.parameters())
    assert out.startswith("input: 1 x 1 x 8 x 8") and f"Total params: {params:,}" in out


@pytest.mark.parametrize("model", ["fasttext", "bilstm"])
def test_summary_of_a_text_run_runs_its_model_on_tokens_and_lengths(tmp_path, capsys, model):
    from test_text import texts_and_labels, write_csv
    path = write_csv(tmp_path / "texts.csv", texts_and_labels())
    run = nettrain.fit(dataset="text", data_dir=str(path), model=model, epochs=1, run_dir=tmp_path / "run",
                       **QUIET_WITH_REPORT)
    capsys.readouterr()
    assert main(["summary", str(run.dir)]) == 0
    out = capsys.readouterr().out
    params = sum(p.numel() for p in run.model.module.parameters())
    assert out.startswith("input: tokens 1 x 32, lengths 1\n") and f"Total params: {params:,}" in out
    assert "[1, 32, " in out   # the embedding's output: one text of 32 tokens


def test_summary_bad_input_is_one_line(capsys):
    assert "--shape takes" in one_line_error(capsys, ["summary", "--model", "tudui", "--shape", "3,x", "--classes",
                                                     "10"])
    assert "8x8" in one_line_error(capsys, ["summary", "--model", "tudui", "--shape", "3,4,4", "--classes", "10"])
    assert "--dataset" in one_line_error(capsys, ["summary", "--model", "tudui"])


# ---- the lr finder --------------------------------------------------------------------------------------------

def test_suggestion_is_the_steepest_descent_before_the_minimum():
    from nettrain.lrfind import suggest
    lrs = list(np.logspace(-6, 0, 61))
    # a loss that falls fastest at 1e-3 (a logistic in log10(lr)), bottoms out at 1e-1, then climbs
    losses = [2 / (1 + np.exp(3 * (np.log10(lr) + 3))) + (max(0, np.log10(lr) + 1) ** 2) * 5 for lr in lrs]
    lr, how, steepest, minimum = suggest(lrs, losses)
    assert lr == pytest.approx(1e-3) and steepest == lr and "steepest" in how
    assert 1e-2 <= minimum <= 1e-1
    lr, how, _, minimum = suggest(lrs[:8], list(range(8, 0, -1)))   # too few steps before the minimum: min / 10
    assert lr == pytest.approx(minimum / 10) and "/ 10" in how


def test_lr_find_ramps_up_stops_on_divergence_and_plots(tmp_path, capsys):
    plot = tmp_path / "lr.png"
    assert main(["lr-find", "--dataset", "two-gaussians", "--model", "mlp", "--optimizer", "sgd", "--out", str(plot),
                 "--steps", "200", "--end-lr", "1e4", "--run.progress", "none"]) == 0
    out = capsys.readouterr().out
    assert "suggested lr" in out and plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    found = nettrain.lrfind.lr_find(dataset="two-gaussians", model="mlp", optimizer="sgd", steps=200, end_lr=1e4,
                                    plot=None, **QUIET_WITH_REPORT)
    assert len(found.lrs) < 200   # sgd at lr 1e4 diverges: the ramp stops before its end
    assert np.allclose(np.diff(np.log(found.lrs)), np.log(found.lrs[1] / found.lrs[0]))   # exponential
    assert found.lrs[0] == pytest.approx(1e-7) and found.lrs[0] < found.lr < found.lrs[-1]


# the lr finder and two trainings; test_lr_auto_leaves_the_users_module_untrained_by_the_finder is the fast one
@pytest.mark.slow
def test_fit_lr_auto_trains_from_the_same_start_with_the_suggestion(tmp_path, capsys):
    auto = nettrain.fit(dataset="two-gaussians", model="mlp", lr="auto", epochs=2, run_dir=tmp_path / "auto",
                        **QUIET_WITH_REPORT)
    err = capsys.readouterr().err
    assert "lr auto: the lr finder suggested" in err
    chosen = nettrain.Config.load(auto.dir / "config.yaml").optim.lr
    assert f"training with lr {chosen:.2e}" in err
    assert "lr_find.png" in json.loads((auto.dir / MANIFEST).read_text())["files"]
    assert (auto.dir / "lr_find.png").read_bytes()[:4] == b"\x89PNG"
    # the finder trained a copy: the run is the one a fit with that lr given would have been, bit for bit
    given = nettrain.fit(dataset="two-gaussians", model="mlp", lr=chosen, epochs=2, run_dir=tmp_path / "given",
                         **QUIET_WITH_REPORT)
    a, b = (torch.load(d / "best.pt", weights_only=True)["model"] for d in (auto.dir, given.dir))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_lr_auto_leaves_the_users_module_untrained_by_the_finder(tmp_path):
    """A model instance of the user's is what fit trains: the finder must train a copy of it, not it."""
    torch.manual_seed(0)
    x, y = torch.randn(64, 2), torch.randint(0, 2, (64,))
    net = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    twin = copy.deepcopy(net)
    auto = nettrain.fit(model=net, data=(x, y), lr="auto", epochs=1, batch_size=16, run_dir=tmp_path / "a",
                        **QUIET_WITH_REPORT)
    chosen = nettrain.Config.load(auto.dir / "config.yaml").optim.lr
    given = nettrain.fit(model=twin, data=(x, y), lr=chosen, epochs=1, batch_size=16, run_dir=tmp_path / "b",
                         **QUIET_WITH_REPORT)
    a, b = (torch.load(d / "best.pt", weights_only=True)["model"] for d in (auto.dir, given.dir))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_lr_auto_on_a_resume_is_refused(tmp_path, capsys):
    nettrain.fit(dataset="two-gaussians", model="mlp", epochs=1, run_dir=tmp_path / "run", **QUIET_WITH_REPORT)
    assert "lr auto chooses" in one_line_error(capsys, ["fit", "--resume", str(tmp_path / "run"), "--lr", "auto"])


# ---- export and predict with onnxruntime -----------------------------------------------------------------------

def test_export_records_its_check_and_preprocessing(digits_run):
    meta = json.loads((digits_run / "model.onnx.json").read_text())
    assert meta["input"]["dtype"] == "uint8" and meta["input"]["shape"] == [None, 8, 8, 1]
    assert meta["check"]["batch_sizes"] == [1, 7, 256] and meta["check"]["max_abs_diff"] <= 1e-4
    assert meta["exporter"] == "onnx (dynamo exporter)"
    info = nettrain.load(digits_run).info
    assert meta["preprocessing"]["mean"] == pytest.approx(info.mean) and meta["classes"] == info.classes
    recorded = json.loads((digits_run / MANIFEST).read_text())["files"]
    assert "model.onnx" in recorded and "model.onnx.json" in recorded


def test_onnx_agrees_with_nettrain_on_the_test_set(digits_run):
    from nettrain.data import load_data
    model = nettrain.load(digits_run)
    test = load_data(model.config.data).test
    images = test.x.permute(0, 2, 3, 1).contiguous().numpy()   # NHWC uint8, as a user has them
    session = ort.InferenceSession(str(digits_run / "model.onnx"), providers=["CPUExecutionProvider"])
    probs = session.run(None, {"images": images})[0]
    ours = np.array(model.predict(images).indices)
    assert len(images) == 359 and (probs.argmax(1) == ours).mean() >= 0.999   # digits: 20% of 1,797
    assert probs.sum(1) == pytest.approx(np.ones(len(images)), abs=1e-5)


def test_predict_model_onnx_runs_without_torch(digits_run, tmp_path):
    from PIL import Image
    from nettrain.data import load_data
    model = nettrain.load(digits_run)
    x = load_data(model.config.data).test.x[:3]
    files = []
    for i, img in enumerate(x):
        files.append(tmp_path / f"{i}.png")
        Image.fromarray(img[0].numpy()).save(files[-1])
    code = ("import sys, json; from nettrain.cli import main; rc = main(sys.argv[1:]); "
            "print(json.dumps({'rc': rc, 'torch': 'torch' in sys.modules}))")
    out = subprocess.run([sys.executable, "-c", code, "predict", str(digits_run / "model.onnx"), *map(str, files),
                          "--json"], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": SRC}, check=True)
    lines = out.stdout.strip().splitlines()
    status = json.loads(lines[-1])
    assert status == {"rc": 0, "torch": False}
    got = json.loads("\n".join(lines[:-1]))["predictions"]
    assert [p["predictions"][0]["class"] for p in got] == model.predict(files).labels


def test_export_refuses_to_replace_and_keeps_no_file_that_disagrees(digits_run, tmp_path, capsys, monkeypatch):
    assert "already exists" in one_line_error(capsys, ["export", str(digits_run)])
    kept = tmp_path / "kept.pt"   # TorchScript: the same check, without a second slow ONNX export
    assert main(["export", str(digits_run), "--format", "torchscript", "--out", str(kept)]) == 0
    before = kept.read_bytes(), Path(str(kept) + ".json").read_bytes()
    capsys.readouterr()
    from nettrain import export as export_module
    real = export_module._reference
    monkeypatch.setattr(export_module, "_reference", lambda p, x: real(p, x) + 0.01)   # as if the graph were off
    out = tmp_path / "m.pt"
    err = one_line_error(capsys, ["export", str(digits_run), "--format", "torchscript", "--out", str(out)])
    assert "computes otherwise than nettrain at batch size 1" in err
    assert not out.exists() and not Path(str(out) + ".json").exists() and list(tmp_path.glob(".*tmp")) == []
    # --overwrite of a good export by one that disagrees: the good one stays
    one_line_error(capsys, ["export", str(digits_run), "--format", "torchscript", "--out", str(kept), "--overwrite"])
    assert (kept.read_bytes(), Path(str(kept) + ".json").read_bytes()) == before


def test_dynamo_failure_falls_back_to_the_torchscript_exporter(tmp_path, monkeypatch, capsys):
    run = nettrain.fit(dataset="two-gaussians", model="mlp", epochs=1, run_dir=tmp_path / "run", **QUIET_WITH_REPORT)
    real = torch.onnx.export

    def no_dynamo(*args, dynamo=True, **kwargs):
        if dynamo:
            raise RuntimeError("cannot capture this graph")
        return real(*args, dynamo=False, **kwargs)
    monkeypatch.setattr(torch.onnx, "export", no_dynamo)
    assert main(["export", str(run.dir)]) == 0
    assert "dynamo ONNX exporter failed (RuntimeError: cannot capture this graph)" in capsys.readouterr().err
    meta = json.loads((run.dir / "model.onnx.json").read_text())
    assert meta["exporter"].startswith("onnx (TorchScript-based") and meta["input"]["dtype"] == "float32"
    rows = np.array([[0.0, 0.0], [3.0, -1.0]], dtype=np.float32)
    session = ort.InferenceSession(str(run.dir / "model.onnx"), providers=["CPUExecutionProvider"])
    assert session.run(None, {"inputs": rows})[0] == pytest.approx(run.model.predict(rows).probs.numpy(), abs=1e-5)


def test_torchscript_export_of_a_vector_run(tmp_path):
    run = nettrain.fit(dataset="two-gaussians", model="mlp", epochs=1, run_dir=tmp_path / "run", **QUIET_WITH_REPORT)
    assert main(["export", str(run.dir), "--format", "torchscript"]) == 0
    module = torch.jit.load(str(run.dir / "model.torchscript.pt"))
    rows = torch.tensor([[0.0, 1.0], [2.0, -3.0], [1.0, 1.0]])
    assert torch.allclose(module(rows), run.model.predict(rows).probs, atol=1e-6)
    assert "model.torchscript.pt.json" in json.loads((run.dir / MANIFEST).read_text())["files"]


def predicted_without_torch(model_onnx, rows_csv, topk: int) -> list:
    """`nettrain predict model.onnx --file rows.csv --json` in a fresh process, which must not import torch: each
    row's {class: probability} of its top `topk`."""
    code = ("import sys, json; from nettrain.cli import main; rc = main(sys.argv[1:]); "
            "print(json.dumps({'rc': rc, 'torch': 'torch' in sys.modules}))")
    out = subprocess.run([sys.executable, "-c", code, "predict", str(model_onnx), "--file", str(rows_csv), "--json",
                          "--topk", str(topk)], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": SRC}, check=True)
    lines = out.stdout.strip().splitlines()
    assert json.loads(lines[-1]) == {"rc": 0, "torch": False}
    return [{p["class"]: p["probability"] for p in r["predictions"]}
            for r in json.loads("\n".join(lines[:-1]))["predictions"]]


def test_table_export_fills_and_standardizes_in_the_graph_and_predicts_csv_without_torch(tmp_path):
    from nettrain.data.table import MISSING
    from nettrain.onnxpredict import MISSING as ONNX_MISSING
    assert ONNX_MISSING == MISSING   # the torch-free reader reads missing cells as training did
    run = nettrain.fit(dataset="iris", model="mlp", epochs=2, run_dir=tmp_path / "run", **QUIET_WITH_REPORT)
    assert main(["export", str(run.dir)]) == 0
    names = json.loads((run.dir / "model.onnx.json").read_text())["input"]["columns"]
    rows = [dict(zip(names, r)) for r in ([5.1, 3.5, 1.4, 0.2], [6.9, 3.1, 5.4, 2.3], [6.0, None, 4.5, None])]
    table = tmp_path / "rows.csv"   # columns in another order, a missing cell empty, the other "NA"
    table.write_text(",".join(reversed(names)) + "\n" + "\n".join(
        ",".join("" if r[n] is None and i == 0 else "NA" if r[n] is None else str(r[n]) for i, n in
                 enumerate(reversed(names))) for r in rows) + "\n")
    got = predicted_without_torch(run.dir / "model.onnx", table, 3)
    want = run.model.predict([{k: v for k, v in r.items() if v is not None} for r in rows]).topk(3)
    assert [sorted(g) for g in got] == [sorted(c for c, _ in w) for w in want]
    assert all(g[c] == pytest.approx(p, abs=1e-5) for g, w in zip(got, want) for c, p in w)


@pytest.mark.slow   # a training, an export and a process; the numeric table export is the fast one
def test_a_table_with_text_columns_exports_its_one_hot_encoding_and_predicts_csv_without_torch(tmp_path):
    # the colour decides the class; the size is noise; the shape is a second text column
    rng = np.random.default_rng(0)
    colours = rng.choice(["red", "green", "blue"], 120)
    lines = [f"{c},{rng.normal():.3f},{rng.choice(['round', 'square'])},{'warm' if c == 'red' else 'cold'}"
             for c in colours]
    data = tmp_path / "things.csv"
    data.write_text("colour,size,shape,label\n" + "\n".join(lines) + "\n")
    run = nettrain.fit(dataset="csv", data_dir=str(data), target="label", epochs=3, lr=0.02,
                       run_dir=tmp_path / "run", **QUIET_WITH_REPORT)
    assert main(["export", str(run.dir)]) == 0   # checked against predict on held-out rows in the export itself
    record = json.loads((run.dir / "model.onnx.json").read_text())
    assert record["input"]["levels"] == {"colour": ["blue", "green", "red"], "shape": ["round", "square"]}
    # red, a missing colour (the training fill), a colour training never saw, a missing size, CSV quoting
    rows = [{"colour": "red", "size": "0.5", "shape": "round"}, {"colour": "", "size": "-1", "shape": "square"},
            {"colour": "purple", "size": "2", "shape": "round"}, {"colour": "blue", "size": "NA", "shape": "x"}]
    table = tmp_path / "rows.csv"
    table.write_text("shape,size,colour\n" + "\n".join(f"{r['shape']},{r['size']},\"{r['colour']}\"" for r in rows))
    got = predicted_without_torch(run.dir / "model.onnx", table, 2)
    want = run.model.predict(str(table)).topk(2)
    assert all(g[c] == pytest.approx(p, abs=1e-5) for g, w in zip(got, want) for c, p in w)
    assert max(got[0], key=got[0].get) == "warm" and max(got[3], key=got[3].get) == "cold"
    # the graph itself, fed level indices by hand: red = 2, -1 = unseen, NaN = missing
    session = ort.InferenceSession(str(run.dir / "model.onnx"), providers=["CPUExecutionProvider"])
    cells = np.array([[2, 0.5, 0], [-1, 2.0, 0], [np.nan, np.nan, 1]], dtype=np.float32)
    named = [{"colour": "red", "size": 0.5, "shape": "round"}, {"colour": "purple", "size": 2.0, "shape": "round"},
             {"shape": "square"}]
    order = [record["input"]["columns"].index(c) for c in ("colour", "size", "shape")]
    fed = np.empty_like(cells)
    fed[:, order] = cells
    assert session.run(None, {"rows": fed})[0] == pytest.approx(
        run.model.predict(named).probs.numpy(), abs=1e-5)


def test_predict_model_onnx_without_its_record_or_with_a_damaged_file_is_one_line(tmp_path, capsys):
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"not onnx")
    assert "preprocessing record" in one_line_error(capsys, ["predict", str(bad), "x.png"])
    (tmp_path / "model.onnx.json").write_text(json.dumps({"input": {}, "classes": ["a"]}))
    assert "not a readable ONNX model" in one_line_error(capsys, ["predict", str(bad), "x.png"])


def test_lr_flag_takes_auto_or_a_number(capsys):
    from nettrain.cli import build_parser
    assert build_parser().parse_args(["fit", "--lr", "auto"]).lr == "auto"
    assert build_parser().parse_args(["fit", "--lr", "1e-3"]).lr == 0.001
    with pytest.raises(SystemExit):
        build_parser().parse_args(["fit", "--lr", "fast"])
    assert "invalid learning_rate value: 'fast'" in capsys.readouterr().err


@pytest.mark.parametrize("model, exporter", [("fasttext", "onnx (dynamo exporter)"),
                                             # its two plain LSTM passes: dynamo captures them (packed ones it cannot)
                                             pytest.param("bilstm", "onnx (dynamo exporter)", marks=pytest.mark.slow)])
def test_text_export_takes_ids_and_lengths_and_predicts_strings_without_torch(tmp_path, model, exporter):
    from test_text import texts_and_labels, write_csv
    path = write_csv(tmp_path / "texts.csv", texts_and_labels())
    run = nettrain.fit(dataset="text", data_dir=str(path), model=model, epochs=2, run_dir=tmp_path / "run",
                       **{"model.args.embed": 8, **({"model.args.hidden": 8} if model == "bilstm" else {}),
                          **QUIET_WITH_REPORT})
    assert main(["export", str(run.dir)]) == 0
    meta = json.loads((run.dir / "model.onnx.json").read_text())
    assert meta["exporter"] == exporter and meta["input"]["names"] == ["tokens", "lengths"]
    assert meta["preprocessing"]["vocab"] == run.model.info.vocab
    texts = ["free prize call now", "see you at lunch tomorrow", "WIN cash!!! reply", "ok"]
    code = ("import sys, json; from nettrain.cli import main; rc = main(sys.argv[1:]); "
            "print(json.dumps({'rc': rc, 'torch': 'torch' in sys.modules}))")
    out = subprocess.run([sys.executable, "-c", code, "predict", str(run.dir / "model.onnx"), *texts, "--json",
                          "--topk", "2"], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": SRC},
                         check=True)
    lines = out.stdout.strip().splitlines()
    assert json.loads(lines[-1]) == {"rc": 0, "torch": False}
    printed = json.loads("\n".join(lines[:-1]))["predictions"]
    want = run.model.predict(texts).topk(2)   # texts of different lengths in one batch: the sequence axis varies
    assert [r["text"] for r in printed] == texts
    assert all(p["probability"] == pytest.approx(dict(w)[p["class"]], abs=1e-5)
               for r, w in zip(printed, want) for p in r["predictions"])


@pytest.mark.slow   # exports every LSTM layout
def test_every_lstm_export_of_a_process_keeps_its_sequence_axis_dynamic(tmp_path, capsys):
    """torch 2.14's dynamo exporter fixes an LSTM's sequence axis at the example's width from the second export of a
    process on, without a word; export then takes the TorchScript-based exporter, said in one line."""
    import onnx
    from test_text import texts_and_labels, write_csv
    from nettrain.onnxpredict import OnnxModel
    path = write_csv(tmp_path / "texts.csv", texts_and_labels())
    texts = ["ok", "the food was good " * 8]   # 1 word, and longer than any training text
    for name in ("first", "second"):
        run = nettrain.fit(dataset="text", data_dir=str(path), model="bilstm", epochs=1, run_dir=tmp_path / name,
                           **{"model.args.embed": 8, "model.args.hidden": 8, **QUIET_WITH_REPORT})
        assert main(["export", str(run.dir)]) == 0
        dims = onnx.load(str(run.dir / "model.onnx")).graph.input[0].type.tensor_type.shape.dim
        assert [bool(d.dim_param) for d in dims] == [True, True]   # batch and length
        assert OnnxModel(run.dir / "model.onnx").predict_texts(texts) == \
            pytest.approx(run.model.predict(texts).probs.numpy(), abs=1e-5)


def test_predicting_in_float32_agrees_with_the_onnx_file_on_every_input(digits_run, capsys):
    from nettrain.data import load_data
    model = nettrain.load(digits_run, precision="32")
    assert model.precision.name == "32"
    images = load_data(model.config.data).test.x.permute(0, 2, 3, 1).contiguous().numpy()
    session = ort.InferenceSession(str(digits_run / "model.onnx"), providers=["CPUExecutionProvider"])
    onnx = session.run(None, {"images": images})[0]
    ours = model.predict(images).probs.numpy()
    assert (onnx.argmax(1) == ours.argmax(1)).all() and np.abs(onnx - ours).max() < 1e-5
    with pytest.raises(nettrain.NettrainError, match="precision must be one of"):
        nettrain.load(digits_run, precision="fp8")
    assert main(["evaluate", str(digits_run), "--precision", "32"]) == 0
