"""Feasibility's HTTP/RPC models: the seed's "Transformer Feasibility Simulation Server" bodies.

Request and response fields are the seed's, to the letter (``requested_consumption_kW``,
``assigned_transformer``, ``spare_consumption_capacity`` ...). Fields the seed does not name are
additive (``connection_id``, ``limiting``, the measured peak) and documented in ``docs/feasibility.md``.
Transformer ids are the grid's integer node ids (the same rows meters belong to), not UUIDs.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
)

from gridsim_shared.schemas.common import Offset
from gridsim_shared.schemas.meters import Capacity, Name, Place

__all__ = [
    "CheckResult",
    "Connection",
    "ConnectionApproved",
    "ConnectionId",
    "ConnectionPage",
    "ConnectionQuery",
    "ConnectionRejected",
    "ConnectionRequest",
    "ConnectionResult",
    "FeasibilityRequest",
    "Feasible",
    "NearestTransformer",
    "NotFeasible",
    "Transformer",
    "TransformerCreate",
    "TransformerGet",
    "TransformerPage",
    "TransformerQuery",
    "TransformerRef",
]

# Rounded to the watt: finer values mean nothing for a connection, and subnormal floats (1e-320) would
# underflow in PostgreSQL's arithmetic instead of being refused or ignored.
Kilowatts = Annotated[
    float, Field(ge=0, le=1_000_000, allow_inf_nan=False), AfterValidator(lambda kw: round(kw, 3))
]
Latitude = Annotated[float, Field(ge=-90, le=90, allow_inf_nan=False, examples=[37.7749])]
Longitude = Annotated[float, Field(ge=-180, le=180, allow_inf_nan=False, examples=[-122.4194])]
Limiting = Literal["consumption", "production", "none_in_radius"]
DecidedOn = Literal["nameplate", "measured"]
# A transformer by its grid node id (12) or its code / name ("tx-101", "TX-101").
TransformerRef = Annotated[int | str, Field(description="the transformer's node id, code or name")]


def _spellings(name: str) -> AliasChoices:
    # The seed spells the unit kW, once KW; accept those and the all-lower-case spelling.
    return AliasChoices(name, name.replace("_kW", "_KW"), name.lower())


class FeasibilityRequest(BaseModel):
    """The seed's ``POST /feasibility-check`` body (and the base of ``POST /connection``)."""

    model_config = ConfigDict(
        extra="forbid",
        populate_by_name=True,
        json_schema_extra={
            "examples": [
                {
                    "type": "consumer",
                    "requested_consumption_kW": 10.0,
                    "requested_production_kW": 0.0,
                    "latitude": 37.776,
                    "longitude": -122.42,
                }
            ]
        },
    )

    type: Literal["consumer", "prosumer"]
    requested_consumption_kW: Kilowatts = Field(validation_alias=_spellings("requested_consumption_kW"))
    requested_production_kW: Kilowatts = Field(
        default=0.0,
        validation_alias=_spellings("requested_production_kW"),
        description="solar export capacity; only a prosumer may ask for more than 0",
    )
    latitude: Latitude
    longitude: Longitude

    @field_validator("requested_production_kW")
    @classmethod
    def _consumers_do_not_inject(cls, value: float, info: ValidationInfo) -> float:
        if value > 0 and info.data.get("type") == "consumer":
            msg = "a consumer cannot inject power: send 0 (or omit it), or make the request type 'prosumer'"
            raise ValueError(msg)
        return value


class ConnectionRequest(FeasibilityRequest):
    """The seed's ``POST /connection`` body, plus ``create_meter`` to put the connection on the live grid."""

    model_config = ConfigDict(
        extra="forbid",
        populate_by_name=True,
        json_schema_extra={
            "examples": [
                {
                    "type": "prosumer",
                    "requested_consumption_kW": 15.0,
                    "requested_production_kW": 8.0,
                    "latitude": 37.7749,
                    "longitude": -122.4194,
                }
            ]
        },
    )

    create_meter: bool = Field(
        default=False,
        description="when approved, also create an energy resource and a smart meter under the transformer, "
        "so the simulation starts producing readings for the new connection",
    )


class NearestTransformer(BaseModel):
    """The transformer that would take the request: the seed's five fields, then additive detail."""

    id: int = Field(examples=[101])
    name: str = Field(examples=["TX-101"])
    distance_meters: float = Field(examples=[310.5])
    spare_consumption_capacity: float = Field(
        examples=[215.0],
        description="capacity_kVA × consumption share − connected (or measured) consumption, kW",
    )
    spare_production_capacity: float = Field(
        examples=[65.0],
        description="capacity_kVA × production share − connected (or measured) production, kW",
    )
    code: str
    capacity_kVA: float
    connected_consumption_kW: float
    connected_production_kW: float
    measured_peak_consumption_kW: float | None = Field(
        description="highest hourly mean consumption of the transformer's meters in the measured window "
        "(null: no readings yet)"
    )
    measured_peak_production_kW: float | None
    measured_spare_consumption_capacity: float | None = Field(
        description="capacity_kVA × consumption share − measured peak consumption (null: no readings)"
    )
    measured_spare_production_capacity: float | None
    decided_on: DecidedOn = Field(
        description="which load the decision compared: booked (nameplate) or measured"
    )


