"""The UCI sentiment sentences (amazon, imdb, yelp: 1,000 each): nettrain's recipes/sentiment.yaml against TF-IDF +
LogisticRegression, on nettrain's seeded, duplicate-aware 80/20 split (the same 200 test sentences for both).

    python benchmarks/sentiment.py [DATA]            # test accuracy, once, of the recipe as shipped
    python benchmarks/sentiment.py [DATA] --select   # how the recipe was chosen, without a test sentence
    python benchmarks/sentiment.py [DATA] --splits 5 # test accuracy on 5 seeded splits, mean and spread, and SMS

--splits K repeats the test on split seeds 0..K-1 (each a different 200-sentence test set, read once): one test set
of 200 sentences has a standard error of about 3 points at 80% (sqrt(0.8 * 0.2 / 200)), as large as the gaps the
table is about. It adds the SMS file with benchmarks/text.py's fasttext setting (the goal there: at least as
accurate as TF-IDF + LR).

--select scores each candidate setting on the TRAINING split only: six repeated hold-outs (data.split_seed 1-6
split each file's 800 training sentences 80/20 again, copies of a text on one side), accuracy averaged over the
hold-outs and the three files; TF-IDF + LR is scored on the same hold-outs. The recipe is the best candidate there;
the test split is read once, by the default mode, after the choice. Accuracy only: the lead times speed
(benchmarks/text.py). One torch thread, so that the numbers repeat.
"""
from __future__ import annotations

import argparse
import csv
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import data_dir, header, table  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "recipes" / "sentiment.yaml"
FILES = ("amazon", "imdb", "yelp")
FOLDS = (1, 2, 3, 4, 5, 6)
QUIET = {"run.progress": "none", "run.tensorboard": False, "run.report": False, "train.threads": 1,
         "device": "cpu"}
# what --select compares (the recipe is the best of these on the hold-outs); the first is benchmarks/text.py's
# fasttext setting for the sentiment files (embed 64, 6 epochs)
FASTTEXT = {"model": "fasttext", "batch_size": 32, "lr": 0.02}
CANDIDATES = {
    "fasttext embed 64, 6 epochs (the old setting)": {**FASTTEXT, "epochs": 6},
    "fasttext embed 64, 20 epochs": {**FASTTEXT, "epochs": 20},
    "fasttext embed 16, 10 epochs": {**FASTTEXT, "epochs": 10, "model.args": {"embed": 16}},
    "fasttext embed 16, 10 epochs, min_freq 2": {**FASTTEXT, "epochs": 10, "model.args": {"embed": 16},
                                                 "data.args": {"min_freq": 2}},
    "fasttext embed 16, 10 epochs, AdamW wd 0.1": {**FASTTEXT, "epochs": 10, "model.args": {"embed": 16},
                                                   "optimizer": "adamw", "weight_decay": 0.1},
    "fasttext embed 16, 10 epochs, dropout 0.5": {**FASTTEXT, "epochs": 10, "model.args": {"embed": 16,
                                                                                          "dropout": 0.5}},
    "recipes/sentiment.yaml": {"config": str(RECIPE)},
}
# benchmarks/text.py's fasttext setting for the SMS file (FASTTEXT["sms"] there), without its bucketing
SMS = {**FASTTEXT, "epochs": 3, "data.args": {"min_freq": 2}}


def split(file: Path, seed: int = 0, rows=None) -> tuple:
    """(texts, labels, train indices, test indices) of nettrain's split of `file` (or of `rows`) with `seed`."""
    from nettrain.data.text import grouped_split, read_rows
    rows = rows if rows is not None else read_rows(file, "text", "label")
    texts, labels = [t for _, t, _ in rows], [lab.strip() for _, _, lab in rows]
    train, test, _ = grouped_split(texts, 0.2, seed)
    return texts, labels, train, test


def tfidf_accuracy(texts, labels, train, test) -> float:
    """benchmarks/text.py's TF-IDF (words and bigrams, sublinear tf) + LogisticRegression(C=10) on these rows."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
    clf = LogisticRegression(C=10, max_iter=1000).fit(vec.fit_transform([texts[i] for i in train]),
                                                      [labels[i] for i in train])
    predicted = clf.predict(vec.transform([texts[i] for i in test]))
    return sum(p == labels[i] for p, i in zip(predicted, test)) / len(test)


def nettrain_accuracy(file: Path, options: dict, work: Path, split_seed: int = 0) -> float:
    """nettrain's test accuracy on `file` split with `split_seed` (its default 0: the benchmark's test split)."""
    import nettrain
    options = dict(options)
    config = options.pop("config", None)
    run = nettrain.fit(config, dataset="text", data_dir=str(file), run_dir=str(work / "run"), overwrite=True,
                       **{"data.split_seed": split_seed, **QUIET, **options})
    return run.test["acc"]


def training_file(file: Path, work: Path) -> Path:
    """The training split's rows (of the seed-0 split) as a file of their own: what --select may look at."""
    texts, labels, train, _ = split(file)
    path = work / f"{file.stem}-train.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows([texts[i], labels[i]] for i in train)
    return path


