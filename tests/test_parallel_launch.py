"""The test launcher fails fast instead of hanging: a rank's exception or a stuck collective ends the run.

Its normal path (results back by rank) is exercised by every test in test_parallel.py.
"""

from __future__ import annotations

import time

import pytest
import torch.distributed as dist

from megasense.parallel.launch import DistributedRunError, run_distributed

pytestmark = pytest.mark.distributed


def _rank1_raises(rank: int, world_size: int) -> int:
    if rank == 1:
        raise ValueError("boom from rank 1")
    dist.barrier()  # rank 1 never arrives: without the launcher's kill this would wait for the gloo timeout
    return rank


def test_an_exception_on_one_rank_fails_the_run_with_its_traceback():
    start = time.monotonic()
    with pytest.raises(DistributedRunError, match="rank 1 raised") as err:
        run_distributed(_rank1_raises, world_size=2, timeout=60, collective_timeout=60)
    assert "ValueError: boom from rank 1" in str(err.value)
    assert time.monotonic() - start < 40, "the rank blocked in the barrier must be killed, not awaited"


def _sleep(rank: int, world_size: int) -> None:
    time.sleep(60)


def test_a_hung_run_is_killed_at_the_deadline():
    start = time.monotonic()
    with pytest.raises(DistributedRunError, match="ran past the 4 s deadline"):
        run_distributed(_sleep, world_size=2, timeout=4)
    assert time.monotonic() - start < 20
