"""Payloads of every MQTT message, defined once and used by producers and consumers alike.

Field names follow the user's specification (``consumption_kWh``, ``avg_voltage``), so a reading on the
bus has the same shape as the seed's ``GET /meter/stream`` example. ``extra="ignore"``: additive fields
stay in ``v1`` and older consumers ignore them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "READING_REGISTER_COLUMNS",
    "READING_VALUE_COLUMNS",
    "ClockState",
    "ErrorBody",
    "Forecast",
    "ForecastPoint",
    "Message",
    "MeterReading",
    "PricePoint",
    "PriceSignal",
    "ReadingBatch",
    "Reply",
    "Request",
    "Rollup",
    "ServiceStatus",
    "Watermark",
]


class Message(BaseModel):
    """Base of every payload: immutable, unknown fields ignored."""

    model_config = ConfigDict(frozen=True, extra="ignore")


class MeterReading(Message):
    """One meter's reading for one interval (the seed's MeterData plus code, interval and flags).

    ``timestamp`` is the simulated start of the interval. Consumers have null production fields.
    ``avg_current`` follows physics, I = S / V (DESIGN §4), not the seed's formula.
    """

    meter_id: int
    meter_code: str
    timestamp: AwareDatetime
    interval_s: int = 60
    consumption_kWh: float | None = Field(default=None, ge=0)
    production_kWh: float | None = Field(default=None, ge=0)
    consumption_kVAh: float | None = Field(default=None, ge=0)
    production_kVAh: float | None = Field(default=None, ge=0)
    avg_current: float = Field(ge=0)
    avg_voltage: float = Field(ge=0)
    reactive_power_kVAR: float | None = Field(default=None, ge=0)
    power_factor: float | None = Field(default=None, ge=0, le=1)
    is_parent: bool = False
    # A parent reading closed before every child reported (see docs/architecture.md).
    partial: bool = False
    # Cumulative registers since installation at the end of this interval, as a real meter reports them
    # (docs/grid-health.md): kWh imported and exported, kVARh. None from producers that keep none.
    import_kWh: float | None = Field(default=None, ge=0)
    export_kWh: float | None = Field(default=None, ge=0)
    import_kVARh: float | None = Field(default=None, ge=0)


# The cumulative registers a reading may carry (optional columns of a batch).
READING_REGISTER_COLUMNS = ("import_kWh", "export_kWh", "import_kVARh")

# The measured quantities of a reading, in the order consumers lay them out as columns.
READING_VALUE_COLUMNS = (
    "consumption_kWh",
    "production_kWh",
    "consumption_kVAh",
    "production_kVAh",
    "avg_current",
    "avg_voltage",
    "reactive_power_kVAR",
    "power_factor",
)


class ReadingBatch(Message):
    """All readings of one transformer's meters for one interval, column by column.

    One message instead of hundreds: the per-message cost of MQTT, not the bytes, limits throughput.
    Every list has one entry per meter; ``None`` where a meter has no production.
    """

    timestamp: AwareDatetime
    interval_s: int = 60
    meter_id: list[int]
    meter_code: list[str]
    consumption_kWh: list[float | None]
    production_kWh: list[float | None]
    consumption_kVAh: list[float | None]
    production_kVAh: list[float | None]
    avg_current: list[float]
    avg_voltage: list[float]
    reactive_power_kVAR: list[float | None]
    power_factor: list[float | None]
    # Cumulative registers (see MeterReading); absent from older producers.
    import_kWh: list[float] | None = None
    export_kWh: list[float] | None = None
    import_kVARh: list[float] | None = None
    # When the batch left the producer (wall clock): the service-level latency starts here.
    sent_at: AwareDatetime | None = None
    # What the producing meter-sim instance (its shard, "i/n") publishes for this interval in all: the
    # aggregator compares it with what it stored to count readings the broker dropped (absent from
    # older producers: nothing is counted for them).
    shard: str | None = None
    interval_batches: int | None = Field(default=None, ge=0)
    interval_readings: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _columns_align(self) -> ReadingBatch:
        n = len(self.meter_id)
        present = [c for c in READING_REGISTER_COLUMNS if getattr(self, c) is not None]
        for name in ("meter_code", *READING_VALUE_COLUMNS, *present):
            if len(getattr(self, name)) != n:
                msg = f"column {name} has {len(getattr(self, name))} values, meter_id has {n}"
                raise ValueError(msg)
        return self

    def __len__(self) -> int:
        return len(self.meter_id)

    def row(self, i: int) -> MeterReading:
        """The ``i``-th meter's reading (a consumer that wants a few meters of a big batch builds only those)."""
        return MeterReading(
            meter_id=self.meter_id[i],
            meter_code=self.meter_code[i],
            timestamp=self.timestamp,
            interval_s=self.interval_s,
            consumption_kWh=self.consumption_kWh[i],
            production_kWh=self.production_kWh[i],
            consumption_kVAh=self.consumption_kVAh[i],
            production_kVAh=self.production_kVAh[i],
            avg_current=self.avg_current[i],
            avg_voltage=self.avg_voltage[i],
            reactive_power_kVAR=self.reactive_power_kVAR[i],
            power_factor=self.power_factor[i],
            import_kWh=self.import_kWh[i] if self.import_kWh is not None else None,
            export_kWh=self.export_kWh[i] if self.export_kWh is not None else None,
            import_kVARh=self.import_kVARh[i] if self.import_kVARh is not None else None,
        )

    def rows(self) -> list[MeterReading]:
        """The batch as one :class:`MeterReading` per meter (for per-meter consumers)."""
        return [self.row(i) for i in range(len(self.meter_id))]


