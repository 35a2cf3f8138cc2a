"""The live dashboard: the page at ``/``, its static files, and ``GET /events/live`` (Server-Sent Events).

The page is hand-written HTML, CSS and JavaScript with its own SVG charts: no build step, no CDN, so it
works offline. Everything it shows comes from the gateway's public API (``/grid``, ``/meter/stream``,
``/bill``, ``/feasibility-check``, ``/simulation/...``) plus the live feed below, which relays what the
bus carries (clock, watermark, transformer rollups, grid and meter events) to the browser.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool
from pydantic import ValidationError
from sse_starlette import EventSourceResponse, ServerSentEvent

from gridsim_gateway.deps import BusDep, PoolDep, SettingsDep, StateDep, StreamsDep
from gridsim_gateway.state import LiveState
from gridsim_shared import channels
from gridsim_shared.bus import Bus
from gridsim_shared.events import GRID_EVENT, GridEvent
from gridsim_shared.messages import ClockState, Message, Rollup, Watermark

__all__ = ["STATIC_DIR", "LiveFeed", "router"]

_LOGGER = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"

router = APIRouter(tags=["dashboard"])
router.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

# A browser needs a few updates a second, not one per interval per transformer: at 1440x speed the bus
# carries ~24 intervals a second, so each client's updates are coalesced and flushed at most this often.
FLUSH_EVERY_S = 0.25
# Events a slow client may have waiting before the oldest are dropped (the page shows the latest only).
EVENT_BACKLOG = 200


@router.get("/", include_in_schema=False)
async def index() -> FileResponse:
    """The dashboard page."""
    return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


@router.get("/dashboard/config")
async def dashboard_config(settings: SettingsDep) -> dict[str, str]:
    """What the page needs besides the data: the world's time zone (the billing zone), for local times."""
    return {"timezone": settings.billing.timezone}


# ------------------------------------------------------------------------------------------ live feed


@dataclass(eq=False)  # identity, so a client can sit in a set
class _Client:
    """What one connected page has not been sent yet: the latest clock/watermark/rollups, every event."""

    clock: ClockState | None = None
    watermark: Watermark | None = None
    rollups: dict[str, Rollup] = field(default_factory=dict)
    events: deque[GridEvent] = field(default_factory=lambda: deque(maxlen=EVENT_BACKLOG))
    dirty: asyncio.Event = field(default_factory=asyncio.Event)

    def take(self) -> list[ServerSentEvent]:
        """The pending updates as SSE messages; clears them."""
        out = _messages(self.clock, self.watermark, list(self.rollups.values()) or None, self.events)
        self.clock, self.watermark = None, None
        self.rollups.clear()
        self.events.clear()
        self.dirty.clear()
        return out


def _sse(kind: str, msg: Message) -> ServerSentEvent:
    return ServerSentEvent(data=msg.model_dump_json(), event=kind)


def _messages(
    clock: ClockState | None,
    watermark: Watermark | None,
    rollups: Iterable[Rollup] | None,
    events: Iterable[GridEvent],
) -> list[ServerSentEvent]:
    """The page's SSE messages, in its order: ``clock``, ``watermark``, ``rollups`` (one JSON list; none
    when ``rollups`` is None), then each ``event``."""
    out: list[ServerSentEvent] = []
    if clock is not None:
        out.append(_sse("clock", clock))
    if watermark is not None:
        out.append(_sse("watermark", watermark))
    if rollups is not None:
        data = json.dumps([r.model_dump(mode="json") for r in rollups])
        out.append(ServerSentEvent(data=data, event="rollups"))
    out.extend(_sse("event", e) for e in events)
    return out


class LiveFeed:
    """Relays the bus's live messages to every connected page; subscribed once per gateway bus."""

    def __init__(self) -> None:
        self._clients: set[_Client] = set()

    async def attach(self, bus: Bus) -> None:
        """Subscribe to the channels the page shows."""
        await bus.subscribe(channels.CLOCK, self._on_clock)
        await bus.subscribe(channels.WATERMARK, self._on_watermark)
        await bus.subscribe(channels.ROLLUP_TRANSFORMER, self._on_rollup)
        await bus.subscribe(channels.EVENT, self._on_event)
        await bus.subscribe(channels.METER_EVENT, self._on_event)

    @contextlib.contextmanager
    def client(self) -> Iterator[_Client]:
        """Register a page for the duration of its connection."""
        client = _Client()
        self._clients.add(client)
        try:
            yield client
        finally:
            self._clients.discard(client)

    async def _on_clock(self, msg: ClockState, _path: object) -> None:
        for c in self._clients:
            c.clock = msg
            c.dirty.set()

    async def _on_watermark(self, msg: Watermark, _path: object) -> None:
        for c in self._clients:
            c.watermark = msg
            c.dirty.set()

    async def _on_rollup(self, msg: Rollup, _path: object) -> None:
        for c in self._clients:
            c.rollups[msg.node_code] = msg
            c.dirty.set()

    async def _on_event(self, msg: GridEvent, _path: object) -> None:
        for c in self._clients:
            c.events.append(msg)
            c.dirty.set()


