"""Training on the seed set into a real (temporary) MLflow store: register, promote, reload by alias."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from models.schema import HEADS, MODEL_NAME, OUTPUT_COLUMNS
from models.text import NORMALIZATION_VERSION
from training.config import ConfigError, TrainConfig, load_config
from training.evaluate import tune_threshold
from training.registry import PromotionError, champion_version, promote
from training.split import assign_splits


def test_run_logs_metrics_per_head_and_language_and_registers(registry):
    client = MlflowClient()
    version = client.get_model_version(MODEL_NAME, registry["version"])
    run = client.get_run(version.run_id)
    metrics = run.data.metrics
    for head in HEADS:
        assert f"test/{head}/all/macro_f1" in metrics
        for lang in ("pl", "ru", "uk", "en", "de"):
            assert f"test/{head}/lang_{lang}/macro_f1" in metrics
    assert "test/toxic/all/roc_auc" in metrics and "test/sentiment/all/roc_auc" not in metrics
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"data_summary.json", "evaluation.json", "model_card.md"} <= artifacts
    card = mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/model_card.md")
    assert "- question: only the bundled seed set labels it in pl 140 rows (41 positive), ru 140 rows" in card
    # Better than chance on held-out rows even from 560 training comments.
    assert metrics["test/question/all/macro_f1"] > 0.7
    assert metrics["test/sentiment/all/macro_f1"] > 0.45


def test_pyfunc_round_trip_by_alias(registry):
    model = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}@champion")
    frame = pd.DataFrame({"text": ["Gdzie jest moja paczka? Czekam już dwa tygodnie!", "Дякую, все супер!"]})
    out = model.predict(frame)
    assert list(out.columns) == list(OUTPUT_COLUMNS)
    assert list(out["language"]) == ["pl", "uk"]
    probs = out[["p_sentiment_negative", "p_sentiment_neutral", "p_sentiment_positive"]].to_numpy()
    assert np.allclose(probs.sum(axis=1), 1.0)
    assert out.loc[0, "p_question"] > out.loc[1, "p_question"]
    assert out.loc[1, "sentiment"] == "positive"
    # The signature and input example travel with the model.
    info = mlflow.models.get_model_info(f"models:/{MODEL_NAME}@champion")
    assert [c.name for c in info.signature.inputs.inputs] == ["text", "lang"]
    meta = model.unwrap_python_model().model.meta
    assert meta["data_summary"]["rows"] == 700 and set(meta["thresholds"]) == {"toxic", "complaint", "question"}
    assert meta["normalization"] == NORMALIZATION_VERSION
    # A given language is used as is.
    forced = model.predict(pd.DataFrame({"text": ["ok"], "lang": ["de"]}))
    assert forced.loc[0, "language"] == "de"


def test_promote_refuses_regression_on_same_rows_unless_forced(registry):
    from training.train import train

    settings = registry["settings"]
    weak = TrainConfig(min_threshold_support=10)
    weak.tfidf.char_features = 1024
    weak.tfidf.word_features = 1024
    weak.tfidf.C = 0.001
    result = train([settings.seed_data], weak, settings)
    client = MlflowClient()
    champion = champion_version(client)
    with pytest.raises(PromotionError, match="regresses"):
        promote(result.version)
    assert champion_version(client) == champion
    forced = promote(result.version, force=True)
    assert forced.comparable and champion_version(client) == result.version
    promote(champion, force=True)
    with pytest.raises(PromotionError, match="no version 999"):
        promote("999")


def test_a_challenger_tested_on_other_rows_is_compared_on_its_own_rows_or_refused(registry):
    """Training scores the champion on the challenger's test rows; promotion compares the two there. A version
    without that comparison (trained before this champion) is refused unless forced: it was promoted unchecked."""
    from training.train import train

    settings = registry["settings"]
    client = MlflowClient()
    champion = champion_version(client)
    weak = TrainConfig(min_threshold_support=10, max_rows_per_source=400)  # other rows: another fingerprint
    weak.tfidf.char_features = 1024
    weak.tfidf.word_features = 1024
    weak.tfidf.C = 0.001
    result = train([settings.seed_data], weak, settings)
    run = client.get_run(client.get_model_version(MODEL_NAME, result.version).run_id)
    assert run.data.tags["triage.champion_compared"] == champion
    assert "champion_on_test/sentiment/macro_f1" in run.data.metrics
    # per language too: each language slice the challenger was tested on
    languages = [k.split("/")[1:3] for k in run.data.metrics if k.startswith("test/") and k.endswith("/macro_f1")]
    languages = [f"{head}/{slice_}" for head, slice_ in languages if slice_.startswith("lang_")]
    assert languages and all(f"champion_on_test/{k}/macro_f1" in run.data.metrics for k in languages)
    with pytest.raises(PromotionError, match="regresses"):
        promote(result.version)
    client.delete_tag(run.info.run_id, "triage.champion_compared")
    with pytest.raises(PromotionError, match="whether it regresses is unknown"):
        promote(result.version)
    assert champion_version(client) == champion
    forced = promote(result.version, force=True)
    assert not forced.comparable and champion_version(client) == result.version
    promote(champion, force=True)


def test_promote_refuses_a_loss_in_one_language_that_the_pooled_score_hides(registry):
    """A challenger as good over all rows but worse in one language by more than the language tolerance is
    refused where that language has enough test rows to tell; on fewer rows the language is not compared."""
    from training.config import seed_config
    from training.train import train

    settings = registry["settings"]
    client = MlflowClient()
    champion = champion_version(client)
    result = train([settings.seed_data], seed_config(), settings)  # the champion's config: the same test rows
    run_id = client.get_model_version(MODEL_NAME, result.version).run_id
    metrics = client.get_run(run_id).data.metrics
    rows = metrics["test/sentiment/lang_pl/support"]
    assert 10 <= rows < 100
    key = "test/sentiment/lang_pl/macro_f1"
    client.log_metric(run_id, key, metrics[key] - 0.2)  # Polish sentiment loses 0.2; the head over all rows does not
    with pytest.raises(PromotionError, match=r"regresses .*sentiment/lang_pl: [0-9.]+ -> [0-9.]+"):
        promote(result.version, language_min_rows=10)
    assert champion_version(client) == champion
    within = promote(result.version, language_min_rows=10, language_tolerance=0.25)
    assert within.comparison["sentiment/lang_pl"][1] == pytest.approx(metrics[key] - 0.2)
    promote(champion, force=True)
    unchecked = promote(result.version)  # the default asks for 100 Polish test rows: the seed set has fewer
    assert "sentiment/lang_pl" not in unchecked.comparison and "sentiment" in unchecked.comparison
    promote(champion, force=True)


def test_promote_refuses_a_challenger_that_lacks_a_head_the_champion_has(registry):
    """A head the champion was tested on and the challenger has no score for counts as lost: refused, the
    message naming it with '-' for the missing score, not a crash formatting nothing as a number."""
    from training.config import seed_config
    from training.train import train

    settings = registry["settings"]
    client = MlflowClient()
    champion = champion_version(client)
    older = train([settings.seed_data], seed_config(), settings)
    promote(older.version, force=True)
    older_run = client.get_model_version(MODEL_NAME, older.version).run_id
    client.log_metric(older_run, "test/retired_head/all/macro_f1", 0.9)  # a head only the champion has
    newer = train([settings.seed_data], seed_config(), settings)  # the same rows, every other head alike
    with pytest.raises(PromotionError, match=r"regresses against champion .*retired_head: 0\.900 -> -"):
        promote(newer.version)
    assert champion_version(client) == older.version
    assert promote(newer.version, force=True).comparison["retired_head"] == (0.9, None)
    promote(champion, force=True)


def test_a_language_is_compared_only_on_enough_rows_of_each_class():
    from training.registry import _Tested

    tested = _Tested(
        {}, None, counts={"toxic/lang_pl": {"support": 300, "positives": 5}, "sentiment/lang_pl": {"support": 300}}
    )
    assert tested.compared("toxic", 100) and tested.compared("sentiment/lang_pl", 100)
    assert not tested.compared("toxic/lang_pl", 100)  # 5 positives: fewer than a tenth of 100
    assert tested.compared("toxic/lang_pl", 50)
    assert not tested.compared("sentiment/lang_de", 100)  # no rows at all


def test_split_is_deterministic_stratified_and_keeps_copies_together():
    rng = np.random.default_rng(0)
    texts = [f"comment number {i} about order {rng.integers(1000)}" for i in range(2000)]
    texts[10] = texts[20] = "the very same text"
    frame = pd.DataFrame(
        {
            "id": [str(i) for i in range(2000)],
            "text": texts,
            "source": ["a"] * 1000 + ["b"] * 1000,
            "sentiment": None,
            "toxic": [i % 4 == 0 for i in range(2000)],
            "complaint": None,
            "question": None,
        }
    )
    first = assign_splits(frame, 0.1, 0.1, seed=7)
    assert first.equals(assign_splits(frame, 0.1, 0.1, seed=7))
    assert not first.equals(assign_splits(frame, 0.1, 0.1, seed=8))
    assert first[10] == first[20]
    for source in ("a", "b"):
        for label in (True, False):
            sel = (frame["source"] == source) & (frame["toxic"] == label)
            share = (first[sel] == "test").mean()
            assert 0.08 <= share <= 0.12


def test_split_keeps_retweets_and_rewordings_with_their_original():
    """A retweet ("RT @user: ...") is the tweet it copies, and the rewordings a source's ids group together
    (ParaDetox: a toxic sentence and its detoxified versions) are split as one: none in train while another
    is held out. Before, 1,609 of ParaDetox's 1,780 test rows had a rewording in train and 101 of PolEval's
    1,002 a retweeted copy."""
    n = 3000
    rows = []
    for i in range(n):
        rows.append({"id": f"para:train-{i}-toxic", "text": f"ty debilu numer {i}", "toxic": 1})
        for k in (1, 2):
            rows.append({"id": f"para:train-{i}-neutral{k}", "text": f"prosze pana numer {i} wersja {k}", "toxic": 0})
        rows.append({"id": f"tw:{i}", "text": f"@USER ten tweet {i} http://t.co/x{i}", "toxic": i % 2})
        rows.append({"id": f"tw:rt{i}", "text": f"RT @USER @USER: ten tweet {i}", "toxic": i % 2})
    frame = pd.DataFrame(rows)
    frame["source"] = frame["id"].str.split(":").str[0]
    for head in ("sentiment", "complaint", "question"):
        frame[head] = None
    split = assign_splits(frame, 0.1, 0.1, seed=7, group_ids={"para": r"^para:(.+)-(?:toxic|neutral\d*)$"})
    groups = frame["id"].str.extract(r"^(?:para:(.+)-(?:toxic|neutral\d*)|tw:(?:rt)?(\d+))$").fillna("").sum(axis=1)
    assert split.groupby(groups.to_numpy()).nunique().max() == 1  # every group in one split
    assert 0.08 <= (split[frame["source"] == "para"] == "test").mean() <= 0.13
    ungrouped = assign_splits(frame, 0.1, 0.1, seed=7)
    para = frame["source"] == "para"
    assert ungrouped[para].groupby(groups[para].to_numpy()).nunique().max() > 1  # what the groups prevent
    assert ungrouped[~para].groupby(groups[~para].to_numpy()).nunique().max() == 1  # retweets: always


def test_split_group_patterns_are_validated():
    from training.config import SplitConfig

    with pytest.raises(ValueError, match="needs a group"):
        SplitConfig(group_ids={"paradetox": "^paradetox:.+$"})
    with pytest.raises(ValueError, match="not a regular expression"):
        SplitConfig(group_ids={"paradetox": "^(paradetox"})


def test_threshold_tuning_finds_the_separating_cut():
    y = np.array([0] * 50 + [1] * 50)
    p = np.concatenate([np.linspace(0.0, 0.3, 50), np.linspace(0.35, 0.6, 50)])
    t = tune_threshold(y, p)
    assert 0.3 < t <= 0.35


def two_sources(seed: int) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """One language, two toxicity corpora: a large one, half positive, separable near 0.5; a small one with 8%
    positives scored high, and negatives spread up to 0.8 (its best cut lies far above the large one's)."""
    rng = np.random.default_rng(seed)
    y_big = rng.random(2000) < 0.5
    p_big = np.clip(0.5 + np.where(y_big, 0.15, -0.15) + rng.normal(0, 0.2, 2000), 0, 1)
    y_small = rng.random(400) < 0.08
    p_small = np.where(y_small, rng.uniform(0.8, 1.0, 400), rng.uniform(0.0, 0.8, 400))
    frame = pd.DataFrame(
        {
            "lang": "pl",
            "source": ["big"] * 2000 + ["small"] * 400,
            "toxic": np.concatenate([y_big, y_small]).astype(float),
            "complaint": np.nan,
            "question": np.nan,
        }
    )
    p = np.concatenate([p_big, p_small])
    return frame, {"toxic": p, "complaint": np.zeros(len(p)), "question": np.zeros(len(p))}


def test_source_mean_thresholds_count_each_corpus_once():
    from training.evaluate import THRESHOLD_GRID, f1_curve, tune_thresholds

    frame, proba = two_sources(0)
    pooled = tune_thresholds(frame, proba, 10)["toxic"]
    mean = tune_thresholds(frame, proba, 10, selection="source_mean")["toxic"]
    assert set(pooled) == set(mean) == {"default", "pl"} and pooled["pl"] == tune_threshold(
        frame["toxic"], proba["toxic"]
    )
    assert pooled["pl"] < 0.6 < mean["pl"]  # the large corpus sets the pooled cut
    assert tune_thresholds(frame.drop(columns="source"), proba, 10)["toxic"] == pooled  # pooled reads no source

    def source_f1(data: pd.DataFrame, p: np.ndarray, t: float) -> dict[str, float]:
        at = int(np.argmin(np.abs(THRESHOLD_GRID - t)))
        return {s: f1_curve(data["toxic"][data["source"] == s], p[data["source"] == s])[at] for s in ("big", "small")}

    test, test_p = two_sources(1)  # fresh rows of the same corpora
    before, after = source_f1(test, test_p["toxic"], pooled["pl"]), source_f1(test, test_p["toxic"], mean["pl"])
    assert after["small"] > before["small"] + 0.1 and np.mean(list(after.values())) > np.mean(list(before.values()))
    few = frame[(frame["source"] == "big") | (frame["toxic"] == 0)]  # the small corpus keeps no positive
    keep = {h: p[few.index.to_numpy()] for h, p in proba.items()}
    only_big = tune_thresholds(few.reset_index(drop=True), keep, 10, selection="source_mean")["toxic"]
    assert only_big == tune_thresholds(few.reset_index(drop=True), keep, 10)["toxic"]  # a source needs both classes
    none = tune_thresholds(frame, proba, 1500, selection="source_mean")["toxic"]
    assert none == {"default": pooled["default"]}  # no corpus with enough of each class: the pooled cut


def test_training_tunes_the_served_thresholds_as_configured(monkeypatch):
    from training import train as train_module
    from training.evaluate import tune_thresholds

    frame, proba = two_sources(0)
    frame = frame.assign(norm_text=[f"comment {i}" for i in range(len(frame))], sentiment=None)

    class Scores:
        def predict_proba(self, texts: list[str]) -> dict[str, np.ndarray]:
            return {**proba, "sentiment": np.full((len(texts), 3), 1 / 3)}

    monkeypatch.setattr(train_module, "fit_tfidf", lambda *args: Scores())
    got = {}
    for selection in ("pooled", "source_mean"):
        cfg = TrainConfig(threshold_selection=selection)
        got[selection] = train_module.fit_tfidf_family(frame, frame, frame, cfg).thresholds
        assert got[selection] == tune_thresholds(frame, proba, cfg.min_threshold_support, selection)
    assert got["pooled"]["toxic"]["pl"] < got["source_mean"]["toxic"]["pl"]
    with pytest.raises(ValueError, match="threshold_selection"):
        TrainConfig(threshold_selection="median")


def test_a_model_is_served_on_text_normalised_as_it_was_trained(tmp_path):
    import json

    from models.pyfunc import META_FILE, TriageModel
    from models.schema import BINARY_HEADS

    class Recording:  # keeps the texts the back-end is asked to score
        kind = "recording"

        def __init__(self):
            self.seen: list[str] = []

        def predict_proba(self, texts, langs=None):
            self.seen += texts
            return {
                "sentiment": np.tile([0.2, 0.5, 0.3], (len(texts), 1)),
                **{h: np.zeros(len(texts)) for h in BINARY_HEADS},
            }

        def save(self, directory):
            pass

    reply = "@a @b @c you are a liar"
    cases = {
        "recorded 1": ({"normalization": 1}, 1, "@USER @USER @USER you are a liar"),
        "recorded 2": ({"normalization": 2}, 2, "@USER you are a liar"),
        # logged before versions were recorded: by when it was trained
        "old, unrecorded": ({"trained_at": "2026-11-28T10:00:00+00:00"}, 1, "@USER @USER @USER you are a liar"),
        "new, unrecorded": ({"trained_at": "2026-12-03T10:00:00+00:00"}, 2, "@USER you are a liar"),
        "no zone, unrecorded": ({"trained_at": "2026-11-28 10:00"}, 1, "@USER @USER @USER you are a liar"),
        "no time": ({"trained_at": "last week"}, 2, "@USER you are a liar"),
        "no date at all": ({}, 2, "@USER you are a liar"),
    }
    for name, (meta, version, seen) in cases.items():
        backend = Recording()
        model = TriageModel(backend, meta)
        model.predict_columns([reply], ["en"])
        assert (model.normalization, backend.seen) == (version, [seen]), name
    saved = json.loads(
        (TriageModel(Recording(), {"trained_at": "2026-11-28T10:00:00+00:00"}).save(tmp_path) / META_FILE).read_text()
    )
    assert saved["normalization"] == 1  # written down once known
    with pytest.raises(ValueError, match="normalised as version 3; this code knows 1, 2"):
        TriageModel(Recording(), {"normalization": 3})


def test_f1_curve_matches_sklearn_at_every_threshold():
    from sklearn.metrics import f1_score

    from training.evaluate import THRESHOLD_GRID, f1_curve

    rng = np.random.default_rng(5)
    for positives in (0.05, 0.5):
        y = (rng.random(400) < positives).astype(int)
        p = np.round(rng.random(400) * 0.7 + 0.25 * y, 2)
        expected = [f1_score(y, p >= t, zero_division=0) for t in THRESHOLD_GRID]
        assert np.allclose(f1_curve(y, p), expected)


def test_shipped_training_configs_load_and_share_one_held_out_split():
    """Every training config in configs/ is valid, and all use the same split and source weights, so their
    held-out numbers (the issue's TF-IDF vs transformer vs ensemble table) are on the same test rows."""
    from pathlib import Path

    paths = sorted(p for p in (Path(__file__).parent.parent / "configs").glob("*.yaml") if p.name != "policy.yaml")
    configs = {p.name: load_config(p) for p in paths}
    cpu = {"transformer_cpu.yaml", "transformer_cpu_6l.yaml", "transformer_cpu_bf16.yaml"}
    assert {"tfidf.yaml", "transformer_gpu.yaml"} | cpu <= set(configs)
    assert len({c.split.model_dump_json() for c in configs.values()}) == 1
    assert len({tuple(sorted(c.source_weights.items())) for c in configs.values()}) == 1
    transformers = {n: c.transformer for n, c in configs.items() if c.family == "transformer"}
    assert len({t.text_prefix for t in transformers.values()}) == 1  # e5 expects the same prefix everywhere


def test_config_extends_another_and_overrides_it_key_by_key(tmp_path):
    (tmp_path / "base.yaml").write_text(
        "family: transformer\nsource_weights:\n  a: 3\n  b: 2\n"
        "transformer:\n  max_length: 64\n  max_steps: 100\n  quantize_exclude: ['x']\n"
    )
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "mid.yaml").write_text("extends: ../base.yaml\nsource_weights:\n  b: 1\n")
    child = tmp_path / "sub" / "child.yaml"
    child.write_text("extends: mid.yaml\ntransformer:\n  max_steps: 200\n  quantize_exclude: null\n")
    cfg = load_config(child)
    assert cfg.family == "transformer" and cfg.source_weights == {"a": 3, "b": 1}
    assert (cfg.transformer.max_length, cfg.transformer.max_steps) == (64, 200)
    assert cfg.transformer.quantize_exclude is None  # a key set to null replaces the base's value


