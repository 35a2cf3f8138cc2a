"""Entry point of the feasibility service: ``gridsim-feasibility`` or ``python -m gridsim_feasibility``."""

from __future__ import annotations

import asyncio

from gridsim_feasibility.handlers import Deps, catch_up_world, router
from gridsim_feasibility.settings import Settings
from gridsim_shared.bus import Bus
from gridsim_shared.db import open_pool
from gridsim_shared.service import run_main
from gridsim_shared.supervision import Supervisor

SERVICE = "feasibility"


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    """Run the service until ``stop`` is set."""
    async with (
        open_pool(settings.db, name=SERVICE) as pool,
        Bus(settings.mqtt, SERVICE, settings.instance) as bus,
    ):
        deps = Deps(settings=settings, bus=bus, pool=pool)
        supervisor = Supervisor(SERVICE, settings.supervision)
        supervisor.attach(bus)
        try:
            await bus.include(router, deps)
            # After subscribing (a world_reset from now on is answered): a reset made while this service
            # was down or starting is handled here, before it says it is ready.
            await catch_up_world(deps)
            await bus.ready()  # subscribed, and the pool has connected
            await supervisor.wait(stop)
        finally:
            await supervisor.close()
            for task in list(deps.tasks):
                task.cancel()


def main() -> None:
    """Console script."""
    run_main(SERVICE, serve)


if __name__ == "__main__":
    main()
