"""Loading and splitting the training data, shared by ``triage train`` and ``triage finetune``."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import pandas as pd

from models.schema import HEADS
from models.text import normalize
from training.config import ConfigError, TrainConfig
from training.data import DataValidationError, LoadedData, discover, load_data
from training.split import assign_splits, rank_key

log = logging.getLogger(__name__)


def cap_per_source(frame: pd.DataFrame, cap: int, seed: int) -> pd.DataFrame:
    rank = frame["id"].map(lambda i: rank_key(seed, str(i)))
    keep = rank.groupby(frame["source"]).rank(method="first") <= cap
    return frame[keep.to_numpy()].reset_index(drop=True)


def cap(frame: pd.DataFrame, per_source: int | None, seed: int) -> pd.DataFrame:
    return cap_per_source(frame, per_source, seed) if per_source else frame


def cap_total(frame: pd.DataFrame, total: int | None, seed: int) -> pd.DataFrame:
    """About ``total`` rows, the same number from each source."""
    return cap(frame, max(1, total // max(1, frame["source"].nunique())) if total else None, seed)


def prepare(loaded: LoadedData, cfg: TrainConfig) -> pd.DataFrame:
    frame = loaded.frame
    if cfg.max_rows_per_source:
        frame = cap_per_source(frame, cfg.max_rows_per_source, cfg.split.seed)
    frame = frame.copy()
    frame["norm_text"] = frame["text"].map(normalize)
    split = cfg.split
    frame["split"] = assign_splits(frame, split.val_fraction, split.test_fraction, split.seed, split.group_ids)
    check_prepared(frame, cfg)
    return frame


def check_prepared(frame: pd.DataFrame, cfg: TrainConfig) -> None:
    """Fail before training, not after it: nothing left to train on, or a head that trains but has no
    validation or test rows (no threshold to tune, no held-out metric). A weight for no source is logged."""
    present = set(frame["source"].astype(str))
    sources = ", ".join(sorted(present))
    unknown = sorted(set(cfg.source_weights) - present)
    if unknown:  # a shipped config names corpora a run may leave out: said, not refused
        log.warning("source_weights: %s: no source of that name in the data (sources: %s)", ", ".join(unknown), sources)
    train = frame[frame["split"] == "train"]
    if cfg.source_weights and all(cfg.source_weights.get(str(s), 1.0) == 0 for s in train["source"].unique()):
        raise ConfigError("source_weights: every source of the training rows has weight 0: nothing to train on")
    for head in HEADS:
        if not train[head].notna().any():
            continue
        for part in ("val", "test"):
            if not frame.loc[frame["split"] == part, head].notna().any():
                raise ConfigError(
                    f"split: head {head} has training rows but no {part} rows (too few labelled rows to hold out; "
                    f"sources: {sources})"
                )


def ids_fingerprint(ids: pd.Series) -> str:
    return hashlib.sha256("\n".join(sorted(ids.astype(str))).encode()).hexdigest()[:16]


def _missing_seed_files(paths: list[Path], seed_files: list[Path]) -> list[Path]:
    """The seed set's files that ``paths`` do not already read (a path may name the seed file, its folder or a
    folder around it: folders are read recursively)."""
    try:
        given = {p.resolve() for p in discover(paths)}
    except DataValidationError:
        given = set()  # load_data reports the bad path
    return [f for f in seed_files if f.resolve() not in given]


@dataclass
class Prepared:
    """The data of one run: every row with its split, and the three splits."""

    paths: list[Path]
    loaded: LoadedData
    frame: pd.DataFrame
    seed_sources: list[str] = field(default_factory=list)  # the sources of the bundled seed set's files

    def part(self, name: str) -> pd.DataFrame:
        return self.frame[self.frame["split"] == name]

    @cached_property
    def split_fingerprint(self) -> str:
        """Which rows, with which texts and labels, went to which split: a checkpoint fine-tuned elsewhere must
        match it to be finished here (a relabelled or cleaned corpus with the same ids does not)."""
        columns = ["split", "id", "source", "text", *HEADS]
        rows = self.frame[columns].astype("string").fillna("\x00").sort_values(["split", "id"])
        digest = hashlib.sha256()
        for row in rows.itertuples(index=False):
            digest.update("\x1f".join(row).encode())
            digest.update(b"\x1e")
        return digest.hexdigest()[:16]


def load_prepared(
    data: list[str | Path], cfg: TrainConfig, seed_data: Path | None, skip_invalid: bool = False
) -> Prepared:
    """Read ``data`` (plus the seed set when the config includes it) and split it as the config says."""
    paths = [Path(p) for p in data]
    seed_files = discover([seed_data]) if seed_data is not None and seed_data.exists() else []
    if cfg.include_seed:
        paths += _missing_seed_files(paths, seed_files)
    loaded = load_data(paths, skip_invalid=skip_invalid)
    return Prepared(paths, loaded, prepare(loaded, cfg), sorted({f.stem for f in seed_files}))
