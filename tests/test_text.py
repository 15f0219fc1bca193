"""The text input kind (data/text.py, models/text.py): reading, the duplicate-aware split, the vocabulary, padded and
bucketed batches, predict on strings, bad files, resume. Tiny files written by the tests; 1-3 epochs each."""
import csv
import json
import random

import pytest
import torch

import nettrain
from nettrain.cli import main
from nettrain.config import Config
from nettrain.data.text import TextData, grouped_split, load_text, read_rows
from nettrain.runs import read_metrics
from nettrain.engine.metrics import classification_metrics as class_scores

QUIET_CPU_WITH_REPORT = ["--run.progress", "none", "--run.tensorboard", "false", "--device", "cpu"]


def texts_and_labels(n=60, seed=0):
    """Two separable classes: 'good' texts and 'bad' texts, with filler words; some texts repeated."""
    rng = random.Random(seed)
    filler = ["the", "food", "was", "very", "service", "place", "and", "really", "quite", "so"]
    rows = []
    for i in range(n):
        label = "pos" if i % 2 else "neg"
        words = rng.sample(filler, 4) + [("good" if label == "pos" else "bad"), f"w{i % 7}"]
        rng.shuffle(words)
        rows.append((" ".join(words), label))
    return rows + rows[:6]   # six duplicates


def write_csv(path, rows, header=("text", "label")):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        if header:
            w.writerow(header)
        w.writerows(rows)
    return path


def data_cfg(path, **args):
    return Config().override({"data.name": "text", "data.dir": str(path), "data.args": args}).data


@pytest.fixture
def sms(tmp_path):
    return write_csv(tmp_path / "texts.csv", texts_and_labels())


def fit_args(path, run_dir, *extra, model="fasttext", epochs="2"):
    return ["fit", "--dataset", "text", "--data-dir", str(path), "--model", model, "--epochs", epochs,
            "--batch-size", "8", "--lr", "0.1", "--run-dir", str(run_dir), *QUIET_CPU_WITH_REPORT, *extra]


# ---- reading and splitting -----------------------------------------------------------------------

def test_copies_of_a_text_go_wholly_to_one_side_and_are_counted():
    texts = [f"text {i % 40}" for i in range(200)]   # 40 distinct texts, 5 copies each
    kept, held, duplicates = grouped_split(texts, 0.2, seed=3)
    assert duplicates == 160 and sorted(kept + held) == list(range(200))
    assert not {texts[i] for i in kept} & {texts[i] for i in held}
    assert len(held) == 40   # 8 whole groups: the share asked for
    assert grouped_split(texts, 0.2, seed=3)[1] == held and grouped_split(texts, 0.2, seed=4)[1] != held


def test_the_log_says_how_many_duplicates(sms):
    data = load_text(data_cfg(sms))
    assert "66 texts" in data.notes[0] and "6 of them duplicates" in data.notes[0]
    assert len(data.train) + len(data.test) == 66


def test_quotes_and_commas_inside_texts_read_correctly(tmp_path):
    path = write_csv(tmp_path / "q.csv", [('He said "hi, there", then left', "a"), ("plain", "b")])
    assert [(t, lab) for _, t, lab in read_rows(path, "text", "label")] == \
        [('He said "hi, there", then left', "a"), ("plain", "b")]


def test_tsv_headerless_tsv_and_jsonl_read_alike(tmp_path):
    rows = [("Wow... loved this place.", "1"), ('Crust is "not" good.', "0")]
    tsv = tmp_path / "a.tsv"
    tsv.write_text("label\ttext\n" + "".join(f"{lab}\t{t}\n" for t, lab in rows), encoding="utf-8")
    raw = tmp_path / "uci.txt"   # the UCI layout: sentence<TAB>label, no header, stray quotes
    raw.write_text("".join(f"{t}\t{lab}\n" for t, lab in rows), encoding="utf-8")
    jsonl = tmp_path / "a.jsonl"
    jsonl.write_text("".join(json.dumps({"text": t, "label": int(lab)}) + "\n" for t, lab in rows), encoding="utf-8")
    for path in (tsv, raw, jsonl):
        assert [(t, lab) for _, t, lab in read_rows(path, "text", "label")] == rows, path.name


