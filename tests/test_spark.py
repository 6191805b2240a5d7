"""`triage score-spark`: the records of `triage score` from a real local Spark, bad rows named, resumable."""

from __future__ import annotations

import csv
import glob
import json
import random
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from models.records import Problem
from service import spark as spark_batch
from service.batch import score_file
from service.policy import DEFAULT_POLICY, load_policy_set
from service.scorer import Scorer
from tests.conftest import SEED, read_jsonl, read_scored, write_comments
from triage.cli import app

pytestmark = pytest.mark.spark

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)

GOOD: list[dict[str, Any]] = [
    {"id": "s1", "text": "Gdzie jest moja paczka? Czekam już dwa tygodnie!", "is_paid": True, "ad_id": "ad-1"},
    {"id": "s2", "text": "Дякую, все прийшло вчасно 😊", "author": {"is_customer": True, "followers": 50}},
    {"id": "s3", "text": "Wann kommt die Lieferung?", "channel": "dm", "created_at": "2026-11-22T10:00:00Z"},
    {"id": "s4", "text": "You are all idiots", "parent_text": "Worst service ever"},
    {"id": "s5", "text": "Когда будет скидка на наушники?\nИ есть ли доставка в Казань?"},
    {"id": "s6", "text": "Super buty, ale czy są wodoodporne?", "created_at": "2026-11-22T11:30:00Z"},
]
BAD: list[dict[str, Any]] = [
    {"id": "b1", "text": ""},  # text: empty
    {"id": "b2", "text": "fax me", "channel": "fax"},  # channel: not allowed
    {"id": "s1", "text": "the same id again"},  # id: duplicate
]


@pytest.fixture(scope="session")
def spark():
    if shutil.which("java") is None:
        pytest.skip("Spark needs Java 17 or newer on the PATH")
    session = spark_batch.build_session("local[2]", app_name="comment-triage-tests")
    session.conf.set("spark.sql.shuffle.partitions", "4")
    yield session
    session.stop()


@pytest.fixture()
def scorer(predictor):
    return Scorer(predictor, load_policy_set(DEFAULT_POLICY))


def read_dataset(folder: Path, fmt: str) -> list[dict[str, Any]]:
    files = sorted(glob.glob(str(folder / "part-*")))
    if fmt == "jsonl":
        return [json.loads(line) for f in files for line in Path(f).read_text(encoding="utf-8").splitlines()]
    if fmt == "csv":
        rows: list[dict[str, Any]] = []
        for f in files:
            with open(f, encoding="utf-8", newline="") as handle:
                rows.extend(csv.DictReader(handle))
        return rows
    return pq.read_table(folder).to_pylist()


@pytest.mark.parametrize(("in_fmt", "out_fmt"), [("jsonl", "parquet"), ("csv", "csv"), ("parquet", "jsonl")])
def test_spark_writes_the_records_and_reports_the_rows_of_triage_score(
    spark, registry, scorer, tmp_path, in_fmt, out_fmt
):
    source = tmp_path / f"in.{in_fmt}"
    rows = GOOD[:3] + BAD[:2] + GOOD[3:] + BAD[2:]  # s5 spans two lines in a CSV file
    write_comments(source, rows)
    one_machine = tmp_path / f"file.{out_fmt}"
    score_file(source, one_machine, scorer, chunk_size=4, progress=False, now=NOW)
    target = tmp_path / f"out.{out_fmt}"
    report = spark_batch.score_spark(
        spark, str(source), str(target), "models:/comment-triage@champion", None, slices=3, now=NOW
    )
    expected = read_scored(one_machine)
    assert [r["id"] for r in expected] == ["s1", "s2", "s3", "s4", "s5", "s6"]
    assert read_dataset(target, out_fmt) == expected  # the same records, in input order
    assert (report.scored, report.invalid, report.resumed_slices) == (6, 3, 0)
    file_errors = read_scored(tmp_path / f"file.{out_fmt}.errors.jsonl")
    spark_errors = read_dataset(Path(f"{target}.errors"), "jsonl")
    assert [(e["file"], e["line"], e["field"]) for e in spark_errors] == [
        (e["file"], e["line"], e["field"]) for e in file_errors
    ]
    assert [e["field"] for e in spark_errors] == ["text", "channel", "id"]
    header, second_line_of_s5 = (1, 1) if in_fmt == "csv" else (0, 0)
    assert spark_errors[-1]["line"] == 9 + header + second_line_of_s5
    assert f"first on line {1 + header}" in spark_errors[-1]["message"]
    assert not Path(f"{target}.parts").exists()


