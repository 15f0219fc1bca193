"""Text classification from a CSV: nettrain's `bilstm` and `fasttext` against the hand-written loop
(benchmarks/reference_text_loop.py: Dataset + numpy padding collate + DataLoader + the same BiLSTM, unpacked) and
scikit-learn's TF-IDF + LogisticRegression, on the staged UCI SMS Spam file with nettrain's seeded, duplicate-aware
80/20 split; then the three UCI sentiment files (amazon, imdb, yelp: 1,000 sentences each).

    python benchmarks/text.py [DATA] [--threads N]

Each side is one child process, timed whole (spawn to exit: imports, reading, training, the test), one after the
other; the table gives test accuracy, the F1 of the positive class (spam, or 1) and the seconds. All sides test on
the same 1,115 SMS texts (the split is nettrain's; the sklearn and reference sides import it to use the same rows).
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import data_dir, header, nettrain_cmd, run_timed, table  # noqa: E402

HERE = Path(__file__).resolve().parent
# the bilstm recipe: min_freq 2 makes rare words (phone numbers, one-off spellings) <unk>, a token the model learns
BILSTM = ["--model", "bilstm", "--model.args.embed", "128", "--batch-size", "64", "--lr", "0.005",
          "--data.args.min_freq", "2", "--epochs", "6"]
# fastText overfits the SMS file after about 3 epochs; on 800 sentences, recipes/sentiment.yaml's setting (chosen
# on the training split: benchmarks/sentiment.py --select; here with bucketing, as every side of this table)
FASTTEXT = {"sms": ["--model", "fasttext", "--batch-size", "32", "--lr", "0.02", "--data.args.min_freq", "2",
                    "--epochs", "3"],
            "sentiment": ["--model", "fasttext", "--model.args.embed", "16", "--model.args.dropout", "0.5",
                          "--batch-size", "32", "--lr", "0.02", "--epochs", "10"]}


def scores(confusion_csv: Path) -> tuple:
    """(accuracy, F1 of the last class) from a run's confusion_matrix.csv."""
    with open(confusion_csv, newline="") as f:
        rows = list(csv.reader(f))[1:]
    cm = [[int(v) for v in r[1:]] for r in rows]
    total = sum(map(sum, cm))
    hits = sum(cm[i][i] for i in range(len(cm)))
    k = len(cm) - 1
    tp, predicted, actual = cm[k][k], sum(r[k] for r in cm), sum(cm[k])
    return hits / total, 2 * tp / max(1, predicted + actual)


def nettrain_side(file: Path, args: list, env: dict, tmp: Path) -> dict:
    run_dir = tmp / f"{file.stem}-{args[1]}"
    t = run_timed(nettrain_cmd() + ["fit", "--dataset", "text", "--data-dir", file, *args,
                                    "--data.args.bucket", "true", "--device", "cpu", "--run-dir", run_dir,
                                    "--run.progress", "none", "--run.tensorboard", "false",
                                    # the work the hand-written loop does: test once at the end, draw no report
                                    "--train.val_every", "0", "--run.report", "false"], env=env).check()
    acc, f1 = scores(run_dir / "confusion_matrix.csv")
    with open(run_dir / "metrics.csv", newline="") as f:
        train_seconds = sum(float(r["seconds"]) for r in csv.DictReader(f))
    return {"acc": acc, "f1": f1, "seconds": t.wall, "train_seconds": train_seconds}


def reference_side(file: Path, env: dict) -> dict:
    """The hand-written loop with the bilstm recipe's sizes and hyperparameters."""
    t = run_timed([sys.executable, HERE / "reference_text_loop.py", file, "--epochs", 6, "--embed", 128,
                   "--batch-size", 64, "--lr", 0.005, "--min-freq", 2], env=env).check()
    out = json.loads(t.out.strip().splitlines()[-1])
    return {"acc": out["acc"], "f1": list(out["f1"].values())[-1], "seconds": t.wall,
            "train_seconds": out["train_seconds"]}


def tfidf_side(file: Path, env: dict) -> dict:
    t = run_timed([sys.executable, __file__, "--tfidf", file], env=env).check()
    out = json.loads(t.out.strip().splitlines()[-1])
    return {**out, "seconds": t.wall}


def tfidf(file: str):
    """The child process of the TF-IDF + LogisticRegression side: prints one JSON line."""
    import time
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score
    from nettrain.data.text import class_names, grouped_split, read_rows
    start = time.perf_counter()
    rows = read_rows(Path(file), "text", "label")
    texts, labels = [t for _, t, _ in rows], [lab.strip() for _, _, lab in rows]
    classes = class_names(labels)
    train, test, _ = grouped_split(texts, 0.2, 0)
    vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
    x_train = vec.fit_transform([texts[i] for i in train])
    clf = LogisticRegression(C=10, max_iter=1000).fit(x_train, [labels[i] for i in train])
    pred = clf.predict(vec.transform([texts[i] for i in test]))
    truth = [labels[i] for i in test]
    print(json.dumps({"acc": accuracy_score(truth, pred), "f1": f1_score(truth, pred, pos_label=classes[-1]),
                      "train_seconds": time.perf_counter() - start}))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", nargs="?")
    ap.add_argument("--threads", type=int, help="OMP_NUM_THREADS for every side (default: the environment's)")
    ap.add_argument("--tfidf", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.tfidf:
        return tfidf(a.tfidf)
    root = data_dir(a.data)
    env = {"OMP_NUM_THREADS": str(a.threads)} if a.threads else {}
    header("text classification: SMS Spam and the UCI sentiment sentences")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        sms = root / "sms-spam" / "sms_spam.csv"
        sides = {"nettrain bilstm": lambda f: nettrain_side(f, BILSTM, env, Path(tmp)),
                 "nettrain fasttext": lambda f: nettrain_side(
                     f, FASTTEXT["sms" if f == sms else "sentiment"], env, Path(tmp)),
                 "hand-written BiLSTM loop": lambda f: reference_side(f, env),
                 "TF-IDF + LogisticRegression": lambda f: tfidf_side(f, env)}
        for name, side in sides.items():
            r = side(sms)
            rows.append(["sms-spam", name, f"{r['acc']:.2%}", f"{r['f1']:.4f}", f"{r['seconds']:.1f}",
                         f"{r['train_seconds']:.1f}"])
            print(table(["data", "side", "test acc", "F1 (spam / 1)", "seconds (process)", "seconds (training)"],
                        rows[-1:]).splitlines()[-1], flush=True)
        for name in ("amazon", "imdb", "yelp"):
            file = root / "sentiment-sentences" / f"{name}.csv"
            for side in ("nettrain bilstm", "nettrain fasttext", "TF-IDF + LogisticRegression"):
                r = sides[side](file)
                rows.append([name, side, f"{r['acc']:.2%}", f"{r['f1']:.4f}", f"{r['seconds']:.1f}",
                             f"{r['train_seconds']:.1f}"])
                print(table(["data", "side", "test acc", "F1", "s", "s"], rows[-1:]).splitlines()[-1], flush=True)
    print()
    print(table(["data", "side", "test acc", "F1 (spam / 1)", "seconds (process)", "seconds (training)"], rows))


if __name__ == "__main__":
    main()
