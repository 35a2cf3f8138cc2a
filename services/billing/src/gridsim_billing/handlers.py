"""Every MQTT subscription and command of the billing service, in one place.

Commands (``cmd/billing/{operation}``): ``create_trade``, ``list_trades``, ``get_trade``, ``bill``, ``bills``.
Subscriptions: the retained clock (simulated "now") and the aggregator's watermark (is a month complete?);
each pokes the month closer (:mod:`gridsim_billing.closing`), which stores a month's final bills when it
closes. Every read here only reads: in a read-only transaction, so a write would fail loudly.
Publishes a ``p2p-trade`` :class:`GridEvent` on ``event/p2p-trade/{seller}`` for each recorded trade.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from psycopg_pool import AsyncConnectionPool

from gridsim_billing import repository as repo
from gridsim_billing.closing import MonthCloser, close_due_months, due
from gridsim_billing.domain import Period, Tariff, bill_status, closed_until, month_of, month_period
from gridsim_billing.ledger import Books, to_bill
from gridsim_billing.repository import BillRecord, Conn, MeterRow
from gridsim_billing.settings import Settings
from gridsim_shared import channels
from gridsim_shared.bus import Bus, Router
from gridsim_shared.commands import billing
from gridsim_shared.errors import ClockNotReady, ConflictError, InvalidError, NotFoundError
from gridsim_shared.events import P2PTradeEvent
from gridsim_shared.messages import ClockState, Watermark
from gridsim_shared.schemas.billing import (
    Bill,
    BillPage,
    BillQuery,
    BillsQuery,
    MeterRef,
    P2PTrade,
    P2PTradeCreate,
    P2PTradeCreated,
    TradeId,
    TradePage,
    TradeQuery,
)
from gridsim_shared.topics import EventPath, NoPath

__all__ = ["Deps", "LiveClock", "router"]

_LOGGER = logging.getLogger(__name__)

router: Router[Deps] = Router()


@dataclass
class LiveClock:
    """The latest retained clock and watermark seen on the bus."""

    clock: ClockState | None = None
    watermark: Watermark | None = None


@dataclass(frozen=True)
class Deps:
    """What the handlers need, built once in ``__main__``."""

    settings: Settings
    bus: Bus
    pool: AsyncConnectionPool
    live: LiveClock = field(default_factory=LiveClock)
    closer: MonthCloser = field(default_factory=MonthCloser)


# How long a read of a month that has just closed waits for the closer to store its bills: well inside
# the gateway's RPC timeout, so a long close (a jump over many months) answers provisionally, never a 504.
CLOSE_WAIT_S = 5.0


# ---------------------------------------------------------------- subscriptions
@router.subscribe(channels.CLOCK)
async def on_clock(msg: ClockState, _path: NoPath, deps: Deps) -> None:
    """Remember the simulated time."""
    deps.live.clock = msg
    _poke_closer(deps)


@router.subscribe(channels.WATERMARK)
async def on_watermark(msg: Watermark, _path: NoPath, deps: Deps) -> None:
    """Remember how far the aggregator has committed readings."""
    deps.live.watermark = msg
    _poke_closer(deps)


def _poke_closer(deps: Deps) -> None:
    """Close the months that have ended (in the background; a no-op until both clock and watermark are known)."""

    async def work() -> list[str]:
        clock, watermark = deps.live.clock, deps.live.watermark
        if clock is None or watermark is None:
            return []
        return await close_due_months(deps.settings, deps.pool, clock, watermark)

    clock, watermark = deps.live.clock, deps.live.watermark
    if clock is None or watermark is None:
        return
    # The clock ticks many times a second; the database is asked only when a month boundary was crossed
    # since the last run that succeeded (and once after every start, as checked_until starts empty).
    tz = ZoneInfo(deps.settings.billing.timezone)
    boundary = closed_until(clock.current_datetime, watermark.committed_until, clock.interval_s, tz)
    if boundary is not None and boundary != deps.closer.checked_until:
        deps.closer.poke(work, boundary)


# ---------------------------------------------------------------- helpers
async def _books(conn: Conn, deps: Deps) -> Books:
    now: datetime | None = deps.live.clock.current_datetime if deps.live.clock else None
    if now is None:
        now = await repo.clock_row(conn)
    if now is None:
        msg = "the simulation clock has not started yet (is meter-sim running?)"
        raise ClockNotReady(msg)
    return Books(Tariff.from_settings(deps.settings.billing), now)


async def _meter(conn: Conn, ref: MeterRef, name: str) -> MeterRow:
    meter = await repo.resolve_meter(conn, ref)
    if meter is None:
        msg = f"{name}: no meter with id or code {ref!r}"
        raise NotFoundError(msg, field=name)
    return meter


def _check_started(period: Period, books: Books, deps: Deps) -> None:
    """422 naming ``month`` when ``period`` has not started on the simulation clock."""
    clock = deps.live.clock
    interval_s = clock.interval_s if clock else deps.settings.sim.interval_s
    if bill_status(period, books.now, None, interval_s) == "future":
        msg = f"month: {period.month} has not started on the simulation clock (now {books.now.isoformat()})"
        raise InvalidError(msg, field="month")


async def _await_close(month: str, deps: Deps) -> None:
    """When ``month`` has closed on the latest clock and watermark, let the closer store its bills first.

    Its final bills are then what the read returns; should the closer take longer than
    :data:`CLOSE_WAIT_S`, the read answers provisionally (computed, not stored) meanwhile.
    """
    tz = ZoneInfo(deps.settings.billing.timezone)
    if due(month_period(month, tz).end, deps.live.clock, deps.live.watermark, tz):
        await deps.closer.wait_idle(CLOSE_WAIT_S)


@contextlib.asynccontextmanager
async def _reading(deps: Deps) -> AsyncIterator[Conn]:
    """A connection in a read-only transaction: reads never write (a write would raise)."""
    async with deps.pool.connection() as conn, conn.transaction():
        await conn.execute("set transaction read only")
        yield conn


async def _bills(conn: Conn, books: Books, meters: list[MeterRow], period: Period) -> list[BillRecord]:
    """Stored final bills, and provisional ones (computed, not stored) for meters without one."""
    stored = await repo.final_bills(conn, period.month, [m.id for m in meters])
    missing = [m for m in meters if m.id not in stored]
    made = {r.meter_id: r for r in await books.bills(conn, missing, period, final=False)} if missing else {}
    return [stored[m.id] if m.id in stored else made[m.id] for m in meters]


# ---------------------------------------------------------------- trades
@router.handles(billing.CREATE_TRADE)
async def create_trade(body: P2PTradeCreate, deps: Deps) -> P2PTradeCreated:
    """Record a P2P trade (seller: a prosumer; not in the future; not in a month already settled)."""
    async with deps.pool.connection() as conn:
        buyer = await _meter(conn, body.buyer_meter_id, "buyer_meter_id")
        seller = await _meter(conn, body.seller_meter_id, "seller_meter_id")
        if buyer.id == seller.id:
            msg = f"seller_meter_id: buyer and seller are the same meter ({seller.code})"
            raise InvalidError(msg, field="seller_meter_id")
        if seller.er_type != "prosumer":
            what = (
                "is not linked to an energy resource" if seller.er_type is None else "belongs to a consumer"
            )
            msg = f"seller_meter_id: meter {seller.code} {what}; only a prosumer's meter can sell"
            raise InvalidError(msg, field="seller_meter_id")
        if buyer.er_type is None:
            msg = f"buyer_meter_id: meter {buyer.code} is not linked to an energy resource, so it cannot be billed"
            raise InvalidError(msg, field="buyer_meter_id")
        books = await _books(conn, deps)
        ts = body.timestamp or books.now
        if ts > books.now:
            msg = f"timestamp: {ts.isoformat()} is in the future of the simulation clock ({books.now.isoformat()})"
            raise InvalidError(msg, field="timestamp")
        month = month_of(ts, books.tz)
        async with conn.transaction():
            await repo.lock_month(conn, month, exclusive=False)
            closed = await repo.month_closed_for(conn, month, buyer.id, seller.id)
            if closed is not None:
                msg = f"timestamp: {closed}; no trade can be added to that month"
                raise ConflictError(msg, field="timestamp")
            row = await repo.insert_trade(
                conn,
                buyer=buyer,
                seller=seller,
                units_kwh=body.units_kWh,
                price_per_kwh=body.price_per_kWh,
                ts=ts,
                month=month,
            )
        (trade,) = await books.trade_views(conn, [row])
    await _publish(deps, trade)
    return P2PTradeCreated(trade=trade)


async def _publish(deps: Deps, trade: P2PTrade) -> None:
    event = P2PTradeEvent(
        type="p2p-trade",
        severity="info",
        timestamp=trade.timestamp,
        subject=trade.seller_meter_code.lower(),
        message=(
            f"{trade.seller_meter_code} sold {trade.units_kWh} kWh to {trade.buyer_meter_code}"
            f" at {trade.price_per_kWh} per kWh"
        ),
        data=trade,
    )
    await deps.bus.publish(channels.EVENT, event, EventPath(type="p2p-trade", subject=event.subject))


@router.handles(billing.LIST_TRADES)
async def list_trades(query: TradeQuery, deps: Deps) -> TradePage:
    """Trades, oldest first, filtered by meter (as buyer, seller or either) and month."""
    async with _reading(deps) as conn:
        meter_id = None
        if query.meter_id is not None:
            meter_id = (await _meter(conn, query.meter_id, "meter_id")).id
        books = await _books(conn, deps)
        rows, total = await repo.list_trades(
            conn,
            meter_id=meter_id,
            role=query.role,
            month=query.month,
            limit=query.page_size,
            offset=(query.page - 1) * query.page_size,
        )
        items = await books.trade_views(conn, rows)
    return TradePage(items=items, page=query.page, page_size=query.page_size, total=total)


@router.handles(billing.GET_TRADE)
async def get_trade(query: TradeId, deps: Deps) -> P2PTrade:
    """One trade with its settlement."""
    async with _reading(deps) as conn:
        row = await repo.get_trade(conn, query.id)
        if row is None:
            msg = f"id: no P2P trade {query.id}"
            raise NotFoundError(msg, field="id")
        books = await _books(conn, deps)
        (trade,) = await books.trade_views(conn, [row])
    return trade


# ---------------------------------------------------------------- bills
@router.handles(billing.BILL)
async def bill(query: BillQuery, deps: Deps) -> Bill:
    """A meter's bill for a month: the final one stored when the month closed, else provisional."""
    await _await_close(query.month, deps)
    async with _reading(deps) as conn:
        meter = await _meter(conn, query.meter_id, "meter_id")
        books = await _books(conn, deps)
        period = month_period(query.month, books.tz)
        _check_started(period, books, deps)
        stored = await repo.final_bills(conn, period.month, [meter.id])
        if not stored and meter.er_type is None:
            msg = f"meter_id: meter {meter.code} is not linked to an energy resource, so it has no bill"
            raise InvalidError(msg, field="meter_id")
        (record,) = await _bills(conn, books, [meter], period)
    return to_bill(record, books.tariff.timezone)


@router.handles(billing.BILLS)
async def bills(query: BillsQuery, deps: Deps) -> BillPage:
    """One page of a month's bills for every meter linked to an ER; final when every one on it is."""
    await _await_close(query.month, deps)
    async with _reading(deps) as conn:
        books = await _books(conn, deps)
        period = month_period(query.month, books.tz)
        _check_started(period, books, deps)
        meters, total = await repo.billable_meters(conn, query.page_size, (query.page - 1) * query.page_size)
        records = await _bills(conn, books, meters, period)
        final = all(r.status == "final" for r in records) and await repo.month_completed(conn, query.month)
    return BillPage(
        month=query.month,
        status="final" if final else "provisional",
        items=[to_bill(r, books.tariff.timezone) for r in records],
        page=query.page,
        page_size=query.page_size,
        total=total,
    )
