"""Request and response models of meter-sim's entities: energy resources (ERs), meters, links, grid nodes
and the appliance catalogue. Defined once; the gateway validates HTTP bodies with them and meter-sim
validates the same bodies again when they arrive over MQTT.

Field names follow the user's seed (``meter_id`` is a meter's *code*, ``appliance_type`` the ER's list of
appliance names, ``load_factor`` the consumption factor K). References to a meter accept its integer id
or its code everywhere; references to a grid node accept its integer id or its code.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    StringConstraints,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)

from gridsim_shared.ids import SEGMENT_PATTERN
from gridsim_shared.schemas.common import Offset

__all__ = [
    "METER_CODE_PATTERN",
    "Appliance",
    "ApplianceCount",
    "ApplianceOut",
    "Deleted",
    "Er",
    "ErCreate",
    "ErKind",
    "ErListRequest",
    "ErPatch",
    "ErRef",
    "ErType",
    "ErUpdate",
    "GridLevel",
    "GridNode",
    "GridNodeCreate",
    "GridNodePatch",
    "GridNodeUpdate",
    "GridRef",
    "GridTree",
    "GridTreeNode",
    "GridTreeRequest",
    "LinkRequest",
    "Meter",
    "MeterCreate",
    "MeterListRequest",
    "MeterPatch",
    "MeterRef",
    "MeterRefRequest",
    "MeterTreeNode",
    "MeterType",
    "MeterUpdate",
    "NodeRefRequest",
    "UnlinkRequest",
]

METER_CODE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$"

# ----------------------------------------------------------------------------------------- field types


def _lower_enum(value: Any) -> Any:
    # The World Engine spelled enums in capitals (CONSUMER, PROSUMER); "apartment complex" has a space.
    if isinstance(value, str):
        return value.strip().lower().replace(" ", "_").replace("-", "_")
    return value


_METER_TYPES = {
    "1-ph": "1-Ph",
    "1ph": "1-Ph",
    "one-ph": "1-Ph",
    "3-ph": "3-Ph",
    "3ph": "3-Ph",
    "three-ph": "3-Ph",
    "smart": "Smart",
    "net-meter": "net-meter",
    "netmeter": "net-meter",
    "net meter": "net-meter",
}


def _meter_type(value: Any) -> Any:
    # The seed's spelling (1-Ph, 3-Ph, Smart, net-meter) is canonical; the World Engine's ONE-PH, THREE-PH,
    # SMART and NETMETER are accepted too.
    if isinstance(value, str):
        return _METER_TYPES.get(value.strip().lower().replace("_", "-"), value)
    return value


def _grid_level(value: Any) -> Any:
    # A substation plays the feeder's role in the tree (the World Engine's seed world has substations).
    value = _lower_enum(value)
    return "feeder" if value == "substation" else value


ErType = Annotated[Literal["consumer", "prosumer"], BeforeValidator(_lower_enum)]
ErKind = Annotated[
    Literal["home", "apartment_complex", "office", "shop", "industrial"], BeforeValidator(_lower_enum)
]
Profile = Annotated[Literal["realistic", "flat"], BeforeValidator(_lower_enum)]
MeterType = Annotated[Literal["1-Ph", "3-Ph", "Smart", "net-meter"], BeforeValidator(_meter_type)]
GridLevel = Annotated[Literal["utility", "feeder", "transformer"], BeforeValidator(_grid_level)]

MeterCode = Annotated[str, StringConstraints(pattern=METER_CODE_PATTERN)]
NodeCode = Annotated[str, StringConstraints(pattern=SEGMENT_PATTERN)]


def _reference(pattern: str, what: str) -> Any:
    """A check for a reference: an integer id or a code. One validator, so an error names the field,
    not a union arm (``parent_id``, not ``parent_id.int``)."""
    code = re.compile(pattern)

    def check(value: Any) -> int | str:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and code.fullmatch(value):
            return value
        msg = f"must be the {what}'s integer id or its code (matching {pattern})"
        raise ValueError(msg)

    return check


def _reference_schema(pattern: str) -> WithJsonSchema:
    return WithJsonSchema({"anyOf": [{"type": "integer"}, {"type": "string", "pattern": pattern}]})


# An integer is the meter's id; a string is its code (a string of digits is tried as an id first).
MeterRef = Annotated[
    int | str,
    PlainValidator(_reference(METER_CODE_PATTERN, "meter")),
    _reference_schema(METER_CODE_PATTERN),
]
GridRef = Annotated[
    int | str, PlainValidator(_reference(SEGMENT_PATTERN, "grid node")), _reference_schema(SEGMENT_PATTERN)
]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Place = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Pincode = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9 -]{0,11}$")]
Latitude = Annotated[float, Field(ge=-90, le=90, allow_inf_nan=False)]
Longitude = Annotated[float, Field(ge=-180, le=180, allow_inf_nan=False)]
# K: 0 is OFF, (0, 1] scales down, > 1 amplifies (seed). 100 is far beyond any sensible amplification.
LoadFactor = Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)]
# kVA. The smallest distribution transformers are 5 kVA; 0.1 leaves room for toy grids while keeping
# subnormal ratings (1e-320) out, which underflow in PostgreSQL's arithmetic.
Capacity = Annotated[float, Field(ge=0.1, le=100_000, allow_inf_nan=False)]
Count = Annotated[int, Field(ge=1, le=10_000)]


class _Request(BaseModel):
    """Request bodies refuse unknown fields: a misspelt ``lattitude`` is a 422, not silently dropped."""

    model_config = ConfigDict(extra="forbid")


class _Location(_Request):
    city: Place | None = None
    state: Place | None = None
    latitude: Latitude | None = None
    # validate_default: the pair check below runs (and names `longitude`) when only latitude is given.
    longitude: Longitude | None = Field(default=None, validate_default=True)

    @field_validator("longitude")
    @classmethod
    def _both_coordinates(cls, value: float | None, info: ValidationInfo) -> float | None:
        if "latitude" not in info.data:  # latitude itself was invalid: that error is reported
            return value
        if (info.data["latitude"] is None) != (value is None):
            missing = "longitude" if value is None else "latitude"
            msg = f"latitude and longitude go together: {missing} is missing"
            raise ValueError(msg)
        return value


def _not_null(value: Any) -> Any:
    """PATCH bodies: an absent field is kept as it is, but these fields may not be set to null."""
    if value is None:
        msg = "may not be null"
        raise ValueError(msg)
    return value


def _one_consumption_factor(value: float | None, info: ValidationInfo) -> float | None:
    if value is not None and info.data.get("load_factor") is not None:
        msg = "give load_factor or load_factor_consumption, not both (they are the same K)"
        raise ValueError(msg)
    return value


# ----------------------------------------------------------------------------------- appliance catalogue


class Appliance(BaseModel):
    """One entry of the appliance catalogue (the seed's base kWh chart plus extras)."""

    id: int
    name: str
    aliases: list[str]
    power_w: float
    base_kwh_per_min: float = Field(description="energy per minute at rated power (the seed's chart)")
    role: Literal["consumption", "production"]
    profile: str = Field(description="the time-of-day shape the realistic profile gives it")
    power_factor: float
    description: str


# ---------------------------------------------------------------------------------- energy resources


class ApplianceCount(_Request):
    """Some identical appliances of an ER: a name (or alias) from the catalogue and how many."""

    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
    count: Count = 1
    switched_on: bool = True
    # A solar panel group's orientation (ignored by consumption appliances); null: 20° facing the equator.
    tilt_deg: float | None = Field(default=None, ge=0, le=90, allow_inf_nan=False)
    azimuth_deg: float | None = Field(default=None, ge=0, lt=360, allow_inf_nan=False)


class ErCreate(_Location):
    """The seed's ER body plus kind, profile, location and appliances with counts.

    ``appliance_type`` is the seed's list of names (a name given three times counts three); ``appliances``
    gives counts directly. Both may be used; they add up.
    """

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"name": "Viraj's Home", "type": "prosumer", "appliance_type": ["Refrigerator", "Oven"]},
                {
                    "name": "Flores residence",
                    "type": "prosumer",
                    "kind": "home",
                    "appliances": [
                        {"name": "Ceiling Fan", "count": 3},
                        {"name": "Solar Panel", "count": 4},
                        {"name": "Refrigerator"},
                    ],
                    "city": "San Francisco",
                    "state": "CA",
                    "latitude": 37.7599,
                    "longitude": -122.4148,
                },
            ]
        }
    )

    name: Name
    type: ErType
    kind: ErKind = "home"
    profile: Profile = Field(
        default="realistic", description="'flat' reproduces the seed's formula (activity = 1) exactly"
    )
    appliance_type: list[Annotated[str, StringConstraints(max_length=100)]] = Field(
        default_factory=list, max_length=1000
    )
    appliances: list[ApplianceCount] = Field(default_factory=list, max_length=100)


