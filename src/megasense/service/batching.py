"""Dynamic batching: texts of concurrent requests are merged into one model call, off the event loop.

Requests wait in an asyncio queue. One worker task takes the first waiting request, then keeps taking
more until the batch holds ``max_batch_size`` texts or ``max_wait_ms`` has passed, runs the model on a
single background thread (torch uses its own intra-op threads; one caller keeps them from fighting),
and hands each request exactly its own slice of the results. While a batch runs, new requests pile
up, so under load batches fill by themselves and at low load a request waits at most ``max_wait_ms``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

R = TypeVar("R")


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
    ) -> None:
        """``run`` maps a list of texts to one result each; ``on_batch(texts, seconds)`` follows each call."""
        self.run = run
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000
        self.max_queue_texts = max_queue_texts
        self.merge = merge
        self.on_batch = on_batch
        self.waiting_texts = 0
        self._queue: asyncio.Queue[_Request[R]] | None = None
        self._worker: asyncio.Task | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="megasense-model")
        self._seconds_per_text = 0.01  # running estimate, for Retry-After

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
            retry = max(1.0, self.waiting_texts * self._seconds_per_text)
            raise QueueFull(self.waiting_texts, self.max_queue_texts, retry)
        request = _Request(texts=texts, future=asyncio.get_running_loop().create_future())
        self.waiting_texts += len(texts)
        await self._queue.put(request)
        return await request.future

    async def stop(self) -> None:
        """Finish every request already queued, then stop the worker."""
        if self._queue is not None and self.running:
            await self._queue.join()
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        self._executor.shutdown(wait=True)

    async def _collect(self, first: _Request[R]) -> list[_Request[R]]:
        batch, size = [first], len(first.texts)
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
            batch.append(nxt)
            size += len(nxt.texts)
        return batch

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            first = await self._queue.get()
            batch = await self._collect(first)
            texts = [t for r in batch for t in r.texts]
            start = time.perf_counter()
            try:
                results = await loop.run_in_executor(self._executor, self.run, texts)
                error = None
            except Exception as exc:  # a model failure fails this batch's requests, not the worker
                results, error = None, exc
            seconds = time.perf_counter() - start
            self._seconds_per_text = 0.8 * self._seconds_per_text + 0.2 * seconds / max(1, len(texts))
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
