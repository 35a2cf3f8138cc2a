"""The seed's P2P trades and bills (endpoints 6 and 7), plus trade listing and a month of bills.

Thin: each route validates with the shared schema and asks the billing service over MQTT.
"""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, status

from gridsim_gateway.deps import BusDep
from gridsim_gateway.routes import json_examples
from gridsim_shared.commands import billing
from gridsim_shared.schemas.billing import (
    Bill,
    BillPage,
    BillQuery,
    BillsQuery,
    P2PTrade,
    P2PTradeCreate,
    P2PTradeCreated,
    TradeId,
    TradePage,
    TradeQuery,
)

router = APIRouter(tags=["billing"])


_TRADE = {
    "id": "5f0c8a4e-1d2b-4c3a-9e8f-7a6b5c4d3e2f",
    "buyer_meter_id": 1,
    "buyer_meter_code": "MT30124",
    "seller_meter_id": 2,
    "seller_meter_code": "MT30125",
    "units_kWh": 5.0,
    "price_per_kWh": 5.5,
    "timestamp": "2025-06-20T10:00:00Z",
    "month": "2025-06",
    "total_price": 27.5,
    "contracted_kWh": 5.0,
    "delivered_kWh": 5.0,
    "delivered_value": 27.5,
    "settlement": "provisional",
    "created_at": "2025-06-20T10:00:01Z",
}
_CREATED = {"status": "success", "message": "Trade posted successfully", "trade": _TRADE}
_PROSUMER = {
    "id": "a3c1d2e4-5f60-4a7b-8c9d-0e1f2a3b4c5d",
    "meter_id": 2,
    "meter_code": "MT30125",
    "type": "prosumer",
    "month": "2025-05",
    "status": "final",
    "period_start": "2025-05-01T00:00:00Z",
    "period_end": "2025-06-01T00:00:00Z",
    "currency": "INR",
    "tariff": "flat",
    "total_consumed_kWh": 100.0,
    "total_produced_kWh": 120.0,
    "p2p_kWh": 40.0,
    "p2p_bought_kWh": 0.0,
    "p2p_sold_kWh": 40.0,
    "p2p_contracted_kWh": 40.0,
    "grid_units_used_kWh": 100.0,
    "grid_units_exported_kWh": 80.0,
    "grid_rate": 6.0,
    "grid_credit_rate": 3.0,
    "tou": None,
    "grid_bill": 600.0,
    "grid_earning": 240.0,
    "p2p_cost": 0.0,
    "p2p_earning": 550.0,
    "amount_due": -190.0,
    "generated_at": "2025-06-01T00:05:00Z",
}
_CONSUMER = {
    **_PROSUMER,
    "id": "0b6f3c7e-2f7a-4d59-9d1e-3c1f4a4b9e10",
    "meter_id": 1,
    "meter_code": "MT30124",
    "type": "consumer",
    "total_consumed_kWh": 150.0,
    "total_produced_kWh": 0.0,
    "p2p_kWh": 30.0,
    "p2p_bought_kWh": 30.0,
    "p2p_sold_kWh": 0.0,
    "p2p_contracted_kWh": 30.0,
    "grid_units_used_kWh": 120.0,
    "grid_units_exported_kWh": 0.0,
    "grid_bill": 720.0,
    "grid_earning": 0.0,
    "p2p_cost": 150.0,
    "p2p_earning": 0.0,
    "amount_due": 870.0,
}


@router.post(
    "/p2p-trade",
    status_code=status.HTTP_201_CREATED,
    responses={
        201: {"description": "the seed's success response", "content": json_examples(success=_CREATED)}
    },
)
async def create_trade(body: P2PTradeCreate, bus: BusDep) -> P2PTradeCreated:
    """Record a P2P trade: a prosumer's meter sells `units_kWh` to another meter at `price_per_kWh`.

    Meters are named by id or code. `timestamp` is simulated time (default: now on the clock) and may not
    be in the future, nor in a month that already has a final bill for either meter. Each trade is
    published as a `p2p-trade` event. At settlement a seller delivers at most what it produced in the
    month: its trades are served first come, first served and bills use the delivered kWh.
    """
    return await bus.call(billing.CREATE_TRADE, body)


@router.get(
    "/p2p-trades",
    responses={
        200: {"content": json_examples(page={"items": [_TRADE], "page": 1, "page_size": 50, "total": 1})}
    },
)
async def list_trades(query: Annotated[TradeQuery, Query()], bus: BusDep) -> TradePage:
    """Trades, oldest first, filtered by meter (`role`: as buyer, seller or either) and month (YYYY-MM)."""
    return await bus.call(billing.LIST_TRADES, query)


@router.get("/p2p-trades/{trade_id}", responses={200: {"content": json_examples(trade=_TRADE)}})
async def get_trade(trade_id: UUID, bus: BusDep) -> P2PTrade:
    """One trade with its contracted and delivered kWh."""
    return await bus.call(billing.GET_TRADE, TradeId(id=trade_id))


@router.get(
    "/bill",
    responses={200: {"content": json_examples(prosumer=_PROSUMER, consumer=_CONSUMER)}},
)
async def get_bill(query: Annotated[BillQuery, Query()], bus: BusDep) -> Bill:
    """A meter's bill for a month (the seed's formulas for consumers and prosumers).

    A month that has ended gets a final bill, stored once and returned unchanged afterwards; the running
    month gets a provisional bill (`status: provisional`, `id: null`). A negative `amount_due` is a refund.
    Rates come from the tariff (`GRIDSIM_BILLING__*`); with a time-of-use tariff, `tou` shows the split.
    """
    return await bus.call(billing.BILL, query)


@router.get("/bills")
async def list_bills(query: Annotated[BillsQuery, Query()], bus: BusDep) -> BillPage:
    """A month's bills for every meter linked to an energy resource, by meter id, one page at a time."""
    return await bus.call(billing.BILLS, query)
