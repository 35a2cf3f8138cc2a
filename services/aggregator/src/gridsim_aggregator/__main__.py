"""Entry point of the aggregator service: ``gridsim-aggregator`` or ``python -m gridsim_aggregator``."""

from __future__ import annotations

import asyncio

from gridsim_aggregator.handlers import Deps, router
from gridsim_aggregator.settings import Settings
from gridsim_shared.bus import Bus
from gridsim_shared.db import open_pool
from gridsim_shared.service import run_main

SERVICE = "aggregator"


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    """Run the service until ``stop`` is set."""
    async with (
        open_pool(settings.db, name=SERVICE) as pool,
        Bus(settings.mqtt, SERVICE, settings.instance) as bus,
    ):
        await bus.include(router, Deps(settings=settings, bus=bus, pool=pool))
        await stop.wait()


def main() -> None:
    """Console script."""
    run_main(SERVICE, serve)


if __name__ == "__main__":
    main()
