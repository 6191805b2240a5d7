"""Batch scoring on Spark, for a campaign's comments when one machine is not enough.

The records are those of ``triage score`` (the same model, policy, question extraction and row checks run in
Spark's Python workers), read from and written to anything Spark reads and writes (a file, a folder of part
files, a glob; local, HDFS, S3, ...). Every input row is numbered by its line in its file, so a bad row is
reported as ``file:line: field: message``, never dropped.

The work is cut into ``slices`` by a hash of each comment's id: a slice is one Spark job whose rows are written
to ``<output>.parts/slice-N`` and counted done once Spark has committed it. A run that dies (the driver, the
cluster) resumes at the first slice not done; the output is assembled from the slices at the end.

With ``crisis``, crisis detection is replayed over the comments' posting times once every slice is scored: the
comments of each scope (a post, an ad, a campaign, a brand) go to one task, sorted by time, and stream through the
detector the service runs, one scope at a time. A scope's state depends only on its own comments, so this equals
one replay of all comments in time order. The comments a crisis was active for are decided again with it
(``escalate_crisis``), and the crises found are written to ``<output>.crises``.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import uuid
import zlib
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from models.records import Problem
from service.crisis import Crisis, CrisisConfig, CrisisDetector, MemoryState

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

FORMATS = ("jsonl", "csv", "parquet")
_ALIASES = {"json": "jsonl", "ndjson": "jsonl"}
_PARSED = "file string, line long, id string, comment string, field string, message string"
_SCORED = "file string, line long, record string, field string, message string, comment string, signal string"
_SIGNALS = "scope string, rank int, at long, clock string, file string, line long, bad boolean"  # a comment per scope
_REPLAYED = "kind string, file string, line long, rank int, scope string, description string, alert string"
_SCORE_BATCH = 256  # comments per model call in a worker
_ROWS_PER_TASK = 20_000  # at most, per scoring task


class SparkBatchError(Exception):
    pass


@dataclass
class SparkReport:
    scored: int = 0
    invalid: int = 0
    slices: int = 0
    resumed_slices: int = 0
    output: str = ""
    errors_output: str | None = None
    problems: list[Problem] = field(default_factory=list)
    crises: int = 0  # found by the replay (with ``crisis``)
    escalated: int = 0  # records whose action is escalate_crisis after the replay
    crises_output: str | None = None


def data_format(path: str, given: str | None, role: str) -> str:
    """``jsonl``, ``csv`` or ``parquet``: as given, else from the path's suffix (a folder or glob needs it given)."""
    base = path.rstrip("/").rsplit("/", 1)[-1]
    name = (given or (base.rsplit(".", 1)[-1] if "." in base else "")).lower()
    local = path[len("file://") :] if path.startswith("file://") else path
    if not given and role == "input" and os.path.isdir(local):  # a local folder of part files: their suffix
        suffixes = {
            f.suffix.lower().lstrip(".")
            for f in Path(local).iterdir()
            if f.is_file() and not f.name.startswith(("_", ".")) and f.suffix.lower() != ".crc"
        }
        name = suffixes.pop() if len(suffixes) == 1 else ""
    name = _ALIASES.get(name, name)
    if name not in FORMATS:
        what = f"'{given}' is not one of jsonl, csv, parquet" if given else f"give --{role}-format"
        raise SparkBatchError(f"{path}: cannot tell the {role} format ({what})")
    return name


def build_session(master: str | None = None, app_name: str = "comment-triage-score") -> SparkSession:
    """A Spark session whose Python workers run this interpreter (so they have the same packages)."""
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = (
        SparkSession.builder.appName(app_name)
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.showConsoleProgress", "false")  # the command reports slices itself
    )
    if master:
        builder = builder.master(master)
    return builder.getOrCreate()


