"""The real multi-task transformer code on a tiny BERT built here: loss, sampling, training, ONNX, MLflow."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from pydantic import ValidationError

import training.transformer as transformer_module
from models.schema import BINARY_HEADS, MODEL_NAME, SENTIMENT_LABELS
from training.config import FEED_FORWARD, ConfigError, TrainConfig, TransformerConfig, bootstrap_config
from training.transformer import (
    BalancedSampler,
    MultiTaskModel,
    _linear_head,
    _RunningLoss,
    _WeightAverage,
    budget_horizon,
    build_model,
    encode,
    export_onnx,
    fit_frozen,
    fit_transformer,
    label_tensors,
    masked_loss,
    pooled_features,
    torch_proba,
)

from .conftest import SEED


def save_tiny_bert(folder, tok, **special) -> None:
    """Save the trained ``tok`` and a 2-layer, 32-wide BERT over its vocabulary as a transformers folder.

    ``special``: the tokenizer's special tokens (``pad_token="[PAD]"``, ...); the model pads with ``pad_token``.
    """
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=128, **special).save_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        pad_token_id=tok.token_to_id(special["pad_token"]),
    )
    BertModel(config, add_pooling_layer=False).save_pretrained(folder)


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory, seed_rows):
    """A 2-layer BERT with a WordPiece vocabulary trained on the seed texts, saved as a transformers folder."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers

    folder = tmp_path_factory.mktemp("tiny-bert")
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=600, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    tok.train_from_iterator([r["text"] for r in seed_rows], trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))],
    )
    save_tiny_bert(
        folder, tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]"
    )
    return str(folder)


def tiny_cfg(**kw) -> TransformerConfig:
    base = dict(
        base_model="unused",
        text_prefix="",
        max_length=32,
        batch_size=16,
        learning_rate=3e-3,
        head_learning_rate=5e-3,
        max_steps=60,
        eval_every=20,
        patience=5,
        freeze_embeddings=False,
        seed=7,
        threads=2,
    )
    base.update(kw)
    return TransformerConfig(**base)


def test_masked_loss_counts_only_labelled_heads():
    sent_logits = torch.tensor([[2.0, 0.0, -2.0], [0.0, 0.0, 0.0]])
    bin_logits = torch.tensor([[1.0, -1.0, 0.5], [3.0, 3.0, 3.0]])
    sentiment = torch.tensor([0, -100])
    binary = torch.tensor([[1.0, float("nan"), float("nan")], [float("nan"), float("nan"), float("nan")]])
    total, parts = masked_loss(sent_logits, bin_logits, sentiment, binary)
    expected_sent = torch.nn.functional.cross_entropy(sent_logits[:1], sentiment[:1])
    expected_toxic = torch.nn.functional.binary_cross_entropy_with_logits(bin_logits[:1, 0], binary[:1, 0])
    assert torch.allclose(parts, torch.stack([expected_sent, expected_toxic, torch.tensor(0.0), torch.tensor(0.0)]))
    assert torch.isclose(total, expected_sent + expected_toxic)
    weighted, _ = masked_loss(sent_logits, bin_logits, sentiment, binary, {"toxic": 2.0, "complaint": 5.0})
    assert torch.isclose(weighted, expected_sent + 2 * expected_toxic)
    # Changing the logits of an unlabelled head or row changes nothing.
    bin_logits2 = bin_logits.clone()
    bin_logits2[:, 1:] = -50.0
    bin_logits2[1, :] = 50.0
    total2, _ = masked_loss(sent_logits, bin_logits2, sentiment, binary)
    assert torch.isclose(total, total2)
    # ... and gets no gradient; a batch with no labels at all has a zero loss, not NaN
    leaf, sent_leaf = bin_logits.clone().requires_grad_(True), sent_logits.clone().requires_grad_(True)
    masked_loss(sent_leaf, leaf, sentiment, binary)[0].backward()
    assert leaf.grad[0, 0] != 0 and not leaf.grad[:, 1:].any() and not leaf.grad[1].any()
    assert sent_leaf.grad[0].any() and not sent_leaf.grad[1].any()  # the -100 row teaches no class
    sent_leaf.grad = None
    empty, _ = masked_loss(sent_leaf, bin_logits, torch.tensor([-100, -100]), torch.full((2, 3), float("nan")))
    empty.backward()
    assert empty.item() == 0.0 and torch.equal(sent_leaf.grad, torch.zeros_like(sent_leaf))


def test_running_loss_is_each_heads_mean_over_its_labelled_rows():
    """The logged training loss per head averages over the rows labelled for that head since the last
    evaluation, so a batch without a head's labels neither adds to it nor dilutes it."""
    running = _RunningLoss(torch.device("cpu"))
    nan = float("nan")
    # step 1: 2 sentiment rows, 1 toxic row; step 2: 1 sentiment row, 3 toxic rows, 1 question row
    running.add(torch.tensor(1.5), torch.tensor([1.0, 0.5, 0.0, 0.0]), torch.tensor([0, 2]),
                torch.tensor([[1.0, nan, nan], [nan, nan, nan]]))  # fmt: skip
    running.add(torch.tensor(0.9), torch.tensor([0.4, 0.2, 0.0, 0.3]), torch.tensor([1, -100, -100]),
                torch.tensor([[0.0, nan, nan], [1.0, nan, nan], [0.0, nan, 1.0]]))  # fmt: skip
    taken = running.take()
    assert taken["loss"] == pytest.approx(1.2)
    assert taken["loss_sentiment"] == pytest.approx((2 * 1.0 + 1 * 0.4) / 3)
    assert taken["loss_toxic"] == pytest.approx((1 * 0.5 + 3 * 0.2) / 4)
    assert taken["loss_question"] == pytest.approx(0.3)
    assert "loss_complaint" not in taken  # no row labelled for it: no number, not a zero
    # take() starts a new window
    running.add(torch.tensor(2.0), torch.tensor([2.0, 0.0, 0.0, 0.0]), torch.tensor([1]), torch.full((1, 3), nan))
    assert running.take() == {"loss": pytest.approx(2.0), "loss_sentiment": pytest.approx(2.0)}


def test_label_tensors_keep_missing_labels_missing():
    frame = pd.DataFrame(
        {
            "sentiment": ["positive", None],
            "toxic": pd.array([1, None], dtype="Int8"),
            "complaint": pd.array([None, 0], dtype="Int8"),
            "question": pd.array([None, None], dtype="Int8"),
        }
    )
    sentiment, binary = label_tensors(frame)
    assert sentiment.tolist() == [2, -100]
    assert binary[0, 0] == 1 and torch.isnan(binary[0, 1]) and binary[1, 1] == 0 and torch.isnan(binary[:, 2]).all()


