"""Reading rows of JSONL, CSV and Parquet files, streaming, with problems that name file, line and field.

Shared by training (labelled comments) and batch scoring (comments to score).
"""

from __future__ import annotations

import csv
import json
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

SUFFIXES = (".jsonl", ".csv", ".parquet")


@dataclass(frozen=True)
class Problem:
    file: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.field}: {self.message}"


def read_records(path: Path) -> Iterator[tuple[int, dict[str, Any] | None, Problem | None]]:
    """Yield ``(line, record, problem)`` for each data row of a file, in order."""
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        yield from _read_jsonl(path)
    elif suffix == ".csv":
        with path.open("rb") as handle:
            yield from read_csv(str(path), handle)
    elif suffix == ".parquet":
        yield from read_parquet(str(path), path)
    else:
        raise ValueError(f"unsupported format: {path}")


def jsonl_row(name: str, lineno: int, raw: bytes) -> tuple[dict[str, Any] | None, Problem | None] | None:
    """One JSONL line: its record or its problem, or None for a blank line (skipped, but counted)."""
    try:
        line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
    except UnicodeDecodeError as exc:
        return None, Problem(name, lineno, "encoding", f"undecodable bytes at column {exc.start + 1}")
    if not line.strip():
        return None
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        return None, Problem(name, lineno, "json", f"invalid JSON ({exc.msg})")
    if not isinstance(record, dict):
        return None, Problem(name, lineno, "json", "a row must be a JSON object")
    return record, None


def _read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any] | None, Problem | None]]:
    name = str(path)
    with path.open("rb") as handle:
        for lineno, raw in enumerate(handle, start=1):
            row = jsonl_row(name, lineno, raw)
            if row is not None:
                yield lineno, row[0], row[1]


def read_csv(name: str, handle: BinaryIO) -> Iterator[tuple[int, dict[str, Any] | None, Problem | None]]:
    """Streams a CSV file opened in binary; each physical line is decoded on its own so a bad byte names its line.

    A malformed record (a stray or unclosed quote, an oversized field) is reported at its first line, and
    reading goes on at the line after it: the lines the bad record swallowed are read again as rows of
    their own, so an unclosed quote costs its own row, not the rest of the file.
    """
    bad_lines: set[int] = set()
    pending: deque[tuple[int, bytes]] = deque()  # lines to read again after a malformed record
    consumed: list[tuple[int, bytes]] = []  # the lines the current record was read from

    def lines(source: Iterator[tuple[int, bytes]]) -> Iterator[str]:
        while True:
            if pending:
                lineno, raw = pending.popleft()
            else:
                item = next(source, None)
                if item is None:
                    return
                lineno, raw = item
                if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                    raw = raw[3:]
            consumed.append((lineno, raw))
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError:
                bad_lines.add(lineno)
                yield raw.decode("utf-8", errors="replace")

    source = enumerate(handle, start=1)
    # strict: a quote that never closes is an error, not the rest of the file read into one field
    reader = csv.reader(lines(source), strict=True)
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as exc:
        yield 1, None, Problem(name, 1, "header", f"unreadable CSV header ({exc})")
        return
    if bad_lines:
        yield 1, None, Problem(name, 1, "encoding", "undecodable bytes in the header")
        return
    while True:
        consumed.clear()
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            if not consumed:
                return
            start = consumed[0][0]
            why = "a quoted field opened here never closes" if "end of data" in str(exc) else str(exc)
            yield start, None, Problem(name, start, "csv", f"malformed CSV ({why})")
            pending.extendleft(reversed(consumed[1:]))  # read on from the line after the bad one
            reader = csv.reader(lines(source), strict=True)  # an unclosed quote ran the last one dry
            continue
        start, end = consumed[0][0], consumed[-1][0]
        if not values:
            pass
        elif any(line in bad_lines for line in range(start, end + 1)):
            yield start, None, Problem(name, start, "encoding", "undecodable bytes")
        elif len(values) > len(header):
            yield start, None, Problem(name, start, "csv", "more fields than the header names")
        else:
            yield start, {k: (None if v == "" else v) for k, v in zip(header, values, strict=False)}, None


def read_parquet(name: str, source: Path | BinaryIO) -> Iterator[tuple[int, dict[str, Any] | None, Problem | None]]:
    """A Parquet file's rows (numbered from 1), read a batch at a time; text columns stored as bytes decoded."""
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(source)
    except Exception as exc:  # pyarrow raises several types for a broken file
        yield 0, None, Problem(name, 0, "parquet", f"unreadable Parquet file ({type(exc).__name__})")
        return
    row = 0
    for batch in parquet.iter_batches(batch_size=8192):
        for record in batch.to_pylist():
            row += 1
            for key, value in record.items():
                if isinstance(value, bytes):
                    try:
                        record[key] = value.decode("utf-8")
                    except UnicodeDecodeError:
                        yield row, None, Problem(name, row, key, "undecodable bytes")
                        break
            else:
                yield row, record, None