class ErPatch(_Location):
    """A partial ER update; a given appliance list (either field) replaces the old one."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "Viraj's Home",
                    "type": "prosumer",
                    "appliance_type": ["Refrigerator", "Oven", "Solar Panel"],
                }
            ]
        }
    )

    name: Name | None = None
    type: ErType | None = None
    kind: ErKind | None = None
    profile: Profile | None = None
    appliance_type: list[Annotated[str, StringConstraints(max_length=100)]] | None = Field(
        default=None, max_length=1000
    )
    appliances: list[ApplianceCount] | None = Field(default=None, max_length=100)

    _not_null = field_validator(
        "name", "type", "kind", "profile", "appliance_type", "appliances", mode="before"
    )(_not_null)


class ErUpdate(ErPatch):
    """``update_er`` command: which ER, and the fields to change (only the fields that were sent)."""

    er_id: int


class ErRef(_Request):
    """``get_er`` / ``delete_er`` command."""

    er_id: int


class ErListRequest(_Request):
    """``list_ers`` command."""

    limit: int = Field(default=1000, ge=1, le=10_000)
    offset: Offset = 0


class ApplianceOut(BaseModel):
    """Identical appliances (a DER group) of an ER."""

    der_id: int
    appliance_id: int
    name: str
    count: int
    switched_on: bool
    lifecycle: Literal["purchased", "installed", "connected"]
    power_w: float
    base_kwh_per_min: float
    role: Literal["consumption", "production"]


class Er(BaseModel):
    """An energy resource: the seed's fields (``id, name, type, appliance_type, created_at``) and more."""

    id: int
    name: str
    type: Literal["consumer", "prosumer"]
    kind: Literal["home", "apartment_complex", "office", "shop", "industrial"]
    profile: Literal["realistic", "flat"]
    appliance_type: list[str] = Field(description="the distinct appliance names; counts are in `appliances`")
    appliances: list[ApplianceOut]
    base_kwh_per_min: float = Field(description="Σ consumption appliances' base kWh per minute × count")
    production_kwh_per_min: float = Field(description="Σ production appliances' base kWh per minute × count")
    city: str | None
    state: str | None
    latitude: float | None
    longitude: float | None
    meter_id: int | None = Field(description="id of the linked meter, if any")
    meter_code: str | None
    created_at: datetime
    updated_at: datetime


