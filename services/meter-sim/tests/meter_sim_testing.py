"""Helpers for meter-sim's integration tests."""

from __future__ import annotations

import asyncio

from gridsim_shared.bus import Bus
from gridsim_shared.errors import RemoteError, RpcTimeout
from gridsim_shared.settings import Settings


async def until_answering(settings: Settings, service: str, operation: str, within: float = 30.0) -> None:
    """Wait until ``service`` answers ``operation``: it has started and subscribed to its commands.

    A service started with ``running`` is a background task; a request published before it subscribes
    is lost, so tests wait for an answer (a message), never for wall-clock time. A service that answers
    but is not ready yet (409 "the clock has not been received" while a restarted meter-sim loads its
    clock, 503 while another service waits for the clock) is asked again too.
    """
    async with Bus(settings.mqtt, "test-probe") as bus, asyncio.timeout(within):
        while True:
            try:
                await bus.request(service, operation, timeout=0.5)
                return
            except RpcTimeout:
                continue
            except RemoteError as exc:
                if exc.status not in {409, 503}:
                    raise
                await asyncio.sleep(0.05)
