"""Training speed per precision: seconds per fine-tuning step in fp32 and under bf16 autocast, on this CPU.

Runs the training code's own step (``training.transformer.train_step``: forward, masked multi-task loss,
backward, gradient clipping, AdamW) on the base encoder with the shipped CPU configs' frozen embedding table,
on batches of typical comments (~40 tokens, the length-grouped batches of a CPU run) with random labels for
every head. The two precisions alternate, a round of ``--steps`` steps each, ``--rounds`` times; prints each
round, the median seconds per step, the bf16/fp32 ratio, and what ``precision: auto`` picks here.

    .venv/bin/python bench/bench_train_step.py [--layers 6] [--rounds 3] [--steps 20]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from bench_transformer import typical_comments


def main() -> None:
    from transformers import AutoTokenizer

    from models.kernels import cpu_flags
    from models.schema import BINARY_HEADS, SENTIMENT_LABELS
    from training.base_models import resolve_base_model
    from training.config import TransformerConfig
    from training.transformer import _pad, autocast_dtype, build_model, encode, train_step

    parser = argparse.ArgumentParser()
    parser.add_argument("--base", default="offline:multilingual-e5-small")
    parser.add_argument("--home", default=".triage")
    parser.add_argument("--layers", type=int, default=6, help="keep the bottom N encoder layers")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=40, help="about this many tokens per comment")
    parser.add_argument("--steps", type=int, default=20, help="steps per round and precision")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="default: the CPU cores this process may use")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    cfg = TransformerConfig(base_model=args.base, num_layers=args.layers, batch_size=args.batch)
    path = resolve_base_model(cfg.base_model, Path(args.home))
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = build_model(str(path), cfg)
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-6)
    ids = encode(tokenizer, typical_comments(args.batch * 8, tokenizer, args.tokens), cfg)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    generator = torch.Generator().manual_seed(0)
    batches = []
    for start in range(0, len(ids), args.batch):
        input_ids, attention = _pad(ids[start : start + args.batch], pad)
        rows = len(input_ids)
        sentiment = torch.randint(len(SENTIMENT_LABELS), (rows,), generator=generator)
        binary = torch.randint(2, (rows, len(BINARY_HEADS)), generator=generator).float()
        batches.append([input_ids, attention, sentiment, binary])

    def round_seconds(autocast: torch.dtype | None) -> float:
        train_step(model, optimizer, batches[0], autocast)  # warm-up: the first step builds kernels
        started = time.perf_counter()
        for step in range(args.steps):
            train_step(model, optimizer, batches[step % len(batches)], autocast)
        return (time.perf_counter() - started) / args.steps

    tokens = sum(int(b[1].sum()) for b in batches) / len(batches) / args.batch
    flags = cpu_flags() or frozenset()
    encoder_config: Any = model.encoder.config  # a transformers config (torch types it Tensor | Module)
    print(
        f"{encoder_config.num_hidden_layers} layers, batch {args.batch}, {tokens:.0f} tokens a "
        f"comment, {torch.get_num_threads()} threads; CPU: amx_bf16 {'amx_bf16' in flags}, avx512_bf16 "
        f"{'avx512_bf16' in flags}"
    )
    seconds: dict[str, list[float]] = {"fp32": [], "bf16": []}
    for index in range(args.rounds):
        for name, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
            seconds[name].append(round_seconds(dtype))
            print(f"round {index + 1} {name}: {seconds[name][-1]:.3f} s/step", flush=True)
    fp32, bf16 = (statistics.median(seconds[name]) for name in ("fp32", "bf16"))
    print(f"median s/step: fp32 {fp32:.3f}, bf16 {bf16:.3f}; bf16 takes {bf16 / fp32:.2f}x fp32's time")
    picked = autocast_dtype("auto", torch.device("cpu"))
    print(f"precision: auto picks {'bf16' if picked is not None else 'fp32'} on this CPU")


if __name__ == "__main__":
    main()
