"""Serving speed of the transformer path: PyTorch fp32 vs ONNX Runtime fp32 vs ONNX Runtime int8 (dynamic, static,
blockwise: with int8 kernels, and with its weights run as fp32, the fallback for CPUs without int8 dot products;
rowwise). The batched speeds: every path once per round, in turn, its best and its median round shown
(``--rounds``; on a machine whose speed drifts, the best round may be a fast spell and the median the steady
rate, so compare ratios within one column); the
one-comment-per-call speeds and the load time and memory probes run once per path.

Builds the multi-task model on the base encoder (the speed of a fine-tuned model is the speed of its
architecture), exports it both ways, and scores typical comments (~32 tokens) in batches of 32 on the
CPU cores this process may use. Also measures the resident memory of a fresh process that loads the
int8 model through the serving back-end and scores with it. Prints a table and ratios to PyTorch fp32,
then each ONNX path scoring one comment per call (the single-comment HTTP path): its speed and how far
its probabilities move from the same comments scored in batches.

    .venv/bin/python bench/bench_transformer.py [--base offline:multilingual-e5-small] [--comments 1024]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent


def seed_texts() -> list[str]:
    return [json.loads(line)["text"] for line in (ROOT / "data" / "seed" / "seed.jsonl").open(encoding="utf-8")]


def typical_comments(n: int, tokenizer, tokens: int) -> list[str]:
    """Seed comments lengthened with the next ones (or cut by words) to about ``tokens`` tokens each."""
    texts = seed_texts()

    def length(text: str) -> int:
        return len(tokenizer("query: " + text)["input_ids"])

    out = []
    for i, text in enumerate(texts):
        j = i
        while length(text) < tokens - 2:
            j += 1
            text = f"{text} {texts[j % len(texts)]}"
        while length(text) > tokens + 4 and " " in text:
            text = text.rsplit(" ", 1)[0]
        out.append(text)
    return [out[i % len(out)] for i in range(n)]


def interleaved(fns: dict[str, Any], texts: list[str], batch: int, rounds: int) -> dict[str, list[float]]:
    """Comments/s of each path in each of ``rounds`` rounds, every path once per round in turn, the order
    rotated each round: a busy spell on a shared machine then slows all paths of a round, not one path's every
    try, and no path always runs right after the same neighbour."""
    rates: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():
        fn(texts[:batch])  # warm-up
    names = list(fns)
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:  # each round starts one path later
            fn = fns[name]
            start = time.perf_counter()
            for i in range(0, len(texts), batch):
                fn(texts[i : i + batch])
            rates[name].append(len(texts) / (time.perf_counter() - start))
    return rates


RSS_PROBE = """
import json, sys, time
from models.backends import OnnxBackend
texts = json.loads(sys.stdin.read())
started = time.perf_counter()
backend = OnnxBackend.load(__import__('pathlib').Path(sys.argv[1]))
print(time.perf_counter() - started)
for i in range(0, len(texts), 32):
    backend.predict_proba(texts[i:i + 32])
