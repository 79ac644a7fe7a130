"""The test launcher fails fast instead of hanging: a rank's exception or a stuck collective ends the run.

A result a rank has handed over is kept even if the rank crashes afterwards; a rank that dies without
one is named with its exit code or signal.

Its normal path (results back by rank) is exercised by every test in test_parallel.py.
"""

from __future__ import annotations

import os
import signal
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


def _crash_in_teardown(rank: int, world_size: int) -> int:
    dist.barrier()
    if rank == 0:  # stands for a crash while the process group is torn down, after the result is handed over
        dist.destroy_process_group = lambda: os.kill(os.getpid(), signal.SIGSEGV)
    return rank


def test_a_result_handed_over_survives_a_crash_in_teardown():
    assert run_distributed(_crash_in_teardown, world_size=2, timeout=60) == [0, 1]


def _rank1_killed(rank: int, world_size: int) -> int:
    if rank == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return rank


def test_a_rank_that_dies_is_named_with_its_signal():
    with pytest.raises(DistributedRunError, match=r"rank 1 exited without a result \(killed by SIGKILL\)"):
        run_distributed(_rank1_killed, world_size=2, timeout=60)