# ------------------------------------------------------------------------------------------- meters


class MeterCreate(_Location):
    """The seed's meter body. ``load_factor`` is the consumption factor K (``load_factor_consumption``).

    Without ``transformer_id`` the meter goes under its parent meter's transformer, else the transformer
    nearest to its coordinates, else the documented "unassigned" transformer.
    """

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "meter_id": "MT30125",
                    "parent_id": None,
                    "load_factor": 1.0,
                    "meter_type": "1-Ph",
                    "city": "Mumbai",
                    "state": "Maharashtra",
                    "latitude": 19.0760,
                    "longitude": 72.8777,
                    "pincode": "227409",
                }
            ]
        }
    )

    meter_id: MeterCode = Field(description="the meter's code, unique (ignoring case)")
    parent_id: MeterRef | None = None
    load_factor: LoadFactor | None = Field(default=None, description="the seed's name for K_consumption")
    load_factor_consumption: LoadFactor | None = None
    load_factor_production: LoadFactor | None = None
    meter_type: MeterType = "Smart"
    pincode: Pincode | None = None
    transformer_id: GridRef | None = None
    max_capacity_kW: Capacity | None = None

    _one_factor = field_validator("load_factor_consumption")(_one_consumption_factor)

    @property
    def consumption_factor(self) -> float:
        """K_consumption as given, 1 by default (seed)."""
        if self.load_factor_consumption is not None:
            return self.load_factor_consumption
        return 1.0 if self.load_factor is None else self.load_factor


class MeterPatch(_Location):
    """A partial meter update. ``meter_id`` renames the code; ``parent_id: null`` detaches from the parent."""

    meter_id: MeterCode | None = None
    parent_id: MeterRef | None = None
    load_factor: LoadFactor | None = None
    load_factor_consumption: LoadFactor | None = None
    load_factor_production: LoadFactor | None = None
    meter_type: MeterType | None = None
    pincode: Pincode | None = None
    transformer_id: GridRef | None = None
    max_capacity_kW: Capacity | None = None

    _not_null = field_validator(
        "meter_id",
        "load_factor",
        "load_factor_consumption",
        "load_factor_production",
        "meter_type",
        "transformer_id",
        mode="before",
    )(_not_null)
    _one_factor = field_validator("load_factor_consumption")(_one_consumption_factor)


class MeterUpdate(MeterPatch):
    """``update_meter`` command: which meter (id or code), and the fields that were sent."""

    meter: MeterRef