def test_balanced_sampler_lifts_small_buckets_and_is_deterministic():
    buckets = ["big"] * 10_000 + ["small"] * 100
    sampler = BalancedSampler(buckets, batch_size=50, alpha=0.5, seed=1)
    draws = Counter(buckets[i] for _ in range(200) for i in sampler.batch())
    share = draws["small"] / sum(draws.values())
    assert 0.07 < share < 0.11  # sqrt-balanced: 10/(100+10) ≈ 0.09, not 100/10100 ≈ 0.01
    first = BalancedSampler(buckets, 50, 0.5, 3)
    second = BalancedSampler(buckets, 50, 0.5, 3)
    assert [first.batch() for _ in range(5)] == [second.batch() for _ in range(5)]
    uniform = BalancedSampler(buckets, 50, alpha=0.0, seed=1)
    assert uniform.share() == {"big": 0.5, "small": 0.5}


def seed_frame(rows) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    frame["norm_text"] = frame["text"]
    frame["source"] = "seed-" + frame["lang"]
    for head in BINARY_HEADS:
        frame[head] = frame[head].astype("Int8")
    return frame


@pytest.fixture(scope="session")
def tiny_fit(tiny_base, seed_rows):
    frame = seed_frame(seed_rows)
    train, val = frame.iloc[:600], frame.iloc[600:]
    return fit_transformer(train, val, tiny_cfg(), tiny_base), val


def test_training_learns_and_is_deterministic(tiny_base, seed_rows, tiny_fit):
    result, val = tiny_fit
    assert result.steps == 60 and len(result.history) == 3
    assert result.history[-1]["loss"] < result.history[0]["loss"] * 1.5
    # each evaluation logs the training loss per head since the previous one (the seed labels every head)
    first = result.history[0]
    assert {f"loss_{h}" for h in ("sentiment", *BINARY_HEADS)} <= first.keys()
    assert all(np.isfinite(first[f"loss_{h}"]) and first[f"loss_{h}"] > 0 for h in BINARY_HEADS)
    assert result.best_score > 0.3
    again = fit_transformer(seed_frame(seed_rows).iloc[:600], val, tiny_cfg(max_steps=20), tiny_base)
    twice = fit_transformer(seed_frame(seed_rows).iloc[:600], val, tiny_cfg(max_steps=20), tiny_base)
    a = again.model.state_dict()
    assert all(torch.equal(a[k], v) for k, v in twice.model.state_dict().items())


def test_budget_horizon_projects_the_pace_so_far():
    # 100 steps in 60 s of a 600 s budget: 582 s (the 0.97 margin) hold 970 steps
    assert budget_horizon(100, 60.0, 600.0, 5000) == 970
    assert budget_horizon(100, 60.0, 600.0, 800) == 800  # never past max_steps
    assert budget_horizon(100, 590.0, 600.0, 5000) == 101  # out of budget: the next step ends it
    assert budget_horizon(0, 0.0, 600.0, 5000) == 5000  # no pace yet


class _Clock:
    """A clock that ticks one second each time fit_transformer reads it (once a step, a few more at an
    evaluation): a slow machine, made deterministic."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        self.now += 1.0
        return self.now


def test_schedule_fitted_to_the_budget_decays_to_zero_before_the_guard(tiny_base, seed_rows, monkeypatch):
    """With a budget the schedule of max_steps cannot fit, the guard cuts a plain run with its learning rate
    still high; fit_schedule_to_budget ends the schedule (rate 0) before the guard, on fewer steps."""
    frame = seed_frame(seed_rows)
    cfg = tiny_cfg(max_steps=800, eval_every=20, time_budget_minutes=200 / 60, warmup_ratio=0.05, patience=100)
    runs = {}
    for fitted in (False, True):
        monkeypatch.setattr(transformer_module, "time", _Clock())
        run_cfg = cfg.model_copy(update={"fit_schedule_to_budget": fitted})
        runs[fitted] = fit_transformer(frame.iloc[:600], frame.iloc[600:], run_cfg, tiny_base)
    plain, fitted = runs[False], runs[True]
    assert plain.seconds > 200 and plain.history[-1]["lr"] > 0.5 * cfg.learning_rate  # cut by the guard
    assert plain.history[-1]["scheduled_steps"] == 800
    last = fitted.history[-1]
    assert fitted.seconds < 200 and last["lr"] == 0.0 and fitted.steps == last["scheduled_steps"] < 800
    assert [h["scheduled_steps"] for h in fitted.history] == sorted(
        (h["scheduled_steps"] for h in fitted.history), reverse=True
    )  # the horizon only moves nearer
    assert fitted.best_score > 0.3


def test_fit_schedule_to_budget_needs_a_budget():
    with pytest.raises(ValidationError, match="needs time_budget_minutes"):
        tiny_cfg(fit_schedule_to_budget=True)


def test_weight_average_follows_the_trained_weights_and_swaps_back():
    layer = torch.nn.Linear(2, 1)
    layer.bias.requires_grad_(False)  # a frozen tensor is not averaged
    average = _WeightAverage(layer, decay=0.2)
    start = layer.weight.detach().clone()
    with torch.no_grad():
        layer.weight.fill_(1.0)
    average.update()  # the ramp: decay (1 + 1) / (10 + 1) = 2/11, below 0.2
    assert torch.allclose(average.average[0], start * 2 / 11 + 9 / 11)
    with torch.no_grad():
        layer.weight.fill_(3.0)
    average.update()  # the ramp's 3/12 is above 0.2: the decay is 0.2 from here
    expected = (start * 2 / 11 + 9 / 11) * 0.2 + 3.0 * 0.8
    assert len(average.average) == 1 and torch.allclose(average.average[0], expected)
    with average.swapped():
        assert torch.allclose(layer.weight, expected)
    assert torch.equal(layer.weight, torch.full_like(layer.weight, 3.0))


def test_weight_average_is_what_validation_scores_and_training_keeps(tiny_base, seed_rows):
    """With ema_decay the run validates, early-stops on and returns the averaged weights: a different model
    from the same run without it, still learning, and as deterministic."""
    frame = seed_frame(seed_rows)
    cfg = tiny_cfg(max_steps=40, eval_every=20, device="cpu", freeze_embeddings=True)
    plain = fit_transformer(frame.iloc[:600], frame.iloc[600:], cfg, tiny_base)
    averaged = [
        fit_transformer(frame.iloc[:600], frame.iloc[600:], cfg.model_copy(update={"ema_decay": 0.9}), tiny_base)
        for _ in range(2)
    ]
    state = averaged[0].model.state_dict()
    assert averaged[0].best_score > 0.3 and all(np.isfinite(h["loss"]) for h in averaged[0].history)
    assert all(torch.equal(state[k], v) for k, v in averaged[1].model.state_dict().items())
    # the training loss is the trained weights' and the same; validation scores the average, not the same
    assert [h["loss"] for h in averaged[0].history] == [h["loss"] for h in plain.history]
    assert [h["val_score"] for h in averaged[0].history] != [h["val_score"] for h in plain.history]
    frozen = "encoder.embeddings.word_embeddings.weight"
    assert torch.equal(state[frozen], plain.model.state_dict()[frozen])
    assert not torch.equal(state["sentiment.weight"], plain.model.state_dict()["sentiment.weight"])


def test_bf16_autocast_trains_fp32_weights(tiny_base, seed_rows):
    """precision: bf16 runs the forward pass in bfloat16 (here on the CPU) and still learns; the weights it
    keeps are fp32 and differ from an fp32 run's (the autocast really applied)."""
    frame = seed_frame(seed_rows)
    cfg = tiny_cfg(max_steps=40, eval_every=20, device="cpu")
    fp32 = fit_transformer(frame.iloc[:600], frame.iloc[600:], cfg, tiny_base)
    bf16 = fit_transformer(frame.iloc[:600], frame.iloc[600:], cfg.model_copy(update={"precision": "bf16"}), tiny_base)
    state = bf16.model.state_dict()
    assert all(v.dtype == torch.float32 for v in state.values() if v.is_floating_point())
    assert all(np.isfinite(h["loss"]) for h in bf16.history) and bf16.best_score > 0.3
    assert bf16.device == "cpu, bfloat16 autocast" and fp32.device == "cpu"
    assert not all(torch.equal(state[k], v) for k, v in fp32.model.state_dict().items())


