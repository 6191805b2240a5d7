"""Decision rules tuned on validation: source-balanced thresholds and sentiment's class offsets."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from models.pyfunc import META_FILE, TriageModel, sentiment_choice
from models.schema import SENTIMENT_LABELS
from training.evaluate import evaluate, tune_sentiment_offsets, tune_thresholds


def _two_corpora(rng: np.random.Generator) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """One language, two toxic corpora: a large balanced one whose best cut is ~0.5 and a small one with rare
    positives that the model scores lower (best cut ~0.3), as PolEval's beside BAN-PL's."""
    big_y = rng.integers(0, 2, 4000)
    big_p = np.clip(np.where(big_y == 1, 0.62, 0.38) + rng.normal(0, 0.1, 4000), 0, 1)
    small_y = (rng.random(600) < 0.12).astype(int)
    small_p = np.clip(np.where(small_y == 1, 0.38, 0.18) + rng.normal(0, 0.06, 600), 0, 1)
    frame = pd.DataFrame(
        {
            "lang": "pl",
            "source": ["big"] * 4000 + ["small"] * 600,
            "sentiment": None,
            "toxic": np.concatenate([big_y, small_y]).astype(float),
            "complaint": np.nan,
            "question": np.nan,
        }
    )
    return frame, {"toxic": np.concatenate([big_p, small_p]), "sentiment": np.full((4600, 3), 1 / 3)}


def test_source_mean_thresholds_let_a_small_corpus_count_once():
    frame, proba = _two_corpora(np.random.default_rng(1))
    pooled = tune_thresholds(frame, proba, 25, "pooled")
    balanced = tune_thresholds(frame, proba, 25, "source_mean")
    assert pooled["toxic"]["pl"] >= 0.4  # the big corpus sets the pooled cut
    assert balanced["toxic"]["pl"] < pooled["toxic"]["pl"]
    f1 = {
        name: {s: evaluate(frame, proba, rules)["toxic"][f"source_{s}"]["f1"] for s in ("big", "small")}
        for name, rules in (("pooled", pooled), ("balanced", balanced))
    }
    assert f1["balanced"]["small"] > f1["pooled"]["small"] + 0.1
    assert np.mean(list(f1["balanced"].values())) > np.mean(list(f1["pooled"].values()))


def test_source_mean_thresholds_equal_pooled_for_a_single_source():
    frame, proba = _two_corpora(np.random.default_rng(2))
    one = frame["source"] == "big"
    sub, p = frame[one], {h: v[one.to_numpy()] for h, v in proba.items()}
    assert tune_thresholds(sub, p, 25, "source_mean") == tune_thresholds(sub, p, 25, "pooled")


def _sentiment_rows(rng: np.random.Generator, neutral_bias: float) -> tuple[pd.DataFrame, np.ndarray]:
    """Positive/negative-only tweets that the model, trained beside neutral-heavy reviews, often calls neutral."""
    n = 1500
    y = rng.choice(["negative", "positive"], n)
    logits = rng.normal(0, 1, (n, 3))
    logits[np.arange(n), np.where(y == "negative", 0, 2)] += 1.5
    logits[:, 1] += neutral_bias
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    frame = pd.DataFrame({"lang": "pl", "source": "tweets", "sentiment": y})
    for head in ("toxic", "complaint", "question"):
        frame[head] = np.nan
    return frame, proba


def test_sentiment_offsets_move_decisions_away_from_an_overpredicted_class():
    frame, proba = _sentiment_rows(np.random.default_rng(3), neutral_bias=1.2)
    offsets = tune_sentiment_offsets(frame, proba, 25, "source_mean")
    assert offsets["pl"][0] == 0.0 and offsets["pl"][1] < 0  # neutral pushed down
    plain = evaluate(frame, {"sentiment": proba}, {})["sentiment"]["all"]["macro_f1"]
    tuned = evaluate(frame, {"sentiment": proba}, {"sentiment": offsets})["sentiment"]["all"]["macro_f1"]
    assert tuned > plain + 0.05


def test_sentiment_offsets_stay_zero_when_the_argmax_is_already_best():
    rng = np.random.default_rng(4)
    y = rng.integers(0, 3, 900)
    proba = np.full((900, 3), 0.1)
    proba[np.arange(900), y] = 0.8  # every argmax right: nothing can beat it, ties go to no offset
    frame = pd.DataFrame({"lang": "de", "source": "s", "sentiment": np.asarray(SENTIMENT_LABELS)[y]})
    assert tune_sentiment_offsets(frame, proba, 25) == {"default": [0.0, 0.0, 0.0], "de": [0.0, 0.0, 0.0]}


def test_sentiment_choice_uses_the_row_language_and_falls_back_to_default():
    proba = np.array([[0.3, 0.4, 0.3]] * 3)
    offsets = {"default": [0.0, -1.0, 0.0], "pl": [0.0, 0.0, 0.5]}
    assert sentiment_choice(proba, ["pl", "en", "de"], offsets).tolist() == [2, 0, 0]
    assert sentiment_choice(proba, ["pl", "en", "de"], {}).tolist() == [1, 1, 1]


class _Fixed:
    kind = "tfidf"

    def __init__(self, proba):
        self.proba = proba

    def predict_proba(self, texts, langs=None):
        return self.proba

    def save(self, directory):
        pass


def test_model_keeps_and_applies_sentiment_offsets_after_save(tmp_path):
    proba = {
        "sentiment": np.array([[0.3, 0.4, 0.3], [0.3, 0.4, 0.3]]),
        "toxic": np.array([0.2, 0.6]),
        "complaint": np.array([0.1, 0.1]),
        "question": np.array([0.1, 0.1]),
    }
    rules = {"toxic": {"default": 0.5}, "sentiment": {"default": [0.0, 0.0, 0.0], "pl": [0.0, -0.5, 0.0]}}
    TriageModel(_Fixed(proba), {"thresholds": rules}).save(tmp_path)
    meta = json.loads((tmp_path / META_FILE).read_text())
    assert meta["thresholds"]["sentiment"] == rules["sentiment"]
    reloaded = TriageModel(_Fixed(proba), meta)
    out = reloaded.predict(["a", "b"], ["pl", "en"])
    assert out["sentiment"].tolist() == ["negative", "neutral"]  # pl's offset moves it; en keeps the argmax
    assert out["p_sentiment_neutral"].tolist() == [0.4, 0.4]  # probabilities are untouched
    assert out["toxic"].tolist() == [False, True]
