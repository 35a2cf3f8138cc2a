"""Billing's HTTP/RPC models: P2P trades and monthly bills (the seed's P2PTrade and Bill, schemas 5 and 6).

Requests carry exact decimals (money and energy are never floats on the way in); responses carry JSON
numbers, rounded once when the bill is made (money to 0.01, energy to 0.001 kWh).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from gridsim_shared.schemas.common import Page

__all__ = [
    "MONTH_PATTERN",
    "Bill",
    "BillPage",
    "BillQuery",
    "BillsQuery",
    "MeterRef",
    "P2PTrade",
    "P2PTradeCreate",
    "P2PTradeCreated",
    "TouSplit",
    "TradeId",
    "TradePage",
    "TradeQuery",
]

# Years 1900-2999: the calendar of Python's datetime ends at 9999 (and a month's end is the next one's
# start), and year 0 does not exist; a month outside that range is a 422, never a 500 in a service.
MONTH_PATTERN = r"^(19|2[0-9])[0-9]{2}-(0[1-9]|1[0-2])$"

Month = Annotated[
    str, Field(pattern=MONTH_PATTERN, description="billing month, YYYY-MM", examples=["2025-06"])
]
# A meter by its numeric id (1234) or its code ("MT30125", case-insensitive).
MeterRef = Annotated[
    int | str,
    Field(description="the meter's numeric id or its code", examples=["MT30125"]),
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class P2PTradeCreate(_Model):
    """The seed's ``POST /p2p-trade`` body, plus an optional simulated time (default: the clock's now)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "buyer_meter_id": "uuid1",
                    "seller_meter_id": "uuid2",
                    "units_kWh": 5.0,
                    "price_per_kWh": 5.5,
                }
            ]
        },
    )

    buyer_meter_id: MeterRef
    seller_meter_id: MeterRef
    units_kWh: Decimal = Field(gt=0, le=1_000_000, decimal_places=6, allow_inf_nan=False)
    price_per_kWh: Decimal = Field(gt=0, le=1_000_000, decimal_places=6, allow_inf_nan=False)
    timestamp: AwareDatetime | None = Field(
        default=None, description="simulated time of the trade; not in the future; default: now on the clock"
    )


class P2PTrade(BaseModel):
    """A recorded trade with its settlement: contracted kWh and the kWh actually delivered."""

    id: UUID
    buyer_meter_id: int
    buyer_meter_code: str
    seller_meter_id: int
    seller_meter_code: str
    units_kWh: float = Field(description="contracted energy (the request's units_kWh)")
    price_per_kWh: float
    timestamp: datetime = Field(description="simulated time of the trade")
    month: str
    total_price: float = Field(description="units_kWh × price_per_kWh, the contract's value")
    contracted_kWh: float
    delivered_kWh: float = Field(
        description="what the seller's metered production covers (first come, first served)"
    )
    delivered_value: float = Field(
        description="delivered_kWh × price_per_kWh: what the bills charge and credit"
    )
    settlement: Literal["settled", "provisional"] = Field(
        description="settled: fixed when the month ended and a bill was made; provisional: against production so far"
    )
    created_at: datetime


class P2PTradeCreated(BaseModel):
    """The seed's success response, plus the recorded trade."""

    status: Literal["success"] = "success"
    message: str = "Trade posted successfully"
    trade: P2PTrade


class TradeQuery(_Model):
    """Filters of ``GET /p2p-trades``."""

    meter_id: MeterRef | None = None
    role: Literal["any", "buyer", "seller"] = "any"
    month: Month | None = None
    page: Page = 1
    page_size: int = Field(default=50, ge=1, le=500)


class TradeId(_Model):
    """``GET /p2p-trades/{id}``."""

    id: UUID


class TradePage(BaseModel):
    """One page of trades, oldest first."""

    items: list[P2PTrade]
    page: int
    page_size: int
    total: int


class BillQuery(_Model):
    """``GET /bill?meter_id=&month=``."""

    meter_id: MeterRef
    month: Month


class BillsQuery(_Model):
    """``GET /bills?month=``: every billable meter (linked to an ER), by meter id."""

    month: Month
    page: Page = 1
    page_size: int = Field(default=200, ge=1, le=1000)


class TouSplit(BaseModel):
    """How a time-of-use bill priced the grid energy: peak hours at the peak rate, the rest at grid_rate."""

    timezone: str
    peak_start_hour: int
    peak_end_hour: int
    peak_rate: float
    offpeak_rate: float
    peak_kWh: float
    offpeak_kWh: float
    peak_cost: float
    offpeak_cost: float


class Bill(BaseModel):
    """The seed's Bill (schema 6) with every field present, plus the status and the breakdown behind it."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "0b6f3c7e-2f7a-4d59-9d1e-3c1f4a4b9e10",
                    "meter_id": 12,
                    "meter_code": "MT30125",
                    "type": "consumer",
                    "month": "2025-05",
                    "status": "final",
                    "period_start": "2025-05-01T00:00:00Z",
                    "period_end": "2025-06-01T00:00:00Z",
                    "currency": "INR",
                    "tariff": "flat",
                    "total_consumed_kWh": 150.0,
                    "total_produced_kWh": 0.0,
                    "p2p_kWh": 30.0,
                    "p2p_bought_kWh": 30.0,
                    "p2p_sold_kWh": 0.0,
                    "p2p_contracted_kWh": 30.0,
                    "grid_units_used_kWh": 120.0,
                    "grid_units_exported_kWh": 0.0,
                    "grid_rate": 6.0,
                    "grid_credit_rate": 3.0,
                    "tou": None,
                    "grid_bill": 720.0,
                    "grid_earning": 0.0,
                    "p2p_cost": 150.0,
                    "p2p_earning": 0.0,
                    "amount_due": 870.0,
                    "generated_at": "2025-06-01T00:05:00Z",
                }
            ]
        }
    )

    id: UUID | None = Field(description="stored final bill's id; null for a provisional bill (not stored)")
    meter_id: int
    meter_code: str
    type: Literal["consumer", "prosumer"]
    month: str
    status: Literal["final", "provisional"]
    period_start: datetime
    period_end: datetime
    currency: str
    tariff: Literal["flat", "tou"]
    total_consumed_kWh: float
    total_produced_kWh: float
    p2p_kWh: float = Field(
        description="the seed's p2p_kWh: delivered kWh bought (consumer) or sold (prosumer)"
    )
    p2p_bought_kWh: float
    p2p_sold_kWh: float
    p2p_contracted_kWh: float = Field(description="kWh contracted in this meter's trades of the month")
    grid_units_used_kWh: float
    grid_units_exported_kWh: float
    grid_rate: float
    grid_credit_rate: float
    tou: TouSplit | None
    grid_bill: float
    grid_earning: float
    p2p_cost: float
    p2p_earning: float
    amount_due: float = Field(description="negative: a refund")
    generated_at: datetime = Field(description="simulated time the bill was made")


class BillPage(BaseModel):
    """One page of a month's bills."""

    month: str
    status: Literal["final", "provisional"]
    items: list[Bill]
    page: int
    page_size: int
    total: int
