"""Batch scoring on one machine (`triage score`) against Spark (`triage score-spark`), in the same run.

    .venv/bin/python bench/bench_spark.py [--comments 20000] [--model URI] [--master local[2]] [--slices 1 8] [--crisis]

Scores the same file of seed comments (cycled, unique ids) with the champion (or ``--model``): first in-process
as `triage score` does (the baseline), then on Spark once per ``--slices`` value. Prints comments/s and the ratio to
the baseline, and checks that both wrote the same records. Spark's own start-up (the JVM, ~10-20 s) is timed apart.
With ``--crisis`` the comments are spread over 200 posts, a second apart, 5% of them complaints with one burst of 40
under one post, and both sides replay crisis detection (`triage score --crisis` over the file in time
order, `score-spark --crisis` per scope).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--comments", type=int, default=20_000)
    parser.add_argument("--model", default=None, help="model URI (default: the champion)")
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--slices", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--crisis", action="store_true", help="replay crisis detection on both sides")
    args = parser.parse_args()

    from models.store import configure_mlflow
    from service.batch import score_file
    from service.crisis import build_detector
    from service.policy import load_policy_set
    from service.predictor import load_predictor
    from service.scorer import Scorer
    from service.settings import ServiceSettings
    from service.spark import build_session, score_spark

    settings = ServiceSettings()
    configure_mlflow(settings.home)
    uri = args.model or settings.model_uri
    seed = [json.loads(line) for f in sorted((ROOT / "data" / "seed").glob("*.jsonl")) for line in f.open()]
    now = datetime(2026, 11, 22, 12, tzinfo=UTC)
    with tempfile.TemporaryDirectory(prefix="bench-spark-") as tmp:
        source = Path(tmp) / "comments.jsonl"
        words = 0
        with source.open("w", encoding="utf-8") as out:
            good = [r for r in seed if not (r["complaint"] or r["toxic"] or r["sentiment"] == "negative")]
            bad = [r for r in seed if r["complaint"]]
            for i in range(args.comments):
                row = seed[i % len(seed)]
                comment = {"id": f"c{i}", "text": row["text"], "created_at": now.isoformat()}
                if args.crisis:  # a second apart, in time order, under 200 posts; 5% complaints, and one burst:
                    # 40 complaints in a row under post p7 (a brand or campaign scope with no history before the file
                    # would start a crisis at its first minutes: the detector's baseline is the file itself)
                    burst = args.comments // 2 <= i < args.comments // 2 + 40
                    pick = bad[i % len(bad)] if burst or i % 20 == 0 else good[i % len(good)]
                    at = now - timedelta(seconds=args.comments - i)
                    post = "p7" if burst else f"p{i % 200}"
                    comment.update(text=pick["text"], created_at=at.isoformat(), post_id=post)
                words += len(comment["text"].split())
                out.write(json.dumps(comment) + "\n")
        print(f"{args.comments} comments, {words / args.comments:.1f} words on average; model {uri}")

        policies = load_policy_set(settings.policy_file)
        detector = build_detector(policies.base.crisis) if args.crisis else None
        scorer = Scorer(load_predictor(uri), policies, crisis=detector)
        started = time.perf_counter()
        score_file(source, Path(tmp) / "one.jsonl", scorer, progress=False, now=now)
        base = args.comments / (time.perf_counter() - started)
        replay = " --crisis" if args.crisis else ""
        print(f"triage score{replay} (one process, chunks of 1000): {base:8.1f} comments/s  1.00x")
        expected = [json.loads(line) for line in (Path(tmp) / "one.jsonl").open()]

        started = time.perf_counter()
        spark = build_session(args.master, app_name="bench-spark")
        spark.range(1).count()
        print(f"Spark start-up ({args.master}): {time.perf_counter() - started:.1f} s (not counted below)")
        for slices in args.slices:
            target = Path(tmp) / f"spark-{slices}.jsonl"
            started = time.perf_counter()
            report = score_spark(
                spark,
                str(source),
                str(target),
                uri,
                settings.policy_file and str(settings.policy_file),
                slices=slices,
                now=now,
                crisis=args.crisis,
            )
            rate = report.scored / (time.perf_counter() - started)
            got = [json.loads(line) for f in sorted(target.glob("part-*")) for line in f.open()]
            same = "same records" if got == expected else "RECORDS DIFFER"
            found = f", {report.crises} crises, {report.escalated} escalated" if args.crisis else ""
            print(
                f"score-spark{replay} {args.master}, {slices} slice(s): {rate:8.1f} comments/s  {rate / base:.2f}x  "
                f"({same}{found})"
            )
        spark.stop()


if __name__ == "__main__":
    main()
