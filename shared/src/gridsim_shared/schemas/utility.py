"""The utility service's HTTP/RPC models: forecasts and scores, prices, DR programmes and events, bills.

Times are simulated time (aware datetimes); energies in kWh, money in the billing currency.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from gridsim_shared.messages import ForecastPoint, PriceSignal
from gridsim_shared.schemas.billing import MONTH_PATTERN, MeterRef

__all__ = [
    "DrEvent",
    "DrEventChange",
    "DrEventCreate",
    "DrEventQuery",
    "DrEventRef",
    "DrEventUpdate",
    "DrLogEntry",
    "DynamicBill",
    "DynamicBillQuery",
    "Enrolment",
    "EnrolmentCreate",
    "EnrolmentQuery",
    "ForecastQuery",
    "ForecastRow",
    "ForecastView",
    "NodeRef",
    "Participation",
    "PriceQuery",
    "PriceSignal",
    "Program",
    "ProgramCreate",
    "ScoreQuery",
    "ScoreRow",
]

ProgramKind = Literal["ptr", "dlc", "cpp"]
Horizon = Literal["hour-ahead", "day-ahead"]
ForecastModel = Literal["seasonal-naive", "regression"]
# A grid node by code (the utility's, a feeder's or a transformer's); default: the first utility.
NodeRef = Annotated[
    str, StringConstraints(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
]
Id = Annotated[int, Field(ge=1, le=2**63 - 1)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---------------------------------------------------------------------------------------- forecasts
class ForecastQuery(_Request):
    """A node's latest forecasts for one horizon (both models), beside what was metered."""

    node: NodeRef | None = Field(default=None, description="grid node code; default: the utility")
    horizon: Horizon = "day-ahead"
    hours: int = Field(default=48, ge=1, le=24 * 31, description="hours back from the latest forecast hour")


class ForecastRow(BaseModel):
    """One hour: each model's forecast (when issued) and the metered value (once known)."""

    timestamp: datetime
    seasonal_naive_kWh: float | None
    regression_kWh: float | None
    actual_kWh: float | None
    seasonal_naive_net_kWh: float | None
    regression_net_kWh: float | None
    actual_net_kWh: float | None


class ForecastView(BaseModel):
    """A node's forecast for one horizon."""

    node_id: int
    node_code: str
    level: str
    horizon: Horizon
    issued_at: datetime | None = Field(description="when the latest forecast was issued (simulated time)")
    points: list[ForecastRow]
    latest: list[ForecastPoint] = Field(description="the regression's forecast hours not yet metered")


class ScoreQuery(_Request):
    """Scores over the rolling window (``GRIDSIM_UTILITY__SCORE_WINDOW_DAYS``)."""

    node: NodeRef | None = Field(default=None, description="one node; default: the utility and its feeders")


class ScoreRow(BaseModel):
    """MAPE and bias of one model at one node, quantity and horizon over the window."""

    node_code: str
    level: str
    quantity: Literal["load", "net_load"]
    horizon: Horizon
    model: ForecastModel
    mape_pct: float | None = Field(description="hours under 5 % of the mean |actual| left out")
    wape_pct: float | None = Field(description="Σ |forecast − actual| / Σ |actual|")
    bias_pct: float | None = Field(description="mean (forecast − actual) as % of the mean |actual|")
    hours: int
    window_start: datetime
    window_end: datetime


# ---------------------------------------------------------------------------------------- prices
class PriceQuery(_Request):
    """The current dynamic price and the next 24 hours of a node (the utility or a feeder)."""

    node: NodeRef | None = Field(default=None, description="the utility or a feeder code; default: utility")


