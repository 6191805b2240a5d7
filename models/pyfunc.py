"""The MLflow pyfunc that maps raw comments to languages, per-head probabilities and labels.

The logged model is self-describing: ``meta.json`` holds its back-end, labels, tuned thresholds, the
metrics measured before it was logged and a summary of its training data.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

from models.backends import Backend, load_backend
from models.lang import default_detector
from models.schema import BINARY_HEADS, LANGUAGES, OUTPUT_COLUMNS, SENTIMENT_LABELS
from models.text import MASK_RUN_SINCE, NORMALIZATION_VERSION, NORMALIZATION_VERSIONS, normalize

META_FILE = "meta.json"
DEFAULT_THRESHOLD = 0.5


def normalization_of(meta: dict[str, Any]) -> int:
    """The :func:`models.text.normalize` version a model was trained on: recorded in ``meta.json`` since
    versions were numbered; for a model logged before that, 1 if it was trained before the version-2 change
    (``MASK_RUN_SINCE``), else 2. A version this code does not know is refused (``ValueError``)."""
    given = meta.get("normalization")
    if given is None:
        return 1 if _trained_before(meta.get("trained_at"), MASK_RUN_SINCE) else NORMALIZATION_VERSION
    if given not in NORMALIZATION_VERSIONS:
        raise ValueError(
            f"the model was trained on text normalised as version {given!r}; this code knows "
            f"{', '.join(map(str, NORMALIZATION_VERSIONS))}: serve it with the code it was trained with"
        )
    return int(given)


def _trained_before(trained_at: Any, moment: str) -> bool:
    """Whether ``trained_at`` (ISO time; UTC where it names no zone) is before ``moment``; False when it is
    missing or no time."""
    try:
        trained = pd.Timestamp(trained_at)
    except (TypeError, ValueError):
        return False
    if pd.isna(trained):
        return False
    return bool((trained if trained.tzinfo else trained.tz_localize("UTC")) < pd.Timestamp(moment))


class TriageModel:
    """A back-end plus what turns its probabilities into the output contract."""

    def __init__(self, backend: Backend, meta: dict[str, Any]):
        self.backend = backend
        self.meta = meta
        self.normalization = normalization_of(meta)  # serve on the text the model was trained on
        # {head: {"default": t, "<lang>": t}}: a language's own threshold where validation data allowed one.
        given = meta.get("thresholds", {})
        self.thresholds: dict[str, dict[str, float]] = {}
        for head in BINARY_HEADS:
            value = given.get(head, DEFAULT_THRESHOLD)
            table = value if isinstance(value, dict) else {"default": value}
            self.thresholds[head] = {str(k): float(v) for k, v in table.items()}
            self.thresholds[head].setdefault("default", DEFAULT_THRESHOLD)

    def threshold(self, head: str, lang: str) -> float:
        table = self.thresholds[head]
        return table.get(lang, table["default"])

    @classmethod
    def load(cls, directory: str | Path) -> TriageModel:
        directory = Path(directory)
        meta = json.loads((directory / META_FILE).read_text(encoding="utf-8"))
        return cls(load_backend(meta["backend"], directory), meta)

    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.backend.save(directory)
        meta = {
            **self.meta,
            "backend": self.backend.kind,
            "thresholds": self.thresholds,
            "normalization": self.normalization,
        }
        (directory / META_FILE).write_text(json.dumps(meta, indent=2, ensure_ascii=False), encoding="utf-8")
        return directory

    def predict(self, texts: list[str], langs: list[str | None] | None = None) -> pd.DataFrame:
        """The output contract as a frame (what the pyfunc returns)."""
        return pd.DataFrame(self.predict_columns(texts, langs), columns=list(OUTPUT_COLUMNS))

    def predict_columns(self, texts: list[str], langs: list[str | None] | None = None) -> dict[str, Any]:
        """The same as columns of plain lists/arrays: no DataFrame on the serving hot path."""
        texts = ["" if t is None else str(t) for t in texts]
        given = langs if langs is not None else [None] * len(texts)
        detector = default_detector()
        languages = [
            lang if isinstance(lang, str) and lang in LANGUAGES else detector.detect(text)
            for text, lang in zip(texts, given, strict=True)
        ]
        proba = self.backend.predict_proba([normalize(t, self.normalization) for t in texts], langs=languages)
        frame: dict[str, Any] = {"language": languages}
        sentiment = proba["sentiment"]
        frame["sentiment"] = [SENTIMENT_LABELS[i] for i in np.argmax(sentiment, axis=1)]
        for head in BINARY_HEADS:
            cut = np.array([self.threshold(head, lang) for lang in languages], dtype=np.float64)
            frame[head] = proba[head] >= cut
        for j, label in enumerate(SENTIMENT_LABELS):
            frame[f"p_sentiment_{label}"] = sentiment[:, j]
        for head in BINARY_HEADS:
            frame[f"p_{head}"] = proba[head]
        return frame


with warnings.catch_warnings():
    # MLflow nudges towards type-hinted predict(); the signature is given explicitly at logging instead.
    warnings.simplefilter("ignore", UserWarning)

    class CommentTriagePyfunc(PythonModel):
        """MLflow wrapper: input frame with ``text`` (and optional ``lang``), output :data:`OUTPUT_COLUMNS`."""

        def load_context(self, context):  # type: ignore[no-untyped-def]
            self.model = TriageModel.load(context.artifacts["model"])

        def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
            frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
            if "text" not in frame.columns:
                raise ValueError("input needs a 'text' column")
            langs = frame["lang"].tolist() if "lang" in frame.columns else None
            return self.model.predict(frame["text"].tolist(), langs)


def signature_and_example() -> tuple[Any, pd.DataFrame]:
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    inputs = Schema([ColSpec("string", "text"), ColSpec("string", "lang", required=False)])
    columns: list[Any] = [ColSpec("string", "language"), ColSpec("string", "sentiment")]
    columns += [ColSpec("boolean", head) for head in BINARY_HEADS]
    columns += [ColSpec("double", f"p_sentiment_{label}") for label in SENTIMENT_LABELS]
    columns += [ColSpec("double", f"p_{head}") for head in BINARY_HEADS]
    outputs = Schema(columns)
    example = pd.DataFrame(
        {
            "text": ["Gdzie jest moja paczka? Czekam już dwa tygodnie!", "Love the new colours 😍"],
            "lang": ["pl", "en"],
        }
    )
    return ModelSignature(inputs=inputs, outputs=outputs), example


def models_package_dir() -> str:
    return str(Path(__file__).resolve().parent)