def test_a_folder_of_part_files_is_numbered_per_file(spark, registry, tmp_path):
    folder = tmp_path / "campaign"
    folder.mkdir()
    write_comments(folder / "part-a.jsonl", GOOD[:3])
    (folder / "part-b.jsonl").write_text(
        "\n".join([json.dumps(GOOD[3]), "", "{broken", json.dumps({"id": "s2", "text": "again"})]) + "\n",
        encoding="utf-8",
    )
    target = tmp_path / "out"
    report = spark_batch.score_spark(
        spark, str(folder), str(target), "models:/comment-triage@champion", None, output_format="jsonl", now=NOW
    )
    assert sorted(r["id"] for r in read_dataset(target, "jsonl")) == ["s1", "s2", "s3", "s4"]
    errors = read_dataset(Path(f"{target}.errors"), "jsonl")
    assert [(Path(e["file"]).name, e["line"], e["field"]) for e in errors] == [
        ("part-b.jsonl", 3, "json"),  # line 2 is blank: skipped, and counted
        ("part-b.jsonl", 4, "id"),
    ]
    assert errors[1]["message"] == f"duplicate id 's2' (first on {folder / 'part-a.jsonl'}:2)"
    assert report.problems[0] == Problem(errors[0]["file"], 3, "json", errors[0]["message"])


def test_lines_are_counted_across_the_partitions_of_one_large_file(spark, registry, tmp_path):
    source = tmp_path / "big.jsonl"
    lines = []
    for i in range(1, 301):
        if i % 37 == 0:
            lines.append("{broken")
        elif i % 53 == 0:
            lines.append(json.dumps({"id": f"r{i}", "text": " "}))
        else:
            lines.append(json.dumps({**GOOD[i % len(GOOD)], "id": f"r{i}"}, ensure_ascii=False))
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    spark.conf.set("spark.sql.files.maxPartitionBytes", "4096")  # Spark splits the file by bytes
    try:
        assert spark.read.text(str(source)).rdd.getNumPartitions() > 5
        target = tmp_path / "out.jsonl"
        report = spark_batch.score_spark(
            spark, str(source), str(target), "models:/comment-triage@champion", None, slices=2, now=NOW
        )
    finally:
        spark.conf.unset("spark.sql.files.maxPartitionBytes")
    bad = sorted([i for i in range(1, 301) if i % 37 == 0] + [i for i in range(1, 301) if i % 53 == 0 and i % 37])
    assert [(e["line"], e["field"]) for e in read_dataset(Path(f"{target}.errors"), "jsonl")] == [
        (i, "json" if i % 37 == 0 else "text") for i in bad
    ]
    assert [r["id"] for r in read_dataset(target, "jsonl")] == [f"r{i}" for i in range(1, 301) if i not in bad]
    assert report.scored == 300 - len(bad)


def spark_and_file(spark, scorer, source: Path, tmp_path: Path, name: str, **options):
    """The records and reported rows of score-spark and of triage score on one input file."""
    target = tmp_path / f"{name}-spark.jsonl"
    spark_batch.score_spark(
        spark, str(source), str(target), "models:/comment-triage@champion", None, now=NOW, **options
    )
    one = tmp_path / f"{name}-file.jsonl"
    score_file(source, one, scorer, progress=False, now=NOW)
    errors = Path(f"{one}.errors.jsonl")
    spark_errors = read_dataset(Path(f"{target}.errors"), "jsonl")
    assert [(e["line"], e["field"], e["message"]) for e in spark_errors] == [
        (e["line"], e["field"], e["message"]) for e in (read_scored(errors) if errors.exists() else [])
    ]
    assert read_dataset(target, "jsonl") == read_scored(one)
    return read_scored(one), spark_errors


