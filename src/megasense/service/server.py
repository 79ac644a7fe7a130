"""Run the app under uvicorn: one process, or ``workers`` processes sharing the port.

Graceful shutdown: on SIGINT/SIGTERM the server stops accepting connections and ``/ready`` turns
false at once (so a load balancer drains this instance), requests in flight finish, the batchers
drain, then the process exits.
"""

from __future__ import annotations

import json
import os

import uvicorn

from megasense.service.app import create_app
from megasense.service.settings import ServiceSettings

_SETTINGS_ENV = "MEGASENSE_SERVICE_SETTINGS_JSON"


class _DrainingServer(uvicorn.Server):
    def handle_exit(self, sig: int, frame) -> None:
        state = _find_state(self.config)
        if state is not None:
            state.ready = False
        super().handle_exit(sig, frame)


def _find_state(config: uvicorn.Config):
    app = getattr(config, "app", None)
    return getattr(getattr(app, "state", None), "megasense", None)


def app_from_env():
    """Factory for worker processes: the settings travel as JSON in an environment variable."""
    return create_app(ServiceSettings.model_validate(json.loads(os.environ[_SETTINGS_ENV])))


def serve(settings: ServiceSettings) -> None:
    if settings.workers > 1:
        os.environ[_SETTINGS_ENV] = settings.model_dump_json()
        uvicorn.run(
            "megasense.service.server:app_from_env",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            log_level=settings.log_level,
            timeout_graceful_shutdown=30,
        )
        return
    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        timeout_graceful_shutdown=30,
    )
    _DrainingServer(config).run()