class ClockState(Message):
    """The simulation clock, published retained by the instance that owns it."""

    current_datetime: AwareDatetime
    state: Literal["running", "paused"]
    speed: float
    interval_s: int
    tick: int = Field(ge=0, description="intervals simulated since the start date")
    # How far the simulation is behind its schedule, in real seconds; 0 when keeping up.
    lag_s: float = 0.0
    # Intervals skipped (merged) because the pipeline fell behind.
    dropped_intervals: int = 0
    # The last interval whose readings were all published (and acknowledged by the broker).
    last_published: AwareDatetime | None = None
    # Bumped whenever meters, links, ERs or the grid change, so consumers know to reload the topology.
    world_version: int = 0


class Watermark(Message):
    """The latest interval the aggregator has committed for every meter it saw (retained)."""

    committed_until: AwareDatetime
    readings_committed: int = 0
    # The latest interval every live aggregator instance has received everything of: each has committed
    # every message the broker delivered before meter-sim's clock said the interval was published. An
    # interval closed by the bounded wait may still have batches queued in the broker; meter-sim's
    # flow-control window counts from the earlier of the two, so the broker's queue is never what
    # overflows (docs/operations.md, "Flow control"). None from an older aggregator.
    received_until: AwareDatetime | None = None


class ServiceStatus(Message):
    """A service's liveness: retained ``online`` on start, ``offline`` as last will and on shutdown.

    ``ready`` turns true once the service serves: its handlers are subscribed (the broker acknowledged
    them) and what it needs to answer (its database, its loaded state) works. ``online`` alone only
    says the broker connection is up (docs/architecture.md, "Readiness").
    """

    service: str
    instance: str
    state: Literal["online", "offline"]
    ready: bool = False
    version: str = "0.1.0"
    started_at: AwareDatetime | None = None
    detail: dict[str, Any] = {}
    # Republished every ``heartbeat_s`` while the service lives (docs/operations.md): a status whose
    # heartbeat is stale belongs to a hung process; ``problems`` lists stalled or failed tasks.
    heartbeat_at: AwareDatetime | None = None
    heartbeat_s: float | None = None
    problems: list[str] = []


class Rollup(Message):
    """An aggregate over a grid node (transformer, feeder, utility) or a parent meter for one interval."""

    level: Literal["transformer", "feeder", "utility"]
    node_id: int
    node_code: str
    timestamp: AwareDatetime
    interval_s: int = 60
    consumption_kWh: float
    production_kWh: float
    net_kWh: float
    apparent_kVA: float = Field(description="mean apparent power over the interval")
    capacity_kVA: float | None = None
    loading_pct: float | None = None
    meters_expected: int
    meters_reporting: int
    partial: bool = False
    # The node's coincident peak so far today (highest interval mean kVA) and when it happened.
    coincident_peak_kVA: float | None = None
    coincident_peak_at: AwareDatetime | None = None
    # Transformers only (IEEE C57.91, docs/grid-health.md): winding hot spot, aging acceleration factor
    # F_AA this interval, cumulative insulation loss of life, hours overloaded, and the health index 0-100.
    hot_spot_c: float | None = None
    aging_factor: float | None = None
    loss_of_life_h: float | None = None
    overload_h: float | None = None
    health_index: float | None = None


class ForecastPoint(Message):
    """One forecast hour: its start (simulated time) and the forecast kWh over it."""

    timestamp: AwareDatetime
    load_kWh: float
    net_load_kWh: float = Field(description="load minus PV production; negative in reverse flow")


class Forecast(Message):
    """A node's forecast from one model for one horizon, issued at ``issued_at`` (simulated time)."""

    level: Literal["transformer", "feeder", "utility"]
    node_id: int
    node_code: str
    horizon: Literal["hour-ahead", "day-ahead"]
    model: Literal["seasonal-naive", "regression"]
    issued_at: AwareDatetime
    points: list[ForecastPoint]


class PricePoint(Message):
    """The price of one hour: the time-of-use rate, the dynamic (real-time or critical-peak) price."""

    timestamp: AwareDatetime
    tou_rate: float
    price: float = Field(description="what the dynamic tariff charges per kWh in this hour")
    period: Literal["off-peak", "peak", "critical-peak"]


class PriceSignal(Message):
    """A node's current price and its schedule for the next 24 hours (retained)."""

    level: Literal["feeder", "utility"]
    node_code: str
    currency: str
    issued_at: AwareDatetime
    current: PricePoint
    schedule: list[PricePoint]


class ErrorBody(Message):
    """What went wrong: an HTTP-like status, the field concerned (when there is one) and why."""

    status: int = Field(ge=400, le=599)
    code: str
    message: str
    field: str | None = None
    details: dict[str, Any] = {}


class Request(Message):
    """A command envelope. Reply topic and correlation id travel here so it works on MQTT 3.1.1."""

    correlation_id: str
    reply_to: str | None = None
    data: dict[str, Any] = {}


class Reply(Message):
    """A reply envelope: ``ok`` with data, or ``error`` with an :class:`ErrorBody`."""

    correlation_id: str
    status: Literal["ok", "error"]
    data: Any = None
    error: ErrorBody | None = None