def test_columns_are_settable(tmp_path):
    path = write_csv(tmp_path / "c.csv", [(t, lab) for t, lab in texts_and_labels()], header=("sentence", "y"))
    data = load_text(data_cfg(path, text_column="sentence", label_column="y"))
    assert data.info.classes == ["neg", "pos"]


def test_the_vocabulary_is_learned_from_the_training_split_only(tmp_path):
    rows = [(f"common word{i}", "a" if i % 2 else "b") for i in range(50)]
    data = load_text(data_cfg(write_csv(tmp_path / "v.csv", rows)))
    vocab = data.info.vocab
    assert vocab[:2] == ["<pad>", "<unk>"] and "common" in vocab
    # each text has its own word: the training texts' words are in, the held-out texts' are not
    assert len(vocab) == 2 + 1 + len(data.train)
    assert int((data.test.ids == 1).sum()) == len(data.test)   # each test text's own word is <unk>
    small = load_text(data_cfg(write_csv(tmp_path / "v.csv", rows), vocab_size=3, min_freq=2))
    assert small.info.vocab == ["<pad>", "<unk>", "common"]


# ---- batches -----------------------------------------------------------------------------------------

def lengths_data(n=400, seed=0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, 60, (n,), generator=g)
    ids = torch.randint(2, 50, (int(lengths.sum()),), generator=g)
    return TextData(ids, lengths, torch.randint(0, 2, (n,), generator=g))


def test_each_batch_is_padded_to_its_own_longest_text():
    data = lengths_data()
    starts = data.starts
    batches = data.batches("cpu", 16, train=True, shuffle=True, seed=1)
    widths = set()
    for (tokens, lengths), y in batches:
        assert tokens.shape == (len(y), int(lengths.max()))
        widths.add(tokens.shape[1])
        for row, n in zip(tokens, lengths.tolist()):
            assert bool((row[n:] == 0).all())   # <pad> after the text
            # the row is one of the texts, whole: find it by its length and tokens
            matches = [i for i in range(len(data)) if int(data.lengths[i]) == n and
                       torch.equal(data.ids[starts[i]:starts[i] + n], row[:n])]
            assert matches
    assert len(widths) > 1


def test_bucketing_reduces_padding_and_is_deterministic_per_seed_and_epoch():
    data = lengths_data()

    def run(bucket, seed, epoch):
        b = data.batches("cpu", 16, train=True, shuffle=True, seed=seed, bucket=bucket)
        b.set_epoch(epoch)
        return b, [(x[0].clone(), y.clone()) for x, y in b]

    plain, _ = run(False, 0, 1)
    bucketed, first = run(True, 0, 1)
    assert bucketed.padding_waste() < plain.padding_waste() / 3
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, run(True, 0, 1)[1]))
    assert [y.tolist() for _, y in first] != [y.tolist() for _, y in run(True, 0, 2)[1]]
    widths = [x.shape[1] for x, _ in first]
    assert widths != sorted(widths)   # the batches' order is shuffled, not shortest first
    assert sorted(torch.cat([y for _, y in first]).tolist()) == sorted(data.y.tolist())   # every text once


# ---- training, predicting, evaluating ---------------------------------------------------------------