# ---------------------------------------------------------------------------------------- programmes
class ProgramCreate(_Request):
    """A demand-response programme.

    - ``ptr`` (peak-time rebate): participants are paid ``rebate_per_kWh`` for each kWh under their CAISO
      10-in-10 baseline during events; they respond voluntarily (typically ~half of them).
    - ``dlc`` (direct load control): the utility cycles participants' flexible appliances (EV chargers,
      water heaters, AC); ``event_credit`` per event; most participants are curtailed.
    - ``cpp`` (critical-peak pricing): event hours are priced at ``cpp_rate``.
    """

    name: Annotated[str, StringConstraints(min_length=1, max_length=100, strip_whitespace=True)]
    kind: ProgramKind
    rebate_per_kWh: float = Field(default=0.0, ge=0, le=1000, allow_inf_nan=False)
    event_credit: float = Field(default=0.0, ge=0, le=100_000, allow_inf_nan=False)
    cpp_rate: float | None = Field(default=None, gt=0, le=1000, allow_inf_nan=False)
    compliance: float | None = Field(
        default=None, ge=0, le=1, description="share of participant-events that respond (seeded draw)"
    )
    shed_share: float | None = Field(
        default=None, gt=0, le=1, description="share of a participant's flexible load shed at level 3"
    )
    rebound_share: float = Field(
        default=0.5, ge=0, le=2, description="energy recovered after the event, as a share of the shed"
    )
    auto_peak_share: float | None = Field(
        default=None,
        gt=0,
        le=5,
        description="issue an event when the day-ahead forecast exceeds this share of the 28-day peak",
    )
    auto_overload: bool = Field(
        default=False,
        description="issue an event to the participants under a transformer when it is reported overloaded",
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.kind == "cpp" and self.cpp_rate is None:
            msg = "cpp_rate: a critical-peak pricing programme needs its event price"
            raise ValueError(msg)
        return self


class Program(BaseModel):
    """A stored programme."""

    id: int
    name: str
    kind: ProgramKind
    rebate_per_kWh: float
    event_credit: float
    cpp_rate: float | None
    compliance: float
    shed_share: float
    rebound_share: float
    auto_peak_share: float | None
    auto_overload: bool
    participants: int
    created_at: datetime


class EnrolmentCreate(_Request):
    """Enrol a meter (its ER must have flexible load: EV charger, water heater, AC, heating or pump)."""

    program_id: Id
    meter_id: MeterRef


class EnrolmentQuery(_Request):
    """A programme's participants."""

    program_id: Id


class Enrolment(BaseModel):
    """A participant: its meter and the flexible appliance power behind it."""

    program_id: int
    meter_id: int
    meter_code: str
    flexible_kW: float
    rated_kW: float
    enrolled_at: datetime


# ---------------------------------------------------------------------------------------- events
class DrEventCreate(_Request):
    """A DR event on a programme's participants, from ``start`` for ``duration_min`` minutes."""

    program_id: Id
    start: AwareDatetime = Field(description="simulated time; not in the past")
    duration_min: int = Field(default=60, ge=15, le=24 * 60)
    level: int = Field(default=2, ge=1, le=3, description="1 moderate, 2 high, 3 special (OpenADR simple)")
    reason: Annotated[str, StringConstraints(max_length=200)] = ""


class DrEventChange(_Request):
    """Change an event not yet ended: its level or its length (from its start)."""

    level: int | None = Field(default=None, ge=1, le=3)
    duration_min: int | None = Field(default=None, ge=15, le=24 * 60)


class DrEventUpdate(DrEventChange):
    """A change to one event (the command's body)."""

    event_id: Id


class DrEventRef(_Request):
    """One event."""

    event_id: Id


class DrEventQuery(_Request):
    """Events, newest first."""

    active: bool | None = Field(default=None, description="true: scheduled and not ended")
    limit: int = Field(default=100, ge=1, le=1000)


class Participation(BaseModel):
    """One participant's part in an event and, once metered, its performance."""

    meter_id: int
    complied: bool
    shed_factor: float = Field(description="multiplier on its load during the event (1: no response)")
    baseline_kWh: float | None = Field(description="CAISO 10-in-10 with day-of adjustment, event hours")
    metered_kWh: float | None
    shed_kWh: float | None = Field(description="baseline − metered (negative: it used more)")
    credit: float | None


class DrEvent(BaseModel):
    """A stored event with its participants."""

    id: int
    program_id: int
    program_kind: ProgramKind
    start: datetime
    end: datetime
    level: int
    trigger: Literal["operator", "forecast-peak", "overload", "openadr"]
    reason: str
    status: Literal["scheduled", "active", "completed", "cancelled"]
    participants: list[Participation]
    shed_kWh: float | None = Field(description="Σ participants' baseline − metered over the event hours")
    rebound_kWh: float | None = Field(
        description="Σ metered − baseline of complying participants in the hours after the event"
    )
    created_sim: datetime


class DrLogEntry(BaseModel):
    """A change to a programme, enrolment or event, at simulated time."""

    id: int
    sim_time: datetime
    action: str
    data: dict[str, object]


# ---------------------------------------------------------------------------------------- bills
class DynamicBillQuery(_Request):
    """A meter's month on the dynamic tariff."""

    meter_id: MeterRef
    month: str = Field(pattern=MONTH_PATTERN, description="YYYY-MM", examples=["2025-06"])


class DynamicBill(BaseModel):
    """Σ hourly kWh × hourly price, minus DR credits, rounded once (to 0.01)."""

    meter_id: int
    meter_code: str
    month: str
    status: Literal["final", "provisional"]
    currency: str
    consumed_kWh: float
    energy_charge: float
    flat_equivalent: float = Field(description="the same kWh at the flat grid rate, for comparison")
    dr_credits: float
    dr_events: int
    amount_due: float
    generated_at: datetime
