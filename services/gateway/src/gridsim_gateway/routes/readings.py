"""Readings and rollups: ``GET /meter/stream`` (the seed's endpoint), its live SSE variant, and grid series.

The gateway reads the aggregator's published tables (read-only). Raw minutes come from ``meter_data``;
15m/1h/1d from the rollups as readings (``meter_readings_{res}``, whose voltage, current and power factor
the aggregator defines), so a day or a month is a few dozen rows, never a scan of minutes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool
from sse_starlette import EventSourceResponse, ServerSentEvent

from gridsim_gateway.deps import LatestDep, PoolDep, StateDep, StreamsDep
from gridsim_gateway.state import LiveState
from gridsim_shared.errors import NotFoundError
from gridsim_shared.schemas.readings import RESOLUTIONS, NodeRollupPoint, ReadingPoint, Resolution

router = APIRouter(tags=["readings"])

_RAW = (
    "select ts, consumption_kwh, production_kwh, consumption_kvah, production_kvah, avg_current, avg_voltage,"
    " reactive_power_kvar, power_factor, is_parent, partial, 1 from meter_data where meter_id = %s"
)
# The aggregator's published bucket views (migration 0230) already hold the bucket's mean voltage, current
# and power factor: the physics is the owner's, the gateway only reads it.
_BUCKETS = (
    "select bucket, consumption_kwh, production_kwh, consumption_kvah, production_kvah, avg_current,"
    " avg_voltage, kvarh, power_factor, false, false, readings from meter_readings_{res} where meter_id = %s"
)
MeterParam = Annotated[
    str, Query(description="the meter's integer id or its code", examples=["17", "MTR-0017"])
]
FromParam = Annotated[datetime | None, Query(alias="from", description="simulated time, inclusive")]
ToParam = Annotated[datetime | None, Query(description="simulated time, inclusive")]
LimitParam = Annotated[int | None, Query(ge=1, le=100_000, description="at most this many points")]
ResolutionParam = Annotated[Resolution, Query(description="raw (one per interval), 15m, 1h or 1d")]


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


async def find_meter(pool: AsyncConnectionPool, meter: str) -> tuple[int, str, bool, bool]:
    """(id, code, linked, is_parent) of a meter given by id or code; 404 when there is none."""
    sql = (
        "select m.id, m.code, m.transformer_id is not null,"
        " exists(select 1 from meters c where c.parent_id = m.id) from meters m where "
    )
    async with pool.connection() as conn:
        row = None
        if meter.isdigit():
            cur = await conn.execute(sql + "m.id = %s", (int(meter),))
            row = await cur.fetchone()
        if row is None:
            cur = await conn.execute(sql + "lower(m.code) = lower(%s)", (meter,))
            row = await cur.fetchone()
    if row is None:
        msg = f"meter_id: no meter {meter!r}"
        raise NotFoundError(msg, field="meter_id")
    return int(row[0]), str(row[1]), bool(row[2]), bool(row[3])


def _point(meter_id: int, code: str, interval_s: int, is_parent: bool, row: tuple[Any, ...]) -> ReadingPoint:
    ts, cons, prod, cons_va, prod_va, current, volts, kvar, pf, parent, partial, n = row
    return ReadingPoint(
        meter_id=meter_id,
        meter_code=code,
        timestamp=ts,
        interval_s=interval_s,
        consumption_kWh=cons,
        production_kWh=prod,
        consumption_kVAh=cons_va,
        production_kVAh=prod_va,
        avg_current=current,
        avg_voltage=volts,
        reactive_power_kVAR=kvar,
        power_factor=pf,
        is_parent=bool(parent) or is_parent,
        partial=bool(partial),
        readings=int(n),
    )


async def _series(
    conn: AsyncConnection[Any],
    sql: str,
    args: list[Any],
    time_col: str,
    *,
    start: datetime | None,
    end: datetime | None,
    limit: int,
) -> list[tuple[Any, ...]]:
    """The rows of ``sql`` with ``time_col`` in [start, end], oldest first; the latest ``limit`` when no
    ``start`` is given, else the first ``limit`` from it."""
    args = list(args)
    if start is not None:
        sql += f" and {time_col} >= %s"
        args.append(start)
    if end is not None:
        sql += f" and {time_col} <= %s"
        args.append(end)
    latest = start is None
    sql += f" order by {time_col} {'desc' if latest else 'asc'} limit %s"
    args.append(limit)
    cur = await conn.execute(sql, args)
    rows = await cur.fetchall()
    if latest:
        rows.reverse()
    return rows


async def read_points(
    pool: AsyncConnectionPool,
    meter: tuple[int, str, bool, bool],
    *,
    start: datetime | None,
    end: datetime | None,
    limit: int | None,
    resolution: str,
    interval_s: int = 60,
) -> list[ReadingPoint]:
    """A meter's points in [start, end] (the latest ``limit`` when no range is given), oldest first."""
    meter_id, code, _linked, is_parent = meter
    raw = resolution == "raw"
    sql, time_col = (_RAW, "ts") if raw else (_BUCKETS.format(res=resolution), "bucket")
    default_limit = 100 if start is None and end is None else 1440
    async with pool.connection() as conn:
        rows = await _series(
            conn, sql, [meter_id], time_col, start=start, end=end, limit=limit or default_limit
        )
    width = interval_s if raw else RESOLUTIONS[resolution]
    return [_point(meter_id, code, width, is_parent, r) for r in rows]