def test_what_sparks_own_readers_would_get_wrong_is_read_as_triage_score_reads_it(spark, registry, scorer, tmp_path):
    # JSONL: a bad byte is that row's problem, not the job's; CRLF endings and a blank line count as lines
    source = tmp_path / "bytes.jsonl"
    good = [json.dumps(r, ensure_ascii=False).encode() for r in GOOD[:3]]
    source.write_bytes(
        b"\r\n".join([good[0], b'{"id": "u1", "text": "bad \xff byte"}', b"", good[1], good[2]]) + b"\r\n"
    )
    records, errors = spark_and_file(spark, scorer, source, tmp_path, "bytes")
    assert [r["id"] for r in records] == ["s1", "s2", "s3"] and [(e["line"], e["field"]) for e in errors] == [
        (2, "encoding")
    ]
    # CSV: a quote that never closes costs its own row, not the rest of the file; blank lines count
    source = tmp_path / "quotes.csv"
    source.write_text('id,text\nq1,"never closed\nq2,second row\n\nq3,"third\nrow"\nq4,\n', encoding="utf-8")
    records, errors = spark_and_file(spark, scorer, source, tmp_path, "quotes")
    assert [r["id"] for r in records] == ["q2", "q3"]
    assert [(e["line"], e["field"]) for e in errors] == [(2, "csv"), (7, "text")]
    # Parquet: NaN is "not given" (no paid campaign), timestamps keep their microseconds
    source = tmp_path / "values.parquet"
    frame = pd.DataFrame(
        {
            "id": ["p1", "p2"],
            "text": ["Gdzie jest moja paczka?", "Danke!"],
            "campaign_id": [float("nan"), 7.0],
            "created_at": pd.to_datetime(["2026-11-22T10:00:30.123456Z", "2026-11-22T11:00:00Z"], format="ISO8601"),
        }
    )
    frame.to_parquet(source)
    records, errors = spark_and_file(spark, scorer, source, tmp_path, "values")
    assert (
        errors == [] and records[0]["respond_by"].startswith("2026-11-22T10:") and ".123456" in records[0]["respond_by"]
    )
    # A folder of CSV files whose columns come in another order: each file is read by its own header
    folder = tmp_path / "columns"
    folder.mkdir()
    (folder / "x.csv").write_text("id,text\nx1,Wann kommt die Lieferung?\n", encoding="utf-8")
    (folder / "y.csv").write_text("text,id\nDanke für alles!,y1\n", encoding="utf-8")
    target = tmp_path / "columns.jsonl"
    spark_batch.score_spark(spark, str(folder), str(target), "models:/comment-triage@champion", None, now=NOW)
    by_id = {r["id"]: r for r in read_dataset(target, "jsonl")}
    assert sorted(by_id) == ["x1", "y1"] and by_id["x1"]["questions"] == ["Wann kommt die Lieferung?"]


def test_a_second_run_in_the_same_session_serves_its_own_policy(spark, registry, tmp_path):
    source = tmp_path / "in.jsonl"
    write_comments(source, GOOD[:2])
    custom = tmp_path / "policy.yaml"
    custom.write_text(DEFAULT_POLICY.read_text(encoding="utf-8").replace("version: default/1", "version: acme/7", 1))
    uri = "models:/comment-triage@champion"
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    spark_batch.score_spark(spark, str(source), str(first), uri, None, now=NOW)
    spark_batch.score_spark(spark, str(source), str(second), uri, str(custom), now=NOW)
    assert {r["policy_version"] for r in read_dataset(first, "jsonl")} == {"default/1"}
    assert {r["policy_version"] for r in read_dataset(second, "jsonl")} == {"acme/7"}


class Killed(BaseException):
    """The driver dying between two slices."""


