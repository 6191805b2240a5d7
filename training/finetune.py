"""Fine-tune on one machine, finish on another: a transformer checkpoint that needs no MLflow.

``triage finetune`` reads and splits the data exactly as ``triage train`` does, fine-tunes the encoder and
heads, and writes a checkpoint folder: the tensors that trained (a frozen embedding table is not written:
it is the base model's), in safetensors shards of a chosen size and dtype, and ``checkpoint.json``, which
says what they were trained on (the split's fingerprint, the vocabulary's hash, the config) and how
(steps, time, device, the validation history).

``triage train --finetuned DIR`` then skips fine-tuning: it resolves the same base model, loads the
tensors, checks that the split and the vocabulary are the ones the checkpoint was trained on, and does
the rest (ONNX export, thresholds, TF-IDF and the ensemble, evaluation, MLflow, the registry). So a GPU
machine needs no MLflow, no tracking server and no hub: the data, a base-model folder and this package.
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from models.text import NORMALIZATION_VERSION
from training.base_models import sha256_file
from training.config import TrainConfig, TransformerConfig, validation_details
from training.prepare import Prepared, cap, cap_total

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "checkpoint.json"
CHECKPOINT_FORMAT = 1
DTYPES = ("float32", "float16", "bfloat16")
# What defines the fine-tuned model and its input: a checkpoint is finished only with a config that agrees.
MODEL_FIELDS = ("base_model", "trim_vocab", "num_layers", "max_length", "text_prefix")
# How a fine-tuned model is exported and checked: these come from the finishing config, the rest (learning
# rate, steps, ...) from the checkpoint, so the finished run records how the model was really trained.
EXPORT_FIELDS = (
    "quantize",
    "quantization",
    "calibration",
    "calibration_rows",
    "calibration_percentile",
    "quantize_exclude",
    "quantization_block_size",
    "quantization_check_rows",
    "batch_check_rows",
    "threads",
    "device",
)
REQUIRED_KEYS = (
    "split_fingerprint",
    "vocab_hash",
    "vocab_size",
    "num_layers",
    "dtype",
    "files",
    "transformer",
    "steps",
    "seconds",
    "best_score",
    "history",
    "bucket_share",
    "device",
)


class CheckpointError(RuntimeError):
    """A checkpoint cannot be written, read, or finished on this data and config; the message says why."""


@dataclass
class BaseFolder:
    path: str
    vocab: dict[str, Any]


def prepare_base(cfg: TrainConfig, prepared: Prepared, home: Path, base_override: str | None = None) -> BaseFolder:
    """The folder to fine-tune from: the config's base model, its vocabulary trimmed to the training and
    validation texts when the config says so. ``base_override``: a prepared folder, used as is (no trim)."""
    from training.base_models import resolve_base_model

    tcfg = cfg.transformer
    if base_override:
        return _prepared_folder(resolve_base_model(base_override, home), cfg, prepared)
    base = resolve_base_model(tcfg.base_model, home)
    if not tcfg.trim_vocab:
        return BaseFolder(base, {})
    from training.vocab import trim_model

    trimmed = trim_model(base, _texts(prepared), home / "base_models" / "trimmed", prefix=tcfg.text_prefix)
    return BaseFolder(str(trimmed.path), {"vocab_before": trimmed.before, "vocab_after": trimmed.after})


def _texts(prepared: Prepared) -> list[str]:
    """What a vocabulary is trimmed to: the training and validation texts."""
    return prepared.part("train")["norm_text"].tolist() + prepared.part("val")["norm_text"].tolist()


def _prepared_folder(path: str, cfg: TrainConfig, prepared: Prepared) -> BaseFolder:
    """A folder `triage base-model prepare` made elsewhere: with trim_vocab, it must be trimmed to these texts."""
    from training.vocab import TRIM_FILE, texts_fingerprint

    marker = Path(path) / TRIM_FILE
    if not (cfg.transformer.trim_vocab and marker.is_file()):
        return BaseFolder(path, {})
    info = json.loads(marker.read_text(encoding="utf-8"))
    if info.get("texts") != texts_fingerprint(_texts(prepared), cfg.transformer.text_prefix):
        raise CheckpointError(
            f"{path}: its vocabulary was trimmed to other texts than this data's training and validation split: "
            "prepare it with `triage base-model prepare` from the same data and config"
        )
    return BaseFolder(path, {"vocab_before": int(info["before"]), "vocab_after": int(info["after"])})


def fine_tune(cfg: TrainConfig, prepared: Prepared, base: BaseFolder) -> Any:
    """The fine-tuning step of a transformer run: early stopping on a capped, source-balanced validation set
    (``fit: frozen``: the heads fitted on the frozen encoder's output instead)."""
    from training.transformer import fit_frozen, fit_transformer

    tcfg = cfg.transformer
    train_df = cap(prepared.part("train"), tcfg.max_rows_per_source_train, cfg.split.seed)
    early_val = cap_total(prepared.part("val"), tcfg.max_rows_val, cfg.split.seed)
    fit = fit_frozen if tcfg.fit == "frozen" else fit_transformer
    return fit(train_df, early_val, tcfg, base.path, cfg.source_weights)


def vocab_hash(tokenizer: Any) -> str:
    pieces = sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])
    return hashlib.sha256(json.dumps(pieces, ensure_ascii=False).encode()).hexdigest()[:16]


