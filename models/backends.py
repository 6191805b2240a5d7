"""Back-ends that turn normalised texts into per-head probabilities.

A back-end is plain data (fitted scikit-learn objects, later ONNX graphs) plus the code here that runs
it; the pyfunc in :mod:`models.pyfunc` wraps one and owns languages, thresholds and the output frame.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Protocol

import joblib
import numpy as np
from scipy.special import expit, softmax

from models.kernels import BLOCKWISE_MODES, blockwise_as_fp32, dequantize_nbits, save_for_session
from models.schema import BINARY_HEADS, HEADS, SENTIMENT_LABELS

log = logging.getLogger(__name__)

Probabilities = dict[str, np.ndarray]
"""``sentiment`` -> (n, 3) in :data:`SENTIMENT_LABELS` order; each binary head -> (n,) P(label = 1)."""


class Backend(Protocol):
    kind: str

    def predict_proba(self, texts: list[str], langs: list[str] | None = None) -> Probabilities:
        """``langs``: each text's language, for back-ends whose weighting depends on it (others ignore it)."""
        ...

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


class FastLinear:
    """A fitted linear classifier (LogisticRegression or log-loss SGDClassifier) as one C-contiguous
    weight matrix, with the same probabilities as its ``predict_proba``.

    scikit-learn multiplies by ``coef_.T`` and, for a sparse input, copies that transposed 1.5M-row
    matrix on every call: ~3 ms per head per call, most of a one-comment request's time.
    """

    def __init__(self, estimator: Any):
        self.classes_ = estimator.classes_
        self.weights = np.ascontiguousarray(np.asarray(estimator.coef_, dtype=np.float64).T)
        self.intercept = np.asarray(estimator.intercept_, dtype=np.float64)
        # LogisticRegression's multi-class model is multinomial (softmax); SGD's is one-vs-rest.
        self.multinomial = type(estimator).__name__ == "LogisticRegression" and len(self.classes_) > 2

    def predict_proba(self, features: Any) -> np.ndarray:
        scores = np.asarray(features @ self.weights) + self.intercept
        if len(self.classes_) == 2:
            positive = expit(scores[:, 0])
            return np.column_stack([1.0 - positive, positive])
        if self.multinomial:
            return softmax(scores, axis=1)
        proba = expit(scores)
        return proba / proba.sum(axis=1, keepdims=True)


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
        self._fast = {h: FastLinear(e) if hasattr(e, "coef_") else e for h, e in heads.items()}

    def predict_proba(self, texts: list[str], langs: list[str] | None = None) -> Probabilities:
        n = len(texts)
        out: Probabilities = {
            "sentiment": np.full((n, len(SENTIMENT_LABELS)), 1.0 / len(SENTIMENT_LABELS)),
            **{head: np.zeros(n) for head in BINARY_HEADS},
        }
        if n == 0:
            return out
        features = self.featurizer.transform(texts)
        for head, estimator in self._fast.items():
            out[head] = class_probabilities(estimator, features, head)
        return out

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        joblib.dump({"featurizer": self.featurizer, "heads": self.heads}, directory / self.FILE)

    @classmethod
    def load(cls, directory: Path) -> TfidfBackend:
        data = joblib.load(directory / cls.FILE)
        return cls(data["featurizer"], data["heads"])