def test_a_run_that_dies_resumes_at_the_first_slice_not_done(spark, registry, tmp_path):
    source = tmp_path / "in.jsonl"
    rows = [{**GOOD[i % len(GOOD)], "id": f"c{i}"} for i in range(40)]
    write_comments(source, rows)
    target = tmp_path / "out.jsonl"
    uri = "models:/comment-triage@champion"

    def die_after_two(done: int, total: int) -> None:
        if done == 2:
            raise Killed()

    with pytest.raises(Killed):
        spark_batch.score_spark(spark, str(source), str(target), uri, None, slices=4, now=NOW, on_slice=die_after_two)
    parts = Path(f"{target}.parts")
    assert sorted(p.name for p in parts.glob("slice-*")) == ["slice-00000", "slice-00001"] and not target.exists()
    seen: list[tuple[int, int]] = []
    later = datetime(2026, 11, 23, tzinfo=UTC)  # a resumed run keeps the first run's clock
    report = spark_batch.score_spark(
        spark, str(source), str(target), uri, None, slices=4, now=later, on_slice=lambda d, t: seen.append((d, t))
    )
    assert (report.resumed_slices, report.scored, report.invalid) == (2, 40, 0)
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]
    resumed = read_dataset(target, "jsonl")
    assert [r["id"] for r in resumed] == [r["id"] for r in rows]
    in_one_go = tmp_path / "again.jsonl"
    spark_batch.score_spark(spark, str(source), str(in_one_go), uri, None, slices=1, now=NOW)
    assert read_dataset(in_one_go, "jsonl") == resumed
    # A partial run with another slice count is another run: refused until restart.
    with pytest.raises(Killed):
        spark_batch.score_spark(spark, str(source), str(target), uri, None, slices=4, now=NOW, on_slice=die_after_two)
    with pytest.raises(spark_batch.SparkBatchError, match="another slice count; rerun with --restart"):
        spark_batch.score_spark(spark, str(source), str(target), uri, None, slices=2, now=NOW)
    with pytest.raises(spark_batch.SparkBatchError, match=r"another crisis setting \(--crisis\)"):  # and one without
        spark_batch.score_spark(spark, str(source), str(target), uri, None, slices=4, now=NOW, crisis=True)
    manifest = next(Path(f"{target}.parts/manifest").glob("part-*"))  # a manifest from before crisis replays
    written = json.loads(manifest.read_text(encoding="utf-8"))
    manifest.write_text(json.dumps({k: v for k, v in written.items() if k != "crisis"}), encoding="utf-8")
    (manifest.parent / f".{manifest.name}.crc").unlink(missing_ok=True)  # Hadoop's checksum of the old text
    with source.open("a", encoding="utf-8") as handle:  # and so is the input once it has changed
        handle.write(json.dumps({"id": "late", "text": "Danke!"}) + "\n")
    with pytest.raises(spark_batch.SparkBatchError, match=r"another input \(its files, sizes or modification times\);"):
        spark_batch.score_spark(spark, str(source), str(target), uri, None, slices=4, now=NOW)
    assert spark_batch.score_spark(spark, str(source), str(target), uri, None, slices=2, restart=True).scored == 41


def test_a_comment_that_fails_to_score_is_reported_and_its_neighbours_kept(registry, predictor):
    """The worker step on its own (no Spark): the model failing on one comment costs that row only."""

    class Fragile:
        def __init__(self, real: Scorer):
            self.real = real

        def score_sync(self, comments, now=None, failed=None):
            if any(c.id == "x2" for c in comments):
                raise OverflowError("date value out of range")
            return self.real.score_sync(comments, now, failed)

    key = ("fragile-model", "comment-triage/test")
    policy_key = spark_batch.hashlib.sha256(b"policy.yaml\n{}").hexdigest()
    spark_batch._WORKER_SCORERS[(*key, policy_key, False)] = Fragile(Scorer(predictor, load_policy_set(DEFAULT_POLICY)))
    try:
        from service.schemas import CommentIn

        batch = pd.DataFrame(
            {
                "file": ["f", "f", "f", "f"],
                "line": [1, 2, 3, 4],
                "comment": [CommentIn(id=f"x{i}", text="Wann kommt die Lieferung?").model_dump_json() for i in (1, 2)]
                + [None, CommentIn(id="x4", text="Danke!").model_dump_json()],
                "field": [None, None, "text", None],
                "message": [None, None, "String should have at least 1 character", None],
            }
        )
        run = spark_batch._score_rows(*key, "{}", "policy.yaml", NOW)
        out = pd.concat(list(run(iter([batch]))))
    finally:
        spark_batch._WORKER_SCORERS.clear()
    scored = out[out["record"].notna()]
    assert [json.loads(r)["id"] for r in scored["record"]] == ["x1", "x4"]
    assert list(scored["line"]) == [1, 4]
    failed = out[out["record"].isna()].sort_values("line")
    assert list(zip(failed["line"], failed["field"], strict=True)) == [(2, "row"), (3, "text")]
    assert "OverflowError" in failed["message"].iloc[0]


