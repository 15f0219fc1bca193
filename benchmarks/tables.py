"""scikit-learn's bundled tables, trained by nettrain's table recipe beside scikit-learn's own models on the very
same split (nettrain's: seeded 80/20, stratified for classes, standardized with training statistics).

    python benchmarks/tables.py [--config recipes/tables.yaml] [--seeds 0]

Goals: iris, wine and breast-cancer >= 95% test accuracy; diabetes R^2 within 0.05 of LinearRegression's. The
references are LinearRegression / LogisticRegression and HistGradientBoosting{Regressor,Classifier}, fitted on the
standardized training rows nettrain trained on. Printed: dataset, nettrain's result, the references', and seconds
(nettrain's whole fit, in this process, and the references' fits).
"""
import argparse
import tempfile
import time
from pathlib import Path

import nettrain
from nettrain.data import load_data

REPO = Path(__file__).resolve().parents[1]
DATASETS = ("iris", "wine", "breast-cancer", "diabetes")


def references(data, classification: bool) -> tuple:
    """{name: score} of scikit-learn's models on nettrain's own encoded split, and their seconds."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.metrics import r2_score
    xtr, ytr = data.train.x.numpy(), data.train.y.numpy()
    xte, yte = data.test.x.numpy(), data.test.y.numpy()
    t0 = time.perf_counter()
    if classification:
        models = {"logistic": LogisticRegression(max_iter=5000), "hist-gb": HistGradientBoostingClassifier()}
        scores = {k: m.fit(xtr, ytr).score(xte, yte) for k, m in models.items()}
    else:   # R^2 is the same for the standardized and the original target
        models = {"linear": LinearRegression(), "hist-gb": HistGradientBoostingRegressor()}
        scores = {k: r2_score(yte.ravel(), m.fit(xtr, ytr.ravel()).predict(xte)) for k, m in models.items()}
    return scores, time.perf_counter() - t0


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=str(REPO / "recipes" / "tables.yaml"))
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="train.seed values (the split stays seed 0)")
    args = p.parse_args()
    rows, failed = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name in DATASETS:
            for seed in args.seeds:
                t0 = time.perf_counter()
                run = nettrain.fit(args.config, dataset=name, seed=seed, run_dir=f"{tmp}/{name}-{seed}",
                                   **{"run.progress": "none"})
                seconds = time.perf_counter() - t0
                classification = "acc" in run.test
                data = load_data(run.model.config.data)
                refs, ref_seconds = references(data, classification)
                if classification:
                    ours, goal = run.test["acc"], run.test["acc"] >= 0.95
                    shown = f"acc {ours:.2%}"
                    ref_shown = "  ".join(f"{k} {v:.2%}" for k, v in refs.items())
                else:
                    ours, goal = run.test["r2"], run.test["r2"] >= refs["linear"] - 0.05
                    shown = f"R^2 {ours:.4f}"
                    ref_shown = "  ".join(f"{k} {v:.4f}" for k, v in refs.items())
                if not goal:
                    failed.append(f"{name} seed {seed}")
                rows.append((name, seed, shown, ref_shown, seconds, ref_seconds, "yes" if goal else "NO"))
    print("| dataset | seed | nettrain | reference(s) | nettrain s | references s | goal met |")
    print("|---|---|---|---|---|---|---|")
    for name, seed, shown, ref_shown, s, rs, ok in rows:
        print(f"| {name} | {seed} | {shown} | {ref_shown} | {s:.1f} | {rs:.1f} | {ok} |")
    if failed:
        raise SystemExit(f"goal missed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
