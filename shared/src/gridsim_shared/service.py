"""Running a service process: signals, logging, and the asyncio loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable

from gridsim_shared.logging import configure_logging
from gridsim_shared.settings import Settings

__all__ = ["run_main"]

_LOGGER = logging.getLogger(__name__)


def run_main(service: str, serve: Callable[[Settings, asyncio.Event], Awaitable[None]]) -> None:
    """Build settings, configure logging and run ``serve(settings, stop)`` until SIGTERM or SIGINT."""
    settings = Settings()
    configure_logging(settings.log, service)

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        _LOGGER.info("%s starting (instance %s)", service, settings.instance)
        await serve(settings, stop)
        _LOGGER.info("%s stopped", service)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(runner())
