"""The few ASGI pieces the hot path needs, without a framework in the way."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import msgspec

from mlambda.errors import ErrorInfo, MlambdaError, PayloadTooLarge, http_status

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

JSON = (b"content-type", b"application/json")
# Every response of a page for people (the dashboard): nothing from elsewhere (no script,
# style, image, connection or frame), never framed, no MIME sniffing. Referrer-Policy is
# same-origin, not no-referrer: with no-referrer a browser sends `Origin: null` on the
# dashboard's own form posts, and its Origin check could not tell them from a forgery.
SECURITY_HEADERS: list[tuple[bytes, bytes]] = [
    (b"content-security-policy",
     b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
     b"connect-src 'self'; font-src 'self'; form-action 'self'; frame-ancestors 'none'; "
     b"base-uri 'none'; object-src 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
]

# A scope entry only in-process code sets (a client cannot): the ApiKey a request was
# already authenticated with, e.g. by a dashboard session.
PRINCIPAL = "mlambda.principal"
_encode = msgspec.json.Encoder().encode


class ClientGone(Exception):
    pass


def header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return value  # type: ignore[no-any-return]
    return None


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    length = header(scope, b"content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise PayloadTooLarge(f"request body of {int(length)} bytes exceeds {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            raise ClientGone()
        chunk = msg.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body exceeds {limit} bytes")
        chunks.append(chunk)
        if not msg.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def respond(send: Send, status: int, body: bytes,
                  headers: list[tuple[bytes, bytes]] | None = None) -> int:
    """Send a whole response (with its length: not chunked); returns its status (for the
    route's metrics)."""
    headers = [JSON] if headers is None else headers
    if status != 204 and status != 304:
        headers = [*headers, (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
    return status


def error_body(info: ErrorInfo, **extra: Any) -> bytes:
    return _encode({"errorType": info.error_type, "errorMessage": info.message, **extra})


async def respond_error(send: Send, exc: MlambdaError,
                        extra: tuple[tuple[bytes, bytes], ...] = ()) -> int:
    """An error's JSON answer, with its own headers (Retry-After...) and `extra` ones;
    returns its status."""
    info = exc.info()
    return await respond(send, http_status(info), error_body(info),
                         [JSON, *exc.headers(), *extra])


def with_security_headers(app: ASGIApp) -> ASGIApp:
    """`app` with `SECURITY_HEADERS` on every response (replacing any it set itself)."""
    names = {name for name, _ in SECURITY_HEADERS}

    async def secured(scope: Scope, receive: Receive, send: Send) -> None:
        async def send_secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in names]
                message = {**message, "headers": headers + SECURITY_HEADERS}
            await send(message)

        await app(scope, receive, send_secured)

    return secured


def encode_json(value: Any) -> bytes:
    return _encode(value)
