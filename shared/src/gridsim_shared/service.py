"""Running a service process: signals, logging, and the asyncio loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from gridsim_shared.logging import configure_logging
from gridsim_shared.settings import Settings

__all__ = ["run_main"]

_LOGGER = logging.getLogger(__name__)

# How long a service may take to stop after SIGTERM/SIGINT before its work is cancelled. A clean stop
# flushes and says `offline`; but when the broker or the database died at the same moment (a `kill -9`
# of the launcher takes them all), waiting for them would keep the process alive for ever.
SHUTDOWN_GRACE_S = 10.0


def run_main(service: str, serve: Callable[[Settings, asyncio.Event], Coroutine[Any, Any, None]]) -> None:
    """Build settings, configure logging and run ``serve(settings, stop)`` until SIGTERM or SIGINT."""
    settings = Settings()
    configure_logging(settings.log, service)

    async def runner() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        _LOGGER.info("%s starting (instance %s)", service, settings.instance)
        serving = asyncio.create_task(serve(settings, stop))
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        code = 0
        try:
            await asyncio.wait_for(serving, SHUTDOWN_GRACE_S)
            if not stop.is_set():
                # serve() returned on its own: the service stopped working, which must never be silent.
                _LOGGER.critical("%s stopped serving without being asked to; exiting non-zero", service)
                code = 1
        except TimeoutError:
            _LOGGER.warning(
                "%s did not stop within %.0f s; its remaining work was cancelled", service, SHUTDOWN_GRACE_S
            )
        except Exception:
            # A supervised task failed beyond its restart budget, or start-up failed: exit non-zero so
            # the launcher (or compose's restart policy) starts a fresh process.
            _LOGGER.critical("%s failed; exiting non-zero", service, exc_info=True)
            code = 1
        _LOGGER.info("%s stopped", service)
        return code

    code = 0
    with contextlib.suppress(KeyboardInterrupt):
        code = asyncio.run(runner())
    if code:
        sys.exit(code)
