"""The issue's quality table for a logged ensemble: per source corpus and head, TF-IDF vs transformer vs served.

Loads a registered model (``models:/comment-triage/N``), rebuilds its training run's split from the same data
and config (the split is deterministic, so these are the run's held-out test rows), scores validation and test
rows with each ensemble member, and prints per corpus the test metric the issue's targets use: each member
alone with thresholds tuned on validation as training tunes them, and the served model with its own logged
weights and thresholds, with a bootstrap 95% interval. ``--diagnose`` adds, per binary target corpus, where a
short F1 comes from: how well each column ranks the corpus's rows (ROC-AUC, average precision), its
precision and recall at the thresholds it uses, the F1 a threshold tuned on that corpus's own validation rows
would give, and the F1 at the best threshold on the test rows themselves (an upper bound, not a result).

    python bench/heldout_report.py --data ../shared/data/train --config configs/transformer_cpu_6l.yaml \
        --model models:/comment-triage/1
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score

from models.backends import EnsembleBackend
from models.store import configure_mlflow
from models.text import normalize
from service.predictor import load_failure, load_predictor
from training.config import load_config
from training.data import load_data
from training.evaluate import binary_metrics, evaluate, f1_curve, headline, tune_threshold, tune_thresholds
from training.prepare import prepare
from training.settings import TrainingSettings

TARGETS = [  # (head, source, metric)
    ("toxic", "poleval2019_cbd", "f1"),
    ("toxic", "ban_pl", "f1"),
    ("toxic", "tweeteval_offensive", "macro_f1"),
    ("toxic", "tweeteval_hate", "f1"),
    ("toxic", "davidson", "f1"),
    ("toxic", "germeval2018", "f1"),
    ("toxic", "paradetox", "f1"),
    ("toxic", "seed_uk_toxicity", "f1"),
    ("sentiment", "mozetic_pl", "macro_f1"),
    ("sentiment", "mozetic_ru", "macro_f1"),
    ("sentiment", "mozetic_en", "macro_f1"),
    ("sentiment", "mozetic_de", "macro_f1"),
    ("sentiment", "polemo_medicine", "macro_f1"),
    ("sentiment", "sentirueval", "macro_f1"),
    ("sentiment", "uk_reviews", "macro_f1"),
    ("sentiment", "umsab_en", "macro_f1"),
    ("sentiment", "umsab_de", "macro_f1"),
    ("sentiment", "tweeteval_sentiment", "macro_f1"),
    ("complaint", "complaints_en", "f1"),
    ("complaint", "seed", "f1"),
]


def bootstrap(frame: pd.DataFrame, proba: dict, rules: dict, head: str, source: str, metric: str, n: int) -> str:
    rows = np.flatnonzero((frame["source"] == source).to_numpy() & frame[head].notna().to_numpy())
    rng = np.random.default_rng(0)
    values = []
    for _ in range(n):
        pick = rng.choice(rows, len(rows))
        report = evaluate(frame.iloc[pick], {h: p[pick] for h, p in proba.items()}, rules)
        values.append(report[head]["all"][metric])
    low, high = np.percentile(values, [2.5, 97.5])
    return f"{low:.3f}–{high:.3f}"


def diagnose(val: pd.DataFrame, test: pd.DataFrame, val_p: dict, outputs: dict, reports: dict, targets: list) -> None:
    """Per binary target corpus and column: ranking, precision and recall at its thresholds (from its test
    ``reports``), and the F1 of a threshold of the corpus's own (tuned on its validation rows; the best on its
    test rows, an upper bound)."""
    columns = ["ROC-AUC", "avg precision", "precision / recall", "F1", "F1, own val threshold", "F1, best test one"]
    print("\n| corpus · column | " + " | ".join(columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for head, source, _ in targets:
        if head == "sentiment":
            continue
        t_rows = ((test["source"] == source) & test[head].notna()).to_numpy()
        v_rows = ((val["source"] == source) & val[head].notna()).to_numpy()
        y, y_val = test.loc[t_rows, head].astype(int).to_numpy(), val.loc[v_rows, head].astype(int).to_numpy()
        if y.min() == y.max():
            continue
        for name, (proba, _) in outputs.items():
            p = proba[head][t_rows]
            at_rules = reports[name][head][f"source_{source}"]
            own_cell = "no validation rows"
            if len(y_val):
                own = tune_threshold(y_val, val_p[name][head][v_rows])
                own_cell = f"{binary_metrics(y, p, p >= own)['f1']:.3f} (t={own:.2f})"
            cells = [
                f"{at_rules['roc_auc']:.3f}",
                f"{average_precision_score(y, p):.3f} (base {y.mean():.3f})",
                f"{at_rules['precision']:.3f} / {at_rules['recall']:.3f}",
                f"{at_rules['f1']:.3f}",
                own_cell,
                f"{f1_curve(y, p).max():.3f}",
            ]
            print(f"| {head} · {source} · {name} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", required=True)
    parser.add_argument("--config", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--bootstrap", type=int, default=300, help="resamples for the served intervals (0: none)")
    parser.add_argument("--diagnose", action="store_true", help="add ranking and threshold checks per binary target")
    args = parser.parse_args()

    cfg = load_config(args.config)
    settings = TrainingSettings()
    configure_mlflow(settings.home)
    try:  # before the data, which takes a minute to read and split
        model = load_predictor(args.model).model
    except Exception as exc:  # MLflow raises several types for a missing model or version
        parser.error(load_failure(args.model, exc))
    paths = [*args.data, str(settings.seed_data)] if cfg.include_seed else list(args.data)
    frame = prepare(load_data(paths), cfg)
    val, test = frame[frame["split"] == "val"], frame[frame["split"] == "test"]
    backend = model.backend
    if not isinstance(backend, EnsembleBackend):
        raise SystemExit(f"{args.model}: not an ensemble ({backend.kind})")
    started = time.monotonic()
    # the text as the model was trained on it (prepare normalises as this code does)
    val_texts, test_texts = ([normalize(t, model.normalization) for t in f["text"]] for f in (val, test))
    val_p = {n: m.predict_proba(val_texts) for n, m in backend.members.items()}
    test_p = {n: m.predict_proba(test_texts) for n, m in backend.members.items()}
    print(f"scored {len(val)} validation and {len(test)} test rows in {time.monotonic() - started:.0f}s")
    sources = set(test["source"].astype(str))
    targets = [t for t in TARGETS if t[1] in sources]  # a corpus left out of --data has no row

    served = model.thresholds
    test_served = backend.combine(test_p, test["lang"].astype(str).tolist())
    outputs = {
        n: (test_p[n], tune_thresholds(val, val_p[n], cfg.min_threshold_support, cfg.threshold_selection))
        for n in test_p
    }
    outputs["served"] = (test_served, served)
    columns: dict[str, dict[str, float]] = {}
    reports = {name: evaluate(test, proba, rules) for name, (proba, rules) in outputs.items()}
    for name, report in reports.items():
        columns[name] = {f"{h} · {s} ({m})": report[h][f"source_{s}"][m] for h, s, m in targets}
        columns[name].update({f"{h} · all rows (macro_f1)": v for h, v in headline(report).items()})
        for lang in ("pl", "ru", "uk", "en", "de"):
            for h in ("sentiment", "toxic"):
                if f"lang_{lang}" in report[h]:
                    columns[name][f"{h} · lang {lang} (macro_f1)"] = report[h][f"lang_{lang}"]["macro_f1"]
    table = pd.DataFrame(columns)
    if args.bootstrap:
        intervals = [bootstrap(test, test_served, served, h, s, m, args.bootstrap) for h, s, m in targets]
        table["served 95% CI"] = intervals + [""] * (len(table) - len(targets))
    print("| corpus · head (metric) | " + " | ".join(table.columns) + " |")
    print("|---" * (len(table.columns) + 1) + "|")
    for label, row in table.iterrows():
        cells = [f"{v:.3f}" if isinstance(v, float) else str(v) for v in row]
        print(f"| {label} | " + " | ".join(cells) + " |")
    if args.diagnose:
        val_p["served"] = backend.combine(val_p, val["lang"].astype(str).tolist())
        diagnose(val, test, val_p, outputs, reports, targets)


if __name__ == "__main__":
    main()
