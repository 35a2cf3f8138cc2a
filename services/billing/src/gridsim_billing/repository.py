"""SQL of the billing service: psycopg calls that return plain records.

Monthly energy comes from the aggregator's rollups (``meter_data_1d``, ``_1h`` or ``_15m``), never from raw
minutes. Floats from the rollups become exact decimals at a micro-kWh in SQL, so sums do not carry float
noise into money.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import astuple, dataclass, fields
from datetime import datetime
from decimal import Decimal
from typing import Any, LiteralString
from uuid import UUID

from psycopg import AsyncConnection, sql

from gridsim_billing.domain import Period, Resolution, Usage

__all__ = [
    "BillRecord",
    "MeterRow",
    "TradeRow",
    "billable_meters",
    "billable_meters_after",
    "clock_row",
    "complete_close",
    "final_bills",
    "get_trade",
    "insert_bills",
    "insert_trade",
    "last_closed_month",
    "list_trades",
    "lock_month",
    "month_closed",
    "month_closed_for",
    "month_completed",
    "pending_closes",
    "resolve_meter",
    "settle",
    "settled_sellers",
    "start_close",
    "trades_of_sellers",
    "trades_touching",
    "unsettled_sellers",
    "usage",
]

Conn = AsyncConnection[Any]

# pg_advisory_xact_lock(key1, key2): key1 says "billing month", key2 is the month's hash.
_MONTH_LOCK_CLASS = 0x6269_6C6C  # "bill"

_ROLLUP_TABLES = {"1d": "meter_data_1d", "1h": "meter_data_1h", "15m": "meter_data_15m"}


@dataclass(frozen=True)
class MeterRow:
    """A meter and the type of the ER linked to it (None when unlinked)."""

    id: int
    code: str
    er_type: str | None


@dataclass(frozen=True)
class TradeRow:
    """A stored trade; ``delivered_kwh`` is None until its seller's month is settled."""

    id: UUID
    buyer_meter_id: int
    buyer_meter_code: str
    seller_meter_id: int
    seller_meter_code: str
    units_kwh: Decimal
    price_per_kwh: Decimal
    ts: datetime
    month: str
    delivered_kwh: Decimal | None
    created_at: datetime


_TRADE_COLUMNS = sql.SQL(", ").join(sql.Identifier(f.name) for f in fields(TradeRow))


@dataclass(frozen=True)
class BillRecord:
    """A bill as stored (final) or computed (provisional): energies exact, money rounded."""

    id: UUID | None
    meter_id: int
    meter_code: str
    type: str
    month: str
    status: str
    period_start: datetime
    period_end: datetime
    currency: str
    tariff: str
    total_consumed_kwh: Decimal
    total_produced_kwh: Decimal
    p2p_kwh: Decimal
    p2p_bought_kwh: Decimal
    p2p_sold_kwh: Decimal
    p2p_contracted_kwh: Decimal
    grid_units_used_kwh: Decimal
    grid_units_exported_kwh: Decimal
    grid_peak_kwh: Decimal | None
    grid_offpeak_kwh: Decimal | None
    grid_rate: Decimal
    grid_credit_rate: Decimal
    tou_peak_rate: Decimal | None
    tou_peak_start_hour: int | None
    tou_peak_end_hour: int | None
    grid_bill: Decimal
    grid_peak_cost: Decimal | None
    grid_offpeak_cost: Decimal | None
    grid_earning: Decimal
    p2p_cost: Decimal
    p2p_earning: Decimal
    amount_due: Decimal
    generated_at: datetime


_BILL_FIELDS = [f.name for f in fields(BillRecord)]
_BILL_COLUMNS = sql.SQL(", ").join(sql.Identifier(name) for name in _BILL_FIELDS)


# ---------------------------------------------------------------- meters and the clock
async def resolve_meter(conn: Conn, ref: int | str) -> MeterRow | None:
    """The meter named by a numeric id or a code (case-insensitive); codes made of digits are tried too."""
    query = (
        "select m.id, m.code, er.type from meters m left join energy_resources er on er.id = m.er_id where "
    )
    candidates: list[tuple[str, object]] = []
    if isinstance(ref, int) or ref.isdigit():
        candidates.append(("m.id = %s", int(ref)))
    if isinstance(ref, str):
        candidates.append(("lower(m.code) = lower(%s)", ref))
    for condition, value in candidates:
        cur = await conn.execute((query + condition).encode(), (value,))
        row = await cur.fetchone()
        if row is not None:
            return MeterRow(*row)
    return None


