"""Promotion: pointing the ``champion`` alias at a registered version, unless it regresses."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from models.schema import CHAMPION_ALIAS, MODEL_NAME

log = logging.getLogger(__name__)

FINGERPRINT_TAG = "triage.test_fingerprint"


class PromotionError(Exception):
    pass


@dataclass
class Promotion:
    version: str
    previous: str | None
    comparison: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)
    comparable: bool = False


def champion_version(client: MlflowClient, name: str = MODEL_NAME) -> str | None:
    try:
        return str(client.get_model_version_by_alias(name, CHAMPION_ALIAS).version)
    except MlflowException:
        return None


def _headline(client: MlflowClient, version: str, name: str) -> tuple[dict[str, float], str | None]:
    mv = client.get_model_version(name, version)
    metrics: dict[str, float] = {}
    if mv.run_id:
        run = client.get_run(mv.run_id)
        for key, value in run.data.metrics.items():
            parts = key.split("/")
            if len(parts) == 4 and parts[0] == "test" and parts[2] == "all" and parts[3] == "macro_f1":
                metrics[parts[1]] = value
    return metrics, mv.tags.get(FINGERPRINT_TAG)


def promote(
    version: str | None = None, force: bool = False, tolerance: float = 0.01, name: str = MODEL_NAME
) -> Promotion:
    """Make ``version`` (default: the newest) the champion.

    When the current champion was evaluated on the same held-out rows, a challenger that loses more
    than ``tolerance`` macro-F1 on any head is refused unless ``force``.
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
        new, new_fp = _headline(client, target, name)
        old, old_fp = _headline(client, previous, name)
        result.comparable = bool(new_fp) and new_fp == old_fp
        result.comparison = {h: (old.get(h), new.get(h)) for h in sorted(set(new) | set(old))}
        if result.comparable and not force:
            worse = [
                f"{h}: {o:.3f} -> {n:.3f}"
                for h, (o, n) in result.comparison.items()
                if o is not None and (n is None or n < o - tolerance)
            ]
            if worse:
                raise PromotionError(
                    f"version {target} regresses against champion {previous} "
                    f"({'; '.join(worse)}); use --force to promote anyway"
                )
    client.set_registered_model_alias(name, CHAMPION_ALIAS, target)
    log.info("champion: %s -> %s %s", previous, target, json.dumps(result.comparison))
    return result
