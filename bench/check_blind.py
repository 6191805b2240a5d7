"""The served records against a blind set of brand comments: per head and language, and question extraction.

`bench/data/blind_comments.jsonl` holds 200 comments to brands (40 each in pl, ru, uk, en and de), written for
this check by writers who saw neither the seed set nor the training corpora, and labelled by the seed set's
guidelines (data/README.md). No model trains on them. They are the in-domain check: every target corpus is
tweets or reviews labelled by other definitions, and the seed set's own test rows are ~14 per language.

Each comment goes through the real scorer (model, thresholds, triage policy, question extraction) as a
public comment or on its labelled channel. Printed per head and language: the served decision's F1 (binary
heads) or macro-F1 (sentiment), its accuracy, and the ROC-AUC of the served probability, with the toxic and
question heads' own calls beside the playbook's reading of them; then how often the extracted questions equal the
labelled ones, in order.

    .venv/bin/python bench/check_blind.py [--data FILE] [--model models:/comment-triage@champion]
"""

from __future__ import annotations

import argparse
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

DEFAULT = Path(__file__).parent / "data" / "blind_comments.jsonl"
LANGS = ("pl", "ru", "uk", "en", "de")


def load_rows(path: Path) -> list[dict[str, Any]]:
    """The labelled rows; a bad one stops the check with its file, line and field."""
    from training.data import DataValidationError, load_data

    try:
        frame = load_data([path]).frame
    except DataValidationError as exc:
        raise SystemExit(f"error: {exc}") from None
    from typing import get_args

    from models.records import read_records
    from service.schemas import Channel

    channels = get_args(Channel)
    extra: dict[str, dict[str, Any]] = {}
    for line, record, _ in read_records(path):  # the reader load_data used: its problems have been reported
        assert record is not None
        questions = record.get("questions")
        if not isinstance(questions, list) or not all(isinstance(q, str) for q in questions):
            raise SystemExit(f"error: {path}:{line}: questions: a list of strings is needed")
        channel = record.get("channel") or "comment"
        if channel not in channels:
            raise SystemExit(f"error: {path}:{line}: channel: {channel!r} is not one of {', '.join(channels)}")
        extra[str(record["id"]).strip()] = {"questions": questions, "channel": channel}
    rows = []
    for row in frame.to_dict("records"):
        rows.append({**row, **extra[str(row["id"])]})
    return rows


def score_rows(rows: list[dict[str, Any]], model: str) -> tuple[list[Any], list[Any]]:
    """The served records, and the model's own predictions (the toxic and question heads before the playbook's
    reading of them)."""
    from models.store import configure_mlflow
    from service.policy import load_policy_set
    from service.predictor import load_failure, load_predictor
    from service.schemas import CommentIn
    from service.scorer import Scorer

    configure_mlflow(Path(os.environ.get("TRIAGE_HOME", ".triage")))
    try:
        predictor = load_predictor(model)
    except Exception as exc:  # MLflow raises several types for a missing model or alias
        raise SystemExit(f"error: {load_failure(model, exc)} (train one, or pass --model)") from None
    print(f"model {predictor.version}")
    scorer = Scorer(predictor, load_policy_set())
    comments = [CommentIn(id=r["id"], text=r["text"], lang=r["lang"], channel=r["channel"]) for r in rows]
    return scorer.score_sync(comments), predictor.predict([r["text"] for r in rows], [r["lang"] for r in rows])


def head_table(rows: list[dict[str, Any]], scored: list[Any], heads: list[Any]) -> list[str]:
    from sklearn.metrics import f1_score, roc_auc_score

    lines = ["| head | " + " | ".join(LANGS) + " | all |", "|---|" + "---:|" * (len(LANGS) + 1)]
    for head in ("sentiment", "toxic", "toxic (head alone)", "complaint", "question", "question (head alone)"):
        cells = []
        label = head.split()[0]
        for lang in (*LANGS, "all"):
            idx = [i for i, r in enumerate(rows) if (lang == "all" or r["lang"] == lang) and r[label] is not None]
            if not idx:
                cells.append("–")
                continue
            if head == "sentiment":
                truth = [str(rows[i][head]) for i in idx]
                said = [scored[i].sentiment for i in idx]
                f1 = f1_score(truth, said, average="macro", labels=sorted(set(truth)), zero_division=0)
                acc = sum(t == s for t, s in zip(truth, said, strict=True)) / len(idx)
                cells.append(f"{f1:.2f} ({acc:.0%})")
                continue
            y = [int(rows[i][label]) for i in idx]
            if head == label:
                said_b = [int(bool(getattr(scored[i], head))) for i in idx]
            else:
                said_b = [int(getattr(heads[i], label)) for i in idx]
            proba = [float(getattr(scored[i].scores, label)) for i in idx]
            f1 = f1_score(y, said_b, zero_division=0)
            auc = roc_auc_score(y, proba) if 0 < sum(y) < len(y) else float("nan")
            cells.append(f"{f1:.2f} / {auc:.2f} ({sum(y)}/{len(y)})")
        lines.append(f"| {head} | " + " | ".join(cells) + " |")
    return lines


def extraction_table(rows: list[dict[str, Any]], scored: list[Any]) -> list[str]:
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])  # exact, rows, exact among question rows, those
    for r, s in zip(rows, scored, strict=True):
        for key in (r["lang"], "all"):
            exact = list(s.questions) == list(r["questions"])
            counts[key][0] += exact
            counts[key][1] += 1
            if r["questions"]:
                counts[key][2] += exact
                counts[key][3] += 1
    cells = [f"{counts[k][0]}/{counts[k][1]} ({counts[k][2]}/{counts[k][3]})" for k in (*LANGS, "all")]
    return [
        "| extracted questions = labelled | " + " | ".join(LANGS) + " | all |",
        "|---|" + "---:|" * (len(LANGS) + 1),
        "| all rows (question rows) | " + " | ".join(cells) + " |",
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=DEFAULT)
    parser.add_argument("--model", default=None, help="a model URI (default: the champion)")
    parser.add_argument("--show-errors", action="store_true", help="list the rows a head gets wrong")
    args = parser.parse_args()
    if not args.data.is_file():
        parser.error(f"{args.data}: no such file")
    if args.data.suffix != ".jsonl":
        parser.error(f"{args.data}: a check file is JSON Lines (.jsonl), with `questions` and `channel` per row")
    from models.store import alias_uri

    rows = load_rows(args.data)
    scored, heads = score_rows(rows, args.model or alias_uri())
    print("Binary heads: F1 of the served decision / ROC-AUC of its probability (positives/rows); sentiment:")
    print("macro-F1 (accuracy). 'toxic' and 'question' are the served decisions (the toxic head or a swear word it")
    print("missed; a question extracted that the head allows, unless spam); '(head alone)' is the model's own call.")
    print("\n".join(head_table(rows, scored, heads)))
    print()
    print("\n".join(extraction_table(rows, scored)))
    if args.show_errors:
        for r, s in zip(rows, scored, strict=True):
            for head in ("sentiment", "toxic", "complaint", "question"):
                said = getattr(s, head)
                if r[head] is None:
                    continue
                want = r[head] if head == "sentiment" else bool(r[head])
                if said != want:
                    print(f"{r['id']} {head}: labelled {want}, served {said}: {r['text'][:100]!r}")
            if list(s.questions) != list(r["questions"]):
                print(f"{r['id']} questions: labelled {r['questions']}, extracted {list(s.questions)}")


if __name__ == "__main__":
    main()