class OnnxBackend:
    """A fine-tuned encoder with its heads, exported to ONNX (probabilities out), run by ONNX Runtime.

    Texts are tokenised without padding, sorted by length and run in batches padded to their longest
    member (dynamic padding), then put back in input order.
    """

    kind = "onnx"
    MODEL = "model.onnx"
    TOKENIZER = "tokenizer.json"
    CONFIG = "onnx_config.json"

    def __init__(self, directory: Path, batch_size: int = 32, threads: int | None = None, blockwise: str | None = None):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.directory = Path(directory)
        self.config = json.loads((self.directory / self.CONFIG).read_text(encoding="utf-8"))
        self.tokenizer = Tokenizer.from_file(str(self.directory / self.TOKENIZER))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=int(self.config["max_length"]))
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or int(os.environ.get("TRIAGE_ONNX_THREADS", "0"))
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        mode = blockwise or os.environ.get("TRIAGE_ONNX_BLOCKWISE", "auto")
        self.session, self.blockwise_kernels = self._session(ort, options, mode)
        self.batch_size = batch_size

    def _session(self, ort: Any, options: Any, mode: str) -> tuple[Any, str | None]:
        """The inference session, and how its blockwise int8 MatMuls run: ``int8`` (ONNX Runtime's MatMulNBits),
        ``fp32`` (the same int8 weights turned back into fp32 here: see ``models.kernels``) or None (no
        blockwise MatMuls). ``auto`` takes fp32 where the CPU is known to lack int8 dot products."""
        if mode not in BLOCKWISE_MODES:
            raise ValueError(f"TRIAGE_ONNX_BLOCKWISE must be one of {', '.join(BLOCKWISE_MODES)}, not {mode!r}")
        path = self.directory / self.MODEL
        providers = ["CPUExecutionProvider"]
        exported = self.config.get("quantization")  # missing in models exported before it was recorded

        def as_exported(kernels: str | None) -> tuple[Any, str | None]:
            return ort.InferenceSession(str(path), options, providers=providers), kernels

        if exported not in (None, "blockwise"):
            return as_exported(None)
        if not blockwise_as_fp32(mode):
            return as_exported("int8" if exported else None)
        try:
            import onnx

            graph = onnx.load(str(path))
            if not dequantize_nbits(graph):
                del graph
                return as_exported(None)
            # Through a file with the tensors beside it, not bytes: a session made from the serialized model
            # holds that copy, the graph and its own parse at once (a full-vocabulary 12-layer model with an
            # fp32 embedding table peaked at 2.2 GB that way, 1.2 GB this way).
            with tempfile.TemporaryDirectory(prefix="triage-onnx-", ignore_cleanup_errors=True) as tmp:
                rewritten = Path(tmp) / self.MODEL
                save_for_session(graph, rewritten)
                del graph
                session = ort.InferenceSession(str(rewritten), options, providers=providers)
        except (ImportError, OSError) as exc:  # no onnx package, no writable temporary folder: run as exported
            log.warning("%s: blockwise weights stay int8 (%s: %s)", path, type(exc).__name__, exc)
            return as_exported("int8" if exported else None)
        log.info("%s: blockwise int8 weights run as fp32 (TRIAGE_ONNX_BLOCKWISE=%s)", path, mode)
        return session, "fp32"

    @classmethod
    def write_config(cls, directory: Path, **config: Any) -> None:
        (Path(directory) / cls.CONFIG).write_text(json.dumps(config, indent=2), encoding="utf-8")

    def predict_proba(self, texts: list[str], langs: list[str] | None = None) -> Probabilities:
        n = len(texts)
        sentiment = np.zeros((n, len(SENTIMENT_LABELS)))
        binary = np.zeros((n, len(BINARY_HEADS)))
        if n:
            prefix = self.config.get("text_prefix", "")
            encodings = self.tokenizer.encode_batch([prefix + t for t in texts])
            ids = [e.ids for e in encodings]
            order = np.argsort([len(x) for x in ids], kind="stable")
            pad = int(self.config.get("pad_id", 0))
            for start in range(0, n, self.batch_size):
                rows = order[start : start + self.batch_size]
                width = max(len(ids[i]) for i in rows)
                input_ids = np.full((len(rows), width), pad, dtype=np.int64)
                attention = np.zeros((len(rows), width), dtype=np.int64)
                for k, i in enumerate(rows):
                    input_ids[k, : len(ids[i])] = ids[i]
                    attention[k, : len(ids[i])] = 1
                s, b = self.session.run(None, {"input_ids": input_ids, "attention_mask": attention})
                sentiment[rows] = s
                binary[rows] = b
        return {"sentiment": sentiment, **{h: binary[:, j] for j, h in enumerate(BINARY_HEADS)}}

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        if directory.resolve() == self.directory.resolve():
            return
        directory.mkdir(parents=True, exist_ok=True)
        for name in (self.MODEL, self.TOKENIZER, self.CONFIG):
            shutil.copyfile(self.directory / name, directory / name)

    @classmethod
    def load(cls, directory: Path) -> OnnxBackend:
        return cls(directory)


