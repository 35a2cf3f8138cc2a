"""Settlement and bills: the domain's pure rules applied to what the repository reads.

A month's P2P trades are settled per seller (first come, first served against its metered production).
Until a month is closed, settlement and bills are computed on every request (provisional) and nothing is
written. When the month closes, the month closer (:mod:`gridsim_billing.closing`) settles its sellers for
good (delivered kWh written to their trades) and stores each meter's final bill once; reads then return
them unchanged.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from uuid import UUID
from zoneinfo import ZoneInfo

from gridsim_billing import repository as repo
from gridsim_billing.domain import (
    ZERO,
    BillFigures,
    MeterKind,
    Period,
    SettledTrade,
    Tariff,
    TradeLine,
    Usage,
    allocate_fcfs,
    compute_bill,
    month_period,
    rollup_resolution,
    round_energy,
    round_money,
)
from gridsim_billing.repository import BillRecord, Conn, MeterRow, TradeRow
from gridsim_shared.schemas.billing import Bill, P2PTrade, TouSplit

__all__ = ["Books", "to_bill"]


@dataclass(frozen=True)
class Books:
    """Billing at one simulated instant, under one tariff."""

    tariff: Tariff
    now: datetime

    @property
    def tz(self) -> ZoneInfo:
        """The zone of billing months and peak hours."""
        return ZoneInfo(self.tariff.timezone)

    async def usage(self, conn: Conn, meter_ids: list[int], period: Period) -> dict[int, Usage]:
        """Metered energy of ``meter_ids`` over ``period`` from the finest rollup the tariff needs."""
        resolution = rollup_resolution(period, self.tz, time_of_use=self.tariff.time_of_use)
        return await repo.usage(
            conn,
            meter_ids,
            period,
            resolution,
            timezone=self.tariff.timezone,
            peak_hours=(self.tariff.peak_start_hour, self.tariff.peak_end_hour),
        )

    # ------------------------------------------------------------ settlement
    async def deliveries(
        self, conn: Conn, period: Period, seller_ids: set[int], *, persist: bool
    ) -> dict[UUID, Decimal]:
        """Delivered kWh of every trade of ``seller_ids`` in ``period``'s month.

        Settled sellers keep what was written; the others are allocated now against their production
        (and written, with a settlement record, when ``persist``: the month has ended).
        """
        if not seller_ids:
            return {}
        sellers = sorted(seller_ids)
        settled = await repo.settled_sellers(conn, period.month, sellers)
        trades = await repo.trades_of_sellers(conn, period.month, sellers)
        delivered = {
            t.id: t.delivered_kwh
            for t in trades
            if t.seller_meter_id in settled and t.delivered_kwh is not None
        }
        open_sellers = [s for s in sellers if s not in settled]
        if not open_sellers:
            return delivered
        production = await self.usage(conn, open_sellers, period)
        produced = {s: production[s].produced_kwh if s in production else ZERO for s in open_sellers}
        open_trades = [t for t in trades if t.seller_meter_id not in settled]
        by_seller: dict[int, list[TradeLine]] = defaultdict(list)
        for t in open_trades:
            by_seller[t.seller_meter_id].append(_line(t))
        allocated: dict[UUID, Decimal] = {}
        for seller_id, lines in by_seller.items():
            allocated |= allocate_fcfs(produced[seller_id], lines)
        if persist:
            await repo.settle(conn, period.month, produced, open_trades, allocated)
        return delivered | allocated

    async def trade_views(self, conn: Conn, rows: list[TradeRow]) -> list[P2PTrade]:
        """Trades as the API shows them: contracted and delivered kWh (provisional until settled)."""
        pending: dict[str, set[int]] = defaultdict(set)
        for row in rows:
            if row.delivered_kwh is None:
                pending[row.month].add(row.seller_meter_id)
        delivered: dict[UUID, Decimal] = {}
        for month, sellers in pending.items():
            delivered |= await self.deliveries(conn, month_period(month, self.tz), sellers, persist=False)
        return [_trade_view(row, delivered) for row in rows]

    # ------------------------------------------------------------ bills
    async def bills(
        self, conn: Conn, meters: list[MeterRow], period: Period, *, final: bool
    ) -> list[BillRecord]:
        """Bills of ``meters`` for ``period``: stored finals (made now when missing) or provisional ones.

        A final run must hold the month's exclusive lock (see :func:`repository.lock_month`).
        """
        stored = await repo.final_bills(conn, period.month, [m.id for m in meters]) if final else {}
        missing = [m for m in meters if m.id not in stored]
        if missing:
            made = await self._make(conn, missing, period, final=final)
            if not final:
                return made
            await repo.insert_bills(conn, made)
            stored = await repo.final_bills(conn, period.month, [m.id for m in meters])
        return [stored[m.id] for m in meters]

    async def _make(
        self, conn: Conn, meters: list[MeterRow], period: Period, *, final: bool
    ) -> list[BillRecord]:
        ids = [m.id for m in meters]
        trades = await repo.trades_touching(conn, period.month, ids)
        delivered = await self.deliveries(conn, period, {t.seller_meter_id for t in trades}, persist=final)
        usage = await self.usage(conn, ids, period)
        bought: dict[int, list[SettledTrade]] = defaultdict(list)
        sold: dict[int, list[SettledTrade]] = defaultdict(list)
        for t in trades:
            side = SettledTrade(t.units_kwh, delivered.get(t.id, ZERO), t.price_per_kwh)
            bought[t.buyer_meter_id].append(side)
            sold[t.seller_meter_id].append(side)
        records = []
        for meter in meters:
            kind: MeterKind = "prosumer" if meter.er_type == "prosumer" else "consumer"
            figures = compute_bill(
                kind, usage.get(meter.id, Usage()), bought[meter.id], sold[meter.id], self.tariff
            )
            records.append(self._record(meter, kind, period, figures, final=final))
        return records

    def _record(
        self, meter: MeterRow, kind: MeterKind, period: Period, figures: BillFigures, *, final: bool
    ) -> BillRecord:
        tariff = self.tariff
        return BillRecord(
            id=None,
            meter_id=meter.id,
            meter_code=meter.code,
            type=kind,
            month=period.month,
            status="final" if final else "provisional",
            period_start=period.start,
            period_end=period.end,
            currency=tariff.currency,
            tariff="tou" if tariff.time_of_use else "flat",
            total_consumed_kwh=figures.consumed_kwh,
            total_produced_kwh=figures.produced_kwh,
            p2p_kwh=figures.p2p_kwh,
            p2p_bought_kwh=figures.bought_kwh,
            p2p_sold_kwh=figures.sold_kwh,
            p2p_contracted_kwh=figures.contracted_kwh,
            grid_units_used_kwh=figures.grid_used_kwh,
            grid_units_exported_kwh=figures.grid_exported_kwh,
            grid_peak_kwh=figures.grid_peak_kwh,
            grid_offpeak_kwh=figures.grid_offpeak_kwh,
            grid_rate=tariff.grid_rate,
            grid_credit_rate=tariff.grid_credit_rate,
            tou_peak_rate=tariff.peak_rate,
            tou_peak_start_hour=tariff.peak_start_hour if tariff.time_of_use else None,
            tou_peak_end_hour=tariff.peak_end_hour if tariff.time_of_use else None,
            # The one rounding of each amount, from the exact figures.
            grid_bill=round_money(figures.grid_bill),
            grid_peak_cost=_round_or_none(figures.peak_cost),
            grid_offpeak_cost=_round_or_none(figures.offpeak_cost),
            grid_earning=round_money(figures.grid_earning),
            p2p_cost=round_money(figures.p2p_cost),
            p2p_earning=round_money(figures.p2p_earning),
            amount_due=round_money(figures.amount_due),
            generated_at=self.now,
        )


def to_bill(record: BillRecord, timezone: str) -> Bill:
    """A bill record as the API's Bill (energies to the Wh, money as stored)."""
    tou = None
    if record.tariff == "tou":
        tou = TouSplit(
            timezone=timezone,
            peak_start_hour=record.tou_peak_start_hour or 0,
            peak_end_hour=record.tou_peak_end_hour or 0,
            peak_rate=float(record.tou_peak_rate or ZERO),
            offpeak_rate=float(record.grid_rate),
            peak_kWh=_kwh(record.grid_peak_kwh or ZERO),
            offpeak_kWh=_kwh(record.grid_offpeak_kwh or ZERO),
            peak_cost=float(record.grid_peak_cost or ZERO),
            offpeak_cost=float(record.grid_offpeak_cost or ZERO),
        )
    return Bill(
        id=record.id,
        meter_id=record.meter_id,
        meter_code=record.meter_code,
        type="prosumer" if record.type == "prosumer" else "consumer",
        month=record.month,
        status="final" if record.status == "final" else "provisional",
        period_start=record.period_start,
        period_end=record.period_end,
        currency=record.currency,
        tariff="tou" if record.tariff == "tou" else "flat",
        total_consumed_kWh=_kwh(record.total_consumed_kwh),
        total_produced_kWh=_kwh(record.total_produced_kwh),
        p2p_kWh=_kwh(record.p2p_kwh),
        p2p_bought_kWh=_kwh(record.p2p_bought_kwh),
        p2p_sold_kWh=_kwh(record.p2p_sold_kwh),
        p2p_contracted_kWh=_kwh(record.p2p_contracted_kwh),
        grid_units_used_kWh=_kwh(record.grid_units_used_kwh),
        grid_units_exported_kWh=_kwh(record.grid_units_exported_kwh),
        grid_rate=float(record.grid_rate),
        grid_credit_rate=float(record.grid_credit_rate),
        tou=tou,
        grid_bill=float(record.grid_bill),
        grid_earning=float(record.grid_earning),
        p2p_cost=float(record.p2p_cost),
        p2p_earning=float(record.p2p_earning),
        amount_due=float(record.amount_due),
        generated_at=record.generated_at,
    )


