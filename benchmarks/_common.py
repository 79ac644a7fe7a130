"""Shared helpers for benchmarks: timing, peak memory, real texts from ../shared/data (or $MEGASENSE_TEST_DATA)."""

from __future__ import annotations

import csv
import os
import resource
import socket
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

# The same folder the tests read: $MEGASENSE_TEST_DATA when set, else ../shared/data beside the repository.
SHARED_DATA = Path(
    os.environ.get("MEGASENSE_TEST_DATA") or Path(__file__).resolve().parents[1].parent / "shared" / "data"
)


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
    if not path.is_file():
        raise SystemExit(f"{path} is missing: set MEGASENSE_TEST_DATA to the folder that holds the shared data sets")
    texts = []
    with open(path, encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            texts.append(row[column])
            if limit and len(texts) >= limit:
                break
    return texts


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(proc: subprocess.Popen, url: str, seconds: float) -> None:
    """Wait until the service at ``url`` answers ``/ready`` with 200; kill it and raise if it does not in time."""
    import httpx

    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the service exited with status {proc.returncode}")
        try:
            if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"the service did not become ready within {seconds:.0f} s")