_FEEDS: weakref.WeakKeyDictionary[Bus, LiveFeed] = weakref.WeakKeyDictionary()
_ATTACHING = asyncio.Lock()


async def _feed_of(bus: Bus) -> LiveFeed:
    # The gateway's lifespan owns the bus; the feed subscribes on the first page that connects.
    async with _ATTACHING:
        feed = _FEEDS.get(bus)
        if feed is None:
            feed = LiveFeed()
            await feed.attach(bus)
            _FEEDS[bus] = feed
        return feed


async def _recent_events(pool: AsyncConnectionPool, limit: int) -> list[GridEvent]:
    """The latest stored events, oldest first (empty when the table cannot be read)."""
    sql = (
        "select type, severity, sim_time as timestamp, subject, message, data"
        " from events order by sim_time desc, id desc limit %s"
    )
    try:
        async with pool.connection(timeout=5) as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(sql, (limit,))
            rows = await cur.fetchall()
    except Exception as exc:  # the live feed still works without the backlog; say why it is missing
        _LOGGER.warning("recent events unavailable: %s", exc)
        return []
    events: list[GridEvent] = []
    for row in reversed(rows):
        try:
            events.append(GRID_EVENT.validate_python(row))
        except ValidationError as exc:  # a row of a kind this version does not know: skipped, said why
            _LOGGER.warning("stored %s event not shown: %s", row.get("type"), exc.errors()[0]["msg"])
    return events


def _snapshot(live: LiveState, events: list[GridEvent]) -> list[ServerSentEvent]:
    """What a page needs on connect: the retained clock, watermark and rollups (always, maybe []), and recent
    events."""
    return _messages(live.clock, live.watermark, live.transformer_rollups.values(), events)


async def _stream(
    request: Request, feed: LiveFeed, live: LiveState, pool: AsyncConnectionPool, recent: int
) -> AsyncIterator[ServerSentEvent]:
    # Registered before the snapshot is taken, so nothing published in between is missed.
    with feed.client() as client:
        events = await _recent_events(pool, recent) if recent else []
        for message in _snapshot(live, events):
            yield message
        yield ServerSentEvent(data="{}", event="ready")
        last = 0.0
        while not await request.is_disconnected():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(client.dirty.wait(), timeout=5)
            if not client.dirty.is_set():
                continue
            # Coalesce: wait out the rest of the flush period so one flush carries many updates.
            await asyncio.sleep(max(0.0, last + FLUSH_EVERY_S - time.monotonic()))
            last = time.monotonic()
            for message in client.take():
                yield message


@router.get(
    "/events/live",
    response_class=EventSourceResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "a stream of SSE messages"}},
)
async def events_live(
    *,
    request: Request,
    bus: BusDep,
    pool: PoolDep,
    live: StateDep,
    streams: StreamsDep,
    recent: Annotated[int, Query(ge=0, le=500, description="stored events sent first")] = 50,
) -> EventSourceResponse:
    """Live updates as Server-Sent Events, coalesced to at most four flushes a second.

    On connect: ``clock``, ``watermark`` (when known), ``rollups`` (every transformer's latest) and the
    ``recent`` latest stored ``event`` messages, then ``ready``. After that, as they happen: ``clock``
    (ClockState), ``watermark`` (Watermark: readings committed up to this interval, so ``/meter/stream``
    has them), ``rollups`` (a JSON list of the transformer Rollups that changed) and ``event`` (GridEvent:
    overload, voltage, tamper, spike, ...).
    """
    feed = await _feed_of(bus)
    return EventSourceResponse(streams.guard(request, _stream(request, feed, live, pool, recent)), ping=15)