# -- reading: every row with its file and line ---------------------------------------------------------------------
def _read(spark: SparkSession, path: str, fmt: str) -> DataFrame:
    """The input as Spark reads it, before any Python: ``file``, ``block`` and ``payload`` (bytes).

    JSONL is read as lines (``payload``: one line's bytes), split into blocks as Spark splits a large file, so one
    file's lines are read by many tasks; ``block`` is where the line's split starts in its file. CSV and Parquet
    are read whole, a file per row (``block`` 0), and parsed in Python by the readers of ``triage score``: the same
    lines, values and problems (a quote that never closes, a bad byte, NaN as not given), which Spark's own readers
    would not give (its CSV reader maps columns by position across files and reads an unclosed quote to the end)."""
    from pyspark.sql import functions as F

    if fmt == "jsonl":
        df = spark.read.option("lineSep", "\n").text(path)  # \n only, as Python reads lines: a \r stays in its line
        return df.select(
            F.col("_metadata.file_path").alias("file"),
            F.col("_metadata.file_block_start").alias("block"),
            F.col("value").cast("binary").alias("payload"),  # the line's bytes, undecoded: a bad byte is reported
        )
    df = spark.read.format("binaryFile").load(path)
    return df.select(
        F.col("path").alias("file"), F.lit(0).cast("long").alias("block"), F.col("content").alias("payload")
    )


def _line_offsets(raw: DataFrame, fmt: str) -> tuple[dict[tuple[str, int], int], int]:
    """The first line of each (file, block) of a JSONL input, and the rows in all: a block's lines are read in
    order, and blocks start where the one before ended, so a file's lines are counted across its blocks whichever
    tasks read them (the key depends on the file's bytes only, not on how a job partitions them)."""
    from pyspark.sql import functions as F

    if fmt != "jsonl":  # a file per row, numbered from its own line 1
        return {}, 0
    counts = raw.groupBy("file", "block").agg(F.count(F.lit(1)).alias("lines")).collect()
    offsets: dict[tuple[str, int], int] = {}
    by_file: dict[str, list[tuple[int, int]]] = {}
    for row in counts:
        by_file.setdefault(row["file"], []).append((int(row["block"]), int(row["lines"])))
    total = 0
    for name, blocks in by_file.items():
        at = 1
        for block, lines in sorted(blocks):
            offsets[(name, block)] = at
            at += lines
            total += lines
    return offsets, total


def _display(file: str) -> str:
    """A file as Spark names it (a URI, escaped), as a user named it: ``file:///tmp/a%20b.csv`` is ``/tmp/a b.csv``."""
    from urllib.parse import unquote

    file = unquote(file)
    for scheme in ("file://", "file:"):
        if file.startswith(scheme):
            return file[len(scheme) :]
    return file


def slice_of(key: str, slices: int) -> int:
    return zlib.crc32(key.encode("utf-8")) % slices


def _rows_of(
    fmt: str, name: str, payload: bytes, line: int
) -> Iterator[tuple[int, dict[str, Any] | None, Problem | None]]:
    """``(line, record, problem)`` of one JSONL line (numbered ``line``), or of a whole CSV or Parquet file."""
    import io

    from models.records import jsonl_row, read_csv, read_parquet

    if fmt == "jsonl":
        row = jsonl_row(name, line, payload)
        if row is not None:
            yield line, row[0], row[1]
    elif fmt == "csv":
        yield from read_csv(name, io.BytesIO(payload))
    else:
        yield from read_parquet(name, io.BytesIO(payload))


def _parse_rows(
    offsets: dict[tuple[str, int], int], fmt: str, slices: int, only: int
) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    """mapInPandas over the raw input: number the rows, check them as ``triage score`` does, keep slice ``only``."""

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        import pandas as pd

        from service.batch import to_comment

        at: dict[tuple[str, int], int] = {}
        for batch in batches:
            out: list[tuple[str, int, str | None, str | None, str | None, str | None]] = []
            for file, block, payload in zip(batch["file"], batch["block"], batch["payload"], strict=True):
                key = (file, int(block))
                first = at.get(key, offsets.get(key, 1))
                at[key] = first + 1
                name = _display(file)
                for line, record, problem in _rows_of(fmt, name, bytes(payload), first):
                    comment = None
                    if record is not None:
                        comment, problem = to_comment(name, line, record)
                    if comment is not None:
                        if slice_of(comment.id, slices) == only:
                            out.append((name, line, comment.id, comment.model_dump_json(), None, None))
                    elif problem is not None and slice_of(f"{name}:{line}", slices) == only:
                        out.append((name, line, None, None, problem.field, problem.message))
            yield pd.DataFrame(out, columns=["file", "line", "id", "comment", "field", "message"])

    return run


