"""nettrain with no options against scikit-learn's linear baseline on the same split(s): the training settings a
table or a text run takes where its user sets none (Kind.training in kinds/table.py and kinds/text.py).

    python benchmarks/defaults.py [DATA]              # the table: both sides measured in this one run
    python benchmarks/defaults.py [DATA] --select     # how the defaults were chosen, without a test row

The table: iris, wine, breast-cancer (test accuracy) and diabetes (test R^2) on nettrain's seed-0 split against
LogisticRegression / LinearRegression fitted on the very rows nettrain trained on (standardized as it standardized
them); the three UCI sentiment files on 5 seeded splits (data.split_seed 0-4, 200 test sentences each) and the SMS
file on its seed-0 split against TF-IDF (words and bigrams, sublinear tf) + LogisticRegression(C=10)
(benchmarks/sentiment.py); and `--model bilstm` alone on the SMS file against benchmarks/text.py's tuned setting.
nettrain's side is `nettrain fit --dataset NAME` (with --data-dir FILE and the split seed for a text file) and
nothing else but where the run goes and that it prints and draws nothing.

--select scores candidate settings on the TRAINING split only: each table's training rows (of the seed-0 split) as
a CSV file of their own, held out 80/20 five times (data.split_seed 1-5), and each sentiment file's training
sentences held out six times (1-6), as benchmarks/sentiment.py --select does; the linear baseline is scored on the
same hold-outs. A table's default is the candidate whose worst table is closest to the linear baseline, a text's
the candidate with the best mean accuracy; the test splits are read only by the table.
One torch thread, so that the numbers repeat.
"""
from __future__ import annotations

import argparse
import csv
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import data_dir, header, table  # noqa: E402
from sentiment import FILES, split, tfidf_accuracy, training_file  # noqa: E402

TABLES = ("iris", "wine", "breast-cancer", "diabetes")
QUIET = {"run.progress": "none", "run.tensorboard": False, "run.report": False, "train.threads": 1,
         "device": "cpu", "overwrite": True}
TABLE_FOLDS, TEXT_FOLDS, SPLITS = (1, 2, 3, 4, 5), (1, 2, 3, 4, 5, 6), 5
# what --select compares; the first of each is the generic default (config.py) every kind had before
TABLE_CANDIDATES = {
    "generic: mlp [128], Adam 0.001, 10 epochs of 64": {"optimizer": "adam", "lr": 0.001, "epochs": 10,
                                                        "batch_size": 64},
    "mlp [32] dropout 0.3, AdamW 0.01 wd 0.1, 50 epochs of 32 (recipes/tables.yaml)": {
        "model.args": {"hidden": [32], "dropout": 0.3}, "optimizer": "adamw", "lr": 0.01, "weight_decay": 0.1,
        "epochs": 50, "batch_size": 32},
    "mlp [32] dropout 0.3, AdamW 0.01 wd 0.1, 100 epochs of 32": {
        "model.args": {"hidden": [32], "dropout": 0.3}, "optimizer": "adamw", "lr": 0.01, "weight_decay": 0.1,
        "epochs": 100, "batch_size": 32},
    "mlp [64], Adam 0.01, 50 epochs of 32": {"model.args": {"hidden": [64]}, "optimizer": "adam", "lr": 0.01,
                                            "epochs": 50, "batch_size": 32},
    "mlp [32], AdamW 0.01 wd 0.1, 50 epochs of 32": {
        "model.args": {"hidden": [32]}, "optimizer": "adamw", "lr": 0.01, "weight_decay": 0.1, "epochs": 50,
        "batch_size": 32},
    "mlp [32] dropout 0.1, AdamW 0.01 wd 0.1, 50 epochs of 32": {
        "model.args": {"hidden": [32], "dropout": 0.1}, "optimizer": "adamw", "lr": 0.01, "weight_decay": 0.1,
        "epochs": 50, "batch_size": 32},
    "linear (mlp []), AdamW 0.01 wd 0.01, 50 epochs of 32": {
        "model.args": {"hidden": []}, "optimizer": "adamw", "lr": 0.01, "weight_decay": 0.01, "epochs": 50,
        "batch_size": 32},
    "mlp [16] dropout 0.3, AdamW 0.01 wd 0.1, 50 epochs of 32": {
        "model.args": {"hidden": [16], "dropout": 0.3}, "optimizer": "adamw", "lr": 0.01, "weight_decay": 0.1,
        "epochs": 50, "batch_size": 32},
    "mlp [32] dropout 0.3, AdamW 0.01 wd 0.5, 50 epochs of 32": {
        "model.args": {"hidden": [32], "dropout": 0.3}, "optimizer": "adamw", "lr": 0.01, "weight_decay": 0.5,
        "epochs": 50, "batch_size": 32},
    "mlp [32] dropout 0.3, AdamW 0.003 wd 0.1, 50 epochs of 32": {
        "model.args": {"hidden": [32], "dropout": 0.3}, "optimizer": "adamw", "lr": 0.003, "weight_decay": 0.1,
        "epochs": 50, "batch_size": 32},
}
FASTTEXT = {"model": "fasttext", "optimizer": "adam", "scheduler": "cosine"}
TEXT_CANDIDATES = {
    "generic: fasttext embed 64, Adam 0.001, 10 epochs of 64": {**FASTTEXT, "lr": 0.001, "epochs": 10,
                                                               "batch_size": 64},
    "fasttext embed 16 dropout 0.5, Adam 0.02, 10 epochs of 32 (recipes/sentiment.yaml)": {
        **FASTTEXT, "model.args": {"embed": 16, "dropout": 0.5}, "lr": 0.02, "epochs": 10, "batch_size": 32},
    "fasttext embed 16 dropout 0.5, Adam 0.05, 10 epochs of 32": {
        **FASTTEXT, "model.args": {"embed": 16, "dropout": 0.5}, "lr": 0.05, "epochs": 10, "batch_size": 32},
}


