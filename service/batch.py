"""Batch scoring of comment files (JSONL, CSV, Parquet) into scored records, resumable.

Work is done in chunks; each finished chunk is written atomically into ``<output>.parts/``. A run that
dies resumes from the first unfinished chunk; the output file is assembled only at the end. Rows that
are not valid comments are reported in ``<output>.errors.jsonl`` with their line and field, never dropped
silently.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from models.records import SUFFIXES, Problem, read_records
from service.schemas import CommentIn
from service.scorer import Scorer

log = logging.getLogger(__name__)


class BatchError(Exception):
    pass


@dataclass
class BatchReport:
    scored: int = 0
    invalid: int = 0
    chunks: int = 0
    resumed_chunks: int = 0
    errors_file: str | None = None
    problems: list[Problem] = field(default_factory=list)


def _format(path: Path, role: str) -> str:
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise BatchError(f"{path}: unsupported {role} format {suffix or '(none)'} (use .jsonl, .csv or .parquet)")
    return suffix[1:]


def _given(value: Any) -> bool:
    """Tabular nulls (None, NaN) mean "not given": the field's default applies."""
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _nest_author(record: dict[str, Any]) -> dict[str, Any]:
    """Accept ``author`` as an object, a JSON string, or flat ``author.x`` / ``author_x`` columns."""
    record = {k: v for k, v in record.items() if _given(v)}
    author = record.get("author")
    if isinstance(author, str):
        try:
            author = json.loads(author)
        except json.JSONDecodeError:
            author = {"id": author}
    flat = {
        k.split(".", 1)[1] if "." in k else k[len("author_") :]: v
        for k, v in record.items()
        if (k.startswith("author.") or k.startswith("author_")) and v is not None
    }
    if flat:
        if author is not None and not isinstance(author, dict):
            raise _RowError("author", f"must be an object to merge the author_ columns into (got {author!r:.40})")
        author = {**(author or {}), **flat}
    if isinstance(author, dict):
        author = {k: v for k, v in author.items() if _given(v)}
    out = {k: v for k, v in record.items() if not (k.startswith("author.") or k.startswith("author_"))}
    if author is not None:
        out["author"] = author
    for key in ("id", "post_id", "ad_id", "campaign_id", "brand_id"):
        value = out.get(key)
        if isinstance(value, float) and value.is_integer():  # a Parquet int column with gaps reads as float
            value = int(value)
        if value is None or isinstance(value, str):
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise _RowError(key, f"must be a string or an integer (got {value!r:.40})")
        out[key] = str(value)
    return out


class _RowError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field, self.message = field, message


def to_comment(name: str, line: int, record: dict[str, Any]) -> tuple[CommentIn | None, Problem | None]:
    """A row as a comment, or the problem that names its line and field."""
    try:
        return CommentIn.model_validate(_nest_author(record)), None
    except _RowError as exc:
        return None, Problem(name, line, exc.field, exc.message)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "row"
        return None, Problem(name, line, where, err["msg"])


def duplicate_id(name: str, line: int, comment_id: str, first: str) -> Problem:
    """A second row with an id (the HTTP API refuses one); ``first`` says where the first was."""
    return Problem(name, line, "id", f"duplicate id {comment_id!r} (first on {first})")


def read_comments(path: Path) -> Iterator[tuple[int, CommentIn | None, Problem | None]]:
    name = str(path)
    seen: dict[str, int] = {}  # id -> line: a second row with an id is reported, as the HTTP API refuses it
    for line, record, problem in read_records(path):
        if problem is not None:
            yield line, None, problem
            continue
        assert record is not None
        comment, problem = to_comment(name, line, record)
        if comment is None:
            yield line, None, problem
            continue
        if comment.id in seen:
            yield line, None, duplicate_id(name, line, comment.id, f"line {seen[comment.id]}")
            continue
        seen[comment.id] = line
        yield line, comment, None


