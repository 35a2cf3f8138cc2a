"""Readiness: when a service serves, read from its retained status, and one way to wait for it.

A service's :class:`~gridsim_shared.bus.Bus` publishes a retained ``online`` status as soon as it connects;
the service calls :meth:`Bus.ready` once its handlers are subscribed and what it depends on answers, and
its status says ``ready`` from then on (``offline`` and a last will never do). Everything that waits for a
service (tests, ``gridsim up`` through the gateway's ``/health``, the gateway's ``/readyz``, benches) asks
the same question here, :func:`is_ready`, instead of sleeping or polling a command.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime

from gridsim_shared import channels
from gridsim_shared.bus import Bus
from gridsim_shared.messages import ServiceStatus
from gridsim_shared.settings import MqttSettings
from gridsim_shared.topics import ServicePath

__all__ = ["ReadyBoard", "is_ready", "wait_ready"]

DEFAULT_TIMEOUT_S = 30.0


def is_ready(status: ServiceStatus, since: datetime | None = None) -> bool:
    """True when ``status`` says its instance serves (and started at or after ``since``, when given: a
    retained status of an earlier run says nothing about this one)."""
    if status.state != "online" or not status.ready:
        return False
    return since is None or (status.started_at is not None and status.started_at >= since)


@dataclass
class ReadyBoard:
    """The latest status of every service instance, fed by a ``STATUS`` subscription."""

    statuses: dict[tuple[str, str], ServiceStatus] = field(default_factory=dict)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def on_status(self, msg: ServiceStatus, path: ServicePath) -> None:
        """Remember an instance's status (a ``STATUS`` channel handler)."""
        self.statuses[(path.service, path.instance)] = msg
        self._changed.set()

    def ready_instances(self, since: datetime | None = None) -> set[tuple[str, str]]:
        """Every (service, instance) whose status says it is ready."""
        return {key for key, status in self.statuses.items() if is_ready(status, since)}

    def not_ready(self, services: tuple[str, ...], since: datetime | None = None) -> list[str]:
        """The services of ``services`` with no ready instance."""
        ready = {service for service, _ in self.ready_instances(since)}
        return [service for service in services if service not in ready]

    async def wait(
        self,
        services: tuple[str, ...] = (),
        *,
        instances: int = 0,
        since: datetime | None = None,
        timeout: float | None = DEFAULT_TIMEOUT_S,
    ) -> None:
        """Wait until each of ``services`` has a ready instance and at least ``instances`` instances (of
        any service) are ready; ``TimeoutError`` naming what is not ready otherwise."""
        try:
            async with asyncio.timeout(timeout):
                while self.not_ready(services, since) or len(self.ready_instances(since)) < instances:
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError as exc:
            missing = self.not_ready(services, since)
            ready = sorted(f"{s}/{i}" for s, i in self.ready_instances(since))
            msg = f"not ready within {timeout} s: {', '.join(missing) or f'{instances} instances'}"
            msg += f" (ready: {', '.join(ready) or 'none'})"
            raise TimeoutError(msg) from exc


@contextlib.asynccontextmanager
async def _status_board(source: Bus | MqttSettings) -> AsyncIterator[ReadyBoard]:
    board = ReadyBoard()
    if isinstance(source, Bus):
        await source.subscribe(channels.STATUS, board.on_status)
        yield board
        return
    # A probe of its own, which announces nothing (it is no service).
    async with Bus(source, "ready-probe", announce=False) as bus:
        await bus.subscribe(channels.STATUS, board.on_status)
        yield board


async def wait_ready(
    source: Bus | MqttSettings,
    *services: str,
    instances: int = 0,
    since: datetime | None = None,
    timeout: float | None = DEFAULT_TIMEOUT_S,
) -> None:
    """Wait until every one of ``services`` (and at least ``instances`` instances in all) is ready.

    ``source`` is a bus to listen on (its ``STATUS`` subscription stays) or the broker's settings (a
    probe connection for the wait). The retained statuses answer at once for services already ready.
    Raises ``TimeoutError`` naming the services that are not ready.
    """
    async with _status_board(source) as board:
        await board.wait(services, instances=instances, since=since, timeout=timeout)
