"""File jobs on Ray Data: the same predictions (or embeddings) as ``predictors.jobs``, on every core of a cluster.

The input (CSV, TSV, JSONL, Parquet or TXT; a file or a folder of them) is read as a Ray dataset, its
batches are scored by ``map_batches`` on a pool of actors that each load the model once
(``ScoreBatches``, a callable class), and the rows are written as Parquet (or CSV, JSONL) parts plus a
``_manifest.json`` into a temporary directory beside the target, which is renamed into place only when
every part is written (``files.atomic.atomic_directory``): a failed job leaves nothing that looks finished.

Each batch goes through ``jobs.predict_frame``, the function the local engine uses, so labels are
identical and scores equal to floating-point tolerance. Rows keep the input's order (Ray Data's
``preserve_order``; parts are named by write-task index, so their names sort in row order). Actors
are restarted and their batches retried when a worker dies (``max_restarts``, ``max_task_retries``),
so every row is written exactly once.

Ray is the optional extra ``megasense[ray]``; without it, ``connect`` raises ``MissingExtraError``.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from megasense.errors import ConfigError, MegasenseInputError, MissingExtraError, TableError
from megasense.files.atomic import atomic_directory, atomic_write_text
from megasense.files.tables import read_chunks, require_column, table_format, text_column
from megasense.predictors.jobs import predict_frame

MANIFEST = "_manifest.json"
FAIL_ONCE_ENV = "MEGASENSE_RAY_FAIL_ONCE"
"""Test hook: a marker-file path; the first actor to finish a batch creates it and dies before answering
(once), so tests can check that Ray restarts the actor and retries the batch."""
WRITERS = {"parquet": "write_parquet", "csv": "write_csv", "jsonl": "write_json"}
INSTALL = "pip install 'megasense[ray]'"


@dataclass(frozen=True)
class RaySettings:
    """Where and how wide a Ray job runs."""

    address: str | None = None
    """A running cluster (``ray://host:10001`` or ``host:6379``; ``auto``: the one this machine belongs to);
    None starts a local Ray instance with this machine's CPUs (or joins one this process already started)."""
    actors: int | None = None
    """Model copies (actors); None: one per CPU of the cluster."""
    cpus_per_actor: float | None = None
    """CPUs Ray reserves per actor; None shares the cluster's CPUs among the actors, less ``IO_CPUS`` kept
    free for the read and write tasks (which would otherwise wait for a CPU the actors never give back).
    torch in each actor runs that many threads, rounded, at least one."""
    batch_size: int = 256
    """Rows per ``map_batches`` call."""
    max_restarts: int = 3
    """Times a dead actor of ``RayScorer`` (analyze) is restarted. File jobs use Ray Data's own actor fault
    tolerance, which restarts actors and retries their batches without a bound."""
    max_task_retries: int = 3
    """Times a batch of ``RayScorer`` whose actor died is retried on the restarted actor."""
    progress: bool = True
    """Ray Data's own progress bars (per stage) on stderr."""

    def __post_init__(self) -> None:
        if self.actors is not None and self.actors < 1:
            raise ConfigError(f"actors={self.actors} must be at least 1")
        if self.cpus_per_actor is not None and self.cpus_per_actor <= 0:
            raise ConfigError(f"cpus_per_actor={self.cpus_per_actor} must be above 0")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size={self.batch_size} must be at least 1")


@dataclass
class RayJobSummary:
    rows: int
    output: Path
    parts: list[dict[str, Any]] = field(default_factory=list)
    """``{"path", "rows"}`` per part, in row order (as in the manifest)."""


def import_ray():
    """The ``ray`` module, or a ``MissingExtraError`` naming the extra to install."""
    try:
        import ray
        import ray.data  # the data extra, not only ray core
    except ModuleNotFoundError as exc:
        raise MissingExtraError(
            f"--engine ray needs Ray ({exc.name} is not installed): {INSTALL}, or use --engine local"
        ) from None
    return ray


def connect(address: str | None = None):
    """``ray``, initialised: joined to ``address``, or a local instance with this machine's CPUs; an
    instance this process already started (a test session's) is reused as it is."""
    ray = import_ray()
    if ray.is_initialized():
        return ray
    try:
        if address is None:
            ray.init(num_cpus=os.cpu_count() or 1, include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)
    except ConnectionError as exc:
        raise MegasenseInputError(
            f"cannot reach the Ray cluster at {address!r} (--ray-address): {exc}; start one with `ray start --head`"
        ) from None
    return ray


IO_CPUS = 0.25
"""CPUs each read or write task reserves (they mostly wait on files)."""


@dataclass(frozen=True)
class ActorPlan:
    actors: int
    cpus: float
    """CPUs Ray reserves per actor."""
    threads: int
    """torch threads per actor."""


def plan_actors(ray, settings: RaySettings) -> ActorPlan:
    """How many actors, and how many CPUs each, on the cluster ``ray`` is connected to."""
    total = float(ray.cluster_resources().get("CPU", 1))
    if settings.cpus_per_actor is not None:
        cpus = settings.cpus_per_actor
        actors = settings.actors or max(1, int((total - 2 * IO_CPUS) // cpus))
    else:
        actors = settings.actors or max(1, int(total))
        cpus = max(0.01, (total - 2 * IO_CPUS) / actors)
    if actors * cpus + 2 * IO_CPUS > total:
        raise ConfigError(
            f"{actors} actors of {cpus:g} CPUs each leave no {2 * IO_CPUS:g} CPUs for reading and writing on a "
            f"cluster of {total:g} CPUs; ask for fewer actors or fewer CPUs per actor"
        )
    return ActorPlan(actors=actors, cpus=cpus, threads=max(1, round(cpus)))


# ----- reading ---------------------------------------------------------------------------------------


def input_files(source: str | Path) -> tuple[list[Path], str]:
    """The files of ``source`` (a file, or every table file under a folder, sorted) and their one format."""
    source = Path(source)
    if not source.exists():
        raise TableError(f"{source}: no such file or folder")
    if source.is_dir():
        files = sorted(p for p in source.rglob("*") if p.is_file() and not p.name.startswith((".", "_")))
        if not files:
            raise TableError(f"{source}: the folder holds no files")
    else:
        files = [source]
    formats = {table_format(p) for p in files}
    if len(formats) > 1:
        raise TableError(f"{source}: holds files of several formats ({', '.join(sorted(formats))}); expected one")
    return files, formats.pop()


def read_dataset(ray, files: list[Path], fmt: str, text_col: str):
    """``files`` as a Ray dataset whose columns read as the local engine reads them (CSV values as strings)."""
    first = next(iter(read_chunks(files[0], fmt=fmt, chunk_rows=1)), None)
    if first is None:
        raise TableError(f"{files[0]}: the file has a header but no rows")
    columns = list(first.frame.columns)
    require_column(first.frame, text_col, files[0])
    paths = [str(p) for p in files]
    if fmt in ("csv", "tsv"):
        from pyarrow import csv, string

        # Every column as a string, as files.tables reads CSV: "007" stays "007", "" stays "" (not null).
        return ray.data.read_csv(
            paths,
            num_cpus=IO_CPUS,
            parse_options=csv.ParseOptions(delimiter="," if fmt == "csv" else "\t", newlines_in_values=True),
            convert_options=csv.ConvertOptions(column_types=dict.fromkeys(columns, string())),
        )
    if fmt == "jsonl":
        return ray.data.read_json(paths, lines=True, num_cpus=IO_CPUS)
    if fmt == "parquet":
        return ray.data.read_parquet(paths, num_cpus=IO_CPUS)
    return ray.data.read_text(paths, num_cpus=IO_CPUS)


# ----- scoring ---------------------------------------------------------------------------------------


class ScoreBatches:
    """The ``map_batches`` callable: loads the model once per actor, then adds prediction (or embedding)
    columns to each batch, exactly as the local engine does."""

    def __init__(
        self, load: Callable[[], Any], *, text_col: str, task: str, threads: int = 1, fail_once: str | None = None
    ) -> None:
        import torch

        torch.set_num_threads(max(1, threads))
        self.model, self.text_col, self.task, self.fail_once = load(), text_col, task, fail_once

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        batch = batch.reset_index(drop=True)
        texts = text_column(batch, self.text_col)
        if self.task == "embed":
            out = batch.copy()
            out["embedding"] = [v.tolist() for v in self.model.embed(texts)]
        else:
            out = with_predictions(batch, predict_frame(self.model, texts))
        self._maybe_die()
        return out

    def _maybe_die(self) -> None:
        if self.fail_once is None:
            return
        with contextlib.suppress(FileExistsError):
            with open(self.fail_once, "x", encoding="utf-8") as marker:
                marker.write(str(os.getpid()))
            os._exit(1)  # a worker dying mid-run, after its batch's work and before its answer


def with_predictions(frame: pd.DataFrame, predicted: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with the prediction columns after it; an input column named like one is kept as ``input_<name>``."""
    clashes = [c for c in predicted if c in frame]
    if clashes:
        frame = frame.rename(columns={c: f"input_{c}" for c in clashes})
    return pd.concat([frame, predicted], axis=1)


def load_embedder(model: str, *, max_length: int = 256):
    """A ``SentenceEmbedder`` for ``model``: what each actor of ``megasense embed --engine ray`` loads."""
    from megasense.predictors.embedding import SentenceEmbedder
    from megasense.zoo.load import load_model

    return SentenceEmbedder(load_model(model), max_length=max_length)


# ----- writing ---------------------------------------------------------------------------------------


def output_format(output: Path) -> str:
    """Parts' format from the output folder's suffix: ``scored.parquet/`` (or no suffix), ``.csv``, ``.jsonl``."""
    if not output.suffix:
        return "parquet"
    fmt = table_format(output)
    if fmt not in WRITERS:
        raise TableError(
            f"{output}: --engine ray writes a folder of Parquet, CSV or JSONL parts; name it *.parquet, *.csv, "
            f"*.jsonl or without a suffix (not {output.suffix})"
        )
    return fmt


def _part_names(fmt: str):
    from ray.data.datasource import FilenameProvider

    class Parts(FilenameProvider):
        """``part-000000-<job>.parquet``...: one per write task, numbered in row order, so names sort as rows do."""

        def get_filename_for_task(self, write_uuid: str, task_index: int) -> str:
            return f"part-{task_index:06d}-{write_uuid}.{fmt}"

    return Parts(file_format=fmt)


def _count_rows(path: Path, fmt: str) -> int:
    import pyarrow.parquet as pq

    if fmt == "parquet":
        return pq.ParquetFile(path).metadata.num_rows
    return sum(len(c.frame) for c in read_chunks(path, fmt=fmt))


def _parts(folder: Path, fmt: str) -> list[dict[str, Any]]:
    names = sorted(p for p in folder.iterdir() if p.name.startswith("part-"))
    return [{"path": p.name, "rows": _count_rows(p, fmt)} for p in names]


def run_file_job(
    load: Callable[[], Any],
    source: str | Path,
    output: str | Path,
    *,
    task: str = "predict",
    text_col: str = "text",
    settings: RaySettings | None = None,
    describe: dict[str, Any] | None = None,
) -> RayJobSummary:
    """Score ``source`` (a table file or folder) on Ray into the folder ``output``: parts plus ``_manifest.json``.

    ``load``: a picklable zero-argument callable each actor calls once for its model (a predictor with
    ``predict`` for ``task="predict"``, a ``SentenceEmbedder`` for ``task="embed"``); ``describe``: extra
    facts for the manifest (the model's name). An existing output folder is replaced only when it holds a
    manifest (an earlier job's result); the input is never overwritten.
    """
    if task not in ("predict", "embed"):
        raise ConfigError(f"task {task!r}: expected predict or embed")
    settings = settings or RaySettings()
    source, output = Path(source), Path(output)
    files, fmt_in = input_files(source)
    fmt_out = output_format(output)
    if output.exists() and output.is_dir() and any(output.iterdir()) and not (output / MANIFEST).exists():
        raise TableError(f"{output}: exists and is not the result of a Ray job (no {MANIFEST}); choose another path")
    if any(output.resolve() == f.resolve() or output.resolve() in f.resolve().parents for f in files):
        raise TableError(f"{output}: is the input; choose another output path")
    ray = connect(settings.address)
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True
    context.enable_progress_bars = settings.progress
    plan = plan_actors(ray, settings)
    dataset = read_dataset(ray, files, fmt_in, text_col)
    # A dead actor is restarted and its batch retried by Ray Data's defaults for actor pools (max_restarts
    # and max_task_retries -1): that is what keeps every row exactly once after a worker dies.
    scored = dataset.map_batches(
        ScoreBatches,
        batch_format="pandas",
        batch_size=settings.batch_size,
        compute=ray.data.ActorPoolStrategy(size=plan.actors),
        num_cpus=plan.cpus,
        fn_constructor_kwargs={
            "load": load,
            "text_col": text_col,
            "task": task,
            "threads": plan.threads,
            "fail_once": os.environ.get(FAIL_ONCE_ENV),
        },
    )
    with atomic_directory(output, overwrite=True) as tmp:
        write = getattr(scored, WRITERS[fmt_out])
        write(str(tmp), filename_provider=_part_names(fmt_out), ray_remote_args={"num_cpus": IO_CPUS})
        parts = _parts(tmp, fmt_out)
        rows = sum(p["rows"] for p in parts)
        if rows == 0:
            raise TableError(f"{source}: no rows to score")
        manifest = {
            "format": fmt_out,
            "engine": "ray",
            "ray_version": ray.__version__,
            "task": task,
            "source": str(source),
            "inputs": [str(f) for f in files],
            "text_col": text_col,
            "rows": rows,
            "parts": parts,
            "settings": asdict(settings),
            **(describe or {}),
        }
        atomic_write_text(tmp / MANIFEST, json.dumps(manifest, indent=1, ensure_ascii=False))
    return RayJobSummary(rows=rows, output=output, parts=parts)


def read_output(output: str | Path) -> pd.DataFrame:
    """A Ray job's output folder as one DataFrame, parts in row order (small outputs: tests, previews)."""
    output = Path(output)
    manifest_path = output / MANIFEST
    if not manifest_path.exists():
        raise TableError(f"{output}: no {MANIFEST}; not a finished Ray job's output")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    frames = [pd.concat([c.frame for c in read_chunks(output / p["path"])]) for p in manifest["parts"]]
    return pd.concat(frames, ignore_index=True)