@pytest.mark.parametrize(
    ("files", "fragment"),
    [
        ({"c.yaml": "extends: gone.yaml\n"}, "gone.yaml: no such file (extended by {dir}/c.yaml)"),
        ({"c.yaml": "extends: b.yaml\n", "b.yaml": "extends: c.yaml\n"}, "b.yaml: extends: c.yaml extends this"),
        ({"c.yaml": "extends: c.yaml\n"}, "c.yaml: extends: c.yaml extends this file again"),
        ({"c.yaml": "extends: [a.yaml]\n"}, "c.yaml: extends: must be the path of another config file"),
        ({"c.yaml": "extends: b.yaml\n", "b.yaml": "tfidf:\n  bogus: 1\n"}, "c.yaml: tfidf.bogus: Extra inputs"),
    ],
)
def test_config_extends_errors_name_the_file(tmp_path, files, fragment):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "c.yaml")
    assert fragment.format(dir=tmp_path) in str(info.value)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("tfidf:\n  bogus: 1\n", "tfidf.bogus: Extra inputs are not permitted"),
        ("tfidf:\n  char_ngram: [5, 2]\n", "char_ngram must be [low, high]"),
        ("split:\n  test_fraction: 0.9\n", "split.test_fraction"),
        ("- a list\n", "must be a mapping"),
        # checked at load, not at export after an hour of fine-tuning
        ("transformer:\n  quantize_exclude: ['layer.(0']\n", "quantize_exclude: Value error, 'layer.(0' is not a"),
        ("transformer:\n  device: gpu\n", "transformer.device: Value error, must be cpu, cuda, cuda:N or mps"),
    ],
)
def test_config_errors_name_the_field(tmp_path, text, fragment):
    bad = tmp_path / "c.yaml"
    bad.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    assert str(info.value).startswith(str(bad)) and fragment in str(info.value)


