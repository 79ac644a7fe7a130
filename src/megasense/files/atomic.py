"""Write files and directories so that a crash or an error never leaves a half-written result.

One mechanism for every writer: the result is written into a temporary sibling of the target (same
directory, so the same filesystem), flushed to disk, given the permissions of a normally created
file, and renamed onto the target at the end; rename is atomic on one filesystem, so readers see
either the old complete result or the new complete one. On an error the temporary is deleted and
the target is untouched. Pick the entry point by how the writer wants its output:

- ``atomic_write_text(path, text)`` / ``atomic_write_bytes(path, data)``: the content is in memory;
- ``atomic_file(path, mode)``: a writer that takes an open handle (``np.save``, ``json.dump``);
- ``AtomicPath(path)``: a writer that opens the file by name itself (pyarrow, ONNX export,
  ``tokenizers``), or that fills it over a long time and commits when done (an ``AtomicWriter`` such
  as ``TableWriter``);
- ``atomic_directory(path)``: a directory of files that must appear together (a model release);
- ``publish_directory(tmp, path)``: the last step of ``atomic_directory``, for a temporary directory
  whose name several processes agreed on (every rank of a distributed checkpoint writes into it).

A process killed outright (``kill -9``, out of memory) cannot delete its temporary. Each temporary's
name carries its host and process id (``.out.csv.tmp-<host>-<pid>-<random>``), so the next writer of the
same target deletes those whose process is gone (on this host; another host's are never touched).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Self

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


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9]", "_", socket.gethostname())[:40] or "host"


def _tmp_prefix(target: Path) -> str:
    """The start of ``target``'s temporaries' names: who made them, so a later run can tell stale ones."""
    return f".{target.name}.tmp-{_host()}-{os.getpid()}-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # another user's process, or no way to tell: keep its files
    return True


def remove_stale_temporaries(target: Path) -> list[Path]:
    """Delete the temporaries of ``target`` left by killed processes of this host; returns what went."""
    prefix = f".{target.name}.tmp-{_host()}-"
    removed = []
    with contextlib.suppress(OSError):
        for path in target.parent.iterdir():
            pid = path.name[len(prefix) :].split("-", 1)[0] if path.name.startswith(prefix) else ""
            if not pid.isdigit() or _alive(int(pid)):
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(path)
    return removed


@contextlib.contextmanager
def atomic_directory(target: str | Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory; on success it replaces ``target``, on error it is deleted."""
    target = Path(target)
    check_output_dir(target, overwrite=overwrite)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(target)
    tmp = Path(tempfile.mkdtemp(prefix=_tmp_prefix(target), dir=target.parent))
    try:
        yield tmp
        publish_directory(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def publish_directory(tmp: Path, target: Path) -> None:
    """Flush every file under ``tmp`` and rename ``tmp`` onto ``target`` (a sibling of it), replacing
    an existing ``target``: the old one is renamed aside first and deleted only once the new one is in place."""
    _finish_tree(tmp)
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        shutil.rmtree(old, ignore_errors=True)  # left by a process that was killed mid-swap
        os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, target)


class AtomicPath:
    """A temporary file beside ``target`` for a writer that opens it by name, or fills it over a long time.

    ``commit()`` flushes it to disk, gives it a normal file's mode and renames it onto ``target``;
    ``discard()`` deletes it. As a context manager it yields the temporary path, commits on success and
    discards on error. ``suffix`` ends the temporary name, for writers that choose a format by it (``.onnx``).
    """

    def __init__(self, target: str | Path, *, suffix: str = "") -> None:
        self.target = Path(target)
        self.target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(self.target)
        fd, name = tempfile.mkstemp(prefix=_tmp_prefix(self.target), suffix=suffix, dir=self.target.parent)
        os.close(fd)
        self.tmp = Path(name)

    def commit(self) -> Path:
        try:
            _finish_file(self.tmp, _umask())
            os.replace(self.tmp, self.target)
        except BaseException:
            self.discard()
            raise
        return self.target

    def discard(self) -> None:
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> Path:
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.discard()


class AtomicWriter:
    """Base of writers that fill temporaries over many calls (``TableWriter``, the indexed-dataset writer):
    ``close()`` publishes the result, ``abort()`` deletes the temporaries; ``with`` closes on success and
    aborts on an error."""

    def close(self) -> Any:
        raise NotImplementedError

    def abort(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


@contextlib.contextmanager
def atomic_file(target: str | Path, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file beside ``target``; on success it replaces ``target`` in one rename.

    Text modes write UTF-8.
    """
    with AtomicPath(target) as tmp, open(tmp, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as handle:
        yield handle


def atomic_write_text(target: str | Path, text: str) -> Path:
    """Replace ``target`` with ``text`` (UTF-8) in one rename; returns ``target``."""
    with atomic_file(target, "w") as handle:
        handle.write(text)
    return Path(target)


def atomic_write_bytes(target: str | Path, data: bytes) -> Path:
    """Replace ``target`` with ``data`` in one rename; returns ``target``."""
    with atomic_file(target, "wb") as handle:
        handle.write(data)
    return Path(target)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _finish_file(path: Path, mask: int) -> None:
    """Flush ``path`` to disk and give it a normal file's mode (``mkstemp`` makes private 0600 files)."""
    os.chmod(path, 0o666 & ~mask)
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


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
            _finish_file(path, mask)
