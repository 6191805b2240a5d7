"""Settings of the training package, from environment variables (prefix ``TRIAGE_``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_SEED = Path(__file__).resolve().parent.parent / "data" / "seed"


class TrainingSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TRIAGE_", extra="ignore")

    home: Path = Field(Path(".triage"), description="state directory: embedded MLflow store and caches")
    seed_data: Path = Field(REPO_SEED, description="the bundled seed set (folder or file)")