def record_to_flat(record: dict[str, Any]) -> dict[str, Any]:
    """CSV row: nested scores as dotted columns, lists as JSON text."""
    flat: dict[str, Any] = {}
    for key, value in record.items():
        if key == "scores":
            for head, score in value.items():
                if isinstance(score, dict):
                    for label, p in score.items():
                        flat[f"scores.{head}.{label}"] = p
                else:
                    flat[f"scores.{head}"] = score
        elif isinstance(value, list):
            flat[key] = json.dumps(value, ensure_ascii=False)
        else:
            flat[key] = value
    return flat


def _write_atomic(path: Path, lines: list[str]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        handle.writelines(lines)
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)


def _score_chunk(
    scorer: Any, rows: list[tuple[int, CommentIn]], now: datetime | None, problems: list[Problem], name: str
) -> list[Any]:
    """Score a chunk; a comment that fails is reported with its line and the rest go on, so one bad row never
    kills the job (and every resume with it). A comment failing in the policy or crisis step is caught per
    comment (each is seen by the crisis detector once); should the model fail the whole chunk, its comments are
    scored one by one. When every comment of a chunk fails, the failure is the job's (a broken model, a lost
    Redis): it is raised, and a resume retries the chunk."""
    if not rows:
        return []
    failed: list[tuple[int, Exception]] = []
    try:
        scored = list(scorer.score_sync([c for _, c in rows], now=now, failed=failed))
    except Exception:
        log.exception("the model failed on a chunk of %s: scoring its %d comments one by one", name, len(rows))
        scored, failed = [], []
        for i, (_, comment) in enumerate(rows):
            one: list[tuple[int, Exception]] = []
            try:
                scored.extend(scorer.score_sync([comment], now=now, failed=one))
            except Exception as exc:
                one.append((0, exc))
            failed.extend((i, error) for _, error in one)
    if failed and len(failed) == len(rows):
        raise failed[-1][1]
    for i, error in failed:
        problems.append(Problem(name, rows[i][0], "row", f"could not be scored ({type(error).__name__}: {error})"))
    problems.sort(key=lambda p: p.line)
    return scored


def _chunks(path: Path, size: int) -> Iterator[list[tuple[int, CommentIn | None, Problem | None]]]:
    chunk: list[tuple[int, CommentIn | None, Problem | None]] = []
    for item in read_comments(path):
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _count_rows(path: Path) -> int | None:
    try:
        if path.suffix.lower() == ".parquet":
            import pyarrow.parquet as pq

            return int(pq.ParquetFile(path).metadata.num_rows)
        with path.open("rb") as handle:
            lines = sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))
        return max(0, lines - 1) if path.suffix.lower() == ".csv" else lines
    except OSError:
        return None


def score_file(
    input_path: Path,
    output_path: Path,
    scorer: Scorer,
    chunk_size: int = 1000,
    restart: bool = False,
    progress: bool = True,
    now: datetime | None = None,
) -> BatchReport:
    """Score every comment of ``input_path`` into ``output_path`` (format from its suffix)."""
    _format(input_path, "input")
    out_format = _format(output_path, "output")
    if not input_path.is_file():
        raise BatchError(f"{input_path}: no such file")
    parts = output_path.with_name(output_path.name + ".parts")
    stat = input_path.stat()
    manifest = {
        "input": str(input_path.resolve()),
        "input_size": stat.st_size,
        "input_mtime_ns": stat.st_mtime_ns,
        "chunk_size": chunk_size,
        "model_version": scorer.model_version,
        "policy_version": scorer.policy.version,
    }
    manifest_path = parts / "manifest.json"
    if parts.exists() and not restart:
        try:
            previous = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            previous = None
        if previous != manifest:
            raise BatchError(
                f"{parts} holds a partial run of another input, chunk size, model or policy; "
                "rerun with --restart to discard it"
            )
    elif parts.exists():
        shutil.rmtree(parts)
    parts.mkdir(parents=True, exist_ok=True)
    manifest_path.write_text(json.dumps(manifest, indent=2), encoding="utf-8")

    from tqdm import tqdm

    report = BatchReport()
    total = _count_rows(input_path)
    bar = tqdm(total=total, unit="comment", disable=not progress, desc=input_path.name)
    for index, chunk in enumerate(_chunks(input_path, chunk_size)):
        report.chunks += 1
        part = parts / f"part-{index:06d}.jsonl"
        errors = parts / f"errors-{index:06d}.jsonl"
        if part.exists():
            report.resumed_chunks += 1
            bar.update(len(chunk))
            continue
        problems = [p for _, _, p in chunk if p is not None]
        scored = _score_chunk(
            scorer, [(line, c) for line, c, _ in chunk if c is not None], now, problems, str(input_path)
        )
        _write_atomic(
            errors,
            [
                json.dumps({"file": p.file, "line": p.line, "field": p.field, "message": p.message}, ensure_ascii=False)
                + "\n"
                for p in problems
            ],
        )
        _write_atomic(part, [r.model_dump_json() + "\n" for r in scored])
        bar.update(len(chunk))
    bar.close()
    _assemble(parts, output_path, out_format, report)
    shutil.rmtree(parts)
    return report


