"""Helpers for tests that read the team's real data sets in ../shared/data (never copied into the repo)."""

from __future__ import annotations

import csv
from pathlib import Path

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def shared_texts(relative: str, limit: int, column: str = "text") -> list[str]:
    """The first ``limit`` values of ``column`` in a CSV under ../shared/data."""
    path = SHARED_DATA / relative
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the shared data set is missing (tests read ../shared/data)")
    out: list[str] = []
    with open(path, encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            out.append(row[column])
            if len(out) >= limit:
                break
    return out
