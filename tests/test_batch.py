"""`triage score` round trips on JSONL, CSV and Parquet, bad rows reported, interrupted runs resumed."""

from __future__ import annotations

import json
from typing import Any

import pytest
from typer.testing import CliRunner

from service import batch
from service.predictor import load_failure
from tests.conftest import read_scored, write_comments
from triage.cli import app

COMMENTS: list[dict[str, Any]] = [
    {"id": "a1", "text": "Gdzie jest moja paczka? Czekam już dwa tygodnie!", "is_paid": True, "ad_id": "ad-1"},
    {"id": "a2", "text": "Дякую, все прийшло вчасно 😊", "author": {"is_customer": True, "followers": 50}},
    {"id": "a3", "text": "Wann kommt die Lieferung?", "channel": "dm", "created_at": "2026-11-22T10:00:00Z"},
    {"id": "a4", "text": "You are all idiots", "parent_text": "Worst service ever"},
    {"id": "a5", "text": "Когда будет скидка на наушники?"},
]


@pytest.fixture()
def runner(registry, monkeypatch):
    monkeypatch.setenv("TRIAGE_HOME", str(registry["home"]))
    return CliRunner()


@pytest.mark.parametrize("in_fmt", ["jsonl", "csv", "parquet"])
@pytest.mark.parametrize("out_fmt", ["jsonl", "csv", "parquet"])
def test_round_trip_every_format(runner, tmp_path, in_fmt, out_fmt, registry):
    source = tmp_path / f"in.{in_fmt}"
    target = tmp_path / f"out.{out_fmt}"
    write_comments(source, COMMENTS)
    result = runner.invoke(app, ["score", str(source), str(target), "--chunk-size", "2", "--no-progress"])
    assert result.exit_code == 0, result.output
    rows = read_scored(target)
    assert [r["id"] for r in rows] == [c["id"] for c in COMMENTS]
    assert not (tmp_path / f"out.{out_fmt}.parts").exists()
    first = rows[0]
    if out_fmt == "csv":
        assert float(first["scores.complaint"]) >= 0 and json.loads(first["questions"]) == ["Gdzie jest moja paczka?"]
    else:
        assert first["scores"]["sentiment"]["negative"] >= 0 and first["questions"] == ["Gdzie jest moja paczka?"]
        assert first["model_version"] == f"comment-triage/{registry['version']}"
    assert {r["language"] for r in rows} == {"pl", "uk", "de", "en", "ru"}
    assert rows[2]["respond_by"].startswith("2026-11-22T1")