def test_a_task_fails_only_when_every_one_of_many_comments_fails(registry, predictor):
    """One comment alone failing is that row's problem (a resume would meet it again); ten that all fail are a
    broken model: the task fails, and with it the job, before a slice of errors is committed."""
    from service.schemas import CommentIn

    class Broken:
        def score_sync(self, comments, now=None, failed=None):
            raise MemoryError("no room")

    def batch_of(n: int) -> pd.DataFrame:
        comments = [CommentIn(id=f"y{i}", text="Danke!").model_dump_json() for i in range(n)]
        return pd.DataFrame(
            {"file": ["f"] * n, "line": range(1, n + 1), "comment": comments, "field": None, "message": None}
        )

    key = ("broken-model", "comment-triage/test")
    try:
        for name in ("{}", "other"):  # the cache is keyed by policy too
            policy_key = spark_batch.hashlib.sha256(f"p\n{name}".encode()).hexdigest()
            spark_batch._WORKER_SCORERS[(*key, policy_key, False)] = Broken()  # keyed by crisis recording too
        alone = pd.concat(list(spark_batch._score_rows(*key, "{}", "p", NOW)(iter([batch_of(1)]))))
        assert list(alone["field"]) == ["row"] and "MemoryError: no room" in alone["message"].iloc[0]
        with pytest.raises(RuntimeError, match="every one of 12 comments failed to score: MemoryError"):
            list(spark_batch._score_rows(*key, "other", "p", NOW)(iter([batch_of(12)])))
    finally:
        spark_batch._WORKER_SCORERS.clear()


def test_crisis_replay_decides_as_triage_score_does_over_the_comments_in_time_order(
    spark, registry, predictor, tmp_path
):
    """A calm morning on two posts, then a burst of complaints under one ad's post: ``crisis`` replays the service's
    detector per scope in time order, so a file in any order gets the records ``triage score --crisis`` gives the
    same comments in time order (the burst and a good comment during it escalated, the calm ones not), and the
    crises found are written beside the output."""
    from service.crisis import build_detector

    seed = read_jsonl(SEED)
    bad = [r["text"] for r in seed if r["lang"] == "pl" and r["complaint"] and r["sentiment"] == "negative"][:8]
    calm = [r["text"] for r in seed if r["kind"] == "praise" and r["lang"] == "pl"][:6]
    start = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
    rows: list[dict[str, Any]] = []
    for i, text in enumerate(calm):
        at = start + timedelta(minutes=20 * i)
        rows.append({"id": f"calm{i}", "text": text, "post_id": f"p{i % 2}", "brand_id": "acme", "created_at": at})
    burst = start + timedelta(hours=2, minutes=1)
    for i, text in enumerate(bad):
        at = burst + timedelta(seconds=61 * i)
        rows.append({"id": f"bad{i}", "text": text, "post_id": "p9", "ad_id": "ad-9", "is_paid": True})
        rows[-1]["created_at"] = at
    rows.append({"id": "during", "text": calm[0], "post_id": "p9", "created_at": burst + timedelta(minutes=10)})
    for row in rows:
        row["created_at"] = row["created_at"].isoformat()
    in_time, shuffled = tmp_path / "in_time.jsonl", tmp_path / "shuffled.jsonl"
    write_comments(in_time, rows)
    order = random.Random(7).sample(rows, len(rows))
    write_comments(shuffled, order)
    policies = load_policy_set(DEFAULT_POLICY)
    one_machine = Scorer(predictor, policies, crisis=build_detector(policies.base.crisis))
    score_file(in_time, tmp_path / "one.jsonl", one_machine, progress=False, now=NOW)
    target = tmp_path / "out.jsonl"
    report = spark_batch.score_spark(
        spark, str(shuffled), str(target), "models:/comment-triage@champion", None, slices=2, now=NOW, crisis=True
    )
    expected = {r["id"]: r for r in read_scored(tmp_path / "one.jsonl")}
    got = read_dataset(target, "jsonl")
    assert [r["id"] for r in got] == [r["id"] for r in order]  # input order
    assert {r["id"]: r for r in got} == expected
    escalated = sorted(r["id"] for r in got if r["action"] == "escalate_crisis")
    assert "during" in escalated and not [i for i in escalated if i.startswith("calm")]
    assert len(escalated) == report.escalated >= 4
    assert any("crisis" in reason for r in got if r["id"] == "during" for reason in r["reasons"])
    alerts = read_dataset(Path(f"{target}.crises"), "jsonl")
    assert {a["scope"] for a in alerts} == {"post:p9", "ad:ad-9"} and report.crises == 2
    assert all(a["count"] >= 5 for a in alerts)
    plain = spark_batch.score_spark(
        spark, str(shuffled), str(target), "models:/comment-triage@champion", None, slices=2, now=NOW
    )
    assert plain.crises_output is None and not Path(f"{target}.crises").exists()
    assert not [r for r in read_dataset(target, "jsonl") if r["action"] == "escalate_crisis"]


