"""Shared helpers for benchmarks: timing, peak memory, real texts from ../shared/data."""

from __future__ import annotations

import csv
import resource
import statistics
import time
from collections.abc import Callable
from pathlib import Path

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(fn: Callable[[], object], *, repeats: int, warmup: int = 1) -> float:
    """Median seconds per call after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def read_texts(relative: str, column: str = "text", limit: int | None = None) -> list[str]:
    path = SHARED_DATA / relative
    texts = []
    with open(path, encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            texts.append(row[column])
            if limit and len(texts) >= limit:
                break
    return texts
