"""Multi-task fine-tuning of a transformer encoder: one shared encoder, one head per label.

A row's loss counts only the heads it is labelled for; batches are drawn from per-source buckets with
probabilities proportional to ``size ** alpha`` so the small sets (complaints, the seed questions) are
not drowned by the large ones. The trained encoder and heads are exported to ONNX (int8: dynamic by
default, static with calibrated activation scales on request) and served by
:class:`models.backends.OnnxBackend`; thresholds are tuned on that exported model.
"""

from __future__ import annotations

import logging
import math
import os
import random
import re
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from models.backends import OnnxBackend, Probabilities
from models.kernels import cpu_flags
from models.schema import BINARY_HEADS, HEADS, SENTIMENT_LABELS
from training.config import ConfigError, TransformerConfig
from training.evaluate import evaluate, headline

log = logging.getLogger(__name__)


class MultiTaskModel(nn.Module):
    """Shared encoder, mean pooling, a 3-way sentiment head and one logit per binary head."""

    def __init__(self, encoder: nn.Module, hidden: int, dropout: float = 0.1):
        super().__init__()
        self.encoder = encoder
        self.dropout = nn.Dropout(dropout)
        self.sentiment = nn.Linear(hidden, len(SENTIMENT_LABELS))
        self.binary = nn.Linear(hidden, len(BINARY_HEADS))

    def pool(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The encoder's last hidden states averaged over the real tokens: what the heads read."""
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = self.dropout(self.pool(input_ids, attention_mask))
        return self.sentiment(pooled), self.binary(pooled)


class ProbabilityModel(nn.Module):
    """What is exported: probabilities, not logits."""

    def __init__(self, model: MultiTaskModel):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        sentiment, binary = self.model(input_ids, attention_mask)
        return torch.softmax(sentiment, dim=-1), torch.sigmoid(binary)


def label_tensors(frame: pd.DataFrame) -> tuple[torch.Tensor, torch.Tensor]:
    """Sentiment class ids (-100 = not labelled) and binary labels (NaN = not labelled)."""
    sentiment = torch.tensor(
        [SENTIMENT_LABELS.index(s) if isinstance(s, str) else -100 for s in frame["sentiment"]], dtype=torch.long
    )
    binary = torch.tensor(
        np.stack(
            [frame[h].astype("Float64").to_numpy(dtype=np.float32, na_value=np.nan) for h in BINARY_HEADS], axis=1
        ),
        dtype=torch.float32,
    )
    return sentiment, binary


def label_masks(sentiment: torch.Tensor, binary: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Which rows are labelled: for sentiment (class id, -100 = not labelled) and per binary head (NaN = not)."""
    return sentiment != -100, ~torch.isnan(binary)


def masked_loss(
    sentiment_logits: torch.Tensor,
    binary_logits: torch.Tensor,
    sentiment: torch.Tensor,
    binary: torch.Tensor,
    weights: dict[str, float] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum over heads of each head's mean loss over the rows labelled for it; unlabelled rows add nothing.

    Returns the total and each head's loss (in ``HEADS`` order; 0 for a head no row of the batch is labelled
    for). Masks and counts stay on the device: nothing is read back to the host, so a GPU step does not wait
    for the kernels before it (a boolean index or an ``if mask.any()`` would).
    """
    weights = weights or {}
    labelled_sentiment, labelled = label_masks(sentiment, binary)
    classes = torch.where(labelled_sentiment, sentiment, torch.zeros_like(sentiment))  # any class: masked below
    per_row = nn.functional.cross_entropy(sentiment_logits, classes, reduction="none")
    sentiment_loss = (per_row * labelled_sentiment).sum() / labelled_sentiment.sum().clamp(min=1)
    per_cell = nn.functional.binary_cross_entropy_with_logits(
        binary_logits, torch.nan_to_num(binary, nan=0.0), reduction="none"
    )
    binary_loss = (per_cell * labelled).sum(dim=0) / labelled.sum(dim=0).clamp(min=1)
    per_head = torch.cat([sentiment_loss.reshape(1), binary_loss])
    total = sum((per_head[i] * weights.get(head, 1.0) for i, head in enumerate(HEADS)), per_head.new_zeros(()))
    return total, per_head.detach()


class BalancedSampler:
    """Batches drawn from buckets (here: sources) with P(bucket) ∝ weight * size ** alpha, rows without
    replacement inside a bucket until it is exhausted, then reshuffled. Deterministic for a seed."""

    def __init__(
        self,
        buckets: list[str],
        batch_size: int,
        alpha: float,
        seed: int,
        weights: Mapping[str, float] | None = None,
    ):
        self.batch_size = batch_size
        self.rng = np.random.default_rng(seed)
        names = sorted(set(buckets))
        index = {name: i for i, name in enumerate(names)}
        members: list[list[int]] = [[] for _ in names]
        for row, name in enumerate(buckets):
            members[index[name]].append(row)
        self.names = names
        self.members = [np.asarray(m) for m in members]
        sizes = np.array([len(m) for m in members], dtype=np.float64)
        scale = np.array([float((weights or {}).get(name, 1.0)) for name in names])
        mass = scale * sizes**alpha
        if not mass.sum() > 0:
            raise ValueError("every training source has weight 0")
        self.probs = mass / mass.sum()
        self._order = [self.rng.permutation(m) for m in self.members]
        self._pos = [0] * len(names)

    def share(self) -> dict[str, float]:
        return {name: float(p) for name, p in zip(self.names, self.probs, strict=True)}

    def _take(self, b: int) -> int:
        if self._pos[b] >= len(self._order[b]):
            self._order[b] = self.rng.permutation(self.members[b])
            self._pos[b] = 0
        row = int(self._order[b][self._pos[b]])
        self._pos[b] += 1
        return row

    def batch(self) -> list[int]:
        return [self._take(int(b)) for b in self.rng.choice(len(self.names), size=self.batch_size, p=self.probs)]


class LengthGroupedBatches:
    """Batches of similar length from a :class:`BalancedSampler`: ``group`` batches are drawn at once, their
    rows sorted by token length, cut into batches again and handed out in random order. The rows, and so
    the balance across sources, are the sampler's; only which rows share a batch (and its padding) changes.
    Deterministic for a seed."""

    def __init__(self, sampler: BalancedSampler, lengths: list[int], group: int, seed: int):
        self.sampler = sampler
        self.lengths = lengths
        self.group = group
        self.rng = np.random.default_rng(seed + 1)
        self._queue: list[list[int]] = []

    def batch(self) -> list[int]:
        if not self._queue:
            rows = [row for _ in range(self.group) for row in self.sampler.batch()]
            if self.group > 1:
                rows.sort(key=lambda r: self.lengths[r])
            size = self.sampler.batch_size
            batches = [rows[i : i + size] for i in range(0, len(rows), size)]
            self._queue = [batches[i] for i in self.rng.permutation(len(batches))]
        return self._queue.pop()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def _pad(batch_ids: list[list[int]], pad_id: int, width: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Ids and attention mask, padded to ``width`` (default: the longest row of the batch)."""
    width = width or max(len(ids) for ids in batch_ids)
    input_ids = torch.full((len(batch_ids), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(batch_ids), width), dtype=torch.long)
    for i, ids in enumerate(batch_ids):
        input_ids[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        attention[i, : len(ids)] = 1
    return input_ids, attention


def encode(tokenizer: Any, texts: list[str], cfg: TransformerConfig) -> list[list[int]]:
    prefixed = [cfg.text_prefix + t for t in texts]
    return tokenizer(prefixed, truncation=True, max_length=cfg.max_length, add_special_tokens=True)["input_ids"]


@torch.no_grad()
def torch_proba(model: MultiTaskModel, ids: list[list[int]], pad_id: int, batch_size: int = 64) -> Probabilities:
    model.eval()
    order = np.argsort([len(x) for x in ids], kind="stable")
    sent = np.zeros((len(ids), len(SENTIMENT_LABELS)))
    binary = np.zeros((len(ids), len(BINARY_HEADS)))
    device = next(model.parameters()).device
    for start in range(0, len(ids), batch_size):
        rows = order[start : start + batch_size]
        input_ids, attention = _pad([ids[i] for i in rows], pad_id)
        s, b = model(input_ids.to(device), attention.to(device))
        sent[rows] = torch.softmax(s, -1).float().cpu().numpy()
        binary[rows] = torch.sigmoid(b).float().cpu().numpy()
    return {"sentiment": sent, **{h: binary[:, j] for j, h in enumerate(BINARY_HEADS)}}


@torch.no_grad()
def pooled_features(model: MultiTaskModel, ids: list[list[int]], pad_id: int, batch_size: int = 64) -> np.ndarray:
    """Each row's mean-pooled encoder output (float64, rows in input order)."""
    model.eval()
    order = np.argsort([len(x) for x in ids], kind="stable")
    out = np.zeros((len(ids), model.sentiment.in_features))
    device = next(model.parameters()).device
    for start in range(0, len(ids), batch_size):
        rows = order[start : start + batch_size]
        input_ids, attention = _pad([ids[i] for i in rows], pad_id)
        out[rows] = model.pool(input_ids.to(device), attention.to(device)).float().cpu().numpy()
    return out


def _linear_head(
    features: np.ndarray, labels: np.ndarray, weights: np.ndarray, classes: int, c: float
) -> tuple[np.ndarray, np.ndarray]:
    """A class-balanced, L2-penalised logistic regression of ``labels`` (class ids 0..classes-1; for
    ``classes`` 2, one logit) on standardised ``features``, folded back into a weight matrix and bias on the
    raw features. A head with rows of one class only (or none) gets no weights and a bias at that class's
    smoothed share, so it still answers and its threshold is still tuned."""
    from sklearn.linear_model import LogisticRegression

    outputs = 1 if classes == 2 else classes
    counts = np.bincount(labels, minlength=classes)
    if (counts > 0).sum() < 2:
        share = (counts + 1) / (counts.sum() + classes)
        bias = np.log(share) if outputs > 1 else np.log(share[1:] / share[:1])
        return np.zeros((outputs, features.shape[1])), bias
    mean = np.average(features, axis=0, weights=weights)
    spread = np.sqrt(np.average((features - mean) ** 2, axis=0, weights=weights))
    scale = np.maximum(spread, max(1e-3 * float(np.median(spread)), 1e-6))  # a near-constant feature: no huge weight
    # class-balanced on the weighted counts, as scikit-learn >= 1.7 balances "balanced" with sample weights
    # (older releases count rows): spelt out so that every release fits the same regression
    weighted = np.bincount(labels, weights=weights, minlength=classes)
    present_classes = np.flatnonzero(weighted > 0)
    balance = np.zeros(classes)
    balance[present_classes] = weights.sum() / (len(present_classes) * weighted[present_classes])
    regression = LogisticRegression(C=c, max_iter=3000)
    regression.fit((features - mean) / scale, labels, sample_weight=weights * balance[labels])
    raw = regression.coef_ / scale
    intercept = regression.intercept_ - raw @ mean
    present = list(regression.classes_)
    coef = np.zeros((outputs, features.shape[1]))
    bias = np.full(outputs, -30.0)  # a class with no training row: never predicted
    if outputs == 1:
        coef[0], bias[0] = raw[0], intercept[0]
    elif len(present) == 2:  # one logit (the second class against the first): the softmax of (0, logit)
        coef[present[1]], bias[present[1]], bias[present[0]] = raw[0], intercept[0], 0.0
    else:
        coef[present], bias[present] = raw, intercept
    return coef, bias


def fit_frozen(
    train: pd.DataFrame,
    val: pd.DataFrame,
    cfg: TransformerConfig,
    base_model: str,
    source_weights: Mapping[str, float] | None = None,
) -> FitResult:
    """The encoder as pretrained; each head a logistic regression on its mean-pooled output, fitted on the rows
    labelled for it (``source_weights`` as sample weights, 0 leaving a source out) and written into the
    model's linear heads, so it exports, quantizes and serves like a fine-tuned one. Seconds on a CPU for
    the seed set: what ``triage bootstrap`` serves where the base model can be had."""
    from transformers import AutoTokenizer

    seed_everything(cfg.seed)
    torch.set_num_threads(cfg.threads or os.cpu_count() or 1)
    started = time.monotonic()
    tokenizer = AutoTokenizer.from_pretrained(base_model)
    model = build_model(base_model, cfg)  # the encoder frozen
    device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model.to(device)
    log.info("fitting heads on %s's frozen output on %s", base_model, device_label(device))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    features = pooled_features(model, encode(tokenizer, train["norm_text"].tolist(), cfg), pad_id)
    sources = train["source"].astype(str)
    weights = sources.map(lambda s: (source_weights or {}).get(s, 1.0)).to_numpy(dtype=float)
    if not (weights > 0).any():
        raise ConfigError("source_weights: every training source has weight 0")
    sent_y, bin_y = label_tensors(train)
    sent, binary = sent_y.numpy(), bin_y.numpy()
    with torch.no_grad():
        rows = (sent >= 0) & (weights > 0)
        coef, bias = _linear_head(features[rows], sent[rows], weights[rows], len(SENTIMENT_LABELS), cfg.frozen_c)
        model.sentiment.weight.copy_(torch.from_numpy(coef))
        model.sentiment.bias.copy_(torch.from_numpy(bias))
        for j in range(len(BINARY_HEADS)):
            rows = ~np.isnan(binary[:, j]) & (weights > 0)
            labels = binary[rows, j].astype(int)
            coef, bias = _linear_head(features[rows], labels, weights[rows], 2, cfg.frozen_c)
            model.binary.weight[j].copy_(torch.from_numpy(coef[0]))
            model.binary.bias[j] = float(bias[0])
    model.to("cpu").eval()
    scores = headline(evaluate(val, torch_proba(model, encode(tokenizer, val["norm_text"].tolist(), cfg), pad_id), {}))
    score = float(np.mean(list(scores.values()))) if scores else 0.0
    seconds = time.monotonic() - started
    log.info("frozen heads fitted on %d rows: val %.4f (%.0fs)", len(train), score, seconds)
    history = [{"step": 0, "val_score": score, "seconds": seconds, **{f"val_{k}": v for k, v in scores.items()}}]
    used = sources[weights > 0].value_counts(normalize=True)
    return FitResult(model, tokenizer, 0, seconds, score, history, used.to_dict(), device_label(device))


class _RunningLoss:
    """Training loss since the last evaluation: the mean over steps, and each head's mean over the rows
    labelled for it (a head's batch loss weighted by its labelled rows, so a step without its labels adds
    nothing). Sums stay on the device until :meth:`take`, which runs only at an evaluation."""

    def __init__(self, device: torch.device):
        self.device = device
        self._reset()

    def _reset(self) -> None:
        self.total = torch.zeros((), device=self.device)
        self.head_sum = torch.zeros(len(HEADS), device=self.device)
        self.head_rows = torch.zeros(len(HEADS), device=self.device)
        self.steps = 0

    def add(self, loss: torch.Tensor, per_head: torch.Tensor, sentiment: torch.Tensor, binary: torch.Tensor) -> None:
        labelled_sentiment, labelled = label_masks(sentiment, binary)
        rows = torch.cat([labelled_sentiment.sum().reshape(1), labelled.sum(dim=0)]).float()
        self.total += loss.detach()
        self.head_sum += per_head * rows
        self.head_rows += rows
        self.steps += 1

    def take(self) -> dict[str, float]:
        """``loss`` (mean per step) and ``loss_<head>`` for each head with labelled rows since the last take."""
        out = {"loss": float(self.total) / max(1, self.steps)}
        for head, total, rows in zip(HEADS, self.head_sum.tolist(), self.head_rows.tolist(), strict=True):
            if rows > 0:
                out[f"loss_{head}"] = total / rows
        self._reset()
        return out


class _WeightAverage:
    """An exponential moving average of a model's trained parameters. The decay ramps up from 0 as
    ``(1 + n) / (10 + n)`` after ``n`` updates, so the first steps' weights do not linger; :meth:`swapped`
    puts the average into the model for a validation pass and the trained weights back after it."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.params: list[torch.Tensor] = [p for p in model.parameters() if p.requires_grad]
        self.average = [p.detach().clone() for p in self.params]
        self.updates = 0

    @torch.no_grad()
    def update(self) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        torch._foreach_lerp_(self.average, [p.detach() for p in self.params], 1 - decay)

    @contextmanager
    def swapped(self) -> Iterator[None]:
        trained = [p.detach().clone() for p in self.params]
        with torch.no_grad():
            torch._foreach_copy_(self.params, self.average)
        try:
            yield
        finally:
            with torch.no_grad():
                torch._foreach_copy_(self.params, trained)


@dataclass
class FitResult:
    model: MultiTaskModel
    tokenizer: Any
    steps: int
    seconds: float
    best_score: float
    history: list[dict[str, float]] = field(default_factory=list)
    bucket_share: dict[str, float] = field(default_factory=dict)
    device: str = "cpu"  # where it was fine-tuned (the model itself ends on the CPU)


def device_label(device: torch.device, autocast: torch.dtype | None = None) -> str:
    label = f"{device} ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else str(device)
    return f"{label}, {str(autocast).removeprefix('torch.')} autocast" if autocast is not None else label


def cpu_has_amx_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether the CPU has AMX tiles for bfloat16 (``amx_bf16``), where a bf16 training step is faster than fp32
    (1.6x on a 2-core Xeon). AVX512-BF16 alone is not enough: on a 2-core Xeon that has it without AMX
    (AMX hidden by the hypervisor) a bf16 step took 1.35-1.53x as long as fp32 (bench/bench_train_step.py)."""
    return "amx_bf16" in (cpu_flags(cpuinfo) or frozenset())


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The dtype the forward pass autocasts to (None: fp32). ``auto`` takes bf16 where it is faster than fp32:
    a GPU of compute capability 8 or more, a CPU with AMX."""
    if precision == "bf16":
        return torch.bfloat16
    if precision == "auto":
        if device.type == "cuda":  # is_bf16_supported() also says yes where bf16 is emulated (before Ampere)
            native = torch.cuda.get_device_capability(device)[0] >= 8
        else:
            native = device.type == "cpu" and cpu_has_amx_bf16()
        return torch.bfloat16 if native else None
    return None


def _to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A batch tensor on ``device``; to a GPU through pinned memory without blocking (a copy from pageable
    memory waits for every kernel queued before it)."""
    if device.type != "cuda":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


def truncate_layers(encoder: nn.Module, keep: int | None) -> None:
    """Keep the bottom ``keep`` transformer layers: half the layers, about twice the speed."""
    layers = getattr(getattr(encoder, "encoder", None), "layer", None)
    if keep is None or layers is None or keep >= len(layers):
        return
    encoder.encoder.layer = nn.ModuleList(list(layers)[:keep])  # type: ignore[union-attr]
    encoder.config.num_hidden_layers = keep  # type: ignore[union-attr]


def freeze(model: MultiTaskModel, cfg: TransformerConfig) -> None:
    encoder = model.encoder
    if cfg.fit == "frozen":  # only the heads are fitted: a checkpoint carries them alone
        for p in encoder.parameters():
            p.requires_grad_(False)
        return
    embeddings = getattr(encoder, "embeddings", None)
    if cfg.freeze_embeddings and embeddings is not None:
        embeddings.word_embeddings.weight.requires_grad_(False)
    layers = getattr(getattr(encoder, "encoder", None), "layer", None)
    if cfg.train_layers is not None and layers is not None:
        for layer in list(layers)[: max(0, len(layers) - cfg.train_layers)]:
            for p in layer.parameters():
                p.requires_grad_(False)
        if embeddings is not None and cfg.train_layers < len(layers):
            for p in embeddings.parameters():
                p.requires_grad_(False)


def build_model(base_model: str, cfg: TransformerConfig, layers: int | None = None) -> MultiTaskModel:
    """The multi-task model on the base encoder at ``base_model``: its bottom ``layers`` layers (default:
    ``cfg.num_layers``; None there: all), ``cfg``'s dropout, and the parts ``cfg`` freezes frozen."""
    from transformers import AutoModel

    encoder = AutoModel.from_pretrained(base_model, add_pooling_layer=False)
    truncate_layers(encoder, cfg.num_layers if layers is None else layers)
    model = MultiTaskModel(encoder, encoder.config.hidden_size, cfg.dropout)
    freeze(model, cfg)
    return model


def train_step(
    model: MultiTaskModel, optimizer: torch.optim.Optimizer, inputs: list[torch.Tensor], autocast: torch.dtype | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimizer step on a batch (``inputs``: input ids, attention mask, sentiment and binary labels, on the
    model's device), the forward pass under ``autocast`` (None: fp32). Returns the loss and each head's loss."""
    input_ids, attention, sentiment, binary = inputs
    with torch.autocast(input_ids.device.type, dtype=autocast or torch.bfloat16, enabled=autocast is not None):
        sentiment_logits, binary_logits = model(input_ids, attention)
    loss, per_head = masked_loss(sentiment_logits.float(), binary_logits.float(), sentiment, binary)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
    optimizer.step()
    return loss, per_head


SCHEDULE_MARGIN = 0.97  # of the time budget: the last evaluation and a slower stretch still fit before the guard


def budget_horizon(step: int, elapsed: float, budget_seconds: float, total: int) -> int:
    """The step at which ``budget_seconds`` (less the margin) is projected to run out at the pace of the
    ``step`` steps that took ``elapsed`` seconds (evaluations included); never past ``total``, never before
    the next step."""
    if step <= 0 or elapsed <= 0:
        return total
    projected = step + int((budget_seconds * SCHEDULE_MARGIN - elapsed) * step / elapsed)
    return max(step + 1, min(total, projected))


def fit_transformer(
    train: pd.DataFrame,
    val: pd.DataFrame,
    cfg: TransformerConfig,
    base_model: str,
    source_weights: Mapping[str, float] | None = None,
) -> FitResult:
    """Fine-tune on ``train`` with early stopping on ``val`` (mean macro-F1 over heads)."""
    from transformers import AutoTokenizer

    seed_everything(cfg.seed)
    torch.set_num_threads(cfg.threads or os.cpu_count() or 1)
    tokenizer = AutoTokenizer.from_pretrained(base_model)
    model = build_model(base_model, cfg)
    device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model.to(device)
    autocast = autocast_dtype(cfg.precision, device)
    log.info("fine-tuning %s on %s", base_model, device_label(device, autocast))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    train_ids = encode(tokenizer, train["norm_text"].tolist(), cfg)
    sent_y, bin_y = label_tensors(train)
    val_ids = encode(tokenizer, val["norm_text"].tolist(), cfg)
    sampler = BalancedSampler(
        train["source"].astype(str).tolist(), cfg.batch_size, cfg.balance_alpha, cfg.seed, source_weights
    )
    batches = LengthGroupedBatches(sampler, [len(ids) for ids in train_ids], cfg.length_group, cfg.seed)

    head_params = list(model.sentiment.parameters()) + list(model.binary.parameters())
    encoder_params = [p for p in model.encoder.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        [{"params": encoder_params, "lr": cfg.learning_rate}, {"params": head_params, "lr": cfg.head_learning_rate}],
        weight_decay=cfg.weight_decay,
    )
    steps_per_epoch = max(1, math.ceil(len(train) / cfg.batch_size))
    total = cfg.max_steps or steps_per_epoch * cfg.epochs
    warmup = int(total * cfg.warmup_ratio)
    horizon = total  # where the linear decay reaches 0 (the schedule reads it each step); fit_schedule_to_budget
    scheduler = torch.optim.lr_scheduler.LambdaLR(  # moves it nearer
        optimizer,
        lambda s: (s + 1) / max(1, warmup) if s < warmup else max(0.0, (horizon - s) / max(1, horizon - warmup)),
    )
    started = time.monotonic()
    best_score, best_state, bad_evals = -1.0, None, 0
    history: list[dict[str, float]] = []
    step, real_tokens, batch_tokens = 0, 0, 0
    running = _RunningLoss(device)
    average = _WeightAverage(model, cfg.ema_decay) if cfg.ema_decay else None
    while step < horizon:
        step += 1
        model.train()
        rows = batches.batch()
        input_ids, attention = _pad([train_ids[i] for i in rows], pad_id)
        real_tokens += int(attention.sum())
        batch_tokens += attention.numel()
        inputs = [_to_device(t, device) for t in (input_ids, attention, sent_y[rows], bin_y[rows])]
        running.add(*train_step(model, optimizer, inputs, autocast), inputs[2], inputs[3])
        scheduler.step()
        if average is not None:
            average.update()
        out_of_time = cfg.time_budget_minutes and time.monotonic() - started > cfg.time_budget_minutes * 60
        if step % cfg.eval_every == 0 or step == horizon or out_of_time:
            with average.swapped() if average is not None else nullcontext():
                scores = headline(evaluate(val, torch_proba(model, val_ids, pad_id), {}))
                score = float(np.mean(list(scores.values()))) if scores else 0.0
                improved = score > best_score + 1e-4
                if improved:
                    best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
            losses = running.take()
            elapsed = time.monotonic() - started
            history.append(
                {
                    "step": step,
                    **losses,
                    "val_score": score,
                    "seconds": elapsed,
                    "padding_share": 1 - real_tokens / max(1, batch_tokens),
                    "lr": float(scheduler.get_last_lr()[0]),
                    "scheduled_steps": horizon,
                    **{f"val_{k}": v for k, v in scores.items()},
                }
            )
            log.info(
                "step %d/%d loss %.4f (%s) val %.4f (%.0fs)",
                step,
                horizon,
                losses["loss"],
                " ".join(f"{h} {losses[f'loss_{h}']:.3f}" for h in HEADS if f"loss_{h}" in losses),
                score,
                elapsed,
            )
            if cfg.fit_schedule_to_budget and cfg.time_budget_minutes and not out_of_time:
                fitted = budget_horizon(step, elapsed, cfg.time_budget_minutes * 60, horizon)
                if fitted < horizon:
                    log.info("schedule fitted to the time budget: %d steps (was %d)", fitted, horizon)
                    horizon = fitted
            if improved:
                best_score, bad_evals = score, 0
            else:
                bad_evals += 1
                if bad_evals >= cfg.patience:
                    log.info("early stop at step %d", step)
                    break
        if out_of_time:
            log.info("time budget reached at step %d", step)
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.to("cpu").eval()
    seconds = time.monotonic() - started
    return FitResult(
        model, tokenizer, step, seconds, best_score, history, sampler.share(), device_label(device, autocast)
    )


class _CalibrationBatches:
    """ONNX Runtime's calibration reader: the calibration texts as model inputs of one shape.

    The percentile calibrator stacks every batch's activations, so all batches are 32 rows (the rows left
    over are dropped, unless there are fewer than 32 in all) padded to ``max_length``.
    """

    def __init__(self, tokenizer: Any, texts: list[str], cfg: TransformerConfig):
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        ids = encode(tokenizer, texts, cfg)
        size = min(32, len(ids))
        padded = (_pad(ids[start : start + size], pad, cfg.max_length) for start in range(0, len(ids) - size + 1, size))
        self._batches = iter([{"input_ids": x.numpy(), "attention_mask": m.numpy()} for x, m in padded])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


def _quantize_blockwise(
    fp32: Any, target: Path, block_size: int, keep: list[str], patterns: list[re.Pattern[str]], vocab: int
) -> None:
    """Every MatMul with a constant weight (but ``keep``) becomes ONNX Runtime's MatMulNBits: symmetric int8
    weights with a scale per ``block_size`` inputs of each output; accuracy level 4 quantizes the activations
    per token and block at run time and multiplies in int8 (VNNI where the CPU has it). The word-embedding
    table becomes 8-bit blocks too, unless ``patterns`` match its Gather (see _quantize_word_embeddings).
    ``fp32``: the exported model as a ``ModelProto`` (already parsed, for the names of the MatMuls to keep)."""
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    quantizer = MatMulNBitsQuantizer(
        fp32,
        bits=8,
        block_size=block_size,
        is_symmetric=True,
        accuracy_level=4,
        nodes_to_exclude=keep,
    )
    quantizer.process()
    saved = _quantize_word_embeddings(quantizer.model.model, block_size, patterns, vocab)
    log.info("word embeddings as 8-bit blocks: %.0f MiB smaller", saved / 2**20)
    quantizer.model.save_model_to_file(str(target), use_external_data_format=False)


def _quantize_rowwise(
    fp32: Any,
    target: Path,
    block_size: int,
    keep: list[str],
    patterns: list[re.Pattern[str]],
    vocab: int,
    split: int = 0,
) -> None:
    """Every MatMul with a constant weight (but ``keep``) as row-wise int8 (see training.rowwise: int8 weights
    per output, 7 bits; activations per token at run time; inputs wider than ``split``, in slices of it), the
    word-embedding table as 8-bit blocks as for blockwise. ``fp32``: the exported model as a ``ModelProto``,
    changed in place."""
    import onnx

    from training.rowwise import quantize_rowwise

    done = quantize_rowwise(fp32, set(keep), split=split)
    saved = _quantize_word_embeddings(fp32, block_size, patterns, vocab)
    log.info("row-wise int8: %d MatMuls; word embeddings as 8-bit blocks: %.0f MiB smaller", done, saved / 2**20)
    onnx.save(fp32, str(target))


def _quantize_word_embeddings(model: Any, block_size: int, keep: list[re.Pattern[str]], vocab: int) -> int:
    """The word-embedding table of an ONNX ``ModelProto`` (changed in place) as 8-bit symmetric blocks of
    ``block_size`` values of a row (ONNX Runtime's GatherBlockQuantized: only the looked-up rows are turned
    back into fp32), unless its Gather matches ``keep``. It is most of the model: 87 of 110 MiB for a
    vocabulary-trimmed 12-layer e5. ``vocab``: the tokenizer's size; GatherBlockQuantized gives zeros for an id
    past the table where Gather fails, so a table smaller than the vocabulary is refused here. Returns the bytes
    it saved."""
    from onnx import helper, numpy_helper

    graph = model.graph
    initializers = {init.name: init for init in graph.initializer}
    for index, node in enumerate(graph.node):
        table = node.input[0] if node.op_type == "Gather" else ""
        if "word_embeddings" not in table or table not in initializers or any(p.search(node.name) for p in keep):
            continue
        if any(table in other.input for other in graph.node if other is not node):
            return 0  # the table is shared (tied weights): leave it
        weight = numpy_helper.to_array(initializers[table]).astype(np.float32)
        rows, width = weight.shape
        if vocab > rows:
            raise ValueError(f"the tokenizer has {vocab} pieces, the word-embedding table {rows} rows")
        if width % block_size:
            return 0
        blocks = weight.reshape(rows, width // block_size, block_size)
        scales = np.maximum(np.abs(blocks).max(axis=2), np.finfo(np.float32).tiny) / 127.0
        codes = np.clip(np.rint(blocks / scales[:, :, None]), -127, 127) + 128  # uint8, zero point 128
        graph.initializer.remove(initializers[table])
        graph.initializer.append(numpy_helper.from_array(codes.astype(np.uint8).reshape(rows, width), f"{table}_q8"))
        graph.initializer.append(numpy_helper.from_array(scales.astype(np.float32), f"{table}_scales"))
        graph.node.remove(node)
        graph.node.insert(
            index,
            helper.make_node(
                "GatherBlockQuantized",
                [f"{table}_q8", node.input[1], f"{table}_scales"],
                list(node.output),
                name=f"{node.name}_Q8",
                domain="com.microsoft",
                bits=8,
                block_size=block_size,
                gather_axis=0,
                quantize_axis=1,
            ),
        )
        if not any(opset.domain == "com.microsoft" for opset in model.opset_import):
            model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
        return weight.nbytes - rows * width - scales.size * 4
    return 0


def _quantize(
    fp32: Path,
    parsed: Any,
    target: Path,
    cfg: TransformerConfig,
    keep: list[str],
    patterns: list[re.Pattern[str]],
    tokenizer: Any,
    calibration: list[str] | None,
) -> None:
    """``parsed``: the ``fp32`` file as a ``ModelProto``; ``keep``: the MatMuls left fp32; ``patterns``: the
    kept_float() patterns that named them."""
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )

    if cfg.quantization == "dynamic":
        quantize_dynamic(str(fp32), str(target), weight_type=QuantType.QInt8, per_channel=True, nodes_to_exclude=keep)
        return
    if cfg.quantization == "blockwise":
        _quantize_blockwise(parsed, target, cfg.quantization_block_size, keep, patterns, len(tokenizer))
        return
    if cfg.quantization == "rowwise":
        block = cfg.quantization_block_size
        _quantize_rowwise(parsed, target, block, keep, patterns, len(tokenizer), cfg.rowwise_slice)
        return
    quantize_static(
        str(fp32),
        str(target),
        _CalibrationBatches(tokenizer, calibration or [], cfg),
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=["MatMul"],
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=keep,
        calibrate_method=CalibrationMethod.MinMax if cfg.calibration == "minmax" else CalibrationMethod.Percentile,
        extra_options={} if cfg.calibration == "minmax" else {"CalibPercentile": cfg.calibration_percentile},
    )


def export_onnx(
    result: FitResult, cfg: TransformerConfig, directory: Path, calibration_texts: list[str] | None = None
) -> OnnxBackend:
    """Export encoder + heads (probabilities out) to ONNX, quantize to int8 when asked.

    ``calibration_texts`` (static quantization only): training texts whose activations fix the int8 scales.
    """
    if cfg.quantize and cfg.quantization == "static" and not calibration_texts:
        raise ValueError("static quantization needs calibration texts")
    directory.mkdir(parents=True, exist_ok=True)
    wrapper = ProbabilityModel(result.model).eval()
    sample = result.tokenizer(["query: export sample"], return_tensors="pt")
    fp32 = directory / "encoder.fp32.onnx"
    torch.onnx.export(
        wrapper,
        (sample["input_ids"], sample["attention_mask"]),
        str(fp32),
        input_names=["input_ids", "attention_mask"],
        output_names=["sentiment", "binary"],
        dynamic_axes={
            "input_ids": {0: "batch", 1: "seq"},
            "attention_mask": {0: "batch", 1: "seq"},
            "sentiment": {0: "batch"},
            "binary": {0: "batch"},
        },
        opset_version=17,
        dynamo=False,
    )
    target = directory / OnnxBackend.MODEL
    if cfg.quantize:
        import onnx

        kept = cfg.kept_float()
        patterns = [re.compile(p) for p in kept]
        parsed = onnx.load(str(fp32))  # parsed once: for the names here; blockwise and rowwise quantize it as it is
        nodes = parsed.graph.node
        keep = [n.name for n in nodes if n.op_type in ("MatMul", "Gemm") and any(p.search(n.name) for p in patterns)]
        # dynamic and static quantizers read the file themselves: not two copies in memory
        in_memory = parsed if cfg.quantization in ("blockwise", "rowwise") else None
        del parsed, nodes
        log.info(
            "quantizing to %s int8; %d MatMuls kept fp32 (%s)",
            cfg.quantization,
            len(keep),
            ", ".join(kept) or "none",
        )
        _quantize(fp32, in_memory, target, cfg, keep, patterns, result.tokenizer, calibration_texts)
        fp32.unlink()
    else:
        fp32.replace(target)
    result.tokenizer.backend_tokenizer.save(str(directory / OnnxBackend.TOKENIZER))
    pad_id = result.tokenizer.pad_token_id if result.tokenizer.pad_token_id is not None else 0
    OnnxBackend.write_config(
        directory,
        max_length=cfg.max_length,
        text_prefix=cfg.text_prefix,
        pad_id=pad_id,
        quantization=cfg.quantization if cfg.quantize else "none",
    )
    return OnnxBackend.load(directory)
