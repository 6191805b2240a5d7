"""One training run: load, split, fit, tune thresholds, evaluate, log to MLflow and register."""

from __future__ import annotations

import importlib.metadata
import json
import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException

from models.pyfunc import CommentTriagePyfunc, TriageModel, models_package_dir, signature_and_example
from models.schema import BINARY_HEADS, HEADS, LANGUAGES, MODEL_NAME, SENTIMENT_LABELS
from models.store import artifact_location, configure_mlflow
from models.text import NORMALIZATION_VERSION
from training.config import TrainConfig
from training.data import summarize
from training.evaluate import (
    MIN_SLICE_ROWS,
    ThresholdSelection,
    apply_thresholds,
    comparison_table,
    enough_of_each,
    evaluate,
    flatten,
    headline,
    report_table,
    slice_scores,
    tune_thresholds,
)
from training.finetune import CheckpointError, check_compatible, finishing_config, read_checkpoint
from training.prepare import Prepared, cap_total, ids_fingerprint, load_prepared
from training.registry import CHAMPION_COMPARED_TAG, FINGERPRINT_TAG, champion_version
from training.settings import TrainingSettings
from training.tfidf import fit_tfidf

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    run_id: str
    version: str | None
    report: dict[str, Any]
    headline: dict[str, float]
    seconds: float
    reports: dict[str, dict[str, Any]] = field(default_factory=dict)


def _requirements(family: str = "tfidf") -> list[str]:
    pins = []
    dists = ["mlflow", "scikit-learn", "numpy", "pandas", "pyarrow", "py3langid", "joblib"]
    if family == "transformer":
        dists += ["onnxruntime", "onnx", "tokenizers"]  # onnx: the fp32 fallback of blockwise int8
    for dist in dists:
        try:
            pins.append(f"{dist}=={importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            pins.append(dist)
    return pins


class TrackingError(RuntimeError):
    """MLflow cannot take the run: found before training, not after an hour of it."""


def _experiment_id(name: str, home: Path) -> str:
    try:
        experiment = mlflow.get_experiment_by_name(name)
        if experiment is None:
            return str(mlflow.create_experiment(name, artifact_location=artifact_location(home, name)))
    except MlflowException as exc:
        raise TrackingError(f"MLflow at {mlflow.get_tracking_uri()}: {exc.message}") from None
    if experiment.lifecycle_stage != "active":
        raise TrackingError(
            f"MLflow experiment {name!r} is {experiment.lifecycle_stage}: restore it "
            f"(mlflow experiments restore --experiment-id {experiment.experiment_id}) or name another in the config"
        )
    return str(experiment.experiment_id)


def model_card(meta: dict[str, Any], report: dict[str, Any], reports: dict[str, Any] | None = None) -> str:
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
            *(
                ["## Compared on the same held-out rows", comparison_table(reports), ""]
                if reports and len(reports) > 1
                else []
            ),
            *_serving_notes(meta),
            "## Known weaknesses",
            *known_weaknesses(summary, report),
            "",
        ]
    )


RELIABLE_CLASS_ROWS = 10  # a binary held-out figure needs this many rows of each class
RELIABLE_SENTIMENT_ROWS = 30


def known_weaknesses(summary: dict[str, Any], report: dict[str, Any]) -> list[str]:
    """The model card's weaknesses, from its own data: per head, the languages with no labels or only the seed
    set's, and the held-out figures that rest on too few rows to be read as numbers."""
    notes = [
        "- Labels differ between sources (toxic is hate speech in one corpus, a moderator's removal in "
        "another): read the per-source rows, not only the pooled ones."
    ]
    seed = set(summary.get("seed_sources", []))
    for head in HEADS:
        cells = summary.get("by_head_language", {}).get(head, {})
        missing = [lang for lang in LANGUAGES if not cells.get(lang)]
        seed_only = [lang for lang in LANGUAGES if cells.get(lang) and seed and set(cells[lang]["sources"]) <= seed]
        corpora = [lang for lang in LANGUAGES if cells.get(lang) and lang not in seed_only]
        carried = f"; what it learnt from the corpora in {', '.join(corpora)} carries the rest" if corpora else ""
        if seed_only:
            counts = ", ".join(
                f"{lang} {cells[lang]['rows']} rows"
                + (f" ({cells[lang]['positives']} positive)" if "positives" in cells[lang] else "")
                for lang in seed_only
            )
            notes.append(f"- {head}: only the bundled seed set labels it in {counts}{carried}.")
        if missing:
            notes.append(f"- {head}: no labelled rows in {', '.join(missing)}{carried}.")
        thin = []
        for lang in LANGUAGES:
            test = report.get(head, {}).get(f"lang_{lang}")
            if test is None:
                if cells.get(lang):
                    thin.append(f"{lang} under {MIN_SLICE_ROWS} rows")
                continue
            rows = int(test["support"])
            if "positives" in test:
                positives = int(test["positives"])
                if min(positives, rows - positives) < RELIABLE_CLASS_ROWS:
                    thin.append(f"{lang} {rows} rows ({positives} positive)")
            elif rows < RELIABLE_SENTIMENT_ROWS:
                thin.append(f"{lang} {rows} rows")
        if thin:
            notes.append(f"- {head}: held-out figures on too few rows to be read as numbers: {', '.join(thin)}.")
    return notes