def test_fast_linear_matches_sklearn_probabilities():
    import scipy.sparse as sp
    from sklearn.linear_model import LogisticRegression, SGDClassifier

    from models.backends import FastLinear

    rng = np.random.default_rng(0)
    X = sp.random(300, 50, density=0.2, format="csr", random_state=1, dtype=np.float32)
    y3 = rng.choice(["negative", "neutral", "positive"], 300)
    y2 = rng.choice(["0", "1"], 300)
    for est, y in [
        (LogisticRegression(max_iter=500), y3),
        (LogisticRegression(solver="liblinear"), y2),
        (SGDClassifier(loss="log_loss", random_state=0), y3),
        (SGDClassifier(loss="log_loss", random_state=0), y2),
    ]:
        est.fit(X, y)
        assert np.allclose(FastLinear(est).predict_proba(X), est.predict_proba(X), atol=1e-9), est


def _conflicting_sources() -> pd.DataFrame:
    """Two sources that label the same texts oppositely: whichever weighs more decides the prediction."""
    rows = []
    for i in range(40):
        for source, label in (("strict", 1), ("lenient", 0)):
            rows.append({"text": f"ty glupi kliencie numer {i}", "source": source, "toxic": label})
        rows.append({"text": f"dziękuję za pomoc {i}", "source": "strict", "toxic": 0})
        rows.append({"text": f"bardzo miła obsługa {i}", "source": "lenient", "toxic": 0})
    frame = pd.DataFrame(rows)
    frame["norm_text"] = frame["text"]
    frame["lang"] = "pl"
    for head in ("sentiment", "complaint", "question"):
        frame[head] = None
    return frame


