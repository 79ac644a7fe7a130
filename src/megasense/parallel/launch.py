"""A tiny in-process launcher: run a function on N gloo processes on this CPU (what tests need).

``torchrun`` is the launcher for real jobs. This one exists so that a test can start two ranks,
get each rank's return value back, and fail within a deadline (with the failing rank's traceback)
instead of hanging when a collective never completes.

Two choices keep it deterministic on a busy machine. The parent hosts the rendezvous store on a port
the OS picks as it binds it, so no other process can take the port between choosing and binding it,
and the store outlives every rank. Each rank hands its outcome back over a pipe of its own with a
blocking send, before tearing its process group down: once a rank has exited, its outcome is either
in its pipe or was never produced, so the parent never has to guess how long a result may be in flight.
"""

from __future__ import annotations

import os
import signal
import time
import traceback
from collections.abc import Callable
from datetime import timedelta
from multiprocessing.connection import Connection, wait
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

HOST = "127.0.0.1"


class DistributedRunError(RuntimeError):
    """A rank raised, died or ran past the deadline; the message carries what each rank reported."""


def _worker(rank: int, world_size: int, port: int, collective_timeout: float, fn, args, conn: Connection) -> None:
    os.environ.update(
        MASTER_ADDR=HOST, MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank)
    )
    torch.set_num_threads(1)  # N ranks share a few cores
    timeout = timedelta(seconds=collective_timeout)
    try:
        try:
            store = dist.TCPStore(HOST, port, is_master=False, timeout=timeout)
            dist.init_process_group("gloo", store=store, rank=rank, world_size=world_size, timeout=timeout)
            outcome: tuple[str, Any] = ("ok", fn(rank, world_size, *args))
        except BaseException:
            outcome = ("error", traceback.format_exc())
        try:
            conn.send(outcome)  # pickles first, then writes: nothing is sent when pickling fails
        except Exception:
            conn.send(("error", f"the result of rank {rank} could not be sent back:\n{traceback.format_exc()}"))
        conn.close()  # the outcome is in the pipe before teardown, which may still crash or hang
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
    :class:`DistributedRunError` when a rank raises or exits without a result (naming its exit code),
    or when ``timeout`` seconds pass; the remaining ranks are then killed, so a hung collective never
    hangs the caller.
    """
    ctx = mp.get_context("spawn")
    # Bound here, on a port the OS picks while binding: nothing can take it before the ranks connect.
    store = dist.TCPStore(
        HOST, 0, is_master=True, timeout=timedelta(seconds=collective_timeout), wait_for_workers=False
    )
    pipes = [ctx.Pipe(duplex=False) for _ in range(world_size)]  # (receive end, send end) per rank
    procs = [
        ctx.Process(
            target=_worker,
            args=(rank, world_size, store.port, collective_timeout, fn, args, pipes[rank][1]),
            daemon=True,
        )
        for rank in range(world_size)
    ]
    outcomes: dict[int, tuple[str, Any]] = {}
    try:
        for proc, (_, send_end) in zip(procs, pipes):
            proc.start()
            send_end.close()  # the rank holds the only send end now: its exit closes the pipe
        _collect(procs, [receive_end for receive_end, _ in pipes], outcomes, timeout)
    finally:
        for proc in procs:
            if proc.pid is None:
                continue
            proc.join(timeout=5 if len(outcomes) == world_size else 0.5)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5)
        for receive_end, send_end in pipes:
            receive_end.close()
            send_end.close()
        del store  # stops the rendezvous server only after every rank is gone
    return [outcomes[rank][1] for rank in range(len(procs))]


def _collect(procs: list, receive_ends: list[Connection], outcomes: dict[int, tuple[str, Any]], timeout: float) -> None:
    """Fill ``outcomes`` with each rank's (status, value); raise on the first error, exit or the deadline."""
    world_size = len(procs)
    deadline = time.monotonic() + timeout
    while len(outcomes) < world_size:
        pending = [rank for rank in range(world_size) if rank not in outcomes]
        waitables = {receive_ends[rank]: rank for rank in pending} | {procs[rank].sentinel: rank for rank in pending}
        ready = wait(list(waitables), timeout=max(deadline - time.monotonic(), 0))
        if not ready:
            raise DistributedRunError(_report(f"ran past the {timeout:.0f} s deadline", outcomes, procs))
        for rank in sorted({waitables[obj] for obj in ready}):
            # Its pipe is readable or the rank has exited. A rank sends before it exits, so after an exit
            # its outcome is in the pipe or was never produced: there is nothing left in flight to wait for.
            try:
                if not receive_ends[rank].poll():
                    raise EOFError
                outcomes[rank] = receive_ends[rank].recv()
            except EOFError:
                procs[rank].join(timeout=5)  # its send end closes as it exits; the exit code follows
                raise DistributedRunError(
                    _report(f"rank {rank} exited without a result ({_exit(procs[rank])})", outcomes, procs)
                ) from None
            if outcomes[rank][0] == "error":
                raise DistributedRunError(_report(f"rank {rank} raised", outcomes, procs))


def _exit(proc) -> str:
    code = proc.exitcode
    if code is None:
        return "it closed its pipe but has not exited"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}: it failed before reporting; any traceback it printed is on stderr"


def _report(what: str, outcomes: dict[int, tuple[str, Any]], procs: list) -> str:
    lines = [f"distributed run with {len(procs)} ranks: {what}"]
    for rank in range(len(procs)):
        status, value = outcomes.get(rank, ("no result", ""))
        detail = value if status == "error" else ""
        lines.append(f"--- rank {rank}: {status}\n{detail}".rstrip())
    return "\n".join(lines)