def test_the_replay_reads_any_clock_and_keeps_every_crisis():
    """The replay on its own (no Spark) against the service's detector over the same comments in time order: clocks
    before 1970 to the microsecond and in year 1 are read exactly, in any UTC offset, and every crisis is kept however
    few ended ones the policy's ``history`` lets the service list (2 here, 6 crises)."""
    from datetime import timezone

    from service.crisis import CrisisConfig, CrisisDetector, MemoryState
    from service.predictor import Prediction
    from service.schemas import CommentIn

    def pred(bad: bool) -> Prediction:
        return Prediction("pl", "negative" if bad else "positive", False, bad, False,
                          {"negative": 0.9 if bad else 0.1, "neutral": 0.05, "positive": 0.05 if bad else 0.85},
                          0.01, 0.9 if bad else 0.1, 0.1)  # fmt: skip

    config = CrisisConfig(window_minutes=5, baseline_minutes=10, min_count=3, history=2)
    plus_one = timezone(timedelta(hours=1))
    comments: list[tuple[CommentIn, bool]] = []
    starts = [datetime(1969, 12, 31, 22, tzinfo=UTC) + timedelta(minutes=30 * k) for k in range(5)]
    starts.append(datetime(1, 1, 1, 1, tzinfo=plus_one))  # 0001-01-01T01:00+01:00: midnight UTC of year 1
    for k, start in enumerate(starts):
        burst = [start, start + timedelta(seconds=60.5), start + timedelta(seconds=119, microseconds=250_001)]
        for j, at in enumerate(burst):
            comments.append((CommentIn(id=f"b{k}-{j}", text="x", post_id="p", created_at=at), True))
        for name, minutes in (("during", 3), ("after", 25)):  # a calm comment in the crisis, one after it ended
            at = start + timedelta(minutes=minutes)
            comments.append((CommentIn(id=f"{name}{k}", text="x", post_id="p", created_at=at), False))
    service = CrisisDetector(config, MemoryState())
    expected = {}
    for comment, bad in sorted(comments, key=lambda c: c[0].created_at):
        crisis = service.observe(comment, pred(bad), comment.created_at)
        if crisis is not None:
            expected[comment.id] = crisis.description
    assert {"during0", "during4", "during5"} <= set(expected) and not [i for i in expected if i.startswith("after")]

    recorder = spark_batch._CrisisSignals(config)
    rows = []
    for line, (comment, bad) in enumerate(random.Random(5).sample(comments, len(comments)), start=1):
        recorder.observe(comment, pred(bad), comment.created_at)
        rows.append({"file": "f", "line": line, "signal": recorder.signal(comment.id), "id": comment.id})
    ids = {r["line"]: r["id"] for r in rows}
    frame = pd.DataFrame(rows)[["file", "line", "signal"]]
    exploded = pd.concat(list(spark_batch._explode_signals(config.scopes)(iter([frame]))))
    ordered = exploded.sort_values(["scope", "at", "file", "line"])  # as the job sorts within its partitions
    halves = [ordered.iloc[:7], ordered.iloc[7:]]  # a scope's rows may come in several batches
    out = pd.concat(list(spark_batch._replay(config.model_dump_json())(iter(halves))))
    marks = out[out["kind"] == "mark"]
    assert {ids[int(line)]: d for line, d in zip(marks["line"], marks["description"], strict=True)} == expected
    alerts = [json.loads(a) for a in out[out["kind"] == "alert"]["alert"]]
    listed = [a["started_at"] for group in service.state.alerts() for a in group]
    assert len(alerts) == 6 and len(listed) == 2  # every crisis ended; the service lists the last 2, the replay all
    assert set(listed) < {a["started_at"] for a in alerts}
    assert sorted(a["started_at"] for a in alerts)[:2] == ["0001-01-01T01:01:59.250001+01:00",
                                                            "1969-12-31T22:01:59.250001+00:00"]  # fmt: skip


