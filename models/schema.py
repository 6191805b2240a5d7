"""Label schema shared by training and serving."""

from __future__ import annotations

MODEL_NAME = "comment-triage"
CHAMPION_ALIAS = "champion"

LANGUAGES: tuple[str, ...] = ("pl", "ru", "uk", "en", "de")
UNKNOWN_LANGUAGE = "und"

SENTIMENT_LABELS: tuple[str, ...] = ("negative", "neutral", "positive")
BINARY_HEADS: tuple[str, ...] = ("toxic", "complaint", "question")
HEADS: tuple[str, ...] = ("sentiment", *BINARY_HEADS)

# Columns of the pyfunc's output frame, in order.
PROBA_COLUMNS: tuple[str, ...] = (
    *(f"p_sentiment_{label}" for label in SENTIMENT_LABELS),
    *(f"p_{head}" for head in BINARY_HEADS),
)
OUTPUT_COLUMNS: tuple[str, ...] = ("language", *HEADS, *PROBA_COLUMNS)