@router.get("/meter/stream", response_model=list[ReadingPoint])
async def meter_stream(
    *,
    pool: PoolDep,
    live: StateDep,
    latest: LatestDep,
    meter_id: MeterParam,
    from_: FromParam = None,
    to: ToParam = None,
    limit: LimitParam = None,
    resolution: ResolutionParam = "raw",
) -> list[ReadingPoint]:
    """A meter's readings as a JSON array, oldest first (parents: the aggregate of their children).

    Without ``from`` the latest ``limit`` (default 100) readings; with ``from``/``to`` (simulated time) the
    readings in that range (default limit 1,440). ``resolution`` 15m, 1h or 1d reads the rollups.
    Unknown meter: 404. A meter that exists but is not linked to the grid: an empty array.

    The latest reading (``limit=1``, no range, raw) of a meter asked for before is answered from memory
    (the readings the gateway receives live) once the aggregator's watermark says it is stored: the
    reading at the watermark, which may be an interval behind the newest committed row; see
    docs/architecture.md (gateway performance).
    """
    meter = await find_meter(pool, meter_id)
    if not meter[2] and not meter[3]:
        return []
    interval = live.clock.interval_s if live.clock else 60
    points = await read_points(
        pool, meter, start=_utc(from_), end=_utc(to), limit=limit, resolution=resolution, interval_s=interval
    )
    if limit == 1 and from_ is None and to is None and resolution == "raw":
        # Asked for its latest reading: from now on the gateway keeps this meter's live readings.
        latest.track(meter)
        if points:
            latest.keep(meter[0], points[-1])
    return points


@router.get("/meter/stream/live", response_class=EventSourceResponse)
async def meter_stream_live(
    *,
    request: Request,
    pool: PoolDep,
    live: StateDep,
    streams: StreamsDep,
    meter_id: MeterParam,
    from_: FromParam = None,
) -> EventSourceResponse:
    """Server-Sent Events: each new committed reading of the meter (event ``reading``, a ReadingPoint).

    Readings are sent once the aggregator has committed them (its watermark moved), so what the stream
    shows is what ``GET /meter/stream`` returns. ``from`` replays stored readings from that time first.
    """
    meter = await find_meter(pool, meter_id)
    return EventSourceResponse(
        streams.guard(request, _live(request, pool, live, meter, _utc(from_))), ping=15
    )


async def _live(
    request: Request,
    pool: AsyncConnectionPool,
    live: LiveState,
    meter: tuple[int, str, bool, bool],
    start: datetime | None,
) -> AsyncIterator[ServerSentEvent]:
    seen_mark = None
    last = start
    if start is None:  # start after the latest stored reading
        latest = await read_points(pool, meter, start=None, end=None, limit=1, resolution="raw")
        last = latest[-1].timestamp if latest else None
    else:
        first = await read_points(pool, meter, start=start, end=None, limit=100_000, resolution="raw")
        for p in first:
            yield ServerSentEvent(data=p.model_dump_json(), event="reading")
            last = p.timestamp
    yield ServerSentEvent(data="{}", event="ready")
    while not await request.is_disconnected():
        mark = live.watermark
        if mark is not None and mark != seen_mark:
            seen_mark = mark
            interval = live.clock.interval_s if live.clock else 60
            points = await read_points(
                pool, meter, start=last, end=None, limit=100_000, resolution="raw", interval_s=interval
            )
            for p in points:
                if last is not None and p.timestamp <= last:
                    continue
                yield ServerSentEvent(data=p.model_dump_json(), event="reading")
                last = p.timestamp
        await asyncio.sleep(0.2)


@router.get("/rollups/{node_code}", response_model=list[NodeRollupPoint])
async def node_rollups(
    *,
    pool: PoolDep,
    node_code: str,
    from_: FromParam = None,
    to: ToParam = None,
    limit: LimitParam = None,
    resolution: ResolutionParam = "1h",
) -> list[NodeRollupPoint]:
    """A transformer's, feeder's or utility's series: energies, coincident peak kVA and its loading.

    ``raw`` gives one point per interval; 15m/1h/1d read the time rollups. Unknown node: 404.
    """
    async with pool.connection() as conn:
        cur = await conn.execute(
            "select id, code, level, capacity_kva from grid_nodes where lower(code) = lower(%s)", (node_code,)
        )
        node = await cur.fetchone()
        if node is None:
            msg = f"node_code: no grid node {node_code!r}"
            raise NotFoundError(msg, field="node_code")
        node_id, code, level, capacity = node
        if resolution == "raw":
            sql = (
                "select ts, consumption_kwh, production_kwh, apparent_kva, ts, 1 from grid_rollups"
                " where node_id = %s"
            )
            col, width = "ts", 60
        else:
            sql = (
                "select bucket, consumption_kwh, production_kwh, peak_kva, peak_at, intervals"
                f" from grid_rollups_{resolution} where node_id = %s"
            )
            col, width = "bucket", RESOLUTIONS[resolution]
        rows = await _series(conn, sql, [node_id], col, start=_utc(from_), end=_utc(to), limit=limit or 1440)
    return [
        NodeRollupPoint(
            node_id=node_id,
            node_code=code,
            level=level,
            timestamp=ts,
            interval_s=width,
            consumption_kWh=cons,
            production_kWh=prod,
            net_kWh=cons - prod,
            peak_kVA=peak,
            peak_at=at,
            capacity_kVA=capacity,
            peak_loading_pct=100 * peak / capacity if capacity else None,
            intervals=n,
        )
        for ts, cons, prod, peak, at, n in rows
    ]
