"""Metrics per head, per language and per source; decision thresholds tuned on validation data."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.metrics import f1_score, precision_recall_fscore_support, roc_auc_score

from models.backends import Probabilities
from models.schema import BINARY_HEADS, SENTIMENT_LABELS

THRESHOLD_GRID = np.round(np.arange(0.05, 0.951, 0.01), 2)


def f1_curve(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """F1 of the positive class at each threshold of :data:`THRESHOLD_GRID` (predicted positive: p >= t)."""
    y = np.asarray(y).astype(bool)
    predicted = np.asarray(p)[:, None] >= THRESHOLD_GRID[None, :]
    tp = (predicted & y[:, None]).sum(axis=0)
    denominator = predicted.sum(axis=0) + y.sum()
    return np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1), 0.0)


def best_threshold(curve: np.ndarray) -> float:
    """The threshold of :data:`THRESHOLD_GRID` where ``curve`` peaks (ties: the one nearest 0.5)."""
    order = np.argsort(np.abs(THRESHOLD_GRID - 0.5), kind="stable")
    return float(THRESHOLD_GRID[order[np.argmax(curve[order] >= curve.max() - 1e-9)]])


def tune_threshold(y: np.ndarray, p: np.ndarray) -> float:
    """The threshold on P(1) that maximises F1 of the positive class (ties: the one nearest 0.5)."""
    y = np.asarray(y).astype(int)
    if y.min() == y.max():
        return 0.5
    return best_threshold(f1_curve(y, p))


def enough_of_each(positives: int, rows: int, min_support: int) -> bool:
    """``min_support`` rows of each class among ``rows``: enough for a threshold or an F1 to mean something."""
    return min(positives, rows - positives) >= min_support


def _balanced(y: np.ndarray, min_support: int) -> bool:
    return enough_of_each(int(y.sum()), len(y), min_support)


def tune_source_mean(y: np.ndarray, p: np.ndarray, sources: np.ndarray, min_support: int) -> float:
    """The threshold that maximises the mean over sources of each one's positive-class F1, counting the sources
    with ``min_support`` rows of each class (each corpus once, whatever its size); pooled F1 when none has."""
    curves = [f1_curve(y[sel], p[sel]) for s in sorted(set(sources)) if _balanced(y[sel := sources == s], min_support)]
    return best_threshold(np.mean(curves, axis=0)) if curves else tune_threshold(y, p)


ThresholdSelection = Literal["pooled", "source_mean"]


def tune_thresholds(
    frame: pd.DataFrame, proba: Probabilities, min_support: int, selection: ThresholdSelection = "pooled"
) -> dict[str, dict[str, float]]:
    """Per binary head: a global threshold and one per language with enough labelled rows of each class.

    ``pooled`` maximises F1 over all the rows (of the head, of the language); ``source_mean`` the mean F1 over
    the sources among them (:func:`tune_source_mean`), so a small corpus with a rare positive class is not
    cut at the threshold that suits a large one with another base rate."""
    out: dict[str, dict[str, float]] = {}
    for head in BINARY_HEADS:
        mask = frame[head].notna().to_numpy()
        if not mask.any():
            continue
        y = frame.loc[mask, head].astype(int).to_numpy()
        p = proba[head][mask]
        by_source = selection == "source_mean"  # pooled needs no source column
        sources = frame.loc[mask, "source"].astype(str).to_numpy() if by_source else np.array([])
        langs = frame.loc[mask, "lang"].astype(str).to_numpy()
        slices = {"default": np.ones(len(y), dtype=bool)}
        slices.update({lang: sel for lang in sorted(set(langs)) if _balanced(y[sel := langs == lang], min_support)})
        out[head] = {
            name: tune_source_mean(y[sel], p[sel], sources[sel], min_support)
            if by_source
            else tune_threshold(y[sel], p[sel])
            for name, sel in slices.items()
        }
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


def sentiment_metrics(y: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    predicted = np.asarray(SENTIMENT_LABELS)[np.argmax(proba, axis=1)]
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


MIN_SLICE_ROWS = 10  # a language or source slice with fewer labelled rows gets no metrics


def evaluate(
    frame: pd.DataFrame,
    proba: Probabilities,
    thresholds: dict[str, dict[str, float]],
    min_rows: int = MIN_SLICE_ROWS,
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
            p = proba["sentiment"][mask]
            for name, sel in slices.items():
                if sel.sum() >= min_rows or name == "all":
                    head_report[name] = sentiment_metrics(y[sel], p[sel])
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
    """One number per head: macro-F1 over all its test rows."""
    return {head: slices["all"]["macro_f1"] for head, slices in report.items() if "all" in slices}


def slice_scores(report: dict[str, dict[str, dict[str, float]]]) -> dict[str, float]:
    """What promotion compares: macro-F1 per head over all its rows (``toxic``) and per language
    (``toxic/lang_pl``)."""
    return {
        head if name == "all" else f"{head}/{name}": metrics["macro_f1"]
        for head, slices in report.items()
        for name, metrics in slices.items()
        if name == "all" or name.startswith("lang_")
    }


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
