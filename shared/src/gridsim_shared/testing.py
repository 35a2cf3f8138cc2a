"""Test helpers shared by every test suite: run services in-process, talk to the gateway, await messages.

Integration tests run each service's real ``serve(settings, stop)`` coroutine in the test's event loop,
against the real broker and database named by the ``settings`` fixture (root ``conftest.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, MutableMapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psycopg

from gridsim_shared import channels
from gridsim_shared.bus import Bus
from gridsim_shared.channels import Channel
from gridsim_shared.db import connect
from gridsim_shared.messages import Message
from gridsim_shared.readiness import ReadyBoard
from gridsim_shared.settings import Settings

__all__ = ["Collector", "gateway_client", "rollup_table", "running", "tiny_world", "with_tiny_world"]

M = TypeVar("M", bound=Message)
P = TypeVar("P")

Serve = Callable[[Settings, asyncio.Event], Coroutine[Any, Any, None]]


@contextlib.asynccontextmanager
async def running(
    *serves: Serve, settings: Settings, wait: bool = True, timeout: float = 60.0
) -> AsyncIterator[None]:
    """Run services' ``serve`` coroutines in the background until each says it is ready (its retained
    status, :mod:`gridsim_shared.readiness`); stop them (and surface their errors) on exit.

    ``wait=False`` returns at once, for a test that starts a service which cannot get ready.
    """
    stop = asyncio.Event()
    since = datetime.now(UTC)
    tasks = [asyncio.create_task(serve(settings, stop)) for serve in serves]
    try:
        if wait:
            await _until_ready(settings, tasks, since, timeout)
        for task in tasks:
            if task.done():
                task.result()  # a service that died at start-up fails the test with its own error
        yield
    finally:
        stop.set()
        done, pending = await asyncio.wait(tasks, timeout=10)
        for task in pending:
            task.cancel()
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]


async def _until_ready(
    settings: Settings, tasks: list[asyncio.Task[None]], since: datetime, timeout: float
) -> None:
    """Wait until ``tasks`` have as many instances ready; a service that dies first fails with its error."""
    async with Bus(settings.mqtt, "ready-probe", announce=False) as probe:
        board = ReadyBoard()
        await probe.subscribe(channels.STATUS, board.on_status)
        waiter = asyncio.create_task(board.wait(instances=len(tasks), since=since, timeout=timeout))
        try:
            await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not waiter.done():
                waiter.cancel()
        if waiter.done() and not waiter.cancelled():
            waiter.result()
            return
        for task in tasks:
            if task.done():
                task.result()
                msg = "a service returned before it was ready"
                raise RuntimeError(msg)


@contextlib.asynccontextmanager
async def gateway_client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for a FastAPI ``app`` in-process, with its lifespan run (bus and pool open)."""
    async with app.router.lifespan_context(app) as state:
        # Starlette copies lifespan state into each request's state; ASGITransport needs it passed along.
        transport = httpx.ASGITransport(app=_WithState(app, state))
        async with httpx.AsyncClient(
            transport=transport, base_url="http://gridsim.test", timeout=60
        ) as client:
            yield client


class _WithState:
    """ASGI wrapper that injects the lifespan state into every request scope."""

    def __init__(self, app: Any, state: dict[str, Any] | None) -> None:
        self.app = app
        self.state = state or {}

    async def __call__(
        self,
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[MutableMapping[str, Any]]],
        send: Callable[[MutableMapping[str, Any]], Awaitable[None]],
    ) -> None:
        if scope["type"] in {"http", "websocket"}:
            scope = {**scope, "state": dict(self.state)}
        await self.app(scope, receive, send)


class Collector:
    """Subscribe to a channel *before* triggering something, then await the messages it caused."""

    def __init__(self, bus: Bus, channel: Channel[M, P], **fixed: str) -> None:
        self.bus = bus
        self.channel = channel
        self.fixed = fixed
        self.messages: list[tuple[Any, Any]] = []
        self._event = asyncio.Event()

    async def start(self) -> Collector:
        """Subscribe; returns self for chaining."""

        async def on(msg: Any, path: Any) -> None:
            self.messages.append((msg, path))
            self._event.set()

        # Returns once the broker acknowledged the subscription: what is published next reaches it.
        await self.bus.subscribe(self.channel, on, **self.fixed)
        return self

    async def wait_for(self, count: int = 1, timeout: float = 10.0) -> list[tuple[Any, Any]]:
        """Wait until at least ``count`` messages arrived; raise ``TimeoutError`` otherwise."""
        async with asyncio.timeout(timeout):
            while len(self.messages) < count:
                self._event.clear()
                await self._event.wait()
        return self.messages


async def rollup_table(settings: Settings, name: str) -> str:
    """The table a test writes rollup rows of ``name`` (e.g. ``meter_data_1h``) into directly, to seed
    metered energy without simulating it: ``name`` itself on plain PostgreSQL; on TimescaleDB, where
    ``name`` is a view over a continuous aggregate and ``name_history`` (migration 0201), the history table,
    whose rows the view shows as they are."""
    history = f"{name}_history"
    conn: psycopg.AsyncConnection[Any]
    async with await connect(settings.db.url, settings.db.schema_name, autocommit=True) as conn:
        cur = await conn.execute("select to_regclass(%s) is not null", (history,))
        row = await cur.fetchone()
    return history if row is not None and row[0] else name


def tiny_world(folder: Path, appliances: tuple[str, ...] = ("Refrigerator", "Fan")) -> Path:
    """A world file in ``folder`` for the tests of a world reset: one utility ``u``, feeder ``f`` and
    50 kVA transformer ``t``, one meter ``M1`` with a consumer home ``Home`` owning ``appliances``."""
    world = {
        "version": 1,
        "name": "tiny",
        "grid": [
            {"code": "u", "name": "Utility", "level": "utility"},
            {"code": "f", "name": "Feeder", "level": "feeder", "parent_id": "u"},
            {"code": "t", "name": "TX", "level": "transformer", "parent_id": "f", "capacity_kVA": 50},
        ],
        "meters": [
            {
                "meter_id": "M1",
                "transformer_id": "t",
                "er": {"name": "Home", "type": "consumer", "appliance_type": list(appliances)},
            }
        ],
    }
    path = folder / "world.json"
    path.write_text(json.dumps(world))
    return path


def with_tiny_world(settings: Settings, folder: Path, *, demo_world: bool | None = None) -> Settings:
    """``settings`` with meter-sim loading :func:`tiny_world` (written to ``folder``) on start and on reset;
    ``demo_world`` also sets whether meter-sim loads it on its first start."""
    update: dict[str, Any] = {"demo_world_file": str(tiny_world(folder))}
    if demo_world is not None:
        update["demo_world"] = demo_world
    return settings.model_copy(update={"sim": settings.sim.model_copy(update=update)})
