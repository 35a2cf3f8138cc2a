"""Pure domain functions of the billing service: no I/O, no asyncio, no SQL.

Everything here is exact :class:`~decimal.Decimal` arithmetic. Amounts are rounded once, by
:func:`round_money`, when a bill's figures are turned into a response; nothing upstream rounds.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Literal
from uuid import UUID
from zoneinfo import ZoneInfo

from gridsim_shared.settings import BillingSettings

__all__ = [
    "ZERO",
    "BillFigures",
    "Period",
    "SettledTrade",
    "Tariff",
    "TradeLine",
    "Usage",
    "allocate_fcfs",
    "bill_status",
    "closed_until",
    "compute_bill",
    "month_of",
    "month_period",
    "next_month",
    "rollup_resolution",
    "round_energy",
    "round_money",
]

ZERO = Decimal(0)
_CENT = Decimal("0.01")
_WH = Decimal("0.001")

Resolution = Literal["1d", "1h", "15m"]
MeterKind = Literal["consumer", "prosumer"]


# ---------------------------------------------------------------- months and time zones
@dataclass(frozen=True)
class Period:
    """A billing month: ``[start, end)`` as UTC instants of the local month's first and next first day."""

    month: str
    start: datetime
    end: datetime


def month_period(month: str, tz: ZoneInfo) -> Period:
    """The instants bounding ``month`` ('YYYY-MM', already pattern-checked) in the zone ``tz``."""
    year, mon = (int(part) for part in month.split("-"))
    start = datetime(year, mon, 1, tzinfo=tz)
    end = datetime(year + mon // 12, mon % 12 + 1, 1, tzinfo=tz)
    return Period(month, start.astimezone(UTC), end.astimezone(UTC))


def month_of(ts: datetime, tz: ZoneInfo) -> str:
    """The billing month ('YYYY-MM') an instant falls in, in the zone ``tz``."""
    local = ts.astimezone(tz)
    return f"{local.year:04d}-{local.month:02d}"


def bill_status(
    period: Period, now: datetime, committed_until: datetime | None, interval_s: int
) -> Literal["final", "provisional", "future"]:
    """Whether ``period`` can have a final bill at simulated time ``now``.

    A month is final once the clock has passed its end and the aggregator has committed its last
    interval (``committed_until`` is the aggregator's watermark; None when no aggregator reports one).
    """
    if now < period.start:
        return "future"
    if now < period.end:
        return "provisional"
    if committed_until is not None and committed_until < period.end - timedelta(seconds=interval_s):
        return "provisional"
    return "final"


def closed_until(
    now: datetime, committed_until: datetime | None, interval_s: int, tz: ZoneInfo
) -> datetime | None:
    """The start of the earliest month that has not closed: every month ending at or before it has.

    A month closes (its bills become final) once the clock has passed its end and the aggregator has
    committed its last interval, the rule of :func:`bill_status`. Without a watermark nothing closes:
    a month must never be finalised before its readings are stored.
    """
    if committed_until is None:
        return None
    effective = min(now, committed_until + timedelta(seconds=interval_s))
    return month_period(month_of(effective, tz), tz).start


def next_month(month: str) -> str:
    """The month after ``month`` ('YYYY-MM')."""
    year, mon = (int(part) for part in month.split("-"))
    return f"{year + mon // 12:04d}-{mon % 12 + 1:02d}"


def rollup_resolution(period: Period, tz: ZoneInfo, *, time_of_use: bool) -> Resolution:
    """The coarsest rollup whose buckets neither straddle the month's edges nor (for ToU) a local hour.

    Rollup buckets are aligned to UTC. In UTC (the default) a flat bill reads daily rollups and a
    time-of-use bill hourly ones; a zone like Asia/Kolkata (+05:30) needs 15-minute rollups.
    """
    edges = (period.start, period.end)
    if not time_of_use and all(edge.hour == 0 and edge.minute == 0 for edge in edges):
        return "1d"
    offsets = {_offset_s(edge, tz) for edge in edges}
    if time_of_use:
        # DST changes fall inside the month; the offsets at both ends and mid-month cover them.
        offsets.add(_offset_s(period.start + (period.end - period.start) / 2, tz))
    if all(edge.minute == 0 for edge in edges) and all(offset % 3600 == 0 for offset in offsets):
        return "1h"
    return "15m"


def _offset_s(instant: datetime, tz: ZoneInfo) -> int:
    offset = instant.astimezone(tz).utcoffset() or timedelta(0)
    return int(offset.total_seconds())


# ---------------------------------------------------------------- tariff
@dataclass(frozen=True)
class Tariff:
    """Rates of a bill. Time-of-use when ``peak_rate`` is set: peak hours [start, end) local time."""

    currency: str
    grid_rate: Decimal
    grid_credit_rate: Decimal
    peak_rate: Decimal | None = None
    peak_start_hour: int = 16
    peak_end_hour: int = 21
    timezone: str = "UTC"

    @classmethod
    def from_settings(cls, settings: BillingSettings) -> Tariff:
        """The tariff configured in ``settings.billing``."""
        return cls(
            currency=settings.currency,
            grid_rate=settings.grid_rate,
            grid_credit_rate=settings.grid_credit_rate,
            peak_rate=settings.tou_peak_rate,
            peak_start_hour=settings.tou_peak_start_hour,
            peak_end_hour=settings.tou_peak_end_hour,
            timezone=settings.timezone,
        )

    @property
    def time_of_use(self) -> bool:
        """True when peak hours are priced apart."""
        return self.peak_rate is not None


# ---------------------------------------------------------------- settlement
@dataclass(frozen=True)
class TradeLine:
    """What settlement needs of a trade: its order (time, then creation, then id) and its quantity."""

    id: UUID
    ts: datetime
    created_at: datetime
    units_kwh: Decimal
    price_per_kwh: Decimal


def allocate_fcfs(produced_kwh: Decimal, trades: Iterable[TradeLine]) -> dict[UUID, Decimal]:
    """Delivered kWh of each of one seller's trades in one month: first come, first served.

    Trades are served in time order from the seller's metered production; once it is used up, later
    trades deliver nothing (a trade can be partly delivered). Ties in time go to the trade recorded first.
    """
    remaining = max(produced_kwh, ZERO)
    delivered: dict[UUID, Decimal] = {}
    for trade in sorted(trades, key=lambda t: (t.ts, t.created_at, str(t.id))):
        served = min(trade.units_kwh, remaining)
        delivered[trade.id] = served
        remaining -= served
    return delivered


# ---------------------------------------------------------------- the bill
@dataclass(frozen=True)
class Usage:
    """A meter's metered energy over a month; ``consumed_peak_kwh`` is the part in peak hours (ToU)."""

    consumed_kwh: Decimal = ZERO
    produced_kwh: Decimal = ZERO
    consumed_peak_kwh: Decimal = ZERO


@dataclass(frozen=True)
class SettledTrade:
    """One side of a settled trade, as a bill sees it."""

    contracted_kwh: Decimal
    delivered_kwh: Decimal
    price_per_kwh: Decimal


@dataclass(frozen=True)
class BillFigures:
    """Every quantity of a bill, unrounded."""

    kind: MeterKind
    consumed_kwh: Decimal
    produced_kwh: Decimal
    bought_kwh: Decimal
    sold_kwh: Decimal
    contracted_kwh: Decimal
    grid_used_kwh: Decimal
    grid_exported_kwh: Decimal
    grid_peak_kwh: Decimal | None
    grid_offpeak_kwh: Decimal | None
    grid_bill: Decimal
    peak_cost: Decimal | None
    offpeak_cost: Decimal | None
    grid_earning: Decimal
    p2p_cost: Decimal
    p2p_earning: Decimal
    amount_due: Decimal

    @property
    def p2p_kwh(self) -> Decimal:
        """The seed's ``p2p_kWh``: energy bought by a consumer, energy sold by a prosumer."""
        return self.sold_kwh if self.kind == "prosumer" else self.bought_kwh


def compute_bill(
    kind: MeterKind,
    usage: Usage,
    bought: Sequence[SettledTrade],
    sold: Sequence[SettledTrade],
    tariff: Tariff,
) -> BillFigures:
    """The seed's billing logic, one formula for both kinds of meter.

    ``grid_used = consumed − bought`` (never below zero), ``grid_exported = produced − sold``,
    ``amount_due = grid_used × rate + p2p_cost − grid_exported × credit − p2p_earning``. With no purchases
    this is the seed's prosumer formula (grid_used = consumed); with no production and no sales it is the
    seed's consumer formula. P2P quantities are the *delivered* ones.
    """
    bought_kwh = sum((t.delivered_kwh for t in bought), ZERO)
    sold_kwh = sum((t.delivered_kwh for t in sold), ZERO)
    grid_used = max(usage.consumed_kwh - bought_kwh, ZERO)
    grid_exported = max(usage.produced_kwh - sold_kwh, ZERO)

    peak_kwh: Decimal | None = None
    offpeak_kwh: Decimal | None = None
    peak_cost: Decimal | None = None
    offpeak_cost: Decimal | None = None
    if tariff.peak_rate is not None:
        # P2P energy offsets peak and off-peak consumption pro rata (a trade is a quantity, not a time slot).
        share = usage.consumed_peak_kwh / usage.consumed_kwh if usage.consumed_kwh > 0 else ZERO
        peak_kwh = grid_used * share
        offpeak_kwh = grid_used - peak_kwh
        peak_cost = peak_kwh * tariff.peak_rate
        offpeak_cost = offpeak_kwh * tariff.grid_rate
        grid_bill = peak_cost + offpeak_cost
    else:
        grid_bill = grid_used * tariff.grid_rate

    grid_earning = grid_exported * tariff.grid_credit_rate
    p2p_cost = sum((t.delivered_kwh * t.price_per_kwh for t in bought), ZERO)
    p2p_earning = sum((t.delivered_kwh * t.price_per_kwh for t in sold), ZERO)
    return BillFigures(
        kind=kind,
        consumed_kwh=usage.consumed_kwh,
        produced_kwh=usage.produced_kwh,
        bought_kwh=bought_kwh,
        sold_kwh=sold_kwh,
        contracted_kwh=sum((t.contracted_kwh for t in (*bought, *sold)), ZERO),
        grid_used_kwh=grid_used,
        grid_exported_kwh=grid_exported,
        grid_peak_kwh=peak_kwh,
        grid_offpeak_kwh=offpeak_kwh,
        grid_bill=grid_bill,
        peak_cost=peak_cost,
        offpeak_cost=offpeak_cost,
        grid_earning=grid_earning,
        p2p_cost=p2p_cost,
        p2p_earning=p2p_earning,
        amount_due=grid_bill + p2p_cost - grid_earning - p2p_earning,
    )


def round_money(value: Decimal) -> Decimal:
    """An amount to the cent, half away from zero: the one rounding a bill's money gets."""
    return value.quantize(_CENT, rounding=ROUND_HALF_UP)


def round_energy(value: Decimal) -> Decimal:
    """An energy for display, to the watt-hour."""
    return value.quantize(_WH, rounding=ROUND_HALF_UP)