def test_precision_auto_takes_bf16_only_where_it_trains_faster(tmp_path, monkeypatch):
    from training import transformer as tr

    info = tmp_path / "cpuinfo"
    info.write_text("processor : 0\nflags : fpu sse avx2 avx512f avx512_bf16 amx_bf16 amx_tile avx512_vnni\n")
    assert tr.cpu_has_amx_bf16(info)
    # AVX512-BF16 without AMX trains bf16 slower than fp32: not taken
    info.write_text("processor : 0\nflags : fpu sse avx2 avx512f avx512_bf16 avx512_vnni\n")
    assert not tr.cpu_has_amx_bf16(info) and not tr.cpu_has_amx_bf16(tmp_path / "missing")
    cpu = torch.device("cpu")
    monkeypatch.setattr(tr, "cpu_has_amx_bf16", lambda: False)
    assert tr.autocast_dtype("auto", cpu) is None and tr.autocast_dtype("fp32", cpu) is None
    assert tr.autocast_dtype("bf16", cpu) is torch.bfloat16  # asked for explicitly: emulated, but done
    monkeypatch.setattr(tr, "cpu_has_amx_bf16", lambda: True)
    assert tr.autocast_dtype("auto", cpu) is torch.bfloat16 and tr.autocast_dtype("fp32", cpu) is None
    gpu = torch.device("cuda:1")
    for capability, expected in (((7, 5), None), ((8, 0), torch.bfloat16), ((9, 0), torch.bfloat16)):
        asked = []
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d, c=capability, a=asked: a.append(d) or c)
        assert tr.autocast_dtype("auto", gpu) is expected and asked == [gpu]  # the configured GPU, not cuda:0


def test_frozen_embeddings_and_top_layers(tiny_base, seed_rows):
    from transformers import AutoModel

    from training.transformer import freeze

    model = MultiTaskModel(AutoModel.from_pretrained(tiny_base, add_pooling_layer=False), 32)
    freeze(model, tiny_cfg(freeze_embeddings=True, train_layers=1))
    assert not model.encoder.embeddings.word_embeddings.weight.requires_grad
    assert not any(p.requires_grad for p in model.encoder.encoder.layer[0].parameters())
    assert all(p.requires_grad for p in model.encoder.encoder.layer[1].parameters())
    assert model.sentiment.weight.requires_grad


@pytest.mark.parametrize(
    "quantize,quantization",
    [(False, "dynamic"), (True, "dynamic"), (True, "static"), (True, "blockwise"), (True, "rowwise")],
)
def test_onnx_export_matches_pytorch(tiny_fit, tmp_path, quantize, quantization):
    result, val = tiny_fit
    cfg = tiny_cfg(quantize=quantize, quantization=quantization)
    backend = export_onnx(result, cfg, tmp_path / "onnx", calibration_texts=val["norm_text"].tolist()[50:150])
    texts = val["norm_text"].tolist()[:50]
    from training.transformer import encode

    reference = torch_proba(result.model, encode(result.tokenizer, texts, cfg), result.tokenizer.pad_token_id)
    exported = backend.predict_proba(texts)
    bound = 0.1 if quantize else 1e-4  # int8 on a 32-wide toy model; the real model is checked in bench/
    for head in ("sentiment", *BINARY_HEADS):
        assert np.abs(reference[head] - exported[head]).max() < bound, head
    assert json.loads((tmp_path / "onnx" / "onnx_config.json").read_text())["max_length"] == 32


def test_transformer_family_through_mlflow(tmp_path, tiny_base, monkeypatch):
    """train() with family transformer: fine-tune, export, compare with TF-IDF, register, reload by version."""
    import mlflow

    from models.store import configure_mlflow
    from training.settings import TrainingSettings
    from training.train import train

    home = tmp_path / "home"
    settings = TrainingSettings(home=home, seed_data=SEED)
    cfg = TrainConfig(
        family="transformer",
        min_threshold_support=10,
        transformer=tiny_cfg(base_model=tiny_base, max_steps=30, eval_every=15, quantization="static"),
    )
    result = train([SEED], cfg, settings)
    assert set(result.reports) == {"transformer", "tfidf", "ensemble"}
    configure_mlflow(home)
    model = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}/{result.version}")
    inner = model.unwrap_python_model().model
    assert inner.meta["family"] in ("transformer", "ensemble")
    out = model.predict(pd.DataFrame({"text": ["Gdzie jest moja paczka?", "Danke, alles super!"]}))
    assert list(out["language"]) == ["pl", "de"]
    assert np.allclose(out[["p_sentiment_negative", "p_sentiment_neutral", "p_sentiment_positive"]].sum(axis=1), 1)
    run = mlflow.MlflowClient().get_run(result.run_id)
    assert "test_tfidf/toxic/all/macro_f1" in run.data.metrics and "val_score" in run.data.metrics
    # the quantization check scored the same held-out rows with PyTorch fp32 and the (static) int8 export
    quant = inner.meta["quantization"]
    assert quant["method"] == "static"
    assert quant["rows"] > 0 and 0 <= quant["max_abs_diff"] < 0.1
    assert set(quant["macro_f1"]) == {"pytorch_fp32", "exported"} and "toxic" in quant["macro_f1"]["exported"]
    assert run.data.metrics["quantization/max_abs_diff"] == pytest.approx(quant["max_abs_diff"])
    # and scored some of those rows one at a time: how far a one-comment call moves from a batch
    batch = quant["batch"]
    assert 0 < batch["rows"] <= quant["rows"] and batch["max_abs_diff"] < 1e-5  # static scales: batch-invariant
    assert batch["decisions_changed"] == {head: 0.0 for head in ("sentiment", *BINARY_HEADS)}
    assert run.data.metrics["batch_consistency/max_abs_diff"] == pytest.approx(batch["max_abs_diff"])
    card = mlflow.artifacts.download_artifacts(run_id=result.run_id, artifact_path="model_card.md")
    assert "vs PyTorch fp32" in Path(card).read_text(encoding="utf-8")
    assert "Scored alone vs in batches" in Path(card).read_text(encoding="utf-8")


