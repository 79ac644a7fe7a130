"""The door of the service: what is refused before a request's body is read or parsed.

An ASGI middleware, so it runs before FastAPI touches the body: a stopping service answers 503, a
request to ``/v1/...`` without a valid API key 401, a body whose Content-Length is over
``max_body_bytes`` 413 -- all without reading a byte of it. A body without a Content-Length (chunked)
is read here as it arrives and refused with 413 the moment it passes the limit; an accepted body is
then handed to the app as one message (and kept in the scope, so an unparseable one can be explained).
Every refusal has the service's error body ``{"error": {"type", "message"}}``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Protocol

from starlette.responses import JSONResponse

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PROTECTED = "/v1/"
"""Paths that need the API key (when keys are configured); probes and docs do not."""
BODY_KEY = "megasense.body"
"""Where the scope keeps the body the gate read."""


def error_response(status: int, type_: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """The service's error body, for every status it answers with."""
    return JSONResponse({"error": {"type": type_, "message": message}}, status_code=status, headers=headers)


class _GateState(Protocol):
    """What the gate reads of the service's state (``app.ServiceState``)."""

    settings: Any
    keys: Any
    metrics: Any
    draining: bool


class RequestGate:
    def __init__(self, app: ASGIApp, *, state: _GateState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        refusal = self._refusal(scope["path"], headers)
        if refusal is None and ("content-length" in headers or "transfer-encoding" in headers):
            body, refusal = await self._read_body(receive, self.state.settings.max_body_bytes)
            if refusal is None:
                scope[BODY_KEY] = body
                receive = _replay(body, receive)
        if refusal is not None:
            self.state.metrics.errors.labels(refusal.type).inc()
            await refusal.response()(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _refusal(self, path: str, headers: dict[str, str]) -> _Refusal | None:
        if path.startswith(PROTECTED):
            if self.state.draining:
                return _Refusal(503, "not_ready", "the service is stopping; send the request to another instance")
            if not self.state.keys.check(_presented_key(headers)):
                return _Refusal(401, "unauthorized", "a valid API key is required", {"WWW-Authenticate": "Bearer"})
        length = headers.get("content-length")
        if length is not None:
            if not (length.isascii() and length.isdigit()):
                return _Refusal(400, "invalid_request", f"Content-Length {length!r} is not a number of bytes")
            limit = self.state.settings.max_body_bytes
            if int(length) > limit:
                return _too_large(f"the body has {int(length):,} bytes", limit)
        return None

    @staticmethod
    async def _read_body(receive: Receive, limit: int) -> tuple[bytes, _Refusal | None]:
        parts, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return b"", _Refusal(499, "client_closed_request", "the client closed the connection")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:  # streamed without a Content-Length (or a lying one): stop reading here
                return b"", _too_large(f"the body passed {limit:,} bytes", limit)
            parts.append(chunk)
            if not message.get("more_body", False):
                return b"".join(parts), None


class _Refusal:
    def __init__(self, status: int, type_: str, message: str, headers: dict[str, str] | None = None) -> None:
        self.status, self.type, self.message, self.headers = status, type_, message, headers

    def response(self) -> JSONResponse:
        return error_response(self.status, self.type, self.message, self.headers)


def _too_large(what: str, limit: int) -> _Refusal:
    return _Refusal(
        413, "request_too_large", f"{what}; the limit is max_body_bytes={limit} (send fewer or shorter texts)"
    )


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


def _presented_key(headers: dict[str, str]) -> str | None:
    header = headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return headers.get("x-api-key")


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that gives the app the body read here, then the connection's own messages (a disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def unparseable_body(body: bytes | None) -> str:
    """Why a body could not be parsed as JSON, for the 400 the framework raises without saying."""
    if body is None:
        return "the body could not be read as JSON"
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        byte = body[exc.start : exc.start + 1]
        return f"the body is not valid UTF-8 (byte {exc.start}: {byte!r}); send JSON in UTF-8"
    try:
        json.loads(text)
    except RecursionError:
        return 'the body\'s JSON nests too deeply; send a flat object such as {"texts": ["..."]}'
    except ValueError as exc:
        if "digits" in str(exc):
            return f"the body holds a number too long to read ({exc}); send numbers of ordinary size"
        return f"the body is not valid JSON ({exc})"
    return "the body could not be read as JSON"