def select(root: Path, work: Path):
    header("sentiment sentences: choosing the recipe on held-out parts of the training split (no test sentence)")
    files = {name: training_file(root / f"{name}.csv", work) for name in FILES}
    rows = []
    for name, options in [("TF-IDF + LogisticRegression", None)] + list(CANDIDATES.items()):
        accs = []
        for f in files.values():
            if options is None:
                from nettrain.data.text import read_rows
                found = read_rows(f, "text", "label")
                scores = [tfidf_accuracy(*split(f, seed, found)) for seed in FOLDS]
            else:
                scores = [nettrain_accuracy(f, options, work, seed) for seed in FOLDS]
            accs.append(sum(scores) / len(scores))
        rows.append([name] + [f"{a:.2%}" for a in accs] + [f"{sum(accs) / len(accs):.2%}"])
        print(table(["setting"] + list(FILES) + ["mean"], rows[-1:]).splitlines()[-1], flush=True)
    print()
    print(table(["setting (hold-out accuracy on the training split)"] + list(FILES) + ["mean"], rows))


def test(root: Path, work: Path):
    header("sentiment sentences: test accuracy of recipes/sentiment.yaml and TF-IDF + LR (seed-0 split, 200 each)")
    rows = []
    for name in FILES:
        file = root / f"{name}.csv"
        ours = nettrain_accuracy(file, {"config": str(RECIPE)}, work)
        theirs = tfidf_accuracy(*split(file))
        rows.append([name, f"{ours:.2%}", f"{theirs:.2%}", "met" if ours >= 0.8 else "not met"])
        print(table(["file", "nettrain", "TF-IDF + LR", "goal 80%"], rows[-1:]).splitlines()[-1], flush=True)
    print()
    print(table(["file", "nettrain (recipes/sentiment.yaml)", "TF-IDF + LR", "goal 80%"], rows))


def splits(root: Path, work: Path, k: int):
    import statistics
    header(f"text files: test accuracy on {k} seeded splits (data.split_seed 0..{k - 1}), mean +- sd")
    files = {name: (root / "sentiment-sentences" / f"{name}.csv", {"config": str(RECIPE)}) for name in FILES}
    files["sms-spam"] = (root / "sms-spam" / "sms_spam.csv", SMS)
    head = ["file", "nettrain fasttext", "TF-IDF + LR", "nettrain - TF-IDF", "nettrain >= 80%"]
    rows = []
    for name, (file, options) in files.items():
        from nettrain.data.text import read_rows
        found = read_rows(file, "text", "label")
        ours = [nettrain_accuracy(file, options, work, seed) for seed in range(k)]
        theirs = [tfidf_accuracy(*split(file, seed, found)) for seed in range(k)]
        gaps = [a - b for a, b in zip(ours, theirs)]
        spread = (lambda xs: f"{statistics.mean(xs):.2%} +- {statistics.stdev(xs) if k > 1 else 0:.2%}")
        rows.append([name, spread(ours), spread(theirs), spread(gaps),
                     f"{sum(a >= 0.8 for a in ours)} of {k}"])
        print(table(head, rows[-1:]).splitlines()[-1], "| per split:", " ".join(f"{a:.1%}" for a in ours),
              "/", " ".join(f"{a:.1%}" for a in theirs), flush=True)
    print()
    print(table(head, rows))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", nargs="?")
    ap.add_argument("--select", action="store_true", help="score the candidate settings on the training split")
    ap.add_argument("--splits", type=int, help="test on this many seeded splits, with the SMS file too")
    a = ap.parse_args()
    root = data_dir(a.data)
    with tempfile.TemporaryDirectory() as tmp:
        if a.splits:
            splits(root, Path(tmp), a.splits)
        else:
            (select if a.select else test)(root / "sentiment-sentences", Path(tmp))


if __name__ == "__main__":
    main()