def _rank_ids(parsed: DataFrame) -> DataFrame:
    """Where each id was first seen, in (file, line) order: a later row with it is a duplicate, reported (as the
    HTTP API refuses it) with where the first one is; the first is scored."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    order = Window.partitionBy("id").orderBy("file", "line")
    return parsed.select(
        "*",
        F.when(F.col("id").isNotNull(), F.row_number().over(order)).alias("rank"),
        F.first("file").over(order).alias("first_file"),
        F.first("line").over(order).alias("first_line"),
    )


# -- scoring in the workers -----------------------------------------------------------------------------------------
_WORKER_SCORERS: dict[tuple[str, str, str, bool], Any] = {}
_FAILED_TASK = 10  # a task with at least this many comments, all failing, is a broken model: the job fails


def _worker_scorer(model_file: str, version: str, policy_text: str, policy_origin: str, crisis: bool = False) -> Any:
    """One scorer per Python worker, model and policy (Spark reuses workers between tasks): the model loads once.
    With ``crisis`` its detector records each comment's crisis signal (:class:`_CrisisSignals`) for the replay."""
    key = (model_file, version, hashlib.sha256(f"{policy_origin}\n{policy_text}".encode()).hexdigest(), crisis)
    scorer = _WORKER_SCORERS.get(key)
    if scorer is None:
        from pyspark import SparkFiles, TaskContext

        from service.policy import parse_policy_set
        from service.predictor import predictor_from
        from service.scorer import Scorer

        context = TaskContext.get()
        cpus = context.cpus() if context is not None else 1
        os.environ.setdefault("TRIAGE_ONNX_THREADS", str(cpus))  # a task's share of the cores, not all of them
        predictor = predictor_from(SparkFiles.get(model_file), version)  # the copy shipped with the job
        policies = parse_policy_set(yaml.safe_load(policy_text), policy_origin)
        scorer = Scorer(predictor, policies, crisis=_CrisisSignals(policies.base.crisis) if crisis else None)
        _WORKER_SCORERS.clear()
        _WORKER_SCORERS[key] = scorer
    return scorer


def _score_rows(
    model_file: str, version: str, policy_text: str, policy_origin: str, now: datetime, crisis: bool = False
) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        import pandas as pd

        from service.batch import _score_chunk, duplicate_id
        from service.schemas import CommentIn

        scorer = None
        comments = failures = 0
        last_error = ""
        for batch in batches:
            out: list[tuple[str, int, str | None, str | None, str | None, str | None, str | None]] = []
            pending: list[tuple[str, int, CommentIn]] = []
            kept: dict[tuple[str, int], str] = {}  # the comment as parsed, for a crisis replay's second decision
            for row in batch.itertuples(index=False):
                file, line = row.file, int(row.line)
                rank = getattr(row, "rank", None)  # null where the row has no id
                if isinstance(row.comment, str) and rank is not None and rank > 1:
                    first = (
                        f"line {int(row.first_line)}"
                        if row.first_file == file
                        else f"{row.first_file}:{int(row.first_line)}"
                    )
                    problem = duplicate_id(file, line, row.id, first)
                    out.append((file, line, None, problem.field, problem.message, None, None))
                elif isinstance(row.comment, str):
                    pending.append((file, line, CommentIn.model_validate_json(row.comment)))
                    if crisis:
                        kept[(file, line)] = row.comment
                else:  # a row's problem (null through Arrow may be None or NaN)
                    out.append((file, line, None, row.field, row.message, None, None))
            if pending and scorer is None:
                scorer = _worker_scorer(model_file, version, policy_text, policy_origin, crisis)
            for start in range(0, len(pending), _SCORE_BATCH):
                chunk = pending[start : start + _SCORE_BATCH]
                for file in dict.fromkeys(f for f, _, _ in chunk):
                    rows = [(line, c) for f, line, c in chunk if f == file]
                    ids = {line: c.id for line, c in rows}
                    comments += len(rows)
                    problems: list[Problem] = []
                    try:
                        scored = _score_chunk(scorer, rows, now, problems, file)
                    except Exception as exc:  # every row failed: each is reported, the task decides below
                        scored = []
                        last_error = f"{type(exc).__name__}: {exc}"
                        problems = [
                            Problem(file, line, "row", f"could not be scored ({last_error})") for line, _ in rows
                        ]
                    failures += len(problems)
                    failed = {p.line for p in problems}
                    # what the detector would have counted, a comment that failed after the model included
                    recorder = getattr(scorer, "crisis", None) if crisis else None  # a _CrisisSignals
                    signals = {line: recorder.signal(ids[line]) for line, _ in rows} if recorder is not None else {}
                    done = iter(scored)
                    for line, _ in rows:
                        if line not in failed:
                            record = next(done).model_dump_json()
                            out.append((file, line, record, None, None, kept.get((file, line)), signals.get(line)))
                    out.extend((file, p.line, None, p.field, p.message, None, signals.get(p.line)) for p in problems)
            yield pd.DataFrame(out, columns=["file", "line", "record", "field", "message", "comment", "signal"])
        if comments >= _FAILED_TASK and failures == comments:
            raise RuntimeError(f"every one of {comments} comments failed to score: {last_error}")

    return run