def trained_tensors(model: Any) -> dict[str, Any]:
    """The parameters that fine-tuning changes (``requires_grad``): what a checkpoint must carry."""
    return {name: p.detach() for name, p in model.named_parameters() if p.requires_grad}


def frozen_hash(model: Any) -> str:
    """A hash of the tensors a checkpoint leaves out (frozen: the base model's), to check the base on loading."""
    import torch

    digest = hashlib.sha256()
    for name, p in sorted(model.named_parameters()):
        if not p.requires_grad:
            digest.update(name.encode())
            digest.update(p.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def _check_dtype(dtype: str) -> None:
    if dtype not in DTYPES:
        raise CheckpointError(f"dtype must be one of {', '.join(DTYPES)} (got {dtype!r})")


def _shards(tensors: Mapping[str, Any], limit: int) -> list[dict[str, Any]]:
    shards: list[dict[str, Any]] = [{}]
    size = 0
    for name in sorted(tensors):
        nbytes = tensors[name].numel() * tensors[name].element_size()
        if shards[-1] and size + nbytes > limit:
            shards.append({})
            size = 0
        shards[-1][name] = tensors[name]
        size += nbytes
    return shards


def save_checkpoint(
    fit: Any,
    cfg: TrainConfig,
    directory: Path,
    *,
    split_fingerprint: str,
    vocab: Mapping[str, Any] | None = None,
    dtype: str = "float32",
    shard_mb: float = 0,
) -> Path:
    """Write the trained tensors (``dtype``; shards of at most ``shard_mb`` MB, 0: one file) and their metadata."""
    import torch
    import transformers
    from safetensors.torch import save_file

    _check_dtype(dtype)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / CHECKPOINT_FILE).unlink(missing_ok=True)  # a save cut short leaves no checkpoint, not a wrong one
    for stale in directory.glob("trained-*.safetensors"):
        stale.unlink()
    tensors = {k: v.to("cpu", getattr(torch, dtype)).contiguous() for k, v in trained_tensors(fit.model).items()}
    limit = int(shard_mb * 1e6) if shard_mb else 1 << 62
    shards = _shards(tensors, limit)
    files = []
    for i, shard in enumerate(shards, 1):
        name = f"trained-{i:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(directory / name))
        files.append({"file": name, "sha256": sha256_file(directory / name), "tensors": len(shard)})
    encoder = fit.model.encoder
    meta = {
        "format": CHECKPOINT_FORMAT,
        "split_fingerprint": split_fingerprint,
        "normalization": NORMALIZATION_VERSION,  # the text it was fine-tuned on (models.text.normalize)
        "vocab_hash": vocab_hash(fit.tokenizer),
        "vocab_size": len(fit.tokenizer.get_vocab()),
        "frozen_hash": frozen_hash(fit.model),
        "num_layers": int(encoder.config.num_hidden_layers),
        "hidden_size": int(encoder.config.hidden_size),
        "dtype": dtype,
        "files": files,
        "transformer": cfg.transformer.model_dump(),
        "source_weights": dict(cfg.source_weights),
        "steps": fit.steps,
        "seconds": fit.seconds,
        "best_score": fit.best_score,
        "history": fit.history,
        "bucket_share": fit.bucket_share,
        "vocab": dict(vocab or {}),
        "device": fit.device,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "host": platform.node(),
    }
    (directory / CHECKPOINT_FILE).write_text(json.dumps(meta, indent=2, ensure_ascii=False), encoding="utf-8")
    log.info("checkpoint: %d tensors in %d file(s) (%s) at %s", len(tensors), len(files), dtype, directory)
    return directory


