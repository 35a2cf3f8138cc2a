"""Entry point of the utility service: ``gridsim-utility`` or ``python -m gridsim_utility``."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from gridsim_shared.bus import Bus
from gridsim_shared.db import open_pool
from gridsim_shared.service import run_main
from gridsim_shared.supervision import Supervisor
from gridsim_utility.handlers import Deps, close_dynamic_months, refresh, router
from gridsim_utility.settings import Settings

if TYPE_CHECKING:
    from gridsim_utility.openadr import Vtn

SERVICE = "utility"
# How often (real seconds) to look for newly completed simulated hours.
POLL_S = 0.5

_LOGGER = logging.getLogger(__name__)


async def _refresh_loop(deps: Deps, supervisor: Supervisor) -> None:
    """Issue forecasts and prices whenever the aggregator completes a simulated hour; store the month's
    dynamic bills when a month closes."""
    while True:
        try:
            await refresh(deps)
        except Exception as exc:  # a bad hour must not stop forecasting; the next poll retries
            supervisor.crashed("forecast-refresh", exc)
        try:
            await close_dynamic_months(deps)
        except Exception as exc:  # e.g. the database away: the next poll retries
            supervisor.crashed("dynamic-bills", exc)
        supervisor.beat("forecast")
        await asyncio.sleep(POLL_S)


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    """Run the service until ``stop`` is set."""
    async with (
        open_pool(settings.db, name=SERVICE) as pool,
        Bus(settings.mqtt, SERVICE, settings.instance) as bus,
    ):
        deps = Deps(settings=settings, bus=bus, pool=pool)
        supervisor = Supervisor(SERVICE, settings.supervision)
        supervisor.attach(bus)
        vtn = None
        try:
            await bus.include(router, deps)
            vtn = await _start_vtn(deps)
            supervisor.spawn("forecast", lambda: _refresh_loop(deps, supervisor))
            await bus.ready()  # subscribed, the pool connected, the VTN listening (when enabled)
            await supervisor.wait(stop)
        finally:
            await supervisor.close()
            for task in list(deps.tasks):
                task.cancel()
            if vtn is not None:
                await vtn.stop()


async def _start_vtn(deps: Deps) -> Vtn | None:
    """The OpenADR VTN, unless switched off (port 0) or its port is taken."""
    port = deps.settings.utility.openadr_port
    if not port:
        return None
    # Imported here, once the service is online: openleadr (aiohttp, lxml, signxml) is slow to load.
    from gridsim_utility.openadr import Vtn

    vtn = Vtn(deps)
    try:
        await vtn.start()
    except OSError:  # the port is taken: forecasts, prices and DR go on without OpenADR
        _LOGGER.exception("the OpenADR VTN could not listen on port %s", port)
        return None
    return vtn


def main() -> None:
    """Console script."""
    run_main(SERVICE, serve)


if __name__ == "__main__":
    main()
