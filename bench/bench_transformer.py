"""Serving speed of the transformer path: PyTorch fp32 vs ONNX Runtime fp32 vs ONNX Runtime dynamic int8.

Builds the multi-task model on the base encoder (the speed of a fine-tuned model is the speed of its
architecture), exports it both ways, and scores typical comments (~32 tokens) in batches of 32 on the
CPU cores this process may use. Also measures the resident memory of a fresh process that loads the
int8 model through the serving back-end and scores with it. Prints a table and ratios to PyTorch fp32.

    .venv/bin/python bench/bench_transformer.py [--base offline:multilingual-e5-small] [--comments 1024]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent


def typical_comments(n: int) -> list[str]:
    rows = [json.loads(line) for line in (ROOT / "data" / "seed" / "seed.jsonl").open(encoding="utf-8")]
    texts = [r["text"] for r in rows]
    return [texts[i % len(texts)] for i in range(n)]


def rate(fn, texts: list[str], batch: int, repeats: int = 2) -> float:
    fn(texts[:batch])  # warm-up
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(0, len(texts), batch):
            fn(texts[i : i + batch])
        best = max(best, len(texts) / (time.perf_counter() - start))
    return best


RSS_PROBE = """
import json, sys
from models.backends import OnnxBackend
texts = json.loads(sys.stdin.read())
backend = OnnxBackend.load(__import__('pathlib').Path(sys.argv[1]))
for i in range(0, len(texts), 32):
    backend.predict_proba(texts[i:i + 32])
# VmHWM: this process's own peak (ru_maxrss would carry the parent's peak across fork and exec)
print(next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM')) / 1024)
"""


def main() -> None:
    from transformers import AutoModel, AutoTokenizer

    from training.base_models import resolve_base_model
    from training.config import TransformerConfig
    from training.transformer import FitResult, MultiTaskModel, encode, export_onnx, torch_proba, truncate_layers

    parser = argparse.ArgumentParser()
    parser.add_argument("--base", default="offline:multilingual-e5-small")
    parser.add_argument("--home", default=".triage")
    parser.add_argument("--comments", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--layers", type=int, default=None, help="keep the bottom N encoder layers")
    args = parser.parse_args()

    path = resolve_base_model(args.base, Path(args.home))
    tokenizer = AutoTokenizer.from_pretrained(path)
    torch.manual_seed(0)
    encoder = AutoModel.from_pretrained(path, add_pooling_layer=False)
    truncate_layers(encoder, args.layers)
    model = MultiTaskModel(encoder, 384).eval()
    cfg = TransformerConfig(base_model=path, max_length=64)
    texts = typical_comments(args.comments)
    lengths = [len(ids) for ids in encode(tokenizer, texts, cfg)]
    pad = tokenizer.pad_token_id

    results: dict[str, float] = {}
    with torch.inference_mode():
        results["pytorch fp32"] = rate(
            lambda b: torch_proba(model, encode(tokenizer, b, cfg), pad, args.batch), texts, args.batch
        )
    with tempfile.TemporaryDirectory() as tmp:
        fit = FitResult(model, tokenizer, 0, 0.0, 0.0)
        fp32 = export_onnx(fit, cfg.model_copy(update={"quantize": False}), Path(tmp) / "fp32")
        int8 = export_onnx(fit, cfg, Path(tmp) / "int8")
        results["onnxruntime fp32"] = rate(fp32.predict_proba, texts, args.batch)
        results["onnxruntime int8"] = rate(int8.predict_proba, texts, args.batch)
        reference = torch_proba(model, encode(tokenizer, texts[:256], cfg), pad)
        quantized = int8.predict_proba(texts[:256])
        diff = max(float(np.abs(reference[h] - quantized[h]).max()) for h in reference)
        size = {name: (Path(tmp) / name / "model.onnx").stat().st_size / 2**20 for name in ("fp32", "int8")}
        probe = subprocess.run(
            [sys.executable, "-c", RSS_PROBE, str(Path(tmp) / "int8")],
            input=json.dumps(texts),
            capture_output=True,
            text=True,
            cwd=ROOT,
            check=True,
        )
        rss = float(probe.stdout.strip().splitlines()[-1])

    base = results["pytorch fp32"]
    print(
        f"comments: {len(texts)}, tokens per comment: median {int(np.median(lengths))}, "
        f"mean {np.mean(lengths):.1f}; batch {args.batch}; torch threads {torch.get_num_threads()}"
    )
    print("| path | comments/s | vs PyTorch fp32 |")
    print("|---|---:|---:|")
    for name, value in results.items():
        print(f"| {name} | {value:.1f} | {value / base:.2f}x |")
    print(f"ONNX model size: fp32 {size['fp32']:.0f} MiB, int8 {size['int8']:.0f} MiB")
    print(f"int8 vs PyTorch fp32, max |Δp| over 256 comments and all heads: {diff:.4f}")
    print(f"peak RSS of a process loading and serving the int8 model: {rss:.0f} MiB")


if __name__ == "__main__":
    main()