def read_checkpoint(directory: Path) -> dict[str, Any]:
    path = directory / CHECKPOINT_FILE
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{directory}: not a checkpoint folder (no {CHECKPOINT_FILE})") from None
    except ValueError as exc:
        raise CheckpointError(f"{path}: invalid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise CheckpointError(f"{path}: checkpoint format {found!r}, this code reads {CHECKPOINT_FORMAT}")
    missing = [key for key in REQUIRED_KEYS if key not in meta]
    if missing:
        raise CheckpointError(f"{path}: incomplete, no {', '.join(missing)}")
    try:
        TransformerConfig.model_validate(meta["transformer"])
    except ValidationError as exc:
        raise CheckpointError(f"{path}: its transformer config is not valid here ({validation_details(exc)})") from None
    return meta


def check_compatible(meta: Mapping[str, Any], cfg: TrainConfig, split_fingerprint: str, directory: Path) -> None:
    """A checkpoint is finished only on the split it was trained on, as the model and input it was trained as."""
    if meta["split_fingerprint"] != split_fingerprint:
        raise CheckpointError(
            f"{directory}: fine-tuned on another train/validation/test split (fingerprint "
            f"{meta['split_fingerprint']}, here {split_fingerprint}): give the same data and split settings"
        )
    for name in MODEL_FIELDS:
        theirs, ours = meta["transformer"].get(name), getattr(cfg.transformer, name)
        if theirs != ours:
            raise CheckpointError(
                f"{directory}: fine-tuned with transformer.{name}={theirs!r}, the config says {ours!r}"
            )
    theirs = meta.get("normalization")
    if theirs is None:
        log.warning(
            "%s: records no text normalisation version (written before checkpoints recorded it); finished as "
            "version %d, which collapses a run of masked handles or links into one",
            directory,
            NORMALIZATION_VERSION,
        )
    elif theirs != NORMALIZATION_VERSION:
        raise CheckpointError(
            f"{directory}: fine-tuned on text normalised as version {theirs}, this code normalises as version "
            f"{NORMALIZATION_VERSION}: fine-tune it again with this code"
        )
    if dict(meta["source_weights"]) != dict(cfg.source_weights):
        raise CheckpointError(
            f"{directory}: fine-tuned with source_weights {meta['source_weights']}, the config says "
            f"{dict(cfg.source_weights)}"
        )


def finishing_config(meta: Mapping[str, Any], cfg: TrainConfig) -> TrainConfig:
    """The config a finished run uses and records: the checkpoint's training settings, this config's export."""
    trained = TransformerConfig.model_validate(meta["transformer"])
    merged = trained.model_copy(update={name: getattr(cfg.transformer, name) for name in EXPORT_FIELDS})
    return cfg.model_copy(update={"transformer": merged})


def load_checkpoint(directory: Path, base_path: str, meta: Mapping[str, Any] | None = None) -> Any:
    """Rebuild the fine-tuned model: the base model's tensors, overwritten by the checkpoint's trained ones.

    ``meta``: the folder's ``checkpoint.json`` as :func:`read_checkpoint` returned it, when the caller has read it.
    """
    import torch
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    from training.transformer import FitResult, build_model

    meta = meta if meta is not None else read_checkpoint(directory)
    tokenizer = AutoTokenizer.from_pretrained(base_path)
    if vocab_hash(tokenizer) != meta["vocab_hash"]:
        raise CheckpointError(
            f"{directory}: trained on another vocabulary than the base model {base_path} has "
            f"({meta['vocab_size']} pieces, hash {meta['vocab_hash']}; here {len(tokenizer.get_vocab())}, "
            f"{vocab_hash(tokenizer)}): same base model, trim_vocab and data needed"
        )
    tcfg = TransformerConfig.model_validate(meta["transformer"])
    model = build_model(base_path, tcfg, meta["num_layers"])
    expected = set(trained_tensors(model))
    state: dict[str, Any] = {}
    for entry in meta["files"]:
        path = directory / entry["file"]
        if not path.is_file():
            raise CheckpointError(f"{path}: missing")
        if sha256_file(path) != entry["sha256"]:
            raise CheckpointError(f"{path}: sha256 differs from {CHECKPOINT_FILE} (a damaged or partial copy)")
        state.update(load_file(str(path)))
    if set(state) != expected:
        missing, extra = sorted(expected - set(state)), sorted(set(state) - expected)
        raise CheckpointError(
            f"{directory}: its tensors do not fit the model (missing {missing[:5]}, unexpected {extra[:5]})"
        )
    if meta.get("frozen_hash") and frozen_hash(model) != meta["frozen_hash"]:
        raise CheckpointError(
            f"{directory}: the base model {base_path} has other frozen tensors (the embedding table, say) than the "
            "one it was fine-tuned from: same base model, trim_vocab and data needed"
        )
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in state.items():
            if params[name].shape != value.shape:
                raise CheckpointError(
                    f"{directory}: {name} has shape {tuple(value.shape)}, the model {tuple(params[name].shape)}"
                )
            params[name].copy_(value.to(torch.float32))
    model.eval()
    log.info("loaded checkpoint %s (%d steps on %s)", directory, meta["steps"], meta["device"])
    return FitResult(
        model,
        tokenizer,
        int(meta["steps"]),
        float(meta["seconds"]),
        float(meta["best_score"]),
        list(meta["history"]),
        dict(meta["bucket_share"]),
        str(meta["device"]),
    )


def checkpoint_summary(meta: Mapping[str, Any], directory: Path) -> dict[str, Any]:
    """What a finished run records about the fine-tuning it did not do itself."""
    return {
        "path": str(directory),
        "device": meta["device"],
        "host": meta.get("host"),
        "dtype": meta["dtype"],
        "steps": meta["steps"],
        "seconds": meta["seconds"],
        "versions": meta.get("versions", {}),
    }


def finetune(
    data: list[str | Path],
    cfg: TrainConfig,
    out: Path,
    *,
    home: Path,
    seed_data: Path | None,
    base_override: str | None = None,
    dtype: str = "float32",
    shard_mb: float = 0,
    skip_invalid: bool = False,
) -> tuple[Path, Any]:
    """``triage finetune``: load and split as ``triage train`` would, fine-tune, write the checkpoint."""
    from training.prepare import load_prepared

    if cfg.family != "transformer":
        raise CheckpointError(f"finetune needs a transformer config (family: {cfg.family})")
    _check_dtype(dtype)  # before hours of fine-tuning, not after
    try:  # before hours of fine-tuning: the folder must be writable
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-check"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise CheckpointError(f"{out}: cannot write the checkpoint there ({exc.strerror or exc})") from None
    prepared = load_prepared(list(data), cfg, seed_data, skip_invalid=skip_invalid)
    sizes = {name: len(prepared.part(name)) for name in ("train", "val", "test")}
    log.info("rows: %s; split fingerprint %s", sizes, prepared.split_fingerprint)
    base = prepare_base(cfg, prepared, home, base_override)
    fit = fine_tune(cfg, prepared, base)
    try:
        path = save_checkpoint(
            fit,
            cfg,
            out,
            split_fingerprint=prepared.split_fingerprint,
            vocab=base.vocab,
            dtype=dtype,
            shard_mb=shard_mb,
        )
    except OSError as exc:
        raise CheckpointError(f"{out}: writing the checkpoint failed ({exc.strerror or exc})") from None
    return path, fit
