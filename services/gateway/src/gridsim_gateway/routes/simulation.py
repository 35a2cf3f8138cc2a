"""The simulation clock: the seed's ``GET /simulation-time`` and the clock's controls (owned by meter-sim)."""

from __future__ import annotations

from fastapi import APIRouter

from gridsim_gateway.deps import BusDep, SettingsDep, StateDep
from gridsim_shared.errors import ClockNotReady
from gridsim_shared.schemas.simulation import (
    JumpRequest,
    SimulationTime,
    SpeedRequest,
    StepRequest,
    StepResult,
)

router = APIRouter(tags=["simulation"])

SERVICE = "meter-sim"
# A step simulates, publishes and waits for storage; allow for a month of intervals on a big world.
_STEP_TIMEOUT_FLOOR_S = 600.0


@router.get("/simulation-time")
async def simulation_time(live: StateDep) -> SimulationTime:
    """Current simulated time, from the retained clock topic (the seed's ``current_datetime`` and more)."""
    clock = live.clock
    if clock is None:
        msg = "the simulation clock has not been published yet (is meter-sim running?)"
        raise ClockNotReady(msg)
    return SimulationTime.of(clock)


@router.post("/simulation/pause")
async def pause(bus: BusDep) -> SimulationTime:
    """Pause the clock. Idempotent: pausing a paused clock is not an error."""
    return SimulationTime.model_validate(await bus.request(SERVICE, "pause"))


@router.post("/simulation/resume")
async def resume(bus: BusDep) -> SimulationTime:
    """Run the clock again on the wall-clock schedule (``speed`` simulated seconds per real second)."""
    return SimulationTime.model_validate(await bus.request(SERVICE, "resume"))


@router.put("/simulation/speed")
async def set_speed(body: SpeedRequest, bus: BusDep) -> SimulationTime:
    """Set the speed: simulated seconds per real second (1440 = a real minute is a simulated day)."""
    return SimulationTime.model_validate(await bus.request(SERVICE, "set_speed", body))


@router.post("/simulation/jump")
async def jump(body: JumpRequest, bus: BusDep) -> SimulationTime:
    """Move the clock to a time (rounded down to an interval). Nothing is produced for skipped intervals.

    The time needs a zone (``Z`` or ``+05:30``) and may not be before the simulation's start date.
    """
    return SimulationTime.model_validate(await bus.request(SERVICE, "jump", body))


@router.post("/simulation/step")
async def step(body: StepRequest, bus: BusDep, settings: SettingsDep) -> StepResult:
    """Simulate ``intervals`` intervals (1 to 44,640, a month of minutes) as fast as possible.

    Returns once the broker has acknowledged every reading of those intervals and, when an aggregator
    is online, once it has stored them (``stored``; bounded by ``sim.step_ack_timeout_s``), so a script
    can step and then read. Works whether the clock is paused or running.
    """
    timeout = max(_STEP_TIMEOUT_FLOOR_S, settings.mqtt.rpc_timeout_s, settings.sim.step_ack_timeout_s * 2)
    return StepResult.model_validate(await bus.request(SERVICE, "step", body, timeout=timeout))
