"""`triage score-spark`: the records of `triage score` from a real local Spark, bad rows named, resumable."""

from __future__ import annotations

import csv
import glob
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from models.records import Problem
from service import spark as spark_batch
from service.batch import score_file
from service.policy import DEFAULT_POLICY, load_policy_set
from service.scorer import Scorer
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


def write(path: Path, rows: list[dict[str, Any]]) -> None:
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    elif path.suffix == ".csv":
        flat = [{k: (json.dumps(v) if isinstance(v, dict) else v) for k, v in r.items()} for r in rows]
        pd.DataFrame(flat).to_csv(path, index=False)
    else:
        pd.DataFrame(rows).to_parquet(path)


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


def read_file(path: Path) -> list[dict[str, Any]]:
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    if path.suffix == ".csv":
        with path.open(encoding="utf-8", newline="") as handle:
            return list(csv.DictReader(handle))
    return pq.read_table(path).to_pylist()


def errors_of(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for f in sorted(glob.glob(str(folder / "part-*"))) for line in open(f, encoding="utf-8")]


@pytest.mark.parametrize(("in_fmt", "out_fmt"), [("jsonl", "parquet"), ("csv", "csv"), ("parquet", "jsonl")])
def test_spark_writes_the_records_and_reports_the_rows_of_triage_score(
    spark, registry, scorer, tmp_path, in_fmt, out_fmt
):
    source = tmp_path / f"in.{in_fmt}"
    rows = GOOD[:3] + BAD[:2] + GOOD[3:] + BAD[2:]  # s5 spans two lines in a CSV file
    write(source, rows)
    one_machine = tmp_path / f"file.{out_fmt}"
    score_file(source, one_machine, scorer, chunk_size=4, progress=False, now=NOW)
    target = tmp_path / f"out.{out_fmt}"
    report = spark_batch.score_spark(
        spark, str(source), str(target), "models:/comment-triage@champion", None, slices=3, now=NOW
    )
    expected = read_file(one_machine)
    assert [r["id"] for r in expected] == ["s1", "s2", "s3", "s4", "s5", "s6"]
    assert read_dataset(target, out_fmt) == expected  # the same records, in input order
    assert (report.scored, report.invalid, report.resumed_slices) == (6, 3, 0)
    file_errors = read_file(tmp_path / f"file.{out_fmt}.errors.jsonl")
    spark_errors = errors_of(Path(f"{target}.errors"))
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
    write(folder / "part-a.jsonl", GOOD[:3])
    (folder / "part-b.jsonl").write_text(
        "\n".join([json.dumps(GOOD[3]), "", "{broken", json.dumps({"id": "s2", "text": "again"})]) + "\n",
        encoding="utf-8",
    )
    target = tmp_path / "out"
    report = spark_batch.score_spark(
        spark, str(folder), str(target), "models:/comment-triage@champion", None, output_format="jsonl", now=NOW
    )
    assert sorted(r["id"] for r in read_dataset(target, "jsonl")) == ["s1", "s2", "s3", "s4"]
    errors = errors_of(Path(f"{target}.errors"))
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
    assert [(e["line"], e["field"]) for e in errors_of(Path(f"{target}.errors"))] == [
        (i, "json" if i % 37 == 0 else "text") for i in bad
    ]
    assert [r["id"] for r in read_dataset(target, "jsonl")] == [f"r{i}" for i in range(1, 301) if i not in bad]
    assert report.scored == 300 - len(bad)


class Killed(BaseException):
    """The driver dying between two slices."""


def test_a_run_that_dies_resumes_at_the_first_slice_not_done(spark, registry, tmp_path):
    source = tmp_path / "in.jsonl"
    rows = [{**GOOD[i % len(GOOD)], "id": f"c{i}"} for i in range(40)]
    write(source, rows)
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
    with pytest.raises(spark_batch.SparkBatchError, match="--restart"):
        spark_batch.score_spark(spark, str(source), str(target), uri, None, slices=2, now=NOW)
    with source.open("a", encoding="utf-8") as handle:  # and so is the input once it has changed
        handle.write(json.dumps({"id": "late", "text": "Danke!"}) + "\n")
    with pytest.raises(spark_batch.SparkBatchError, match="the input has changed"):
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
    spark_batch._WORKER_SCORERS[key] = Fragile(Scorer(predictor, load_policy_set(DEFAULT_POLICY)))
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


def test_score_spark_cli(spark, registry, tmp_path, monkeypatch):
    monkeypatch.setenv("TRIAGE_HOME", str(registry["home"]))
    runner = CliRunner()
    source = tmp_path / "in.jsonl"
    write(source, GOOD + BAD[:1])
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
    same = runner.invoke(app, ["score-spark", str(source), str(source)])
    assert same.exit_code == 2 and "would overwrite the input" in same.output