def test_bad_rows_are_reported_with_line_and_field_not_dropped(runner, tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text(
        json.dumps(COMMENTS[0])
        + "\n"
        + json.dumps({"id": "b2", "text": ""})
        + "\n"
        + "{broken\n"
        + json.dumps({"id": "b4", "text": "ok", "channel": "fax"})
        + "\n"
        + json.dumps(COMMENTS[1])
        + "\n",
        encoding="utf-8",
    )
    target = tmp_path / "out.jsonl"
    result = runner.invoke(app, ["score", str(source), str(target), "--no-progress"])
    assert result.exit_code == 0
    assert [r["id"] for r in read_scored(target)] == ["a1", "a2"]
    errors = [json.loads(line) for line in (tmp_path / "out.jsonl.errors.jsonl").read_text().splitlines()]
    assert [(e["line"], e["field"]) for e in errors] == [(2, "text"), (3, "json"), (4, "channel")]
    assert "3 invalid rows reported" in result.output and f"{source}:2: text:" in result.output


class Killed(BaseException):
    """The process dying mid-run (a kill, an interrupt): nothing in the job catches it."""


def numbered(n: int) -> list[dict]:
    return [{**COMMENTS[i % len(COMMENTS)], "id": f"c{i}"} for i in range(n)]


def test_an_interrupted_run_resumes_where_it_stopped(runner, tmp_path, monkeypatch):
    source = tmp_path / "in.jsonl"
    rows = numbered(20)
    write_comments(source, rows)
    target = tmp_path / "out.parquet"
    calls = {"n": 0}
    real = batch.Scorer.score_sync

    def dying(self, comments, now=None, failed=None):
        calls["n"] += 1
        if calls["n"] == 3:
            raise Killed()
        return real(self, comments, now, failed)

    monkeypatch.setattr(batch.Scorer, "score_sync", dying)
    with pytest.raises(Killed):
        runner.invoke(app, ["score", str(source), str(target), "--chunk-size", "5", "--no-progress"])
    assert not target.exists()
    assert len(list((tmp_path / "out.parquet.parts").glob("part-*.jsonl"))) == 2
    monkeypatch.setattr(batch.Scorer, "score_sync", real)
    result = runner.invoke(app, ["score", str(source), str(target), "--chunk-size", "5", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "resumed: 2 of 4 chunks" in result.output
    assert [r["id"] for r in read_scored(target)] == [r["id"] for r in rows]
    # A different chunk size is another run: refused until --restart.
    write_comments(source, COMMENTS)
    (tmp_path / "out.parquet.parts").mkdir()
    (tmp_path / "out.parquet.parts" / "manifest.json").write_text("{}")
    refused = runner.invoke(app, ["score", str(source), str(target), "--no-progress"])
    assert refused.exit_code == 2 and "--restart" in refused.output
    assert runner.invoke(app, ["score", str(source), str(target), "--restart", "--no-progress"]).exit_code == 0


def test_a_row_that_cannot_be_scored_is_reported_and_the_job_goes_on(runner, tmp_path, monkeypatch):
    source = tmp_path / "in.jsonl"
    rows = numbered(8)
    write_comments(source, rows)
    real = batch.Scorer.score_sync

    def fragile(self, comments, now=None, failed=None):
        if any(c.id == "c5" for c in comments):  # the model fails the chunk holding c5
            raise OverflowError("date value out of range")
        return real(self, comments, now, failed)

    monkeypatch.setattr(batch.Scorer, "score_sync", fragile)
    target = tmp_path / "out.jsonl"
    result = runner.invoke(app, ["score", str(source), str(target), "--chunk-size", "4", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert [r["id"] for r in read_scored(target)] == [r["id"] for r in rows if r["id"] != "c5"]
    errors = [json.loads(line) for line in (tmp_path / "out.jsonl.errors.jsonl").read_text().splitlines()]
    assert [(e["line"], e["field"]) for e in errors] == [(6, "row")] and "OverflowError" in errors[0]["message"]


def test_duplicate_ids_and_odd_id_or_author_types_are_reported(runner, tmp_path):
    source = tmp_path / "in.jsonl"
    lines = [
        {"id": "d1", "text": "Gdzie jest paczka?"},
        {"id": "d1", "text": "the same id again"},
        {"id": True, "text": "a boolean id"},
        {"id": {"a": 1}, "text": "an object id"},
        {"id": 7, "text": "an integer id is fine"},
        {"id": "d6", "text": "author is no object", "author": 123, "author_followers": 5},
    ]
    source.write_text("".join(json.dumps(r) + "\n" for r in lines), encoding="utf-8")
    target = tmp_path / "out.jsonl"
    result = runner.invoke(app, ["score", str(source), str(target), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert [r["id"] for r in read_scored(target)] == ["d1", "7"]
    errors = [json.loads(line) for line in (tmp_path / "out.jsonl.errors.jsonl").read_text().splitlines()]
    assert [(e["line"], e["field"]) for e in errors] == [(2, "id"), (3, "id"), (4, "id"), (6, "author")]
    assert "first on line 1" in errors[0]["message"]


def test_cli_errors_are_clear(runner, tmp_path, monkeypatch):
    missing = runner.invoke(app, ["score", str(tmp_path / "nope.jsonl"), str(tmp_path / "o.jsonl")])
    assert missing.exit_code == 2 and "no such file" in missing.output
    (tmp_path / "in.txt").write_text("x")
    bad_fmt = runner.invoke(app, ["score", str(tmp_path / "in.txt"), str(tmp_path / "o.jsonl")])
    assert bad_fmt.exit_code == 2 and "unsupported input format .txt" in bad_fmt.output
    no_model = runner.invoke(
        app, ["score", str(tmp_path / "in.txt"), str(tmp_path / "o.jsonl"), "--model", "models:/nope@champion"]
    )
    assert no_model.exit_code == 2 and "cannot load model models:/nope@champion" in no_model.output
    # an exception with no message still makes a one-line error, not an IndexError
    assert load_failure("models:/x/1", OSError()) == "cannot load model models:/x/1: OSError: "
    monkeypatch.setenv("TRIAGE_MAX_TEXT_CHARS", "20000")
    bad_env = runner.invoke(app, ["score", str(tmp_path / "in.txt"), str(tmp_path / "o.jsonl")])
    assert bad_env.exit_code == 2 and "bad configuration" in bad_env.output and "max_text_chars" in bad_env.output


def test_promote_cli_takes_its_tolerances_and_names_what_it_refuses(runner, registry):
    from mlflow import MlflowClient

    from training.registry import champion_version

    champion = champion_version(MlflowClient())
    same = runner.invoke(app, ["promote", champion, "--tolerance", "0.02", "--language-tolerance", "0.1"])
    assert same.exit_code == 0 and f"champion: comment-triage version {champion} (was {champion})" in same.output
    loose = runner.invoke(app, ["promote", champion, "--language-tolerance", "2"])
    assert loose.exit_code == 2 and "--language-tolerance" in loose.output
    missing = runner.invoke(app, ["promote", "999"])
    assert missing.exit_code == 1 and "has no version 999" in missing.output


def test_train_cli_reports_data_errors_with_file_and_line(runner, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "1", "text": "hi", "toxic": 3}\n')
    result = runner.invoke(app, ["train", "--data", str(bad)])
    assert result.exit_code == 2
    assert f"{bad}:1: toxic: unknown label '3'" in result.output


def test_train_cli_refuses_a_deleted_experiment_before_training(runner, tmp_path, registry, monkeypatch):
    import mlflow

    from models.store import configure_mlflow

    configure_mlflow(registry["home"])
    mlflow.delete_experiment(mlflow.create_experiment(f"gone-{tmp_path.name}"))
    config = tmp_path / "c.yaml"
    config.write_text(f"experiment: gone-{tmp_path.name}\n")
    from training import train as train_module

    def no_training(*args, **kwargs):
        raise AssertionError("trained before the experiment was checked")

    monkeypatch.setattr(train_module, "fit_tfidf_family", no_training)
    result = runner.invoke(app, ["train", "--data", str(registry["settings"].seed_data), "--config", str(config)])
    assert result.exit_code == 2 and "is deleted: restore it" in result.output, result.output


def test_a_comment_failing_after_the_model_is_reported_and_seen_once_by_crisis(predictor, policy, monkeypatch):
    """A policy step that raises for one comment costs that comment only, and the crisis detector counts each
    comment of the chunk once (a whole-chunk retry would count the ones before it twice)."""
    from service import scorer as scorer_module
    from service.crisis import CrisisConfig, CrisisDetector, MemoryState
    from service.schemas import CommentIn

    comments = [CommentIn(id=x, text="Paczka nie doszła, skandal, oddajcie pieniądze", ad_id="ad-9") for x in "abcd"]

    def counted() -> tuple[list[str], list[int], int]:
        detector = CrisisDetector(CrisisConfig(), MemoryState())
        failed: list = []
        out = batch.Scorer(predictor, policy, crisis=detector).score_sync(comments, failed=failed)
        return [r.id for r in out], [i for i, _ in failed], sum(detector.state.buckets("ad:ad-9").values())

    real = scorer_module.decide
    _, _, seen = counted()
    assert seen > 0

    def flaky(comment, *args, **kwargs):
        if comment.id == "b":
            raise ValueError("boom")
        return real(comment, *args, **kwargs)

    monkeypatch.setattr(scorer_module, "decide", flaky)
    ids, failed, seen_with_failure = counted()
    assert ids == ["a", "c", "d"] and failed == [1] and seen_with_failure == seen


def test_a_chunk_where_every_comment_fails_stops_the_job_for_a_resume(runner, tmp_path, monkeypatch):
    from service import scorer as scorer_module

    def broken(*args, **kwargs):
        raise ConnectionError("redis is gone")

    monkeypatch.setattr(scorer_module, "decide", broken)
    source, target = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_comments(source, numbered(4))
    result = runner.invoke(app, ["score", str(source), str(target), "--no-progress"])
    assert result.exit_code != 0 and isinstance(result.exception, ConnectionError) and not target.exists()