def test_source_weights_scale_a_sources_say_in_tfidf_and_zero_leaves_it_out():
    from training.config import TfidfConfig
    from training.tfidf import fit_tfidf

    frame = _conflicting_sources()
    cfg = TfidfConfig(char_features=2**12, word_features=2**12)
    probe = ["ty glupi kliencie numer 7"]
    unweighted = fit_tfidf(frame, cfg).predict_proba(probe)["toxic"][0]
    strict_heavier = fit_tfidf(frame, cfg, {"strict": 4.0}).predict_proba(probe)["toxic"][0]
    strict_only = fit_tfidf(frame, cfg, {"lenient": 0}).predict_proba(probe)["toxic"][0]
    assert strict_heavier > unweighted + 0.1
    assert strict_only > 0.8 > unweighted


def test_source_weights_are_validated(tmp_path):
    bad = tmp_path / "c.yaml"
    bad.write_text("source_weights:\n  poleval2019_cbd: -1\n")
    with pytest.raises(ConfigError, match="source_weights.poleval2019_cbd must be >= 0"):
        load_config(bad)
    assert TrainConfig.model_validate({"source_weights": {"a": 0, "b": 3}}).source_weights == {"a": 0, "b": 3}


def test_data_that_cannot_train_or_hold_out_a_head_fails_before_training(caplog):
    from training.data import LoadedData
    from training.prepare import prepare

    frame = _conflicting_sources()
    frame["id"] = [f"r{i}" for i in range(len(frame))]
    loaded = LoadedData(frame=frame.drop(columns=["norm_text"]), files=["c.jsonl"])
    with pytest.raises(ConfigError, match="every source of the training rows has weight 0"):
        prepare(loaded, TrainConfig(source_weights={"strict": 0, "lenient": 0}))
    with caplog.at_level("WARNING"):
        prepare(loaded, TrainConfig(source_weights={"strcit": 2}))  # a typo is said, not silently weight 1
    assert "source_weights: strcit: no source of that name" in caplog.text
    tiny = LoadedData(frame=frame.drop(columns=["norm_text"]).iloc[:4], files=["c.jsonl"])
    with pytest.raises(ConfigError, match="head toxic has training rows but no val rows"):
        prepare(tiny, TrainConfig())


