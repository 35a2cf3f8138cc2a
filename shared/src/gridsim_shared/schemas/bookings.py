"""RPC models of the meter-sim commands feasibility sends: booking a connection's load on a transformer
(with the household it creates) and creating a transformer with the load already connected to it.

meter-sim owns the grid, meters, energy resources and DERs, including a transformer's booked loads
(``connected_*``); feasibility decides *where* a request goes and asks meter-sim to book it there, all in
one of meter-sim's transactions (issue 13: no service writes another's tables).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from gridsim_shared.schemas.meters import GridNodeCreate

__all__ = [
    "BookConnection",
    "BookedHousehold",
    "ConnectionBooked",
    "HouseholdDer",
    "NewHousehold",
    "TransformerCreateBooked",
    "TransformerLoad",
]

Kw = Annotated[float, Field(ge=0, le=1e9)]
Share = Annotated[float, Field(gt=0, le=10)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HouseholdDer(_Request):
    """One appliance of the household, sized by feasibility from the request."""

    appliance_id: int = Field(ge=1)
    quantity: int = Field(ge=1)
    capacity_kw: float | None = Field(default=None, ge=0)


class NewHousehold(_Request):
    """The energy resource, its DERs and the linked meter a granted connection creates."""

    er_name: str = Field(min_length=1, max_length=200)
    kind: Literal["consumer", "prosumer"]
    meter_code: str = Field(min_length=1, max_length=64)
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)
    max_capacity_kw: float | None = Field(default=None, ge=0)
    ders: list[HouseholdDer]


class BookConnection(_Request):
    """``book_connection``: add a request's loads to a transformer if, at this instant, they still fit its
    shares of capacity (booked loads raised to ``measured_*`` first); with ``household``, create it under
    that transformer in the same transaction. Nothing is written when it does not fit."""

    transformer_id: int = Field(ge=1)
    consumption_kw: Kw
    production_kw: Kw = 0.0
    measured_consumption_kw: Kw = 0.0
    measured_production_kw: Kw = 0.0
    consumption_share: Share
    production_share: Share
    household: NewHousehold | None = None


class TransformerLoad(BaseModel):
    """A transformer's identity, rating and booked loads after the booking."""

    id: int
    code: str
    name: str
    capacity_kva: float
    consumption_kw: float
    production_kw: float


class BookedHousehold(BaseModel):
    """What a booking created."""

    er_id: int
    meter_id: int
    meter_code: str


class ConnectionBooked(BaseModel):
    """The booking's outcome: the transformer's new loads, or None when the request no longer fits."""

    transformer: TransformerLoad | None
    household: BookedHousehold | None = None


class TransformerCreateBooked(GridNodeCreate):
    """``create_transformer``: a transformer (``level`` must be ``transformer``) whose already-connected
    loads are set in the same transaction as the node is created."""

    connected_consumption_kW: Kw = 0.0
    connected_production_kW: Kw = 0.0