class MeterRefRequest(_Request):
    """``get_meter`` / ``delete_meter`` command."""

    meter: MeterRef


class MeterListRequest(_Request):
    """``list_meters`` command, with optional filters."""

    limit: int = Field(default=1000, ge=1, le=10_000)
    offset: Offset = 0
    transformer_id: GridRef | None = None
    parent_id: MeterRef | None = None
    linked: bool | None = None


class Meter(BaseModel):
    """A meter: the seed's fields (``meter_id`` is the code) plus where it hangs and what it meters."""

    id: int
    meter_id: str = Field(description="the meter's code")
    parent_id: int | None
    children: list[int] = Field(description="ids of the child meters")
    load_factor_consumption: float
    load_factor_production: float
    meter_type: Literal["1-Ph", "3-Ph", "Smart", "net-meter"]
    city: str | None
    state: str | None
    latitude: float | None
    longitude: float | None
    pincode: str | None
    transformer_id: int | None
    transformer_code: str | None
    er_id: int | None
    status: str
    max_capacity_kW: float | None
    linked_at: datetime | None
    created_at: datetime
    updated_at: datetime


# ----------------------------------------------------------------------------------------- links


class LinkRequest(_Request):
    """The seed's link body. Without factors: K_consumption stays the meter's (1 unless set), K_production
    becomes 1 for a prosumer and 0 for a consumer."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"meter_id": "MT30125", "er_id": 1}]})

    meter_id: MeterRef
    er_id: int
    load_factor_consumption: LoadFactor | None = None
    load_factor_production: LoadFactor | None = None


class UnlinkRequest(_Request):
    """Unlink a meter from its ER (``er_id``, when given, must be the linked one)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"meter_id": "MT30125"}]})

    meter_id: MeterRef
    er_id: int | None = None


# -------------------------------------------------------------------------------------- grid nodes


class GridNodeCreate(_Location):
    """A utility, a feeder (``substation`` is accepted for it) or a transformer."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "Dolores TX-01",
                    "level": "transformer",
                    "parent_id": "sf-mission",
                    "capacity_kVA": 75,
                    "city": "San Francisco",
                    "state": "CA",
                    "latitude": 37.7599,
                    "longitude": -122.4148,
                }
            ]
        }
    )

    code: NodeCode | None = Field(default=None, description="topic id; made from the name when absent")
    name: Name
    level: GridLevel
    parent_id: GridRef | None = None
    capacity_kVA: Capacity | None = Field(default=None, description="required for a transformer")
    pincode: Pincode | None = None
    emergency_service: bool = False


class GridNodePatch(_Location):
    """A partial grid node update (``parent_id`` moves a feeder or a transformer)."""

    name: Name | None = None
    parent_id: GridRef | None = None
    capacity_kVA: Capacity | None = None
    pincode: Pincode | None = None
    emergency_service: bool | None = None

    _not_null = field_validator("name", "parent_id", "emergency_service", mode="before")(_not_null)


class GridNodeUpdate(GridNodePatch):
    """``update_grid_node`` command."""

    node: GridRef


class NodeRefRequest(_Request):
    """``get_grid_node`` / ``delete_grid_node`` command."""

    node: GridRef


class GridTreeRequest(_Request):
    """``grid_tree`` command."""

    meters: bool = True


class GridNode(BaseModel):
    """A node of the grid."""

    id: int
    code: str
    name: str
    level: Literal["utility", "feeder", "transformer"]
    parent_id: int | None
    capacity_kVA: float | None
    city: str | None
    state: str | None
    latitude: float | None
    longitude: float | None
    pincode: str | None
    emergency_service: bool
    connected_consumption_kW: float
    connected_production_kW: float
    created_at: datetime


class MeterTreeNode(BaseModel):
    """A meter in the grid tree, with its child meters."""

    id: int
    meter_id: str
    meter_type: str
    er_id: int | None
    er_type: Literal["consumer", "prosumer"] | None
    load_factor_consumption: float
    load_factor_production: float
    children: list[MeterTreeNode] = Field(default_factory=list)


class GridTreeNode(GridNode):
    """A grid node with the nodes below it and, for a transformer, its top-level meters."""

    children: list[GridTreeNode] = Field(default_factory=list)
    meters: list[MeterTreeNode] = Field(default_factory=list)


class GridTree(BaseModel):
    """The whole grid: utilities → feeders → transformers → meters → child meters."""

    utilities: list[GridTreeNode]
    transformers: int
    meters: int


class Deleted(BaseModel):
    """The answer to a delete."""

    message: str
    id: int
