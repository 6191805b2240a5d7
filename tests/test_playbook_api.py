"""The playbook through the HTTP app: live policy reload, per-brand overrides, crisis alerts."""

from __future__ import annotations

import time

import pytest
import yaml
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from service.app import create_app
from service.crisis import CrisisConfig, CrisisDetector, MemoryState
from service.policy import DEFAULT_POLICY, PolicyStore
from service.scorer import Scorer
from service.settings import ServiceSettings
from triage.cli import app as cli


def write_policy(path, **changes):
    raw = yaml.safe_load(DEFAULT_POLICY.read_text(encoding="utf-8"))
    raw.update(changes)
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return raw


def wait_ready(client):
    for _ in range(200):
        if client.get("/health/ready").status_code == 200:
            return
        time.sleep(0.05)
    raise AssertionError("not ready")


@pytest.fixture()
def live(tmp_path, registry, predictor):
    path = tmp_path / "policy.yaml"
    write_policy(
        path,
        version="brandbook/1",
        overrides=[
            {
                "match": {"brand_id": "acme"},
                "version": "acme/1",
                "set": {"respond_within_minutes": {"normal": 45, "low": 45}, "boosts": {"question": 0}},
            },
        ],
    )
    store = PolicyStore(path, check_seconds=0)
    detector = CrisisDetector(store.current().base.crisis, MemoryState())
    scorer = Scorer(predictor, store, crisis=detector)
    with TestClient(create_app(ServiceSettings(home=registry["home"]), scorer=scorer)) as client:
        wait_ready(client)
        yield client, path


def score(client, **comment):
    response = client.post("/v1/score", json={"comments": [{"id": "1", "text": "Wann kommt mein Paket?", **comment}]})
    assert response.status_code == 200, response.text
    return response.json()["results"][0]


def test_policy_reloads_live_and_a_bad_file_keeps_the_old_one(live):
    client, path = live
    assert score(client)["policy_version"] == "brandbook/1"
    write_policy(path, version="brandbook/2")
    assert score(client)["policy_version"] == "brandbook/2"  # picked up on change, no restart
    path.write_text("version: brandbook/3\nprecedence: [monitor]\n", encoding="utf-8")
    assert score(client)["policy_version"] == "brandbook/2"
    status = client.get("/v1/policy").json()
    assert status["version"] == "brandbook/2" and "precedence" in status["last_error"]
    refused = client.post("/v1/policy/reload")
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "invalid_policy"
    write_policy(path, version="brandbook/4")
    assert client.post("/v1/policy/reload").json()["version"] == "brandbook/4"


def test_a_brand_override_applies_to_that_brand_only(live):
    client, _ = live
    acme = score(client, brand_id="acme")
    other = score(client, brand_id="globex")
    assert acme["policy_version"] == "acme/1" and other["policy_version"] == "brandbook/1"
    assert acme["priority_score"] < other["priority_score"]  # question boost 0 for acme
    assert acme["respond_within_minutes"] == 45


def test_a_swear_word_makes_the_record_toxic_and_hides_it(live):
    """The record's `toxic` is the playbook's reading, as `question` is: the head's call or a swear word it missed;
    `scores.toxic` stays the model's probability. Here a brand that bans a made-up word (its own list)."""
    client, path = live
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    raw["overrides"][0]["set"]["profanity"] = {"patterns": ["(?<!\\w)zzgrr"]}
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    client.post("/v1/policy/reload")
    text = "zzgrr, wann kommt mein Paket?"
    acme, other = score(client, brand_id="acme", text=text), score(client, brand_id="globex", text=text)
    assert acme["toxic"] and acme["action"] == "hide_and_review"
    assert acme["reasons"][0] == 'profanity ("zzgrr") in a public comment: hide it and review, do not answer'
    assert not other["toxic"] and other["action"] != "hide_and_review"
    assert acme["scores"]["toxic"] == other["scores"]["toxic"] < 0.5


def test_burst_on_one_ad_escalates_that_ad_and_is_listed_in_alerts(live):
    client, _ = live
    complaint = "Das Paket ist kaputt angekommen, eine Frechheit! Ich will mein Geld zurück."
    body = {
        "comments": [
            {"id": f"b{i}", "text": complaint, "ad_id": "ad-7", "brand_id": "globex", "channel": "comment"}
            for i in range(8)
        ]
    }
    first = client.post("/v1/score", json=body).json()["results"]
    bad = [r for r in first if r["complaint"] or r["sentiment"] == "negative" or r["toxic"]]
    assert len(bad) >= 5, [r["scores"] for r in first]
    assert first[-1]["action"] == "escalate_crisis" and first[-1]["priority"] == "critical"
    assert "active crisis on ad ad-7" in first[-1]["reasons"][0]
    other_ad = score(client, text=complaint, ad_id="ad-8", brand_id="globex")
    assert other_ad["action"] != "escalate_crisis"
    alerts = client.get("/v1/alerts").json()
    assert alerts["enabled"] and [a["scope"] for a in alerts["active"]] == ["ad:ad-7"]


def test_a_bad_policy_stops_serve_with_a_clear_error(tmp_path, monkeypatch):
    bad = tmp_path / "policy.yaml"
    bad.write_text("version: x\nlevels: {critical: 10, high: 60, normal: 35}\n", encoding="utf-8")
    monkeypatch.setenv("TRIAGE_POLICY_FILE", str(bad))
    monkeypatch.setenv("TRIAGE_HOME", str(tmp_path))
    result = CliRunner().invoke(cli, ["serve", "--port", "0"])
    assert result.exit_code == 2
    assert "critical > high > normal" in result.output and str(bad) in result.output


def test_crisis_config_is_validated():
    with pytest.raises(ValueError, match="unknown scope type"):
        CrisisConfig(scopes=["post", "planet"])
    assert CrisisConfig(min_count=3).min_for("brand:x") == 3