def fit(options: dict, work: Path, **data):
    import nettrain
    return nettrain.fit(run_dir=str(work / "run"), **{**QUIET, **data, **options})


def score(run) -> float:
    return run.test["acc"] if "acc" in run.test else run.test["r2"]


def linear(data) -> float:
    """LogisticRegression's accuracy (classes) or LinearRegression's R^2 on nettrain's own encoded split."""
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.metrics import r2_score
    xtr, ytr, xte, yte = data.train.x.numpy(), data.train.y.numpy(), data.test.x.numpy(), data.test.y.numpy()
    if data.info.task == "classification":
        return LogisticRegression(max_iter=5000).fit(xtr, ytr).score(xte, yte)
    return r2_score(yte.ravel(), LinearRegression().fit(xtr, ytr.ravel()).predict(xte))


def load(**options):
    from nettrain.config import Config
    from nettrain.data import load_data
    return load_data(Config().override(options).data)


def table_training_file(name: str, work: Path) -> Path:
    """The training rows of `name`'s seed-0 split, as read (before standardizing), as a CSV file of their own."""
    from nettrain.data.table import cells
    data = load(dataset=name)
    prep = data.info.table
    target = prep["target"]
    x = cells(data.train.x, prep).tolist()
    y = [data.info.classes[k] for k in data.train.y.tolist()] if target["task"] == "classification" else \
        [v * target["std"] + target["mean"] for v in data.train.y.flatten().tolist()]
    path = work / f"{name}-train.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([c["name"] for c in prep["columns"]] + ["target"])
        w.writerows([*map(repr, row), repr(v) if isinstance(v, float) else v] for row, v in zip(x, y))
    return path


def select_tables(work: Path):
    files = {name: table_training_file(name, work) for name in TABLES}
    head = ["setting (hold-out score on the training split)", *TABLES, "worst gap to linear"]
    rows = []
    for name, options in [("LogisticRegression / LinearRegression", None)] + list(TABLE_CANDIDATES.items()):
        means = []
        for f in files.values():
            where = {"dataset": "csv", "data_dir": str(f), "target": "target"}
            scores = [linear(load(**where, **{"data.split_seed": s})) if options is None else
                      score(fit(options, work, **where, **{"data.split_seed": s})) for s in TABLE_FOLDS]
            means.append(statistics.mean(scores))
        if options is None:
            base = means
        rows.append([name] + [f"{m:.4f}" for m in means] + [f"{min(a - b for a, b in zip(means, base)):+.4f}"])
        print(table(head, rows[-1:]).splitlines()[-1], flush=True)
    print()
    print(table(head, rows))


