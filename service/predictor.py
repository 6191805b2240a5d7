"""The model side of scoring: load a registered model by alias and predict per-comment heads."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any, Protocol

from models.pyfunc import TriageModel
from models.schema import SENTIMENT_LABELS

log = logging.getLogger(__name__)

_ALIAS = re.compile(r"^models:/(?P<name>[^/@]+)@(?P<alias>[^/]+)$")
_VERSION = re.compile(r"^models:/(?P<name>[^/@]+)/(?P<version>\d+)$")


@dataclass(frozen=True)
class Prediction:
    language: str
    sentiment: str
    toxic: bool
    complaint: bool
    question: bool
    p_sentiment: dict[str, float]
    p_toxic: float
    p_complaint: float
    p_question: float


class Predictor(Protocol):
    version: str

    def predict(self, texts: list[str], langs: list[str | None]) -> list[Prediction]: ...

    def describe(self) -> dict[str, Any]: ...


class ModelPredictor:
    """Wraps a :class:`TriageModel` (the registered pyfunc's model) for the scorer."""

    def __init__(self, model: TriageModel, version: str, registry: dict[str, Any] | None = None):
        self.model = model
        self.version = version
        self.registry = registry or {}

    def predict(self, texts: list[str], langs: list[str | None]) -> list[Prediction]:
        cols = self.model.predict_columns(texts, langs)
        p_sent = [cols[f"p_sentiment_{label}"] for label in SENTIMENT_LABELS]
        return [
            Prediction(
                language=str(cols["language"][i]),
                sentiment=str(cols["sentiment"][i]),
                toxic=bool(cols["toxic"][i]),
                complaint=bool(cols["complaint"][i]),
                question=bool(cols["question"][i]),
                p_sentiment={label: float(p[i]) for label, p in zip(SENTIMENT_LABELS, p_sent, strict=True)},
                p_toxic=float(cols["p_toxic"][i]),
                p_complaint=float(cols["p_complaint"][i]),
                p_question=float(cols["p_question"][i]),
            )
            for i in range(len(texts))
        ]

    def describe(self) -> dict[str, Any]:
        meta = self.model.meta
        return {
            **self.registry,
            "version": self.version,
            "family": meta.get("family"),
            "trained_at": meta.get("trained_at"),
            "heads": meta.get("heads"),
            "thresholds": self.model.thresholds,
            "normalization": self.model.normalization,
            "metrics": meta.get("headline", {}),
            "training_data": meta.get("data_summary", {}),
        }


def load_failure(uri: str, exc: Exception) -> str:
    """One line on why the model at ``uri`` did not load, for an error message instead of a stack trace (MLflow
    raises several exception types for a missing or broken model, some with an empty message)."""
    first = (str(exc).splitlines() or [""])[0][:300]
    return f"cannot load model {uri}: {type(exc).__name__}: {first}"


def resolve_model(uri: str) -> tuple[str, str, dict[str, Any]]:
    """``(uri to load, version label, registry facts)`` for ``models:/name@alias``, ``models:/name/N`` or a path.

    An alias is resolved to its version here, so that the loaded model and the version reported can't disagree."""
    from mlflow import MlflowClient

    registry: dict[str, Any] = {"uri": uri}
    version = uri
    alias = _ALIAS.match(uri)
    numbered = _VERSION.match(uri)
    client = MlflowClient()
    if alias:
        mv = client.get_model_version_by_alias(alias["name"], alias["alias"])
        registry.update(name=alias["name"], alias=alias["alias"], registered_version=str(mv.version))
        uri = f"models:/{alias['name']}/{mv.version}"
        version = f"{alias['name']}/{mv.version}"
        run_id = mv.run_id
    elif numbered:
        mv = client.get_model_version(numbered["name"], numbered["version"])
        registry.update(name=numbered["name"], registered_version=str(mv.version))
        version = f"{numbered['name']}/{mv.version}"
        run_id = mv.run_id
    else:
        run_id = None
    if run_id:
        run = client.get_run(run_id)
        registry["run_id"] = run_id
        registry["run_metrics"] = {k: v for k, v in run.data.metrics.items() if "/all/" in k}
    return uri, version, registry


def predictor_from(uri: str, version: str, registry: dict[str, Any] | None = None) -> ModelPredictor:
    """Load the pyfunc at ``uri`` (a resolved model URI or a local folder) under the given version label."""
    import mlflow.pyfunc

    pyfunc = mlflow.pyfunc.load_model(uri)
    model = pyfunc.unwrap_python_model().model
    log.info("loaded model %s", version)
    return ModelPredictor(model, version, registry)


def load_predictor(uri: str) -> ModelPredictor:
    """Load a pyfunc logged by training (``models:/name@alias``, ``models:/name/N`` or a path)."""
    return predictor_from(*resolve_model(uri))
