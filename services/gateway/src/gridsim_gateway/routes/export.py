"""Data out: Green Button (ESPI) feeds, and readings and rollups as CSV or Parquet, streamed.

All read the aggregator's tables (read-only) and, for a Green Button month, ask billing for the bill.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import Response, StreamingResponse
from psycopg_pool import AsyncConnectionPool

from gridsim_gateway import greenbutton, tabular
from gridsim_gateway.deps import BusDep, PoolDep, SettingsDep, StateDep
from gridsim_gateway.routes.readings import find_meter
from gridsim_shared.commands import billing
from gridsim_shared.errors import InvalidError, NotFoundError
from gridsim_shared.schemas.billing import MONTH_PATTERN, Bill
from gridsim_shared.schemas.readings import RESOLUTIONS, Resolution

router = APIRouter(tags=["export"])

ATOM_XML = "application/atom+xml"
CSV = "text/csv"
PARQUET = "application/vnd.apache.parquet"
_MEDIA = {"csv": CSV, "parquet": PARQUET}
MAX_FEED_DAYS = 366

StartParam = Annotated[
    datetime | None, Query(alias="from", description="simulated time, inclusive (default: the first row)")
]
EndParam = Annotated[datetime | None, Query(description="simulated time, exclusive (default: no bound)")]
FormatParam = Annotated[
    tabular.Format | None,
    Query(description=f"csv or parquet; default from the Accept header ({CSV} or {PARQUET}), else csv"),
]
AcceptHeader = Annotated[str | None, Header(include_in_schema=False)]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_FAR = datetime(9999, 1, 1, tzinfo=UTC)


def _aware(value: datetime | None, default: datetime) -> datetime:
    if value is None:
        return default
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _format(fmt: tabular.Format | None, accept: str | None) -> tabular.Format:
    if fmt is not None:
        return fmt
    if accept and PARQUET in accept:
        return "parquet"
    return "csv"


def _stream(pool: AsyncConnectionPool, query: tabular.Query, fmt: tabular.Format, name: str) -> Response:
    body: AsyncIterator[bytes] = (
        tabular.stream_csv(pool, query) if fmt == "csv" else tabular.stream_parquet(pool, query)
    )
    return StreamingResponse(
        body,
        media_type=_MEDIA[fmt],
        headers={"content-disposition": f'attachment; filename="{name}.{fmt}"'},
    )


async def _node(pool: AsyncConnectionPool, code: str) -> int:
    async with pool.connection() as conn:
        cur = await conn.execute("select id from grid_nodes where lower(code) = lower(%s)", (code,))
        row = await cur.fetchone()
    if row is None:
        msg = f"node: no grid node {code!r}"
        raise NotFoundError(msg, field="node")
    return int(row[0])


_SUBTREE = """
    with recursive sub as (
        select id, level from grid_nodes where id = %(root)s
        union all select g.id, g.level from grid_nodes g join sub on g.parent_id = sub.id
    )
