"""The community-management playbook as code: priority, deadline, action and reasons.

Everything tunable lives in a YAML policy (default: ``configs/policy.yaml``) validated at load time.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from service.crisis import Crisis, CrisisConfig
from service.predictor import Prediction
from service.schemas import Action, CommentIn

log = logging.getLogger(__name__)

DEFAULT_POLICY = Path(__file__).resolve().parent.parent / "configs" / "policy.yaml"
ACTIONS: tuple[str, ...] = get_args(Action)
PUBLIC_CHANNELS = {"comment", "reply", "review", "mention"}
# Any link, short links (bit.ly/x, t.me/x) included, and a contact handle (@name) each count as one signal.
_LINK = re.compile(r"(?:https?://|www\.)\S+|\b[\w-]+(?:\.[\w-]+)*\.[a-z]{2,12}/\S*", re.IGNORECASE)
_HANDLE = re.compile(r"(?<![\w@])@[\w.]{2,}")
_ADDRESSED = re.compile(r"^\s*(?:@[\w.]{2,}[\s,:]*)+")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Levels(_Strict):
    critical: int = Field(80, ge=0, le=100)
    high: int = Field(60, ge=0, le=100)
    normal: int = Field(35, ge=0, le=100)

    @model_validator(mode="after")
    def _ordered(self) -> Levels:
        if not self.critical > self.high > self.normal:
            raise ValueError("levels must satisfy critical > high > normal")
        return self


class RespondWithin(_Strict):
    critical: int | None = Field(15, ge=1)
    high: int | None = Field(30, ge=1)
    normal: int | None = Field(60, ge=1)
    low: int | None = Field(60, ge=1)


class Signals(_Strict):
    strong_negative: float = Field(0.8, ge=0, le=1)
    positive: float = Field(0.6, ge=0, le=1)
    heated_parent_toxic: float = Field(0.5, ge=0, le=1)
    heated_parent_negative: float = Field(0.75, ge=0, le=1)
    large_audience_followers: int = Field(10_000, ge=0)
    wait_step_minutes: int = Field(10, ge=1)
    # Whether a comment asks something is the question head's call; the rules list what it asks, in order. A question
    # the rules extract counts where the head says the comment asks one (at its own tuned threshold), and also from
    # `question_span_floor` where it says no (None: never; 0: every extracted question counts, rhetorical or not).
    # `question_without_span`: the head alone, with no question extracted, makes a comment a question.
    question_span_floor: float | None = Field(None, ge=0, le=1)
    question_without_span: bool = True


class Boosts(_Strict):
    base: int = Field(10, ge=0, le=100)
    complaint: int = Field(30, ge=0, le=100)
    strong_negative: int = Field(15, ge=0, le=100)
    question: int = Field(25, ge=0, le=100)
    toxic: int = Field(35, ge=0, le=100)
    spam: int = Field(20, ge=0, le=100)
    paid: int = Field(15, ge=0, le=100)
    customer: int = Field(10, ge=0, le=100)
    vip: int = Field(20, ge=0, le=100)
    large_audience: int = Field(15, ge=0, le=100)
    heated_thread: int = Field(10, ge=0, le=100)
    dm: int = Field(10, ge=0, le=100)
    per_wait_step: int = Field(5, ge=0, le=100)
    max_wait: int = Field(25, ge=0, le=100)


class Spam(_Strict):
    min_hits: int = Field(2, ge=1)
    keywords: list[str] = Field(default_factory=list)

    @field_validator("keywords")
    @classmethod
    def _lower(cls, value: list[str]) -> list[str]:
        return [k.lower() for k in value if k.strip()]


class Profanity(_Strict):
    """Swear words, which the labelling guidelines call toxic wherever they stand ("Where the fuck is my refund?",
    "zajebiste te miejsca"): where the toxic head misses them in a long complaint or in praise, these patterns hide
    the comment for review all the same. Regular expressions, case-insensitive; an empty list turns the rule off."""

    patterns: list[str] = Field(default_factory=list)

    @field_validator("patterns")
    @classmethod
    def _compiles(cls, value: list[str]) -> list[str]:
        patterns = [p for p in value if p.strip()]
        for pattern in patterns:
            try:
                compiled = re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"pattern {pattern!r} is not a regular expression ({exc})") from None
            if any(m.start() == m.end() for m in compiled.finditer(" a b ")):  # "(dupa)?" would flag every comment
                raise ValueError(f"pattern {pattern!r} matches empty text")
        try:  # they run as one: an inline flag or a group name used twice fails only there
            _profanity_re(tuple(patterns))
        except re.error as exc:
            raise ValueError(f"the patterns do not combine into one regular expression ({exc})") from None
        return patterns


@lru_cache(maxsize=32)
def _profanity_re(patterns: tuple[str, ...]) -> re.Pattern[str] | None:
    return re.compile("|".join(f"(?:{p})" for p in patterns), re.IGNORECASE) if patterns else None


class PolicyConfig(_Strict):
    version: str = Field(min_length=1, max_length=64)
    levels: Levels = Levels()
    respond_within_minutes: RespondWithin = RespondWithin()
    max_respond_minutes: int = Field(60, ge=1, le=60)
    signals: Signals = Signals()
    boosts: Boosts = Boosts()
    precedence: list[str] = Field(default_factory=lambda: list(ACTIONS))
    spam: Spam = Spam()
    profanity: Profanity = Profanity()
    crisis: CrisisConfig = CrisisConfig()

    @field_validator("precedence")
    @classmethod
    def _permutation(cls, value: list[str]) -> list[str]:
        unknown = [a for a in value if a not in ACTIONS]
        if unknown:
            raise ValueError(f"unknown action(s) {unknown}; known: {', '.join(ACTIONS)}")
        if sorted(value) != sorted(ACTIONS):
            missing = sorted(set(ACTIONS) - set(value))
            raise ValueError(f"precedence must list every action exactly once (missing: {missing})")
        return value

    @model_validator(mode="after")
    def _within_limit(self) -> PolicyConfig:
        for level, minutes in self.respond_within_minutes.model_dump().items():
            if minutes is not None and minutes > self.max_respond_minutes:
                raise ValueError(
                    f"respond_within_minutes.{level} ({minutes}) exceeds max_respond_minutes "
                    f"({self.max_respond_minutes})"
                )
        return self


class PolicyError(Exception):
    pass


MATCH_KEYS = ("brand_id", "campaign_id")


class Override(_Strict):
    match: dict[str, str] = Field(min_length=1)
    version: str = Field(min_length=1, max_length=64)
    set: dict[str, Any] = Field(default_factory=dict)

    @field_validator("set")
    @classmethod
    def _per_comment(cls, value: dict[str, Any]) -> dict[str, Any]:
        if "crisis" in value:  # one detector watches every scope of the service: it cannot vary per brand
            raise ValueError("crisis detection is set for the whole service, at the top level, not per override")
        return value

    @field_validator("match")
    @classmethod
    def _keys(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(MATCH_KEYS))
        if unknown:
            raise ValueError(f"can match only {', '.join(MATCH_KEYS)}, not {', '.join(unknown)}")
        return value


@dataclass(frozen=True)
class PolicySet:
    """The base policy and its per-brand / per-campaign variants, each fully validated."""

    base: PolicyConfig
    overrides: tuple[tuple[dict[str, str], PolicyConfig], ...] = ()

    def for_comment(self, comment: CommentIn) -> PolicyConfig:
        best, best_keys = self.base, 0
        for match, policy in self.overrides:
            if all(getattr(comment, key) == value for key, value in match.items()) and len(match) > best_keys:
                best, best_keys = policy, len(match)
        return best

    @property
    def versions(self) -> list[str]:
        return [self.base.version, *(p.version for _, p in self.overrides)]


def _merge(base: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in change.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _details(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'policy'}: {e['msg']}" for e in exc.errors())


def parse_policy_set(raw: Any, origin: str = "policy") -> PolicySet:
    if not isinstance(raw, dict):
        raise PolicyError(f"{origin}: a policy must be a mapping")
    raw = dict(raw)
    overrides_raw = raw.pop("overrides", None) or []
    base = parse_policy(raw, origin)
    if not isinstance(overrides_raw, list):
        raise PolicyError(f"{origin}: overrides must be a list")
    overrides = []
    for i, item in enumerate(overrides_raw):
        where = f"{origin}: overrides[{i}]"
        try:
            override = Override.model_validate(item)
        except ValidationError as exc:
            raise PolicyError(f"{where}: {_details(exc)}") from None
        merged = _merge(raw, override.set)
        merged["version"] = override.version
        try:
            overrides.append((override.match, PolicyConfig.model_validate(merged)))
        except ValidationError as exc:
            raise PolicyError(f"{where}.set: {_details(exc)}") from None
    return PolicySet(base, tuple(overrides))


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PolicyError(f"{path}: no such policy file") from None
    except yaml.YAMLError as exc:
        raise PolicyError(f"{path}: invalid YAML ({exc})") from None


def load_policy_set(path: str | Path | None = None) -> PolicySet:
    path = Path(path) if path else DEFAULT_POLICY
    return parse_policy_set(_read_yaml(path), str(path))


def load_policy(path: str | Path | None = None) -> PolicyConfig:
    """The base policy of a policy file (its overrides validated too)."""
    return load_policy_set(path).base


def parse_policy(raw: Any, origin: str = "policy") -> PolicyConfig:
    if not isinstance(raw, dict):
        raise PolicyError(f"{origin}: a policy must be a mapping")
    try:
        return PolicyConfig.model_validate(raw)
    except ValidationError as exc:
        raise PolicyError(f"{origin}: {_details(exc)}") from None


class PolicyStore:
    """The live policy of a running service: reloaded when its file changes, or on request.

    A file that fails validation never replaces a working policy: the error is kept for
    ``GET /v1/policy`` and the log, and the previous policy stays in force.
    """

    def __init__(self, path: str | Path | None = None, check_seconds: float = 2.0, clock: Any = None) -> None:
        import time

        self.path = Path(path) if path else DEFAULT_POLICY
        self.check_seconds = check_seconds
        self._clock = clock or time.monotonic
        self._policies = load_policy_set(self.path)
        self._mtime = self._stat()
        self._checked = self._clock()
        self.loaded_at = datetime.now(UTC)
        self.last_error: str | None = None
        self._lock = threading.Lock()

    def _stat(self) -> float | None:
        try:
            return self.path.stat().st_mtime
        except OSError:
            return None

    def current(self) -> PolicySet:
        now = self._clock()
        if now - self._checked >= self.check_seconds:
            self._checked = now
            if self._stat() != self._mtime:
                with contextlib.suppress(PolicyError):
                    self.reload()
        return self._policies

    def reload(self) -> PolicySet:
        with self._lock:
            mtime = self._stat()
            try:
                policies = load_policy_set(self.path)
            except PolicyError as exc:
                self.last_error = str(exc)
                self._mtime = mtime
                log.error("policy not reloaded, the previous one stays in force: %s", exc)
                raise
            self._policies, self._mtime = policies, mtime
            self.loaded_at = datetime.now(UTC)
            self.last_error = None
            log.info("policy reloaded: %s", ", ".join(policies.versions))
            return policies

    def status(self) -> dict[str, Any]:
        return {
            "source": str(self.path),
            "version": self._policies.base.version,
            "versions": self._policies.versions,
            "loaded_at": self.loaded_at.isoformat(),
            "last_error": self.last_error,
        }


@dataclass
class Decision:
    priority: str
    priority_score: int
    respond_within_minutes: int | None
    respond_by: datetime | None
    action: str
    reasons: list[str] = field(default_factory=list)
    # the playbook's reading of the comment: bait questions in spam are no questions (data/README.md)
    question: bool = False
    questions: list[str] = field(default_factory=list)
    toxic: bool = False  # the toxic head's call, or a swear word it missed


def _where(comment: CommentIn) -> str:
    place = {
        "comment": "a public comment",
        "reply": "a public reply",
        "review": "a public review",
        "mention": "a public mention",
        "dm": "a direct message",
    }[comment.channel]
    if comment.paid:
        if comment.channel == "dm":
            place += " about a paid campaign"
        else:
            place += " under a paid ad" if comment.ad_id or comment.is_paid else " in a paid campaign"
    return place


def spam_hits(text: str, policy: PolicyConfig) -> int:
    lowered = text.lower()
    hits = sum(1 for k in policy.spam.keywords if k in lowered)
    # Handles that open the comment address someone (the brand, the user replied to): no contact handle.
    handle = _HANDLE.search(_ADDRESSED.sub("", text))
    return hits + (1 if _LINK.search(text) else 0) + (1 if handle else 0)


def profanity_in(text: str, policy: PolicyConfig) -> str | None:
    """The first swear word of ``text`` that the policy's patterns name, or None."""
    pattern = _profanity_re(tuple(policy.profanity.patterns))
    found = pattern.search(text) if pattern else None
    if found is None:
        return None
    start, end = found.span()
    while start > 0 and text[start - 1].isalnum():  # the whole word: "zajebiste", "fucking"
        start -= 1
    while end < len(text) and text[end].isalnum():
        end += 1
    return text[start:end]


