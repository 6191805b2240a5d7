"""Deterministic, stratified train/validation/test split that keeps duplicate texts together."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from models.schema import HEADS
from models.text import normalize

SPLITS = ("train", "val", "test")


def rank_key(seed: int, text: str) -> int:
    digest = hashlib.blake2b(f"{seed}:{text}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def dedup_key(text: str) -> str:
    return " ".join(normalize(text).lower().split())


def assign_splits(frame: pd.DataFrame, val_fraction: float, test_fraction: float, seed: int) -> pd.Series:
    """Label each row train/val/test.

    Within each stratum (source x label combination) rows are ordered by a seeded hash of their
    normalised text and the first ``test_fraction`` go to test, the next ``val_fraction`` to validation.
    Copies of one text (retweets, the same tweet in two corpora) then all go to the most held-out
    split any of them drew, so no test text is ever trained on.
    """
    keys = frame["text"].map(dedup_key)
    rank = keys.map(lambda k: rank_key(seed, k))
    strata = frame["source"].astype(str)
    for head in HEADS:
        strata = strata + "|" + frame[head].astype("string").fillna("-")
    order = np.zeros(len(frame), dtype=np.int8)  # 0 train, 1 val, 2 test
    positions = pd.Series(np.arange(len(frame)), index=frame.index)
    for _, idx in positions.groupby(strata.values):
        members = idx.to_numpy()[np.argsort(rank.iloc[idx.to_numpy()].to_numpy(), kind="stable")]
        n = len(members)
        n_test = int(round(n * test_fraction))
        n_val = int(round(n * val_fraction))
        order[members[:n_test]] = 2
        order[members[n_test : n_test + n_val]] = 1
    by_text = pd.Series(order).groupby(keys.to_numpy()).transform("max").to_numpy()
    return pd.Series(np.asarray(SPLITS)[by_text], index=frame.index, name="split")
