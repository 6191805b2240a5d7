"""Deterministic, stratified train/validation/test split that keeps duplicate texts together."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping

import numpy as np
import pandas as pd

from models.schema import HEADS
from models.text import normalize

SPLITS = ("train", "val", "test")


def rank_key(seed: int, text: str) -> int:
    digest = hashlib.blake2b(f"{seed}:{text}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


# A retweet's "RT @user:" and the handles and links in a tweet (masked as @USER and URL by normalize) do not
# make it another text.
_MASKED = re.compile(r"@user|\burl\b")
_RETWEET = re.compile(r"^(?:[\s:]*rt\b[\s:]*)+")  # "RT @a: RT @b: x" is x too


def dedup_key(text: str) -> str:
    plain = " ".join(normalize(text).lower().split())
    bare = " ".join(_RETWEET.sub("", _MASKED.sub(" ", plain)).split()).strip(" :")
    return bare or plain  # a tweet that is nothing but handles or a link is its own text


def group_keys(texts: pd.Series, frame: pd.DataFrame, group_ids: Mapping[str, str] | None) -> pd.Series:
    """Per row, the group of rewordings it belongs to (``group_ids``: per source, a pattern on its ids), or
    its text's key (``texts``) when it has none."""
    keys = texts.copy()
    for source, pattern in (group_ids or {}).items():
        rows = (frame["source"].astype(str) == source).to_numpy()
        found = frame.loc[rows, "id"].astype(str).str.extract(pattern, expand=False)
        if isinstance(found, pd.DataFrame):
            found = found.iloc[:, 0]
        named = found.notna().to_numpy()
        keys.loc[frame.index[rows][named]] = f"\x1fgroup:{source}:" + found[named].astype(str)
    return keys


def assign_splits(
    frame: pd.DataFrame,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    group_ids: Mapping[str, str] | None = None,
) -> pd.Series:
    """Label each row train/val/test.

    Within each stratum (source x label combination) rows are ordered by a seeded hash of their group (the
    normalised text, or the rewordings group ``group_ids`` names) and the first ``test_fraction`` go to test,
    the next ``val_fraction`` to validation. Copies of one text (retweets, the same tweet in two corpora) and
    the rewordings of one group then all go to the most held-out split any of them drew, so no test text, nor
    a rewording of one, is ever trained on.
    """
    texts = frame["text"].map(dedup_key)
    groups = group_keys(texts, frame, group_ids)
    rank = groups.map(lambda k: rank_key(seed, k))
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
    # Copies of a text and members of a group: each takes the most held-out split of any row it is tied to,
    # through either link, until nothing moves (a text copied across two groups ties them too). Values only
    # rise, so this ends.
    split = pd.Series(order)
    while True:
        before = split.to_numpy().copy()
        split = split.groupby(texts.to_numpy()).transform("max")
        split = split.groupby(groups.to_numpy()).transform("max")
        if np.array_equal(before, split.to_numpy()):
            break
    return pd.Series(np.asarray(SPLITS)[split.to_numpy()], index=frame.index, name="split")