def _arrow_schema() -> Any:
    """The scored-comment record as Parquet columns (nested scores, lists of reasons and questions)."""
    import pyarrow as pa

    return pa.schema(
        [
            ("id", pa.string()),
            ("language", pa.string()),
            ("sentiment", pa.string()),
            ("toxic", pa.bool_()),
            ("complaint", pa.bool_()),
            ("question", pa.bool_()),
            (
                "scores",
                pa.struct(
                    [
                        (
                            "sentiment",
                            pa.struct(
                                [("negative", pa.float64()), ("neutral", pa.float64()), ("positive", pa.float64())]
                            ),
                        ),
                        ("toxic", pa.float64()),
                        ("complaint", pa.float64()),
                        ("question", pa.float64()),
                    ]
                ),
            ),
            ("priority", pa.string()),
            ("priority_score", pa.int64()),
            ("respond_within_minutes", pa.int64()),
            ("respond_by", pa.string()),
            ("action", pa.string()),
            ("reasons", pa.list_(pa.string())),
            ("questions", pa.list_(pa.string())),
            ("model_version", pa.string()),
            ("policy_version", pa.string()),
        ]
    )


def _iter_parts(parts: Path, prefix: str) -> Iterator[Path]:
    yield from sorted(parts.glob(f"{prefix}-*.jsonl"))


def _assemble(parts: Path, output_path: Path, out_format: str, report: BatchReport) -> None:
    """Join the chunk files into the output, one chunk in memory at a time."""
    output_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = output_path.with_name(output_path.name + ".tmp")
    if out_format == "jsonl":
        with tmp.open("w", encoding="utf-8") as out:
            for part in _iter_parts(parts, "part"):
                with part.open(encoding="utf-8") as handle:
                    for line in handle:
                        out.write(line)
                        report.scored += 1
    elif out_format == "csv":
        import csv

        writer = None
        with tmp.open("w", encoding="utf-8", newline="") as out:
            for part in _iter_parts(parts, "part"):
                with part.open(encoding="utf-8") as handle:
                    for line in handle:
                        row = record_to_flat(json.loads(line))
                        if writer is None:
                            writer = csv.DictWriter(out, fieldnames=list(row))
                            writer.writeheader()
                        writer.writerow(row)
                        report.scored += 1
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq_writer = None
        schema = _arrow_schema()
        for part in _iter_parts(parts, "part"):
            with part.open(encoding="utf-8") as handle:
                rows = [json.loads(line) for line in handle]
            if not rows:
                continue
            table = pa.Table.from_pylist(rows, schema=schema)
            if pq_writer is None:
                pq_writer = pq.ParquetWriter(tmp, schema)
            pq_writer.write_table(table)
            report.scored += len(rows)
        if pq_writer is None:
            pq.write_table(schema.empty_table(), tmp)
        else:
            pq_writer.close()
    tmp.replace(output_path)

    errors_path = output_path.with_name(output_path.name + ".errors.jsonl")
    with errors_path.open("w", encoding="utf-8") as out:
        for part in _iter_parts(parts, "errors"):
            with part.open(encoding="utf-8") as handle:
                for line in handle:
                    out.write(line)
                    report.invalid += 1
                    if len(report.problems) < 20:
                        data = json.loads(line)
                        report.problems.append(Problem(data["file"], data["line"], data["field"], data["message"]))
    if report.invalid:
        report.errors_file = str(errors_path)
    else:
        errors_path.unlink()