def decide(
    comment: CommentIn,
    pred: Prediction,
    questions: list[str],
    now: datetime,
    policy: PolicyConfig,
    parent: Prediction | None = None,
    crisis: Crisis | None = None,
) -> Decision:
    """Apply the playbook to one scored comment."""
    b, s = policy.boosts, policy.signals
    score = b.base
    reasons: list[str] = []
    where = _where(comment)
    public = comment.channel in PUBLIC_CHANNELS

    # A real complaint may carry a link and name a messenger: it needs one signal more to count as spam (a "funds
    # recovery" scam posing as a complaint still has plenty). A question does not: bait is phrased as one ("Who
    # wants to work from home? DM me"), and hidden content is reviewed while an answer to spam is public.
    spam_signals = spam_hits(comment.text, policy)
    spam = spam_signals >= policy.spam.min_hits + (1 if pred.complaint else 0)
    floor = s.question_span_floor
    head_allows = pred.question or (floor is not None and pred.p_question >= floor)
    if spam or not head_allows:
        # "Want to earn 500 a day from home?" is bait; a rhetorical "?" the head reads as no question asks nothing
        questions = []
    is_question = (bool(questions) or (pred.question and s.question_without_span)) and not spam
    strong_negative = pred.p_sentiment["negative"] >= s.strong_negative
    positive = pred.sentiment == "positive" and pred.p_sentiment["positive"] >= s.positive
    author = comment.author
    # a comment stamped in the future (clock skew, a bad field) is due as if it came in now
    created = min(comment.created_at or now, now)
    waited = max(0.0, (now - created).total_seconds() / 60)
    heated = (
        parent is not None
        and comment.channel == "reply"
        and (parent.p_toxic >= s.heated_parent_toxic or parent.p_sentiment["negative"] >= s.heated_parent_negative)
    )

    # swearing the toxic head missed is toxic all the same (data/README.md): hidden for review, scored as toxic
    swear = None if pred.toxic else profanity_in(comment.text, policy)
    toxic = pred.toxic or bool(swear)
    if toxic:
        score += b.toxic
    if spam:
        score += b.spam
    if pred.complaint:
        score += b.complaint
    if strong_negative:
        score += b.strong_negative
    if is_question:
        score += b.question
    if comment.paid:
        score += b.paid
    if author and author.is_customer:
        score += b.customer
    if author and author.is_vip:
        score += b.vip
    large = bool(author and author.followers and author.followers >= s.large_audience_followers)
    if large:
        score += b.large_audience
    if heated:
        score += b.heated_thread
    if comment.channel == "dm":
        score += b.dm
    wait_boost = min(b.max_wait, int(waited // s.wait_step_minutes) * b.per_wait_step)
    score += wait_boost

    conditions = {
        "escalate_crisis": crisis is not None,
        "hide_and_review": toxic or spam,
        "move_to_private": pred.complaint and public,
        "apologize_and_resolve": pred.complaint and not public,
        "answer_question": is_question,
        # A customer waiting in a DM, or chasing in a thread (negative, or inside a heated one), gets a follow-up.
        "follow_up": bool(author and author.is_customer and comment.channel == "dm" and not positive)
        or bool(
            author and author.is_customer and comment.channel == "reply" and (pred.sentiment == "negative" or heated)
        )
        or (comment.channel == "dm" and waited >= policy.max_respond_minutes),
        "thank_and_engage": positive,
        "monitor": True,
    }
    action = next(a for a in policy.precedence if conditions[a])

    if crisis is not None:
        score = 100
        reasons.append(f"active crisis on {crisis.scope}: {crisis.description}; escalate to the team now")
    if pred.toxic:
        reasons.append(f"toxic content ({pred.p_toxic:.2f}) in {where}: hide it and review, do not answer")
    elif swear:
        reasons.append(f'profanity ("{swear}") in {where}: hide it and review, do not answer')
    if spam:
        reasons.append(f"looks like spam ({spam_signals} spam signals): hide it and review")
    hidden = action == "hide_and_review"  # what the reasons say agrees with the action, whatever the precedence
    if pred.complaint and hidden:
        reasons.append(f"complaint ({pred.p_complaint:.2f}) in {where}, in hidden content: review it, do not answer")
    elif pred.complaint:
        if public:
            reasons.append(
                f"complaint ({pred.p_complaint:.2f}) in {where}: acknowledge briefly, apologise if "
                "the brand is at fault, and move the conversation to private messages"
            )
        else:
            reasons.append(f"complaint ({pred.p_complaint:.2f}) in {where}: apologise and resolve it there")
    if strong_negative:
        reasons.append(
            f"strongly negative sentiment ({pred.p_sentiment['negative']:.2f}): de-escalate, never match the tone"
        )
    if is_question:
        n = len(questions)
        asked = f"{n} question{'s' if n != 1 else ''} asked" if n else "a question"
        if hidden:  # "Where the fuck is my parcel": still a question, but toxic content is never answered
            reasons.append(f"{asked} (question score {pred.p_question:.2f}), in hidden content: not answered")
        else:
            reasons.append(
                f"{asked} (question score {pred.p_question:.2f}): a question is a sale, answer "
                f"{'them in the order asked' if n > 1 else 'it'} fast"
            )
    if comment.paid and not pred.complaint:
        seen = "paid, public and seen by many" if public else "a paid campaign's audience"
        reasons.append(f"{where}: {seen}")
    if author and author.is_vip:
        reasons.append("the author is a VIP")
    if author and author.is_customer:
        reasons.append("the author is a customer")
    if large and author:
        reasons.append(f"the author has a large audience ({author.followers:,} followers)")
    if heated and parent is not None:
        reasons.append(
            f"reply inside a heated thread (parent toxic {parent.p_toxic:.2f}, negative "
            f"{parent.p_sentiment['negative']:.2f})"
        )
    if wait_boost:
        reasons.append(f"already waiting {int(waited)} minutes")
    if action == "follow_up":
        who = "a customer" if author and author.is_customer else "the author"
        reasons.append(f"{who} is waiting for an answer in {where}: follow up")
    if action == "thank_and_engage":
        reasons.append(f"positive comment ({pred.p_sentiment['positive']:.2f}): thank the author and engage")
    if action == "monitor" and not reasons:
        reasons.append(f"nothing to act on (sentiment {pred.sentiment} {max(pred.p_sentiment.values()):.2f}): monitor")

    score = max(0, min(100, score))
    lv = policy.levels
    level = (
        "critical"
        if score >= lv.critical
        else "high"
        if score >= lv.high
        else "normal"
        if score >= lv.normal
        else "low"
    )
    minutes = getattr(policy.respond_within_minutes, level)
    if action == "monitor":
        minutes = None
    elif minutes is None or minutes > policy.max_respond_minutes:
        minutes = policy.max_respond_minutes
    respond_by = created + timedelta(minutes=minutes) if minutes is not None else None
    if respond_by is not None and respond_by < now:
        what = "hiding it" if hidden else "the reply"
        reasons.append(f"overdue: {what} was due {int((now - respond_by).total_seconds() // 60)} minutes ago")
    return Decision(
        priority=level,
        priority_score=int(score),
        respond_within_minutes=minutes,
        respond_by=respond_by,
        action=action,
        reasons=reasons,
        question=is_question,
        questions=questions,
        toxic=toxic,
    )