def test_known_weaknesses_come_from_the_models_own_data():
    """The card names, per head, the languages labelled only by the seed set or not at all, and the held-out
    figures too small to read; a head labelled by corpora everywhere, with enough held-out rows, gets no line."""
    from training.train import known_weaknesses

    def cell(sources, rows=200, positives=None):
        return {"rows": rows, "sources": sources, **({} if positives is None else {"positives": positives})}

    summary = {
        "seed_sources": ["seed"],
        "by_head_language": {
            "sentiment": {lang: cell(["corpus", "seed"]) for lang in ("pl", "ru", "uk", "en", "de")},
            "toxic": {
                "pl": cell(["ban_pl", "seed"], positives=90),
                "ru": cell(["paradetox"], positives=90),
                "uk": cell(["seed"], 140, 16),
                "en": cell(["davidson"], positives=90),
                "de": cell(["germeval2018"], positives=90),
            },
            "complaint": {"en": cell(["complaints_en"], positives=80), "pl": cell(["seed"], 140, 58)},
        },
    }
    enough = {"support": 200.0, "positives": 50.0}
    report = {
        "sentiment": {f"lang_{lang}": {"support": 200.0} for lang in ("pl", "ru", "uk", "en", "de")},
        "toxic": {
            "lang_pl": enough,
            "lang_ru": enough,
            "lang_en": enough,
            "lang_de": enough,
            "lang_uk": {"support": 14.0, "positives": 2.0},
        },  # fmt: skip
        "complaint": {"lang_en": enough},  # pl: under 10 held-out rows, so no slice
    }
    lines = known_weaknesses(summary, report)
    assert not any(line.startswith("- sentiment") for line in lines)
    assert not any(line.startswith("- question") and "seed set" in line for line in lines)
    assert "- toxic: only the bundled seed set labels it in uk 140 rows (16 positive); what it learnt from the " \
        "corpora in pl, ru, en, de carries the rest." in lines  # fmt: skip
    assert "- toxic: held-out figures on too few rows to be read as numbers: uk 14 rows (2 positive)." in lines
    assert "- complaint: only the bundled seed set labels it in pl 140 rows (58 positive); what it learnt from the " \
        "corpora in en carries the rest." in lines  # fmt: skip
    assert (
        "- complaint: no labelled rows in ru, uk, de; what it learnt from the corpora in en carries the rest." in lines
    )
    assert "- complaint: held-out figures on too few rows to be read as numbers: pl under 10 rows." in lines
    assert "- question: no labelled rows in pl, ru, uk, en, de." in lines
    # without knowing which sources are the seed set's, nothing is called seed-only
    assert not any("seed set labels" in line for line in known_weaknesses({**summary, "seed_sources": []}, report))
