"""Carry a base-model folder to a machine that only takes small uploads, and back, bit for bit.

The offline multilingual-e5-small is rebuilt from 4-bit blocks (value = k * fp16 scale, k in -8..7, blocks
of 32), so its fp32 weights can be written again as those blocks without losing a bit: ``pack`` finds,
for every block of every tensor, a scale and integers that give back exactly the fp32 values (it checks
each block; tensors where that fails, such as position embeddings, stay fp32), and ``unpack`` rebuilds
``model.safetensors`` with the same arithmetic as ``training.base_models.dequantize_q4_0``. The trimmed
e5-small (59k pieces) packs to ~26 MB instead of 172 MB. Used to run ``triage finetune`` on a lent GPU
machine whose uploads are capped at 64 MB (see the README's GPU section).

    python bench/gpu_pack.py pack SRC_FOLDER OUT_FOLDER
    python bench/gpu_pack.py unpack PACKED_FOLDER OUT_FOLDER
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any, cast

import numpy as np

QK = 32
TENSORS = "tensors.npz"


def to_blocks(values: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(fp16 scales, int8 k in -8..7) with k * scale == values exactly in fp32, or None if some block has none."""
    flat = np.ascontiguousarray(values, dtype=np.float32).reshape(-1)
    if flat.size % QK:
        return None
    blocks = flat.reshape(-1, QK)
    amax = np.abs(blocks).max(axis=1)
    scales = np.zeros(len(blocks), dtype=np.float16)
    ks = np.zeros(blocks.shape, dtype=np.int8)
    done = amax == 0
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for m in range(8, 0, -1):
            for sign in (1.0, -1.0):
                d = (sign * amax / m).astype(np.float16)
                d32 = d.astype(np.float32)[:, None]
                k = np.rint(blocks / d32)
                ok = np.isfinite(k).all(axis=1) & (k >= -8).all(axis=1) & (k <= 7).all(axis=1)
                k = np.where(np.isfinite(k), k, 0)
                same = (k.astype(np.float32) * d32).view(np.uint32) == blocks.view(np.uint32)  # -0.0 != 0.0
                ok &= same.all(axis=1)
                take = ok & ~done
                scales[take] = d[take]
                ks[take] = k[take].astype(np.int8)
                done |= ok
    if not done.all():
        return None
    return scales, ks


def from_blocks(scales: np.ndarray, ks: np.ndarray) -> np.ndarray:
    return (ks.astype(np.float32) * scales.astype(np.float32)[:, None]).reshape(-1)


def _nibbles(ks: np.ndarray) -> np.ndarray:
    u = (ks.astype(np.int16) + 8).astype(np.uint8)
    return u[:, : QK // 2] | (u[:, QK // 2 :] << 4)


def _unnibble(packed: np.ndarray) -> np.ndarray:
    low, high = (packed & 0x0F).astype(np.int8) - 8, (packed >> 4).astype(np.int8) - 8
    return np.concatenate([low, high], axis=1)


def pack(src: Path, out: Path) -> None:
    from safetensors.numpy import load_file

    state = load_file(str(src / "model.safetensors"))
    arrays: dict[str, np.ndarray] = {}
    kinds: dict[str, str] = {}
    for name, value in state.items():
        blocks = to_blocks(value) if value.dtype == np.float32 else None
        if blocks is None:
            arrays[f"raw:{name}"] = value
            kinds[name] = "raw"
            continue
        scales, ks = blocks
        assert np.array_equal(from_blocks(scales, ks).view(np.uint32), value.reshape(-1).view(np.uint32)), name
        arrays[f"d:{name}"], arrays[f"q:{name}"] = scales, _nibbles(ks)
        arrays[f"shape:{name}"] = np.asarray(value.shape, dtype=np.int64)
        kinds[name] = "q4"
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / TENSORS, **cast(dict[str, Any], arrays))  # numpy's stub types **kwargs as allow_pickle too
    for item in src.iterdir():
        if item.is_file() and item.name != "model.safetensors":
            shutil.copy2(item, out / item.name)
    (out / "packed.json").write_text(json.dumps(kinds, indent=1), encoding="utf-8")
    raw = [n for n, k in kinds.items() if k == "raw"]
    size = sum(f.stat().st_size for f in out.iterdir()) / 1e6
    print(f"packed {len(kinds)} tensors ({len(raw)} kept as they are: {raw[:4]}...) into {size:.1f} MB at {out}")


def unpack(packed: Path, out: Path) -> None:
    from safetensors.numpy import save_file

    kinds = json.loads((packed / "packed.json").read_text(encoding="utf-8"))
    data = np.load(packed / TENSORS)
    state = {}
    for name, kind in kinds.items():
        if kind == "raw":
            state[name] = data[f"raw:{name}"]
        else:
            values = from_blocks(data[f"d:{name}"], _unnibble(data[f"q:{name}"]))
            state[name] = values.reshape(tuple(data[f"shape:{name}"]))
    out.mkdir(parents=True, exist_ok=True)
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    for item in packed.iterdir():
        if item.is_file() and item.name not in (TENSORS, "packed.json"):
            shutil.copy2(item, out / item.name)
    print(f"unpacked {len(state)} tensors into {out}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["pack", "unpack"])
    parser.add_argument("src", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    (pack if args.command == "pack" else unpack)(args.src, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
