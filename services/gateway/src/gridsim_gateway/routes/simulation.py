"""The simulation clock as the seed's ``GET /simulation-time``."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from gridsim_gateway.deps import StateDep
from gridsim_shared.errors import GridsimError

router = APIRouter(tags=["simulation"])


class ClockNotReady(GridsimError):
    """meter-sim has not published the clock yet."""

    status = 503
    code = "clock_not_ready"


class SimulationTime(BaseModel):
    """The seed's response (``current_datetime``) plus the clock's state."""

    current_datetime: datetime = Field(examples=["2025-06-20T00:00:00Z"])
    state: Literal["running", "paused"]
    speed: float
    interval_s: int
    tick: int
    lag_s: float


@router.get("/simulation-time")
async def simulation_time(live: StateDep) -> SimulationTime:
    """Current simulated time, from the retained clock topic."""
    clock = live.clock
    if clock is None:
        msg = "the simulation clock has not been published yet (is meter-sim running?)"
        raise ClockNotReady(msg)
    return SimulationTime(
        current_datetime=clock.current_datetime,
        state=clock.state,
        speed=clock.speed,
        interval_s=clock.interval_s,
        tick=clock.tick,
        lag_s=clock.lag_s,
    )
