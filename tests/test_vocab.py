"""Vocabulary trimming on a tiny SentencePiece-style (Unigram) BERT built here from the seed texts."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from models.schema import MODEL_NAME
from training.config import TrainConfig
from training.vocab import VocabTrimError, trim_model

from .conftest import SEED
from .test_transformer import save_tiny_bert, tiny_cfg


@pytest.fixture(scope="session")
def unigram_base(tmp_path_factory, seed_rows):
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers

    folder = tmp_path_factory.mktemp("tiny-unigram")
    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=1500, special_tokens=["<s>", "<pad>", "</s>", "<unk>"], unk_token="<unk>"
    )
    tok.train_from_iterator([r["text"] for r in seed_rows] + ["中文字符 日本語"], trainer)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    save_tiny_bert(folder, tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>")
    return folder


def _pieces(folder, texts):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    return [e.tokens for e in tok.encode_batch(texts)]


def _hidden(folder, texts):
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder, add_pooling_layer=False).eval()
    batch = tok(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        return model(**batch).last_hidden_state.numpy(), batch["attention_mask"].numpy()


def test_trim_keeps_the_tokens_and_outputs_of_the_texts_it_saw(unigram_base, seed_rows, tmp_path):
    english = [r["text"] for r in seed_rows if r["lang"] == "en"]
    result = trim_model(unigram_base, english, tmp_path / "trimmed")
    assert result.after < result.before * 0.8, result
    config = json.loads((result.path / "config.json").read_text())
    assert config["vocab_size"] == result.after and config["pad_token_id"] == 1
    assert _pieces(result.path, english) == _pieces(unigram_base, english)
    full, mask = _hidden(unigram_base, english[:8])
    trimmed, mask2 = _hidden(result.path, english[:8])
    assert (mask == mask2).all() and np.allclose(full, trimmed, atol=1e-6)
    # an unseen word falls back to kept Latin characters, not <unk>; CJK characters were not kept
    unseen = _pieces(result.path, ["zyxwq"])[0]
    assert "<unk>" not in unseen and "".join(unseen[1:-1]).replace("\u2581", "") == "zyxwq"
    from tokenizers import Tokenizer

    trimmed_tok, full_tok = (Tokenizer.from_file(str(f / "tokenizer.json")) for f in (result.path, unigram_base))
    assert trimmed_tok.token_to_id("<unk>") in trimmed_tok.encode("中文字符").ids
    assert full_tok.token_to_id("<unk>") not in full_tok.encode("中文字符").ids


def test_trim_reuses_a_matching_build_and_redoes_it_for_other_texts(unigram_base, seed_rows, tmp_path):
    texts = [r["text"] for r in seed_rows if r["lang"] == "de"]
    first = trim_model(unigram_base, texts, tmp_path / "t")
    stamp = (first.path / "model.safetensors").stat().st_mtime_ns
    assert trim_model(unigram_base, texts, tmp_path / "t") == first
    assert (first.path / "model.safetensors").stat().st_mtime_ns == stamp
    more = trim_model(unigram_base, texts + [r["text"] for r in seed_rows if r["lang"] == "ru"], tmp_path / "t")
    assert more.after > first.after


def test_trim_refuses_a_tokenizer_that_is_not_unigram(tmp_path):
    from tokenizers import Tokenizer, models

    folder = tmp_path / "wordpiece"
    folder.mkdir()
    Tokenizer(models.WordPiece({"[UNK]": 0, "hello": 1}, unk_token="[UNK]")).save(str(folder / "tokenizer.json"))
    (folder / "config.json").write_text('{"vocab_size": 2}')
    with pytest.raises(VocabTrimError, match="Unigram"):
        trim_model(folder, ["hello"], tmp_path / "t")
    with pytest.raises(VocabTrimError, match="not a transformers folder"):
        trim_model(tmp_path / "missing", ["hello"], tmp_path / "t")


def test_transformer_trained_on_a_trimmed_vocabulary_serves_through_mlflow(tmp_path, unigram_base):
    import mlflow

    from models.store import configure_mlflow
    from training.settings import TrainingSettings
    from training.train import train

    home = tmp_path / "home"
    cfg = TrainConfig(
        family="transformer",
        ensemble="never",
        min_threshold_support=10,
        transformer=tiny_cfg(base_model=str(unigram_base), max_steps=20, eval_every=10, trim_vocab=True),
    )
    result = train([SEED], cfg, TrainingSettings(home=home, seed_data=SEED))
    configure_mlflow(home)
    model = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}/{result.version}")
    meta = model.unwrap_python_model().model.meta
    assert meta["vocab_after"] < meta["vocab_before"]
    out = model.predict(pd.DataFrame({"text": ["Gdzie jest moja paczka?", "Danke, alles super!"]}))
    assert np.allclose(out[["p_sentiment_negative", "p_sentiment_neutral", "p_sentiment_positive"]].sum(axis=1), 1)
