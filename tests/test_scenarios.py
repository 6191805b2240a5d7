"""The playbook as a scenario table: every row of ``tests/scenarios/playbook.yaml`` through the real policy.

Each row is a comment, its context and the classifier output a good model would give; the expected action,
priority and priority score were derived by hand from DESIGN.md ("The playbook") and ``configs/policy.yaml``.
Questions come from the real :func:`service.questions.extract_questions`. A row with ``xfail_reason`` is one
where the code disagrees with the playbook: it keeps the playbook's expectation and is a strict xfail.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, get_args

import pytest
import yaml

from service.policy import Crisis, Decision, PolicyConfig, decide
from service.predictor import Prediction
from service.questions import extract_questions
from service.schemas import Action, Channel, CommentIn, Language, Priority, Sentiment

TABLE = Path(__file__).resolve().parent / "scenarios" / "playbook.yaml"
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
SENTIMENTS = get_args(Sentiment)
MIN_ROWS, MIN_PER_LANGUAGE = 64, 11

REQUIRED = {"name", "lang", "case", "text", "channel", "author", "waited_minutes", "model", "action", "priority"}
OPTIONAL = {
    "is_paid",
    "ad_id",
    "campaign_id",
    "post_id",
    "parent_text",
    "parent_model",
    "crisis",
    "questions_expected",
    "score",
    "xfail_reason",
}
MODEL_KEYS = {"sentiment", "p", "toxic", "complaint", "question"}
AUTHOR_KEYS = {"is_customer", "is_vip", "followers"}


def _load() -> list[dict[str, Any]]:
    return yaml.safe_load(TABLE.read_text(encoding="utf-8"))["scenarios"]


ROWS = _load()


def _prediction(model: dict[str, Any], lang: str) -> Prediction:
    """The classifier output of a row: ``p`` for the named sentiment, the rest shared by the other two."""
    sentiment, p = model["sentiment"], float(model["p"])
    rest = (1.0 - p) / 2
    return Prediction(
        language=lang,
        sentiment=sentiment,
        toxic=model["toxic"] >= 0.5,
        complaint=model["complaint"] >= 0.5,
        question=model["question"] >= 0.5,
        p_sentiment={label: (p if label == sentiment else rest) for label in SENTIMENTS},
        p_toxic=float(model["toxic"]),
        p_complaint=float(model["complaint"]),
        p_question=float(model["question"]),
    )


def _comment(row: dict[str, Any]) -> CommentIn:
    return CommentIn(
        id=row["name"],
        text=row["text"],
        created_at=NOW - timedelta(minutes=row["waited_minutes"]),
        channel=row["channel"],
        is_paid=row.get("is_paid", False),
        ad_id=row.get("ad_id"),
        campaign_id=row.get("campaign_id"),
        post_id=row.get("post_id"),
        parent_text=row.get("parent_text"),
        author={"id": f"u-{row['name']}", **row["author"]},
        lang=row["lang"],
    )


def _crisis(row: dict[str, Any]) -> Crisis | None:
    spec = row.get("crisis")
    if spec is None:
        return None
    if isinstance(spec, dict):
        return Crisis(scope=spec["scope"], description=spec["description"])
    return Crisis(scope=spec, description="a burst of negative comments and complaints")


def _run(row: dict[str, Any], policy: PolicyConfig) -> tuple[CommentIn, list[str], Decision]:
    comment = _comment(row)
    questions = extract_questions(row["text"])
    parent = _prediction(row["parent_model"], row["lang"]) if "parent_model" in row else None
    decision = decide(
        comment,
        _prediction(row["model"], row["lang"]),
        questions,
        NOW,
        policy,
        parent=parent,
        crisis=_crisis(row),
    )
    return comment, questions, decision


def _param(row: dict[str, Any]) -> Any:
    marks = []
    if row.get("xfail_reason"):
        marks.append(pytest.mark.xfail(reason=row["xfail_reason"], strict=True))
    return pytest.param(row, id=row["name"], marks=marks)


# ---------------------------------------------------------------------------------------------------- the table


def test_table_is_large_and_spread_over_languages_and_actions():
    assert len(ROWS) >= MIN_ROWS
    per_language = Counter(r["lang"] for r in ROWS)
    assert set(per_language) == set(get_args(Language))
    assert all(n >= MIN_PER_LANGUAGE for n in per_language.values()), per_language
    assert set(get_args(Action)) <= {r["action"] for r in ROWS}
    # ... and the rows the code agrees with cover every action too, not only the playbook's expectations.
    assert set(get_args(Action)) <= {r["action"] for r in ROWS if not r.get("xfail_reason")}


def test_table_rows_are_well_formed():
    names = [r["name"] for r in ROWS]
    assert len(names) == len(set(names)), [n for n, c in Counter(names).items() if c > 1]
    for row in ROWS:
        keys = set(row)
        assert keys >= REQUIRED, (row["name"], REQUIRED - keys)
        assert keys <= REQUIRED | OPTIONAL, (row["name"], keys - REQUIRED - OPTIONAL)
        assert row["name"].startswith(f"{row['lang']}_"), row["name"]
        assert row["lang"] in get_args(Language) and row["channel"] in get_args(Channel), row["name"]
        assert row["action"] in get_args(Action) and row["priority"] in get_args(Priority), row["name"]
        assert isinstance(row["waited_minutes"], int) and row["waited_minutes"] >= 0, row["name"]
        assert set(row["author"]) == AUTHOR_KEYS, row["name"]
        for model in (row["model"], row.get("parent_model")):
            if model is not None:
                assert set(model) == MODEL_KEYS and model["sentiment"] in SENTIMENTS, row["name"]
                assert all(0 <= model[k] <= 1 for k in MODEL_KEYS - {"sentiment"}), row["name"]
        assert ("parent_text" in row or "parent_model" not in row) and (
            row["channel"] == "reply" or "parent_text" not in row
        ), row["name"]
        assert "xfail_reason" not in row or row["xfail_reason"].strip(), row["name"]


# ---------------------------------------------------------------------------------------------------- each row


@pytest.mark.parametrize("row", [_param(r) for r in ROWS])
def test_scenario_follows_the_playbook(row, policy):
    _, _, d = _run(row, policy)
    got = {"action": d.action, "priority": d.priority, "score": d.priority_score, "questions": d.questions}
    expected = {"action": row["action"], "priority": row["priority"]}
    assert {k: got[k] for k in expected} == expected, (got, d.reasons)
    if "score" in row:
        assert d.priority_score == row["score"], (got, d.reasons)
    if "questions_expected" in row:  # as the response lists them
        assert d.questions == row["questions_expected"]


@pytest.mark.parametrize("row", [pytest.param(r, id=r["name"]) for r in ROWS])
def test_scenario_invariants(row, policy):
    comment, questions, d = _run(row, policy)
    assert 0 <= d.priority_score <= 100
    if d.action == "monitor":
        assert d.respond_within_minutes is None and d.respond_by is None
    else:
        assert d.respond_within_minutes is not None and 1 <= d.respond_within_minutes <= 60
        assert d.respond_by == comment.created_at + timedelta(minutes=d.respond_within_minutes)
    assert d.reasons and all(isinstance(r, str) and r.strip() for r in d.reasons)
    if row.get("crisis"):
        assert d.action == "escalate_crisis" and d.priority == "critical"
    assert all(q.strip() and q.strip() in row["text"] for q in questions)  # spans of the text, in order
    positions = [row["text"].index(q) for q in questions]
    assert positions == sorted(positions)
