"""The simulation clock over HTTP and RPC: ``GET /simulation-time`` and the clock's controls (meter-sim)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from gridsim_shared.messages import ClockState

__all__ = [
    "MAX_SPEED",
    "MAX_STEP_INTERVALS",
    "JumpRequest",
    "SimulationTime",
    "SpeedRequest",
    "StepRequest",
    "StepResult",
]

MAX_SPEED = 1_000_000.0  # simulated seconds per real second; beyond this the clock only drops intervals
MAX_STEP_INTERVALS = 44_640  # one month of minutes in one request


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SpeedRequest(_Request):
    """``PUT /simulation/speed``: simulated seconds per real second (1440 = a real minute is a day)."""

    speed: float = Field(gt=0, le=MAX_SPEED, examples=[1440.0])


class JumpRequest(_Request):
    """``POST /simulation/jump``: move the clock to this time (rounded down to an interval boundary).

    No readings are produced for the intervals jumped over.
    """

    to: AwareDatetime = Field(examples=["2025-12-21T00:00:00Z"])


class StepRequest(_Request):
    """``POST /simulation/step``: simulate and publish this many intervals as fast as possible."""

    intervals: int = Field(default=1, ge=1, le=MAX_STEP_INTERVALS, examples=[60])


class SimulationTime(BaseModel):
    """The seed's ``GET /simulation-time`` response (``current_datetime``) plus the clock's state."""

    current_datetime: datetime = Field(examples=["2025-06-20T00:00:00Z"])
    state: Literal["running", "paused"]
    speed: float = Field(description="simulated seconds per real second")
    interval_s: int = Field(description="simulated seconds per reading")
    tick: int = Field(description="intervals simulated since the start date")
    lag_s: float = Field(description="how far behind schedule the last interval was published (real s)")
    dropped_intervals: int = Field(
        default=0, description="intervals skipped because the pipeline fell behind"
    )
    last_published: datetime | None = Field(
        default=None, description="start of the last interval whose readings the broker acknowledged"
    )
    world_version: int = 0

    @classmethod
    def of(cls, clock: ClockState) -> SimulationTime:
        """The HTTP view of a clock message."""
        return cls(
            current_datetime=clock.current_datetime,
            state=clock.state,
            speed=clock.speed,
            interval_s=clock.interval_s,
            tick=clock.tick,
            lag_s=clock.lag_s,
            dropped_intervals=clock.dropped_intervals,
            last_published=clock.last_published,
            world_version=clock.world_version,
        )


class StepResult(BaseModel):
    """What a step did: intervals simulated, readings published, and whether they are stored yet."""

    intervals: int
    readings: int = Field(description="readings published by this instance (and acknowledged by the broker)")
    first_interval: datetime | None = Field(description="start of the first interval stepped")
    last_interval: datetime | None = Field(description="start of the last interval stepped")
    clock: SimulationTime
    stored: bool | None = Field(
        description="true: the aggregator committed every stepped interval; false: it did not within "
        "the step timeout; null: no aggregator is online (or nothing was published)"
    )
    shards_caught_up: bool = Field(
        default=True, description="every online meter-sim shard published the stepped intervals in time"
    )
    elapsed_s: float
