"""Experiment hyper-parameters, read from YAML and validated (unknown keys are errors)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SplitConfig(_Strict):
    val_fraction: float = Field(0.1, gt=0, lt=0.5)
    test_fraction: float = Field(0.1, gt=0, lt=0.5)
    seed: int = 20261123
    group_ids: dict[str, str] = Field(
        default_factory=dict,
        description="per source, a regular expression on row ids whose first group names a group of rows that "
        "are rewordings of one text (ParaDetox: a toxic sentence and its detoxified versions): a group is split "
        "together, like copies of one text",
    )

    @field_validator("group_ids")
    @classmethod
    def _group_patterns(cls, value: dict[str, str]) -> dict[str, str]:
        for source, pattern in value.items():
            try:
                groups = re.compile(pattern).groups
            except re.error as exc:
                raise ValueError(f"{source}: {pattern!r} is not a regular expression ({exc})") from None
            if groups < 1:
                raise ValueError(f"{source}: {pattern!r} needs a group, (...), that names the row's group")
        return value


class TfidfConfig(_Strict):
    char_ngram: tuple[int, int] = (2, 5)
    word_ngram: tuple[int, int] = (1, 2)
    char_features: int = Field(2**20, ge=2**10, le=2**24)
    word_features: int = Field(2**19, ge=2**10, le=2**24)
    C: float = Field(4.0, gt=0)
    max_iter: int = Field(2000, ge=10)
    class_weight: Literal["balanced"] | None = "balanced"
    solver: Literal["auto", "lbfgs", "sgd"] = Field(
        "auto",
        description="auto: SGD above sgd_above_rows labelled rows, exact below; lbfgs: always exact (liblinear for "
        "binary heads, lbfgs for sentiment); sgd: always SGD",
    )
    sgd_above_rows: int = Field(20_000, ge=0, description="auto: SGD for heads with more labelled rows")
    sgd_alpha: float = Field(2e-6, gt=0)
    sgd_epochs: int = Field(20, ge=1)

    @model_validator(mode="after")
    def _ranges(self) -> TfidfConfig:
        for name in ("char_ngram", "word_ngram"):
            low, high = getattr(self, name)
            if not 1 <= low <= high <= 8:
                raise ValueError(f"{name} must be [low, high] with 1 <= low <= high <= 8")
        return self


# the BERT feed-forward MatMuls, by their ONNX node names
FEED_FORWARD = r"layer\.\d+/(intermediate|output)/dense/"


class TransformerConfig(_Strict):
    base_model: str = Field(
        "offline:multilingual-e5-small",
        description="a local folder, a hub id (where the user has hub access), or offline:multilingual-e5-small",
    )
    text_prefix: str = "query: "
    fit: Literal["fine_tune", "frozen"] = Field(
        "fine_tune",
        description="fine_tune: gradient steps on the heads and the encoder layers not frozen; frozen: the encoder "
        "stays as pretrained and each head is a logistic regression on its mean-pooled output (standardised, "
        "class-balanced, frozen_c), fitted in seconds on a CPU, then exported and served like a fine-tuned model "
        "(what `triage bootstrap` trains on the seed set). Every labelled row counts, weighted by source_weights; "
        "the step, schedule, early-stopping, sampling (balance_alpha, length_group), dropout and precision "
        "settings do not apply to it",
    )
    frozen_c: float = Field(
        0.03,
        gt=0,
        description="fit frozen: the inverse L2 strength of the heads' logistic regressions on standardised "
        "features (on the seed set, 0.003-0.1 scored alike on the blind brand comments)",
    )
    max_length: int = Field(64, ge=8, le=512)
    batch_size: int = Field(32, ge=1)
    learning_rate: float = Field(5e-5, gt=0)
    head_learning_rate: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(0.06, ge=0, lt=1)
    epochs: int = Field(1, ge=1)
    max_steps: int | None = Field(None, ge=1, description="caps the steps of all epochs")
    eval_every: int = Field(200, ge=1)
    patience: int = Field(3, ge=1, description="evaluations without improvement before stopping")
    time_budget_minutes: float | None = Field(None, gt=0, description="stop training after this long")
    fit_schedule_to_budget: bool = Field(
        False,
        description="at each evaluation, end the learning-rate schedule where the time budget is projected to run "
        "out at the pace so far (never past max_steps), so a slow machine still decays the rate to 0 instead of "
        "being cut off mid-schedule by the guard; where it moves, the steps and the schedule depend on the "
        "machine's speed, as the guard's stop already did (each evaluation logs the horizon as scheduled_steps and "
        "the learning rate as lr)",
    )
    dropout: float = Field(0.1, ge=0, lt=1)
    ema_decay: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="keep an exponential moving average of the trained weights with this decay per step (e.g. "
        "0.999: about the last 1,000 steps); validation, early stopping and the saved model use the average "
        "(null: off, the weights as trained)",
    )
    precision: Literal["fp32", "bf16", "auto"] = Field(
        "fp32",
        description="bf16: the forward pass under bfloat16 autocast; weights, optimizer state and the loss stay "
        "fp32, and validation scores in fp32. auto: bf16 where it trains faster than fp32 (a GPU of compute "
        "capability 8 or more, a CPU with AMX), fp32 elsewhere (on a CPU with AVX512-BF16 but no AMX a bf16 step "
        "took 1.35-1.53x as long as fp32)",
    )
    freeze_embeddings: bool = True
    train_layers: int | None = Field(None, ge=0, description="train only the top N encoder layers")
    num_layers: int | None = Field(
        None, ge=1, description="keep only the bottom N encoder layers (a smaller, faster model to fine-tune and serve)"
    )
    trim_vocab: bool = Field(
        False,
        description="keep only the vocabulary pieces the training and validation texts use (plus Latin, Cyrillic "
        "and symbol characters): a ~4x smaller embedding table, so a smaller, faster-loading served model",
    )
    balance_alpha: float = Field(0.5, ge=0, le=1, description="P(source bucket) ∝ size ** alpha")
    length_group: int = Field(
        1,
        ge=1,
        description="draw this many batches at once, sort their rows by length and train on them as batches of "
        "similar length in random order: less padding, so more steps in a CPU budget (1: off)",
    )
    max_rows_per_source_train: int | None = Field(None, ge=10)
    max_rows_val: int | None = Field(4000, ge=10, description="validation rows used for early stopping")
    quantize: bool = True
    quantization: Literal["dynamic", "static", "blockwise", "rowwise"] = Field(
        "dynamic",
        description="dynamic: activation scales computed per batch at run time, so a comment's scores depend "
        "slightly on the comments scored with it; static: activation scales fixed on calibration_rows training "
        "texts (see calibration), so a comment scores the same alone or in any batch; blockwise: int8 weights "
        "with one scale per quantization_block_size inputs of an output (ONNX Runtime's MatMulNBits; the "
        "word-embedding table too, in blocks of a row: GatherBlockQuantized), "
        "activations quantized per token and block at run time, so a comment scores the same alone or in any "
        "batch, and fine enough to quantize the feed-forward too (on a 12-layer e5: half the probability change "
        "of static int8 at about its speed); rowwise: int8 weights with one scale per output (7 bits, so an "
        "AVX2 CPU without VNNI cannot overflow), activations quantized per token at run time (ONNX Runtime's "
        "MatMulIntegerToFloat), so a comment scores the same alone or in any batch, at 1.7x the speed of "
        "blockwise on a VNNI CPU; the word-embedding table as for blockwise",
    )
    quantization_block_size: int = Field(
        64,
        ge=16,
        description="blockwise: inputs per weight and activation scale (a power of two; smaller is finer). On a "
        "12-layer e5 on 2 cores, 32 and 64 scored every comment the same alone or in a batch; at 128 (the "
        "fastest) ONNX Runtime's kernel for one short comment differs from the batched one (max |Δp| 0.04)",
    )
    rowwise_slice: int = Field(
        0,
        ge=0,
        description="rowwise: quantize an input wider than this (and a multiple of it) in slices of this width, "
        "each with its own scales (0: never). On the fine-tuned 6-layer e5, 384 (the feed-forward output's 1,536 "
        "inputs in four) cut the mean |Δp| by ~20% and the largest from 0.17 to 0.10 at 0.93x the speed; 128 "
        "(every MatMul) by ~35% at 0.62x",
    )
    calibration_rows: int = Field(256, ge=8, description="training texts that fix the static activation scales")
    calibration: Literal["minmax", "percentile"] = Field(
        "minmax",
        description="how static int8 sets an activation's range on the calibration texts: its min and max, or "
        "the calibration_percentile of its absolute values. A percentile clips the outlier features a longer "
        "fine-tune grows: on a 6-layer e5 trained ~4 epochs on a GPU, 99.99 cost 0.05 sentiment macro-F1 "
        "(mean |Δp| 0.08), min-max 0.006 (mean |Δp| 0.008), as dynamic int8 did",
    )
    calibration_percentile: float = Field(
        99.999, gt=90, le=100, description="with calibration: percentile, the percentile of |activation| kept in range"
    )
    quantize_exclude: list[str] | None = Field(
        None,
        description="regular expressions of ONNX node names kept fp32 when quantizing. Default (null): for dynamic "
        "and static int8 the BERT feed-forward MatMuls (on a fine-tuned e5-small their per-tensor int8 error was "
        "5x that of all other MatMuls together, mean |Δp| 0.018 -> 0.003); for blockwise, none (a pattern that "
        "matches the word-embedding Gather keeps that table fp32)",
    )
    quantization_check_rows: int = Field(
        2000,
        ge=0,
        description="held-out rows scored by both the PyTorch fp32 model and the exported one: the quantization's "
        "largest probability change and its macro-F1 change per head, logged with the model (0: skip)",
    )
    batch_check_rows: int = Field(
        300,
        ge=0,
        description="of the quantization check's test rows, this many are also scored one at a time: how far a "
        "comment's scores and decisions move between a one-comment call and a batch, logged with the model (0: skip)",
    )
    threads: int | None = Field(None, ge=1)
    device: str | None = Field(None, description="cpu, cuda, cuda:1 ... (default: cuda when available)")
    seed: int = 20261123

    @model_validator(mode="after")
    def _budget(self) -> TransformerConfig:
        if self.fit_schedule_to_budget and self.time_budget_minutes is None:
            raise ValueError("fit_schedule_to_budget needs time_budget_minutes")
        return self

    @model_validator(mode="after")
    def _block_size(self) -> TransformerConfig:
        size = self.quantization_block_size
        if size & (size - 1):
            raise ValueError(f"quantization_block_size must be a power of two (got {size})")
        return self

    @field_validator("quantize_exclude")
    @classmethod
    def _patterns(cls, value: list[str] | None) -> list[str] | None:
        for pattern in value or []:  # compiled at export, after the fine-tune: checked here instead
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"{pattern!r} is not a regular expression ({exc})") from None
        return value

    @field_validator("device")
    @classmethod
    def _device(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"cpu|cuda(?::\d+)?|mps", value):
            raise ValueError(f"must be cpu, cuda, cuda:N or mps (got {value!r})")
        return value

    def kept_float(self) -> list[str]:
        """The node-name patterns that quantization leaves fp32 (``quantize_exclude`` or the method's default)."""
        if self.quantize_exclude is not None:
            return list(self.quantize_exclude)
        return [] if self.quantization in ("blockwise", "rowwise") else [FEED_FORWARD]


class TrainConfig(_Strict):
    family: Literal["tfidf", "transformer"] = "tfidf"
    experiment: str = "comment-triage"
    include_seed: bool = Field(True, description="add the bundled seed set (the only question labels)")
    max_rows_per_source: int | None = Field(None, ge=10, description="cap each source, for quick runs")
    min_threshold_support: int = Field(
        25, ge=1, description="positives and negatives needed per language to tune a language's own threshold"
    )
    source_weights: dict[str, float] = Field(
        default_factory=dict,
        description="per source: a weight on its training rows (TF-IDF sample weight, transformer sampling "
        "share); 0 leaves the source out of training but keeps it in validation and test; unnamed sources: 1",
    )
    split: SplitConfig = SplitConfig()
    tfidf: TfidfConfig = TfidfConfig()
    transformer: TransformerConfig = TransformerConfig()
    ensemble: Literal["auto", "always", "never"] = Field(
        "auto", description="transformer family: also train TF-IDF and serve the average if it wins on validation"
    )
    threshold_selection: Literal["pooled", "source_mean"] = Field(
        "pooled",
        description="how a binary head's decision thresholds (global, per language) are tuned on validation: the "
        "F1 over all the rows (pooled), or the mean F1 over the sources among them, each corpus counting once "
        "(source_mean)",
    )
    ensemble_selection: Literal["source_mean", "pooled"] = Field(
        "source_mean",
        description="how the ensemble's weights are chosen on validation: the mean macro-F1 over the (language, "
        "source) cells, each corpus counting once (source_mean), or the macro-F1 over all rows (pooled)",
    )

    @model_validator(mode="after")
    def _weights(self) -> TrainConfig:
        for source, weight in self.source_weights.items():
            if not weight >= 0:
                raise ValueError(f"source_weights.{source} must be >= 0 (got {weight})")
        return self


class ConfigError(Exception):
    pass


def validation_details(exc: ValidationError) -> str:
    """``field.path: message; ...``: each problem named by the field it is in."""
    return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())


