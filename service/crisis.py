"""Crisis detection: a burst of negative, complaint or toxic comments in one post, ad, campaign or brand.

Each scope keeps per-minute counts of "bad" comments. A crisis starts when the last ``window_minutes``
hold at least ``min_count`` bad comments and ``ratio`` times what the scope's own baseline (the
``baseline_minutes`` before the window) predicts; it ends when the window falls under
``min_count * end_fraction`` or under ``end_ratio`` times the baseline. New comments in a scope with an
active crisis are escalated. State lives in the process by default, in Redis when several replicas run;
the start and end transitions are atomic there, so each crisis is announced once.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from service.predictor import Prediction
from service.schemas import CommentIn

log = logging.getLogger(__name__)

SCOPE_TYPES = ("post", "ad", "campaign", "brand")


@dataclass(frozen=True)
class Crisis:
    """An active crisis in one of the comment's scopes."""

    scope: str
    description: str


class CrisisConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    scopes: list[str] = Field(default_factory=lambda: list(SCOPE_TYPES))
    window_minutes: int = Field(15, ge=1, le=24 * 60)
    baseline_minutes: int = Field(360, ge=1, le=7 * 24 * 60)
    min_count: dict[str, int] = Field(
        default_factory=lambda: {"post": 5, "ad": 5, "campaign": 10, "brand": 20},
        description="bad comments a window needs, per scope type (a burst on one ad is no brand crisis)",
    )
    ratio: float = Field(3.0, ge=1.0)
    baseline_floor: float = Field(1.0, ge=0, description="expected bad comments per window at least")
    end_fraction: float = Field(0.5, gt=0, le=1)
    end_ratio: float = Field(1.5, ge=1.0)
    negative_min: float = Field(0.6, ge=0, le=1, description="P(negative) that counts a comment as negative")
    history: int = Field(100, ge=1, description="ended alerts kept for GET /v1/alerts")

    @field_validator("min_count", mode="before")
    @classmethod
    def _per_scope(cls, value: Any) -> Any:
        if isinstance(value, int):
            return dict.fromkeys(SCOPE_TYPES, value)
        return value

    @field_validator("scopes")
    @classmethod
    def _known_scopes(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(SCOPE_TYPES))
        if unknown:
            raise ValueError(f"unknown scope type(s) {unknown}; known: {', '.join(SCOPE_TYPES)}")
        return value

    @model_validator(mode="after")
    def _counts(self) -> CrisisConfig:
        unknown = sorted(set(self.min_count) - set(SCOPE_TYPES))
        if unknown:
            raise ValueError(f"min_count: unknown scope type(s) {unknown}")
        if any(v < 1 for v in self.min_count.values()):
            raise ValueError("min_count values must be >= 1")
        return self

    def min_for(self, scope: str) -> int:
        return self.min_count.get(scope.split(":", 1)[0], 5)


