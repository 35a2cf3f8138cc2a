"""Grid events: one model per kind, each with its own typed ``data``, as one discriminated union.

:data:`GridEvent` is what the ``event/{type}/{subject}`` and ``meter-event/{type}/…`` channels carry. Its
``type`` picks the model (pydantic validates a message against that kind only), so a consumer that narrows
(``isinstance(event, TransformerTripEvent)``) reads ``event.data.node_id`` as an ``int``, never a dict key
that may be missing. A producer builds the kind it means, e.g. ``SpikeEvent(..., data=SpikeDetails(...))``;
a ``type`` outside this module is refused on the wire.

The wire format is the one of the single ``GridEvent`` model before it: ``{type, severity, timestamp,
subject, message, data}``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter

from gridsim_shared.messages import Message
from gridsim_shared.schemas.billing import P2PTrade

__all__ = [
    "GRID_EVENT",
    "DrEventDetails",
    "DrEventEvent",
    "GridEvent",
    "MeterIncidentDetails",
    "MeterIncidentEvent",
    "MeterStatusDetails",
    "MeterStatusEvent",
    "OverloadDetails",
    "P2PTradeEvent",
    "SlaBreachDetails",
    "SlaBreachEvent",
    "SpikeDetails",
    "SpikeEvent",
    "SupplyDetails",
    "SupplyEvent",
    "SupplyKind",
    "TransformerOverloadEvent",
    "TransformerTripEvent",
    "TripDetails",
    "VoltageExcursionDetails",
    "VoltageExcursionEvent",
    "VoltageRestoredDetails",
    "VoltageRestoredEvent",
]

Severity = Literal["info", "warning", "critical"]


class _Event(Message):
    """What every event has; ``type`` and ``data`` are narrowed by each kind (their place stays first/last)."""

    type: str
    severity: Severity = "info"
    timestamp: AwareDatetime
    subject: str = Field(description="the grid node or meter code concerned")
    message: str
    data: Any = None

    def details(self) -> dict[str, Any]:
        """``data`` as JSON (what the events table stores)."""
        dumped: dict[str, Any] = self.model_dump(mode="json", include={"data"})["data"]
        return dumped


class _Details(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ------------------------------------------------------------------ aggregator: transformers, voltage, SLA


class OverloadDetails(_Details):
    node_id: int
    loading_pct: float | None
    apparent_kVA: float
    capacity_kVA: float | None
    hot_spot_c: float


class TransformerOverloadEvent(_Event):
    """A transformer's hot spot passed the alarm (IEEE C57.91), or fell back below the clearing limit."""

    type: Literal["transformer_overload", "transformer_overload_cleared"]
    data: OverloadDetails


class TripDetails(_Details):
    node_id: int
    hot_spot_c: float
    loading_pct: float | None


class TransformerTripEvent(_Event):
    """A transformer's hot spot passed the trip limit: meter-sim takes it off supply."""

    type: Literal["transformer_trip"]
    data: TripDetails


class VoltageExcursionDetails(_Details):
    meter_id: int
    avg_voltage: float
    low_v: float
    high_v: float


class VoltageExcursionEvent(_Event):
    """A meter's voltage left its service band (once per transition)."""

    type: Literal["voltage_low", "voltage_high"]
    data: VoltageExcursionDetails


class VoltageRestoredDetails(_Details):
    meter_id: int
    avg_voltage: float


class VoltageRestoredEvent(_Event):
    """A meter's voltage is back in its band."""

    type: Literal["voltage_restored"]
    data: VoltageRestoredDetails


class SlaBreachDetails(_Details):
    month: str
    breaches: list[str]
    completeness: float | None
    voltage_compliance: float | None
    latency_p95_s: float | None
    thresholds: dict[str, Any]


class SlaBreachEvent(_Event):
    """A feeder missed a monthly service level."""

    type: Literal["sla_breach"]
    data: SlaBreachDetails


# ------------------------------------------------------------------ meter-sim: spikes, meters, supply


class SpikeDetails(_Details):
    spike_id: int
    kind: str
    scope: str
    meter_ids: list[int]
    meter_codes: list[str]
    duration_s: int | None


class SpikeEvent(_Event):
    """A load spike was scheduled."""

    type: Literal["spike"]
    data: SpikeDetails


class MeterStatusDetails(_Details):
    meter_id: int
    state: Literal["online", "offline"]
    reason: str


class MeterStatusEvent(_Event):
    """A meter started or stopped reporting."""

    type: Literal["status"]
    data: MeterStatusDetails


class MeterIncidentDetails(BaseModel):
    """The meter and its new status, plus whatever the operator attached to the injected event."""

    model_config = ConfigDict(extra="allow")

    meter_id: int
    status: str


class MeterIncidentEvent(_Event):
    """An injected meter event: tamper, fault or outage."""

    type: Literal["tamper", "fault", "outage"]
    data: MeterIncidentDetails


class SupplyDetails(BaseModel):
    """The meter, plus what caused the change (the outage, the disconnection's reason)."""

    model_config = ConfigDict(extra="allow")

    meter_id: int


SupplyKind = Literal["last_gasp", "power_restored", "disconnected", "reconnected"]


class SupplyEvent(_Event):
    """A meter's supply changed: lost (last gasp), restored, disconnected or reconnected remotely."""

    type: SupplyKind
    data: SupplyDetails


# ------------------------------------------------------------------ billing, utility


class P2PTradeEvent(_Event):
    """A P2P trade was recorded (``data`` is the trade)."""

    type: Literal["p2p-trade"]
    data: P2PTrade


class DrEventDetails(_Details):
    """A demand-response event (without its participants) and what happened to it."""

    action: str
    id: int
    program_id: int
    program_kind: str
    start: datetime
    end: datetime
    level: int
    trigger: str
    reason: str
    status: str
    shed_kWh: float | None
    rebound_kWh: float | None
    created_sim: datetime


class DrEventEvent(_Event):
    """A demand-response event was created, modified or cancelled (subject ``dr-{id}``)."""

    type: Literal["dr-event"]
    data: DrEventDetails


GridEvent = Annotated[
    TransformerOverloadEvent
    | TransformerTripEvent
    | VoltageExcursionEvent
    | VoltageRestoredEvent
    | SlaBreachEvent
    | SpikeEvent
    | MeterStatusEvent
    | MeterIncidentEvent
    | SupplyEvent
    | P2PTradeEvent
    | DrEventEvent,
    Field(discriminator="type"),
]

# Validates any event (from the wire or a stored row) into its kind.
GRID_EVENT: TypeAdapter[GridEvent] = TypeAdapter(GridEvent)
