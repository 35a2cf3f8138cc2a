"""The gateway's FastAPI application: thin HTTP in front of the services (MQTT request/reply, DB reads)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI

from gridsim_gateway.deps import require_api_key
from gridsim_gateway.errors import install_error_handlers
from gridsim_gateway.routes import (
    admin,
    billing,
    controls,
    dashboard,
    feasibility,
    grid,
    health,
    readings,
    simulation,
)
from gridsim_gateway.settings import Settings
from gridsim_gateway.state import LiveState
from gridsim_gateway.worldengine import install as install_world_engine
from gridsim_shared import channels
from gridsim_shared.bus import Bus
from gridsim_shared.db import open_pool

__all__ = ["SERVICE", "create_app"]

SERVICE = "gateway"

DESCRIPTION = """
gridsim serves a simulated electricity distribution grid (utility → feeder → transformer → smart meter →
household and its appliances) as live smart-meter data over MQTT and HTTP.

Errors are JSON: `{"error": {"status", "code", "message", "field", "details"}}` with a 4xx naming the field.
Mutating routes need an `X-API-Key` header when API keys are configured (`GRIDSIM_GATEWAY__API_KEYS`).
"""


def create_app(settings: Settings) -> FastAPI:
    """Build the gateway application for ``settings``."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        live = LiveState()
        async with (
            open_pool(settings.db, name=SERVICE) as pool,
            Bus(settings.mqtt, SERVICE, settings.instance) as bus,
        ):
            await bus.subscribe(channels.STATUS, live.on_status)
            await bus.subscribe(channels.CLOCK, live.on_clock)
            await bus.subscribe(channels.WATERMARK, live.on_watermark)
            await bus.subscribe(channels.ROLLUP_TRANSFORMER, live.on_transformer_rollup)
            yield {"bus": bus, "pool": pool, "settings": settings, "live": live}

    app = FastAPI(
        title="gridsim",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        dependencies=[Depends(require_api_key)],
    )
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(simulation.router)
    app.include_router(billing.router)
    app.include_router(dashboard.router)
    app.include_router(feasibility.router)
    app.include_router(admin.router)
    app.include_router(grid.router)
    app.include_router(readings.router)
    app.include_router(controls.router)
    install_world_engine(app, settings)
    return app
