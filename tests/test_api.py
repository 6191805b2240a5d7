"""The HTTP API through the real app and the real registered model."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.scorer import Scorer
from service.settings import ServiceSettings


@pytest.fixture(scope="module")
def client(registry, predictor, policy):
    settings = ServiceSettings(home=registry["home"], max_comments=5)
    app = create_app(settings, scorer=Scorer(predictor, policy))
    with TestClient(app) as test_client:
        for _ in range(100):
            if test_client.get("/health/ready").status_code == 200:
                break
            time.sleep(0.05)
        yield test_client


def test_scores_comments_in_input_order_with_the_full_record(client, registry):
    created = "2026-11-22T10:00:00Z"
    body = {
        "comments": [
            {
                "id": "c1",
                "text": "Gdzie jest moja paczka? Czekam już dwa tygodnie!",
                "created_at": created,
                "is_paid": True,
                "ad_id": "ad-1",
            },
            {"id": "c2", "text": "Thank you so much, the jacket is perfect! 😍"},
            {
                "id": "c3",
                "text": "Wann kommt die Lieferung und kann ich mit PayPal zahlen?",
                "channel": "dm",
                "author": {"is_customer": True, "followers": 12},
            },
        ]
    }
    response = client.post("/v1/score", json=body)
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["id"] for r in results] == ["c1", "c2", "c3"]
    first = results[0]
    for field in (
        "language",
        "sentiment",
        "toxic",
        "complaint",
        "question",
        "scores",
        "priority",
        "priority_score",
        "respond_within_minutes",
        "respond_by",
        "action",
        "reasons",
        "questions",
        "model_version",
        "policy_version",
    ):
        assert field in first
    assert first["language"] == "pl"
    assert first["questions"] == ["Gdzie jest moja paczka?"]
    assert first["model_version"] == f"comment-triage/{registry['version']}"
    assert first["policy_version"] == "default/1"
    assert 0 < first["respond_within_minutes"] <= 60
    respond_by = datetime.fromisoformat(first["respond_by"].replace("Z", "+00:00"))
    assert (respond_by - datetime(2026, 11, 22, 10, tzinfo=UTC)).total_seconds() == 60 * first["respond_within_minutes"]
    assert set(first["scores"]["sentiment"]) == {"negative", "neutral", "positive"}
    assert results[2]["questions"] == ["Wann kommt die Lieferung", "kann ich mit PayPal zahlen?"]
    assert results[2]["action"] == "answer_question"
    assert all(r["reasons"] for r in results)


@pytest.mark.parametrize(
    ("body", "code", "fragment"),
    [
        ({"comments": []}, "invalid_request", "comments: List should have at least 1 item"),
        ({}, "invalid_request", "comments: Field required"),
        ({"comments": [{"id": "1", "text": "  "}]}, "invalid_request", "comments.0.text: Value error, text must "),
        ({"comments": [{"id": "1"}]}, "invalid_request", "comments.0.text: Field required"),
        ({"comments": [{"id": "", "text": "hi"}]}, "invalid_request", "comments.0.id"),
        ({"comments": [{"id": "1", "text": "hi", "channel": "fax"}]}, "invalid_request", "comments.0.channel"),
        (
            {"comments": [{"id": "1", "text": "hi", "author": {"followers": -1}}]},
            "invalid_request",
            "comments.0.author.followers",
        ),
        (
            {"comments": [{"id": "1", "text": "hi", "created_at": "yesterday"}]},
            "invalid_request",
            "comments.0.created_at",
        ),
        ({"comments": [{"id": "1", "text": "a"}, {"id": "1", "text": "b"}]}, "duplicate_id", "comments.1.id"),
        ({"comments": [{"id": str(i), "text": "hi"} for i in range(6)]}, "too_many_comments", "the limit is 5"),
        ({"comments": [{"id": "1", "text": "\u200b\ufeff"}]}, "invalid_request", "text must not be blank"),
        ({"comments": [{"id": "1", "text": "\u0000"}]}, "invalid_request", "text must not be blank"),
        ({"comments": [{"id": "  ", "text": "hi"}]}, "invalid_request", "comments.0.id: Value error, id must not be"),
        ({"comments": [{"id": str(i), "text": "hi"} for i in range(10_001)]}, "invalid_request", "at most 10000"),
    ],
)
def test_invalid_requests_get_422_with_a_clear_message(client, body, code, fragment):
    response = client.post("/v1/score", json=body)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == code
    assert fragment in error["message"]
    assert "Traceback" not in response.text


def test_a_comment_stamped_far_in_the_future_is_due_within_the_hour(client):
    """created_at 9999-12-31 was a 500 (OverflowError computing respond_by)."""
    body = {"comments": [{"id": "1", "text": "Gdzie paczka?", "created_at": "9999-12-31T23:50:00Z"}]}
    response = client.post("/v1/score", json=body)
    assert response.status_code == 200, response.text
    due = datetime.fromisoformat(response.json()["results"][0]["respond_by"])
    assert (due - datetime.now(UTC)).total_seconds() <= 3600


def test_settings_refuse_a_text_limit_the_contract_cannot_serve():
    with pytest.raises(ValueError, match="max_text_chars"):
        ServiceSettings(max_text_chars=20_000)


def test_malformed_json_is_a_422_not_a_500(client):
    response = client.post("/v1/score", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert response.json()["error"]["message"] == "body: invalid JSON"


def test_model_and_health_endpoints(client, registry):
    assert client.get("/health/live").json() == {"status": "ok"}
    ready = client.get("/health/ready").json()
    assert ready["status"] == "ready" and ready["model_version"].endswith(f"/{registry['version']}")
    model = client.get("/v1/model").json()
    assert model["name"] == "comment-triage" and model["alias"] == "champion"
    assert model["registered_version"] == registry["version"]
    assert set(model["metrics"]) == {"sentiment", "toxic", "complaint", "question"}
    assert model["training_data"]["rows"] == 700 and model["normalization"] == 2
    assert "test/toxic/all/f1" in model["run_metrics"]
    assert client.get("/nope").json()["error"]["code"] == "not_found"


def test_not_ready_until_a_model_loads(tmp_path):
    """No champion in an empty store: the process lives, readiness and scoring answer 503 with the reason."""
    settings = ServiceSettings(home=tmp_path, model_uri="models:/comment-triage@champion")
    with TestClient(create_app(settings)) as test_client:
        for _ in range(200):
            response = test_client.get("/health/ready")
            if "could not be loaded" in response.text:
                break
            time.sleep(0.05)
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "not_ready"
        assert test_client.get("/health/live").status_code == 200
        scored = test_client.post("/v1/score", json={"comments": [{"id": "1", "text": "hi"}]})
        assert scored.status_code == 503


def test_concurrent_requests_share_model_calls(predictor, policy):
    """Micro-batching: many concurrent requests are served by fewer model calls, each getting its own rows."""
    import asyncio

    from service.schemas import CommentIn

    scorer = Scorer(predictor, policy, max_batch=64, max_wait_ms=20)

    async def run() -> list:
        jobs = [scorer.score([CommentIn(id=f"{i}", text=f"Gdzie jest paczka numer {i}?")]) for i in range(20)]
        out = await asyncio.gather(*jobs)
        await scorer.batcher.stop()
        return out

    results = asyncio.run(run())
    assert [r[0].id for r in results] == [str(i) for i in range(20)]
    assert scorer.batcher.batches < 20