def _minute(ts: datetime) -> int:
    return int(ts.timestamp() // 60)


class CrisisState(Protocol):
    """Counters and alerts; the in-process and Redis versions behave the same."""

    def add(self, scope: str, minute: int, retain_minutes: int) -> None: ...

    def buckets(self, scope: str) -> dict[int, int]: ...

    def start(self, scope: str, alert: dict[str, Any]) -> bool: ...

    def update(self, scope: str, alert: dict[str, Any]) -> None: ...

    def end(self, scope: str, ended: dict[str, Any], history: int) -> bool: ...

    def active(self, scope: str) -> dict[str, Any] | None: ...

    def alerts(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]: ...


class MemoryState:
    def __init__(self) -> None:
        self._counts: dict[str, dict[int, int]] = defaultdict(dict)
        self._active: dict[str, dict[str, Any]] = {}
        self._ended: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def add(self, scope: str, minute: int, retain_minutes: int) -> None:
        with self._lock:
            buckets = self._counts[scope]
            buckets[minute] = buckets.get(minute, 0) + 1
            if len(buckets) > retain_minutes:
                for old in [m for m in buckets if m < minute - retain_minutes]:
                    del buckets[old]

    def buckets(self, scope: str) -> dict[int, int]:
        with self._lock:
            return dict(self._counts.get(scope, {}))

    def start(self, scope: str, alert: dict[str, Any]) -> bool:
        with self._lock:
            if scope in self._active:
                return False
            self._active[scope] = alert
            return True

    def update(self, scope: str, alert: dict[str, Any]) -> None:
        with self._lock:
            if scope in self._active:
                self._active[scope] = alert

    def end(self, scope: str, ended: dict[str, Any], history: int) -> bool:
        with self._lock:
            if self._active.pop(scope, None) is None:
                return False
            self._ended.insert(0, ended)
            del self._ended[history:]
            return True

    def active(self, scope: str) -> dict[str, Any] | None:
        with self._lock:
            return self._active.get(scope)

    def alerts(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        with self._lock:
            return list(self._active.values()), list(self._ended)


class RedisState:
    """Shared state for several replicas (``TRIAGE_REDIS_URL``)."""

    def __init__(self, url: str, prefix: str = "triage:crisis") -> None:
        import redis

        self.redis = redis.Redis.from_url(url, decode_responses=True, socket_timeout=2)
        self.prefix = prefix

    def _k(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    def add(self, scope: str, minute: int, retain_minutes: int) -> None:
        key = self._k("counts", scope)
        pipe = self.redis.pipeline()
        pipe.hincrby(key, str(minute), 1)
        pipe.expire(key, (retain_minutes + 1) * 60)
        pipe.execute()

    def buckets(self, scope: str) -> dict[int, int]:
        values = self.redis.hgetall(self._k("counts", scope))
        return {int(m): int(n) for m, n in values.items()}  # type: ignore[union-attr]

    def start(self, scope: str, alert: dict[str, Any]) -> bool:
        started = self.redis.set(self._k("active", scope), json.dumps(alert), nx=True)
        if started:
            self.redis.sadd(self._k("active-scopes"), scope)
        return bool(started)

    def update(self, scope: str, alert: dict[str, Any]) -> None:
        self.redis.set(self._k("active", scope), json.dumps(alert), xx=True)

    def end(self, scope: str, ended: dict[str, Any], history: int) -> bool:
        if not self.redis.delete(self._k("active", scope)):
            return False  # another replica ended it
        pipe = self.redis.pipeline()
        pipe.srem(self._k("active-scopes"), scope)
        pipe.lpush(self._k("ended"), json.dumps(ended))
        pipe.ltrim(self._k("ended"), 0, history - 1)
        pipe.execute()
        return True

    def active(self, scope: str) -> dict[str, Any] | None:
        raw = self.redis.get(self._k("active", scope))
        return json.loads(raw) if raw else None

    def alerts(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        scopes = sorted(str(s) for s in self.redis.smembers(self._k("active-scopes")))  # type: ignore[union-attr]
        active = [a for a in (self.active(s) for s in scopes) if a]
        ended = [json.loads(x) for x in self.redis.lrange(self._k("ended"), 0, -1)]
        return active, ended

    def clear(self) -> None:
        for key in self.redis.scan_iter(f"{self.prefix}:*"):
            self.redis.delete(key)


Notify = Any  # Callable[[str, dict], None]: "crisis.started" | "crisis.ended", alert


@dataclass
class CrisisDetector:
    config: CrisisConfig
    state: CrisisState
    notify: Notify | None = None

    def scopes(self, comment: CommentIn) -> list[str]:
        ids = {"post": comment.post_id, "ad": comment.ad_id, "campaign": comment.campaign_id, "brand": comment.brand_id}
        return [f"{kind}:{ids[kind]}" for kind in self.config.scopes if ids.get(kind)]

    def is_bad(self, pred: Prediction) -> bool:
        return (
            pred.toxic
            or pred.complaint
            or (pred.sentiment == "negative" and pred.p_sentiment["negative"] >= self.config.negative_min)
        )

    def observe(self, comment: CommentIn, pred: Prediction, now: datetime) -> Crisis | None:
        """Count the comment in its scopes, start or end crises, and return an active one if any."""
        if not self.config.enabled:
            return None
        return self.observe_scopes(self.scopes(comment), self.is_bad(pred), now)

    def observe_scopes(self, scopes: list[str], bad: bool, now: datetime) -> Crisis | None:
        """:meth:`observe` once the comment is read: its scopes (in the configured order) and whether it is bad.
        The first scope with an active crisis is returned."""
        cfg = self.config
        minute = _minute(now)
        found: Crisis | None = None
        for scope in scopes:
            if bad:
                self.state.add(scope, minute, cfg.window_minutes + cfg.baseline_minutes)
            alert = self.evaluate(scope, now)
            if alert is not None and found is None:
                found = Crisis(scope=scope.replace(":", " ", 1), description=alert["description"])
        return found

    def evaluate(self, scope: str, now: datetime) -> dict[str, Any] | None:
        cfg = self.config
        minute = _minute(now)
        # One read of the scope's per-minute counts serves both the window and its baseline.
        buckets = self.state.buckets(scope)
        window_start = minute - cfg.window_minutes + 1
        baseline_start = window_start - cfg.baseline_minutes
        window = sum(n for m, n in buckets.items() if window_start <= m <= minute)
        history = sum(n for m, n in buckets.items() if baseline_start <= m < window_start)
        expected = max(cfg.baseline_floor, history * cfg.window_minutes / cfg.baseline_minutes)
        active = self.state.active(scope)
        description = (
            f"{window} negative, complaint or toxic comments in the last {cfg.window_minutes} minutes "
            f"against {expected:.1f} expected"
        )
        if active is None:
            if window >= cfg.min_for(scope) and window >= cfg.ratio * expected:
                alert = {
                    "id": uuid.uuid4().hex[:12],
                    "scope": scope,
                    "status": "active",
                    "started_at": now.isoformat(),
                    "ended_at": None,
                    "count": window,
                    "peak": window,
                    "expected": round(expected, 2),
                    "window_minutes": cfg.window_minutes,
                    "description": description,
                }
                if self.state.start(scope, alert):
                    log.warning("crisis started on %s: %s", scope, description)
                    self._notify("crisis.started", alert)
                return self.state.active(scope) or alert
            return None
        started = datetime.fromisoformat(active["started_at"])
        if now < started:
            # A late comment from before the crisis began neither ends nor updates it; it belongs to the burst
            # when it falls inside the window that started it.
            return active if now >= started - timedelta(minutes=cfg.window_minutes) else None
        if window < cfg.min_for(scope) * cfg.end_fraction or window < cfg.end_ratio * expected:
            ended = {**active, "status": "ended", "ended_at": now.isoformat(), "count": window}
            if self.state.end(scope, ended, cfg.history):
                log.warning("crisis ended on %s", scope)
                self._notify("crisis.ended", ended)
            return None
        if window > active.get("peak", 0) or window != active.get("count"):
            active = {**active, "count": window, "peak": max(window, active.get("peak", 0)), "description": description}
            self.state.update(scope, active)
        return active

    def alerts(self, now: datetime | None = None) -> dict[str, list[dict[str, Any]]]:
        """Active crises (ended ones whose window has passed are closed first) and recent ended ones."""
        now = now or datetime.now(UTC)
        active, _ = self.state.alerts()
        for alert in active:
            self.evaluate(alert["scope"], now)
        active, ended = self.state.alerts()
        return {"active": active, "recent": ended}

    def _notify(self, event: str, alert: dict[str, Any]) -> None:
        if self.notify is not None:
            try:
                self.notify(event, alert)
            except Exception:  # a notifier must never break scoring
                log.exception("crisis notification failed")


def retry_delays(attempts: int, base: float) -> list[float]:
    return [base * (2**i) for i in range(attempts - 1)]


class WebhookNotifier:
    """Posts crisis events to a URL from a background thread, with retries; never blocks the caller."""

    def __init__(
        self,
        url: str,
        attempts: int = 5,
        backoff_seconds: float = 1.0,
        timeout: float = 5.0,
        post: Any = None,
        sleep: Any = None,
    ) -> None:
        import queue
        import time

        self.url = url
        self.attempts = attempts
        self.backoff = backoff_seconds
        self.timeout = timeout
        self._post = post or self._http_post
        self._sleep = sleep or time.sleep
        self._queue: queue.Queue[tuple[str, dict[str, Any]] | None] = queue.Queue()
        self.delivered: list[tuple[str, str]] = []
        self.failed: list[tuple[str, str]] = []
        self._thread = threading.Thread(target=self._run, name="crisis-webhook", daemon=True)
        self._thread.start()

    def __call__(self, event: str, alert: dict[str, Any]) -> None:
        self._queue.put((event, alert))

    def _http_post(self, url: str, payload: dict[str, Any], timeout: float) -> int:
        import httpx

        return httpx.post(url, json=payload, timeout=timeout).status_code

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                self._queue.task_done()
                return
            event, alert = item
            payload = {"event": event, "alert": alert, "sent_at": datetime.now(UTC).isoformat()}
            delays = retry_delays(self.attempts, self.backoff)
            for attempt in range(self.attempts):
                try:
                    status = self._post(self.url, payload, self.timeout)
                    if 200 <= status < 300:
                        self.delivered.append((event, alert["id"]))
                        break
                    log.warning("crisis webhook answered %s (attempt %d)", status, attempt + 1)
                except Exception as exc:
                    log.warning("crisis webhook failed (attempt %d): %s", attempt + 1, type(exc).__name__)
                if attempt < len(delays):
                    self._sleep(delays[attempt])
            else:
                self.failed.append((event, alert["id"]))
                log.error("crisis webhook gave up on %s %s", event, alert["id"])
            self._queue.task_done()

    def flush(self) -> None:
        self._queue.join()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=5)


def comment_clock(comment: CommentIn, now: datetime) -> datetime:
    """A comment counts at its posting time (so a backfilled campaign replays its history), never later
    than receipt."""
    created = comment.created_at
    return created if created is not None and created <= now else now


def build_detector(
    config: CrisisConfig,
    redis_url: str | None = None,
    webhook_url: str | None = None,
    attempts: int = 5,
    backoff_seconds: float = 1.0,
) -> CrisisDetector:
    state: CrisisState = RedisState(redis_url) if redis_url else MemoryState()
    notify = WebhookNotifier(webhook_url, attempts=attempts, backoff_seconds=backoff_seconds) if webhook_url else None
    return CrisisDetector(config, state, notify)