async def billable_meters(conn: Conn, limit: int, offset: int) -> tuple[list[MeterRow], int]:
    """A page of meters linked to an ER (ordered by id), and how many there are."""
    cur = await conn.execute(
        "select m.id, m.code, er.type, count(*) over () from meters m"
        " join energy_resources er on er.id = m.er_id order by m.id limit %s offset %s",
        (limit, offset),
    )
    rows = await cur.fetchall()
    total = await _page_total(conn, rows, offset, "select count(*) from meters where er_id is not null", ())
    return [MeterRow(r[0], r[1], r[2]) for r in rows], total


async def billable_meters_after(conn: Conn, after_id: int, limit: int) -> list[MeterRow]:
    """Up to ``limit`` meters linked to an ER with ids above ``after_id``, by id (the month closer's pages)."""
    cur = await conn.execute(
        "select m.id, m.code, er.type from meters m join energy_resources er on er.id = m.er_id"
        " where m.id > %s order by m.id limit %s",
        (after_id, limit),
    )
    return [MeterRow(*row) for row in await cur.fetchall()]


async def _page_total(
    conn: Conn,
    rows: list[tuple[Any, ...]],
    offset: int,
    count: sql.Composed | LiteralString,
    params: Sequence[object],
) -> int:
    """A page's total: the ``count(*) over ()`` ending its rows; a page past the end has none, so counted apart."""
    if rows:
        return int(rows[0][-1])
    if offset == 0:
        return 0
    cur = await conn.execute(count, params)
    total = await cur.fetchone()
    return int(total[0]) if total else 0


async def clock_row(conn: Conn) -> datetime | None:
    """The clock's current time from ``simulation_clock`` (when no clock message has been seen)."""
    cur = await conn.execute("select current_datetime from simulation_clock")
    row = await cur.fetchone()
    return row[0] if row else None


# ---------------------------------------------------------------- energy
async def usage(
    conn: Conn,
    meter_ids: list[int],
    period: Period,
    resolution: Resolution,
    *,
    timezone: str,
    peak_hours: tuple[int, int],
) -> dict[int, Usage]:
    """Each meter's consumption, production and peak-hour consumption over ``period``, from rollups."""
    if not meter_ids:
        return {}
    query = sql.SQL(
        "select meter_id,"
        " round(coalesce(sum(consumption_kwh), 0)::numeric, 6),"
        " round(coalesce(sum(production_kwh), 0)::numeric, 6),"
        " round(coalesce(sum(consumption_kwh) filter (where extract(hour from bucket at time zone %(tz)s)"
        "   >= %(peak_start)s and extract(hour from bucket at time zone %(tz)s) < %(peak_end)s), 0)::numeric, 6)"
        " from {table} where meter_id = any(%(ids)s) and bucket >= %(start)s and bucket < %(end)s"
        " group by meter_id"
    ).format(table=sql.Identifier(_ROLLUP_TABLES[resolution]))
    cur = await conn.execute(
        query,
        {
            "ids": meter_ids,
            "start": period.start,
            "end": period.end,
            "tz": timezone,
            "peak_start": peak_hours[0],
            "peak_end": peak_hours[1],
        },
    )
    return {row[0]: Usage(row[1], row[2], row[3]) for row in await cur.fetchall()}


# ---------------------------------------------------------------- trades
async def lock_month(conn: Conn, month: str, *, exclusive: bool) -> None:
    """Serialise settlement of ``month`` (exclusive) against trades being added to it (shared)."""
    function = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
    await conn.execute(
        sql.SQL("select {}(%s, hashtext(%s))").format(sql.Identifier(function)), (_MONTH_LOCK_CLASS, month)
    )


async def month_closed_for(conn: Conn, month: str, buyer_id: int, seller_id: int) -> str | None:
    """Why no trade between these meters may be added to ``month`` any more, or None when it may."""
    cur = await conn.execute(
        "select meter_code from bills where month = %s and meter_id = any(%s) order by meter_id limit 1",
        (month, [buyer_id, seller_id]),
    )
    row = await cur.fetchone()
    if row is not None:
        return f"meter {row[0]} already has a final bill for {month}"
    if await month_closed(conn, month):
        return f"{month} is closed (its bills are final)"
    cur = await conn.execute(
        "select 1 from p2p_settlements where month = %s and seller_meter_id = %s", (month, seller_id)
    )
    if await cur.fetchone() is not None:
        return f"the seller's trades of {month} are already settled"
    return None