def test_truncated_encoder_trains_and_exports(tiny_base, seed_rows, tmp_path):
    frame = seed_frame(seed_rows)
    cfg = tiny_cfg(num_layers=1, max_steps=10, eval_every=10)
    result = fit_transformer(frame.iloc[:600], frame.iloc[600:], cfg, tiny_base)
    assert len(result.model.encoder.encoder.layer) == 1 and result.model.encoder.config.num_hidden_layers == 1
    backend = export_onnx(result, cfg, tmp_path / "onnx")
    out = backend.predict_proba(["Gdzie jest moja paczka?"])
    assert out["sentiment"].shape == (1, 3) and np.isclose(out["sentiment"].sum(), 1, atol=1e-5)


def test_frozen_fit_heads_are_logistic_regressions_on_the_untouched_encoder(tiny_base, seed_rows):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from transformers import AutoTokenizer

    frame = seed_frame(seed_rows)
    train, val = frame.iloc[:600], frame.iloc[600:]
    cfg = tiny_cfg(fit="frozen", frozen_c=0.5)
    result = fit_frozen(train, val, cfg, tiny_base)
    assert result.steps == 0 and len(result.history) == 1 and result.best_score == result.history[0]["val_score"]
    built = build_model(tiny_base, cfg).encoder.state_dict()
    assert all(torch.equal(built[k], v) for k, v in result.model.encoder.state_dict().items())  # not trained
    assert not any(p.requires_grad for p in result.model.encoder.parameters())  # a checkpoint carries the heads
    tokenizer = AutoTokenizer.from_pretrained(tiny_base)
    ids = encode(tokenizer, train["norm_text"].tolist(), cfg)
    features = pooled_features(result.model, ids, tokenizer.pad_token_id)
    served = torch_proba(result.model, ids, tokenizer.pad_token_id)

    def regression():
        return make_pipeline(StandardScaler(), LogisticRegression(C=0.5, class_weight="balanced", max_iter=3000))

    # each head is the regression sklearn fits on the standardised features, folded into the linear layer
    sentiment = regression().fit(features, train["sentiment"].map(SENTIMENT_LABELS.index))
    assert np.allclose(served["sentiment"], sentiment.predict_proba(features), atol=1e-3)
    for head in BINARY_HEADS:
        binary = regression().fit(features, train[head].astype(int))
        assert np.allclose(served[head], binary.predict_proba(features)[:, 1], atol=1e-3)
    again = fit_frozen(train, val, cfg, tiny_base)
    assert all(torch.equal(v, again.model.state_dict()[k]) for k, v in result.model.state_dict().items())


def test_frozen_fit_reads_each_head_from_its_labelled_rows_and_weighs_sources(tiny_base, seed_rows):
    frame = seed_frame(seed_rows)
    train, val = frame.iloc[:600], frame.iloc[600:]
    cfg = tiny_cfg(fit="frozen")
    plain = fit_frozen(train, val, cfg, tiny_base)
    extra = frame.iloc[600:].copy()  # labelled for sentiment only, all "positive"
    extra["source"], extra["sentiment"] = "extra", "positive"
    for head in BINARY_HEADS:
        extra[head] = pd.array([pd.NA] * len(extra), dtype="Int8")
    mixed = fit_frozen(pd.concat([train, extra]), val, cfg, tiny_base)
    # the extra rows change how rows are batched for pooling, so the features differ by float noise that
    # lbfgs (tol 1e-4) may carry into the weights on some CPUs: "same" is within 1e-3, while the extra rows
    # move the sentiment head by whole units
    assert torch.allclose(mixed.model.binary.weight, plain.model.binary.weight, atol=1e-3)
    assert torch.allclose(mixed.model.binary.bias, plain.model.binary.bias, atol=1e-3)
    assert not torch.allclose(mixed.model.sentiment.bias, plain.model.sentiment.bias, atol=0.1)
    assert mixed.bucket_share["extra"] == pytest.approx(len(extra) / (len(train) + len(extra)))
    left_out = fit_frozen(pd.concat([train, extra]), val, cfg, tiny_base, {"extra": 0.0})
    assert torch.allclose(left_out.model.sentiment.weight, plain.model.sentiment.weight, atol=1e-3)
    assert "extra" not in left_out.bucket_share
    with pytest.raises(ConfigError, match="every training source has weight 0"):
        fit_frozen(train, val, cfg, tiny_base, {source: 0.0 for source in train["source"].unique()})


def test_linear_head_with_one_class_none_or_a_class_missing():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 5))
    ones = np.ones(60)
    coef, bias = _linear_head(x, np.zeros(60, dtype=int), ones, 2, 1.0)  # negatives only
    assert not coef.any() and 1 / (1 + np.exp(-bias[0])) == pytest.approx(1 / 62)
    coef, bias = _linear_head(x[:0], np.zeros(0, dtype=int), ones[:0], 2, 1.0)  # no labelled row: P = 0.5
    assert not coef.any() and bias[0] == pytest.approx(0.0)
    labels = np.where(x[:, 0] + 0.3 * rng.normal(size=60) > 0, 2, 0)  # sentiment without "neutral"
    coef, bias = _linear_head(x, labels, ones, 3, 1.0)
    logits = x @ coef.T + bias
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    assert p[:, 1].max() < 1e-9  # the class no row had is never predicted
    binary_coef, binary_bias = _linear_head(x, labels // 2, ones, 2, 1.0)
    assert np.allclose(p[:, 2], 1 / (1 + np.exp(-(x @ binary_coef[0] + binary_bias[0]))))
    assert ((p[:, 2] > 0.5) == (labels == 2)).mean() > 0.8
    # a row of weight 2 counts as that row twice, in the standardisation and in the regression
    three = np.digitize(x[:, 0] + 0.3 * rng.normal(size=60), [-0.5, 0.5])
    weights = np.where(np.arange(60) < 20, 2.0, 1.0)
    weighted = _linear_head(x, three, weights, 3, 1.0)
    twice = _linear_head(np.vstack([x, x[:20]]), np.concatenate([three, three[:20]]), np.ones(80), 3, 1.0)
    assert np.allclose(weighted[0], twice[0], atol=1e-4) and np.allclose(weighted[1], twice[1], atol=1e-4)
    assert not np.allclose(weighted[0], _linear_head(x, three, ones, 3, 1.0)[0], atol=1e-2)


def test_bootstrap_config_family_through_mlflow(tmp_path, tiny_base):
    """The bootstrap's config (frozen heads, row-wise int8, the seed TF-IDF beside it) on the tiny base:
    trained, registered, reloaded, with the card saying how it was fitted."""
    import mlflow

    from models.store import configure_mlflow
    from training.settings import TrainingSettings
    from training.train import train

    cfg = bootstrap_config()
    assert cfg.family == "transformer" and cfg.transformer.fit == "frozen" and cfg.transformer.num_layers == 6
    tcfg = cfg.transformer.model_copy(update={"base_model": tiny_base, "text_prefix": "", "max_length": 32})
    home = tmp_path / "home"
    result = train([SEED], cfg.model_copy(update={"transformer": tcfg}), TrainingSettings(home=home, seed_data=SEED))
    assert set(result.reports) == {"transformer", "tfidf", "ensemble"}
    configure_mlflow(home)
    model = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}/{result.version}")
    inner = model.unwrap_python_model().model
    assert inner.meta["fit"] == "frozen" and inner.meta["steps"] == 0
    assert inner.meta["quantization"]["method"] == "rowwise"
    out = model.predict(pd.DataFrame({"text": ["Gdzie jest moja paczka?", "Danke, alles super!"]}))
    assert np.allclose(out[["p_sentiment_negative", "p_sentiment_neutral", "p_sentiment_positive"]].sum(axis=1), 1)
    card = mlflow.artifacts.download_artifacts(run_id=result.run_id, artifact_path="model_card.md")
    assert "Encoder frozen as pretrained" in Path(card).read_text(encoding="utf-8")


