"""Entry point of the utility service: ``gridsim-utility`` or ``python -m gridsim_utility``."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from gridsim_shared.bus import Bus
from gridsim_shared.db import open_pool
from gridsim_shared.service import run_main
from gridsim_utility.handlers import Deps, refresh, router
from gridsim_utility.settings import Settings

SERVICE = "utility"
# How often (real seconds) to look for newly completed simulated hours.
POLL_S = 0.5

_LOGGER = logging.getLogger(__name__)


async def _refresh_loop(deps: Deps, stop: asyncio.Event) -> None:
    """Issue forecasts and prices whenever the aggregator completes a simulated hour."""
    while not stop.is_set():
        try:
            await refresh(deps)
        except Exception:  # a bad hour must not stop forecasting; the next poll retries
            _LOGGER.exception("forecast refresh failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), POLL_S)


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    """Run the service until ``stop`` is set."""
    async with (
        open_pool(settings.db, name=SERVICE) as pool,
        Bus(settings.mqtt, SERVICE, settings.instance) as bus,
    ):
        deps = Deps(settings=settings, bus=bus, pool=pool)
        await bus.include(router, deps)
        vtn = None
        if settings.utility.openadr_port:
            # Imported here, once the service is online: openleadr (aiohttp, lxml, signxml) is slow to load.
            from gridsim_utility.openadr import Vtn

            vtn = Vtn(deps)
            try:
                await vtn.start()
            except OSError:  # the port is taken: forecasts, prices and DR go on without OpenADR
                _LOGGER.exception(
                    "the OpenADR VTN could not listen on port %s", settings.utility.openadr_port
                )
                vtn = None
        try:
            await _refresh_loop(deps, stop)
        finally:
            if vtn is not None:
                await vtn.stop()


def main() -> None:
    """Console script."""
    run_main(SERVICE, serve)


if __name__ == "__main__":
    main()