def _serving_notes(meta: dict[str, Any]) -> list[str]:
    notes = []
    tuned = meta.get("finetuned")
    if tuned and meta.get("fit") == "frozen":
        notes.append(
            f"- Encoder frozen as pretrained; heads fitted elsewhere (`triage finetune`) on {tuned['device']} in "
            f"{tuned['seconds']:.0f} s; carried in {tuned['dtype']}."
        )
    elif tuned:
        notes.append(
            f"- Fine-tuned elsewhere (`triage finetune`) on {tuned['device']}: {tuned['steps']} steps in "
            f"{tuned['seconds'] / 60:.1f} min; trained tensors carried in {tuned['dtype']}."
        )
    elif meta.get("fit") == "frozen":
        notes.append(
            f"- Encoder frozen as pretrained; each head a logistic regression on its mean-pooled output, fitted "
            f"on {meta['fine_tuned_on']} in {meta['fit_seconds']:.0f} s."
        )
    elif meta.get("fine_tuned_on"):
        notes.append(
            f"- Fine-tuned on {meta['fine_tuned_on']}: {meta['steps']} steps in {meta['fit_seconds'] / 60:.1f} min."
        )
    if meta.get("vocab_after"):
        notes.append(f"- Vocabulary trimmed from {meta['vocab_before']:,} to {meta['vocab_after']:,} pieces.")
    quant = meta.get("quantization")
    if quant:
        fp32, exported = quant["macro_f1"]["pytorch_fp32"], quant["macro_f1"]["exported"]
        changes = ", ".join(f"{h} {fp32[h]:.3f} → {exported[h]:.3f}" for h in fp32 if h in exported)
        notes.append(
            f"- ONNX export (int8 where quantized) vs PyTorch fp32 on {quant['rows']} held-out rows: "
            f"max |Δp| {quant['max_abs_diff']:.4f}; macro-F1 {changes}."
        )
        if quant.get("blockwise_kernels") == "fp32":
            notes.append(
                "- This check ran the blockwise int8 weights as fp32 (no int8 dot products on the training "
                "machine's CPU, or `TRIAGE_ONNX_BLOCKWISE=fp32`); where a serving CPU runs the int8 kernels, "
                "the activations are quantized per token too, which moves probabilities a little more."
            )
        elif quant.get("method") == "rowwise":
            notes.append(
                "- Row-wise int8 (7-bit weights per output, activations per token): every CPU runs the same "
                "arithmetic (ONNX Runtime's int8 GEMM: VNNI, AVX2 or ARM dot products), so this check is what "
                "serving sees."
            )
        elif quant.get("blockwise_kernels") == "int8":
            notes.append(
                "- This check ran ONNX Runtime's int8 kernels (weights and, per token, activations); a serving CPU "
                "without int8 dot products runs the weights as fp32, which moves probabilities a little less."
            )
        batch = quant.get("batch")
        if batch:
            shares = ", ".join(f"{h} {v:.2%}" for h, v in batch["decisions_changed"].items())
            notes.append(
                f"- Scored alone vs in batches ({batch['rows']} held-out rows): max |Δp| {batch['max_abs_diff']:.4f}; "
                f"decisions changed: {shares}. Dynamic int8 scales activations per batch, so a comment's scores "
                "depend slightly on the comments scored with it; static, blockwise and rowwise int8 "
                "(`quantization: static`, `blockwise` or `rowwise`) and the float export (`quantize: false`) do not."
            )
    if meta.get("ensemble_head_weights") and meta.get("family") == "ensemble":
        shares = ", ".join(f"{h} {w['transformer']:.2f}" for h, w in meta["ensemble_head_weights"].items())
        notes.append(f"- Ensemble: the transformer's share of the average per head: {shares}.")
        by_lang = meta.get("ensemble_lang_weights") or {}
        for head, langs in by_lang.items():
            shares = ", ".join(f"{lang} {w['transformer']:.2f}" for lang, w in langs.items())
            notes.append(f"  - {head}, per language: {shares}.")
    return ["## Serving model", *notes, ""] if notes else []


