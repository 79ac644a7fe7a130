"""A tiny in-process launcher: run a function on N gloo processes on this CPU (what tests need).

``torchrun`` is the launcher for real jobs. This one exists so that a test can start two ranks,
get each rank's return value back, and fail within a deadline (with the failing rank's traceback)
instead of hanging when a collective never completes.
"""

from __future__ import annotations

import os
import queue
import socket
import time
import traceback
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


class DistributedRunError(RuntimeError):
    """A rank raised, died or ran past the deadline; the message carries what each rank reported."""


def free_port() -> int:
    """A TCP port that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _worker(rank: int, world_size: int, port: int, collective_timeout: float, fn, args, results) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank)
    )
    torch.set_num_threads(1)  # N ranks share a few cores
    try:
        dist.init_process_group("gloo", rank=rank, world_size=world_size, timeout=timedelta(seconds=collective_timeout))
        value = fn(rank, world_size, *args)
        results.put((rank, "ok", value))
    except BaseException:
        results.put((rank, "error", traceback.format_exc()))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def run_distributed(
    fn: Callable[..., Any],
    *,
    world_size: int = 2,
    args: tuple = (),
    timeout: float = 120.0,
    collective_timeout: float = 60.0,
) -> list[Any]:
    """Run ``fn(rank, world_size, *args)`` on ``world_size`` spawned gloo ranks; their return values by rank.

    ``fn`` must be importable by name (a module-level function) and return picklable values. The
    default process group is initialised before ``fn`` runs and destroyed after. Raises
    :class:`DistributedRunError` when a rank raises or exits without a result, or when ``timeout``
    seconds pass; the remaining ranks are then killed, so a hung collective never hangs the caller.
    """
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    port = free_port()
    procs = [
        ctx.Process(target=_worker, args=(rank, world_size, port, collective_timeout, fn, args, results), daemon=True)
        for rank in range(world_size)
    ]
    for proc in procs:
        proc.start()
    outcomes: dict[int, tuple[str, Any]] = {}
    deadline = time.monotonic() + timeout
    try:
        while len(outcomes) < world_size:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DistributedRunError(_report(f"ran past the {timeout:.0f} s deadline", outcomes, world_size))
            try:
                rank, status, value = results.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                dead = [r for r, p in enumerate(procs) if r not in outcomes and p.exitcode is not None]
                if dead:
                    time.sleep(0.5)  # a result may still be in flight from a rank that just exited
                    if results.empty():
                        raise DistributedRunError(
                            _report(f"rank(s) {dead} exited without a result", outcomes, world_size)
                        ) from None
                continue
            outcomes[rank] = (status, value)
            if status == "error":
                raise DistributedRunError(_report(f"rank {rank} raised", outcomes, world_size))
    finally:
        for proc in procs:
            proc.join(timeout=5 if len(outcomes) == world_size else 0.5)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5)
        results.close()
    return [outcomes[rank][1] for rank in range(world_size)]


def _report(what: str, outcomes: dict[int, tuple[str, Any]], world_size: int) -> str:
    lines = [f"distributed run with {world_size} ranks: {what}"]
    for rank in range(world_size):
        status, value = outcomes.get(rank, ("no result", ""))
        detail = value if status == "error" else ""
        lines.append(f"--- rank {rank}: {status}\n{detail}".rstrip())
    return "\n".join(lines)