class Feasible(BaseModel):
    """The seed's feasible check response."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "status": "feasible",
                    "nearest_transformer": {
                        "id": 101,
                        "name": "TX-101",
                        "distance_meters": 310.5,
                        "spare_consumption_capacity": 215.0,
                        "spare_production_capacity": 65.0,
                    },
                }
            ]
        }
    )

    status: Literal["feasible"] = "feasible"
    nearest_transformer: NearestTransformer


class NotFeasible(BaseModel):
    """The seed's failure response, plus which check stopped it and how far "nearby" reached."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"status": "not_feasible", "reason": "No transformer nearby can support this load safely"}
            ]
        }
    )

    status: Literal["not_feasible"] = "not_feasible"
    reason: str
    limiting: Limiting
    radius_m: float
    transformers_in_radius: int


CheckResult = Annotated[Feasible | NotFeasible, Field(discriminator="status")]


class ConnectionApproved(BaseModel):
    """The seed's success response, plus the connection's id and the created meter (when asked)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "status": "approved",
                    "assigned_transformer": "TX-101",
                    "transformer_id": 101,
                    "message": "Connection successfully created and linked to transformer TX-101",
                }
            ]
        }
    )

    status: Literal["approved"] = "approved"
    assigned_transformer: str
    transformer_id: int
    message: str
    connection_id: UUID
    distance_meters: float
    meter_id: int | None = None
    meter_code: str | None = None
    er_id: int | None = None


class ConnectionRejected(BaseModel):
    """The seed's rejection response (either reason), plus the connection's id and which check failed."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"status": "rejected", "reason": "Transformer overloaded for consumption"},
                {"status": "rejected", "reason": "Transformer cannot support additional solar injection"},
            ]
        }
    )

    status: Literal["rejected"] = "rejected"
    reason: str
    connection_id: UUID
    limiting: Limiting


ConnectionResult = Annotated[ConnectionApproved | ConnectionRejected, Field(discriminator="status")]


class Connection(BaseModel):
    """A stored connection request (the seed's Connection table)."""

    id: UUID
    type: Literal["consumer", "prosumer"]
    requested_consumption_kW: float
    requested_production_kW: float
    latitude: float
    longitude: float
    status: Literal["pending", "approved", "rejected"]
    reason: str | None
    limiting: Limiting | None
    transformer_id: int | None
    transformer_name: str | None
    distance_meters: float | None
    decided_on: DecidedOn
    meter_id: int | None
    er_id: int | None
    created_at: datetime


class ConnectionId(BaseModel):
    """``GET /connection/{id}``."""

    id: UUID


class ConnectionQuery(BaseModel):
    """``GET /connections`` filters and paging, newest first."""

    model_config = ConfigDict(extra="forbid")

    status: Literal["pending", "approved", "rejected"] | None = None
    transformer_id: int | None = Field(default=None, ge=1)
    limit: int = Field(default=100, ge=1, le=1000)
    offset: Offset = 0


class ConnectionPage(BaseModel):
    """One page of connections and the total matching the filters."""

    connections: list[Connection]
    total: int
    limit: int
    offset: int


class TransformerCreate(BaseModel):
    """``POST /admin/transformers``: the seed's Transformer fields; the node goes under a feeder."""

    model_config = ConfigDict(
        extra="forbid",
        populate_by_name=True,
        json_schema_extra={
            "examples": [
                {"name": "TX-101", "capacity_kVA": 500.0, "latitude": 37.7765, "longitude": -122.4172}
            ]
        },
    )

    # The same bounds as meter-sim's grid nodes (GridNodeCreate), which this request becomes.
    name: Name
    code: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$",
        description="topic id of the transformer; default: made from the name (TX-101 → tx-101)",
    )
    capacity_kVA: Capacity = Field(validation_alias=_spellings("capacity_kVA"))
    city: Place = "San Francisco"
    latitude: Latitude
    longitude: Longitude
    parent_id: int | None = Field(
        default=None, ge=1, description="the feeder it hangs from; default: the nearest feeder"
    )
    connected_consumption_kW: Kilowatts = Field(
        default=0.0, validation_alias=_spellings("connected_consumption_kW")
    )
    connected_production_kW: Kilowatts = Field(
        default=0.0, validation_alias=_spellings("connected_production_kW")
    )


class Transformer(BaseModel):
    """A transformer as the feasibility view shows it: the seed's fields and its spare capacities."""

    id: int
    code: str
    name: str
    capacity_kVA: float | None = Field(description="null: not assignable until it has a capacity")
    city: str | None
    latitude: float | None
    longitude: float | None
    connected_consumption_kW: float
    connected_production_kW: float
    spare_consumption_capacity: float | None
    spare_production_capacity: float | None
    parent_id: int | None
    created_at: datetime
    measured_peak_consumption_kW: float | None = Field(
        default=None, description="highest hourly mean consumption in the measured window (single reads only)"
    )
    measured_peak_production_kW: float | None = None


class TransformerQuery(BaseModel):
    """``GET /admin/transformers`` filters and paging, by id."""

    model_config = ConfigDict(extra="forbid")

    city: str | None = None
    limit: int = Field(default=100, ge=1, le=10_000)
    offset: Offset = 0


class TransformerPage(BaseModel):
    """One page of transformers and the total matching the filters."""

    transformers: list[Transformer]
    total: int
    limit: int
    offset: int


class TransformerGet(BaseModel):
    """``GET /admin/transformers/{id}``."""

    ref: TransformerRef