async def insert_trade(
    conn: Conn,
    *,
    buyer: MeterRow,
    seller: MeterRow,
    units_kwh: Decimal,
    price_per_kwh: Decimal,
    ts: datetime,
    month: str,
) -> TradeRow:
    """Record a trade."""
    cur = await conn.execute(
        sql.SQL(
            "insert into p2p_trades (buyer_meter_id, buyer_meter_code, seller_meter_id, seller_meter_code,"
            " units_kwh, price_per_kwh, ts, month) values (%s, %s, %s, %s, %s, %s, %s, %s) returning {}"
        ).format(_TRADE_COLUMNS),
        (buyer.id, buyer.code, seller.id, seller.code, units_kwh, price_per_kwh, ts, month),
    )
    row = await cur.fetchone()
    assert row is not None
    return TradeRow(*row)


async def get_trade(conn: Conn, trade_id: UUID) -> TradeRow | None:
    """One trade by id."""
    rows = await _trades(conn, "id = %s", (trade_id,))
    return rows[0] if rows else None


async def list_trades(
    conn: Conn, *, meter_id: int | None, role: str, month: str | None, limit: int, offset: int
) -> tuple[list[TradeRow], int]:
    """A page of trades (oldest first) filtered by meter, role and month, and how many match."""
    conditions: list[sql.Composable] = [sql.SQL("true")]
    params: list[object] = []
    if meter_id is not None:
        sides = {"any": ["buyer_meter_id", "seller_meter_id"], "buyer": ["buyer_meter_id"]}.get(
            role, ["seller_meter_id"]
        )
        matches = [sql.SQL("{} = %s").format(sql.Identifier(side)) for side in sides]
        conditions.append(sql.SQL("({})").format(sql.SQL(" or ").join(matches)))
        params.extend([meter_id] * len(sides))
    if month is not None:
        conditions.append(sql.SQL("month = %s"))
        params.append(month)
    query = sql.SQL(
        "select {}, count(*) over () from p2p_trades where {} order by ts, created_at, id limit %s offset %s"
    ).format(_TRADE_COLUMNS, sql.SQL(" and ").join(conditions))
    cur = await conn.execute(query, [*params, limit, offset])
    rows = await cur.fetchall()
    count = sql.SQL("select count(*) from p2p_trades where {}").format(sql.SQL(" and ").join(conditions))
    return [TradeRow(*r[:-1]) for r in rows], await _page_total(conn, rows, offset, count, params)


async def trades_touching(conn: Conn, month: str, meter_ids: list[int]) -> list[TradeRow]:
    """Every trade of ``month`` in which one of ``meter_ids`` buys or sells."""
    return await _trades(
        conn,
        "month = %(month)s and (buyer_meter_id = any(%(ids)s) or seller_meter_id = any(%(ids)s))",
        {"month": month, "ids": meter_ids},
    )


async def trades_of_sellers(conn: Conn, month: str, seller_ids: list[int]) -> list[TradeRow]:
    """Every trade of ``month`` sold by one of ``seller_ids`` (what settlement allocates)."""
    return await _trades(conn, "month = %s and seller_meter_id = any(%s)", (month, seller_ids))


async def _trades(
    conn: Conn, condition: LiteralString, params: Sequence[object] | Mapping[str, object]
) -> list[TradeRow]:
    """Trades matching ``condition`` (SQL with placeholders for ``params``), in settlement order."""
    query = sql.SQL("select {} from p2p_trades where " + condition + " order by ts, created_at, id")
    cur = await conn.execute(query.format(_TRADE_COLUMNS), params)
    return [TradeRow(*row) for row in await cur.fetchall()]


async def settled_sellers(conn: Conn, month: str, seller_ids: list[int]) -> set[int]:
    """Which of ``seller_ids`` have their ``month`` settled."""
    cur = await conn.execute(
        "select seller_meter_id from p2p_settlements where month = %s and seller_meter_id = any(%s)",
        (month, seller_ids),
    )
    return {row[0] for row in await cur.fetchall()}


