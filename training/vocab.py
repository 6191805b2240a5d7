"""Trim a SentencePiece (Unigram) model's vocabulary to the pieces the training languages use.

multilingual-e5-small carries 250k pieces for ~100 languages; its embedding table is 96M of its 118M
parameters. Our comments use about 57k of them. The trimmed model keeps

- the special tokens,
- every piece the given texts tokenize to (so those texts tokenize exactly as before: removing pieces
  never makes a Viterbi path that only uses kept pieces worse),
- every single-character piece of the Latin and Cyrillic scripts and of the script-less characters
  (digits, punctuation, symbols, emoji), so that an unseen word still splits into known pieces instead
  of ``<unk>``,

in their original order, slices the embedding table to the same rows and rewrites the tokenizer's ids.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

TRIM_FILE = "triage_vocab_trim.json"
_SCRIPTS = ("LATIN", "CYRILLIC")


class VocabTrimError(RuntimeError):
    pass


@dataclass(frozen=True)
class TrimResult:
    path: Path
    before: int
    after: int


def _fallback_char(piece: str) -> bool:
    """A single character (with or without the word-start marker) of a script our languages write in."""
    char = piece.removeprefix("\u2581")
    if len(char) != 1:
        return piece == "\u2581"
    if not unicodedata.category(char).startswith("L"):
        return not unicodedata.name(char, "").startswith("CJK")
    return unicodedata.name(char, "").startswith(_SCRIPTS)


def kept_ids(tokenizer_json: dict[str, Any], texts: Iterable[str], prefix: str = "", batch: int = 5000) -> list[int]:
    """Old ids to keep, ascending."""
    from tokenizers import Tokenizer

    model = tokenizer_json.get("model", {})
    if model.get("type") != "Unigram":
        raise VocabTrimError(f"vocabulary trimming needs a Unigram (SentencePiece) tokenizer, not {model.get('type')}")
    vocab = model["vocab"]
    tok = Tokenizer.from_str(json.dumps(tokenizer_json))
    keep = {int(t["id"]) for t in tokenizer_json.get("added_tokens", [])}
    if model.get("unk_id") is not None:
        keep.add(int(model["unk_id"]))
    keep.update(i for i, (piece, _) in enumerate(vocab) if _fallback_char(piece))
    chunk: list[str] = []
    for text in texts:
        chunk.append(prefix + text)
        if len(chunk) >= batch:
            keep.update(i for e in tok.encode_batch(chunk, add_special_tokens=False) for i in e.ids)
            chunk = []
    if chunk:
        keep.update(i for e in tok.encode_batch(chunk, add_special_tokens=False) for i in e.ids)
    return sorted(i for i in keep if i < len(vocab))


def trimmed_tokenizer(tokenizer_json: dict[str, Any], keep: Sequence[int]) -> dict[str, Any]:
    """The tokenizer.json with only ``keep`` (old ids, ascending) in its vocabulary, ids renumbered."""
    new_id = {old: new for new, old in enumerate(keep)}
    out = json.loads(json.dumps(tokenizer_json))
    model = out["model"]
    model["vocab"] = [tokenizer_json["model"]["vocab"][i] for i in keep]
    if model.get("unk_id") is not None:
        model["unk_id"] = new_id[int(model["unk_id"])]
    for token in out.get("added_tokens", []):
        token["id"] = new_id[int(token["id"])]
    post = out.get("post_processor") or {}
    for processor in [post, *post.get("processors", [])]:
        for special in (processor.get("special_tokens") or {}).values():
            special["ids"] = [new_id[int(i)] for i in special["ids"]]
    if out.get("padding") and "pad_id" in out["padding"]:
        out["padding"]["pad_id"] = new_id[int(out["padding"]["pad_id"])]
    return out


def texts_fingerprint(texts: Sequence[str], prefix: str) -> str:
    digest = hashlib.sha256(prefix.encode())
    for text in texts:
        digest.update(b"\0" + text.encode())
    return digest.hexdigest()[:16]


def trim_model(
    src: str | os.PathLike[str], texts: Sequence[str], out: str | os.PathLike[str], prefix: str = ""
) -> TrimResult:
    """Write a trimmed copy of the transformers folder ``src`` to ``out`` (reused when it already matches)."""
    import numpy as np
    from safetensors.numpy import load_file, save_file

    src, out = Path(src), Path(out)
    fingerprint = texts_fingerprint(texts, prefix)
    marker = out / TRIM_FILE
    if marker.exists():
        info = json.loads(marker.read_text(encoding="utf-8"))
        if info.get("texts") == fingerprint and info.get("source") == str(src.resolve()):
            return TrimResult(out, int(info["before"]), int(info["after"]))
    try:
        tokenizer_json = json.loads((src / "tokenizer.json").read_text(encoding="utf-8"))
        config = json.loads((src / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise VocabTrimError(f"{src}: not a transformers folder with a tokenizer.json ({exc})") from None
    keep = kept_ids(tokenizer_json, texts, prefix)
    new_id = {old: new for new, old in enumerate(keep)}
    state = load_file(str(src / "model.safetensors"))
    names = [k for k in state if k.endswith("word_embeddings.weight")]
    if len(names) != 1:
        raise VocabTrimError(f"{src}: expected one word-embedding table, found {names}")
    before = int(state[names[0]].shape[0])
    state[names[0]] = np.ascontiguousarray(state[names[0]][np.asarray(keep)])
    for key in ("pad_token_id", "bos_token_id", "eos_token_id", "unk_token_id"):
        if config.get(key) is not None:
            config[key] = new_id[int(config[key])]
    config["vocab_size"] = len(keep)

    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
    (tmp / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    (tmp / "tokenizer.json").write_text(
        json.dumps(trimmed_tokenizer(tokenizer_json, keep), ensure_ascii=False), encoding="utf-8"
    )
    for name in os.listdir(src):
        if name not in {"model.safetensors", "config.json", "tokenizer.json", TRIM_FILE} and (src / name).is_file():
            shutil.copy2(src / name, tmp / name)
    tok_config = tmp / "tokenizer_config.json"
    if tok_config.exists():
        settings = json.loads(tok_config.read_text(encoding="utf-8"))
        if isinstance(settings.get("added_tokens_decoder"), dict):
            settings["added_tokens_decoder"] = {
                str(new_id[int(k)]): v for k, v in settings["added_tokens_decoder"].items() if int(k) in new_id
            }
            tok_config.write_text(json.dumps(settings, indent=2, ensure_ascii=False), encoding="utf-8")
    info = {"source": str(src.resolve()), "texts": fingerprint, "before": before, "after": len(keep)}
    (tmp / TRIM_FILE).write_text(json.dumps(info, indent=2), encoding="utf-8")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    log.info("vocabulary trimmed from %d to %d pieces: %s", before, len(keep), out)
    return TrimResult(out, before, len(keep))
