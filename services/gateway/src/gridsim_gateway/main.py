"""The gateway's FastAPI application: thin HTTP in front of the services (MQTT request/reply, DB reads)."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from gridsim_gateway.errors import error_response, install_error_handlers
from gridsim_gateway.fastpath import FastReads
from gridsim_gateway.homeassistant import HomeAssistant
from gridsim_gateway.jobs import JobRunner
from gridsim_gateway.latest import LatestReadings
from gridsim_gateway.routes import (
    admin,
    billing,
    controls,
    dashboard,
    export,
    feasibility,
    grid,
    grid_health,
    health,
    jobs,
    readings,
    simulation,
    utility,
)
from gridsim_gateway.security import ADMIN, OPERATE, RequestGuard, StreamSlots, check_exposure
from gridsim_gateway.settings import Settings
from gridsim_gateway.state import LiveState
from gridsim_gateway.worldengine import PREFIXES as WORLD_ENGINE_PREFIXES
from gridsim_gateway.worldengine import install as install_world_engine
from gridsim_gateway.worldengine.envelope import strapi_error_from
from gridsim_shared import channels
from gridsim_shared.bus import Bus
from gridsim_shared.db import open_pool
from gridsim_shared.errors import GridsimError
from gridsim_shared.settings import GatewaySettings
from gridsim_shared.supervision import Supervisor, TaskFailed

__all__ = ["SERVICE", "create_app"]

SERVICE = "gateway"

DESCRIPTION = """
gridsim serves a simulated electricity distribution grid (utility → feeder → transformer → smart meter →
household and its appliances) as live smart-meter data over MQTT and HTTP.

Errors are JSON: `{"error": {"status", "code", "message", "field", "details"}}` with a 4xx naming the field.
When API keys are configured (`GRIDSIM_GATEWAY__API_KEYS`, roles read < operate < admin), mutating routes
need an `X-API-Key` of their role: 401 without a valid key, 403 with too small a role. Mutating requests
take `application/json` bodies only (415 otherwise), are refused from other sites (403) and above
`GRIDSIM_GATEWAY__MAX_BODY_BYTES` (413). See docs/security.md.
"""


def _render(path: str, error: GridsimError) -> Response:
    """An error from the request guard, in the envelope of the API the path belongs to."""
    if path.startswith(WORLD_ENGINE_PREFIXES):
        return strapi_error_from(error).response()
    return error_response(error.body())


def create_app(settings: Settings, on_fatal: Callable[[str], None] | None = None) -> FastAPI:
    """Build the gateway application for ``settings`` (refused when it would run open beyond loopback).

    ``on_fatal(reason)`` is called when a supervised task crashed beyond its restart budget (the
    console script stops the server and exits non-zero); tests leave it unset.
    """
    check_exposure(settings.gateway)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        live = LiveState()
        latest = LatestReadings(settings.gateway.latest_readings_meters)
        supervisor = Supervisor(SERVICE, settings.supervision)
        async with (
            open_pool(settings.db, name=SERVICE) as pool,
            Bus(settings.mqtt, SERVICE, settings.instance) as bus,
        ):
            await bus.subscribe(channels.STATUS, live.on_status)
            await bus.subscribe(channels.CLOCK, live.on_clock)
            await bus.subscribe(channels.WATERMARK, live.on_watermark)
            await bus.subscribe(channels.ROLLUP_TRANSFORMER, live.on_transformer_rollup)
            await bus.subscribe(channels.CLOCK, latest.on_clock)
            if settings.gateway.latest_readings_meters:
                await bus.subscribe_while(latest.tracking, channels.BATCH, latest.on_batch)
            supervisor.attach(bus)
            watching = asyncio.create_task(_watch(supervisor, on_fatal))
            job_runner = JobRunner(bus, settings)
            if settings.homeassistant.enabled:
                await HomeAssistant(bus, pool, settings).start()
            await bus.ready()  # its subscriptions are acknowledged; uvicorn listens right after
            # Everything built so far (the app, its routes and pydantic models, the pool) lives as long as
            # the process: out of the collector's way, so the collections each request's garbage triggers
            # no longer walk it (CPython's gc.freeze, meant for this).
            gc.collect()
            gc.freeze()
            try:
                yield {
                    "bus": bus,
                    "pool": pool,
                    "settings": settings,
                    "live": live,
                    "latest": latest,
                    "supervisor": supervisor,
                    "streams": StreamSlots(),
                    "jobs": job_runner,
                }
            finally:
                await job_runner.close()
                watching.cancel()
                await supervisor.close()

    app = _GatewayApp(
        settings.gateway,
        title="gridsim",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    install_error_handlers(app)
    app.add_middleware(RequestGuard, max_body_bytes=settings.gateway.max_body_bytes, render=_render)
    # /health stays open to every caller (the launcher and probes poll it); the rest need their role.
    app.include_router(health.router)
    for module in (
        simulation,
        billing,
        dashboard,
        feasibility,
        grid,
        readings,
        controls,
        export,
        grid_health,
        jobs,
        utility,
    ):
        app.include_router(module.router, dependencies=[OPERATE])
    app.include_router(admin.router, dependencies=[ADMIN])
    install_world_engine(app, settings)
    return app


class _GatewayApp(FastAPI):
    """FastAPI with :class:`FastReads` in front of it.

    ``add_middleware`` would put it inside Starlette's ServerErrorMiddleware (a wrapped ``send`` and a
    try block per request), and anywhere in Starlette's stack behind ``FastAPI.__call__``, which asks
    OpenTelemetry on every request whether a provider was configured since (gridsim configures none):
    together ~5 % of a fast read's time under load. The clock and the latest readings need none of it
    (a failure there is uvicorn's 500 all the same), so they are answered first; every other request
    goes through FastAPI unchanged.
    """

    def __init__(self, gateway: GatewaySettings, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._front = FastReads(super().__call__, gateway=gateway)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._front(scope, receive, send)


async def _watch(supervisor: Supervisor, on_fatal: Callable[[str], None] | None) -> None:
    """Hand a supervisor failure to ``on_fatal`` (the gateway's supervised work cannot go on)."""
    try:
        await supervisor.wait(asyncio.Event())
    except TaskFailed as exc:
        if on_fatal is not None:
            on_fatal(str(exc))
