"""Fixtures shared by test modules."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray instance for the whole test session (2 CPUs, no dashboard): starting Ray costs seconds and
    about 1.5 GB, so every test that needs Ray shares this one; it is shut down when the session ends."""
    ray = pytest.importorskip("ray", reason="needs Ray: pip install 'megasense[ray]'")
    pytest.importorskip("ray.data", reason="needs Ray Data: pip install 'megasense[ray]'")
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, object_store_memory=200 * 1024**2, log_to_driver=False)
    yield ray
    ray.shutdown()
