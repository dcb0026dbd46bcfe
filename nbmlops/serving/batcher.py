"""Micro-batching: concurrent requests answered by one ``predict`` call.

Requests put a :class:`Job` on a queue; one worker thread takes everything waiting (up to a row
bound), groups it by the loaded version it was checked against, predicts each group once and
hands every request its slice. Nothing waits to fill a batch: a lone request is predicted at
once; under load, requests that arrive while a batch runs form the next one. The prediction log
is appended after the answers are handed back, so no request waits on it.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .inputs import Columns
from .models import Loaded

log = logging.getLogger(__name__)

__all__ = ["Job", "Answer", "PredictionFailed", "MicroBatcher"]


class PredictionFailed(Exception):
    """The model raised while predicting this request (details in the service log)."""


@dataclass
class Answer:
    loaded: Loaded
    predictions: list[Any]
    proba: list[list[float]] | None


@dataclass(eq=False)
class Job:
    loaded: Loaded
    cols: Columns
    rows: int
    proba: bool
    request_id: str
    ts: float  # arrival, epoch seconds
    t0: float  # arrival, perf_counter
    alias: str
    role: str
    log: bool
    future: asyncio.Future[Answer] | None = None
    loop: asyncio.AbstractEventLoop | None = None
    latency_ms: float = field(default=0.0)


OnDone = Callable[[Job, Answer | None], None]
OnBatch = Callable[[list[Job], list[Answer]], None]


class MicroBatcher:
    """One worker thread predicting batches taken from a queue (``max_rows`` per batch;
    ``max_pending`` rows waiting before new jobs are refused: shadow scoring sheds load)."""

    def __init__(self, name: str, *, max_rows: int = 20_000, max_pending: int | None = None,
                 on_done: OnDone | None = None, on_batch: OnBatch | None = None) -> None:
        self.name = name
        self.max_rows = max_rows
        self.max_pending = max_pending
        self.on_done = on_done
        #: called once per predicted group after every request of it was answered (the log)
        self.on_batch = on_batch
        self._queue: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._pending = 0
        self._pending_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"nbmlops-batch-{name}", daemon=True)
        self.batches = 0
        self.batched_jobs = 0
        self.busy_s = 0.0
        self.shed = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._queue.put(None)
        self._thread.join(timeout)

    def offer(self, job: Job) -> bool:
        """Queue a job whose answer nobody awaits (shadow); False when too much is waiting."""
        if self.max_pending is not None and self._pending + job.rows > self.max_pending:
            self.shed += job.rows
            return False
        self._add_pending(job.rows)
        self._queue.put(job)
        return True

    def _add_pending(self, rows: int) -> None:
        with self._pending_lock:
            self._pending += rows

    @property
    def pending(self) -> int:
        return self._pending

    async def submit(self, job: Job) -> Answer:
        loop = asyncio.get_running_loop()
        job.loop = loop
        job.future = loop.create_future()
        self._add_pending(job.rows)
        self._queue.put(job)
        return await job.future

    # -- the worker thread ----------------------------------------------------------------------

    def _take(self) -> list[Job] | None:
        first = self._queue.get()
        if first is None:
            return None
        jobs = [first]
        rows = first.rows
        while rows < self.max_rows:
            try:
                nxt = self._queue.get_nowait()
            except queue.Empty:
                break
            if nxt is None:
                self._queue.put(None)  # stop after this batch
                break
            jobs.append(nxt)
            rows += nxt.rows
        return jobs

    def _run(self) -> None:
        while True:
            jobs = self._take()
            if jobs is None:
                return
            self.batches += 1
            self.batched_jobs += len(jobs)
            groups: dict[int, list[Job]] = {}
            for job in jobs:
                groups.setdefault(id(job.loaded), []).append(job)
            started = time.perf_counter()
            for group in groups.values():
                try:
                    self._predict_group(group)
                except Exception:  # noqa: BLE001 - the worker thread must survive anything
                    log.exception("batch worker %s: unexpected error", self.name)
            self.busy_s += time.perf_counter() - started
            self._add_pending(-sum(j.rows for j in jobs))

    def _predict_group(self, group: list[Job]) -> None:
        loaded = group[0].loaded
        try:
            results = _predict(loaded, group)
        except Exception:  # noqa: BLE001 - a model's error belongs to its request
            if len(group) == 1:
                log.exception("%s v%d: predict failed for request %s", loaded.version.model,
                              loaded.number, group[0].request_id)
                self._finish(group[0], None, PredictionFailed())
                return
            # one bad request must not fail the others of its batch: predict them one by one
            for job in group:
                self._predict_group([job])
            return
        settle: dict[asyncio.AbstractEventLoop, list[Any]] = {}
        for job, answer in zip(group, results, strict=True):
            self._finish(job, answer, None, settle)
        for loop, answers in settle.items():  # one wake-up per event loop, not per request
            loop.call_soon_threadsafe(_settle_all, answers)
        if self.on_batch is not None:
            try:
                self.on_batch(group, results)
            except Exception:  # noqa: BLE001 - logging must never fail a request
                log.exception("after-batch hook failed")

    def _finish(self, job: Job, answer: Answer | None, exc: BaseException | None,
                settle: dict[asyncio.AbstractEventLoop, list[Any]] | None = None) -> None:
        """Record the job's latency and hand its answer to its event loop: now, or through
        ``settle`` (per loop) when the caller hands a whole batch over at once."""
        job.latency_ms = (time.perf_counter() - job.t0) * 1000.0
        fut, loop = job.future, job.loop
        if fut is not None and loop is not None:
            if settle is not None:
                settle.setdefault(loop, []).append((fut, answer, exc))
            else:
                loop.call_soon_threadsafe(_settle, fut, answer, exc)
        if self.on_done is not None:
            try:
                self.on_done(job, answer)
            except Exception:  # noqa: BLE001 - logging must never fail a request
                log.exception("after-prediction hook failed")


def _settle_all(settle: list[Any]) -> None:
    for fut, answer, exc in settle:
        _settle(fut, answer, exc)


def _settle(fut: asyncio.Future[Answer], answer: Answer | None, exc: BaseException | None) -> None:
    if fut.done():
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        assert answer is not None
        fut.set_result(answer)


def _predict(loaded: Loaded, group: list[Job]) -> list[Answer]:
    if len(group) == 1:
        cols = group[0].cols
    else:
        cols = {spec.name: [v for job in group for v in job.cols[spec.name]]
                for spec in loaded.specs}
    model = loaded.model
    want_proba = any(j.proba for j in group)
    matrix = (loaded.fast.matrix(cols, [spec.name for spec in loaded.specs])
              if loaded.fast is not None else None)
    if matrix is not None:
        preds, probs = loaded.fast.predict_matrix(matrix, proba=want_proba)
    elif loaded.fast is not None:
        preds, probs = loaded.fast.predict_both(loaded.frame(cols), proba=want_proba)
    else:
        frame = loaded.frame(cols)
        preds = model.predict(frame)
        probs = model.predict_proba(frame) if want_proba else None
    pred_list = preds.tolist() if hasattr(preds, "tolist") else list(preds)
    prob_list = probs.tolist() if probs is not None and hasattr(probs, "tolist") else probs
    out: list[Answer] = []
    start = 0
    for job in group:
        end = start + job.rows
        out.append(Answer(loaded, pred_list[start:end],
                          prob_list[start:end] if prob_list is not None and job.proba else None))
        start = end
    return out