# -- crisis replay --------------------------------------------------------------------------------------------------
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class _CrisisSignals(CrisisDetector):
    """In the scoring pass: records what the detector would count for each comment (its scopes, whether it is bad,
    its clock) and answers "no crisis"; the replay decides once every slice is scored."""

    def __init__(self, config: CrisisConfig):
        super().__init__(config, MemoryState())
        self._seen: dict[str, str] = {}

    def observe(self, comment: Any, pred: Any, now: datetime) -> Crisis | None:
        if self.config.enabled:
            at = (now - _EPOCH) // timedelta(microseconds=1)  # exact, whatever the offset (before 1970 too)
            signal = {"scopes": self.scopes(comment), "bad": self.is_bad(pred), "at": at, "clock": now.isoformat()}
            self._seen[comment.id] = json.dumps(signal)
        return None

    def signal(self, comment_id: str) -> str | None:
        return self._seen.pop(comment_id, None)


class _KnownCrises(CrisisDetector):
    """In the second decision: the crisis the replay found active for each comment."""

    def __init__(self, config: CrisisConfig, crises: dict[str, Crisis]):
        super().__init__(config, MemoryState())
        self.crises = crises

    def observe(self, comment: Any, pred: Any, now: datetime) -> Crisis | None:
        return self.crises.get(comment.id)


def _explode_signals(scopes: list[str]) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    """One row per comment and scope: the scope, its type's place in the configured order, the clock, badness."""

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        import pandas as pd

        for batch in batches:
            out: list[tuple[Any, ...]] = []
            for file, line, raw in zip(batch["file"], batch["line"], batch["signal"], strict=True):
                signal = json.loads(raw)
                rank = [scopes.index(scope.split(":", 1)[0]) for scope in signal["scopes"]]
                out.extend(
                    (scope, r, signal["at"], signal["clock"], file, line, signal["bad"])
                    for scope, r in zip(signal["scopes"], rank, strict=True)
                )
            yield pd.DataFrame(out, columns=["scope", "rank", "at", "clock", "file", "line", "bad"])

    return run


_COLUMNS = ["kind", "file", "line", "rank", "scope", "description", "alert"]


def _replay(config_json: str) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    """mapInPandas over the signals sorted by scope, then time (ties in input order): the service's detector over
    each scope's comments in turn, one scope in memory at a time; a "mark" row for each comment a crisis was
    active for, an "alert" row for each crisis (every one: the policy's ``history`` bounds the service's list of
    ended alerts, not the replay's). A crisis still active at the scope's last comment stays ``active``."""
    config = CrisisConfig.model_validate_json(config_json).model_copy(update={"history": 2**31})

    def alerts(detector: CrisisDetector | None) -> list[tuple[Any, ...]]:
        if detector is None:
            return []
        active, ended = detector.state.alerts()
        rows = ended + active
        return [("alert", None, None, None, a["scope"], None, json.dumps(a, ensure_ascii=False)) for a in rows]

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        import pandas as pd

        scope, detector = None, None
        for batch in batches:
            out: list[tuple[Any, ...]] = []
            for row in batch.itertuples(index=False):
                if row.scope != scope:
                    out.extend(alerts(detector))
                    scope, detector = row.scope, CrisisDetector(config, MemoryState())
                assert detector is not None
                crisis = detector.observe_scopes([row.scope], bool(row.bad), datetime.fromisoformat(row.clock))
                if crisis is not None:
                    out.append(("mark", row.file, int(row.line), int(row.rank), crisis.scope, crisis.description, None))
            yield pd.DataFrame(out, columns=_COLUMNS)
        yield pd.DataFrame(alerts(detector), columns=_COLUMNS)

    return run