@dataclass
class Fitted:
    backend: Any
    thresholds: dict[str, dict[str, float]]
    report: dict[str, Any]
    chosen: str
    reports: dict[str, dict[str, Any]] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


def _score(report: dict[str, Any]) -> float:
    values = list(headline(report).values())
    return float(np.mean(values)) if values else 0.0


def fit_tfidf_family(train_df: pd.DataFrame, val_df: pd.DataFrame, test_df: pd.DataFrame, cfg: TrainConfig) -> Fitted:
    backend = fit_tfidf(train_df, cfg.tfidf, cfg.source_weights)
    thresholds = tune_thresholds(
        val_df, backend.predict_proba(val_df["norm_text"].tolist()), cfg.min_threshold_support, cfg.threshold_selection
    )
    report = evaluate(test_df, backend.predict_proba(test_df["norm_text"].tolist()), thresholds)
    return Fitted(backend, thresholds, report, "tfidf", {"tfidf": report})


def quantization_check(
    fit: Any, exported: Any, val_df: pd.DataFrame, test_df: pd.DataFrame, cfg: TrainConfig
) -> dict[str, Any] | None:
    """PyTorch fp32 vs the exported (int8) model on the same rows: max |Δp| and macro-F1 per head.

    Thresholds for both are tuned on validation rows of the same size, so the F1 change is the model's.
    """
    from training.transformer import encode, torch_proba

    n = cfg.transformer.quantization_check_rows
    if not n:
        return None
    val, test = cap_total(val_df, n, cfg.split.seed), cap_total(test_df, n, cfg.split.seed)
    pad = fit.tokenizer.pad_token_id if fit.tokenizer.pad_token_id is not None else 0
    scorers = {
        "pytorch_fp32": lambda texts: torch_proba(fit.model, encode(fit.tokenizer, texts, cfg.transformer), pad),
        "exported": exported.predict_proba,
    }
    test_p, macro_f1, thresholds = {}, {}, {}
    for name, score in scorers.items():
        val_p = score(val["norm_text"].tolist())
        test_p[name] = score(test["norm_text"].tolist())
        thresholds[name] = tune_thresholds(val, val_p, cfg.min_threshold_support, cfg.threshold_selection)
        macro_f1[name] = headline(evaluate(test, test_p[name], thresholds[name]))
    ref, new = test_p["pytorch_fp32"], test_p["exported"]
    out = {
        "rows": len(test),
        "max_abs_diff": max(float(np.abs(ref[h] - new[h]).max()) for h in ref),
        "macro_f1": macro_f1,
        "method": cfg.transformer.quantization if cfg.transformer.quantize else "none",
    }
    kernels = getattr(exported, "blockwise_kernels", None)
    if kernels:
        out["blockwise_kernels"] = kernels
    alone = min(cfg.transformer.batch_check_rows, len(test))
    if alone:
        picked = np.sort(np.random.default_rng(cfg.split.seed).choice(len(test), alone, replace=False))
        batched = {h: p[picked] for h, p in new.items()}
        out["batch"] = batch_consistency(exported, test.iloc[picked], batched, thresholds["exported"])
    log.info("quantization check on %d held-out rows: %s", len(test), out)
    return out


def score_one_at_a_time(backend: Any, texts: list[str]) -> dict[str, np.ndarray]:
    """Each text scored in a call of its own, as a one-comment HTTP request scores it."""
    single = [backend.predict_proba([text]) for text in texts]
    return {h: np.concatenate([s[h] for s in single]) for h in single[0]} if single else {}


