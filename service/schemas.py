"""The HTTP contract: typed, constrained request and response models (DESIGN.md, "Contracts")."""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from models.schema import LANGUAGES

Channel = Literal["comment", "reply", "dm", "review", "mention"]
Language = Literal["pl", "ru", "uk", "en", "de"]
Action = Literal[
    "escalate_crisis",
    "hide_and_review",
    "move_to_private",
    "apologize_and_resolve",
    "answer_question",
    "follow_up",
    "thank_and_engage",
    "monitor",
]
Priority = Literal["critical", "high", "normal", "low"]
Sentiment = Literal["negative", "neutral", "positive"]
MAX_TEXT = 10_000
MAX_COMMENTS = 10_000  # the most TRIAGE_MAX_COMMENTS may allow: a longer list fails validation before its items
assert set(LANGUAGES) == set(Language.__args__)  # type: ignore[attr-defined]


def _visible(value: str) -> bool:
    """Holds a character that is neither space, nor control, nor format (zero-width, BOM)."""
    return any(unicodedata.category(ch)[0] not in ("C", "Z") for ch in value)


class Author(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str | None = Field(None, max_length=256)
    followers: int | None = Field(None, ge=0)
    is_customer: bool = False
    is_vip: bool = False


class CommentIn(BaseModel):
    """One incoming comment. Only ``id`` and ``text`` are required."""

    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "examples": [
                {
                    "id": "c1",
                    "text": "Kiedy wyślecie moje zamówienie? Czekam już dwa tygodnie!",
                    "created_at": "2026-11-22T10:00:00Z",
                    "channel": "comment",
                    "is_paid": True,
                    "campaign_id": "black-friday",
                    "ad_id": "ad-17",
                    "post_id": "p-42",
                    "author": {"id": "u-9", "followers": 120, "is_customer": True},
                }
            ]
        },
    )

    id: str = Field(min_length=1, max_length=256)
    text: str = Field(min_length=1, max_length=MAX_TEXT)
    created_at: datetime | None = Field(None, description="when the comment was posted (default: received)")
    channel: Channel = "comment"
    is_paid: bool = False
    campaign_id: str | None = Field(None, max_length=256)
    ad_id: str | None = Field(None, max_length=256)
    post_id: str | None = Field(None, max_length=256)
    brand_id: str | None = Field(None, max_length=256)
    parent_text: str | None = Field(None, max_length=MAX_TEXT, description="the comment this one replies to")
    author: Author | None = None
    lang: Language | None = Field(None, description="language if known (default: detected)")

    @field_validator("text")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not _visible(value):  # "", spaces, or only zero-width and control characters ("\u200b", "\x00")
            raise ValueError("text must not be blank")
        return value

    @field_validator("id")
    @classmethod
    def _id_not_blank(cls, value: str) -> str:
        if not _visible(value):
            raise ValueError("id must not be blank")
        return value

    @field_validator("created_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value

    @property
    def paid(self) -> bool:
        return self.is_paid or bool(self.ad_id) or bool(self.campaign_id)


class ScoreRequest(BaseModel):
    comments: list[CommentIn] = Field(
        min_length=1, max_length=MAX_COMMENTS, description="1 to TRIAGE_MAX_COMMENTS comments"
    )


class SentimentScores(BaseModel):
    negative: float
    neutral: float
    positive: float


class Scores(BaseModel):
    sentiment: SentimentScores
    toxic: float
    complaint: float
    question: float


class ScoredComment(BaseModel):
    id: str
    language: str
    sentiment: Sentiment
    toxic: bool
    complaint: bool
    question: bool
    scores: Scores
    priority: Priority
    priority_score: int = Field(ge=0, le=100)
    respond_within_minutes: int | None
    respond_by: datetime | None
    action: Action
    reasons: list[str]
    questions: list[str]
    model_version: str
    policy_version: str


class ScoreResponse(BaseModel):
    results: list[ScoredComment]


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody
