"""The issue's quality table for a logged ensemble: per source corpus and head, TF-IDF vs transformer vs served.

Loads a registered model (``models:/comment-triage/N``), rebuilds its training run's split from the same data
and config (the split is deterministic, so these are the run's held-out test rows), scores validation and test
rows with each ensemble member, and prints per corpus the test metric the issue's targets use: each member
alone with thresholds tuned on validation as training tunes them, and the served model with its own logged
weights and thresholds, with a bootstrap 95% interval.

    python bench/heldout_report.py --data ../shared/data/train --config configs/transformer_cpu_6l.yaml \
        --model models:/comment-triage/1
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from models.backends import EnsembleBackend
from models.store import configure_mlflow
from service.predictor import load_predictor
from training.config import load_config
from training.data import load_data
from training.evaluate import evaluate, headline, tune_thresholds
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", required=True)
    parser.add_argument("--config", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--bootstrap", type=int, default=300, help="resamples for the served intervals (0: none)")
    args = parser.parse_args()

    cfg = load_config(args.config)
    settings = TrainingSettings()
    configure_mlflow(settings.home)
    paths = [*args.data, str(settings.seed_data)] if cfg.include_seed else list(args.data)
    frame = prepare(load_data(paths), cfg)
    val, test = frame[frame["split"] == "val"], frame[frame["split"] == "test"]
    model = load_predictor(args.model).model
    backend = model.backend
    if not isinstance(backend, EnsembleBackend):
        raise SystemExit(f"{args.model}: not an ensemble ({backend.kind})")
    started = time.monotonic()
    val_p = {n: m.predict_proba(val["norm_text"].tolist()) for n, m in backend.members.items()}
    test_p = {n: m.predict_proba(test["norm_text"].tolist()) for n, m in backend.members.items()}
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
    for name, (proba, rules) in outputs.items():
        report = evaluate(test, proba, rules)
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


if __name__ == "__main__":
    main()