class EnsembleBackend:
    """Weighted average of members' probabilities (e.g. TF-IDF and the fine-tuned transformer).

    Weights are looked up most specific first: ``lang_weights[head][lang]`` (when the caller passes each
    text's language), then ``head_weights[head]``, then ``weights``.
    """

    kind = "ensemble"
    FILE = "ensemble.json"

    def __init__(
        self,
        members: dict[str, Backend],
        weights: dict[str, float],
        head_weights: dict[str, dict[str, float]] | None = None,
        lang_weights: dict[str, dict[str, dict[str, float]]] | None = None,
    ):
        self.members = members
        self.weights = weights
        self.head_weights = head_weights or {}
        self.lang_weights = lang_weights or {}

    def predict_proba(self, texts: list[str], langs: list[str] | None = None) -> Probabilities:
        outputs = {name: backend.predict_proba(texts) for name, backend in self.members.items()}
        return self.combine(outputs, langs)

    def _row_weights(self, head: str, name: str, n: int, langs: list[str] | None) -> np.ndarray:
        default = self.head_weights.get(head, self.weights)[name]
        by_lang = self.lang_weights.get(head)
        if langs is None or not by_lang:
            return np.full(n, float(default))
        return np.array([by_lang[lang][name] if lang in by_lang else default for lang in langs], dtype=np.float64)

    def combine(self, outputs: dict[str, Probabilities], langs: list[str] | None = None) -> Probabilities:
        """The weighted average of members' outputs already computed (``{member: {head: p}}``)."""
        out: Probabilities = {}
        heads = {head for probs in outputs.values() for head in probs}
        for head in sorted(heads):
            names = [name for name in outputs if head in outputs[name]]
            n = len(outputs[names[0]][head])
            weights = {name: self._row_weights(head, name, n, langs) for name in names}
            total = np.sum(list(weights.values()), axis=0)
            acc = np.zeros_like(np.asarray(outputs[names[0]][head], dtype=np.float64))
            for name in names:
                w = weights[name] / total
                p = np.asarray(outputs[name][head], dtype=np.float64)
                acc += (w[:, None] if p.ndim == 2 else w) * p
            out[head] = acc
        return out

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        spec: dict[str, Any] = {
            name: {"kind": b.kind, "weight": self.weights[name]} for name, b in self.members.items()
        }
        for name, backend in self.members.items():
            backend.save(directory / name)
        if self.head_weights or self.lang_weights:
            spec = {"members": spec, "head_weights": self.head_weights, "lang_weights": self.lang_weights}
        (directory / self.FILE).write_text(json.dumps(spec, indent=2), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path) -> EnsembleBackend:
        spec = json.loads((Path(directory) / cls.FILE).read_text(encoding="utf-8"))
        nested = "members" in spec
        members_spec = spec.get("members", spec)
        members = {name: load_backend(s["kind"], Path(directory) / name) for name, s in members_spec.items()}
        weights = {name: float(s["weight"]) for name, s in members_spec.items()}
        if not nested:
            return cls(members, weights)
        return cls(members, weights, spec.get("head_weights"), spec.get("lang_weights"))


_BACKENDS: dict[str, Any] = {"tfidf": TfidfBackend, "onnx": OnnxBackend, "ensemble": EnsembleBackend}


def register_backend(kind: str, loader: Any) -> None:
    _BACKENDS[kind] = loader


def load_backend(kind: str, directory: Path) -> Backend:
    try:
        loader = _BACKENDS[kind]
    except KeyError:
        raise ValueError(f"unknown model back-end {kind!r}; known: {sorted(_BACKENDS)}") from None
    return loader.load(directory)
