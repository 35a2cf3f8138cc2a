"""Entry point of the meter-sim service: ``gridsim-meter-sim`` or ``python -m gridsim_meter_sim``."""

from __future__ import annotations

import asyncio
import functools
from typing import Any

from gridsim_meter_sim import (
    booking_commands,
    control_commands,
    flex_commands,
    outage_commands,
    worldengine_commands,
)
from gridsim_meter_sim.engine import Engine
from gridsim_meter_sim.handlers import Deps, router
from gridsim_meter_sim.settings import Settings
from gridsim_meter_sim.world import load_demo_world
from gridsim_shared import channels
from gridsim_shared.bus import Bus
from gridsim_shared.db import open_pool
from gridsim_shared.service import run_main
from gridsim_shared.supervision import Supervisor

SERVICE = "meter-sim"


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    """Run the service until ``stop`` is set."""
    engines: list[Engine] = []  # the Bus asks for status detail before the engine exists

    def status_detail() -> dict[str, Any]:
        return engines[0].status_detail() if engines else {}

    async with (
        open_pool(settings.db, name=SERVICE) as pool,
        Bus(settings.mqtt, SERVICE, settings.instance, status_detail=status_detail) as bus,
    ):
        supervisor = Supervisor(SERVICE, settings.supervision)
        supervisor.attach(bus)
        await load_demo_world(pool, settings)  # first start only, before the engine reads the world
        engine = Engine(settings, bus, pool, supervisor)
        engines.append(engine)
        deps = Deps(
            settings=settings, bus=bus, pool=pool, on_world_changed=engine.world_changed, engine=engine
        )
        if engine.owner:
            # Only the clock owner (shard 0) answers commands: one writer, one reply per request. Other
            # shards learn of world changes from the clock's world_version.
            await bus.include(router, deps)
            await bus.include(worldengine_commands.router, deps)
            await bus.include(control_commands.router, deps)
            await bus.include(outage_commands.router, deps)
            await bus.include(booking_commands.router, deps)
            await bus.include(flex_commands.router, deps)
            trip = functools.partial(outage_commands.on_transformer_trip, deps)
            await bus.subscribe(channels.EVENT, trip, type="transformer_trip")
        await engine.start()
        await bus.ready()  # commands subscribed, the clock loaded and published (or the owner's awaited)
        await engine.run(stop)


def main() -> None:
    """Console script."""
    run_main(SERVICE, serve)


if __name__ == "__main__":
    main()
