"""Limits on request bodies, enforced before any route or parser sees them.

A request that carries a body must declare it as JSON (415 otherwise) and may carry at most
``max_body_bytes``: a declared ``Content-Length`` over the limit is answered 413 at once, and
a body sent without one (chunked) is read only up to the limit, then answered 413. What fits
is handed on to the app unchanged.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from api.errors import error_response
from common.schema import is_json_content_type

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


class BodyLimits:
    """ASGI middleware: 415 for a body that is not JSON, 413 for one over ``max_body_bytes``."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app, self.limit = app, max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        chunked = _header(scope, b"transfer-encoding") is not None
        has_body = chunked or (declared is not None and declared.strip() not in ("", "0"))
        if has_body and not is_json_content_type(_header(scope, b"content-type")):
            await self._refuse(scope, receive, send, 415, "send the body as 'application/json'")
            return
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(scope, receive, send, 413, self._too_large())
            return
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > self.limit:
                await self._refuse(scope, receive, send, 413, self._too_large())
                return
            more = message.get("more_body", False)
        await self.app(scope, _replay(bytes(body), receive), send)

    def _too_large(self) -> str:
        return f"body is over the limit of {self.limit} bytes"

    async def _refuse(
        self, scope: Scope, receive: Receive, send: Send, status: int, detail: str
    ) -> None:
        await error_response(status, detail, headers={"Connection": "close"})(scope, receive, send)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the app the buffered body once, then what the client sends."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