# VmHWM: this process's own peak (ru_maxrss would carry the parent's peak across fork and exec)
print(next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM')) / 1024)
"""


def probe(directory: Path, texts: list[str]) -> tuple[float, float]:
    """(load seconds, peak RSS MiB) of a fresh process that loads the model and scores ``texts``."""
    out = subprocess.run(
        [sys.executable, "-c", RSS_PROBE, str(directory)],
        input=json.dumps(texts),
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    ).stdout.split()
    return float(out[-2]), float(out[-1])


def main() -> None:
    from transformers import AutoModel, AutoTokenizer

    from models.backends import OnnxBackend
    from models.kernels import blockwise_as_fp32, cpu_flags, has_int8_dot
    from training.base_models import resolve_base_model
    from training.config import TransformerConfig
    from training.train import score_one_at_a_time
    from training.transformer import FitResult, MultiTaskModel, encode, export_onnx, torch_proba, truncate_layers
    from training.vocab import trim_model

    parser = argparse.ArgumentParser()
    parser.add_argument("--base", default="offline:multilingual-e5-small")
    parser.add_argument("--home", default=".triage")
    parser.add_argument("--comments", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument(
        "--rounds", type=int, default=3, help="every path once per round, in turn; best and median round shown"
    )
    parser.add_argument("--tokens", type=int, default=32, help="about this many tokens per comment")
    parser.add_argument("--layers", type=int, default=None, help="keep the bottom N encoder layers")
    parser.add_argument(
        "--block",
        type=int,
        default=TransformerConfig.model_fields["quantization_block_size"].default,
        help="quantization_block_size of the blockwise path (default: the config's)",
    )
    parser.add_argument(
        "--trimmed",
        default=None,
        help="a vocabulary-trimmed copy of the base (default: HOME/base_models/trimmed from the last training "
        "run, else one trimmed here on the seed set)",
    )
    args = parser.parse_args()

    path = resolve_base_model(args.base, Path(args.home))
    trimmed = Path(args.trimmed) if args.trimmed else Path(args.home) / "base_models" / "trimmed"
    tmp_root = Path(tempfile.mkdtemp())
    if not (trimmed / "tokenizer.json").exists():
        trimmed = trim_model(path, seed_texts(), tmp_root / "trimmed-on-seed", prefix="query: ").path
    cfg = TransformerConfig(base_model=path, max_length=64)

    def build(folder: str | Path) -> tuple[MultiTaskModel, Any]:
        tokenizer = AutoTokenizer.from_pretrained(folder)
        torch.manual_seed(0)
        encoder = AutoModel.from_pretrained(folder, add_pooling_layer=False)
        truncate_layers(encoder, args.layers)
        return MultiTaskModel(encoder, encoder.config.hidden_size).eval(), tokenizer

    def config(m: MultiTaskModel) -> Any:
        return m.encoder.config  # a transformers config (torch types a module's attributes as Tensor | Module)

    model, tokenizer = build(path)
    texts = typical_comments(args.comments, tokenizer, args.tokens)
    lengths = [len(ids) for ids in encode(tokenizer, texts, cfg)]
    pad = tokenizer.pad_token_id

    sizes: dict[str, float] = {}
    loads: dict[str, tuple[float, float]] = {}
    fit = FitResult(model, tokenizer, 0, 0.0, 0.0)
    fp32 = export_onnx(fit, cfg.model_copy(update={"quantize": False}), tmp_root / "fp32")
    int8 = export_onnx(fit, cfg, tmp_root / "int8")
    int8_all = export_onnx(fit, cfg.model_copy(update={"quantize_exclude": []}), tmp_root / "int8-all")
    static_cfg = cfg.model_copy(update={"quantization": "static"})
    int8_static = export_onnx(fit, static_cfg, tmp_root / "int8-static", calibration_texts=seed_texts()[:256])
    blockwise_cfg = cfg.model_copy(update={"quantization": "blockwise", "quantization_block_size": args.block})
    export_onnx(fit, blockwise_cfg, tmp_root / "int8-blockwise")
    int8_blockwise = OnnxBackend(tmp_root / "int8-blockwise", blockwise="int8")
    blockwise_fp32 = OnnxBackend(tmp_root / "int8-blockwise", blockwise="fp32")
    rowwise_cfg = cfg.model_copy(update={"quantization": "rowwise", "quantization_block_size": args.block})
    int8_rowwise = export_onnx(fit, rowwise_cfg, tmp_root / "int8-rowwise")

    small, small_tok = build(trimmed)
    small.sentiment.load_state_dict(model.sentiment.state_dict())  # same heads: only the vocabulary differs
    small.binary.load_state_dict(model.binary.state_dict())
    vocab = (config(model).vocab_size, config(small).vocab_size)
    small_fit = FitResult(small, small_tok, 0, 0.0, 0.0)
    int8_trim = export_onnx(small_fit, cfg, tmp_root / "int8-trimmed")
    rowwise_trim = export_onnx(small_fit, rowwise_cfg, tmp_root / "int8-rowwise-trimmed")

    def pytorch(batch: list[str]) -> Any:
        with torch.inference_mode():
            return torch_proba(model, encode(tokenizer, batch, cfg), pad, args.batch)

    results = interleaved(
        {
            "pytorch fp32": pytorch,
            "onnxruntime fp32": fp32.predict_proba,
            "onnxruntime int8": int8.predict_proba,
            "onnxruntime int8, feed-forward too": int8_all.predict_proba,
            "onnxruntime int8 static": int8_static.predict_proba,
            f"onnxruntime int8 blockwise (block {args.block}, feed-forward too), int8 kernels": (
                int8_blockwise.predict_proba
            ),
            "onnxruntime int8 blockwise, weights run as fp32 (the fallback without int8 dot products)": (
                blockwise_fp32.predict_proba
            ),
            "onnxruntime int8 rowwise (7-bit weights per output, activations per token, feed-forward too)": (
                int8_rowwise.predict_proba
            ),
            "onnxruntime int8, trimmed vocabulary": int8_trim.predict_proba,
            "onnxruntime int8 rowwise, trimmed vocabulary": rowwise_trim.predict_proba,
        },
        texts,
        args.batch,
        args.rounds,
    )
    served = "fp32 weights" if blockwise_as_fp32("auto") else "int8"
    reference = torch_proba(model, encode(tokenizer, texts[:256], cfg), pad)
    quantized = int8.predict_proba(texts[:256])
    diff = max(float(np.abs(reference[h] - quantized[h]).max()) for h in reference)
    rowwise_p = int8_rowwise.predict_proba(texts[:256])
    rowwise_diff = max(float(np.abs(reference[h] - rowwise_p[h]).max()) for h in reference)

    trimmed_p = int8_trim.predict_proba(texts[:256])
    trim_diff = max(float(np.abs(quantized[h] - trimmed_p[h]).max()) for h in quantized)
    alone: dict[str, tuple[float, float]] = {}  # path -> (comments/s scored one at a time, max |Δp| vs batched)
    paths = {
        "onnxruntime fp32": fp32,
        "onnxruntime int8": int8,
        "onnxruntime int8, feed-forward too": int8_all,
        "onnxruntime int8 static": int8_static,
        "onnxruntime int8 blockwise": int8_blockwise,
        "onnxruntime int8 blockwise, weights as fp32": blockwise_fp32,
        "onnxruntime int8 rowwise": int8_rowwise,
    }
    sample = texts[:256]
    for name, backend in paths.items():
        batched = backend.predict_proba(sample)
        start = time.perf_counter()
        single = score_one_at_a_time(backend, sample)
        seconds = time.perf_counter() - start
        drift = max(float(np.abs(single[h] - batched[h]).max()) for h in batched)
        alone[name] = (len(sample) / seconds, drift)
    for name in ("fp32", "int8", "int8-all", "int8-blockwise", "int8-rowwise", "int8-trimmed", "int8-rowwise-trimmed"):
        sizes[name] = (tmp_root / name / "model.onnx").stat().st_size / 2**20
    for name in ("int8", "int8-trimmed", "int8-blockwise", "int8-rowwise", "int8-rowwise-trimmed"):
        loads[name] = probe(tmp_root / name, texts)

    best = {name: max(values) for name, values in results.items()}
    median = {name: float(np.median(values)) for name, values in results.items()}
    print(
        f"comments: {len(texts)}, tokens per comment: median {int(np.median(lengths))}, "
        f"mean {np.mean(lengths):.1f}; batch {args.batch}; layers {config(model).num_hidden_layers}; "
        f"torch threads {torch.get_num_threads()}"
    )
    print(
        f"CPU int8 dot products (AVX512-VNNI, AVX-VNNI, AMX, ARM SDOT): {has_int8_dot(cpu_flags())}; "
        f"a blockwise model is served here with {served} (TRIAGE_ONNX_BLOCKWISE=auto)"
    )
    print(f"| path | comments/s, best of {args.rounds} rounds | vs PyTorch fp32 | median round | vs PyTorch fp32 |")
    print("|---|---:|---:|---:|---:|")
    for name in results:
        ratio, steady = best[name] / best["pytorch fp32"], median[name] / median["pytorch fp32"]
        print(f"| {name} | {best[name]:.1f} | {ratio:.2f}x | {median[name]:.1f} | {steady:.2f}x |")
    print(f"vocabulary: {vocab[0]:,} pieces, trimmed {vocab[1]:,}")
    print("ONNX model size: " + ", ".join(f"{name} {mib:.0f} MiB" for name, mib in sizes.items()))
    print(f"int8 vs PyTorch fp32, max |Δp| over 256 comments and all heads: {diff:.4f} (rowwise {rowwise_diff:.4f})")
    print("(int8 keeps the feed-forward MatMuls fp32 by default; the random heads here hide the error that")
    print(" quantizing them adds to a fine-tuned model: see the quantization check in a training run's model card)")
    print(f"int8 trimmed vs int8 full vocabulary, max |Δp| over 256 comments and all heads: {trim_diff:.4f}")
    print("one comment per call (the single-comment HTTP path): comments/s, and max |Δp| vs the same comments scored")
    print("in batches (dynamic int8 scales activations per batch, so a comment's scores depend on its batch;")
    print("static int8 fixes the scales on calibration texts, blockwise and rowwise int8 scale each token by itself):")
    torch_rate = median["pytorch fp32"]
    for name, (speed, drift) in alone.items():
        ratio = speed / torch_rate
        print(f"  {name}: {speed:.1f}/s ({ratio:.2f}x PyTorch fp32 batched, median), max |Δp| vs batched {drift:.4f}")
    for name, (seconds, rss) in loads.items():
        print(f"{name}: a fresh process loads it in {seconds:.2f} s; peak RSS while serving {rss:.0f} MiB")
    shutil.rmtree(tmp_root, ignore_errors=True)


if __name__ == "__main__":
    main()
