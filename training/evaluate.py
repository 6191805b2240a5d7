"""Metrics per head, per language and per source; decision thresholds tuned on validation data."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import f1_score, precision_recall_fscore_support, roc_auc_score

from models.backends import Probabilities
from models.pyfunc import sentiment_choice
from models.schema import BINARY_HEADS, SENTIMENT_LABELS

THRESHOLD_GRID = np.round(np.arange(0.05, 0.951, 0.01), 2)
OFFSET_GRID = np.round(np.arange(-1.0, 1.001, 0.25), 2)  # log-probability offsets tried for neutral and positive
# Decision rules tuned on validation: {binary head: {"default" | lang: threshold}} and, when tuned,
# {"sentiment": {"default" | lang: [offset per label]}} (see models.pyfunc.sentiment_choice).
Thresholds = dict[str, dict[str, Any]]


def f1_curve(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """F1 of the positive class at each threshold of :data:`THRESHOLD_GRID` (predicted positive: p >= t)."""
    y = np.asarray(y).astype(bool)
    predicted = np.asarray(p)[:, None] >= THRESHOLD_GRID[None, :]
    tp = (predicted & y[:, None]).sum(axis=0)
    denominator = predicted.sum(axis=0) + y.sum()
    return np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1), 0.0)


def _best_threshold(curve: np.ndarray) -> float:
    """The grid threshold with the highest score; ties go to the one nearest 0.5."""
    order = np.argsort(np.abs(THRESHOLD_GRID - 0.5), kind="stable")
    best = order[np.argmax(curve[order] >= curve.max() - 1e-9)]
    return float(THRESHOLD_GRID[best])


def tune_threshold(y: np.ndarray, p: np.ndarray) -> float:
    """The threshold on P(1) that maximises F1 of the positive class (ties: the one nearest 0.5)."""
    y = np.asarray(y).astype(int)
    if y.min() == y.max():
        return 0.5
    return _best_threshold(f1_curve(y, p))


def _supported(y: np.ndarray, min_support: int) -> bool:
    positives = int(y.sum())
    return positives >= min_support and len(y) - positives >= min_support


def _tune(y: np.ndarray, p: np.ndarray, sources: np.ndarray, min_support: int, selection: str) -> float:
    """One threshold for these rows: F1 over all of them (pooled), or the mean F1 over their sources with enough
    labels of each class, each source counting once (source_mean; pooled when no source has enough)."""
    if selection == "source_mean":
        cells = [sources == s for s in sorted(set(sources))]
        curves = [f1_curve(y[c], p[c]) for c in cells if _supported(y[c], min_support)]
        if curves:
            return _best_threshold(np.mean(curves, axis=0))
    return tune_threshold(y, p)


def tune_thresholds(
    frame: pd.DataFrame, proba: Probabilities, min_support: int, selection: str = "pooled", sentiment: bool = False
) -> Thresholds:
    """Per binary head: a global threshold and one per language with enough labelled rows of each class.

    ``selection`` says what a threshold maximises: F1 over all the rows it applies to (``pooled``), or the mean
    F1 over their sources (``source_mean``), so that a large corpus does not set the cut for a small one with
    another base rate (BAN-PL's for PolEval's in Polish, Davidson's for TweetEval's in English).
    With ``sentiment``, also sentiment's class offsets (:func:`tune_sentiment_offsets`).
    """
    out: Thresholds = {}
    if sentiment and frame["sentiment"].notna().any():
        out["sentiment"] = tune_sentiment_offsets(frame, proba["sentiment"], min_support, selection)
    for head in BINARY_HEADS:
        mask = frame[head].notna().to_numpy()
        if not mask.any():
            continue
        y = frame.loc[mask, head].astype(int).to_numpy()
        p = proba[head][mask]
        langs = frame.loc[mask, "lang"].astype(str).to_numpy()
        sources = (langs + "/" + frame.loc[mask, "source"].astype(str).to_numpy()).astype(str)
        thresholds = {"default": _tune(y, p, sources, min_support, selection) if y.min() != y.max() else 0.5}
        for lang in sorted(set(langs)):
            sel = langs == lang
            if _supported(y[sel], min_support):
                thresholds[str(lang)] = _tune(y[sel], p[sel], sources[sel], min_support, selection)
        out[head] = thresholds
    return out


def _macro_f1_rows(y: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Macro-F1 over the classes present in ``y`` (label indices) for each row of ``predicted`` (k, n)."""
    scores = []
    for c in np.unique(y):
        truth, guess = y == c, predicted == c
        tp = (guess & truth).sum(axis=1)
        scores.append(2 * tp / np.maximum(guess.sum(axis=1) + truth.sum(), 1))
    return np.mean(scores, axis=0)