def test_a_comment_failing_in_its_second_decision_keeps_its_first_record(registry, predictor):
    """The crisis replay's second decision on its own: the model failing on one comment costs that comment its
    escalation only (its first record is kept, nothing is lost), and the others are escalated."""
    from service.schemas import CommentIn

    class Fragile:
        version = predictor.version

        def predict(self, texts, langs):
            if any("boom" in t for t in texts):
                raise OverflowError("boom")
            return predictor.predict(texts, langs)

    policies = load_policy_set(DEFAULT_POLICY)
    key = ("fragile-model", "comment-triage/test")
    policy_key = spark_batch.hashlib.sha256(b"policy.yaml\n{}").hexdigest()
    spark_batch._WORKER_SCORERS[(*key, policy_key, True)] = Scorer(Fragile(), policies)  # type: ignore[arg-type]
    try:
        comments = [CommentIn(id="ok", text="Paczka nie doszła"), CommentIn(id="bad", text="boom")]
        first = [Scorer(predictor, policies).score_sync([c], now=NOW)[0].model_dump_json() for c in comments[:1]]
        batch = pd.DataFrame(
            {
                "file": ["f", "f"],
                "line": [1, 2],
                "comment": [c.model_dump_json() for c in comments],
                "record": [first[0], '{"id": "bad", "first": true}'],
                "scope": ["post p9", "post p9"],
                "description": ["5 negative, complaint or toxic comments in the last 15 minutes against 1.0"] * 2,
            }
        )
        out = pd.concat(list(spark_batch._decide_again(*key, "{}", "policy.yaml", NOW)(iter([batch]))))
    finally:
        spark_batch._WORKER_SCORERS.clear()
    records = [json.loads(r) for r in out["record"]]
    assert records[0]["id"] == "ok" and records[0]["action"] == "escalate_crisis"
    assert records[1] == {"id": "bad", "first": True}


def test_score_spark_cli(spark, registry, tmp_path, monkeypatch):
    monkeypatch.setenv("TRIAGE_HOME", str(registry["home"]))
    runner = CliRunner()
    source = tmp_path / "in.jsonl"
    write_comments(source, GOOD + BAD[:1])
    target = tmp_path / "out.parquet"
    result = runner.invoke(app, ["score-spark", str(source), str(target), "--slices", "2"])
    assert result.exit_code == 0, result.output
    assert "scored 6 comments" in result.output and "1 invalid rows reported" in result.output
    assert f"{source}:7: text:" in result.output and "slice 2 of 2 done" in result.output
    assert len(pq.read_table(target)) == 6
    assert spark.range(1).count() == 1  # the session the command found running is left running
    no_format = runner.invoke(app, ["score-spark", str(source), str(tmp_path / "folder")])
    assert no_format.exit_code == 2 and "give --output-format" in no_format.output
    missing = runner.invoke(app, ["score-spark", str(tmp_path / "nope.jsonl"), str(tmp_path / "o.jsonl")])
    assert missing.exit_code == 2 and "the Spark job failed: [PATH_NOT_FOUND]" in missing.output
    assert "nope.jsonl" in missing.output
    no_model = runner.invoke(app, ["score-spark", str(source), str(tmp_path / "o.jsonl"), "--model", "models:/nope/3"])
    assert no_model.exit_code == 2 and "cannot load model models:/nope/3" in no_model.output
    only_bad = tmp_path / "bad.csv"
    only_bad.write_text('id,text\nq1,\n"q2,"unclosed\n', encoding="utf-8")
    nothing = runner.invoke(app, ["score-spark", str(only_bad), str(tmp_path / "none.jsonl")])
    assert nothing.exit_code == 0, nothing.output
    assert "scored 0 comments" in nothing.output and f"{only_bad}:2: text:" in nothing.output
    assert read_dataset(tmp_path / "none.jsonl", "jsonl") == []
    replayed = runner.invoke(app, ["score-spark", str(source), str(tmp_path / "c.jsonl"), "--crisis"])
    assert replayed.exit_code == 0 and "crisis replay: 0 crises in" in replayed.output, replayed.output
    quiet = tmp_path / "quiet.yaml"
    policy = yaml.safe_load(DEFAULT_POLICY.read_text(encoding="utf-8"))
    policy["crisis"]["enabled"] = False
    quiet.write_text(yaml.safe_dump(policy), encoding="utf-8")
    monkeypatch.setenv("TRIAGE_POLICY_FILE", str(quiet))
    off = runner.invoke(app, ["score-spark", str(source), str(tmp_path / "q.jsonl"), "--crisis"])
    assert off.exit_code == 0 and "crisis replay: not run, the policy turns crisis detection off" in off.output
    monkeypatch.delenv("TRIAGE_POLICY_FILE")
    same = runner.invoke(app, ["score-spark", str(source), str(source)])
    assert same.exit_code == 2 and "would overwrite the input" in same.output