def _line(row: TradeRow) -> TradeLine:
    return TradeLine(row.id, row.ts, row.created_at, row.units_kwh, row.price_per_kwh)


def _trade_view(row: TradeRow, delivered: dict[UUID, Decimal]) -> P2PTrade:
    settled = row.delivered_kwh is not None
    served = row.delivered_kwh if row.delivered_kwh is not None else delivered.get(row.id, ZERO)
    return P2PTrade(
        id=row.id,
        buyer_meter_id=row.buyer_meter_id,
        buyer_meter_code=row.buyer_meter_code,
        seller_meter_id=row.seller_meter_id,
        seller_meter_code=row.seller_meter_code,
        units_kWh=float(row.units_kwh),
        price_per_kWh=float(row.price_per_kwh),
        timestamp=row.ts,
        month=row.month,
        total_price=float(round_money(row.units_kwh * row.price_per_kwh)),
        contracted_kWh=float(row.units_kwh),
        delivered_kWh=_kwh(served),
        delivered_value=float(round_money(served * row.price_per_kwh)),
        settlement="settled" if settled else "provisional",
        created_at=row.created_at,
    )


def _kwh(value: Decimal) -> float:
    return float(round_energy(value))


def _round_or_none(value: Decimal | None) -> Decimal | None:
    return None if value is None else round_money(value)
