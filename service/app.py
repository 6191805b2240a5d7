"""The FastAPI app: thin routes over the scorer, loaded in the lifespan into ``app.state``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.crisis import CrisisDetector, build_detector
from service.policy import PolicyConfig, PolicyError, PolicySet, PolicyStore
from service.schemas import ErrorResponse, ScoreRequest, ScoreResponse
from service.scorer import Scorer
from service.settings import ServiceSettings

log = logging.getLogger(__name__)


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str):
        self.status, self.code, self.message = status, code, message


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": {"code": code, "message": message}})


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:10]:
        if err.get("type") == "json_invalid":
            parts.append("body: invalid JSON")
            continue
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    more = len(exc.errors()) - 10
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def _load_scorer(
    settings: ServiceSettings, policy: PolicyStore | PolicySet | PolicyConfig, crisis: CrisisDetector | None
) -> Scorer:
    from models.store import configure_mlflow
    from service.predictor import load_predictor

    configure_mlflow(settings.home)
    predictor = load_predictor(settings.model_uri)
    return Scorer(predictor, policy, settings.micro_batch_size, settings.micro_batch_wait_ms, crisis=crisis)


def _base_policy(policy: PolicyStore | PolicySet | PolicyConfig) -> PolicyConfig:
    if isinstance(policy, PolicyStore):
        return policy.current().base
    return policy.base if isinstance(policy, PolicySet) else policy


def create_app(
    settings: ServiceSettings | None = None,
    scorer: Scorer | None = None,
    policy: PolicyStore | PolicySet | PolicyConfig | None = None,
    crisis: CrisisDetector | None = None,
) -> FastAPI:
    """Build the app. Tests inject ``scorer``; otherwise the model at ``settings.model_uri`` is loaded.

    The policy file is read and validated here, so a bad policy stops start-up with a clear error.
    """
    settings = settings or ServiceSettings()
    if scorer is None:
        policy = policy or PolicyStore(settings.policy_file, settings.policy_check_seconds)
        if crisis is None:
            base = _base_policy(policy)
            crisis = build_detector(
                base.crisis,
                settings.redis_url,
                settings.webhook_url,
                settings.webhook_attempts,
                settings.webhook_backoff_seconds,
            )

    async def load() -> None:
        try:
            if scorer is not None:
                loaded = scorer
            else:
                assert policy is not None
                loaded = await asyncio.to_thread(_load_scorer, settings, policy, crisis)
            seconds = await asyncio.to_thread(loaded.warm_up)
            app.state.scorer = loaded
            log.info("ready: model %s, policy %s (warm-up %.2fs)", loaded.model_version, loaded.policy.version, seconds)
        except Exception as exc:  # reported by /health/ready; the process stays up to say so
            log.exception("model %s could not be loaded", settings.model_uri)
            app.state.load_error = f"model {settings.model_uri} could not be loaded ({type(exc).__name__}: {exc})"

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.scorer = None
        app.state.load_error = None
        task = asyncio.create_task(load())
        sweeper = asyncio.create_task(sweep())
        app.state.load_task = task
        try:
            yield
        finally:
            task.cancel()
            sweeper.cancel()
            if app.state.scorer is not None:
                await app.state.scorer.batcher.stop()

    async def sweep() -> None:
        """Ends crises whose scope went quiet, so their end is announced without new comments."""
        while True:
            await asyncio.sleep(settings.alert_sweep_seconds)
            current = app.state.scorer
            if current is not None and current.crisis is not None:
                try:
                    await asyncio.to_thread(current.crisis.alerts)
                except Exception:
                    log.exception("crisis sweep failed")

    app = FastAPI(
        title="Comment Triage",
        version="0.1.0",
        description="Scores social-media comments: sentiment, toxicity, complaint, questions, priority, action.",
        lifespan=lifespan,
        responses={422: {"model": ErrorResponse}, 503: {"model": ErrorResponse}},
    )
    app.state.settings = settings

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.code, exc.message)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(422, "invalid_request", _validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return _error(exc.status_code, code, str(exc.detail))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s", request.url.path)
        return _error(500, "internal_error", "internal error; the service log has the details")

    def ready_scorer(request: Request) -> Scorer:
        current: Scorer | None = request.app.state.scorer
        if current is None:
            raise ApiError(503, "not_ready", request.app.state.load_error or "the model is still loading")
        return current

    @app.post("/v1/score", response_model=ScoreResponse, summary="Score 1 to N comments, in input order")
    async def score(body: ScoreRequest, request: Request) -> ScoreResponse:
        if len(body.comments) > settings.max_comments:
            raise ApiError(
                422,
                "too_many_comments",
                f"{len(body.comments)} comments in one request; the limit is {settings.max_comments}",
            )
        seen: set[str] = set()
        for i, comment in enumerate(body.comments):
            if comment.id in seen:
                raise ApiError(422, "duplicate_id", f"comments.{i}.id: duplicate id {comment.id!r}")
            seen.add(comment.id)
        too_long = [i for i, c in enumerate(body.comments) if len(c.text) > settings.max_text_chars]
        if too_long:
            raise ApiError(
                422, "text_too_long", f"comments.{too_long[0]}.text: longer than {settings.max_text_chars} characters"
            )
        results = await ready_scorer(request).score(body.comments)
        return ScoreResponse(results=results)

    @app.get("/v1/model", summary="The served model: name, version, alias, metrics, training data")
    async def model(request: Request) -> dict[str, Any]:
        current = ready_scorer(request)
        return {**current.predictor.describe(), "policy_version": current.policy.version}

    @app.get("/v1/alerts", summary="Active crises and recently ended ones, per post, ad, campaign and brand")
    async def alerts(request: Request) -> dict[str, Any]:
        current = ready_scorer(request)
        if current.crisis is None or not current.crisis.config.enabled:
            return {"enabled": False, "active": [], "recent": []}
        return {"enabled": True, **await asyncio.to_thread(current.crisis.alerts)}

    @app.get("/v1/policy", summary="The triage policy in force")
    async def policy_status(request: Request) -> dict[str, Any]:
        current = ready_scorer(request)
        if current.store is not None:
            return current.store.status()
        return {"source": None, "version": current.policy.version, "versions": current.policies().versions}

    @app.post("/v1/policy/reload", summary="Re-read the policy file now (it is also re-read when it changes)")
    async def policy_reload(request: Request) -> dict[str, Any]:
        current = ready_scorer(request)
        if current.store is None:
            raise ApiError(409, "not_reloadable", "this service runs a fixed policy, not a policy file")
        try:
            await asyncio.to_thread(current.store.reload)
        except PolicyError as exc:
            raise ApiError(422, "invalid_policy", f"{exc}; the previous policy stays in force") from None
        return current.store.status()

    @app.get("/health/live", summary="The process is up")
    async def live() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/health/ready", summary="A model is loaded and warmed")
    async def ready(request: Request) -> dict[str, str]:
        current = ready_scorer(request)
        return {"status": "ready", "model_version": current.model_version}

    return app