def _decide_again(
    model_file: str, version: str, policy_text: str, policy_origin: str, now: datetime
) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    """mapInPandas over the comments a crisis was active for: scored again with it, as ``triage score --crisis``
    decides them (the action, priority and reasons follow the crisis; the shipped exports score a comment the same
    alone or in any batch). A comment that fails this time keeps its first record, with a warning."""

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        import pandas as pd

        from service.batch import _score_chunk
        from service.schemas import CommentIn
        from service.scorer import Scorer

        base = _worker_scorer(model_file, version, policy_text, policy_origin, crisis=True)  # the scoring's, cached
        for batch in batches:
            comments = [CommentIn.model_validate_json(c) for c in batch["comment"]]
            crises = {
                c.id: Crisis(scope=scope, description=description)
                for c, scope, description in zip(comments, batch["scope"], batch["description"], strict=True)
            }
            scorer = Scorer(base.predictor, base.policies(), crisis=_KnownCrises(base.policy.crisis, crises))
            rows = list(enumerate(comments))
            problems: list[Problem] = []
            try:  # a model failing on the batch scores it one by one; a comment that fails alone is reported
                scored = iter(_score_chunk(scorer, rows, now, problems, "crisis replay"))
            except Exception as exc:  # every one failed
                problems = [Problem("crisis replay", i, "row", f"{type(exc).__name__}: {exc}") for i, _ in rows]
                scored = iter([])
            lost = {p.line: p.message for p in problems}
            records = []
            for i, first in enumerate(batch["record"]):
                if i in lost:
                    log.warning("comment %s keeps its record without the crisis: %s", comments[i].id, lost[i])
                    records.append(first)
                else:
                    records.append(next(scored).model_dump_json())
            yield pd.DataFrame({"file": batch["file"], "line": batch["line"], "record": records})

    return run


def _replay_crises(
    every: DataFrame,
    records: DataFrame,
    config: CrisisConfig,
    decide_again: Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]],
    partitions: int,
) -> tuple[DataFrame, DataFrame, DataFrame]:
    """``records`` (every's scored rows) with crisis detection replayed (``file, line, record``), the crises found
    (``alert``), and the
    replay's rows, persisted (both read them: the caller unpersists them when done). Every shuffle is cut into
    ``partitions`` by its key, so the groupings and joins reuse it instead of the session's default (200 tasks of a
    few rows each were most of the replay's time on 2 cores)."""
    from pyspark.sql import functions as F

    signals = every.filter(F.col("signal").isNotNull()).select("file", "line", "signal")
    exploded = signals.mapInPandas(_explode_signals(config.scopes), _SIGNALS)  # type: ignore[arg-type]
    # each scope in one partition, in time order: streamed through one detector at a time (a brand's comments need
    # not fit a worker's memory: Spark's sort spills)
    by_scope = exploded.repartition(partitions, "scope").sortWithinPartitions("scope", "at", "file", "line")
    replayed = by_scope.mapInPandas(_replay(config.model_dump_json()), _REPLAYED).persist()  # type: ignore[arg-type]
    first = F.min(F.struct("rank", "scope", "description")).alias("m")  # the first scope in the configured order
    marks = (
        replayed.filter(F.col("kind") == "mark")
        .repartition(partitions, "file", "line")
        .groupBy("file", "line")
        .agg(first)
        .select("file", "line", F.col("m.scope").alias("scope"), F.col("m.description").alias("description"))
    )
    records = records.repartition(partitions, "file", "line")
    affected = records.join(marks, ["file", "line"]).select("file", "line", "comment", "record", "scope", "description")
    again = affected.mapInPandas(decide_again, "file string, line long, record string")  # type: ignore[arg-type]
    kept = records.join(marks, ["file", "line"], "left_anti").select("file", "line", "record")
    alerts = replayed.filter(F.col("kind") == "alert").select("alert")
    return kept.unionByName(again), alerts, replayed


