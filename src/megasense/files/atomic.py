"""Write files and directories so that a crash or an error never leaves a half-written result.

Everything is written into a temporary sibling first and renamed into place at the end; rename is
atomic on one filesystem, so readers see either the old complete result or the new complete one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from megasense.errors import CheckpointError


def check_output_dir(target: Path, *, overwrite: bool) -> None:
    """Refuse to replace an existing non-empty directory (or any file) unless asked to."""
    if target.exists() and not target.is_dir():
        raise CheckpointError(target, "exists and is not a directory; choose another output path")
    if target.is_dir() and any(target.iterdir()) and not overwrite:
        raise CheckpointError(
            target,
            "already exists and is not empty; pass --overwrite (overwrite=True) "
            "to replace it, or choose another output directory",
        )


@contextlib.contextmanager
def atomic_directory(target: str | Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory; on success it replaces ``target``, on error it is deleted."""
    target = Path(target)
    check_output_dir(target, overwrite=overwrite)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield tmp
        _finish_tree(tmp)
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def atomic_file(target: str | Path, mode: str = "wb") -> Iterator:
    """Open a temporary file beside ``target``; on success it replaces ``target`` in one rename."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.tmp-", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _finish_tree(root: Path) -> None:
    """Flush every file to disk and give the tree the permissions of a normally created one.

    ``mkdtemp`` (and some writers) create private 0700/0600 entries; a model directory in a shared
    cache should be as readable as any other file the user writes.
    """
    mask = _umask()
    os.chmod(root, 0o777 & ~mask)
    for path in root.rglob("*"):
        if path.is_dir():
            os.chmod(path, 0o777 & ~mask)
        elif path.is_file():
            os.chmod(path, 0o666 & ~mask)
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
