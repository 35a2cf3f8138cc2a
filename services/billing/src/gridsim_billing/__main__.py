"""Entry point of the billing service: ``gridsim-billing`` or ``python -m gridsim_billing``."""

from __future__ import annotations

import asyncio

from gridsim_billing.handlers import Deps, router
from gridsim_billing.settings import Settings
from gridsim_shared.bus import Bus
from gridsim_shared.db import open_pool
from gridsim_shared.service import run_main
from gridsim_shared.supervision import Supervisor

SERVICE = "billing"


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    """Run the service until ``stop`` is set."""
    async with (
        open_pool(settings.db, name=SERVICE) as pool,
        Bus(settings.mqtt, SERVICE, settings.instance) as bus,
    ):
        supervisor = Supervisor(SERVICE, settings.supervision)
        supervisor.attach(bus)
        deps = Deps(settings=settings, bus=bus, pool=pool)
        try:
            await bus.include(router, deps)
            await bus.ready()  # subscribed, and the pool has connected
            await supervisor.wait(stop)
        finally:
            await deps.closer.stop()
            await supervisor.close()


def main() -> None:
    """Console script."""
    run_main(SERVICE, serve)


if __name__ == "__main__":
    main()