def tune_sentiment_offsets(
    frame: pd.DataFrame, proba: np.ndarray, min_support: int, selection: str = "pooled"
) -> dict[str, list[float]]:
    """Sentiment's decision offsets (added to log P before the argmax), the 3-way analogue of a threshold.

    Negative stays at 0; neutral and positive each take one of :data:`OFFSET_GRID`. The choice maximises
    macro-F1 on validation over all rows (``pooled``) or its mean over the sources with at least
    ``3 * min_support`` rows (``source_mean``), globally and per language with that many rows; ties go to the
    smallest offsets, so the plain argmax stays unless something beats it.
    """
    mask = frame["sentiment"].notna().to_numpy()
    index = {label: i for i, label in enumerate(SENTIMENT_LABELS)}
    y = np.array([index[v] for v in frame.loc[mask, "sentiment"].astype(str)])
    langs = frame.loc[mask, "lang"].astype(str).to_numpy()
    sources = frame.loc[mask, "source"].astype(str).to_numpy()
    candidates = np.array([[0.0, neu, pos] for neu in OFFSET_GRID for pos in OFFSET_GRID])
    candidates = candidates[np.argsort(np.abs(candidates).sum(axis=1), kind="stable")]
    logp = np.log(np.clip(proba[mask], 1e-12, 1.0))
    predicted = np.argmax(logp[None, :, :] + candidates[:, None, :], axis=2)  # (candidates, rows)

    def best(sel: np.ndarray) -> list[float]:
        cells = [sel & (sources == s) for s in sorted(set(sources[sel]))]
        cells = [c for c in cells if c.sum() >= 3 * min_support] if selection == "source_mean" else []
        cells = cells or [sel]
        score = np.mean([_macro_f1_rows(y[c], predicted[:, c]) for c in cells], axis=0)
        return [float(x) for x in candidates[np.argmax(score >= score.max() - 1e-9)]]

    out = {"default": best(np.ones(len(y), dtype=bool))}
    for lang in sorted(set(langs)):
        if (langs == lang).sum() >= 3 * min_support:
            out[lang] = best(langs == lang)
    return out


