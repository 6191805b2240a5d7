"""One training run: load, split, fit, tune thresholds, evaluate, log to MLflow and register."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd

from models.pyfunc import CommentTriagePyfunc, TriageModel, models_package_dir, signature_and_example
from models.schema import HEADS, MODEL_NAME
from models.store import artifact_location, configure_mlflow
from models.text import normalize
from training.config import TrainConfig
from training.data import LoadedData, load_data, summarize
from training.evaluate import evaluate, flatten, headline, report_table, tune_thresholds
from training.registry import FINGERPRINT_TAG
from training.settings import TrainingSettings
from training.split import assign_splits, rank_key
from training.tfidf import fit_tfidf

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    run_id: str
    version: str | None
    report: dict[str, Any]
    headline: dict[str, float]
    seconds: float


def _cap_per_source(frame: pd.DataFrame, cap: int, seed: int) -> pd.DataFrame:
    rank = frame["id"].map(lambda i: rank_key(seed, str(i)))
    keep = rank.groupby(frame["source"]).rank(method="first") <= cap
    return frame[keep.to_numpy()].reset_index(drop=True)


def _requirements() -> list[str]:
    pins = []
    for dist in ("mlflow", "scikit-learn", "numpy", "pandas", "pyarrow", "py3langid", "joblib"):
        try:
            pins.append(f"{dist}=={importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            pins.append(dist)
    return pins


def _experiment_id(name: str, home: Path) -> str:
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return str(experiment.experiment_id)
    return str(mlflow.create_experiment(name, artifact_location=artifact_location(home, name)))


def prepare(loaded: LoadedData, cfg: TrainConfig) -> pd.DataFrame:
    frame = loaded.frame
    if cfg.max_rows_per_source:
        frame = _cap_per_source(frame, cfg.max_rows_per_source, cfg.split.seed)
    frame = frame.copy()
    frame["norm_text"] = frame["text"].map(normalize)
    frame["split"] = assign_splits(frame, cfg.split.val_fraction, cfg.split.test_fraction, cfg.split.seed)
    return frame


def model_card(meta: dict[str, Any], report: dict[str, Any]) -> str:
    summary = meta["data_summary"]
    return "\n".join(
        [
            f"# {MODEL_NAME} ({meta['family']})",
            "",
            f"Trained {meta['trained_at']} on {summary['rows']} labelled comments "
            f"from {len(summary['by_source'])} sources.",
            "",
            "## Training data",
            "```json",
            json.dumps(summary, indent=2, ensure_ascii=False),
            "```",
            "",
            "## Decision thresholds (tuned on the validation split)",
            "```json",
            json.dumps(meta["thresholds"], indent=2),
            "```",
            "",
            "## Held-out test metrics (per head, language and source)",
            report_table(report),
            "",
            "## Known weaknesses",
            "- Labels differ between sources (toxic is hate speech in one corpus, a moderator's removal in "
            "another): read the per-source rows, not only the pooled ones.",
            "- Heads with few labels (question, complaint outside English) rest on the small seed set.",
            "",
        ]
    )


def train(
    data: list[str | Path],
    cfg: TrainConfig,
    settings: TrainingSettings | None = None,
    skip_invalid: bool = False,
    register: bool = True,
) -> TrainResult:
    settings = settings or TrainingSettings()
    started = time.monotonic()
    configure_mlflow(settings.home)
    paths = list(data)
    if cfg.include_seed and settings.seed_data.exists():
        seed = settings.seed_data.resolve()
        if all(Path(p).resolve() != seed for p in paths):
            paths.append(seed)
    loaded = load_data(paths, skip_invalid=skip_invalid)
    frame = prepare(loaded, cfg)
    train_df = frame[frame["split"] == "train"]
    val_df = frame[frame["split"] == "val"]
    test_df = frame[frame["split"] == "test"]
    log.info("rows: train %d, validation %d, test %d", len(train_df), len(val_df), len(test_df))

    backend = fit_tfidf(train_df, cfg.tfidf)
    thresholds = tune_thresholds(val_df, backend.predict_proba(val_df["norm_text"].tolist()), cfg.min_threshold_support)
    report = evaluate(test_df, backend.predict_proba(test_df["norm_text"].tolist()), thresholds)
    summary = summarize(frame)
    summary["splits"] = {str(k): int(v) for k, v in frame["split"].value_counts().items()}
    summary["skipped_invalid"] = len(loaded.skipped)
    summary["lang_detected"] = loaded.detected_lang
    fingerprint = hashlib.sha256("\n".join(sorted(test_df["id"])).encode()).hexdigest()[:16]
    meta = {
        "family": cfg.family,
        "heads": [h for h in HEADS if h in getattr(backend, "heads", {})],
        "trained_at": pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds"),
        "thresholds": thresholds,
        "headline": headline(report),
        "data_summary": summary,
        "test_fingerprint": fingerprint,
    }
    model = TriageModel(backend, meta)
    signature, example = signature_and_example()

    with mlflow.start_run(experiment_id=_experiment_id(cfg.experiment, settings.home)) as run:
        mlflow.set_tag(FINGERPRINT_TAG, fingerprint)
        mlflow.set_tag("triage.family", cfg.family)
        mlflow.log_params(_flat_params(cfg.model_dump()))
        mlflow.log_param("data", ", ".join(str(p) for p in paths)[:500])
        mlflow.log_metrics({k: v for k, v in flatten(report, "test").items() if np.isfinite(v)})
        mlflow.log_dict(summary, "data_summary.json")
        mlflow.log_dict(report, "evaluation.json")
        mlflow.log_text(model_card(meta, report), "model_card.md")
        with tempfile.TemporaryDirectory() as tmp:
            model_dir = model.save(Path(tmp) / "model")
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=CommentTriagePyfunc(),
                artifacts={"model": str(model_dir)},
                code_paths=[models_package_dir()],
                signature=signature,
                input_example=example,
                pip_requirements=_requirements(),
                registered_model_name=MODEL_NAME if register else None,
            )
        version = str(info.registered_model_version) if register else None
        if version:
            mlflow.MlflowClient().set_model_version_tag(MODEL_NAME, version, FINGERPRINT_TAG, fingerprint)
    seconds = time.monotonic() - started
    log.info("trained in %.1fs, run %s, version %s", seconds, run.info.run_id, version)
    return TrainResult(
        run_id=run.info.run_id, version=version, report=report, headline=meta["headline"], seconds=seconds
    )


def _flat_params(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flat_params(value, f"{name}."))
        else:
            out[name] = value
    return out
