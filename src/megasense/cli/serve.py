"""``megasense serve``: the HTTP API for sentiment, intents, emotions, slots, embeddings and chat."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from megasense.cli.errors import user_errors
from megasense.cli.ray_options import RayAddressOpt, check_engine
from megasense.errors import MissingExtraError

console = Console()


def serve(
    host: Annotated[str | None, typer.Option(help="Interface to listen on [default: 127.0.0.1].")] = None,
    port: Annotated[int | None, typer.Option(help="Port [default: 8000].")] = None,
    model: Annotated[str | None, typer.Option(help="Sentiment model [default: default].")] = None,
    embedding_model: Annotated[
        str | None, typer.Option(help="Model behind /v1/embeddings; '' disables it [default: all-minilm-l6-v2].")
    ] = None,
    intent_model: Annotated[
        str | None,
        typer.Option(help="Model behind /v1/intent: intent-en or a single-label classifier [default: not served]."),
    ] = None,
    emotion_model: Annotated[
        str | None,
        typer.Option(help="Model behind /v1/emotion: emotion-en or a multi-label classifier [default: not served]."),
    ] = None,
    slots_model: Annotated[
        str | None,
        typer.Option(
            help="Model behind /v1/slots: a slot filler (token classifier); beside --intent-model, /v1/intent "
            "answers carry slots too [default: not served]."
        ),
    ] = None,
    chat_model: Annotated[
        str | None,
        typer.Option(
            help="Model behind the OpenAI-compatible POST /v1/chat/completions (streaming too): a decoder with a "
            "chat template, such as smollm2-135m-instruct [default: not served]."
        ),
    ] = None,
    assistant_catalogue: Annotated[
        Path | None,
        typer.Option(
            help="A feature catalogue (TOML) for POST /v1/assist, the product assistant; with --chat-model also the "
            "model 'assistant' of /v1/chat/completions [default: not served]."
        ),
    ] = None,
    assistant_history: Annotated[
        Path | None, typer.Option(help="Usage history (JSONL) for the assistant's user profiles.")
    ] = None,
    device: Annotated[
        str | None, typer.Option(help="Device the models run on: cpu, cuda, cuda:1 [default: cpu].")
    ] = None,
    precision: Annotated[
        str | None,
        typer.Option(
            help="Classifier precision, as in predict: auto, fp32, bf16, int8, onnx, onnx-int8 [default: auto]."
        ),
    ] = None,
    config: Annotated[Path | None, typer.Option(help="A TOML file of settings (flags and env override it).")] = None,
    workers: Annotated[int | None, typer.Option(help="Processes sharing the port; each loads its own models.")] = None,
    max_batch_size: Annotated[int | None, typer.Option(help="Most texts per model call [default: 64].")] = None,
    max_wait_ms: Annotated[float | None, typer.Option(help="Wait for more texts this long [default: 5].")] = None,
    dynamic_batching: Annotated[
        bool | None, typer.Option("--dynamic-batching/--no-dynamic-batching", help="Merge concurrent requests.")
    ] = None,
    api_keys_file: Annotated[Path | None, typer.Option(help="File of SHA-256 digests of accepted API keys.")] = None,
    hash_key: Annotated[
        str | None, typer.Option(help="Print the digest of this key (a line for --api-keys-file) and exit.")
    ] = None,
    engine: Annotated[
        str, typer.Option(help="local (uvicorn on this machine) or ray (Ray Serve replicas; needs megasense[ray]).")
    ] = "local",
    replicas: Annotated[
        int | None, typer.Option(help="With --engine ray: copies of the app, each with its own models [default: 1].")
    ] = None,
    ray_address: RayAddressOpt = None,
    redact_logs: Annotated[
        bool | None,
        typer.Option(
            "--redact-logs/--no-redact-logs",
            help="Replace e-mail addresses, phones, URLs, cards, IDs and IPs in the logs by [EMAIL], ... [default: on]",
        ),
    ] = None,
) -> None:
    """Serve sentiment (POST /v1/sentiment) and embeddings (POST /v1/embeddings) over HTTP, and with
    --intent-model / --emotion-model / --slots-model intents (POST /v1/intent), emotions (POST /v1/emotion)
    and slots (POST /v1/slots; with an intent model too, each /v1/intent answer carries its slots), and with
    --chat-model an OpenAI-compatible chat (POST /v1/chat/completions, "stream": true for server-sent events),
    and with --assistant-catalogue the product assistant (POST /v1/assist).

    Settings come from flags, then MEGASENSE_* environment variables, then --config FILE.toml;
    the OpenAPI docs are at /docs. Example:

      megasense serve --port 8000 --intent-model intent-en --emotion-model emotion-en

      curl -s localhost:8000/v1/sentiment -H 'content-type: application/json' -d '{"texts": ["love it", "meh"]}'

      curl -s localhost:8000/v1/intent -H 'content-type: application/json' -d '{"text": "wake me at 7", "top_k": 3}'

      megasense serve --chat-model smollm2-135m-instruct   # then any OpenAI client, base_url http://localhost:8000/v1

      curl -sN localhost:8000/v1/chat/completions -H 'content-type: application/json' \
        -d '{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 32, "stream": true}'

      megasense serve --assistant-catalogue examples/assistant/smart-speaker.toml --chat-model smollm2-135m-instruct

      curl -s localhost:8000/v1/assist -H 'content-type: application/json' -d '{"text": "set an alarm for seven"}'

      megasense serve --engine ray --replicas 4   # Ray Serve: 4 copies of the app behind one port
    """
    with user_errors():
        if hash_key is not None:
            from megasense.service.auth import hash_key as digest

            console.out(digest(hash_key))
            return
        _require_serve_extra()
        from megasense.service.server import serve as run
        from megasense.service.settings import load_settings

        settings = load_settings(
            config,
            host=host,
            port=port,
            model=model,
            embedding_model=embedding_model,
            intent_model=intent_model,
            emotion_model=emotion_model,
            slots_model=slots_model,
            chat_model=chat_model,
            assistant_catalogue=None if assistant_catalogue is None else str(assistant_catalogue),
            assistant_history=None if assistant_history is None else str(assistant_history),
            device=device,
            precision=precision,
            workers=workers,
            max_batch_size=max_batch_size,
            max_wait_ms=max_wait_ms,
            dynamic_batching=dynamic_batching,
            api_keys_file=api_keys_file,
            redact_logs=redact_logs,
        )
        if check_engine(engine, ray_address):
            from megasense.service.ray_serve import ReplicaOptions, start

            if workers is not None:
                raise typer.BadParameter("--workers is uvicorn's; with --engine ray give --replicas")

            start(settings, ReplicaOptions(replicas=replicas or 1), address=ray_address, blocking=True)
            return
        if replicas is not None:
            raise typer.BadParameter("--replicas needs --engine ray (uvicorn's processes are --workers)")
        run(settings)


def _require_serve_extra() -> None:
    import importlib.util

    for module in ("fastapi", "uvicorn", "pydantic_settings", "prometheus_client"):
        if importlib.util.find_spec(module) is None:
            raise MissingExtraError(
                f"megasense serve needs the 'serve' extra ({module} is not installed): pip install 'megasense[serve]'"
            )