# -- the job --------------------------------------------------------------------------------------------------------
class _FS:
    """The Hadoop file system of a path, through the JVM (so HDFS and S3 work as the local disk does)."""

    def __init__(self, spark: SparkSession, path: str):
        jvm: Any = spark.sparkContext._jvm
        conf = spark.sparkContext._jsc.hadoopConfiguration()
        self._path = jvm.org.apache.hadoop.fs.Path
        self._fs = self._path(path).getFileSystem(conf)

    def exists(self, path: str) -> bool:
        return bool(self._fs.exists(self._path(path)))

    def delete(self, path: str) -> None:
        self._fs.delete(self._path(path), True)

    def fingerprint(self, files: list[str]) -> str:
        """Names, sizes and modification times of the files: another input under the same path differs."""
        digest = hashlib.sha256()
        for name in sorted(files):
            status = self._fs.getFileStatus(self._path(name))
            digest.update(f"{name}\t{status.getLen()}\t{status.getModificationTime()}\n".encode())
        return digest.hexdigest()

    def qualify(self, path: str) -> str:
        return str(self._fs.makeQualified(self._path(path)).toString())


@dataclass(frozen=True)
class _Manifest:
    input: str
    input_files: str
    input_format: str
    output_format: str
    slices: int
    model_version: str
    policy_version: str
    policy_sha256: str
    now: str
    crisis: bool = False


_MANIFEST_WORDS = {
    "input": "input path",
    "input_files": "input (its files, sizes or modification times)",
    "input_format": "input format",
    "output_format": "output format",
    "slices": "slice count",
    "model_version": "model",
    "policy_version": "policy version",
    "policy_sha256": "policy (its file's text)",
    "crisis": "crisis setting (--crisis)",
}


def _read_manifest(spark: SparkSession, path: str) -> dict[str, Any] | None:
    try:
        lines = [r["value"] for r in spark.read.text(path).collect()]
        return dict(json.loads("".join(lines)))
    except Exception:  # a partial or foreign folder
        return None


def _write_text(spark: SparkSession, path: str, text: str) -> None:
    spark.createDataFrame([(text,)], "value string").coalesce(1).write.mode("overwrite").text(path)


_SHIPPED: dict[tuple[str, str], str] = {}  # (Spark application, model) -> the name its files were shipped under


def _ship_model(spark: SparkSession, uri: str) -> tuple[str, str]:
    """Ship the model's files to the workers once per Spark application: ``(name, version label)``.

    Spark fetches every file added to a context at the next task, and refuses a name whose source has changed: a
    copy made for one run and removed after it would fail the next job if that run died before a task fetched it.
    So the copy stays (under the temporary folder, removed when the process exits) and is shipped once."""
    import mlflow.artifacts

    from service.predictor import resolve_model

    load_uri, version, _ = resolve_model(uri)
    key = (spark.sparkContext.applicationId, os.path.abspath(load_uri) if os.path.isdir(load_uri) else load_uri)
    if key not in _SHIPPED:
        root = tempfile.mkdtemp(prefix="triage-spark-")
        atexit.register(shutil.rmtree, root, True)
        name = f"triage-model-{uuid.uuid4().hex[:12]}"
        if os.path.isdir(load_uri):
            local = shutil.copytree(load_uri, os.path.join(root, name))
        else:
            local = mlflow.artifacts.download_artifacts(artifact_uri=load_uri, dst_path=os.path.join(root, name))
        spark.sparkContext.addFile(local, recursive=True)
        _SHIPPED[key] = os.path.basename(local.rstrip("/"))
    return _SHIPPED[key], version


