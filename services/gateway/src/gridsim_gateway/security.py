"""Who may call the gateway, and what a request may look like (docs/security.md).

- API keys with roles (read < operate < admin): a mutating route needs a key of its role when keys are
  configured (401 without a valid key, 403 with one whose role is too small); reads need a ``read`` key
  only when ``gateway.public_reads`` is false.
- :func:`check_exposure`: the gateway refuses to listen beyond loopback with no key configured, unless
  ``gateway.allow_open`` says it may run open on purpose.
- :class:`RequestGuard`: a mutating request whose body is not JSON gets 415, one sent from another site
  (``Origin`` or ``Sec-Fetch-Site``) 403, a body over ``gateway.max_body_bytes`` 413. A browser can send a
  cross-site form or a body-less POST without asking (no CORS preflight); it always names the site it
  came from, and a JSON body or an ``X-API-Key`` header makes it ask first, which the gateway never allows.
- :class:`StreamSlots`: at most ``gateway.max_streams_per_client`` live streams per key (or client IP).
"""

from __future__ import annotations

import ipaddress
import secrets
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import Depends, Header, Request
from starlette.datastructures import Headers
from starlette.responses import Response

from gridsim_shared.errors import GridsimError
from gridsim_shared.settings import API_ROLES, ApiRole, GatewaySettings, Settings

__all__ = [
    "SAFE_METHODS",
    "ExposureError",
    "Forbidden",
    "RequestGuard",
    "StreamSlots",
    "TooManyStreams",
    "Unauthorized",
    "caller_role",
    "check_exposure",
    "is_loopback",
    "require",
]

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Asgi = Callable[[Scope, Receive, Send], Awaitable[None]]


class Unauthorized(GridsimError):
    """No valid API key on a route that needs one (HTTP 401)."""

    status = 401
    code = "unauthorized"


class Forbidden(GridsimError):
    """A valid key whose role is too small, or a cross-site request (HTTP 403)."""

    status = 403
    code = "forbidden"


class PayloadTooLarge(GridsimError):
    """A request body over ``gateway.max_body_bytes`` (HTTP 413)."""

    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(GridsimError):
    """A mutating request whose body is not JSON (HTTP 415)."""

    status = 415
    code = "unsupported_media_type"


class TooManyStreams(GridsimError):
    """More live streams than ``gateway.max_streams_per_client`` for one key or address (HTTP 429)."""

    status = 429
    code = "too_many_streams"


class ExposureError(RuntimeError):
    """The gateway would listen beyond loopback with nobody's key required."""


# --------------------------------------------------------------------------------------- keys


def _held_role(key: str | None, gateway: GatewaySettings) -> ApiRole | None:
    """The role of ``key`` among the configured keys (constant-time compare against each)."""
    if key is None:
        return None
    found: ApiRole | None = None
    for known, role in gateway.key_roles().items():
        if secrets.compare_digest(key.encode(), known.encode()):
            found = role
    return found


def caller_role(request: Request, gateway: GatewaySettings) -> ApiRole | None:
    """The role of the request's ``X-API-Key`` (None without a valid one)."""
    return _held_role(request.headers.get("x-api-key"), gateway)


def _settings(request: Request) -> Settings:
    settings: Settings = request.state.settings
    return settings


ApiKeyHeader = Annotated[
    str | None, Header(description="a key with the route's role or above, when keys are configured")
]


def require(role: ApiRole) -> Callable[..., Awaitable[None]]:
    """A dependency: mutating requests need a key of ``role`` or above when keys are configured."""

    # The annotation names module-level objects only: FastAPI resolves it in this module's globals.
    async def guard(request: Request, x_api_key: ApiKeyHeader = None) -> None:
        gateway = _settings(request).gateway
        if request.method in SAFE_METHODS:
            needed: ApiRole | None = None if gateway.public_reads else "read"
        else:
            needed = role
        if needed is None or not gateway.api_keys:
            return
        held = _held_role(x_api_key, gateway)
        if held is None:
            msg = "a valid X-API-Key header is required for this route"
            raise Unauthorized(msg, field="X-API-Key")
        if API_ROLES.index(held) < API_ROLES.index(needed):
            msg = f"this route needs a key with the {needed} role; this key has the {held} role"
            raise Forbidden(msg, field="X-API-Key")

    return guard