def batch_consistency(
    backend: Any, rows: pd.DataFrame, batched: dict[str, np.ndarray], thresholds: dict[str, dict[str, float]]
) -> dict[str, Any]:
    """Each row scored alone (a one-comment HTTP call) vs in batches (``batched``: the same rows' scores).

    Dynamic int8 scales activations per batch, so a comment's probabilities depend on the comments scored
    with it; static, blockwise and rowwise int8 and a float export do not. Returns the largest |Δp| and, per
    head, the share of rows whose decision (sentiment argmax, binary thresholds) differs.
    """
    texts, langs = rows["norm_text"].tolist(), rows["lang"].to_numpy()
    alone = score_one_at_a_time(backend, texts)
    changed = {"sentiment": float(np.mean(alone["sentiment"].argmax(1) != batched["sentiment"].argmax(1)))}
    for head in BINARY_HEADS:
        rules = thresholds.get(head, {"default": 0.5})
        before = apply_thresholds(batched[head], langs, rules)
        changed[head] = float(np.mean(apply_thresholds(alone[head], langs, rules) != before))
    return {
        "rows": len(texts),
        "max_abs_diff": max(float(np.abs(alone[h] - batched[h]).max()) for h in alone),
        "decisions_changed": changed,
    }


ENSEMBLE_GRID = (0.0, 0.25, 0.5, 0.75, 1.0)


def _enough(metrics: dict[str, float], min_support: int) -> bool:
    if "positives" in metrics:
        return enough_of_each(int(metrics["positives"]), int(metrics["support"]), min_support)
    return metrics["support"] >= 3 * min_support


def _cell_scores(
    frame: pd.DataFrame, proba: dict[str, Any], thresholds: dict[str, dict[str, float]], min_support: int
) -> dict[str, dict[tuple[str, str], float]]:
    """Macro-F1 per head and (language, source) cell, for the cells with enough labels to measure (``_enough``)."""
    out: dict[str, dict[tuple[str, str], float]] = {}
    for (lang, source), index in frame.groupby(["lang", "source"], observed=True).indices.items():
        report = evaluate(frame.iloc[index], {h: p[index] for h, p in proba.items()}, thresholds)
        for head, slices in report.items():
            if _enough(slices["all"], min_support):
                out.setdefault(head, {})[(str(lang), str(source))] = slices["all"]["macro_f1"]
    return out


def ensemble_weights(
    val_df: pd.DataFrame,
    outputs: dict[str, Any],
    min_support: int,
    grid: tuple[float, ...] = ENSEMBLE_GRID,
    selection: str = "source_mean",
    thresholds_by: ThresholdSelection = "pooled",
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, dict[str, float]]]]:
    """The transformer's share of the average (the rest TF-IDF's) with the best validation macro-F1: per head,
    and per head and language where the language has enough validation rows (as for its own threshold).

    ``selection="source_mean"`` scores a weight by the mean macro-F1 over the (language, source) cells with
    enough labels, so each corpus counts once however many rows it has (BAN-PL's rows, twice PolEval's, count
    no more than PolEval's); ``"pooled"`` by the macro-F1 over all rows of the head or language.
    Each candidate weight gets its own thresholds tuned on the same validation rows (``thresholds_by``, as
    :func:`training.evaluate.tune_thresholds`); ties go to 0.5.
    """
    from models.backends import EnsembleBackend

    reports, cells = {}, {}
    for w in grid:
        mix = EnsembleBackend({}, {"transformer": w, "tfidf": 1 - w}).combine(outputs)
        thresholds = tune_thresholds(val_df, mix, min_support, thresholds_by)
        reports[w] = evaluate(val_df, mix, thresholds)
        cells[w] = _cell_scores(val_df, mix, thresholds, min_support) if selection == "source_mean" else {}
    order = sorted(grid, key=lambda g: abs(g - 0.5))

    def score(w: float, head: str, lang: str | None) -> float:
        scores = [v for (cell_lang, _), v in cells[w].get(head, {}).items() if lang in (None, cell_lang)]
        if scores:
            return float(np.mean(scores))
        return reports[w][head]["all" if lang is None else f"lang_{lang}"]["macro_f1"]

    def pick(head: str, lang: str | None) -> dict[str, float]:
        w = max(order, key=lambda g: score(g, head, lang))
        return {"transformer": w, "tfidf": 1 - w}

    head_weights: dict[str, dict[str, float]] = {}
    lang_weights: dict[str, dict[str, dict[str, float]]] = {}
    for head, slices in reports[grid[0]].items():
        head_weights[head] = pick(head, None)
        for name, metrics in slices.items():
            if name.startswith("lang_") and _enough(metrics, min_support):
                lang_weights.setdefault(head, {})[name.removeprefix("lang_")] = pick(head, name.removeprefix("lang_"))
    log.info(
        "ensemble (%s): the transformer's share per head %s, per head and language %s",
        selection,
        {h: w["transformer"] for h, w in head_weights.items()},
        {h: {lang: w["transformer"] for lang, w in by.items()} for h, by in lang_weights.items()},
    )
    return head_weights, lang_weights


