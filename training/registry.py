"""Promotion: pointing the ``champion`` alias at a registered version, unless it regresses."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from models.schema import CHAMPION_ALIAS, MODEL_NAME
from training.evaluate import enough_of_each

log = logging.getLogger(__name__)

FINGERPRINT_TAG = "triage.test_fingerprint"
CHAMPION_COMPARED_TAG = "triage.champion_compared"  # the champion version scored on the run's test rows
# A language slice is compared at promotion only with this many test rows (and a tenth as many of each class,
# for a binary head): on fewer, macro-F1 swings between two runs of one config by more than any tolerance.
LANGUAGE_MIN_ROWS = 100


class PromotionError(Exception):
    pass


@dataclass
class Promotion:
    version: str
    previous: str | None
    comparison: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)
    comparable: bool = False
    basis: str = ""  # which held-out rows the comparison is on


def score_text(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def champion_version(client: MlflowClient, name: str = MODEL_NAME) -> str | None:
    try:
        return str(client.get_model_version_by_alias(name, CHAMPION_ALIAS).version)
    except MlflowException:
        return None


@dataclass
class _Tested:
    """A version's macro-F1 on its test rows per head (``toxic``) and language (``toxic/lang_pl``), with each
    slice's rows and positives, which rows, and the champion's macro-F1 on the same rows."""

    metrics: dict[str, float]
    fingerprint: str | None
    counts: dict[str, dict[str, float]] = field(default_factory=dict)
    champion: str | None = None
    champion_metrics: dict[str, float] = field(default_factory=dict)

    def compared(self, key: str, min_rows: int) -> bool:
        """A head always; a language with ``min_rows`` test rows and a tenth as many of each class."""
        if "/" not in key:
            return True
        counts = self.counts.get(key, {})
        rows = int(counts.get("support", 0))
        positives = counts.get("positives")  # binary heads only
        return rows >= min_rows and (positives is None or enough_of_each(int(positives), rows, min_rows // 10))


def _tested(client: MlflowClient, version: str, name: str) -> _Tested:
    mv = client.get_model_version(name, version)
    tested = _Tested({}, mv.tags.get(FINGERPRINT_TAG))
    if mv.run_id:
        run = client.get_run(mv.run_id)
        # the run carries the fingerprint too: a version promoted before training tagged it is still compared
        tested.fingerprint = tested.fingerprint or run.data.tags.get(FINGERPRINT_TAG)
        tested.champion = run.data.tags.get(CHAMPION_COMPARED_TAG)
        for key, value in run.data.metrics.items():
            parts = key.split("/")
            if len(parts) == 4 and parts[0] == "test" and (parts[2] == "all" or parts[2].startswith("lang_")):
                slice_ = parts[1] if parts[2] == "all" else f"{parts[1]}/{parts[2]}"
                if parts[3] == "macro_f1":
                    tested.metrics[slice_] = value
                elif parts[3] in ("support", "positives"):
                    tested.counts.setdefault(slice_, {})[parts[3]] = value
            elif len(parts) in (3, 4) and parts[0] == "champion_on_test" and parts[-1] == "macro_f1":
                tested.champion_metrics["/".join(parts[1:-1])] = value
    return tested


def promote(
    version: str | None = None,
    force: bool = False,
    tolerance: float = 0.01,
    name: str = MODEL_NAME,
    language_tolerance: float = 0.05,
    language_min_rows: int = LANGUAGE_MIN_ROWS,
) -> Promotion:
    """Make ``version`` (default: the newest) the champion.

    The challenger is compared with the champion on the same held-out rows: the champion's own test rows when
    both were tested on the same ones, or else the challenger's, which training scored the then champion on. A
    challenger that loses more than ``tolerance`` macro-F1 on any head, or more than ``language_tolerance`` on
    a head in one language (where the challenger's test rows hold ``language_min_rows`` of it), or that cannot
    be compared, is refused unless ``force``. So a gain in one language does not hide a loss in another.
    """
    client = MlflowClient()
    try:
        versions = client.search_model_versions(f"name='{name}'")
    except MlflowException as exc:
        raise PromotionError(f"cannot read the registry: {exc.message}") from None
    if not versions:
        raise PromotionError(f"no version of {name!r} is registered: run 'triage train' first")
    known = {str(v.version) for v in versions}
    target = str(version) if version else str(max(int(v) for v in known))
    if target not in known:
        raise PromotionError(f"{name} has no version {target} (known: {', '.join(sorted(known, key=int))})")
    previous = champion_version(client, name)
    result = Promotion(version=target, previous=previous)
    if previous and previous != target:
        new, old = _tested(client, target, name), _tested(client, previous, name)
        if new.fingerprint and new.fingerprint == old.fingerprint:
            result.comparable, reference = True, old.metrics
            result.basis = "both tested on the same held-out rows"
        elif new.champion == previous and new.champion_metrics:  # the champion scored on the challenger's rows
            result.comparable, reference = True, new.champion_metrics
            result.basis = (
                f"champion {previous} scored on version {target}'s held-out rows (it may have trained on some of "
                "them, if it was trained on other data or another split)"
            )
        else:
            reference = old.metrics
            result.basis = "each on its own held-out rows: not a like-for-like comparison"
        result.comparison = {
            k: (reference.get(k), new.metrics.get(k))
            for k in sorted(set(new.metrics) | set(reference))
            if new.compared(k, language_min_rows)
        }
        if not result.comparable and not force:
            raise PromotionError(
                f"version {target} was tested on other held-out rows than champion {previous}, and the champion "
                f"was not scored on its rows (it was not the champion when {target} trained, or could not be "
                "loaded then): whether it regresses is unknown; use --force to promote anyway"
            )
        if result.comparable and not force:
            worse = [
                f"{k}: {o:.3f} -> {score_text(n)}"
                for k, (o, n) in result.comparison.items()
                if o is not None and (n is None or n < o - (language_tolerance if "/" in k else tolerance))
            ]
            if worse:
                raise PromotionError(
                    f"version {target} regresses against champion {previous} "
                    f"({'; '.join(worse)}); use --force to promote anyway"
                )
    client.set_registered_model_alias(name, CHAMPION_ALIAS, target)
    log.info("champion: %s -> %s %s", previous, target, json.dumps(result.comparison))
    return result
