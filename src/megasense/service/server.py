"""Run the app under uvicorn: one process, or ``workers`` processes sharing the port.

Graceful shutdown: on SIGINT/SIGTERM ``/ready`` turns 503 at once (so a load balancer drains this
instance) while ``/health`` stays 200 until the process exits; new requests are answered 503 and the
server stops accepting connections; requests in flight finish, for up to ``drain_timeout_s`` seconds;
the batchers drain; then the process exits.

A model that cannot be served (an unknown name, a model of the wrong kind) is refused before the port
opens, as a ``ConfigError`` naming the setting (``megasense serve`` prints it in one line, exit 2): one
process loads its models first; several processes each load their own, so the names are checked first.
"""

from __future__ import annotations

import json
import os

import uvicorn

from megasense.service.app import create_app
from megasense.service.assist import check_assistant_files
from megasense.service.backends import check_model_names, load_backends
from megasense.service.chat import load_chat_backend
from megasense.service.settings import ServiceSettings

_SETTINGS_ENV = "MEGASENSE_SERVICE_SETTINGS_JSON"


class _DrainingServer(uvicorn.Server):
    def handle_exit(self, sig: int, frame) -> None:
        state = _find_state(self.config)
        if state is not None:
            state.begin_drain()
        super().handle_exit(sig, frame)


def _find_state(config: uvicorn.Config):
    app = getattr(config, "app", None)
    return getattr(getattr(app, "state", None), "megasense", None)


def app_from_env():
    """Factory for worker processes: the settings travel as JSON in an environment variable."""
    return create_app(ServiceSettings.model_validate(json.loads(os.environ[_SETTINGS_ENV])))


def serve(settings: ServiceSettings) -> None:
    check_model_names(settings)
    if settings.workers > 1:
        os.environ[_SETTINGS_ENV] = settings.model_dump_json()
        uvicorn.run(
            "megasense.service.server:app_from_env",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            log_level=settings.log_level,
            timeout_graceful_shutdown=settings.drain_timeout_s,
        )
        return
    backends = load_backends(settings)  # here, not in the lifespan: a failure is the CLI's one-line error
    if settings.chat_model:
        backends.append(load_chat_backend(settings))
    if settings.assistant_catalogue:  # the files, before any model loads: a mistake in them is one line too
        check_assistant_files(settings)
    config = uvicorn.Config(
        create_app(settings, backends=lambda _: backends),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        timeout_graceful_shutdown=settings.drain_timeout_s,
    )
    _DrainingServer(config).run()