"""


async def _subtree_nodes(pool: AsyncConnectionPool, root: int) -> list[int]:
    async with pool.connection() as conn:
        cur = await conn.execute(_SUBTREE + "select id from sub", {"root": root})
        return [int(r[0]) for r in await cur.fetchall()]


async def _subtree_meters(pool: AsyncConnectionPool, root: int) -> list[int]:
    # Meters on the subtree's transformers, and their child meters (an apartment block's flats).
    async with pool.connection() as conn:
        cur = await conn.execute(
            _SUBTREE + "select m.id from meters m where m.transformer_id in (select id from sub)"
            " or m.parent_id in (select id from meters where transformer_id in (select id from sub))"
            " order by m.id",
            {"root": root},
        )
        return [int(r[0]) for r in await cur.fetchall()]


def _width(resolution: str, interval_s: int) -> int:
    return interval_s if resolution == "raw" else RESOLUTIONS[resolution]


@router.get(
    "/export/readings",
    response_class=Response,
    responses={200: {"content": {CSV: {}, PARQUET: {}}, "description": "CSV with a header row, or Parquet"}},
)
async def export_readings(
    *,
    pool: PoolDep,
    live: StateDep,
    meter_id: Annotated[str | None, Query(description="one meter, by id or code")] = None,
    node: Annotated[
        str | None, Query(description="a grid node's code: every meter in its subtree (with child meters)")
    ] = None,
    from_: StartParam = None,
    to: EndParam = None,
    resolution: Annotated[Resolution, Query(description="raw, 15m, 1h or 1d")] = "raw",
    format: FormatParam = None,
    accept: AcceptHeader = None,
) -> Response:
    """Readings of a meter, of every meter under a grid node, or (neither given) of the whole grid.

    Rows are ordered by time then meter, with start in [``from``, ``to``); the columns, their units and
    types are listed in docs/data-out.md and are the fields of ``GET /meter/stream``. Streamed: CSV from
    PostgreSQL's COPY, Parquet (zstd) in row groups of 16,384 rows, so any size is served in bounded memory.
    """
    if meter_id is not None and node is not None:
        msg = "node: give meter_id or node, not both"
        raise InvalidError(msg, field="node")
    ids: list[int] | None = None
    name = "grid"
    if meter_id is not None:
        meter = await find_meter(pool, meter_id)
        ids, name = [meter[0]], meter[1]
    elif node is not None:
        ids, name = await _subtree_meters(pool, await _node(pool, node)), node
    interval_s = live.clock.interval_s if live.clock else 60
    query = tabular.reading_query(
        meter_ids=ids,
        start=_aware(from_, _EPOCH),
        end=_aware(to, _FAR),
        resolution=resolution,
        width_s=_width(resolution, interval_s),
    )
    return _stream(pool, query, _format(format, accept), f"readings-{name}-{resolution}")


@router.get(
    "/export/rollups",
    response_class=Response,
    responses={200: {"content": {CSV: {}, PARQUET: {}}, "description": "CSV with a header row, or Parquet"}},
)
async def export_rollups(
    *,
    pool: PoolDep,
    live: StateDep,
    node: Annotated[
        str | None, Query(description="a grid node's code: it and every node below it (default: all)")
    ] = None,
    from_: StartParam = None,
    to: EndParam = None,
    resolution: Annotated[Resolution, Query(description="raw, 15m, 1h or 1d")] = "1h",
    format: FormatParam = None,
    accept: AcceptHeader = None,
) -> Response:
    """Grid rollups (transformers, feeders, the utility) of a node's subtree or the whole grid, streamed.

    The fields of ``GET /rollups/{node}``, ordered by time then node, with start in [``from``, ``to``).
    """
    ids = await _subtree_nodes(pool, await _node(pool, node)) if node is not None else None
    interval_s = live.clock.interval_s if live.clock else 60
    query = tabular.rollup_query(
        node_ids=ids,
        start=_aware(from_, _EPOCH),
        end=_aware(to, _FAR),
        resolution=resolution,
        width_s=_width(resolution, interval_s),
    )
    return _stream(pool, query, _format(format, accept), f"rollups-{node or 'grid'}-{resolution}")


# ---------------------------------------------------------------- Green Button
async def _intervals(
    pool: AsyncConnectionPool, meter_id: int, start: datetime, end: datetime, resolution: str
) -> list[greenbutton.IntervalEnergy]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            f"select bucket, consumption_kwh, production_kwh from meter_data_{resolution}"
            " where meter_id = %s and bucket >= %s and bucket < %s order by bucket",
            (meter_id, start, end),
        )
        rows = await cur.fetchall()
    return [greenbutton.IntervalEnergy(ts, cons or 0.0, prod or 0.0) for ts, cons, prod in rows]


def _summary(bill: Bill) -> greenbutton.BillSummary:
    return greenbutton.BillSummary(
        period_start=bill.period_start,
        period_end=bill.period_end,
        status=bill.status,
        currency=bill.currency,
        amount_due=bill.amount_due,
        grid_bill=bill.grid_bill,
        grid_earning=bill.grid_earning,
        p2p_cost=bill.p2p_cost,
        p2p_earning=bill.p2p_earning,
        consumed_kwh=bill.total_consumed_kWh,
        produced_kwh=bill.total_produced_kWh,
        generated_at=bill.generated_at,
    )


@router.get(
    "/export/greenbutton",
    response_class=Response,
    responses={200: {"content": {ATOM_XML: {}}, "description": "a Green Button Download My Data feed"}},
)
async def green_button(
    *,
    request: Request,
    pool: PoolDep,
    bus: BusDep,
    live: StateDep,
    settings: SettingsDep,
    meter_id: Annotated[str, Query(description="the meter's id or code", examples=["MTR-0017"])],
    month: Annotated[
        str | None,
        Query(pattern=MONTH_PATTERN, description="a billing month, YYYY-MM: adds the bill (UsageSummary)"),
    ] = None,
    from_: StartParam = None,
    to: EndParam = None,
    flow: Annotated[
        greenbutton.Flow,
        Query(description="import (delivered, flowDirection 1), export (received, 19) or both"),
    ] = "both",
    interval: Annotated[
        Literal["15m", "1h", "1d"], Query(description="IntervalReading length (ReadingType.intervalLength)")
    ] = "1h",
) -> Response:
    """The meter's Green Button "Download My Data" feed (NAESB ESPI 3.3 Atom) for a month or a period.

    UsagePoint, LocalTimeParameters (the billing zone, ``GRIDSIM_BILLING__TIMEZONE``), a MeterReading with
    its ReadingType and one IntervalBlock per local day for each flow, and with ``month`` a UsageSummary of
    the bill. Values are Wh × 10⁻³ (ReadingType uom 72, powerOfTenMultiplier −3); the period's total equals
    the bill and ``GET /meter/stream`` over the same period. Give ``month``, or ``from`` and ``to``.
    """
    meter = await find_meter(pool, meter_id)
    bill: Bill | None = None
    if month is not None:
        bill = await bus.call(billing.BILL, billing.BILL.build(meter_id=meter[0], month=month))
        start, end = bill.period_start, bill.period_end
    elif from_ is not None and to is not None:
        start, end = _aware(from_, _EPOCH), _aware(to, _FAR)
    else:
        msg = "month: give month (YYYY-MM), or from and to"
        raise InvalidError(msg, field="month")
    if not _EPOCH <= start < _FAR:
        msg = "from: must be between 1970 and 9999"
        raise InvalidError(msg, field="from")
    if end <= start:
        msg = "to: must be after from"
        raise InvalidError(msg, field="to")
    if end - start > timedelta(days=MAX_FEED_DAYS):
        msg = f"to: a feed covers at most {MAX_FEED_DAYS} days"
        raise InvalidError(msg, field="to")
    width = RESOLUTIONS[interval]
    if any(int((edge - _EPOCH).total_seconds()) % width for edge in (start, end)):
        msg = (
            f"interval: {interval} rollups are aligned to UTC and the period "
            f"{start.isoformat()} – {end.isoformat()} does not start and end on one; use 15m"
        )
        raise InvalidError(msg, field="interval")
    feed = greenbutton.Feed(
        meter_id=meter[0],
        meter_code=meter[1],
        base_url=str(request.base_url),
        start=start,
        end=end,
        interval_s=width,
        flow=flow,
        zone=ZoneInfo(settings.billing.timezone),
        updated=live.clock.current_datetime if live.clock else end,
        intervals=await _intervals(pool, meter[0], start, end, interval),
        bill=_summary(bill) if bill else None,
    )
    body = greenbutton.build_feed(feed)
    name = f"greenbutton-{meter[1]}-{month or start.date().isoformat()}.xml"
    return Response(
        body, media_type=ATOM_XML, headers={"content-disposition": f'attachment; filename="{name}"'}
    )