READ = Depends(require("read"))
OPERATE = Depends(require("operate"))
ADMIN = Depends(require("admin"))


# ----------------------------------------------------------------------------------- exposure


def is_loopback(host: str) -> bool:
    """True for addresses only this machine reaches (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name or a wildcard: assume it is reachable from elsewhere


def check_exposure(gateway: GatewaySettings) -> None:
    """Raise :class:`ExposureError` when the gateway would run open beyond loopback without being told to."""
    if gateway.api_keys or gateway.allow_open or is_loopback(gateway.host):
        return
    msg = (
        f"the gateway would listen on {gateway.host} with no API key: anyone who reaches it could reset the "
        "world. Set GRIDSIM_GATEWAY__API_KEYS (see docs/security.md), bind to 127.0.0.1, or set "
        "GRIDSIM_GATEWAY__ALLOW_OPEN=true to run open on purpose"
    )
    raise ExposureError(msg)


# ------------------------------------------------------------------------------ request shape


def _is_json(content_type: str | None) -> bool:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def cross_site(headers: Headers) -> str | None:
    """Why a request comes from another site (None when it does not say so)."""
    fetch_site = headers.get("sec-fetch-site")
    if fetch_site in {"cross-site", "same-site"}:
        return f"Sec-Fetch-Site: {fetch_site}"
    origin = headers.get("origin")
    if origin is None:
        return None
    if origin == "null" or urlsplit(origin).netloc.lower() != headers.get("host", "").lower():
        return f"Origin {origin!r} is not this gateway"
    return None


Render = Callable[[str, GridsimError], Response]


class RequestGuard:
    """ASGI middleware checking every mutating request's origin, size and media type before routing."""

    def __init__(self, app: Asgi, *, max_body_bytes: int, render: Render) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.render = render

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        path: str = scope.get("path", "")
        reason = cross_site(headers)
        if reason is not None:
            error: GridsimError = Forbidden(
                f"cross-site requests may not change anything ({reason})", field="Origin"
            )
            await self.render(path, error)(scope, receive, send)
            return
        too_large = PayloadTooLarge(
            f"the request body is larger than {self.max_body_bytes} bytes", field="body"
        )
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body_bytes):
            await self.render(path, too_large)(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await self.render(path, too_large)(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if body and not _is_json(headers.get("content-type")):
            error = UnsupportedMediaType(
                f"the body must be application/json (got {headers.get('content-type') or 'no Content-Type'})",
                field="Content-Type",
            )
            await self.render(path, error)(scope, receive, send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


# ------------------------------------------------------------------------------------ streams


class StreamSlots:
    """Counts the live streams each client (API key, else address) holds; refuses one over the limit."""

    def __init__(self) -> None:
        self._open: Counter[str] = Counter()

    def held(self, client: str) -> int:
        """Streams ``client`` has open now."""
        return self._open[client]

    def acquire(self, request: Request) -> str:
        """Take a slot for the request's client (429 when it holds its limit); returns the client's name."""
        gateway = _settings(request).gateway
        key = request.headers.get("x-api-key")
        address = request.client.host if request.client else "?"
        client = f"key:{key}" if _held_role(key, gateway) else f"ip:{address}"
        if self._open[client] >= gateway.max_streams_per_client:
            msg = f"at most {gateway.max_streams_per_client} live streams per client; close one first"
            raise TooManyStreams(msg)
        self._open[client] += 1
        return client

    def release(self, client: str) -> None:
        """Give the slot back."""
        self._open[client] -= 1
        if self._open[client] <= 0:
            del self._open[client]

    def guard(self, request: Request, stream: AsyncIterator[Any]) -> AsyncIterator[Any]:
        """``stream`` holding one slot of the request's client until it ends (429 raised here, not later)."""
        client = self.acquire(request)
        return self._held(client, stream)

    async def _held(self, client: str, stream: AsyncIterator[Any]) -> AsyncIterator[Any]:
        try:
            async for item in stream:
                yield item
        finally:
            self.release(client)
