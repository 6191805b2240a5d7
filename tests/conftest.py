from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "data" / "seed" / "seed.jsonl"
SHARED_TRAIN = ROOT.parent / "shared" / "data" / "train"

# Tests never talk to a tracking server that happens to be configured on the machine.
os.environ.pop("MLFLOW_TRACKING_URI", None)
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


# Fixtures that train a model (a TF-IDF seed model registered in MLflow, a tiny transformer): a test that uses
# one, directly or through another fixture, is `slow`; `pytest -m "not slow"` runs the rest in seconds.
SLOW_FIXTURES = frozenset({"registry", "tiny_base", "unigram_base", "spark"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def assert_spans_in_order(rows: list[dict]) -> None:
    """Each listed question an exact substring of the text, after the one before it."""
    for r in rows:
        at = 0
        for q in r["questions"]:
            at = r["text"].index(q, at) + len(q)  # raises if a question is not in the text after the previous one


def write_comments(path: Path, rows: list[dict]) -> None:
    """Comments as a JSONL, CSV (an object as JSON text) or Parquet file, by the path's suffix."""
    import pandas as pd

    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    elif path.suffix == ".csv":
        flat = [{k: (json.dumps(v) if isinstance(v, dict) else v) for k, v in r.items()} for r in rows]
        pd.DataFrame(flat).to_csv(path, index=False)
    else:
        pd.DataFrame(rows).to_parquet(path)


def read_scored(path: Path) -> list[dict]:
    """The rows of a JSONL, CSV or Parquet file that `triage score` wrote."""
    import csv

    import pyarrow.parquet as pq

    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    if path.suffix == ".csv":
        with path.open(encoding="utf-8", newline="") as handle:
            return list(csv.DictReader(handle))
    return pq.read_table(path).to_pylist()


@pytest.fixture(scope="session")
def seed_rows() -> list[dict]:
    return read_jsonl(SEED)


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory):
    """A real embedded MLflow store with a seed model registered and promoted to champion."""
    from models.store import configure_mlflow
    from training.config import seed_config
    from training.registry import promote
    from training.settings import TrainingSettings
    from training.train import train

    home = tmp_path_factory.mktemp("triage-home")
    settings = TrainingSettings(home=home, seed_data=SEED)
    configure_mlflow(home)
    result = train([SEED], seed_config(), settings)
    promote(result.version)
    return {"home": home, "version": result.version, "result": result, "settings": settings}


@pytest.fixture(scope="session")
def predictor(registry):
    from models.store import alias_uri, configure_mlflow
    from service.predictor import load_predictor

    configure_mlflow(registry["home"])
    return load_predictor(alias_uri())


@pytest.fixture(scope="session")
def policy():
    from service.policy import load_policy

    return load_policy()


@pytest.fixture(autouse=True)
def _point_mlflow_at_the_registry(request):
    """MLflow's tracking URI is process-global: tests that use the shared registry get it back each time."""
    if "registry" in request.fixturenames:
        from models.store import configure_mlflow

        configure_mlflow(request.getfixturevalue("registry")["home"])
    yield
