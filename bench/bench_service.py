"""HTTP scoring speed of `triage serve` against in-process scoring of the same model, in the same run.

Starts the service (uvicorn, one worker) on a free loopback port with the champion of TRIAGE_HOME
(a seed model is trained into a temporary home if none is registered), then sends a bounded number of
requests from threads of this process: one-comment requests at concurrency 1 and 8, 64-comment
requests at concurrency 8. Prints requests/s, comments/s and latency percentiles, and each rate as a
ratio to in-process `Scorer.score_sync` on batches of 64.

    .venv/bin/python bench/bench_service.py [--home .triage] [--requests 400]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def comments(n: int) -> list[dict]:
    rows = [json.loads(line) for line in (ROOT / "data" / "seed" / "seed.jsonl").open(encoding="utf-8")]
    return [{"id": f"c{i}", "text": rows[i % len(rows)]["text"], "channel": "comment"} for i in range(n)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load(url: str, batch: int, concurrency: int, requests: int) -> dict[str, float]:
    pool = comments(batch * 50)
    bodies = [{"comments": pool[(i * batch) % len(pool) :][:batch] or pool[:batch]} for i in range(requests)]
    latencies: list[float] = []
    with httpx.Client(timeout=30) as client:

        def one(body: dict) -> None:
            start = time.perf_counter()
            response = client.post(url, json=body)
            response.raise_for_status()
            latencies.append(time.perf_counter() - start)

        started = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as executor:
            list(executor.map(one, bodies))
        elapsed = time.perf_counter() - started
    lat = np.array(latencies) * 1000
    return {
        "req_s": requests / elapsed,
        "comments_s": requests * batch / elapsed,
        "p50_ms": float(np.percentile(lat, 50)),
        "p99_ms": float(np.percentile(lat, 99)),
    }


def in_process(home: Path) -> float:
    from models.store import alias_uri, configure_mlflow
    from service.policy import load_policy_set
    from service.predictor import load_predictor
    from service.schemas import CommentIn
    from service.scorer import Scorer

    configure_mlflow(home)
    scorer = Scorer(load_predictor(alias_uri()), load_policy_set())
    batch = [CommentIn(**c) for c in comments(64)]
    scorer.score_sync(batch)
    start, n = time.perf_counter(), 0
    while time.perf_counter() - start < 5:
        scorer.score_sync(batch)
        n += len(batch)
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--home", default=os.environ.get("TRIAGE_HOME", ".triage"))
    parser.add_argument("--requests", type=int, default=400)
    args = parser.parse_args()
    home = Path(args.home)
    env = {**os.environ, "TRIAGE_HOME": str(home), "TRIAGE_LOG_LEVEL": "WARNING"}
    triage = str(Path(sys.executable).with_name("triage"))
    if subprocess.run([triage, "bootstrap"], env=env, capture_output=True).returncode != 0:
        home = Path(tempfile.mkdtemp(prefix="bench-home-"))
        env["TRIAGE_HOME"] = str(home)
        subprocess.run([triage, "bootstrap"], env=env, check=True, capture_output=True)
    baseline = in_process(home)
    port = free_port()
    server = subprocess.Popen(
        [triage, "serve", "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(600):
            try:
                if httpx.get(f"{base}/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        model = httpx.get(f"{base}/v1/model").json()
        print(
            f"model {model['version']} ({model.get('family')}); in-process score_sync, batches of 64: "
            f"{baseline:.0f} comments/s (baseline)"
        )
        print("| requests | concurrency | req/s | comments/s | p50 ms | p99 ms | comments/s vs baseline |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for batch, concurrency in ((1, 1), (1, 8), (64, 8)):
            n = args.requests if batch == 1 else max(20, args.requests // 10)
            r = load(f"{base}/v1/score", batch, concurrency, n)
            print(
                f"| {batch} comment(s) | {concurrency} | {r['req_s']:.0f} | {r['comments_s']:.0f} | "
                f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['comments_s'] / baseline:.2f}x |"
            )
        status = Path(f"/proc/{server.pid}/status").read_text()
        mem = {
            k: int(v.split()[0]) / 1024
            for k, v in (line.split(":", 1) for line in status.splitlines())
            if k in ("VmRSS", "VmHWM")
        }
        print(f"server process: resident {mem['VmRSS']:.0f} MiB, peak {mem['VmHWM']:.0f} MiB")
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
