"""The model side of scoring: load a registered model by alias and predict per-comment heads."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any, Protocol

from models.pyfunc import TriageModel
from models.schema import BINARY_HEADS, SENTIMENT_LABELS

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
        frame = self.model.predict(texts, langs)
        rows = frame.to_dict(orient="records")
        return [
            Prediction(
                language=str(r["language"]),
                sentiment=str(r["sentiment"]),
                toxic=bool(r["toxic"]),
                complaint=bool(r["complaint"]),
                question=bool(r["question"]),
                p_sentiment={label: float(r[f"p_sentiment_{label}"]) for label in SENTIMENT_LABELS},
                **{f"p_{head}": float(r[f"p_{head}"]) for head in BINARY_HEADS},
            )
            for r in rows
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
            "metrics": meta.get("headline", {}),
            "training_data": meta.get("data_summary", {}),
        }


def load_predictor(uri: str) -> ModelPredictor:
    """Load a pyfunc logged by training (``models:/name@alias``, ``models:/name/N`` or a path)."""
    import mlflow.pyfunc
    from mlflow import MlflowClient

    registry: dict[str, Any] = {"uri": uri}
    version = uri
    alias = _ALIAS.match(uri)
    numbered = _VERSION.match(uri)
    client = MlflowClient()
    if alias:
        mv = client.get_model_version_by_alias(alias["name"], alias["alias"])
        registry.update(name=alias["name"], alias=alias["alias"], registered_version=str(mv.version))
        # Load the resolved version so that the loaded model and the version we report can't disagree.
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
    pyfunc = mlflow.pyfunc.load_model(uri)
    model = pyfunc.unwrap_python_model().model
    log.info("loaded model %s", version)
    return ModelPredictor(model, version, registry)