def test_fit_predict_on_strings_and_evaluate(sms, tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main(fit_args(sms, run_dir, "--data.args.bucket", "true", "--run.progress", "lines",
                         epochs="3")) == 0
    out = capsys.readouterr().out
    assert "duplicates" in out and "padding is" in out and "macro" in out and "F1" in out
    assert json.loads((run_dir / "vocab.json").read_text())["tokens"][:2] == ["<pad>", "<unk>"]
    assert "vocab.json" in json.loads((run_dir / ".nettrain-run.json").read_text())["files"]
    saved = torch.load(run_dir / "best.pt", weights_only=True)["data"]
    assert saved["kind"] == "text" and saved["vocab"][:2] == ["<pad>", "<unk>"]

    model = nettrain.load(run_dir)
    rows = texts_and_labels()[:6]   # texts as it learned them (a model this small need not generalize to others)
    assert model.predict([text for text, _ in rows]).labels == [label for _, label in rows]
    assert main(["predict", str(run_dir), "really good place", "--topk", "1"]) == 0
    assert capsys.readouterr().out.startswith("really good place: pos")
    listed = tmp_path / "texts.txt"
    listed.write_text("bad service\ngood service\n", encoding="utf-8")
    assert main(["predict", str(run_dir), "--file", str(listed), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)["predictions"]
    assert [p["predictions"][0]["class"] for p in got] == ["neg", "pos"]
    result = model.evaluate()
    assert result["examples"] == 13 and result["acc"] > 0.9
    assert main(["evaluate", str(run_dir), "--data-dir", str(sms)]) == 0


def test_bilstm_trains_on_text(sms, tmp_path):
    run = nettrain.fit(dataset="text", data_dir=str(sms), model="bilstm", epochs=3, batch_size=8, lr=0.05,
                       device="cpu", run_dir=str(tmp_path / "r"), **{"model.args": {"embed": 8, "hidden": 8},
                                                                     "run.progress": "none",
                                                                     "run.tensorboard": False})
    assert run.test["acc"] > 0.8
    assert run.model.predict(["good good good"]).labels == ["pos"]


def test_a_resumed_text_run_equals_an_uninterrupted_one(sms, tmp_path):
    args = ["--scheduler", "none", "--data.args.bucket", "true", "--model.args.dropout", "0.2",
            "--model.args.embed", "8", "--model.args.hidden", "8"]
    whole, part = tmp_path / "whole", tmp_path / "part"
    assert main(fit_args(sms, whole, *args, model="bilstm", epochs="3")) == 0
    assert main(fit_args(sms, part, *args, model="bilstm", epochs="2")) == 0
    assert main(["fit", "--resume", str(part), "--epochs", "3"]) == 0
    assert [r for r in read_metrics(part / "metrics.csv")] != []
    cols = ["train_loss", "train_acc", "val_loss", "val_acc"]
    assert [[r[c] for c in cols] for r in read_metrics(part / "metrics.csv")] == \
        [[r[c] for c in cols] for r in read_metrics(whole / "metrics.csv")]
    a = torch.load(part / "last.pt", weights_only=True)["model"]
    b = torch.load(whole / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in b)


def test_scores_match_sklearn():
    metrics = pytest.importorskip("sklearn.metrics")
    y = [0, 0, 1, 1, 2, 2, 2, 0]
    p = [0, 1, 1, 1, 2, 0, 1, 0]
    cm = torch.tensor(metrics.confusion_matrix(y, p))
    ours = class_scores(cm)
    precision, recall, f1, support = metrics.precision_recall_fscore_support(y, p, zero_division=0)
    assert ours["precision"] == pytest.approx(precision.tolist()) and ours["recall"] == pytest.approx(recall.tolist())
    assert ours["f1"] == pytest.approx(f1.tolist()) and ours["support"] == support.tolist()
    assert ours["macro"]["f1"] == pytest.approx(metrics.f1_score(y, p, average="macro"))


# ---- bad input: one line each, nothing written ---------------------------------------------------------

@pytest.mark.parametrize("content, expected", [
    ("text,label\nfine text,a\n,b\nmore,a\n", "1 empty text, the first at line 3"),
    ("text,target\nfine,a\nother,b\n", "no column 'label' (its columns: text, target)"),
    ("text,label\none,a\ntwo,a\nthree,a\n", "one class only ('a')"),
    ("text,label\none,a\ntwo,\nthree,b\n", "1 text without a label, the first at line 3"),
    ("text,label\none,a\ntwo, with a comma,b\nthree,a\n", "line 3 has 3 fields, the header 2"),
])
def test_bad_files_are_one_line_and_write_nothing(tmp_path, capsys, content, expected):
    path = tmp_path / "bad.csv"
    path.write_text(content, encoding="utf-8")
    run_dir = tmp_path / "run"
    assert main(fit_args(path, run_dir)) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and err.startswith("nettrain: error:") and len(err.splitlines()) == 1
    assert not run_dir.exists()


def test_unknown_text_option_is_refused(sms, tmp_path, capsys):
    assert main(fit_args(sms, tmp_path / "run", "--data.args.bukcet", "true")) == 2
    assert "unknown key data.args.bukcet" in capsys.readouterr().err


def test_data_args_of_a_dataset_that_takes_none_are_refused(tmp_path, capsys):
    assert main(["fit", "--dataset", "two-gaussians", "--model", "mlp", "--epochs", "1", "--data.args.bucket", "true",
                 "--run-dir", str(tmp_path / "run"), *QUIET_CPU_WITH_REPORT]) == 2
    assert "dataset 'two-gaussians' takes no data.args (got bucket)" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("name", ["bilstm", "fasttext"])
def test_text_models_ignore_padding_and_train(name):
    """Extra padding changes nothing: the LSTM runs over packed sequences, the poolings and means skip padding."""
    from nettrain.models import build_model
    torch.manual_seed(0)
    model = build_model(name, [30], 3, {}).eval()
    tokens = torch.tensor([[5, 6, 7, 0], [8, 9, 0, 0]])
    lengths = torch.tensor([3, 2])
    wider = torch.cat([tokens, torch.zeros(2, 5, dtype=torch.long)], 1)
    assert torch.allclose(model(tokens, lengths), model(wider, lengths), atol=1e-6)
    model.train()
    out = model(tokens, lengths)
    assert out.shape == (2, 3)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


# ---- padding waste: a column of metrics.csv, the epoch log and TensorBoard ------------------------------------

def waste_by_hand(lengths: list, batch_size: int) -> float:
    """1 - tokens / positions of batches cut from `lengths` in order, each as wide as its longest text."""
    chunks = [lengths[i:i + batch_size] for i in range(0, len(lengths), batch_size)]
    return 1 - sum(lengths) / sum(max(c) * len(c) for c in chunks)


@pytest.mark.parametrize("drop_last", [False, True])
def test_each_epochs_padding_waste_is_that_of_the_batches_it_made(drop_last):
    data = lengths_data(n=100)
    for bucket in (False, True):
        batches = data.batches("cpu", 16, train=True, shuffle=True, seed=2, bucket=bucket, drop_last=drop_last)
        assert batches.epoch_metrics() == {}   # before any pass: nothing to report
        seen = set()
        for epoch in (1, 2):
            batches.set_epoch(epoch)
            made = [(int(lengths.sum()), tokens.numel()) for (tokens, lengths), _ in batches]
            expected = 1 - sum(u for u, _ in made) / sum(p for _, p in made)
            assert batches.epoch_metrics() == {"padding_waste": round(expected, 4)}
            seen.add(batches.epoch_metrics()["padding_waste"])
        # shuffled unbucketed: each epoch's own batches, not one figure for the run (bucketed, 100 texts are one
        # window, sorted alike every epoch)
        assert len(seen) == (1 if bucket else 2)


def test_metrics_csv_log_and_tensorboard_have_the_padding_waste(tmp_path, capsys):
    # lengths 1..9 words in a scrambled order: unbucketed batches of 4 mix short and long texts
    words = [7, 2, 9, 1, 5, 3, 8, 4, 6, 2, 9, 1, 6, 3, 8, 5, 7, 4, 1, 9]
    rows = [(" ".join(["good" if i % 2 else "bad"] + [f"w{j}" for j in range(1, n)]), "pos" if i % 2 else "neg")
            for i, n in enumerate(words)]
    path = write_csv(tmp_path / "t.csv", rows)
    train_lengths = load_text(data_cfg(path)).train.lengths.tolist()   # the training split, in its order
    plain = waste_by_hand(train_lengths, 4)
    bucketed = waste_by_hand(sorted(train_lengths), 4)   # one window of 50 batches: sorted by length throughout
    assert bucketed < plain
    for bucket, expected in (("false", plain), ("true", bucketed)):
        run_dir = tmp_path / f"run-{bucket}"
        assert main(fit_args(path, run_dir, "--batch-size", "4", "--train.shuffle", "false", "--data.args.bucket",
                             bucket, "--run.progress", "lines", "--run.tensorboard", "true", "--run.report", "false",
                             epochs="2")) == 0
        rows = read_metrics(run_dir / "metrics.csv")
        assert [r["padding_waste"] for r in rows] == [round(expected, 4)] * 2
        out = capsys.readouterr().out
        assert f"padding {expected:.1%}" in out
        assert " texts/s " in out and "img/s" not in out   # a text run's speed counts texts, not images
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
        events = EventAccumulator(str(run_dir / "tensorboard")).Reload()
        assert [e.value for e in events.Scalars("data/padding_waste")] == \
            pytest.approx([round(expected, 4)] * 2, abs=1e-7)   # stored as float32


def test_a_run_without_the_padding_column_still_reads_and_reports(tmp_path):
    """metrics.csv of a run made before the column (or of an image run: left empty) reads as it did."""
    from nettrain.report.html import _epochs_table
    from nettrain.report.read import read
    old = tmp_path / "old"
    old.mkdir()
    (old / "metrics.csv").write_text("epoch,train_loss,train_acc,val_loss,val_acc,val_mae,lr,seconds,images_per_s,"
                                     "data_wait,val_split\n1,0.5,0.8,0.4,0.9,,0.001,1.0,100.0,0.01,test\n")
    rec = read(old)
    assert rec.metrics[0]["train_loss"] == 0.5 and rec.metrics[0].get("padding_waste") is None
    assert "padding" not in _epochs_table(rec)
    (old / "metrics.csv").write_text("epoch,train_loss,train_acc,val_loss,val_acc,val_mae,lr,seconds,images_per_s,"
                                     "data_wait,val_split,padding_waste\n1,0.5,0.8,0.4,0.9,,0.001,1.0,100.0,0.01,"
                                     "test,0.125\n")
    rec = read(old)
    assert rec.metrics[0]["padding_waste"] == 0.125 and "12.50%" in _epochs_table(rec)


# ---- resume after kill -9: exact, as for images -----------------------------------------------------------------

def varied_texts(n=400, seed=5):
    """Texts of 2-40 words from 300 (so bucketing has lengths to sort), the class from which of two words it holds."""
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(300)]
    rows = []
    for i in range(n):
        text = rng.choices(words, k=rng.randint(2, 40)) + ["good" if i % 2 else "bad"]
        rng.shuffle(text)
        rows.append((" ".join(text), "pos" if i % 2 else "neg"))
    return rows


# two trainings and a killed process; test_a_resumed_text_run_equals_an_uninterrupted_one is the fast one
@pytest.mark.slow
def test_a_text_run_killed_with_sigkill_resumes_to_the_uninterrupted_run_bit_for_bit(tmp_path):
    """As tests/test_resume.py does for images: the same run uninterrupted and killed (SIGKILL, in another process,
    whose Python hash seed differs: a vocabulary or split that followed set or dict order would differ) after
    epoch 1's checkpoint, then resumed; every metric but the timings and the final weights are equal."""
    import os
    import subprocess
    import sys
    from conftest import blocker
    from test_resume import data_rows, kill_when
    path = write_csv(tmp_path / "texts.csv", varied_texts())
    args = ["--model.args.embed", "16", "--model.args.hidden", "16", "--model.args.dropout", "0.2", "--batch-size", "4",
            "--data.args.bucket", "true", "--data.val_fraction", "0.2", "--train.threads", "1", "--lr", "0.01",
            "--run.report", "false"] + blocker(tmp_path)
    reference = tmp_path / "reference"
    assert main(fit_args(path, reference, *args, model="bilstm", epochs="2")) == 0
    killed = tmp_path / "killed"
    # held at step 83 (320 training texts, 80 steps an epoch): in the middle of epoch 2
    env = {**os.environ, "PYTHONHASHSEED": "123", "NETTRAIN_TEST_BLOCK_AT_STEP": "83",
           "NETTRAIN_TEST_BLOCKED": str(tmp_path / "held")}
    proc = subprocess.Popen([sys.executable, "-m", "nettrain", *fit_args(path, killed, *args, model="bilstm",
                                                                         epochs="2")],
                            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    kill_when(proc, (tmp_path / "held").exists, "step 83")
    assert data_rows(killed / "metrics.csv") == 1, "epoch 2 had already finished when the kill came"
    assert main(["fit", "--resume", str(killed)]) == 0
    timing = {"seconds", "examples_per_s", "data_wait"}

    def numbers(run_dir):
        return [{k: v for k, v in row.as_dict().items() if k not in timing}
                for row in read_metrics(run_dir / "metrics.csv")]
    assert len(numbers(killed)) == 2 and numbers(killed) == numbers(reference)
    a = torch.load(killed / "last.pt", weights_only=True)["model"]
    b = torch.load(reference / "last.pt", weights_only=True)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in b)
    assert (killed / "vocab.json").read_text() == (reference / "vocab.json").read_text()


def test_fasttext_starts_as_fasttext_does_and_its_dropout_acts_in_training_only():
    """Input vectors uniform in +-1/embed and a zero output layer (fastText's own start): with torch's N(0, 1)
    embeddings a text's mean was noise of norm ~8 that small data never outweighed (hold-out accuracy on the
    sentiment files 73.5% against 77.2%, benchmarks/sentiment.py --select)."""
    from nettrain.errors import ModelError
    from nettrain.models import build_model
    torch.manual_seed(0)
    model = build_model("fasttext", [30], 2, {"embed": 8, "dropout": 0.5})
    assert all(float(t.weight.detach().abs().max()) <= 1 / 8 for t in (model.words, model.bigrams))
    assert not model.words.weight[0].any()   # <pad> adds nothing
    tokens, lengths = torch.tensor([[5, 6, 7], [8, 9, 0]]), torch.tensor([3, 2])
    assert not model(tokens, lengths).any()   # no class preferred before training
    torch.nn.init.normal_(model.classifier.weight)
    model.eval()
    plain = build_model("fasttext", [30], 2, {"embed": 8})
    plain.load_state_dict(model.state_dict())
    assert torch.equal(model(tokens, lengths), plain.eval()(tokens, lengths))   # evaluation: no dropout
    model.train()
    assert not torch.equal(model(tokens, lengths), plain(tokens, lengths))
    with pytest.raises(ModelError, match=r"argument dropout must be in \[0, 1\), got 1"):
        build_model("fasttext", [30], 2, {"dropout": 1})


@pytest.mark.parametrize("layers, pool", [(1, "max"), (2, "both"), (3, "mean")])
def test_bilstm_outputs_are_those_of_packed_sequences(layers, pool):
    """Padding never reaches a text's outputs: the two plain passes (the backward one over each text reversed within
    its length) give what the LSTM gives over packed sequences, and the pooled prediction does not depend on how much
    padding the batch has."""
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
    from nettrain.models.text import BiLSTM
    torch.manual_seed(0)
    model = BiLSTM(50, 3, 8, 6, layers, pool, 0.0).eval()
    lengths = torch.tensor([11, 1, 5, 3, 11, 2, 8])
    tokens = torch.randint(1, 50, (7, 11)).masked_fill(torch.arange(11) >= lengths[:, None], 0)
    x = model.embedding(tokens)
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    want, _ = pad_packed_sequence(model.lstm(packed)[0], batch_first=True, total_length=11)
    inside = (torch.arange(11) < lengths[:, None]).unsqueeze(2)
    got = model.directions(x, lengths)
    assert torch.allclose(got.masked_fill(~inside, 0), want, atol=1e-6)
    wider = torch.cat([tokens, torch.zeros(7, 5, dtype=torch.long)], 1)   # more padding: the same predictions
    assert torch.allclose(model(tokens, lengths), model(wider, lengths), atol=1e-6)


def test_predict_takes_texts_after_its_options(sms, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(fit_args(sms, run, "--run.report", "false")) == 0
    capsys.readouterr()
    assert main(["predict", str(run), "--topk", "1", "the food was good", "the service was bad"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()   # argparse alone gives '*' inputs only their first run
    assert [line.split(":")[0] for line in lines] == ["the food was good", "the service was bad"]


# ---- a folder of class folders, one text a .txt file ------------------------------------------------

def write_folder(root, rows):
    """Keras' text_dataset_from_directory layout: root/<class>/<n>.txt, one text each."""
    for i, (text, label) in enumerate(rows):
        (root / label).mkdir(parents=True, exist_ok=True)
        (root / label / f"{i:03d}.txt").write_text(text, encoding="utf-8")
    return root


def test_a_folder_of_class_folders_reads_as_the_same_texts_in_a_file(tmp_path):
    rows = texts_and_labels()
    folder = write_folder(tmp_path / "reviews", rows)
    (folder / "README.md").write_text("not a text: only class folders' .txt files are read")
    from_folder = load_text(data_cfg(folder))
    # the file holding the same texts in the folder's order (by class, then by file name)
    ordered = sorted(((f"{label}/{i:03d}.txt", text, label) for i, (text, label) in enumerate(rows)))
    assert read_rows(folder, "text", "label") == ordered
    from_file = load_text(data_cfg(write_csv(tmp_path / "same.csv", [(t, lab) for _, t, lab in ordered])))
    assert from_folder.info.vocab == from_file.info.vocab and from_folder.info.classes == ["neg", "pos"]
    for a, b in ((from_folder.train, from_file.train), (from_folder.test, from_file.test)):
        assert torch.equal(a.ids, b.ids) and torch.equal(a.y, b.y) and a.texts == b.texts


@pytest.mark.parametrize("layout, expected", [
    ({"pos/1.txt": "good", "pos/2.txt": "fine"}, "holds .txt files in one class folder only ('pos')"),
    ({"pos/1.txt": "good", "neg/1.txt": "  \n", "neg/2.txt": "bad"}, "1 empty text, the first at neg/1.txt"),
    ({"pos/1.md": "good", "notes.txt": "x"}, "holds no .txt files in class folders (its folders: pos)"),
])
def test_a_bad_folder_is_one_line_naming_the_file(tmp_path, capsys, layout, expected):
    for name, text in layout.items():
        (tmp_path / "texts" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "texts" / name).write_text(text)
    assert main(fit_args(tmp_path / "texts", tmp_path / "run")) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and err.startswith("nettrain: error:") and len(err.splitlines()) == 1
    assert not (tmp_path / "run").exists()


# ---- data.args.tokenizer chars: the character-level tutorial's names ----------------------------------

def names(n=150, seed=0):
    """Made-up surnames whose language is in their letters: every name occurs once, so no word of the test split is
    in a word vocabulary; its characters are."""
    rng = random.Random(seed)
    endings = {"russian": ["ov", "ev", "in"], "spanish": ["ez", "es", "az"], "english": ["son", "ton", "ley"]}
    rows = []
    for i in range(n):
        lang = list(endings)[i % 3]
        stem = "".join(rng.choice("bdfgklmnprstv") + rng.choice("aeiou") for _ in range(rng.randint(1, 3)))
        rows.append((stem.capitalize() + rng.choice(endings[lang]), lang))
    return rows


@pytest.mark.slow   # trains, then predicts and exports in processes of their own
def test_a_character_tokenizer_learns_what_words_cannot_and_predict_and_export_use_it(tmp_path, capsys):
    path = write_csv(tmp_path / "names.csv", names())
    scores = {}
    for tokenizer in ("words", "chars"):
        run = nettrain.fit(dataset="text", data_dir=str(path), model="bilstm", epochs=25, lr=0.02, batch_size=16,
                           run_dir=tmp_path / tokenizer, **{"data.args": {"tokenizer": tokenizer}, "device": "cpu",
                                                            "run.progress": "none", "run.tensorboard": False})
        scores[tokenizer] = run.test["acc"]
    assert scores["chars"] >= 0.9 and scores["words"] < 0.6   # each test name is <unk> as a word
    vocab = json.loads((tmp_path / "chars" / "vocab.json").read_text())["tokens"]
    assert "v" in vocab and "V" not in vocab[:2] and all(len(t) == 1 for t in vocab[2:])   # characters, case kept
    model = nettrain.load(tmp_path / "chars")
    assert model.predict(["Petrov", "Gonzalez", "Hamilton"]).labels == ["russian", "spanish", "english"]
    pytest.importorskip("onnxruntime")   # the test extra installs it
    assert main(["export", str(tmp_path / "chars")]) == 0
    from nettrain.onnxpredict import OnnxModel
    onnx = OnnxModel(tmp_path / "chars" / "model.onnx")
    assert onnx.meta["preprocessing"]["tokenizer"] == "chars"
    texts = ["Petrov", "Gonzalez", "Hamilton", "Zzyzx"]   # an unseen letter too
    assert onnx.predict_texts(texts) == pytest.approx(model.predict(texts).probs.numpy(), abs=1e-5)


def test_an_unknown_tokenizer_is_refused_naming_the_choices(sms, tmp_path, capsys):
    assert main(fit_args(sms, tmp_path / "run", "--data.args.tokenizer", "bytes")) == 2
    assert "data.args.tokenizer must be one of words, chars, got 'bytes'" in capsys.readouterr().err
