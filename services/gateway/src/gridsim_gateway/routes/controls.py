"""Driving the grid while it runs (owned by meter-sim; docs/controls.md): the seed's ``POST /meter/control``,
load and source spikes and generators, DERs with their lifecycle (the seed's ``POST /create-der`` and
``UPDATE /toggle-der-status``), meter events (tamper, fault, outage), and the control and event logs.

Each route validates with the shared schema and sends the same body as an MQTT command to meter-sim
(``{base}/v1/cmd/meter-sim/<operation>``), so an agent can do exactly the same without HTTP. Changes show
in the readings from the next interval and are logged with the simulated time.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, status
from pydantic import BaseModel, ConfigDict, Field

from gridsim_gateway.deps import BusDep
from gridsim_shared.commands import meter_sim
from gridsim_shared.schemas.controls import (
    ControlLogEntry,
    ControlLogRequest,
    ControlRequest,
    ControlResult,
    DerAdd,
    DerDeleted,
    DerInfo,
    EventListRequest,
    EventOut,
    Lifecycle,
    MeterEventResult,
    MeterEventType,
    Spike,
    SpikeCreate,
    SpikeListRequest,
)
from gridsim_shared.schemas.worldengine import DerOut, DerSwitch

router = APIRouter(tags=["controls"])


DerId = Annotated[int, Path(ge=1, le=2**63 - 1, description="the DER's id")]
ErId = Annotated[int, Path(ge=1, le=2**63 - 1, description="the energy resource's id")]
SpikeId = Annotated[int, Path(ge=1, le=2**63 - 1, description="the spike's id")]
MeterRefPath = Annotated[str, Path(description="the meter's integer id or its code")]


_CONTROL_EXAMPLES = {
    "seed": {
        "summary": "the seed's body: ACs in one pincode at half power",
        "value": {"appliance_type": "AC", "pincode": "227409", "load_factor": 0.5, "log_type": "consumption"},
    },
    "switch_off_building": {
        "summary": "every meter below a parent meter OFF",
        "value": {"parent_meter_id": "APT-MAIN", "load_factor": 0, "log_type": "both"},
    },
}


@router.post(
    "/meter/control",
    openapi_extra={"requestBody": {"content": {"application/json": {"examples": _CONTROL_EXAMPLES}}}},
)
async def control(body: ControlRequest, bus: BusDep) -> ControlResult:
    """Set the load factor K of a meter or a group: by `meter_id`, `parent_meter_id` (every descendant),
    `appliance_type` (meters whose ER has it) and `pincode`, combined with AND. At least one filter.

    `log_type` picks the factor: consumption, production or both. K = 0 switches a meter OFF (it stops
    reporting; a `status` offline event is published), K > 1 amplifies. Takes effect from the next interval.
    """
    return await bus.call(meter_sim.CONTROL, body)


@router.get("/control-log")
async def control_log(query: Annotated[ControlLogRequest, Query()], bus: BusDep) -> list[ControlLogEntry]:
    """Every control change (load factors, spikes, DERs, meter events, clock) with its simulated time,
    oldest first; filter by meter (id or code), action (or a prefix ending in `.`: `spike.`) and time."""
    return await bus.call(meter_sim.CONTROL_LOG, query)


# ------------------------------------------------------------------------------------------ spikes

_SPIKE_EXAMPLES = {
    "load": {
        "summary": "every meter of a transformer draws 3× for 10 minutes, decaying",
        "value": {
            "kind": "load",
            "scope": "transformer",
            "target": "t1",
            "multiplier": 3,
            "duration_s": 600,
            "shape": "exp_decay",
        },
    },
    "solar_farm": {
        "summary": "a 500 kW solar farm joins a feeder at noon",
        "value": {
            "kind": "generator",
            "scope": "feeder",
            "target": "f1",
            "kw": 500,
            "start": "2025-06-20T12:00:00Z",
            "name": "Mission solar farm",
        },
    },
}


@router.post(
    "/spikes",
    status_code=status.HTTP_201_CREATED,
    openapi_extra={"requestBody": {"content": {"application/json": {"examples": _SPIKE_EXAMPLES}}}},
)
async def create_spike(body: SpikeCreate, bus: BusDep) -> Spike:
    """A timed spike on a meter, transformer, feeder or pincode: `load` (consumption) or `source`
    (prosumers' production) × `multiplier` or + `kw` per meter, shaped `step`, `ramp`, `triangle` or
    `exp_decay` over `duration_s` from `start` (default: the next interval). A `generator` is a new source
    (a solar farm, or a constant generator) of `kw` at a transformer or feeder with its own meter."""
    return await bus.call(meter_sim.CREATE_SPIKE, body)


@router.get("/spikes")
async def list_spikes(query: Annotated[SpikeListRequest, Query()], bus: BusDep) -> list[Spike]:
    """Spikes, newest first, with the meters each covers; `active=true` keeps those not yet ended."""
    return await bus.call(meter_sim.LIST_SPIKES, query)


@router.get("/spikes/{spike_id}")
async def get_spike(spike_id: SpikeId, bus: BusDep) -> Spike:
    """One spike."""
    return await bus.call(meter_sim.GET_SPIKE, meter_sim.GET_SPIKE.build(spike_id=spike_id))


@router.delete("/spikes/{spike_id}")
async def delete_spike(spike_id: SpikeId, bus: BusDep) -> Spike:
    """End a spike now (its record stays, with `cancelled_at`); a generator's meter goes offline."""
    return await bus.call(meter_sim.DELETE_SPIKE, meter_sim.DELETE_SPIKE.build(spike_id=spike_id))


# -------------------------------------------------------------------------------------------- DERs


class DerAddBody(BaseModel):
    """A DER for the ER in the path."""

    model_config = ConfigDict(extra="forbid")

    appliance: int | str
    quantity: int = 1
    lifecycle: Lifecycle = "connected"
    switched_on: bool | None = None
    capacity_kw: float | None = None
    tilt_deg: float | None = Field(default=None, description="PV tilt from horizontal, 0–90° (default 20°)")
    azimuth_deg: float | None = Field(
        default=None,
        description="PV azimuth, degrees clockwise from north, [0, 360) (default: facing the equator)",
    )


class DerPatchBody(BaseModel):
    """What to change (absent: unchanged)."""

    model_config = ConfigDict(extra="forbid")

    switched_on: bool | None = None
    lifecycle: Lifecycle | None = None
    quantity: int | None = None
    capacity_kw: float | None = None
    tilt_deg: float | None = Field(default=None, description="PV tilt from horizontal, 0–90°")
    azimuth_deg: float | None = Field(default=None, description="PV azimuth, degrees clockwise from north")


def _with(body: BaseModel, **path: Any) -> dict[str, Any]:
    # Path ids joined to the sent fields; meter-sim validates the whole command (a 422 names the field).
    return {**path, **body.model_dump(mode="json", exclude_unset=True)}


@router.post("/create-der", status_code=status.HTTP_201_CREATED)
async def create_der(body: DerAdd, bus: BusDep) -> DerInfo:
    """The seed's `POST /create-der`: an appliance instance or a solar panel of an ER as a resource of its
    own (appliance by catalogue id or name). A panel that is `purchased` or `installed` produces nothing
    until it is connected; adding a connected one changes the waveform from the next interval."""
    return await bus.call(meter_sim.ADD_DER, body)


@router.post("/ers/{er_id}/ders", status_code=status.HTTP_201_CREATED)
async def add_der(er_id: ErId, body: DerAddBody, bus: BusDep) -> DerInfo:
    """Add a DER to an energy resource (as `POST /create-der`)."""
    return await bus.call(meter_sim.ADD_DER, meter_sim.ADD_DER.build(**_with(body, er_id=er_id)))


@router.get("/ers/{er_id}/ders")
async def list_ders(er_id: ErId, bus: BusDep) -> list[DerInfo]:
    """The DERs of an energy resource, with whether each shows in the readings."""
    return await bus.call(meter_sim.LIST_DERS, meter_sim.LIST_DERS.build(er_id=er_id))


@router.get("/ders/{der_id}")
async def get_der(der_id: DerId, bus: BusDep) -> DerInfo:
    """One DER."""
    return await bus.call(meter_sim.GET_DER, meter_sim.GET_DER.build(der_id=der_id))


@router.patch("/ders/{der_id}")
async def update_der(der_id: DerId, body: DerPatchBody, bus: BusDep) -> DerInfo:
    """Switch a DER on or off, or advance its lifecycle: purchased → installed → connected, one step at a
    time (skipping one is a 409 with the reason; going back disconnects it). Connecting switches it on;
    only a connected DER can be switched on. A consumer's ER with a connected panel becomes a prosumer."""
    return await bus.call(meter_sim.UPDATE_DER, meter_sim.UPDATE_DER.build(**_with(body, der_id=der_id)))


@router.delete("/ders/{der_id}")
async def delete_der(der_id: DerId, bus: BusDep) -> DerDeleted:
    """Remove a DER; the waveform changes from the next interval."""
    return await bus.call(meter_sim.DELETE_DER, meter_sim.DELETE_DER.build(der_id=der_id))


@router.post("/toggle-der-status")
async def toggle_der_status(body: DerSwitch, bus: BusDep) -> DerOut:
    """The seed's `UPDATE /toggle-der-status`: switch a DER on or off (`switched_on` null flips it).
    Switching on a DER that is not connected is a 409."""
    return await bus.call(meter_sim.SWITCH_DER, body)


# ------------------------------------------------------------------------------------------ events


class MeterEventBody(BaseModel):
    """An event for the meter in the path."""

    model_config = ConfigDict(extra="forbid")

    type: MeterEventType
    severity: str | None = None
    message: str | None = None
    data: dict[str, Any] = {}


@router.post("/meter/{meter}/events", status_code=status.HTTP_201_CREATED)
async def meter_event(meter: MeterRefPath, body: MeterEventBody, bus: BusDep) -> MeterEventResult:
    """Inject a meter event: `tamper` (flagged, keeps reporting), `fault` or `outage` (stops reporting
    until cleared), `clear` (back online). Published on `{base}/v1/meter-event/{type}/{u}/{f}/{t}/{meter}`
    with a `status` online/offline event when reporting changes; stored in the events table."""
    request = meter_sim.METER_EVENT.build(**_with(body, meter=int(meter) if meter.isdigit() else meter))
    return await bus.call(meter_sim.METER_EVENT, request)


@router.get("/events")
async def list_events(query: Annotated[EventListRequest, Query()], bus: BusDep) -> list[EventOut]:
    """Stored grid and meter events (overload, voltage, tamper, fault, outage, status, ...), newest first."""
    return await bus.call(meter_sim.EVENTS, query)