def score_spark(
    spark: SparkSession,
    input_path: str,
    output_path: str,
    model_uri: str,
    policy_file: str | None,
    *,
    input_format: str | None = None,
    output_format: str | None = None,
    slices: int = 8,
    restart: bool = False,
    now: datetime | None = None,
    on_slice: Callable[[int, int], None] | None = None,
    crisis: bool = False,
) -> SparkReport:
    """Score every comment under ``input_path`` into the dataset ``output_path`` (a folder of part files).

    Invalid rows go to ``<output>.errors`` (JSON lines: file, line, field, message). ``on_slice(done, total)`` is
    called after each slice is committed. With ``crisis``, crisis detection is replayed over the comments' posting
    times (the module's docstring) and the crises found go to ``<output>.crises`` (JSON lines)."""
    from pyspark.sql import functions as F

    from service.policy import DEFAULT_POLICY, PolicyError, load_policy_set

    if slices < 1:
        raise SparkBatchError("slices must be at least 1")
    in_fmt = data_format(input_path, input_format, "input")
    out_fmt = data_format(output_path, output_format, "output")
    fs, input_fs = _FS(spark, output_path), _FS(spark, input_path)
    source, target = input_fs.qualify(input_path), fs.qualify(output_path)
    if source.rstrip("/") == target.rstrip("/"):
        raise SparkBatchError(f"{output_path}: the output would overwrite the input")
    policy_path = Path(policy_file) if policy_file else DEFAULT_POLICY
    policies = load_policy_set(policy_path)  # fails fast with the field named, before any Spark job
    try:
        policy_text = policy_path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(f"{policy_path}: {exc.strerror}") from None
    parts = target.rstrip("/") + ".parts"
    model_file, version = _ship_model(spark, model_uri)
    raw = _read(spark, input_path, in_fmt)
    manifest = _Manifest(
        input=source,
        input_files=input_fs.fingerprint(raw.inputFiles()),
        input_format=in_fmt,
        output_format=out_fmt,
        slices=slices,
        model_version=version,
        policy_version=policies.base.version,
        policy_sha256=hashlib.sha256(policy_text.encode("utf-8")).hexdigest(),
        now=(now or datetime.now(UTC)).isoformat(),
        crisis=crisis,
    )
    previous = _read_manifest(spark, f"{parts}/manifest") if fs.exists(parts) else None
    if fs.exists(parts) and not restart:
        if previous is None:
            raise SparkBatchError(f"{parts} holds no readable manifest; rerun with --restart to discard it")
        previous = {"crisis": False, **previous}  # a manifest from before crisis replays: a run without one
        mine = asdict(manifest)
        differ = [_MANIFEST_WORDS.get(k, k) for k in mine if k != "now" and previous.get(k) != mine[k]]
        if differ:
            raise SparkBatchError(
                f"{parts} holds a partial run with another {', '.join(differ)}; rerun with --restart to discard it"
            )
        manifest = _Manifest(**previous)  # resumed slices keep the first run's clock
    elif fs.exists(parts):
        fs.delete(parts)
    if not fs.exists(f"{parts}/manifest/_SUCCESS"):
        _write_text(spark, f"{parts}/manifest", json.dumps(asdict(manifest)))
    run_now = datetime.fromisoformat(manifest.now)

    offsets, lines = _line_offsets(raw, in_fmt)
    rows_per_slice = lines // slices
    tasks = max(2 * spark.sparkContext.defaultParallelism, -(-rows_per_slice // _ROWS_PER_TASK))
    report = SparkReport(slices=slices, output=target)
    for index in range(slices):
        done_dir = f"{parts}/slice-{index:05d}"
        if fs.exists(f"{done_dir}/_SUCCESS"):
            report.resumed_slices += 1
        else:
            parsed = raw.mapInPandas(_parse_rows(offsets, in_fmt, slices, index), _PARSED)  # type: ignore[arg-type]
            # Scoring is the costly step: spread it over every core, whatever the input's partitions were (a
            # small file is one) and however the shuffle before it would be coalesced.
            spread = _rank_ids(parsed).repartition(tasks, "file", "line")
            scored = spread.mapInPandas(
                _score_rows(model_file, version, policy_text, str(policy_path), run_now, crisis),  # type: ignore[arg-type]
                _SCORED,
            )
            scored.write.mode("overwrite").parquet(done_dir)
        if on_slice is not None:
            on_slice(index + 1, slices)

    every = spark.read.parquet(*[f"{parts}/slice-{i:05d}" for i in range(slices)])
    scored = every.filter(F.col("record").isNotNull())
    crises_target = target.rstrip("/") + ".crises"
    if crisis and policies.base.crisis.enabled:
        again = _decide_again(model_file, version, policy_text, str(policy_path), run_now)
        records, alerts, replayed = _replay_crises(every, scored, policies.base.crisis, again, tasks)
        records = records.persist()  # written, then counted: the second decisions run once
        try:
            started = F.get_json_object("alert", "$.started_at").cast("timestamp")  # offsets differ: by instant
            ordered = alerts.orderBy(started, F.get_json_object("alert", "$.scope"))
            ordered.coalesce(1).write.mode("overwrite").text(crises_target)
            report.crises = alerts.count()
            report.crises_output = crises_target
            _write_output(records, target, out_fmt)
            report.escalated = records.filter(F.get_json_object("record", "$.action") == "escalate_crisis").count()
        finally:
            records.unpersist()
            replayed.unpersist()
    else:
        if fs.exists(crises_target):
            fs.delete(crises_target)
        _write_output(scored, target, out_fmt)
    errors = every.filter(F.col("record").isNull()).orderBy("file", "line")
    report.invalid = errors.count()
    report.scored = scored.count()
    errors_target = target.rstrip("/") + ".errors"
    if report.invalid:
        errors.select(F.to_json(F.struct("file", "line", "field", "message")).alias("value")).write.mode(
            "overwrite"
        ).text(errors_target)
        report.errors_output = errors_target
        report.problems = [
            Problem(r["file"], int(r["line"]), r["field"], r["message"]) for r in errors.limit(20).collect()
        ]
    elif fs.exists(errors_target):
        fs.delete(errors_target)
    fs.delete(parts)
    return report


def _write_output(records: DataFrame, target: str, fmt: str) -> None:
    """The scored records, in input order (file, line), as JSON lines, Parquet (nested) or CSV (flat columns)."""
    from pyspark.sql import functions as F

    ordered = records.orderBy("file", "line")
    if fmt == "jsonl":
        ordered.select(F.col("record").alias("value")).write.mode("overwrite").text(target)
        return
    if fmt == "parquet":
        schema = _record_schema()
        parsed = ordered.select(F.from_json("record", schema).alias("r")).select("r.*")
        parsed.write.mode("overwrite").parquet(target)
        return
    columns = _flat_columns()
    flat = ordered.select("record").mapInPandas(_flatten(columns), ", ".join(f"`{c}` string" for c in columns))  # type: ignore[arg-type]
    options = {"header": "true", "escape": '"', "ignoreLeadingWhiteSpace": "false", "ignoreTrailingWhiteSpace": "false"}
    flat.write.mode("overwrite").options(**options).csv(target)  # values as they are: " id " stays " id "


def _record_schema() -> Any:
    """The scored record as Spark types (the Parquet schema of ``triage score``)."""
    from pyspark.sql.types import (
        ArrayType,
        BooleanType,
        DoubleType,
        LongType,
        StringType,
        StructField,
        StructType,
    )

    def s(name: str, kind: Any) -> StructField:
        return StructField(name, kind)

    sentiment = StructType([s("negative", DoubleType()), s("neutral", DoubleType()), s("positive", DoubleType())])
    scores = StructType(
        [s("sentiment", sentiment), s("toxic", DoubleType()), s("complaint", DoubleType()), s("question", DoubleType())]
    )
    return StructType(
        [
            s("id", StringType()),
            s("language", StringType()),
            s("sentiment", StringType()),
            s("toxic", BooleanType()),
            s("complaint", BooleanType()),
            s("question", BooleanType()),
            s("scores", scores),
            s("priority", StringType()),
            s("priority_score", LongType()),
            s("respond_within_minutes", LongType()),
            s("respond_by", StringType()),
            s("action", StringType()),
            s("reasons", ArrayType(StringType())),
            s("questions", ArrayType(StringType())),
            s("model_version", StringType()),
            s("policy_version", StringType()),
        ]
    )


def _flat_columns() -> list[str]:
    """The CSV columns of a scored record, as ``triage score`` writes them."""
    from service.batch import record_to_flat

    sample: dict[str, Any] = {f.name: None for f in _record_schema().fields}
    sample["scores"] = {"sentiment": {"negative": 0, "neutral": 0, "positive": 0}, "toxic": 0, "complaint": 0}
    sample["scores"]["question"] = 0
    return list(record_to_flat(sample))


def _flatten(columns: list[str]) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        import pandas as pd

        from service.batch import record_to_flat

        for batch in batches:
            rows = [record_to_flat(json.loads(r)) for r in batch["record"]]
            yield pd.DataFrame(
                [[None if row.get(c) is None else str(row[c]) for c in columns] for row in rows], columns=columns
            )

    return run
