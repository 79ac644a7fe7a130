"""``--engine local|ray`` and ``--ray-address``, shared by predict, embed, analyze and serve; and the Ray branch
of the file commands (parse, call ``predictors.ray_engine``, print)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from megasense.errors import MegasenseInputError

err = Console(stderr=True)
ENGINES = ("local", "ray")

EngineOpt = Annotated[
    str,
    typer.Option(
        help="local (this process) or ray (Ray actors, one model copy each: a local Ray instance, or the cluster at "
        "--ray-address; needs megasense[ray]).",
    ),
]
RayAddressOpt = Annotated[
    str | None,
    typer.Option(
        help="With --engine ray: the cluster to join (host:6379, ray://host:10001, or auto) [default: start a "
        "local Ray instance with this machine's CPUs].",
    ),
]


def check_engine(engine: str, ray_address: str | None) -> bool:
    """True for ``--engine ray``; a one-line error for an unknown engine or an address without Ray."""
    if engine not in ENGINES:
        raise typer.BadParameter(f"--engine {engine!r}: expected one of {', '.join(ENGINES)}")
    if ray_address is not None and engine != "ray":
        raise typer.BadParameter("--ray-address needs --engine ray")
    if engine == "ray":
        from megasense.predictors.ray_engine import import_ray

        import_ray()  # a missing extra fails here, before any model loads
    return engine == "ray"


def refuse_local_only(**given: Any) -> None:
    """Options the Ray engine does not take (given as ``flag_name=value``) are refused, never silently ignored."""
    used = [f"--{name.replace('_', '-')}" for name, value in given.items() if value not in (None, False)]
    if used:
        raise MegasenseInputError(f"{', '.join(used)} cannot be used with --engine ray; drop it or use --engine local")


def _output_for_ray(output: Path | None) -> Path:
    if output is None:
        raise MegasenseInputError(
            "--engine ray writes a folder of parts: give --output, e.g. -o scored.parquet (a folder of Parquet parts "
            "plus _manifest.json)"
        )
    return output


def predict_on_ray(
    input: Path, output: Path | None, *, model: str, text_col: str, address: str | None, progress: bool, **options
) -> None:
    """``megasense predict --engine ray``: the model is checked here, then loaded once per Ray actor."""
    from megasense.predictors.ray_engine import RaySettings, run_file_job
    from megasense.predictors.sentiment import load_predictor

    output = _output_for_ray(output)
    load_predictor(model, **options)  # a wrong name, label or kind of model fails in one line, before Ray starts
    settings = RaySettings(address=address, progress=progress)
    summary = run_file_job(
        functools.partial(load_predictor, model, **options),
        input,
        output,
        task="predict",
        text_col=text_col,
        settings=settings,
        describe={"model": model},
    )
    err.print(f"wrote {summary.rows:,} rows to {output} ({len(summary.parts)} parts and _manifest.json)")


def embed_on_ray(
    input: Path, output: Path | None, *, model: str, text_col: str, max_length: int, address: str | None, progress: bool
) -> None:
    """``megasense embed --input FILE --engine ray``: an ``embedding`` column, written as parts."""
    from megasense.predictors.ray_engine import RaySettings, load_embedder, run_file_job

    output = _output_for_ray(output)
    if output.suffix.lower() == ".npy":
        raise MegasenseInputError(
            f"{output}: --engine ray writes a folder of table parts, not one .npy matrix; name it *.parquet"
        )
    summary = run_file_job(
        functools.partial(load_embedder, model, max_length=max_length),
        input,
        output,
        task="embed",
        text_col=text_col,
        settings=RaySettings(address=address, progress=progress),
        describe={"model": model},
    )
    err.print(f"wrote {summary.rows:,} embeddings to {output} ({len(summary.parts)} parts and _manifest.json)")


def ray_scorer(model: str, address: str | None):
    """``analyze --engine ray``'s sentiment scorer: the predictor on Ray actors."""
    from megasense.predictors.ray_engine import RaySettings
    from megasense.predictors.ray_pool import RayScorer
    from megasense.predictors.sentiment import load_predictor

    return RayScorer(functools.partial(load_predictor, model), name=model, settings=RaySettings(address=address))