def test_balanced_sampler_weights_scale_a_bucket_and_zero_never_draws_it():
    buckets = ["a"] * 400 + ["b"] * 400 + ["c"] * 400
    sampler = BalancedSampler(buckets, batch_size=60, alpha=0.5, seed=2, weights={"a": 2.0, "c": 0})
    assert sampler.share() == pytest.approx({"a": 2 / 3, "b": 1 / 3, "c": 0.0})
    draws = Counter(buckets[i] for _ in range(100) for i in sampler.batch())
    assert draws["c"] == 0 and 1.7 < draws["a"] / draws["b"] < 2.3
    with pytest.raises(ValueError, match="weight 0"):
        BalancedSampler(buckets, 10, 0.5, 1, weights={"a": 0, "b": 0, "c": 0})


def test_length_grouped_batches_keep_the_sampler_rows_and_cut_padding():
    from training.transformer import LengthGroupedBatches

    rng = np.random.default_rng(3)
    buckets = ["a"] * 500 + ["b"] * 100
    lengths = list(rng.integers(4, 65, size=600))

    def padding(batches, n=200):
        drawn, real, padded = [], 0, 0
        for _ in range(n):
            rows = batches.batch()
            assert len(rows) == 16
            drawn += rows
            real += sum(lengths[r] for r in rows)
            padded += 16 * max(lengths[r] for r in rows)
        return drawn, 1 - real / padded

    plain_rows, plain_pad = padding(LengthGroupedBatches(BalancedSampler(buckets, 16, 0.5, 7), lengths, 1, 7))
    grouped_rows, grouped_pad = padding(LengthGroupedBatches(BalancedSampler(buckets, 16, 0.5, 7), lengths, 8, 7))
    again_rows, _ = padding(LengthGroupedBatches(BalancedSampler(buckets, 16, 0.5, 7), lengths, 8, 7))
    # the same rows as the sampler draws (so the same balance across sources), regrouped by length
    assert Counter(grouped_rows) == Counter(plain_rows)
    assert grouped_rows != plain_rows and grouped_rows == again_rows
    assert plain_pad > 0.3 and grouped_pad < plain_pad / 3


class _Fixed:
    """A back-end that returns given probabilities (to test how an ensemble combines and persists)."""

    kind = "tfidf"

    def __init__(self, probs):
        self.probs = probs

    def predict_proba(self, texts):
        return self.probs


