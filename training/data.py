"""Reading and validating labelled comments (the training-data contract of DESIGN.md).

Each problem names its file, line (or Parquet row) and field. By default any problem stops the load;
with ``skip_invalid`` the offending rows are reported and skipped, never silently dropped.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from models.lang import default_detector
from models.records import SUFFIXES, Problem, read_records
from models.schema import BINARY_HEADS, HEADS, LANGUAGES, SENTIMENT_LABELS

log = logging.getLogger(__name__)

COLUMNS = ("id", "text", "lang", "source", *HEADS)
_TRUE = {"1", "true", "yes"}
_FALSE = {"0", "false", "no"}


class DataValidationError(Exception):
    def __init__(self, problems: list[Problem]):
        self.problems = problems
        shown = "\n".join(f"  {p}" for p in problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        super().__init__(f"{len(problems)} problem(s) in the training data:\n{shown}{more}")


@dataclass
class LoadedData:
    frame: pd.DataFrame
    files: list[str]
    skipped: list[Problem] = field(default_factory=list)
    detected_lang: int = 0


def discover(paths: Iterable[str | Path]) -> list[Path]:
    """Expand folders into their JSONL/CSV/Parquet files (recursively, sorted)."""
    files: list[Path] = []
    problems: list[Problem] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file())
            if not found:
                problems.append(Problem(str(path), 0, "path", "folder holds no .jsonl, .csv or .parquet file"))
            files.extend(found)
        elif path.is_file():
            if path.suffix.lower() not in SUFFIXES:
                problems.append(Problem(str(path), 0, "path", "unsupported format (use .jsonl, .csv or .parquet)"))
            else:
                files.append(path)
        else:
            problems.append(Problem(str(path), 0, "path", "no such file or folder"))
    if problems:
        raise DataValidationError(problems)
    return files


def _is_missing(value: Any) -> bool:
    return (
        value is None
        or (isinstance(value, float) and math.isnan(value))
        or (isinstance(value, str) and not value.strip())
    )


def _binary(value: Any) -> int | None | str:
    """0/1 for a valid binary label, None for 'not labelled', the offending text otherwise."""
    if _is_missing(value):
        return None
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float) and value in (0, 1):
        return int(value)
    text = str(value).strip().lower()
    if text in _TRUE or text in ("1.0",):
        return 1
    if text in _FALSE or text in ("0.0",):
        return 0
    return str(value)


def validate_record(record: dict[str, Any], file: str, line: int) -> tuple[dict[str, Any], list[Problem]]:
    """Check one row against the contract; return the cleaned row and its problems."""
    problems: list[Problem] = []
    out: dict[str, Any] = {}

    raw_id = record.get("id")
    if _is_missing(raw_id):
        problems.append(Problem(file, line, "id", "missing id"))
    out["id"] = None if _is_missing(raw_id) else str(raw_id).strip()

    text = record.get("text")
    if not isinstance(text, str) or not text.strip():
        problems.append(
            Problem(
                file,
                line,
                "text",
                "empty text"
                if text is None or isinstance(text, str)
                else f"text must be a string, got {type(text).__name__}",
            )
        )
    out["text"] = text.strip() if isinstance(text, str) else None

    lang = record.get("lang")
    if _is_missing(lang):
        out["lang"] = None
    elif str(lang).strip().lower() in LANGUAGES:
        out["lang"] = str(lang).strip().lower()
    else:
        problems.append(
            Problem(
                file,
                line,
                "lang",
                f"unsupported language {lang!r} (expected one of "
                f"{', '.join(LANGUAGES)}, or leave it empty to detect it)",
            )
        )

    sentiment = record.get("sentiment")
    if _is_missing(sentiment):
        out["sentiment"] = None
    elif str(sentiment).strip().lower() in SENTIMENT_LABELS:
        out["sentiment"] = str(sentiment).strip().lower()
    else:
        problems.append(
            Problem(file, line, "sentiment", f"unknown label {sentiment!r} (expected {'|'.join(SENTIMENT_LABELS)})")
        )

    for head in BINARY_HEADS:
        value = _binary(record.get(head))
        if isinstance(value, str):
            problems.append(Problem(file, line, head, f"unknown label {value!r} (expected 0|1)"))
        else:
            out[head] = value

    source = record.get("source")
    out["source"] = None if _is_missing(source) else str(source)

    if not problems and all(out.get(head) is None for head in HEADS):
        problems.append(Problem(file, line, "labels", f"no label: the row carries none of {', '.join(HEADS)}"))
    return out, problems


def load_data(paths: Iterable[str | Path], skip_invalid: bool = False) -> LoadedData:
    """Load, validate and concatenate labelled comments from files and folders."""
    files = discover(paths)
    rows: list[dict[str, Any]] = []
    problems: list[Problem] = []
    seen: dict[str, tuple[str, int]] = {}
    for path in files:
        name = str(path)
        for line, record, problem in read_records(path):
            if problem is not None:
                problems.append(problem)
                continue
            assert record is not None
            row, row_problems = validate_record(record, name, line)
            if row["id"] is not None and not row_problems:
                if row["id"] in seen:
                    first_file, first_line = seen[row["id"]]
                    row_problems.append(
                        Problem(name, line, "id", f"duplicate id {row['id']!r} (first at {first_file}:{first_line})")
                    )
                else:
                    seen[row["id"]] = (name, line)
            if row_problems:
                problems.extend(row_problems)
                continue
            if row["source"] is None:
                row["source"] = path.stem
            rows.append(row)
    if problems and not skip_invalid:
        raise DataValidationError(problems)
    for problem in problems:
        log.warning("skipped: %s", problem)

    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    for head in BINARY_HEADS:
        frame[head] = frame[head].astype("Int8")
    missing = frame["lang"].isna()
    if missing.any():
        detector = default_detector()
        frame.loc[missing, "lang"] = [detector.detect(t) for t in frame.loc[missing, "text"]]
    if frame.empty:
        raise DataValidationError([Problem(", ".join(map(str, files)), 0, "rows", "no valid labelled row")])
    return LoadedData(frame=frame, files=[str(f) for f in files], skipped=problems, detected_lang=int(missing.sum()))


def summarize(frame: pd.DataFrame) -> dict[str, Any]:
    """Rows per source and language, label counts per head, and per head and language the labelled rows, their
    positives (binary heads) and the sources that label them: logged with every model."""
    summary: dict[str, Any] = {
        "rows": len(frame),
        "by_language": {str(k): int(v) for k, v in frame["lang"].value_counts().sort_index().items()},
        "by_source": {str(k): int(v) for k, v in frame["source"].value_counts().sort_index().items()},
        "labels": {},
    }
    summary["by_head_language"] = {}
    for head in HEADS:
        rows = frame[frame[head].notna()]
        labelled = rows[head]
        summary["labels"][head] = {str(k): int(v) for k, v in labelled.value_counts().sort_index().items()}
        by_lang: dict[str, Any] = {}
        for lang, part in rows.groupby("lang", sort=True):
            cell: dict[str, Any] = {"rows": len(part), "sources": sorted(part["source"].astype(str).unique())}
            if head in BINARY_HEADS:
                cell["positives"] = int(part[head].astype(int).sum())
            by_lang[str(lang)] = cell
        summary["by_head_language"][head] = by_lang
    return summary
