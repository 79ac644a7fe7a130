"""Helpers for tests that read the team's real data sets (never copied into the repo).

The data lives in ``$MEGASENSE_TEST_DATA`` when that is set, else in ``../shared/data`` beside the
repository. A test that needs a missing data set is skipped, at run time, with a reason that says where
the data was looked for: a fresh clone without the data still collects and runs the rest.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

ENV_VAR = "MEGASENSE_TEST_DATA"
DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def shared_data_dir() -> Path:
    """The folder that holds the shared data sets: ``$MEGASENSE_TEST_DATA``, else ``<repo>/../shared/data``."""
    override = os.environ.get(ENV_VAR)
    return Path(override).expanduser() if override else DEFAULT_DATA


def shared_path(relative: str) -> Path:
    """``relative`` under the shared data folder; skips the calling test when that file is missing.

    Call it from a test or fixture, never at import time: a skip there would hide the whole module.
    """
    path = shared_data_dir() / relative
    if not path.is_file():
        name = Path(relative).parts[0]
        pytest.skip(
            f"needs the shared data set {name}: {path} is missing; "
            f"set {ENV_VAR} to the folder that holds {name}/ or put it at {DEFAULT_DATA}"
        )
    return path


def shared_texts(relative: str, limit: int | None = None, column: str = "text") -> list[str]:
    """The first ``limit`` values (all when None) of ``column`` in a CSV under the shared data folder."""
    out: list[str] = []
    with open(shared_path(relative), encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            out.append(row[column])
            if limit is not None and len(out) >= limit:
                break
    return out
