"""Dynamic batching: texts of concurrent requests are merged into one model call, off the event loop.

Requests wait in an asyncio queue. One worker task takes the first waiting request, then keeps taking
more until the batch holds ``max_batch_size`` texts or ``max_wait_ms`` has passed, runs the model on a
single background thread (torch uses its own intra-op threads; one caller keeps them from fighting),
and hands each request exactly its own slice of the results. While a batch runs, new requests pile
up, so under load batches fill by themselves and at low load a request waits at most ``max_wait_ms``.

A request whose caller has gone (its future cancelled: the HTTP client hung up) is dropped before its
texts reach the model, so abandoned work never delays the callers still waiting. Retry-After comes
from the median of the last ``THROUGHPUT_WINDOW`` batches' seconds, times the batches the waiting texts
fill, so one slow batch (a cold start, a long text) does not make every client wait minutes.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import statistics
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

R = TypeVar("R")

THROUGHPUT_WINDOW = 32
"""Recent batches whose sizes and seconds estimate how long the waiting texts take (for Retry-After)."""
MAX_RETRY_AFTER_S = 60.0
"""Retry-After never asks a client to wait longer than this."""


class QueueFull(Exception):
    """More texts are waiting than ``max_queue_texts`` allows; the client should retry later."""

    def __init__(self, waiting: int, limit: int, retry_after: float) -> None:
        self.waiting, self.limit, self.retry_after = waiting, limit, retry_after
        super().__init__(f"{waiting} texts are waiting for the model (limit max_queue_texts={limit}); retry later")


class NotRunning(Exception):
    """The batcher is stopped (the service is starting or shutting down)."""


@dataclass
class _Request(Generic[R]):
    texts: Sequence[str]
    future: asyncio.Future
    enqueued: float = field(default_factory=time.perf_counter)


class DynamicBatcher(Generic[R]):
    def __init__(
        self,
        run: Callable[[list[str]], Sequence[R]],
        *,
        max_batch_size: int = 64,
        max_wait_ms: float = 5.0,
        max_queue_texts: int = 4096,
        merge: bool = True,
        on_batch: Callable[[int, float], None] | None = None,
        executor: ThreadPoolExecutor | None = None,
    ) -> None:
        """``run`` maps a list of texts to one result each; ``on_batch(texts, seconds)`` follows each call.

        ``executor``: the one-thread pool the model runs on, to share with the batchers of other models on
        the same weights (the router's English model, say); by default a pool of its own."""
        self.run = run
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000
        self.max_queue_texts = max_queue_texts
        self.merge = merge
        self.on_batch = on_batch
        self.waiting_texts = 0
        self.dropped_texts = 0
        """Texts of requests abandoned before they reached the model (never run)."""
        self._queue: asyncio.Queue[_Request[R]] | None = None
        self._worker: asyncio.Task | None = None
        self._owns_executor = executor is None
        self.executor = executor or ThreadPoolExecutor(max_workers=1, thread_name_prefix="megasense-model")
        self._recent: deque[tuple[int, float]] = deque(maxlen=THROUGHPUT_WINDOW)  # (texts, seconds) per batch
        self._current: list[_Request[R]] = []  # the batch the model is running

    @property
    def running(self) -> bool:
        return self._worker is not None and not self._worker.done()

    def start(self) -> None:
        self._queue = asyncio.Queue()
        self._worker = asyncio.get_running_loop().create_task(self._loop(), name="megasense-batcher")

    async def submit(self, texts: Sequence[str]) -> list[R]:
        """Results for ``texts``, in order; raises QueueFull or NotRunning instead of waiting forever."""
        if not self.running or self._queue is None:
            raise NotRunning("the model is not ready")
        if not texts:
            return []
        if self.waiting_texts + len(texts) > self.max_queue_texts:
            raise QueueFull(self.waiting_texts, self.max_queue_texts, self.retry_after())
        request = _Request(texts=texts, future=asyncio.get_running_loop().create_future())
        self.waiting_texts += len(texts)
        self._queue.put_nowait(request)  # the queue is unbounded: waiting_texts is the limit
        # Cancelling this coroutine (the client hung up) cancels the future, and the worker drops it.
        return await request.future

    def retry_after(self) -> float:
        """Seconds until the texts waiting now have run (1 to ``MAX_RETRY_AFTER_S``): the batches they fill
        (``max_batch_size`` each when merging, else as large as recent ones), each taking the median time of the
        recent batches; the median, so one slow batch does not rule it."""
        if not self._recent:
            return 1.0
        per_batch = self.max_batch_size if self.merge else statistics.median(n for n, _ in self._recent)
        batches = math.ceil(self.waiting_texts / max(1, per_batch))
        seconds = batches * statistics.median(s for _, s in self._recent)
        return min(MAX_RETRY_AFTER_S, max(1.0, seconds))

    async def stop(self, timeout: float | None = None) -> None:
        """Finish every request already queued (for at most ``timeout`` seconds), then stop the worker."""
        if self._queue is not None and self.running:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queue.join(), timeout)
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            for request in [*self._current, *self._drain_queue()]:  # left after the timeout: NotRunning
                if not request.future.done():
                    request.future.set_exception(NotRunning("the service is stopping"))
        if self._owns_executor:
            self.executor.shutdown(wait=True)

    def _drain_queue(self) -> list[_Request[R]]:
        left = []
        while self._queue is not None and not self._queue.empty():
            left.append(self._queue.get_nowait())
            self._queue.task_done()
        return left

    def _drop_abandoned(self, batch: list[_Request[R]]) -> list[_Request[R]]:
        """The requests of ``batch`` whose callers still wait; the others are settled as done here."""
        live = []
        for request in batch:
            if request.future.done():  # cancelled: the caller has gone
                self.waiting_texts -= len(request.texts)
                self.dropped_texts += len(request.texts)
                self._queue.task_done()
            else:
                live.append(request)
        return live

    async def _collect(self, first: _Request[R]) -> list[_Request[R]]:
        batch = self._current = [first]  # known to stop() from now on
        size = len(first.texts)
        if not self.merge:
            return batch
        deadline = time.perf_counter() + self.max_wait
        while size < self.max_batch_size:
            try:
                nxt = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    break
                try:
                    nxt = await asyncio.wait_for(self._queue.get(), remaining)
                except TimeoutError:
                    break
            if nxt.future.done():  # abandoned while it waited: takes no room in the batch
                self._drop_abandoned([nxt])
                continue
            batch.append(nxt)
            size += len(nxt.texts)
        return batch

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            first = await self._queue.get()
            if not self._drop_abandoned([first]):
                continue
            # the last look before the model: callers may have hung up while the batch filled
            batch = self._drop_abandoned(await self._collect(first))
            if not batch:
                continue
            texts = [t for r in batch for t in r.texts]
            start = time.perf_counter()
            self._current = batch
            try:
                results = await loop.run_in_executor(self.executor, self.run, texts)
                error = None
            except Exception as exc:  # a model failure fails this batch's requests, not the worker
                results, error = None, exc
            self._current = []
            seconds = time.perf_counter() - start
            self._recent.append((len(texts), seconds))
            if self.on_batch is not None:
                self.on_batch(len(texts), seconds)
            offset = 0
            for request in batch:
                n = len(request.texts)
                self.waiting_texts -= n
                if not request.future.done():  # the client may have gone away
                    if error is not None:
                        request.future.set_exception(error)
                    else:
                        request.future.set_result(list(results[offset : offset + n]))
                offset += n
                self._queue.task_done()
