"""SQL of flexible-load windows (``flex_events``, meter-sim's own table; migration 0610).

Every function takes a connection inside the caller's transaction, except :func:`load_flex`, which the
engine calls with its pool.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg_pool import AsyncConnectionPool

from gridsim_meter_sim.flex import FlexRow
from gridsim_meter_sim.repository import Conn, fetch_all, fetch_one
from gridsim_shared.errors import InvalidError, NotFoundError
from gridsim_shared.schemas.controls import FlexCreate, FlexEvent

__all__ = ["cancel_flex", "create_flex", "get_flex", "load_flex"]

_SELECT = (
    "select id, name, meter_ids, start_time, end_time, hvac_offset_c, defer_water, defer_ev, cancelled_at,"
    " created_at from flex_events"
)


def _end(row: dict[str, Any]) -> datetime:
    end: datetime = row["end_time"]
    cancelled: datetime | None = row["cancelled_at"]
    start: datetime = row["start_time"]
    if cancelled is not None and cancelled < end:
        return max(cancelled, start)
    return end


def _event(row: dict[str, Any]) -> FlexEvent:
    return FlexEvent(
        id=row["id"],
        name=row["name"],
        meter_ids=list(row["meter_ids"]),
        start=row["start_time"],
        end=_end(row),
        hvac_offset_c=row["hvac_offset_c"],
        defer_water=row["defer_water"],
        defer_ev=row["defer_ev"],
        cancelled_at=row["cancelled_at"],
        created_at=row["created_at"],
    )


async def create_flex(conn: Conn, body: FlexCreate) -> FlexEvent:
    """Store a window; 422 naming ``meter_ids`` when one of them is not a meter."""
    ids = sorted(set(body.meter_ids))
    cur = await conn.execute("select array(select id from meters where id = any(%s))", (ids,))
    found = await cur.fetchone()
    missing = sorted(set(ids) - set(found[0] if found else []))
    if missing:
        msg = f"meter_ids: no meter with id {', '.join(map(str, missing[:10]))}"
        raise InvalidError(msg, field="meter_ids")
    row = await fetch_one(
        conn,
        "insert into flex_events (name, meter_ids, start_time, end_time, hvac_offset_c, defer_water,"
        " defer_ev) values (%s, %s, %s, %s, %s, %s, %s) returning id",
        (body.name, ids, body.start, body.end, body.hvac_offset_c, body.defer_water, body.defer_ev),
    )
    assert row is not None
    return await get_flex(conn, int(row["id"]))


async def get_flex(conn: Conn, flex_id: int) -> FlexEvent:
    """One window; 404 naming ``flex_id``."""
    row = await fetch_one(conn, _SELECT + " where id = %s", (flex_id,))
    if row is None:
        msg = f"flexible-load window {flex_id} not found"
        raise NotFoundError(msg, field="flex_id")
    return _event(row)


async def cancel_flex(conn: Conn, flex_id: int, now: datetime) -> FlexEvent:
    """End a window at ``now`` (before its start: it never happens); idempotent."""
    await get_flex(conn, flex_id)
    await conn.execute(
        "update flex_events set cancelled_at = %s where id = %s and cancelled_at is null", (now, flex_id)
    )
    return await get_flex(conn, flex_id)


async def load_flex(pool: AsyncConnectionPool, since: datetime | None = None) -> list[FlexRow]:
    """The windows the engine may still need (ended at or after ``since``), oldest first."""
    async with pool.connection() as conn:
        rows = await fetch_all(
            conn,
            _SELECT + " where %s::timestamptz is null or end_time >= %s order by start_time, id",
            (since, since),
        )
    return [
        FlexRow(
            id=r["id"],
            start=r["start_time"],
            end=_end(r),
            hvac_offset_c=float(r["hvac_offset_c"]),
            defer_water=bool(r["defer_water"]),
            defer_ev=bool(r["defer_ev"]),
            meter_ids=tuple(r["meter_ids"]),
        )
        for r in rows
    ]
