"""The World Engine sub-application, mounted at ``/meter-data-simulator`` (and ``/api/meter-data-simulator``,
the second prefix the playground answered on), with Strapi's error envelope for its routes only."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from fastapi import FastAPI

from gridsim_gateway.security import OPERATE
from gridsim_gateway.worldengine import grid, households, meters, trades
from gridsim_gateway.worldengine.envelope import install_strapi_errors
from gridsim_gateway.worldengine.webhook import overload_webhook
from gridsim_shared.settings import Settings

__all__ = ["PREFIXES", "create_world_engine", "install"]

PREFIXES = ("/meter-data-simulator", "/api/meter-data-simulator")

DESCRIPTION = """
The DEG World Engine's `meter-data-simulator` API, served on gridsim's grid: the same routes, bodies,
envelopes and Strapi query parameters, so World Engine clients run unchanged. Every write goes to
gridsim's own services and shows in gridsim's own API and MQTT topics. See `docs/world-engine.md` for
the mapping and every deliberate difference.
"""


def create_world_engine() -> FastAPI:
    """The World Engine routes as an application of their own (errors in Strapi's envelope)."""
    app = FastAPI(
        title="gridsim — DEG World Engine compatibility",
        version="0.1.0",
        description=DESCRIPTION,
        # gridsim's key policy holds here too: writes need an operate key (the reset an admin one).
        dependencies=[OPERATE],
    )
    install_strapi_errors(app)
    for module in (grid, meters, households, trades):
        app.include_router(module.router)
    return app


Lifespan = Callable[[Any], AbstractAsyncContextManager[Any]]


def install(app: FastAPI, settings: Settings) -> None:
    """Mount the World Engine on ``app`` and run its overload webhook inside ``app``'s lifespan."""
    world_engine = create_world_engine()
    for prefix in PREFIXES:
        app.mount(prefix, world_engine)
    inner: Lifespan = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(outer_app: Any) -> AsyncIterator[Any]:
        async with inner(outer_app) as state:
            async with overload_webhook(state["bus"], state["pool"], settings) as hook:
                yield {**state, "overload_webhook": hook}

    app.router.lifespan_context = lifespan
