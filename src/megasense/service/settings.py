"""Service settings: defaults < TOML file < environment (``MEGASENSE_*``) < command-line flags."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource

from megasense.errors import ConfigError

CLASSIFIER_TASKS = ("sentiment", "intent", "emotion")
"""Tasks served by a text classifier, each at ``POST /v1/<task>``."""

TASK_SETTINGS = {
    "sentiment": "model",
    "intent": "intent_model",
    "emotion": "emotion_model",
    "embedding": "embedding_model",
    "slots": "slots_model",
    "chat": "chat_model",
}
"""The setting that names each task's model (the flag is the same with dashes: ``--intent-model``)."""


class ServiceSettings(BaseSettings):
    """Everything an operator can set; each field is also ``MEGASENSE_<FIELD>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="MEGASENSE_", extra="forbid", validate_default=True)

    host: str = "127.0.0.1"
    """Interface to listen on; 127.0.0.1 keeps the service local until you choose otherwise."""
    port: int = Field(8000, ge=0, le=65535)
    model: str = "default"
    """Sentiment model: ``default``, ``sentiment-en``, ``sentiment-multilingual`` or a model directory."""
    embedding_model: str | None = "all-minilm-l6-v2"
    """Model behind /v1/embeddings; empty to disable the endpoint."""
    intent_model: str | None = None
    """Model behind /v1/intent: ``intent-en`` or a single-label classifier's directory; unset or empty: not served."""
    emotion_model: str | None = None
    """Model behind /v1/emotion: ``emotion-en`` or a multi-label classifier's directory; unset or empty: not served."""
    slots_model: str | None = None
    """Model behind /v1/slots: a slot filler's directory (a token-classification model made by
    ``megasense.training.slots.train_slots``); unset or empty: not served. Served beside an intent model, it
    also fills the slots of every /v1/intent answer."""
    chat_model: str | None = None
    """Model behind /v1/chat/completions (OpenAI-compatible, streaming): a decoder with a chat template, such as
    ``smollm2-135m-instruct``, or its directory; unset or empty: not served."""
    assistant_catalogue: str | None = None
    """A product's feature catalogue (TOML) for POST /v1/assist, the assistant (intent_model or intent-en,
    emotion_model or emotion-en, the sentiment model, replies from chat_model or templates); with chat_model it
    is also the model ``assistant`` of /v1/chat/completions. Unset or empty: not served."""
    assistant_history: str | None = None
    """Usage history (JSONL: time, user, feature, event) the assistant learns co-use from and finds a request's
    ``user`` profile in."""
    chat_max_streams: int = Field(8, ge=1)
    """Chat replies generated at once, each on its own thread; more wait for one (past max_queue_texts: 429)."""
    max_batch_size: int = Field(64, ge=1)
    """Most texts merged into one model call."""
    max_wait_ms: float = Field(5.0, ge=0)
    """How long the first text of a batch waits for company before the batch runs."""
    dynamic_batching: bool = True
    """Merge texts of concurrent requests into one model call (off: one request at a time)."""
    max_texts_per_request: int = Field(256, ge=1)
    max_chars_per_text: int = Field(20_000, ge=1)
    max_chars_per_request: int = Field(500_000, ge=1)
    max_queue_texts: int = Field(4096, ge=1)
    """Texts waiting for the model beyond which new requests get 429 with Retry-After."""
    max_body_bytes: int = Field(8_000_000, ge=1)
    """Largest request body in bytes (413 above it), checked before the body is read: its Content-Length, or
    the bytes as they arrive when it has none. Room for max_chars_per_request even in ``\\uXXXX`` escapes."""
    drain_timeout_s: float = Field(30.0, ge=0)
    """On SIGTERM, how long requests in flight may take to finish before the process exits anyway."""
    api_keys_file: Path | None = None
    """File of accepted keys, one SHA-256 hex digest per line (``megasense serve --hash-key`` makes them)."""
    api_keys: str | None = None
    """Comma-separated accepted keys (plain text, for environments that inject secrets)."""
    cors_origins: list[str] = Field(default_factory=list)
    """Origins allowed by CORS; none by default."""
    workers: int = Field(1, ge=1)
    device: str = "cpu"
    """Device the models run on (``cpu``, ``cuda``, ``cuda:1``)."""
    precision: Literal["auto", "fp32", "bf16", "int8", "onnx", "onnx-int8"] = "auto"
    """Precision of the classifiers (sentiment, intent, emotion) and the slot filler, as ``megasense predict
    --precision``: auto, fp32, bf16, int8, onnx, onnx-int8."""
    log_level: str = "info"
    redact_logs: bool = True
    """Replace e-mail addresses, phone numbers, URLs, card and ID numbers and IP addresses in the service's log
    records (tracebacks and access lines, where request texts can reach the logs) by [EMAIL], [PHONE], ...;
    off only where the logs are as private as the requests."""

    @field_validator(
        "intent_model",
        "emotion_model",
        "slots_model",
        "chat_model",
        "assistant_catalogue",
        "assistant_history",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            return None  # MEGASENSE_INTENT_MODEL= or --intent-model '' turns off what a settings file enabled
        return value.strip() if isinstance(value, str) else value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        return value

    @model_validator(mode="after")
    def _check(self) -> ServiceSettings:
        if "*" in self.cors_origins:
            raise ValueError("cors_origins: '*' is refused; list the origins that may call the service")
        if self.api_keys_file is not None and not self.api_keys_file.is_file():
            raise ValueError(f"api_keys_file: {self.api_keys_file} does not exist")
        for task in ("intent", "emotion", "slots"):
            _check_classifier_name(task, getattr(self, TASK_SETTINGS[task]))
        _check_chat_name(self.chat_model)
        return self

    def classifier_models(self) -> dict[str, str]:
        """The classifiers to serve: task (sentiment, intent, emotion) -> model name; unset ones left out."""
        names = {task: getattr(self, TASK_SETTINGS[task]) for task in CLASSIFIER_TASKS}
        return {task: name for task, name in names.items() if name}

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: tuple[PydanticBaseSettingsSource, ...] = (init_settings, env_settings)
        toml_file = settings_cls.model_config.get("toml_file")
        if toml_file:
            sources += (TomlConfigSettingsSource(settings_cls, toml_file=toml_file),)
        return sources


def _check_classifier_name(task: str, name: str | None) -> None:
    """Refuse a shipped model of another task (``intent_model='sentiment-en'``) before anything is loaded.

    Whether a model directory fits its task (single- or multi-label, or a token classifier for slots) is
    checked when it is loaded."""
    if name is None:
        return
    from megasense.zoo.shipped import ROUTER, SHIPPED_MODELS, find_shipped_model

    setting = TASK_SETTINGS[task]
    fitting = ", ".join(m.name for m in SHIPPED_MODELS if m.task == task) or "none shipped"
    a = "an" if task[0] in "aeiou" else "a"
    if name == ROUTER:
        raise ValueError(
            f"{setting}={name!r} is the sentiment routing rule, not {a} {task} model; "
            f"name {a} {task} model ({fitting}) or a model directory"
        )
    shipped = find_shipped_model(name)
    if shipped is not None and shipped.task != task:
        raise ValueError(
            f"{setting}={name!r} is the shipped {shipped.task} model, not {a} {task} model; "
            f"name {a} {task} model ({fitting}) or a model directory"
        )


def _check_chat_name(name: str | None) -> None:
    """Refuse a shipped classifier or the routing rule as ``chat_model`` (a decoder is needed), and a name that is
    neither a model megasense knows nor a path, before anything is loaded."""
    if name is None:
        return
    from megasense.zoo.embedded import EMBEDDED, find_embedded
    from megasense.zoo.shipped import ROUTER, find_shipped_model

    shipped = find_shipped_model(name)
    if name == ROUTER or shipped is not None:
        what = "the sentiment routing rule" if shipped is None else f"the shipped {shipped.task} classifier"
        raise ValueError(
            f"chat_model={name!r} is {what}, not a chat model; name a decoder with a chat template "
            "(smollm2-135m-instruct) or its directory"
        )
    if find_embedded(name) is None and not Path(name).expanduser().exists():
        known = ", ".join(e.name for e in EMBEDDED)
        raise ValueError(f"chat_model={name!r}: no such model directory, and not a model megasense knows ({known})")


def load_settings(toml_file: str | Path | None = None, **flags: Any) -> ServiceSettings:
    """Settings from an optional TOML file, the environment and ``flags`` (None values are ignored).

    Raises ``ConfigError`` naming each bad setting, its value and what it should be.
    """
    given = {k: v for k, v in flags.items() if v is not None}
    if toml_file is None:
        return _validated(ServiceSettings, given, "flags and MEGASENSE_* variables")
    path = Path(toml_file)
    if not path.is_file():
        raise ConfigError(f"{path}: settings file does not exist")

    class FileSettings(ServiceSettings):
        model_config = SettingsConfigDict(**{**ServiceSettings.model_config, "toml_file": path})

    try:
        return _validated(FileSettings, given, f"{path}, flags and MEGASENSE_* variables")
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None


def _validated(cls: type[ServiceSettings], given: dict[str, Any], sources: str) -> ServiceSettings:
    try:
        return cls(**given)
    except ValidationError as exc:
        problems = "; ".join(_problem(error) for error in exc.errors())
        raise ConfigError(f"service settings (from {sources}): {problems}") from None


def _problem(error: dict[str, Any]) -> str:
    """``port=70000: Input should be less than or equal to 65535`` for one of pydantic's errors."""
    where = ".".join(str(part) for part in error.get("loc", ()))
    cause = error.get("ctx", {}).get("error")  # a ValueError of our own validators: its message names the field
    if isinstance(cause, ValueError):
        return str(cause)
    if error.get("type") == "extra_forbidden":
        return f"{where}: unknown setting; known settings: {', '.join(ServiceSettings.model_fields)}"
    value = f"={error['input']!r}" if "input" in error and where else ""
    return f"{where}{value}: {error.get('msg', 'invalid')}" if where else error.get("msg", "invalid")
