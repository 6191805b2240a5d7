"""Back-ends that turn normalised texts into per-head probabilities.

A back-end is plain data (fitted scikit-learn objects, later ONNX graphs) plus the code here that runs
it; the pyfunc in :mod:`models.pyfunc` wraps one and owns languages, thresholds and the output frame.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import joblib
import numpy as np

from models.schema import BINARY_HEADS, HEADS, SENTIMENT_LABELS

Probabilities = dict[str, np.ndarray]
"""``sentiment`` -> (n, 3) in :data:`SENTIMENT_LABELS` order; each binary head -> (n,) P(label = 1)."""


class Backend(Protocol):
    kind: str

    def predict_proba(self, texts: list[str]) -> Probabilities: ...

    def save(self, directory: Path) -> None: ...


def class_probabilities(estimator: Any, features: Any, head: str) -> np.ndarray:
    """Probabilities of a fitted classifier, re-ordered to the head's fixed label order."""
    proba = estimator.predict_proba(features)
    classes = [str(c) for c in estimator.classes_]
    if head == "sentiment":
        out = np.zeros((proba.shape[0], len(SENTIMENT_LABELS)), dtype=np.float64)
        for j, label in enumerate(classes):
            out[:, SENTIMENT_LABELS.index(label)] = proba[:, j]
        return out
    if "1" not in classes:  # a head that only ever saw negatives
        return np.zeros(proba.shape[0], dtype=np.float64)
    return proba[:, classes.index("1")].astype(np.float64)


class TfidfBackend:
    """One shared TF-IDF featuriser and one linear classifier per head."""

    kind = "tfidf"
    FILE = "tfidf.joblib"

    def __init__(self, featurizer: Any, heads: dict[str, Any]):
        unknown = set(heads) - set(HEADS)
        if unknown:
            raise ValueError(f"unknown heads: {sorted(unknown)}")
        self.featurizer = featurizer
        self.heads = heads

    def predict_proba(self, texts: list[str]) -> Probabilities:
        n = len(texts)
        out: Probabilities = {
            "sentiment": np.full((n, len(SENTIMENT_LABELS)), 1.0 / len(SENTIMENT_LABELS)),
            **{head: np.zeros(n) for head in BINARY_HEADS},
        }
        if n == 0:
            return out
        features = self.featurizer.transform(texts)
        for head, estimator in self.heads.items():
            out[head] = class_probabilities(estimator, features, head)
        return out

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        joblib.dump({"featurizer": self.featurizer, "heads": self.heads}, directory / self.FILE)

    @classmethod
    def load(cls, directory: Path) -> TfidfBackend:
        data = joblib.load(directory / cls.FILE)
        return cls(data["featurizer"], data["heads"])


_BACKENDS: dict[str, Any] = {"tfidf": TfidfBackend}


def register_backend(kind: str, loader: Any) -> None:
    _BACKENDS[kind] = loader


def load_backend(kind: str, directory: Path) -> Backend:
    try:
        loader = _BACKENDS[kind]
    except KeyError:
        raise ValueError(f"unknown model back-end {kind!r}; known: {sorted(_BACKENDS)}") from None
    return loader.load(directory)