def fit_transformer_family(
    prepared: Prepared,
    cfg: TrainConfig,
    settings: TrainingSettings,
    work: Path,
    checkpoint: tuple[Path, dict[str, Any]] | None = None,
) -> Fitted:
    """Fine-tune (or load ``checkpoint``, a folder fine-tuned elsewhere and its checked ``checkpoint.json``),
    export to ONNX, and when asked compare with TF-IDF and their average on validation."""
    from models.backends import EnsembleBackend
    from training.finetune import checkpoint_summary, fine_tune, load_checkpoint, prepare_base
    from training.transformer import export_onnx

    tcfg = cfg.transformer
    train_df, val_df, test_df = prepared.part("train"), prepared.part("val"), prepared.part("test")
    weights_meta: dict[str, Any] = {"ensemble_head_weights": None, "ensemble_lang_weights": None}
    finetune_meta: dict[str, Any] = {}
    base = prepare_base(cfg, prepared, settings.home)
    if checkpoint is None:
        fit = fine_tune(cfg, prepared, base)
    else:
        folder, meta = checkpoint
        fit = load_checkpoint(folder, base.path, meta)
        finetune_meta = {"finetuned": checkpoint_summary(meta, folder)}
    calibration = train_df["norm_text"].sample(min(tcfg.calibration_rows, len(train_df)), random_state=tcfg.seed)
    candidates: dict[str, Any] = {
        "transformer": export_onnx(fit, tcfg, work / "transformer", calibration_texts=calibration.tolist())
    }
    quantization = quantization_check(fit, candidates["transformer"], val_df, test_df, cfg)
    if cfg.ensemble != "never":
        candidates["tfidf"] = fit_tfidf(train_df, cfg.tfidf, cfg.source_weights)
    val_texts, test_texts = val_df["norm_text"].tolist(), test_df["norm_text"].tolist()
    val_p = {name: b.predict_proba(val_texts) for name, b in candidates.items()}
    test_p = {name: b.predict_proba(test_texts) for name, b in candidates.items()}
    if "tfidf" in candidates:
        members = {"transformer": candidates["transformer"], "tfidf": candidates["tfidf"]}
        head_weights, lang_weights = ensemble_weights(
            val_df,
            {n: val_p[n] for n in members},
            cfg.min_threshold_support,
            selection=cfg.ensemble_selection,
            thresholds_by=cfg.threshold_selection,
        )
        ensemble = EnsembleBackend(members, {"transformer": 0.5, "tfidf": 0.5}, head_weights, lang_weights)
        weights_meta = {"ensemble_head_weights": head_weights, "ensemble_lang_weights": lang_weights}
        candidates["ensemble"] = ensemble
        val_p["ensemble"] = ensemble.combine({n: val_p[n] for n in members}, val_df["lang"].astype(str).tolist())
        test_p["ensemble"] = ensemble.combine({n: test_p[n] for n in members}, test_df["lang"].astype(str).tolist())
    thresholds = {
        name: tune_thresholds(val_df, val_p[name], cfg.min_threshold_support, cfg.threshold_selection)
        for name in candidates
    }
    val_scores = {name: _score(evaluate(val_df, val_p[name], thresholds[name])) for name in candidates}
    chosen = "transformer"
    if cfg.ensemble == "always" or (cfg.ensemble == "auto" and val_scores.get("ensemble", -1) > val_scores[chosen]):
        chosen = "ensemble"
    reports = {name: evaluate(test_df, test_p[name], thresholds[name]) for name in candidates}
    log.info("validation mean macro-F1: %s; serving %s", val_scores, chosen)
    return Fitted(
        candidates[chosen],
        thresholds[chosen],
        reports[chosen],
        chosen,
        reports,
        fit.history,
        {
            "validation_scores": val_scores,
            "bucket_share": fit.bucket_share,
            "fit": tcfg.fit,
            "steps": fit.steps,
            "fit_seconds": fit.seconds,
            "fine_tuned_on": fit.device,  # with the precision `auto` resolved to: "cpu, bfloat16 autocast"
            "base_model": tcfg.base_model,
            "quantization": quantization,
            **weights_meta,
            **base.vocab,
            **finetune_meta,
        },
    )


