"""ASGI short-circuit for the two reads asked most often, answered from memory before FastAPI routes them.

``GET /simulation-time`` (the retained clock, serialised once per clock message) and
``GET /meter/stream?meter_id=…&limit=1`` (the latest stored reading, see :mod:`gridsim_gateway.latest`)
cost FastAPI's routing, dependency resolution and validation more than their answer; here they cost a path
comparison. Anything this layer cannot answer exactly as the route would (no clock yet, a meter not in
memory, another query, reads that need an API key) goes on to the application unchanged, so errors, keys
and OpenAPI stay the routes' own.
"""

from __future__ import annotations

from typing import Any

from gridsim_gateway.latest import LatestReadings, latest_query
from gridsim_gateway.security import Asgi, Receive, Scope, Send
from gridsim_gateway.state import LiveState
from gridsim_shared.bus import Bus
from gridsim_shared.settings import GatewaySettings

__all__ = ["FastReads"]

_JSON = (b"content-type", b"application/json")


class FastReads:
    """ASGI middleware answering ``GET /simulation-time`` and the latest reading from the lifespan state."""

    def __init__(self, app: Asgi, *, gateway: GatewaySettings) -> None:
        self.app = app
        # Reads need no key unless keys are configured and reads are not public: then the route checks it.
        self.open = gateway.public_reads or not gateway.api_keys
        # The response start of the last body answered: the clock's body is the same object until the
        # next clock message, so most requests reuse its headers instead of building them.
        self._last: tuple[bytes, dict[str, Any]] = (b"", {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.open and scope["type"] == "http" and scope["method"] == "GET":
            body = self._answer(scope)
            if body is not None:
                last_body, start = self._last
                if body is not last_body:
                    start = {
                        "type": "http.response.start",
                        "status": 200,
                        "headers": [(b"content-length", str(len(body)).encode()), _JSON],
                    }
                    self._last = (body, start)
                await send(start)
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)

    @staticmethod
    def _answer(scope: Scope) -> bytes | None:
        path = scope["path"]
        if path not in {"/simulation-time", "/meter/stream"}:
            return None
        state: dict[str, Any] | None = scope.get("state")
        if not state or "live" not in state:
            return None
        live: LiveState = state["live"]
        if path == "/simulation-time":
            return live.simulation_time_json
        meter = latest_query(scope.get("query_string", b""))
        if meter is None:
            return None
        latest: LatestReadings = state["latest"]
        bus: Bus = state["bus"]
        latest.bus_reconnects(bus.reconnects)
        return latest.answer(meter, live.watermark)
