"""bench/check_blind.py's reader: a row it cannot score stops the check with its file, line and field."""

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parent.parent / "bench" / "check_blind.py"


@pytest.fixture(scope="module")
def check_blind():
    spec = importlib.util.spec_from_file_location("check_blind", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def row(i: int, **extra) -> dict:
    text = f"czy macie to w rozmiarze {i}"
    base = {"id": f"t-{i}", "text": text, "lang": "pl", "sentiment": "neutral", "toxic": 0, "complaint": 0}
    return {**base, "question": 1, "questions": [text], "channel": "dm", **extra}


def write(tmp_path: Path, rows: list[dict]) -> Path:
    path = tmp_path / "check.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    return path


def test_rows_keep_their_questions_and_channel(check_blind, tmp_path):
    rows = check_blind.load_rows(write(tmp_path, [row(1), row(2, channel="reply", questions=[])]))
    assert [(r["id"], r["channel"], r["questions"]) for r in rows] == [
        ("t-1", "dm", ["czy macie to w rozmiarze 1"]),
        ("t-2", "reply", []),
    ]


@pytest.mark.parametrize(
    ("bad", "field"),
    [({"channel": "ad_comment"}, "channel: 'ad_comment' is not one of"), ({"questions": "czy?"}, "questions:")],
)
def test_a_row_it_cannot_score_names_its_line_and_field(check_blind, tmp_path, bad, field):
    path = write(tmp_path, [row(1), row(2, **bad)])
    with pytest.raises(SystemExit) as exc:
        check_blind.load_rows(path)
    assert f"{path}:2: {field}" in str(exc.value)
