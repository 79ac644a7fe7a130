"""Prometheus metrics for one app instance (its own registry, so tests and workers never share one)."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "megasense_requests", "HTTP requests by endpoint and status", ["endpoint", "status"], registry=r
        )
        self.errors = Counter("megasense_errors", "Error responses by type", ["type"], registry=r)
        self.latency = Histogram(
            "megasense_request_seconds", "Request latency", ["endpoint"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.texts = Counter("megasense_texts", "Texts processed by the models", ["task"], registry=r)
        self.queue_depth = Gauge("megasense_queue_texts", "Texts waiting for the model", ["task"], registry=r)
        self.batch_size = Histogram(
            "megasense_batch_texts", "Texts per model call", ["task"], buckets=BATCH_BUCKETS, registry=r
        )
        self.batch_seconds = Histogram(
            "megasense_batch_seconds", "Seconds per model call", ["task"], buckets=LATENCY_BUCKETS, registry=r
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)


class ObserveRequests:
    """Count and time every request by route and status (a plain ASGI middleware, outermost: it sees the
    gate's 401/413 too)."""

    def __init__(self, app: Any, *, metrics: ServiceMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), 500

        async def observed(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observed)
        finally:
            endpoint = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.requests.labels(endpoint, str(status)).inc()
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - start)