def load_config(path: str | Path | None) -> TrainConfig:
    """A training config from YAML. ``extends: other.yaml`` (relative to the file) starts from that config:
    this file's keys replace its keys, mappings key by key (so a key can be changed, not removed)."""
    if path is None:
        return TrainConfig()
    path = Path(path)
    raw = _read_mapping(path, ())
    try:
        return TrainConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {validation_details(exc)}") from None


def _read_mapping(path: Path, chain: tuple[Path, ...]) -> dict[str, object]:
    """The YAML mapping at ``path`` merged over the one it ``extends``; ``chain``: the files extending it."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        via = f" (extended by {chain[-1]})" if chain else ""
        raise ConfigError(f"{path}: no such file{via}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML ({exc})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the config must be a mapping")
    if "extends" not in raw:
        return raw
    base = raw.pop("extends")
    if not isinstance(base, str) or not base.strip():
        raise ConfigError(f"{path}: extends: must be the path of another config file (got {base!r})")
    parent = path.parent / base
    if parent.resolve() in {p.resolve() for p in (*chain, path)}:
        raise ConfigError(f"{path}: extends: {base} extends this file again (a cycle)")
    return _merged(_read_mapping(parent, (*chain, path)), raw)


def _merged(base: dict[str, object], override: dict[str, object]) -> dict[str, object]:
    out = dict(base)
    for key, value in override.items():
        below = out.get(key)
        out[key] = _merged(below, value) if isinstance(below, dict) and isinstance(value, dict) else value
    return out


def seed_config() -> TrainConfig:
    """TF-IDF on the seed set only: smaller hash spaces, exact solvers. The bootstrap model of ``make run``
    where the base model cannot be had, and the seed half of :func:`bootstrap_config`."""
    return TrainConfig(
        min_threshold_support=10,
        tfidf=TfidfConfig(char_features=2**18, word_features=2**17, C=10.0),
    )


def bootstrap_config() -> TrainConfig:
    """The bootstrap model of ``make run``: on the seed set, the bottom 6 layers of the offline
    multilingual-e5-small, frozen, with logistic-regression heads on their mean-pooled output (``fit:
    frozen``), exported row-wise int8 like the shipped CPU config, averaged with the seed TF-IDF model per
    head and language where that wins on validation. About a minute on 2 cores, the base model's build
    aside. On the blind brand comments it scored well above TF-IDF alone (README: "The bootstrap model")."""
    seed = seed_config()
    return seed.model_copy(
        update={
            "family": "transformer",
            "transformer": TransformerConfig(fit="frozen", num_layers=6, quantization="rowwise"),
        }
    )
