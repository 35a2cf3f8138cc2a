"""Request and response models of driving the grid while it runs (meter-sim's controls): load factors by
scope (the seed's ``POST /meter/control``), load and source spikes, DERs as resources of their own (add,
switch, advance the lifecycle, remove), meter events (tamper, fault, outage), and the logs that read them
back. Defined once; the gateway validates HTTP bodies with them and meter-sim validates the same bodies
again when they arrive as MQTT commands.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from gridsim_shared.schemas.common import Offset
from gridsim_shared.schemas.meters import LoadFactor, MeterRef, Pincode

__all__ = [
    "ControlLogEntry",
    "ControlLogRequest",
    "ControlRequest",
    "ControlResult",
    "DerAdd",
    "DerDeleted",
    "DerInfo",
    "DerListRequest",
    "DerPatch",
    "DerRefRequest",
    "EventListRequest",
    "EventOut",
    "FlexCreate",
    "FlexEvent",
    "FlexRefRequest",
    "Lifecycle",
    "LogType",
    "MeterEventRequest",
    "MeterEventResult",
    "Spike",
    "SpikeCreate",
    "SpikeListRequest",
    "SpikeRefRequest",
]

Id = Annotated[int, Field(ge=1, le=2**63 - 1)]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


def _lower(value: Any) -> Any:
    return value.strip().lower().replace("-", "_") if isinstance(value, str) else value


# The seed's log_type; "consumption" sets K_consumption, "production" K_production, "both" the two.
LogType = Annotated[Literal["consumption", "production", "both"], BeforeValidator(_lower)]
Lifecycle = Annotated[Literal["purchased", "installed", "connected"], BeforeValidator(_lower)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ------------------------------------------------------------------------------------ load factors


class ControlRequest(_Request):
    """The seed's ``POST /meter/control``: set K on every meter that matches ALL the given filters.

    At least one filter is required (an empty body would switch the whole grid).
    """

    meter_id: MeterRef | None = Field(default=None, description="one meter: its integer id or its code")
    parent_meter_id: MeterRef | None = Field(
        default=None, description="every descendant of this parent meter (children, grandchildren, ...)"
    )
    appliance_type: Text | None = Field(
        default=None, description="meters whose energy resource has this appliance (name or alias: AC)"
    )
    pincode: Pincode | None = Field(default=None, description="meters with this pincode")
    load_factor: LoadFactor = Field(description="K: 0 is OFF, (0, 1] scales down, > 1 amplifies")
    log_type: LogType = Field(default="consumption", description="which K: consumption, production or both")

    @model_validator(mode="after")
    def _some_filter(self) -> Self:
        if all(v is None for v in (self.meter_id, self.parent_meter_id, self.appliance_type, self.pincode)):
            msg = (
                "give at least one of meter_id, parent_meter_id, appliance_type, pincode "
                "(an empty filter would change the whole grid)"
            )
            raise ValueError(msg)
        return self


class ControlResult(BaseModel):
    """Which meters changed, with the simulated time the change takes effect (the next interval)."""

    meter_ids: list[int]
    meter_codes: list[str]
    count: int
    load_factor: float
    log_type: str
    sim_time: datetime
    log_id: int
    went_offline: list[int] = Field(description="meters that stopped reporting (K = 0)")
    came_online: list[int] = Field(description="meters that started reporting again")


class ControlLogRequest(_Request):
    """``GET /control-log``: every control change, oldest first, optionally for one meter or a time span."""

    meter: MeterRef | None = None
    action: Annotated[str, StringConstraints(max_length=64)] | None = Field(
        default=None, description="an action, or a prefix ending in '.' (clock.)"
    )
    since: datetime | None = Field(default=None, description="simulated time, inclusive")
    until: datetime | None = Field(default=None, description="simulated time, exclusive")
    limit: int = Field(default=1000, ge=1, le=10_000)
    offset: Offset = 0


class ControlLogEntry(BaseModel):
    """One control change."""

    id: int
    sim_time: datetime
    action: str
    target: dict[str, Any]
    params: dict[str, Any]
    meter_ids: list[int]
    created_at: datetime


# ------------------------------------------------------------------------------------------ spikes

SpikeKind = Literal["load", "source", "generator"]
SpikeScope = Literal["meter", "transformer", "feeder", "pincode"]
SpikeShape = Annotated[Literal["step", "ramp", "triangle", "exp_decay"], BeforeValidator(_lower)]


class SpikeCreate(_Request):
    """A timed change of the readings.

    - ``load``: the consumption of every meter in scope is multiplied by ``multiplier`` or raised by
      ``kw`` (per meter), following ``shape`` over ``duration_s``.
    - ``source``: the same for the production of the prosumer meters in scope.
    - ``generator``: a new source (a solar farm, or a constant generator) of ``kw`` at a transformer or a
      feeder, with a meter of its own; from ``start`` on, for ``duration_s`` (null: for good).
    """

    kind: Annotated[SpikeKind, BeforeValidator(_lower)] = "load"
    scope: Annotated[SpikeScope, BeforeValidator(_lower)]
    target: Annotated[int, Field(ge=1)] | Annotated[str, StringConstraints(min_length=1, max_length=32)] = (
        Field(description="the meter (id or code), transformer or feeder (id or code), or pincode")
    )
    multiplier: float | None = Field(default=None, gt=0, le=1000, allow_inf_nan=False)
    kw: float | None = Field(default=None, gt=0, le=1_000_000, allow_inf_nan=False)
    start: datetime | None = Field(default=None, description="simulated time; default: the next interval")
    duration_s: int | None = Field(default=None, ge=1, le=10 * 365 * 86400)
    shape: SpikeShape = "step"
    generator: Annotated[Literal["solar", "constant"], BeforeValidator(_lower)] = Field(
        default="solar", description="generator spikes: a solar farm follows the sun; constant is flat"
    )
    name: Text | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if (self.multiplier is None) == (self.kw is None):
            msg = "give exactly one magnitude: multiplier or kw"
            raise ValueError(msg)
        if self.kind == "generator":
            if self.scope not in ("transformer", "feeder"):
                msg = "scope: a generator is added at a transformer or a feeder"
                raise ValueError(msg)
            if self.kw is None:
                msg = "kw: a generator's magnitude is its rated power in kW"
                raise ValueError(msg)
        if self.duration_s is None and self.kind != "generator":
            msg = "duration_s: a load or source spike needs a duration"
            raise ValueError(msg)
        if self.duration_s is None and self.shape != "step":
            msg = f"duration_s: the {self.shape} shape needs a duration"
            raise ValueError(msg)
        return self


class Spike(BaseModel):
    """A stored spike, with the meters it covers now."""

    id: int
    kind: str
    scope: str
    target: str
    multiplier: float | None
    kw: float | None
    start: datetime
    duration_s: int | None
    end: datetime | None = Field(description="when it stops: start + duration, or when it was cancelled")
    shape: str
    generator: str | None
    name: str | None
    generator_meter_id: int | None
    generator_meter_code: str | None
    cancelled_at: datetime | None
    meter_ids: list[int]
    created_at: datetime


class SpikeListRequest(_Request):
    """Spikes, newest first; ``active`` keeps those not ended at the current simulated time."""

    active: bool | None = None
    limit: int = Field(default=1000, ge=1, le=10_000)


class SpikeRefRequest(_Request):
    """One spike."""

    spike_id: Id


# ------------------------------------------------------------------------------ flexible-load windows


class FlexCreate(_Request):
    """A demand-response window on the flexible loads of some meters (the loads model's ``Flex`` hook).

    During [start, end) thermostats move ``hvac_offset_c`` toward saving, water heaters hold their element
    off and EV charging pauses (each as asked); afterwards the loads rebound (the building's mass pulls
    the thermostat back, water heaters and EVs recover what the window held back). A meter in a later
    window follows that one from its start (its earlier window's rebound stops).
    """

    meter_ids: list[Id] = Field(min_length=1, max_length=1_000_000)
    start: datetime
    end: datetime
    hvac_offset_c: float = Field(default=0.0, ge=0, le=10, allow_inf_nan=False)
    defer_water: bool = False
    defer_ev: bool = False
    name: Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)] = ""

    @model_validator(mode="after")
    def _window(self) -> Self:
        if self.end <= self.start:
            msg = "end must be after start"
            raise ValueError(msg)
        if not (self.hvac_offset_c > 0 or self.defer_water or self.defer_ev):
            msg = "ask for something: hvac_offset_c > 0, defer_water or defer_ev"
            raise ValueError(msg)
        return self


class FlexEvent(BaseModel):
    """A stored flexible-load window; ``end`` is earlier than asked when it was cancelled."""

    id: int
    name: str
    meter_ids: list[int]
    start: datetime
    end: datetime
    hvac_offset_c: float
    defer_water: bool
    defer_ev: bool
    cancelled_at: datetime | None
    created_at: datetime


class FlexRefRequest(_Request):
    """One flexible-load window."""

    flex_id: Id


# -------------------------------------------------------------------------------------------- DERs


class DerAdd(_Request):
    """An appliance instance or a solar panel of an ER as a resource of its own.

    ``lifecycle`` purchased or installed: it neither consumes nor produces until it is connected.
    ``switched_on`` defaults to on for a connected DER, off otherwise.
    """

    er_id: Id
    appliance: Annotated[int, Field(ge=1)] | Text = Field(
        description="catalogue id or name/alias (Solar Panel, EV, AC)"
    )
    quantity: int = Field(default=1, ge=1, le=10_000)
    lifecycle: Lifecycle = "connected"
    switched_on: bool | None = None
    capacity_kw: float | None = Field(
        default=None, gt=0, le=100_000, allow_inf_nan=False, description="rated kW per unit (solar)"
    )
    tilt_deg: float | None = Field(
        default=None, ge=0, le=90, allow_inf_nan=False, description="PV tilt from horizontal (default 20°)"
    )
    azimuth_deg: float | None = Field(
        default=None,
        ge=0,
        lt=360,
        allow_inf_nan=False,
        description="PV azimuth, degrees clockwise from north (default: facing the equator)",
    )


class DerPatch(_Request):
    """Change a DER: switch it, advance its lifecycle (purchased → installed → connected, one step at a
    time; back to an earlier state disconnects it), its quantity, capacity or (PV) orientation."""

    der_id: Id
    switched_on: bool | None = None
    lifecycle: Lifecycle | None = None
    quantity: int | None = Field(default=None, ge=1, le=10_000)
    capacity_kw: float | None = Field(default=None, gt=0, le=100_000, allow_inf_nan=False)
    tilt_deg: float | None = Field(
        default=None, ge=0, le=90, allow_inf_nan=False, description="PV tilt from horizontal (default 20°)"
    )
    azimuth_deg: float | None = Field(
        default=None,
        ge=0,
        lt=360,
        allow_inf_nan=False,
        description="PV azimuth, degrees clockwise from north (default: facing the equator)",
    )


class DerRefRequest(_Request):
    """One DER."""

    der_id: Id


class DerListRequest(_Request):
    """The DERs of one ER."""

    er_id: Id


class DerInfo(BaseModel):
    """A DER with its appliance."""

    id: int
    er_id: int
    appliance_id: int
    appliance: str
    role: Literal["consumption", "production"]
    quantity: int
    switched_on: bool
    lifecycle: Literal["purchased", "installed", "connected"]
    capacity_kw: float | None
    tilt_deg: float | None = Field(default=None, description="PV tilt (null: the default 20°)")
    azimuth_deg: float | None = Field(default=None, description="PV azimuth (null: facing the equator)")
    producing_or_consuming: bool = Field(description="connected and switched on: it shows in the readings")
    meter_id: int | None
    created_at: datetime
    updated_at: datetime


class DerDeleted(BaseModel):
    """A removed DER."""

    id: int
    er_id: int
    message: str


# ---------------------------------------------------------------------------------------- events

MeterEventType = Annotated[Literal["tamper", "fault", "outage", "clear"], BeforeValidator(_lower)]


class MeterEventRequest(_Request):
    """Inject a meter event. ``tamper`` flags the meter (it keeps reporting); ``fault`` and ``outage``
    take it offline (it stops reporting); ``clear`` brings it back online."""

    meter: MeterRef
    type: MeterEventType
    severity: Literal["info", "warning", "critical"] | None = None
    message: Annotated[str, StringConstraints(max_length=500)] | None = None
    data: dict[str, Any] = {}


class MeterEventResult(BaseModel):
    """The meter's new status and the events published."""

    meter_id: int
    meter_code: str
    status: Literal["online", "offline", "tampered", "fault"]
    reporting: bool
    events: list[EventOut]


class EventListRequest(_Request):
    """Stored grid and meter events, newest first."""

    type: Annotated[str, StringConstraints(max_length=64)] | None = None
    subject: Annotated[str, StringConstraints(max_length=64)] | None = Field(
        default=None, description="a meter or node code"
    )
    since: datetime | None = None
    until: datetime | None = None
    limit: int = Field(default=100, ge=1, le=10_000)


class EventOut(BaseModel):
    """A stored event."""

    id: int
    type: str
    severity: str
    sim_time: datetime
    subject: str
    message: str
    data: dict[str, Any]


MeterEventResult.model_rebuild()
