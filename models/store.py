"""Where MLflow lives: the embedded default (SQLite + local artifacts under TRIAGE_HOME) or a server."""

from __future__ import annotations

import os
from pathlib import Path

from models.schema import CHAMPION_ALIAS, MODEL_NAME

# MLflow writes the URI it is given back into MLFLOW_TRACKING_URI; those values are ours, not the user's.
_SET_BY_US: set[str] = set()


def tracking_uri(home: Path) -> str:
    """``MLFLOW_TRACKING_URI`` when the user set it, else a SQLite store inside ``home``."""
    configured = os.environ.get("MLFLOW_TRACKING_URI")
    if configured and configured not in _SET_BY_US:
        return configured
    return f"sqlite:///{home.resolve() / 'mlflow.db'}"


def is_embedded(uri: str) -> bool:
    return uri.startswith("sqlite:")


def configure_mlflow(home: Path) -> str:
    """Point the MLflow client (tracking and registry) at the store and return its URI."""
    import mlflow

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    uri = tracking_uri(home)
    if is_embedded(uri):
        home.mkdir(parents=True, exist_ok=True)
    _SET_BY_US.add(uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


def artifact_location(home: Path, experiment: str) -> str | None:
    """Artifacts of an embedded store go under ``home/artifacts``; a server decides its own."""
    if not is_embedded(tracking_uri(home)):
        return None
    return (home.resolve() / "artifacts" / experiment).as_uri()


def alias_uri(name: str = MODEL_NAME, alias: str = CHAMPION_ALIAS) -> str:
    return f"models:/{name}@{alias}"
