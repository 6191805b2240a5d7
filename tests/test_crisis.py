"""Crisis detection with a simulated clock: start, end, per-scope isolation, webhook retries, Redis state."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from service.crisis import CrisisConfig, CrisisDetector, MemoryState, RedisState, WebhookNotifier
from service.predictor import Prediction
from service.schemas import CommentIn

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
REDIS_URL = "redis://127.0.0.1:6379/0"


def pred(bad: bool) -> Prediction:
    neg = 0.9 if bad else 0.1
    return Prediction(
        language="pl",
        sentiment="negative" if bad else "positive",
        toxic=False,
        complaint=bad,
        question=False,
        p_sentiment={"negative": neg, "neutral": 0.05, "positive": 0.95 - neg},
        p_toxic=0.02,
        p_complaint=0.9 if bad else 0.05,
        p_question=0.1,
    )


def comment(i: int, ad: str, brand: str = "acme") -> CommentIn:
    return CommentIn(id=str(i), text="Paczka nie doszła, skandal", ad_id=ad, brand_id=brand, post_id=f"post-{ad}")


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def __call__(self, event: str, alert: dict) -> None:
        self.events.append((event, alert["scope"]))


def memory_detector(**cfg) -> tuple[CrisisDetector, Recorder]:
    recorder = Recorder()
    return CrisisDetector(CrisisConfig(**cfg), MemoryState(), recorder), recorder


def burst(detector, ad: str, n: int, start: datetime, every_seconds: int = 30, bad: bool = True, first: int = 0):
    results = []
    for i in range(n):
        results.append(
            detector.observe(comment(first + i, ad), pred(bad), start + timedelta(seconds=every_seconds * i))
        )
    return results


def test_a_burst_on_one_ad_escalates_that_ad_alone_and_ends_when_it_calms():
    detector, recorder = memory_detector()
    # A quiet baseline: the odd complaint on both ads over the previous hours.
    for hour in range(1, 6):
        for ad in ("ad-1", "ad-2"):
            detector.observe(comment(hour, ad), pred(True), T0 - timedelta(hours=hour))
    results = burst(detector, "ad-1", 6, T0)
    assert results[:4] == [None] * 4
    assert results[4] is not None and results[4].scope == "post post-ad-1"  # the most specific scope first
    assert "5 negative, complaint or toxic comments in the last 15 minutes" in results[4].description
    assert results[5] is not None  # later comments in the scope stay escalated
    # The other ad, and the brand as a whole (20 needed), are not in crisis.
    assert detector.observe(comment(99, "ad-2"), pred(True), T0 + timedelta(minutes=3)) is None
    assert sorted(recorder.events) == [("crisis.started", "ad:ad-1"), ("crisis.started", "post:post-ad-1")]
    alerts = detector.alerts(T0 + timedelta(minutes=4))
    assert {a["scope"] for a in alerts["active"]} == {"ad:ad-1", "post:post-ad-1"}
    # Half an hour later the window is empty: the next comment ends the crisis, once.
    calm = detector.observe(comment(100, "ad-1"), pred(False), T0 + timedelta(minutes=40))
    assert calm is None
    assert ("crisis.ended", "ad:ad-1") in recorder.events
    alerts = detector.alerts(T0 + timedelta(minutes=41))
    assert alerts["active"] == [] and {a["status"] for a in alerts["recent"]} == {"ended"}
    assert recorder.events.count(("crisis.started", "ad:ad-1")) == 1


def test_a_late_comment_from_before_the_crisis_neither_ends_it_nor_restarts_it():
    detector, recorder = memory_detector()
    burst(detector, "ad-1", 6, T0)
    assert recorder.events.count(("crisis.started", "ad:ad-1")) == 1
    # a comment posted two hours earlier arrives late (a backfill, a slow integration)
    assert detector.observe(comment(50, "ad-1"), pred(True), T0 - timedelta(hours=2)) is None
    # one posted in the minutes before the crisis began belongs to the burst
    assert detector.observe(comment(51, "ad-1"), pred(True), T0 - timedelta(minutes=5)) is not None
    assert not any(event == "crisis.ended" for event, _ in recorder.events)
    assert detector.observe(comment(52, "ad-1"), pred(True), T0 + timedelta(minutes=4)) is not None
    assert recorder.events.count(("crisis.started", "ad:ad-1")) == 1


def test_a_busy_scope_needs_a_jump_over_its_own_baseline():
    detector, _ = memory_detector()
    # This ad always draws ~12 complaints per 15 minutes: 12 in a window is its normal, not a crisis.
    for minute in range(0, 360, 5):
        for k in range(4):
            detector.observe(comment(minute * 10 + k, "ad-9"), pred(True), T0 - timedelta(minutes=360 - minute))
    assert all(r is None for r in burst(detector, "ad-9", 12, T0, every_seconds=60))
    # Four times its usual rate is.
    assert any(
        r is not None for r in burst(detector, "ad-9", 40, T0 + timedelta(minutes=15), every_seconds=10, first=1000)
    )


def test_good_comments_do_not_count_and_alerts_close_without_new_comments():
    detector, recorder = memory_detector()
    assert all(r is None for r in burst(detector, "ad-3", 20, T0, bad=False))
    burst(detector, "ad-3", 5, T0 + timedelta(minutes=30), first=100)
    assert len(detector.alerts(T0 + timedelta(minutes=33))["active"]) == 2
    assert detector.alerts(T0 + timedelta(hours=2))["active"] == []  # the sweep ends it
    assert [e for e, _ in recorder.events].count("crisis.ended") == 2


def test_disabled_detection_escalates_nothing():
    detector, recorder = memory_detector(enabled=False)
    assert all(r is None for r in burst(detector, "ad-1", 30, T0))
    assert recorder.events == []


def test_webhook_retries_then_delivers_once_and_never_blocks_scoring():
    calls: list[dict] = []
    sleeps: list[float] = []
    gate = threading.Event()

    def post(url, payload, timeout):
        gate.wait(5)
        calls.append(payload)
        return 503 if len(calls) <= 2 else 200

    notifier = WebhookNotifier(
        "http://127.0.0.1:9/hook", attempts=5, backoff_seconds=0.5, post=post, sleep=sleeps.append
    )
    detector = CrisisDetector(CrisisConfig(), MemoryState(), notifier)
    started = time.perf_counter()
    results = burst(detector, "ad-1", 5, T0)
    assert time.perf_counter() - started < 1.0 and results[-1] is not None  # the hook is still stuck
    gate.set()
    notifier.flush()
    assert len(calls) == 4  # ad: 503, 503, 200; post: 200
    assert sleeps == [0.5, 1.0]
    assert [c["event"] for c in calls] == ["crisis.started"] * 4
    assert notifier.delivered == [
        ("crisis.started", calls[0]["alert"]["id"]),
        ("crisis.started", calls[3]["alert"]["id"]),
    ]
    notifier.close()


def test_webhook_gives_up_after_its_attempts():
    notifier = WebhookNotifier("http://x", attempts=3, backoff_seconds=1, post=lambda *a: 500, sleep=lambda s: None)
    notifier("crisis.started", {"id": "a1", "scope": "ad:1"})
    notifier.flush()
    assert notifier.failed == [("crisis.started", "a1")] and notifier.delivered == []
    notifier.close()


@pytest.fixture()
def redis_state():
    state = RedisState(REDIS_URL, prefix=f"triage-test:{uuid.uuid4().hex[:8]}")
    try:
        state.redis.ping()
    except Exception:
        pytest.skip("no Redis server on 127.0.0.1:6379")
    yield state
    state.clear()


@pytest.mark.redis
def test_redis_state_is_shared_by_replicas_and_announces_each_crisis_once(redis_state):
    replica_a = CrisisDetector(CrisisConfig(), redis_state, Recorder())
    replica_b = CrisisDetector(CrisisConfig(), RedisState(REDIS_URL, prefix=redis_state.prefix), Recorder())
    # Comments of one burst arrive at two replicas alternately.
    found = []
    for i in range(6):
        replica = replica_a if i % 2 == 0 else replica_b
        found.append(replica.observe(comment(i, "ad-1"), pred(True), T0 + timedelta(seconds=30 * i)))
    assert found[:4] == [None] * 4 and found[4] is not None and found[5] is not None
    events = replica_a.notify.events + replica_b.notify.events
    assert sorted(events) == [("crisis.started", "ad:ad-1"), ("crisis.started", "post:post-ad-1")]
    assert replica_b.observe(comment(50, "ad-2"), pred(True), T0 + timedelta(minutes=3)) is None
    assert {a["scope"] for a in replica_b.alerts(T0 + timedelta(minutes=3))["active"]} == {"ad:ad-1", "post:post-ad-1"}
    # Both replicas see the end; only one announces it.
    replica_a.alerts(T0 + timedelta(hours=1))
    replica_b.alerts(T0 + timedelta(hours=1))
    ended = [e for e in replica_a.notify.events + replica_b.notify.events if e[0] == "crisis.ended"]
    assert sorted(ended) == [("crisis.ended", "ad:ad-1"), ("crisis.ended", "post:post-ad-1")]
    assert len(replica_a.alerts(T0 + timedelta(hours=1))["recent"]) == 2