def train(
    data: list[str | Path],
    cfg: TrainConfig,
    settings: TrainingSettings | None = None,
    skip_invalid: bool = False,
    register: bool = True,
    finetuned: Path | None = None,
) -> TrainResult:
    """Train (``finetuned``: finish a transformer checkpoint written by ``triage finetune`` instead of
    fine-tuning here), evaluate on the held-out split, log to MLflow and register."""
    settings = settings or TrainingSettings()
    started = time.monotonic()
    configure_mlflow(settings.home)
    if finetuned is not None and cfg.family != "transformer":
        raise CheckpointError(f"--finetuned needs a transformer config (family: {cfg.family})")
    experiment_id = _experiment_id(cfg.experiment, settings.home)  # before any training
    prepared = load_prepared(list(data), cfg, settings.seed_data, skip_invalid=skip_invalid)
    checkpoint = None
    if finetuned is not None:  # checked before any other work: a wrong folder, split or config fails at once
        meta = read_checkpoint(finetuned)
        check_compatible(meta, cfg, prepared.split_fingerprint, finetuned)
        cfg = finishing_config(meta, cfg)  # what is logged: how the model was really fine-tuned
        checkpoint = (finetuned, meta)
    paths, loaded, frame = prepared.paths, prepared.loaded, prepared.frame
    train_df, val_df, test_df = prepared.part("train"), prepared.part("val"), prepared.part("test")
    log.info("rows: train %d, validation %d, test %d", len(train_df), len(val_df), len(test_df))

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if cfg.family == "transformer":
            fitted = fit_transformer_family(prepared, cfg, settings, work, checkpoint)
        else:
            fitted = fit_tfidf_family(train_df, val_df, test_df, cfg)
        report = fitted.report
        summary = summarize(frame)
        summary["splits"] = {str(k): int(v) for k, v in frame["split"].value_counts().items()}
        summary["skipped_invalid"] = len(loaded.skipped)
        summary["lang_detected"] = loaded.detected_lang
        if prepared.seed_sources:  # which sources are the bundled seed set (see known_weaknesses)
            summary["seed_sources"] = prepared.seed_sources
        fingerprint = ids_fingerprint(test_df["id"])
        champion = score_champion(test_df, fingerprint) if register else None
        meta = {
            "family": cfg.family if fitted.chosen != "ensemble" else "ensemble",
            "heads": [h for h in HEADS if h in report],
            "trained_at": pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds"),
            "normalization": NORMALIZATION_VERSION,
            "thresholds": fitted.thresholds,
            "headline": headline(report),
            "data_summary": summary,
            "test_fingerprint": fingerprint,
            **fitted.extra,
        }
        model = TriageModel(fitted.backend, meta)
        signature, example = signature_and_example()

        with mlflow.start_run(experiment_id=experiment_id) as run:
            mlflow.set_tag(FINGERPRINT_TAG, fingerprint)
            mlflow.set_tag("triage.family", meta["family"])
            mlflow.log_params(_flat_params(cfg.model_dump()))
            mlflow.log_param("data", ", ".join(str(p) for p in paths)[:500])
            if "fine_tuned_on" in fitted.extra:
                mlflow.log_param("fine_tuned_on", fitted.extra["fine_tuned_on"])
            finetuned_meta = fitted.extra.get("finetuned")
            if finetuned_meta:
                mlflow.log_params(_flat_params(finetuned_meta, "finetuned."))
                mlflow.log_dict(finetuned_meta, "finetuned.json")
            mlflow.log_metrics({k: v for k, v in flatten(report, "test").items() if np.isfinite(v)})
            if champion is not None:  # what promotion compares when the champion was tested on other rows
                mlflow.set_tag(CHAMPION_COMPARED_TAG, champion[0])
                mlflow.log_metrics({f"champion_on_test/{k}/macro_f1": v for k, v in champion[1].items()})
            for name, other in fitted.reports.items():
                if len(fitted.reports) > 1:
                    mlflow.log_metrics({k: v for k, v in flatten(other, f"test_{name}").items() if np.isfinite(v)})
            quant = fitted.extra.get("quantization")
            if quant:
                mlflow.log_metric("quantization/max_abs_diff", quant["max_abs_diff"])
                if quant.get("batch"):
                    mlflow.log_metric("batch_consistency/max_abs_diff", quant["batch"]["max_abs_diff"])
                    changed = quant["batch"]["decisions_changed"]
                    mlflow.log_metrics({f"batch_consistency/{h}/decisions_changed": v for h, v in changed.items()})
                for name, heads in quant["macro_f1"].items():
                    mlflow.log_metrics({f"quantization/{name}/{h}/macro_f1": v for h, v in heads.items()})
            for point in fitted.history:
                mlflow.log_metrics({k: v for k, v in point.items() if k != "step"}, step=int(point["step"]))
            mlflow.log_dict(summary, "data_summary.json")
            mlflow.log_dict(report, "evaluation.json")
            if len(fitted.reports) > 1:
                mlflow.log_dict(fitted.reports, "evaluation_by_model.json")
                mlflow.log_text(comparison_table(fitted.reports), "comparison.md")
            card = model_card(meta, report, fitted.reports)
            mlflow.log_text(card, "model_card.md")
            model_dir = model.save(work / "model")
            (model_dir / "model_card.md").write_text(card, encoding="utf-8")
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=CommentTriagePyfunc(),
                artifacts={"model": str(model_dir)},
                code_paths=[models_package_dir()],
                signature=signature,
                input_example=example,
                pip_requirements=_requirements(cfg.family),
                registered_model_name=MODEL_NAME if register else None,
            )
            version = str(info.registered_model_version) if register else None
            if version:
                mlflow.MlflowClient().set_model_version_tag(MODEL_NAME, version, FINGERPRINT_TAG, fingerprint)
    seconds = time.monotonic() - started
    log.info("trained in %.1fs, run %s, version %s", seconds, run.info.run_id, version)
    return TrainResult(
        run_id=run.info.run_id,
        version=version,
        report=report,
        headline=meta["headline"],
        seconds=seconds,
        reports=fitted.reports,
    )


