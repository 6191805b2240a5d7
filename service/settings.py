"""Settings of the service, from environment variables (prefix ``TRIAGE_``); bad values fail at start-up."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from models.kernels import BlockwiseMode
from models.store import alias_uri
from service.schemas import MAX_COMMENTS, MAX_TEXT


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TRIAGE_", extra="ignore")

    home: Path = Field(Path(".triage"), description="state directory of the embedded MLflow store")
    model_uri: str = Field(alias_uri(), description="the model to serve; by alias, never by run id")
    max_comments: int = Field(256, ge=1, le=MAX_COMMENTS, description="most comments in one scoring request")
    max_text_chars: int = Field(MAX_TEXT, ge=100, le=MAX_TEXT, description="longest comment text (at most 10,000)")
    micro_batch_size: int = Field(64, ge=1, le=4096, description="comments the scorer predicts at once")
    micro_batch_wait_ms: float = Field(2.0, ge=0, le=1000, description="how long a batch waits to fill")
    policy_file: Path | None = Field(None, description="triage policy YAML (default: the bundled one)")
    policy_check_seconds: float = Field(2.0, ge=0, description="how often the policy file is checked for changes")
    redis_url: str | None = Field(None, description="crisis state shared by replicas (default: in-process)")
    webhook_url: str | None = Field(None, description="called once per crisis start and end")
    webhook_attempts: int = Field(5, ge=1, le=20)
    webhook_backoff_seconds: float = Field(1.0, ge=0, le=60)
    alert_sweep_seconds: float = Field(30.0, gt=0, description="how often active crises are checked for an end")
    log_level: str = Field("INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL)$")
    onnx_blockwise: BlockwiseMode = Field(
        "auto",
        description="how a blockwise int8 transformer model runs (read by the ONNX back-end; checked here so a "
        "bad value fails at start-up): int8 kernels, or its weights as fp32 (auto: fp32 where the CPU has no "
        "int8 dot products)",
    )

    @field_validator("redis_url", "webhook_url")
    @classmethod
    def _empty_is_none(cls, value: str | None) -> str | None:
        return value or None
