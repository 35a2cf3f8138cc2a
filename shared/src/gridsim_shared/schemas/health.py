"""Request and response models of grid health (docs/grid-health.md): outages and restoration, remote
disconnect and reconnect, the on-demand read, feeder switching, IEEE 1366 reliability indices, transformer
health (IEEE C57.91) and the monthly service-level report. Defined once; the gateway validates HTTP bodies
with them and the owning service (meter-sim or the aggregator) validates the same bodies over MQTT.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from gridsim_shared.schemas.billing import MONTH_PATTERN
from gridsim_shared.schemas.meters import GridRef, MeterRef

__all__ = [
    "DisconnectRequest",
    "FeederSwitch",
    "FeederSwitchResult",
    "MeterRead",
    "MeterReadRequest",
    "Month",
    "Outage",
    "OutageCreate",
    "OutageListRequest",
    "OutageRefRequest",
    "ReliabilityIndices",
    "ReliabilityRequest",
    "SlaMeterRow",
    "SlaReport",
    "SlaRequest",
    "SupplyResult",
    "TransformerHealth",
    "TransformerHealthRequest",
]

Month = Annotated[str, StringConstraints(pattern=MONTH_PATTERN)]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
OutageScope = Literal["transformer", "section", "feeder"]
OutageCause = Literal["fault", "planned", "overload_trip"]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ------------------------------------------------------------------------------------------ outages


class OutageCreate(_Request):
    """Take a transformer, a feeder section (some of a feeder's transformers) or a whole feeder off supply.

    ``fault``: from the next interval (or ``start``) until an operator restores it or a seeded log-normal
    repair time has passed (``duration_s`` overrides the draw). ``planned``: ``start`` and ``duration_s``
    are required (it may lie ahead). ``overload_trip`` is what meter-sim records when a transformer trips.
    """

    scope: OutageScope
    target: GridRef = Field(description="the transformer (scope transformer) or the feeder (section, feeder)")
    transformers: list[GridRef] | None = Field(
        default=None,
        min_length=1,
        max_length=1000,
        description="scope section: the feeder's transformers out",
    )
    cause: Literal["fault", "planned"] = "fault"
    start: datetime | None = Field(default=None, description="simulated time; default: the next interval")
    duration_s: int | None = Field(default=None, ge=1, le=365 * 86400)
    message: Text | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if (self.scope == "section") != (self.transformers is not None):
            msg = "transformers: give the section's transformers with scope section, and only then"
            raise ValueError(msg)
        if self.cause == "planned" and (self.start is None or self.duration_s is None):
            msg = "duration_s: a planned outage needs a start and a duration"
            raise ValueError(msg)
        return self


class Outage(BaseModel):
    """A stored outage."""

    id: int
    scope: OutageScope
    cause: OutageCause
    node_id: int
    node_code: str
    feeder_code: str
    transformer_codes: list[str]
    start: datetime
    planned_end: datetime | None
    restored_at: datetime | None
    restored_by: Literal["repair", "operator", "schedule"] | None
    customers: int = Field(description="meters taken off supply (customers interrupted, IEEE 1366)")
    momentary: bool | None = Field(description="restored within 5 minutes (IEEE 1366); null while open")
    message: str | None


class OutageRefRequest(_Request):
    """One outage."""

    outage_id: int = Field(ge=1, le=2**63 - 1)


class OutageListRequest(_Request):
    """Outages, newest first; ``open``: only those not restored."""

    feeder: GridRef | None = None
    open: bool | None = None
    limit: int = Field(default=100, ge=1, le=1000)


# ------------------------------------------------------------------ remote disconnect, on-demand read


class DisconnectRequest(_Request):
    """Open (disconnect) or close (reconnect) a meter's service switch remotely."""

    meter: MeterRef
    reason: Text | None = None


class SupplyResult(BaseModel):
    """A meter's service switch after a disconnect or reconnect."""

    meter_id: int
    meter_code: str
    disconnected: bool
    sim_time: datetime = Field(description="when it takes effect: the start of the next interval")
    log_id: int


class MeterReadRequest(_Request):
    """An on-demand read of one meter."""

    meter: MeterRef


class MeterRead(BaseModel):
    """A meter's registers and its last interval, at simulated now (what the head-end gets back)."""

    meter_id: int
    meter_code: str
    sim_time: datetime = Field(description="simulated now: the end of the last simulated interval")
    import_kWh: float
    export_kWh: float
    import_kVARh: float
    supplied: bool = Field(description="false while an outage has taken the meter off supply")
    disconnected: bool
    last_interval: datetime | None
    avg_voltage: float | None
    avg_current: float | None
    consumption_kWh: float | None
    production_kWh: float | None


# ------------------------------------------------------------------------------------ feeder switching


class FeederSwitch(_Request):
    """Move a transformer (and its meters) to another feeder of the same utility (a switching operation)."""

    transformer: GridRef
    feeder: GridRef
    reason: Text | None = None


class FeederSwitchResult(BaseModel):
    """A switching operation done: from which feeder to which, effective from the next interval."""

    transformer_code: str
    from_feeder: str
    to_feeder: str
    meters: int
    sim_time: datetime
    log_id: int


# ------------------------------------------------------------------------------- reliability indices


class ReliabilityRequest(_Request):
    """IEEE 1366 indices of one month, per feeder (all feeders when none is given)."""

    month: Month
    feeder: GridRef | None = None


class ReliabilityIndices(BaseModel):
    """IEEE 1366-2022 indices of one feeder and month (interruptions counted in the month they start)."""

    feeder_code: str
    month: str
    customers_served: int = Field(description="N_T: meters on the feeder")
    sustained_interruptions: int
    momentary_interruptions: int
    customers_interrupted: int = Field(description="Σ N_i over sustained interruptions")
    customer_minutes: float = Field(description="Σ r_i × N_i (minutes)")
    SAIFI: float = Field(description="Σ N_i / N_T (interruptions per customer)")
    SAIDI: float = Field(description="Σ r_i N_i / N_T (minutes per customer)")
    CAIDI: float | None = Field(description="SAIDI / SAIFI (minutes per interruption); null without any")
    MAIFI: float = Field(description="Σ N_mi / N_T (momentary interruptions per customer)")


# ---------------------------------------------------------------------------------- transformer health


class TransformerHealthRequest(_Request):
    """Transformer health, all transformers or those of one feeder."""

    feeder: GridRef | None = None


class TransformerHealth(BaseModel):
    """A transformer's insulation aging (IEEE C57.91 clause 5) and health index."""

    node_id: int
    transformer_code: str
    feeder_code: str
    as_of: datetime | None
    hot_spot_c: float | None
    aging_factor: float | None = Field(description="F_AA of the last interval (1 at 110 °C)")
    loss_of_life_h: float = Field(description="cumulative Σ F_AA Δt (hours of normal life used)")
    loss_of_life_pct: float = Field(description="of the 180,000 h normal insulation life")
    overload_h: float
    overloaded: bool
    health_index: float = Field(description="0 (replace) to 100 (new); docs/grid-health.md")


# ------------------------------------------------------------------------------------- service levels


class SlaRequest(_Request):
    """The monthly service-level report of one feeder."""

    feeder: GridRef
    month: Month


class SlaMeterRow(BaseModel):
    """One meter's service levels in the month."""

    meter_id: int
    meter_code: str
    readings: int
    expected: int
    completeness: float
    voltage_compliance: float | None


class SlaReport(BaseModel):
    """A feeder's service levels in a month, with the thresholds and which ones it breaches."""

    feeder_code: str
    month: str
    intervals: int = Field(description="intervals the aggregator closed in the month")
    readings: int
    expected: int
    completeness: float | None
    voltage_low_v: float
    voltage_high_v: float
    voltage_compliance: float | None
    latency_p50_s: float | None
    latency_p95_s: float | None
    latency_max_s: float | None
    thresholds: dict[str, float]
    breaches: list[str]
    meters: list[SlaMeterRow]

    def csv_rows(self) -> list[dict[str, Any]]:
        """The per-meter table, each row with the feeder's figures (for the CSV form)."""
        head = {"feeder_code": self.feeder_code, "month": self.month}
        return [{**head, **m.model_dump()} for m in self.meters]