def score_champion(test: pd.DataFrame, fingerprint: str) -> tuple[str, dict[str, float]] | None:
    """The current champion's macro-F1 per head and language on this run's test rows, so that promotion compares
    the two on the same rows even when the champion was trained and tested on other data (the seed bootstrap
    model). None when there is no champion, or it was tested on these very rows (promotion compares its own
    figures)."""
    client = mlflow.MlflowClient()
    version = champion_version(client)
    if version is None or client.get_model_version(MODEL_NAME, version).tags.get(FINGERPRINT_TAG) == fingerprint:
        return None
    try:
        loaded = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}/{version}")
        champion: TriageModel = loaded.unwrap_python_model().model
        columns = champion.predict_columns(test["text"].tolist(), test["lang"].tolist())
    except Exception as exc:  # a champion that cannot load here (another code version) leaves promotion unsure
        log.warning("champion version %s could not score this run's test rows: %s", version, exc)
        return None
    proba = {
        "sentiment": np.column_stack([np.asarray(columns[f"p_sentiment_{label}"]) for label in SENTIMENT_LABELS]),
        **{head: np.asarray(columns[f"p_{head}"]) for head in BINARY_HEADS},
    }
    scores = slice_scores(evaluate(test, proba, champion.thresholds))
    log.info("champion version %s on this run's test rows: %s", version, json.dumps(scores))
    return version, scores


def _flat_params(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flat_params(value, f"{name}."))
        else:
            out[name] = value
    return out
