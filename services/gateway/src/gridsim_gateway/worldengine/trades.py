"""World Engine P2P trades (§1.6) on billing's trades: recorded by billing's ``create_trade``, so they are
settled against the seller's metered production and appear on both meters' bills (the World Engine only
recorded them). The meters must exist; ``buyer_meter_id``/``seller_meter_id`` are answered as meter codes
and trade ids are billing's UUIDs."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, field_validator

from gridsim_gateway.deps import BusDep
from gridsim_gateway.worldengine.common import body_of, call, fetch, query_of, reading, validate
from gridsim_gateway.worldengine.entities import P2P_TRADE
from gridsim_gateway.worldengine.envelope import StrapiNotFound, ok
from gridsim_gateway.worldengine.sqlquery import find, find_one
from gridsim_shared.commands import billing

__all__ = ["router"]

router = APIRouter(tags=["World Engine: P2P trades"])

TRADE_NOT_FOUND = "P2P Trade not found"


class TradeBody(BaseModel):
    """``{"data": {buyer_meter_id, seller_meter_id, units_kWh, price_per_kWh}}`` with the plugin's limits."""

    model_config = ConfigDict(extra="ignore")

    buyer_meter_id: str
    seller_meter_id: str
    units_kWh: float
    price_per_kWh: float

    @field_validator("buyer_meter_id", "seller_meter_id", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) else value

    @field_validator("units_kWh")
    @classmethod
    def _units(cls, value: float) -> float:
        if not 0.1 < value < 1:
            msg = "units_kWh must be between 0.1 and 1"
            raise ValueError(msg)
        return value

    @field_validator("price_per_kWh")
    @classmethod
    def _price(cls, value: float) -> float:
        if not value > 0.01:
            msg = "price_per_kWh must be greater than 0.01"
            raise ValueError(msg)
        return value


@router.post("/p2p-trades", status_code=201)
async def create_trade(request: Request, bus: BusDep) -> JSONResponse:
    """Record a P2P trade between two gridsim meters (ids or codes), at the clock's current time."""
    body = validate(TradeBody, await body_of(request, wrapped=True))
    created = await call(
        bus,
        billing.CREATE_TRADE,
        {
            "buyer_meter_id": body.buyer_meter_id,
            "seller_meter_id": body.seller_meter_id,
            # Exact decimals on the way in, as billing wants them.
            "units_kWh": repr(body.units_kWh),
            "price_per_kWh": repr(body.price_per_kWh),
        },
    )
    async with reading(request) as conn:
        trade = await find_one(conn, P2P_TRADE, str(created.trade.id))
    return ok("P2P Trade created successfully", trade, status=201)


@router.get("/p2p-trades")
async def list_trades(request: Request) -> JSONResponse:
    """Trades with Strapi's pagination, sort and filters (e.g. ``filters[buyer_meter_id][$eq]=MTR-0001``)."""
    async with reading(request) as conn:
        page = await find(conn, P2P_TRADE, query_of(request))
    return ok("P2P Trades fetched successfully", page)


@router.get("/p2p-trades/{trade_id}")
async def get_trade(trade_id: str, request: Request) -> JSONResponse:
    """One trade by its id."""
    trade = await fetch(request, P2P_TRADE, trade_id.strip().lower(), StrapiNotFound(TRADE_NOT_FOUND))
    return ok("P2P Trade fetched successfully", trade)
