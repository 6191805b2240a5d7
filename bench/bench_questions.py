"""Question extraction speed: per comment over the seed folder, and on adversarial comments at two lengths.

A rule that backtracks grows with the square of a run of spaces, commas or emoji, and one 10,000-character comment
could then hold a scoring worker for seconds. Each adversarial shape is timed at 5,000 and 10,000 characters (the
service's limit); the ratio of the two is ~2 where the work grows linearly and ~4 where it grows with the square.

    .venv/bin/python bench/bench_questions.py
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from service.questions import extract_questions

SEED = Path(__file__).resolve().parent.parent / "data" / "seed"
SHAPES: dict[str, Callable[[int], str]] = {
    "spaces": lambda n: "czy" + " " * n + "x",
    "commas": lambda n: "czy jest " + "," * n + " a b c",
    "comma words": lambda n: "czy jest w M" + ", ala" * (n // 5),
    "colons": lambda n: "czy " + ":" * n,
    "emoji and words": lambda n: "😍 a " * (n // 4) + "?",
    "decimals": lambda n: "1.2" * (n // 3) + "?",
    "reasons": lambda n: "czy" + " bo" * (n // 3),
    "greetings": lambda n: "hej, " * (n // 5) + "czy jest",
    "numbered": lambda n: "pytania: " + "1) czy a " * (n // 9),
    "conditions": lambda n: "if i " + "do a " * (n // 5),
    "whoever": lambda n: "кто " + "купил " * (n // 6) + ",",
    "look-alikes": lambda n: "скiльки " * (n // 8),
    "dotted words": lambda n: "a.b" * (n // 3),
}


def best_of(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def timed(text: str) -> float:
    return best_of(lambda: extract_questions(text), 3)


def main() -> None:
    texts = [json.loads(line)["text"] for path in sorted(SEED.glob("*.jsonl")) for line in path.open() if line.strip()]
    per_comment = best_of(lambda: [extract_questions(t) for t in texts], 5) / len(texts)
    print(f"seed folder: {len(texts)} comments, {per_comment * 1e6:.0f} µs per comment (best of 5)")
    print("| shape | 5,000 chars | 10,000 chars | ratio | × a seed comment (10,000) |")
    print("|---|---:|---:|---:|---:|")
    for name, make in SHAPES.items():
        short, long = make(5000), make(10000)
        t5, t10 = timed(short), timed(long)
        print(f"| {name} | {t5 * 1e3:.1f} ms | {t10 * 1e3:.1f} ms | {t10 / t5:.1f} | {t10 / per_comment:.0f} |")


if __name__ == "__main__":
    main()