def test_ensemble_weights_follow_the_better_member_per_head_and_language():
    from models.backends import EnsembleBackend
    from training.train import ensemble_weights

    rng = np.random.default_rng(0)
    n = 800
    langs = np.array(["pl"] * (n // 2) + ["en"] * (n // 2))
    y_tox, y_comp = rng.integers(0, 2, n), rng.integers(0, 2, n)
    frame = pd.DataFrame(
        {
            "lang": langs,
            "source": "s",
            "sentiment": None,
            "toxic": pd.array(y_tox, dtype="Int8"),
            "complaint": pd.array(y_comp, dtype="Int8"),
            "question": pd.array([None] * n, dtype="Int8"),
        }
    )
    noise = rng.random(n)
    good_tox, good_comp = 0.2 + 0.6 * y_tox, 0.2 + 0.6 * y_comp
    # toxic: the transformer knows Polish, TF-IDF knows English; complaint: TF-IDF knows both
    tox_transformer = np.where(langs == "pl", good_tox, noise)
    tox_tfidf = np.where(langs == "en", good_tox, noise)
    sentiment = np.full((n, 3), 1 / 3)
    outputs = {
        "transformer": {"sentiment": sentiment, "toxic": tox_transformer, "complaint": noise, "question": noise},
        "tfidf": {"sentiment": sentiment, "toxic": tox_tfidf, "complaint": good_comp, "question": noise},
    }
    head_w, lang_w = ensemble_weights(frame, outputs, min_support=10)
    assert head_w["complaint"]["transformer"] <= 0.25
    assert lang_w["toxic"]["pl"]["transformer"] >= 0.75 and lang_w["toxic"]["en"]["transformer"] <= 0.25
    assert "sentiment" not in head_w and "question" not in head_w  # unlabelled here: the plain average applies
    mixed = EnsembleBackend({}, {"transformer": 0.5, "tfidf": 0.5}, head_w, lang_w).combine(outputs, list(langs))
    pl, en = langs == "pl", langs == "en"
    assert np.abs(mixed["toxic"][pl] - good_tox[pl]).mean() < np.abs(tox_tfidf[pl] - good_tox[pl]).mean() / 2
    assert np.abs(mixed["toxic"][en] - good_tox[en]).mean() < np.abs(tox_transformer[en] - good_tox[en]).mean() / 2


def test_ensemble_weights_count_each_source_once_not_each_row():
    from training.train import ensemble_weights

    rng = np.random.default_rng(2)
    big, small = 2400, 300  # two Polish toxicity corpora with different definitions, 8:1 rows
    source = np.array(["big"] * big + ["small"] * small)
    y = rng.integers(0, 2, big + small)
    sign, is_big = 2 * y - 1, source == "big"
    # the transformer is strong on the big corpus and leans the wrong way on the small one; TF-IDF is weak
    # on the big corpus and strong on the small one
    transformer = 1 / (1 + np.exp(-(np.where(is_big, 3, -1) * sign + rng.normal(size=y.size))))
    tfidf = 1 / (1 + np.exp(-(np.where(is_big, 1, 3) * sign + rng.normal(size=y.size))))
    noise = rng.random(y.size)
    n = big + small
    frame = pd.DataFrame(
        {
            "lang": "pl",
            "source": source,
            "sentiment": None,
            "toxic": pd.array(y, dtype="Int8"),
            "complaint": pd.array([None] * n, dtype="Int8"),
            "question": pd.array([None] * n, dtype="Int8"),
        }
    )
    outputs = {
        "transformer": {
            "sentiment": np.full((n, 3), 1 / 3),
            "toxic": transformer,
            "complaint": noise,
            "question": noise,
        },
        "tfidf": {"sentiment": np.full((n, 3), 1 / 3), "toxic": tfidf, "complaint": noise, "question": noise},
    }
    pooled, pooled_lang = ensemble_weights(frame, outputs, 10, selection="pooled")
    per_source, per_source_lang = ensemble_weights(frame, outputs, 10, selection="source_mean")
    # pooled: the big corpus's rows pick an even mix; per source: the small corpus counts as much as the big one
    assert pooled["toxic"]["transformer"] == pooled_lang["toxic"]["pl"]["transformer"] == 0.5
    assert per_source["toxic"]["transformer"] == per_source_lang["toxic"]["pl"]["transformer"] == 0.25


def test_ensemble_with_head_weights_combines_per_head_and_survives_save_and_load(tmp_path, monkeypatch):
    from models import backends
    from models.backends import EnsembleBackend

    a = {"toxic": np.array([1.0, 0.0]), "sentiment": np.array([[1.0, 0.0, 0.0]] * 2)}
    b = {"toxic": np.array([0.0, 1.0]), "sentiment": np.array([[0.0, 0.0, 1.0]] * 2)}
    ens = EnsembleBackend(
        {"a": _Fixed(a), "b": _Fixed(b)},
        {"a": 0.5, "b": 0.5},
        {"toxic": {"a": 0.75, "b": 0.25}},
        {"toxic": {"de": {"a": 0.0, "b": 1.0}}, "sentiment": {"de": {"a": 1.0, "b": 0.0}}},
    )
    out = ens.predict_proba(["x", "y"])
    assert np.allclose(out["toxic"], [0.75, 0.25]) and np.allclose(out["sentiment"][0], [0.5, 0, 0.5])
    by_lang = ens.predict_proba(["x", "y"], langs=["de", "pl"])  # de: its own weights; pl: the head's
    assert np.allclose(by_lang["toxic"], [0.0, 0.25])
    assert np.allclose(by_lang["sentiment"], [[1, 0, 0], [0.5, 0, 0.5]])
    saved = {}
    monkeypatch.setattr(_Fixed, "save", lambda self, d: saved.__setitem__(str(d), self), raising=False)
    monkeypatch.setitem(backends._BACKENDS, "tfidf", type("L", (), {"load": staticmethod(lambda d: saved[str(d)])}))
    ens.save(tmp_path / "e")
    again = EnsembleBackend.load(tmp_path / "e")
    assert again.head_weights == {"toxic": {"a": 0.75, "b": 0.25}} and again.lang_weights == ens.lang_weights
    assert np.allclose(again.predict_proba(["x", "y"])["toxic"], out["toxic"])
    assert np.allclose(again.predict_proba(["x", "y"], ["de", "pl"])["toxic"], by_lang["toxic"])


def test_quantization_keeps_excluded_nodes_fp32(tiny_fit, tmp_path):
    import onnx

    result, _ = tiny_fit
    export_onnx(result, tiny_cfg(), tmp_path / "default")
    export_onnx(result, tiny_cfg(quantize_exclude=[]), tmp_path / "all")

    def ops(directory):
        return [(n.op_type, n.name) for n in onnx.load(str(directory / "model.onnx")).graph.node]

    ffn = [op for op, name in ops(tmp_path / "default") if "/intermediate/dense/" in name or "layer.0/output/" in name]
    assert "MatMul" in ffn  # the feed-forward MatMuls stay float
    quantized = [op for op, _ in ops(tmp_path / "default") if op in ("MatMulInteger", "DynamicQuantizeMatMul")]
    quantized_all = [op for op, _ in ops(tmp_path / "all") if op in ("MatMulInteger", "DynamicQuantizeMatMul")]
    assert 0 < len(quantized) < len(quantized_all)


def test_batch_consistency_finds_scores_that_depend_on_the_batch(tiny_fit, tmp_path):
    from training.train import batch_consistency

    rows = pd.DataFrame({"norm_text": ["short", "a much longer comment here", "mid one", "x"], "lang": ["en"] * 4})

    class BatchDependent:  # like dynamic int8: one scale over the whole batch
        def predict_proba(self, texts):
            raw = np.array([len(t) for t in texts], dtype=float)
            p = raw / raw.max() * 0.9
            return {"sentiment": np.column_stack([p, 1 - p, np.zeros_like(p)]), **{h: p for h in BINARY_HEADS}}

    dependent = BatchDependent()
    out = batch_consistency(dependent, rows, dependent.predict_proba(rows["norm_text"].tolist()), {})
    assert out["rows"] == 4 and out["max_abs_diff"] == pytest.approx(0.9 - 0.9 / 26)
    # alone every row scores 0.9 (positive); in the batch "short", "mid one" and "x" fall under 0.5
    assert out["decisions_changed"]["toxic"] == pytest.approx(0.75)
    assert out["decisions_changed"]["sentiment"] == pytest.approx(0.75)
    # per-language thresholds are the ones applied: a cut at 0.1 for English leaves only "x" changed
    changed = batch_consistency(
        dependent, rows, dependent.predict_proba(rows["norm_text"].tolist()), {"toxic": {"default": 0.5, "en": 0.1}}
    )["decisions_changed"]
    assert changed["toxic"] == pytest.approx(0.25) and changed["complaint"] == pytest.approx(0.75)

    result, val = tiny_fit  # the float export scores a comment the same alone or in any batch
    texts = val.iloc[:40]
    backend = export_onnx(result, tiny_cfg(quantize=False), tmp_path / "fp32")
    out = batch_consistency(backend, texts, backend.predict_proba(texts["norm_text"].tolist()), {})
    assert out["max_abs_diff"] < 1e-5 and not any(out["decisions_changed"].values())


@pytest.mark.parametrize("calibration", ["minmax", "percentile"])
def test_static_quantization_scores_a_comment_the_same_in_any_batch(tiny_fit, tmp_path, calibration):
    import onnx

    from training.train import batch_consistency

    result, val = tiny_fit
    cfg = tiny_cfg(quantization="static", calibration=calibration, calibration_percentile=99.0)
    with pytest.raises(ValueError, match="calibration texts"):
        export_onnx(result, cfg, tmp_path / "none")
    backend = export_onnx(result, cfg, tmp_path / "static", calibration_texts=val["norm_text"].tolist()[50:150])
    nodes = onnx.load(str(tmp_path / "static" / "model.onnx")).graph.node
    quantized = {n.name for n in nodes if n.op_type == "QuantizeLinear"}
    assert quantized and not any("/intermediate/dense/" in name for name in quantized)  # feed-forward stays fp32
    rows = val.iloc[:40]
    out = batch_consistency(backend, rows, backend.predict_proba(rows["norm_text"].tolist()), {})
    assert out["max_abs_diff"] < 1e-5 and not any(out["decisions_changed"].values())


def test_static_calibration_method_sets_the_activation_ranges(tiny_fit, tmp_path):
    """min-max keeps every activation in range; a (low) percentile clips: the two exports score differently."""
    result, val = tiny_fit
    calibration = val["norm_text"].tolist()[50:150]
    texts = val["norm_text"].tolist()[:50]
    scores = {}
    for method in ("minmax", "percentile"):
        cfg = tiny_cfg(quantization="static", calibration=method, calibration_percentile=95.0)
        scores[method] = export_onnx(result, cfg, tmp_path / method, calibration_texts=calibration).predict_proba(texts)
    assert max(np.abs(scores["minmax"][h] - scores["percentile"][h]).max() for h in scores["minmax"]) > 1e-4


def test_blockwise_quantization_covers_the_feed_forward_and_ignores_the_batch(tiny_fit, tmp_path):
    """blockwise: every MatMul (feed-forward included) becomes an 8-bit MatMulNBits with int8 compute; the
    activations are quantized per token, so a comment scores the same alone or in any batch."""
    import onnx

    from training.train import batch_consistency

    result, val = tiny_fit
    cfg = tiny_cfg(quantization="blockwise", quantization_block_size=16)
    backend = export_onnx(result, cfg, tmp_path / "blockwise")
    nodes = onnx.load(str(tmp_path / "blockwise" / "model.onnx")).graph.node
    nbits = [n for n in nodes if n.op_type == "MatMulNBits"]
    attributes = {
        (a.name, a.i) for n in nbits for a in n.attribute if a.name in ("bits", "accuracy_level", "block_size")
    }
    assert attributes == {("bits", 8), ("accuracy_level", 4), ("block_size", 16)}
    assert any("/intermediate/dense/" in n.name for n in nbits) and any("/attention/" in n.name for n in nbits)
    # only the attention's activation x activation products stay float MatMuls (no constant weight)
    graph = onnx.load(str(tmp_path / "blockwise" / "model.onnx")).graph
    initializers = {i.name: i for i in graph.initializer}
    assert not [n.name for n in nodes if n.op_type == "MatMul" and n.input[1] in initializers]
    # the word-embedding table is 8-bit blocks of a row, looked up by GatherBlockQuantized
    (lookup,) = [n for n in nodes if n.op_type == "GatherBlockQuantized"]
    assert {(a.name, a.i) for a in lookup.attribute} >= {("bits", 8), ("block_size", 16), ("quantize_axis", 1)}
    table = initializers[lookup.input[0]]
    embedding = result.model.encoder.embeddings.word_embeddings.weight
    assert table.data_type == onnx.TensorProto.UINT8 and list(table.dims) == list(embedding.shape)
    from training.transformer import encode

    texts = val["norm_text"].tolist()[:50]
    reference = torch_proba(result.model, encode(result.tokenizer, texts, cfg), result.tokenizer.pad_token_id)
    exported = backend.predict_proba(texts)
    assert max(np.abs(reference[h] - exported[h]).max() for h in reference) < 0.1
    assert not [n for n in nodes if n.op_type == "Gather" and "word_embeddings" in n.input[0]]
    rows = val.iloc[:40]
    out = batch_consistency(backend, rows, backend.predict_proba(rows["norm_text"].tolist()), {})
    assert out["max_abs_diff"] < 1e-5 and not any(out["decisions_changed"].values())

    # an explicit quantize_exclude keeps those MatMuls float, as for the other methods
    export_onnx(
        result,
        tiny_cfg(quantization="blockwise", quantization_block_size=16, quantize_exclude=[FEED_FORWARD]),
        tmp_path / "keep",
    )
    kept = onnx.load(str(tmp_path / "keep" / "model.onnx")).graph.node
    assert [n for n in kept if n.op_type == "MatMul" and "/intermediate/dense/" in n.name]
    assert not [n for n in kept if n.op_type == "MatMulNBits" and "/intermediate/dense/" in n.name]
    assert [n for n in kept if n.op_type == "GatherBlockQuantized"]
    export_onnx(
        result,
        tiny_cfg(quantization="blockwise", quantization_block_size=16, quantize_exclude=["word_embeddings"]),
        tmp_path / "emb",
    )
    float_table = onnx.load(str(tmp_path / "emb" / "model.onnx")).graph.node
    assert not [n for n in float_table if n.op_type == "GatherBlockQuantized"]
    assert [n for n in float_table if n.op_type == "Gather" and "word_embeddings" in n.input[0]]


def test_rowwise_quantization_covers_the_feed_forward_and_ignores_the_batch(tiny_fit, tmp_path):
    """rowwise: every MatMul with a weight (feed-forward included) multiplies int8 codes of each token's
    activations by 7-bit weights; the word-embedding table is 8-bit blocks as for blockwise; a comment scores the
    same alone or in any batch, on every CPU (no fp32 fallback to choose)."""
    import onnx

    from models.backends import OnnxBackend
    from training.train import batch_consistency
    from training.transformer import encode

    result, val = tiny_fit
    cfg = tiny_cfg(quantization="rowwise", quantization_block_size=16)
    backend = export_onnx(result, cfg, tmp_path / "rowwise")
    graph = onnx.load(str(tmp_path / "rowwise" / "model.onnx")).graph
    initializers = {i.name: i for i in graph.initializer}
    integer = [n for n in graph.node if n.op_type == "MatMulIntegerToFloat"]
    assert len(integer) == 6 * 2  # per layer: q, k, v, attention out, intermediate, output
    weights = [initializers[n.input[1]] for n in integer]
    assert all(w.data_type == onnx.TensorProto.INT8 for w in weights)
    assert max(np.abs(onnx.numpy_helper.to_array(w)).max() for w in weights) == 63  # 7 bits
    assert not [n for n in graph.node if n.op_type == "MatMul" and n.input[1] in initializers]
    assert [n for n in graph.node if n.op_type == "GatherBlockQuantized"]
    assert json.loads((tmp_path / "rowwise" / "onnx_config.json").read_text())["quantization"] == "rowwise"
    texts = val["norm_text"].tolist()[:50]
    reference = torch_proba(result.model, encode(result.tokenizer, texts, cfg), result.tokenizer.pad_token_id)
    exported = backend.predict_proba(texts)
    assert max(np.abs(reference[h] - exported[h]).max() for h in reference) < 0.1
    rows = val.iloc[:40]
    out = batch_consistency(backend, rows, backend.predict_proba(rows["norm_text"].tolist()), {})
    assert out["max_abs_diff"] < 1e-6 and not any(out["decisions_changed"].values())
    assert OnnxBackend(tmp_path / "rowwise", blockwise="fp32").blockwise_kernels is None  # runs as exported

    # rowwise_slice: the feed-forward output's inputs (intermediate_size 64) in slices of 32, the rest whole
    sliced = export_onnx(result, tiny_cfg(quantization="rowwise", rowwise_slice=32), tmp_path / "sliced")
    nodes = onnx.load(str(tmp_path / "sliced" / "model.onnx")).graph.node
    assert len([n for n in nodes if n.op_type == "Split"]) == 2  # one per layer
    assert len([n for n in nodes if n.op_type == "MatMulIntegerToFloat"]) == 6 * 2 + 2
    assert max(np.abs(reference[h] - sliced.predict_proba(texts)[h]).max() for h in reference) < 0.1

    export_onnx(result, tiny_cfg(quantization="rowwise", quantize_exclude=[FEED_FORWARD]), tmp_path / "keep")
    kept = onnx.load(str(tmp_path / "keep" / "model.onnx")).graph.node
    assert [n for n in kept if n.op_type == "MatMul" and "/intermediate/dense/" in n.name]
    assert len([n for n in kept if n.op_type == "MatMulIntegerToFloat"]) == 4 * 2


def test_blockwise_runs_as_fp32_weights_where_the_cpu_has_no_int8_dot_products(tiny_fit, tmp_path, monkeypatch):
    """On a CPU without int8 dot products (AVX2 only) MatMulNBits is slower than fp32, so the backend turns
    the int8 weights back into fp32 at load time: the probabilities of weight-only int8, batch-invariant,
    and the export on disk unchanged."""
    import onnx

    from models import backends, kernels
    from models.backends import OnnxBackend
    from training.train import batch_consistency
    from training.transformer import encode

    result, val = tiny_fit
    folder = tmp_path / "blockwise"
    export_onnx(result, tiny_cfg(quantization="blockwise", quantization_block_size=16), folder)
    assert json.loads((folder / "onnx_config.json").read_text())["quantization"] == "blockwise"
    on_disk = (folder / "model.onnx").read_bytes()
    texts = val["norm_text"].tolist()[:60]
    int8, fp32 = OnnxBackend(folder, blockwise="int8"), OnnxBackend(folder, blockwise="fp32")
    assert (int8.blockwise_kernels, fp32.blockwise_kernels) == ("int8", "fp32")
    assert (folder / "model.onnx").read_bytes() == on_disk

    # reference: ONNX Runtime's own weight-only path (accuracy level 1 dequantizes and multiplies in fp32)
    graph = onnx.load(str(folder / "model.onnx"))
    for node in graph.graph.node:
        for attribute in node.attribute:
            if node.op_type == "MatMulNBits" and attribute.name == "accuracy_level":
                attribute.i = 1
    reference = tmp_path / "level1"
    reference.mkdir()
    for name in (OnnxBackend.TOKENIZER, OnnxBackend.CONFIG):
        (reference / name).write_bytes((folder / name).read_bytes())
    onnx.save(graph, str(reference / OnnxBackend.MODEL))
    expected = OnnxBackend(reference, blockwise="int8").predict_proba(texts)
    got = fp32.predict_proba(texts)
    torch_p = torch_proba(result.model, encode(result.tokenizer, texts, tiny_cfg()), result.tokenizer.pad_token_id)
    for head in ("sentiment", *BINARY_HEADS):
        assert np.abs(got[head] - expected[head]).max() < 1e-5, head
        assert np.abs(got[head] - torch_p[head]).max() < 0.1, head
    rows = val.iloc[:40]
    out = batch_consistency(fp32, rows, fp32.predict_proba(rows["norm_text"].tolist()), {})
    assert out["max_abs_diff"] < 1e-5

    # auto: fp32 only where the CPU is known to lack int8 dot products
    monkeypatch.setattr(kernels, "cpu_flags", lambda: frozenset({"avx2", "fma"}))
    assert OnnxBackend(folder).blockwise_kernels == "fp32"
    monkeypatch.setenv("TRIAGE_ONNX_BLOCKWISE", "int8")
    assert OnnxBackend(folder).blockwise_kernels == "int8"
    monkeypatch.delenv("TRIAGE_ONNX_BLOCKWISE")
    monkeypatch.setattr(kernels, "cpu_flags", lambda: frozenset({"avx2", "avx512_vnni"}))
    assert OnnxBackend(folder).blockwise_kernels == "int8"
    monkeypatch.setattr(kernels, "cpu_flags", lambda: None)  # flags unknown (not Linux): as exported
    assert OnnxBackend(folder).blockwise_kernels == "int8"
    with pytest.raises(ValueError, match="TRIAGE_ONNX_BLOCKWISE must be one of auto, int8, fp32"):
        OnnxBackend(folder, blockwise="fast")

    # no writable temporary folder for the rewrite: a warning, and the int8 kernels as exported
    def no_space(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(backends.tempfile, "TemporaryDirectory", no_space)
    fallback = OnnxBackend(folder, blockwise="fp32")
    assert fallback.blockwise_kernels == "int8"
    assert max(np.abs(fallback.predict_proba(texts)[h] - int8.predict_proba(texts)[h]).max() for h in got) < 1e-6
    monkeypatch.undo()

    # other exports have no blockwise MatMuls: nothing to choose
    export_onnx(result, tiny_cfg(quantization="dynamic"), tmp_path / "dynamic")
    assert OnnxBackend(tmp_path / "dynamic", blockwise="fp32").blockwise_kernels is None


def test_word_embedding_blocks_decode_to_the_table(tiny_fit, tmp_path):
    """Each 8-bit value of the table is within half a step (its block's scale / 2) of the fp32 one; a tokenizer
    with more pieces than the table has rows is refused (GatherBlockQuantized would give zeros, not fail)."""
    import re

    import onnx
    from onnx import numpy_helper

    from training.transformer import _quantize_word_embeddings

    result, _ = tiny_fit
    export_onnx(result, tiny_cfg(quantize=False), tmp_path / "float")
    model = onnx.load(str(tmp_path / "float" / "model.onnx"))
    table = result.model.encoder.embeddings.word_embeddings.weight.detach().numpy()
    rows = table.shape[0]
    with pytest.raises(ValueError, match=f"{rows + 1} pieces, the word-embedding table {rows} rows"):
        _quantize_word_embeddings(model, 16, [], rows + 1)
    assert _quantize_word_embeddings(model, 16, [re.compile("word_embeddings")], rows) == 0  # kept float
    assert _quantize_word_embeddings(model, 16, [], rows) == table.nbytes - table.size - table.size // 16 * 4
    arrays = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    (codes,) = [a for name, a in arrays.items() if name.endswith("_q8")]
    (scales,) = [a for name, a in arrays.items() if name.endswith("_scales")]
    decoded = (codes.astype(np.float32) - 128).reshape(rows, -1, 16) * scales[:, :, None]
    step = np.repeat(scales, 16, axis=1)
    assert np.all(np.abs(decoded.reshape(rows, -1) - table) <= step / 2 + 1e-7)


def test_quantization_defaults_and_block_size():
    assert tiny_cfg().kept_float() == [FEED_FORWARD]
    assert tiny_cfg(quantization="static").kept_float() == [FEED_FORWARD]
    assert tiny_cfg(quantization="blockwise").kept_float() == []
    assert tiny_cfg(quantization="blockwise", quantize_exclude=["x"]).kept_float() == ["x"]
    assert tiny_cfg(quantization="rowwise").kept_float() == []
    with pytest.raises(ValidationError, match="power of two"):
        tiny_cfg(quantization="blockwise", quantization_block_size=96)


def test_model_card_says_how_the_checked_export_computes():
    from training.train import _serving_notes

    check = {"rows": 10, "max_abs_diff": 0.01, "macro_f1": {"pytorch_fp32": {"toxic": 0.8}, "exported": {"toxic": 0.8}}}
    rowwise = "\n".join(_serving_notes({"quantization": {**check, "method": "rowwise"}}))
    assert "Row-wise int8" in rowwise and "this check is what serving sees" in rowwise
    blockwise_check = {**check, "method": "blockwise", "blockwise_kernels": "int8"}
    blockwise = "\n".join(_serving_notes({"quantization": blockwise_check}))
    assert "Row-wise" not in blockwise and "int8 kernels" in blockwise
    assert "Row-wise" not in "\n".join(_serving_notes({"quantization": {**check, "method": "dynamic"}}))
