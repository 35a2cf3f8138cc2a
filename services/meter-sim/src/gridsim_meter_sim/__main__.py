"""Entry point of the meter-sim service: ``gridsim-meter-sim`` or ``python -m gridsim_meter_sim``."""

from __future__ import annotations

import asyncio

from gridsim_meter_sim.handlers import Deps, router
from gridsim_meter_sim.settings import Settings
from gridsim_shared.bus import Bus
from gridsim_shared.db import open_pool
from gridsim_shared.service import run_main

SERVICE = "meter-sim"


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    """Run the service until ``stop`` is set."""
    async with (
        open_pool(settings.db, name=SERVICE) as pool,
        Bus(settings.mqtt, SERVICE, settings.instance) as bus,
    ):
        await bus.include(router, Deps(settings=settings, bus=bus, pool=pool, on_world_changed=lambda: None))
        await stop.wait()


def main() -> None:
    """Console script."""
    run_main(SERVICE, serve)


if __name__ == "__main__":
    main()
