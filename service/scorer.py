"""Scoring in explicit steps: pre-process, predict (micro-batched, off the event loop), post-process.

Concurrent requests are gathered into one model call of up to ``micro_batch_size`` comments, which
is where a vectorised model gains its throughput; the call runs in a worker thread so the event
loop keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from service.crisis import CrisisDetector, comment_clock
from service.policy import PolicyConfig, PolicySet, PolicyStore, decide
from service.predictor import Prediction, Predictor
from service.questions import extract_questions
from service.schemas import CommentIn, ScoredComment, Scores, SentimentScores

log = logging.getLogger(__name__)


@dataclass
class _Job:
    texts: list[str]
    langs: list[str | None]
    future: asyncio.Future[list[Prediction]]


class MicroBatcher:
    """Collects concurrent predict calls into batches run one at a time in a worker thread."""

    def __init__(
        self,
        predict: Callable[[list[str], list[str | None]], list[Prediction]],
        max_batch: int = 64,
        max_wait_ms: float = 2.0,
    ):
        self._predict = predict
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000
        self._queue: asyncio.Queue[_Job] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="predict")
        self.batches = 0

    def start(self) -> None:
        if self._worker is None:
            self._queue = asyncio.Queue()
            self._worker = asyncio.create_task(self._run(), name="micro-batcher")

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def predict(self, texts: list[str], langs: list[str | None]) -> list[Prediction]:
        if not texts:
            return []
        self.start()
        assert self._queue is not None
        future: asyncio.Future[list[Prediction]] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Job(texts, langs, future))
        return await future

    async def _run(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            jobs = [await self._queue.get()]
            size = len(jobs[0].texts)
            deadline = loop.time() + self.max_wait
            while size < self.max_batch:
                remaining = deadline - loop.time()
                try:
                    job = (
                        self._queue.get_nowait()
                        if remaining <= 0
                        else await asyncio.wait_for(self._queue.get(), remaining)
                    )
                except (asyncio.QueueEmpty, TimeoutError):
                    break
                jobs.append(job)
                size += len(job.texts)
            texts = [t for job in jobs for t in job.texts]
            langs = [lang for job in jobs for lang in job.langs]
            try:
                predictions = await loop.run_in_executor(self._executor, self._predict, texts, langs)
            except Exception as exc:  # the failure belongs to the requests, not to the worker
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(exc)
                continue
            self.batches += 1
            start = 0
            for job in jobs:
                end = start + len(job.texts)
                if not job.future.done():
                    job.future.set_result(predictions[start:end])
                start = end


class Scorer:
    """Turns comments into scored records: the model's heads plus the triage policy."""

    def __init__(
        self,
        predictor: Predictor,
        policy: PolicyStore | PolicySet | PolicyConfig,
        max_batch: int = 64,
        max_wait_ms: float = 2.0,
        crisis: CrisisDetector | None = None,
    ):
        self.predictor = predictor
        self.store = policy if isinstance(policy, PolicyStore) else None
        self._static: PolicySet | None = None
        if isinstance(policy, PolicySet):
            self._static = policy
        elif isinstance(policy, PolicyConfig):
            self._static = PolicySet(policy)
        self.crisis = crisis
        self.batcher = MicroBatcher(predictor.predict, max_batch, max_wait_ms)

    def policies(self) -> PolicySet:
        """The policy in force now (a store re-reads its file when it changes)."""
        if self.store is not None:
            return self.store.current()
        assert self._static is not None
        return self._static

    @property
    def policy(self) -> PolicyConfig:
        return self.policies().base

    @property
    def model_version(self) -> str:
        return self.predictor.version

    # -- steps -----------------------------------------------------------------------------------
    @staticmethod
    def preprocess(comments: list[CommentIn]) -> tuple[list[str], list[str | None], list[int | None]]:
        """Texts to predict: every comment, then each distinct parent text (for heated threads)."""
        texts = [c.text for c in comments]
        langs: list[str | None] = [c.lang for c in comments]
        parent_index: list[int | None] = []
        seen: dict[str, int] = {}
        for c in comments:
            if c.parent_text and c.parent_text.strip():
                if c.parent_text not in seen:
                    seen[c.parent_text] = len(texts)
                    texts.append(c.parent_text)
                    langs.append(None)
                parent_index.append(seen[c.parent_text])
            else:
                parent_index.append(None)
        return texts, langs, parent_index

    def postprocess(
        self,
        comments: list[CommentIn],
        predictions: list[Prediction],
        parent_index: list[int | None],
        now: datetime | None = None,
        failed: list[tuple[int, Exception]] | None = None,
    ) -> list[ScoredComment]:
        """Policy, questions and crisis state per comment. With ``failed`` given, a comment whose step raises is
        recorded there (its index and the error) and left out, instead of failing the others: each comment is
        seen by the crisis detector once, whatever happens to the rest."""
        now = now or datetime.now(UTC)
        policies = self.policies()
        if self.crisis is not None:
            self.crisis.config = policies.base.crisis
        out = []
        for i, comment in enumerate(comments):
            try:
                out.append(self._one(comment, predictions, parent_index, i, policies, now))
            except Exception as exc:
                if failed is None:
                    raise
                failed.append((i, exc))
        return out

    def _one(
        self,
        comment: CommentIn,
        predictions: list[Prediction],
        parent_index: list[int | None],
        i: int,
        policies: Any,
        now: datetime,
    ) -> ScoredComment:
        pred = predictions[i]
        policy = policies.for_comment(comment)
        parent = predictions[parent_index[i]] if parent_index[i] is not None else None  # type: ignore[index]
        questions = extract_questions(comment.text)
        crisis = self.crisis.observe(comment, pred, comment_clock(comment, now)) if self.crisis else None
        decision = decide(comment, pred, questions, now, policy, parent=parent, crisis=crisis)
        return ScoredComment(
            id=comment.id,
            language=pred.language,
            sentiment=pred.sentiment,  # type: ignore[arg-type]
            toxic=decision.toxic,
            complaint=pred.complaint,
            question=decision.question,
            scores=Scores(
                sentiment=SentimentScores(**_round(pred.p_sentiment)),
                toxic=round(pred.p_toxic, 4),
                complaint=round(pred.p_complaint, 4),
                question=round(pred.p_question, 4),
            ),
            priority=decision.priority,  # type: ignore[arg-type]
            priority_score=decision.priority_score,
            respond_within_minutes=decision.respond_within_minutes,
            respond_by=decision.respond_by,
            action=decision.action,  # type: ignore[arg-type]
            reasons=decision.reasons,
            questions=decision.questions,
            model_version=self.predictor.version,
            policy_version=policy.version,
        )

    # -- entry points ------------------------------------------------------------------------------
    async def score(self, comments: list[CommentIn], now: datetime | None = None) -> list[ScoredComment]:
        texts, langs, parent_index = self.preprocess(comments)
        predictions = await self.batcher.predict(texts, langs)
        # Policy, questions and crisis state (maybe Redis) run off the event loop too.
        return await asyncio.to_thread(self.postprocess, comments, predictions, parent_index, now)

    def score_sync(
        self,
        comments: list[CommentIn],
        now: datetime | None = None,
        failed: list[tuple[int, Exception]] | None = None,
    ) -> list[ScoredComment]:
        """The same steps without the event loop (batch scoring of files); ``failed`` as in :meth:`postprocess`."""
        texts, langs, parent_index = self.preprocess(comments)
        predictions = self.predictor.predict(texts, langs) if texts else []
        return self.postprocess(comments, predictions, parent_index, now, failed)

    def warm_up(self) -> float:
        started = time.perf_counter()
        self.score_sync([CommentIn(id="warm-up", text="Where is my order? Gdzie jest moja paczka?")])
        return time.perf_counter() - started


def _round(values: dict[str, float]) -> dict[str, Any]:
    return {k: round(v, 4) for k, v in values.items()}
