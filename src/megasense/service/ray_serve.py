"""The same FastAPI app on Ray Serve: ``megasense serve --engine ray --replicas N``.

Each replica builds its own app with ``service.app.create_app(settings)`` (``serve.ingress`` with a
builder, run on the replica), so its lifespan loads one copy of each model and runs the same dynamic
batchers as under uvicorn; Ray Serve's proxy spreads requests over the replicas, on one machine or
across a cluster (``ray start --head`` + ``--ray-address``). The default, ``--engine local``, stays
uvicorn in ``service.server``.
"""

from __future__ import annotations

from dataclasses import dataclass

from megasense.errors import ConfigError
from megasense.predictors.ray_engine import connect
from megasense.service.assist import check_assistant_files
from megasense.service.backends import check_model_names
from megasense.service.settings import ServiceSettings

APP_NAME = "megasense"


@dataclass(frozen=True)
class ReplicaOptions:
    replicas: int = 1
    """Copies of the app (each with its own models) behind Ray Serve's proxy."""
    cpus_per_replica: float = 1.0
    """CPUs Ray reserves for each replica."""

    def __post_init__(self) -> None:
        if self.replicas < 1:
            raise ConfigError(f"replicas={self.replicas} (--replicas) must be at least 1")
        if self.cpus_per_replica <= 0:
            raise ConfigError(f"cpus_per_replica={self.cpus_per_replica} must be above 0")


def service_application(settings: ServiceSettings, options: ReplicaOptions):
    """The Ray Serve application (a bound deployment): ``options.replicas`` copies of ``create_app(settings)``."""
    from ray import serve

    def build_app():
        from megasense.service.app import create_app  # on the replica: its lifespan loads the models there

        return create_app(settings)

    deployment = serve.deployment(
        serve.ingress(build_app)(),
        name="MegasenseService",
        num_replicas=options.replicas,
        ray_actor_options={"num_cpus": options.cpus_per_replica},
        # a replica answers several requests at once: its dynamic batchers merge them into model calls
        max_ongoing_requests=max(8, settings.max_batch_size),
    )
    return deployment.bind()


def start(settings: ServiceSettings, options: ReplicaOptions, *, address: str | None = None, blocking: bool = False):
    """Deploy the service on Ray Serve at ``settings.host:settings.port``; with ``blocking`` wait until stopped.

    Model names and assistant files are checked here first, so a mistake is one line, not a replica crash loop.
    Returns the Serve handle (non-blocking)."""
    check_model_names(settings)
    if settings.assistant_catalogue:
        check_assistant_files(settings)
    connect(address)
    from ray import serve

    serve.start(http_options={"host": settings.host, "port": settings.port})
    return serve.run(service_application(settings, options), name=APP_NAME, route_prefix="/", blocking=blocking)


def stop() -> None:
    """Remove the application and shut Ray Serve down (the Ray instance stays)."""
    from ray import serve

    serve.delete(APP_NAME)
    serve.shutdown()