def select_texts(root: Path, work: Path):
    from nettrain.data.text import read_rows
    files = {name: training_file(root / "sentiment-sentences" / f"{name}.csv", work) for name in FILES}
    head = ["setting (hold-out accuracy on the training split)", *FILES, "mean"]
    rows = []
    for name, options in [("TF-IDF + LogisticRegression", None)] + list(TEXT_CANDIDATES.items()):
        means = []
        for f in files.values():
            found = read_rows(f, "text", "label")
            scores = [tfidf_accuracy(*split(f, s, found)) if options is None else
                      score(fit(options, work, dataset="text", data_dir=str(f), **{"data.split_seed": s}))
                      for s in TEXT_FOLDS]
            means.append(statistics.mean(scores))
        rows.append([name] + [f"{m:.2%}" for m in means] + [f"{statistics.mean(means):.2%}"])
        print(table(head, rows[-1:]).splitlines()[-1], flush=True)
    print()
    print(table(head, rows))


def table_rows(work: Path) -> list:
    rows = []
    for name in TABLES:
        ours, theirs = score(fit({}, work, dataset=name)), linear(load(dataset=name))
        what = "accuracy" if name != "diabetes" else "R^2"
        shown = (lambda v: f"{v:.2%}") if name != "diabetes" else (lambda v: f"{v:.4f}")
        rows.append([name, f"test {what}, seed-0 split", shown(ours), shown(theirs),
                     "LogisticRegression" if name != "diabetes" else "LinearRegression",
                     "yes" if ours >= theirs else "NO"])
        print(table(HEAD, rows[-1:]).splitlines()[-1], flush=True)
    return rows


def text_rows(root: Path, work: Path) -> list:
    from nettrain.data.text import read_rows
    files = {name: root / "sentiment-sentences" / f"{name}.csv" for name in FILES}
    rows = []
    for name, file in files.items():
        found = read_rows(file, "text", "label")
        ours = [score(fit({}, work, dataset="text", data_dir=str(file), **{"data.split_seed": s}))
                for s in range(SPLITS)]
        theirs = [tfidf_accuracy(*split(file, s, found)) for s in range(SPLITS)]
        spread = (lambda xs: f"{statistics.mean(xs):.2%} +- {statistics.stdev(xs):.2%}")
        rows.append([name, f"test accuracy, mean of {SPLITS} splits", spread(ours), spread(theirs),
                     "TF-IDF + LogisticRegression", "yes" if statistics.mean(ours) >= statistics.mean(theirs) else "NO"])
        print(table(HEAD, rows[-1:]).splitlines()[-1], "| per split:", " ".join(f"{a:.1%}" for a in ours), "/",
              " ".join(f"{a:.1%}" for a in theirs), flush=True)
    return rows + sms_rows(root / "sms-spam" / "sms_spam.csv", work)


def sms_rows(file: Path, work: Path) -> list:
    """The SMS file's seed-0 split: fasttext with no options against TF-IDF + LR; `--model bilstm` alone against
    benchmarks/text.py's tuned setting (98.57%, spam F1 0.9433 there)."""
    from nettrain.data.text import read_rows
    theirs = tfidf_accuracy(*split(file, 0, read_rows(file, "text", "label")))
    rows = []
    for model, ref, ref_name in ((None, f"{theirs:.2%}", "TF-IDF + LogisticRegression"),
                                 ("bilstm", "98.57%, F1 0.9433", "bilstm, tuned (benchmarks/text.py)")):
        run = fit({"model": model} if model else {}, work, dataset="text", data_dir=str(file))
        confusion = run.test["confusion"]
        f1 = 2 * int(confusion[1, 1]) / int(confusion[:, 1].sum() + confusion[1].sum())
        met = run.test["acc"] >= theirs if model is None else run.test["acc"] >= 0.985 and f1 >= 0.93
        rows.append([f"sms-spam{' --model bilstm' if model else ''}", "test accuracy, seed-0 split",
                     f"{run.test['acc']:.2%}, F1 {f1:.4f}", ref, ref_name, "yes" if met else "NO"])
        print(table(HEAD, rows[-1:]).splitlines()[-1], flush=True)
    return rows


HEAD = ["data", "measured", "nettrain, no options", "baseline", "baseline is", "at least the baseline"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", nargs="?")
    ap.add_argument("--select", action="store_true", help="score the candidate settings on the training splits")
    a = ap.parse_args()
    root = data_dir(a.data)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if a.select:
            header("defaults: candidate settings scored on held-out parts of each training split (no test row)")
            select_tables(work)
            select_texts(root, work)
            return
        header("defaults: nettrain with no options against scikit-learn's linear baseline on the same splits")
        rows = table_rows(work) + text_rows(root, work)
        print()
        print(table(HEAD, rows))


if __name__ == "__main__":
    main()