async def settle(
    conn: Conn,
    month: str,
    produced: dict[int, Decimal],
    trades: list[TradeRow],
    delivered: dict[UUID, Decimal],
) -> None:
    """Fix the delivered kWh of ``trades`` and record each seller's settlement of ``month``."""
    async with conn.cursor() as cur:
        await cur.executemany(
            "update p2p_trades set delivered_kwh = %s where id = %s",
            [(delivered[t.id], t.id) for t in trades],
        )
        by_seller: dict[int, list[TradeRow]] = defaultdict(list)
        for t in trades:
            by_seller[t.seller_meter_id].append(t)
        rows = [
            (
                seller_id,
                month,
                produced_kwh,
                sum((t.units_kwh for t in by_seller[seller_id]), Decimal(0)),
                sum((delivered[t.id] for t in by_seller[seller_id]), Decimal(0)),
            )
            for seller_id, produced_kwh in produced.items()
        ]
        await cur.executemany(
            "insert into p2p_settlements (seller_meter_id, month, produced_kwh, contracted_kwh, delivered_kwh)"
            " values (%s, %s, %s, %s, %s) on conflict do nothing",
            rows,
        )


# ---------------------------------------------------------------- bills
async def final_bills(conn: Conn, month: str, meter_ids: list[int]) -> dict[int, BillRecord]:
    """Stored final bills of ``month`` for ``meter_ids``, by meter id."""
    cur = await conn.execute(
        sql.SQL("select {} from bills where month = %s and meter_id = any(%s)").format(_BILL_COLUMNS),
        (month, meter_ids),
    )
    return {row[1]: BillRecord(*row) for row in await cur.fetchall()}


async def insert_bills(conn: Conn, records: list[BillRecord]) -> None:
    """Store final bills; one that already exists is left as it was."""
    if not records:
        return
    names = [name for name in _BILL_FIELDS if name != "id"]
    statement = sql.SQL("insert into bills ({}) values ({}) on conflict (meter_id, month) do nothing").format(
        sql.SQL(", ").join(sql.Identifier(name) for name in names),
        sql.SQL(", ").join(sql.Placeholder() * len(names)),
    )
    async with conn.cursor() as cur:
        await cur.executemany(statement, [astuple(record)[1:] for record in records])


# ---------------------------------------------------------------- closing months
async def month_closed(conn: Conn, month: str) -> bool:
    """Whether the month closer has started (or finished) closing ``month``."""
    cur = await conn.execute("select 1 from billing_months where month = %s", (month,))
    return await cur.fetchone() is not None


async def month_completed(conn: Conn, month: str) -> bool:
    """Whether every final bill of ``month`` is stored."""
    cur = await conn.execute(
        "select 1 from billing_months where month = %s and completed_at is not null", (month,)
    )
    return await cur.fetchone() is not None


async def last_closed_month(conn: Conn) -> str | None:
    """The latest month whose closing has started; the closer goes on from the month after it."""
    cur = await conn.execute("select max(month) from billing_months")
    row = await cur.fetchone()
    return None if row is None else row[0]


async def pending_closes(conn: Conn) -> list[str]:
    """Months whose closing started but did not finish (the service stopped half way)."""
    cur = await conn.execute("select month from billing_months where completed_at is null order by month")
    return [row[0] for row in await cur.fetchall()]


async def start_close(conn: Conn, month: str, sim_now: datetime) -> None:
    """Mark ``month`` as closing: from this commit on, no trade may be added to it."""
    await conn.execute(
        "insert into billing_months (month, closed_at) values (%s, %s) on conflict do nothing",
        (month, sim_now),
    )


async def complete_close(conn: Conn, month: str) -> int:
    """Mark ``month`` closed with every bill stored; returns how many final bills it has."""
    cur = await conn.execute(
        "update billing_months set completed_at = now(),"
        " bills = (select count(*) from bills where month = %(m)s) where month = %(m)s returning bills",
        {"m": month},
    )
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def unsettled_sellers(conn: Conn, month: str) -> list[int]:
    """Sellers with trades in ``month`` whose settlement is not recorded yet."""
    cur = await conn.execute(
        "select distinct t.seller_meter_id from p2p_trades t where t.month = %s and not exists"
        " (select 1 from p2p_settlements s where s.month = t.month and s.seller_meter_id = t.seller_meter_id)"
        " order by 1",
        (month,),
    )
    return [row[0] for row in await cur.fetchall()]