def binary_metrics(y: np.ndarray, p: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    y = np.asarray(y).astype(int)
    precision, recall, f1, _ = precision_recall_fscore_support(y, predicted, average="binary", zero_division=0)
    metrics = {
        "f1": float(f1),
        "precision": float(precision),
        "recall": float(recall),
        "macro_f1": float(f1_score(y, predicted, average="macro", zero_division=0)),
        "support": float(len(y)),
        "positives": float(y.sum()),
    }
    if 0 < y.sum() < len(y):
        metrics["roc_auc"] = float(roc_auc_score(y, p))
    return metrics


def sentiment_metrics(y: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    present = sorted(set(y))  # macro over the classes the slice has (mozetic has no neutral)
    precision, recall, f1, _ = precision_recall_fscore_support(
        y, predicted, labels=present, average="macro", zero_division=0
    )
    return {
        "macro_f1": float(f1),
        "precision": float(precision),
        "recall": float(recall),
        "accuracy": float(np.mean(predicted == y)),
        "support": float(len(y)),
    }


def apply_thresholds(p: np.ndarray, langs: np.ndarray, thresholds: dict[str, float]) -> np.ndarray:
    cut = np.array([thresholds.get(str(lang), thresholds.get("default", 0.5)) for lang in langs])
    return p >= cut


def evaluate(
    frame: pd.DataFrame,
    proba: Probabilities,
    thresholds: Thresholds,
    min_rows: int = 10,
) -> dict[str, dict[str, dict[str, float]]]:
    """``{head: {slice: metrics}}`` where a slice is ``all``, ``lang_xx`` or ``source_name``."""
    report: dict[str, dict[str, dict[str, float]]] = {}
    for head in ("sentiment", *BINARY_HEADS):
        mask = frame[head].notna().to_numpy()
        if not mask.any():
            continue
        sub = frame.loc[mask]
        slices: dict[str, np.ndarray] = {"all": np.ones(len(sub), dtype=bool)}
        for lang in sorted(sub["lang"].unique()):
            slices[f"lang_{lang}"] = (sub["lang"] == lang).to_numpy()
        for source in sorted(sub["source"].unique()):
            slices[f"source_{source}"] = (sub["source"] == source).to_numpy()
        head_report: dict[str, dict[str, float]] = {}
        if head == "sentiment":
            y = sub["sentiment"].astype(str).to_numpy()
            langs = sub["lang"].astype(str).tolist()
            choice = sentiment_choice(proba["sentiment"][mask], langs, thresholds.get("sentiment", {}))
            predicted = np.asarray(SENTIMENT_LABELS)[choice]
            for name, sel in slices.items():
                if sel.sum() >= min_rows or name == "all":
                    head_report[name] = sentiment_metrics(y[sel], predicted[sel])
        else:
            y = sub[head].astype(int).to_numpy()
            p = proba[head][mask]
            predicted = apply_thresholds(p, sub["lang"].to_numpy(), thresholds.get(head, {"default": 0.5}))
            for name, sel in slices.items():
                if sel.sum() >= min_rows or name == "all":
                    head_report[name] = binary_metrics(y[sel], p[sel], predicted[sel])
        report[head] = head_report
    return report


def flatten(report: dict[str, dict[str, dict[str, float]]], prefix: str) -> dict[str, float]:
    """MLflow metric names such as ``test/toxic/lang_pl/f1``."""
    return {
        f"{prefix}/{head}/{slice_}/{name}": value
        for head, slices in report.items()
        for slice_, metrics in slices.items()
        for name, value in metrics.items()
    }


def headline(report: dict[str, dict[str, dict[str, float]]]) -> dict[str, float]:
    """One number per head (macro-F1 over all its test rows), used to compare models at promotion."""
    return {head: slices["all"]["macro_f1"] for head, slices in report.items() if "all" in slices}


def report_table(report: dict[str, dict[str, dict[str, float]]]) -> str:
    """A Markdown table of the report (model card and CLI output)."""
    lines = [
        "| head | slice | rows | macro-F1 | F1 (pos.) | precision | recall | ROC-AUC |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for head, slices in report.items():
        for name, m in slices.items():

            def fmt(key: str, m: dict[str, Any] = m) -> str:
                return f"{m[key]:.3f}" if key in m else ""

            lines.append(
                f"| {head} | {name} | {int(m['support'])} | {fmt('macro_f1')} | {fmt('f1')} | "
                f"{fmt('precision')} | {fmt('recall')} | {fmt('roc_auc')} |"
            )
    return "\n".join(lines)


def comparison_table(reports: dict[str, dict[str, dict[str, dict[str, float]]]]) -> str:
    """Per head and slice, each model's macro-F1 (and F1 of the positive class for binary heads)."""
    names = list(reports)
    first = reports[names[0]]
    lines = [
        "| head | slice | rows | " + " | ".join(f"{n} macro-F1 | {n} F1" for n in names) + " |",
        "|---|---|---:|" + "---:|" * (2 * len(names)),
    ]
    for head, slices in first.items():
        for name, m in slices.items():
            cells = []
            for model in names:
                other = reports[model].get(head, {}).get(name, {})
                cells.append(f"{other['macro_f1']:.3f}" if "macro_f1" in other else "")
                cells.append(f"{other['f1']:.3f}" if "f1" in other else "")
            lines.append(f"| {head} | {name} | {int(m['support'])} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
