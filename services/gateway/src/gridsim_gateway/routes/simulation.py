"""The simulation clock: the seed's ``GET /simulation-time`` and the clock's controls (owned by meter-sim)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, Response

from gridsim_gateway.deps import BusDep, SettingsDep, StateDep
from gridsim_gateway.routes.jobs import JobsDep
from gridsim_shared.commands import meter_sim
from gridsim_shared.errors import ClockNotReady
from gridsim_shared.schemas.jobs import StepJob
from gridsim_shared.schemas.simulation import (
    JumpRequest,
    SimulationTime,
    SpeedRequest,
    StepRequest,
    StepResult,
)

router = APIRouter(tags=["simulation"])

# A step simulates, publishes and waits for storage; allow for a month of intervals on a big world.
_STEP_TIMEOUT_FLOOR_S = 600.0


@router.get("/simulation-time", response_model=SimulationTime)
async def simulation_time(live: StateDep) -> Response:
    """Current simulated time, from the retained clock topic (the seed's ``current_datetime`` and more)."""
    # Served as the bytes serialised when the clock message arrived: no per-request model or encoding.
    body = live.simulation_time_json
    if body is None:
        msg = "the simulation clock has not been published yet (is meter-sim running?)"
        raise ClockNotReady(msg)
    return Response(body, media_type="application/json")


@router.post("/simulation/pause")
async def pause(bus: BusDep) -> SimulationTime:
    """Pause the clock. Idempotent: pausing a paused clock is not an error."""
    return await bus.call(meter_sim.PAUSE)


@router.post("/simulation/resume")
async def resume(bus: BusDep) -> SimulationTime:
    """Run the clock again on the wall-clock schedule (``speed`` simulated seconds per real second)."""
    return await bus.call(meter_sim.RESUME)


@router.put("/simulation/speed")
async def set_speed(body: SpeedRequest, bus: BusDep) -> SimulationTime:
    """Set the speed: simulated seconds per real second (1440 = a real minute is a simulated day)."""
    return await bus.call(meter_sim.SET_SPEED, body)


@router.post("/simulation/jump")
async def jump(body: JumpRequest, bus: BusDep) -> SimulationTime:
    """Move the clock to a time (rounded down to an interval). Nothing is produced for skipped intervals.

    The time needs a zone (``Z`` or ``+05:30``) and may not be before the simulation's start date.
    """
    return await bus.call(meter_sim.JUMP, body)


@router.post(
    "/simulation/step",
    response_model=StepResult,
    responses={202: {"model": StepJob, "description": "a job was started (Location: /jobs/{id})"}},
)
async def step(
    *,
    body: StepRequest,
    bus: BusDep,
    settings: SettingsDep,
    jobs: JobsDep,
    job: Annotated[bool, Query(description="run as a job (202) whatever the number of intervals")] = False,
) -> StepResult | JSONResponse:
    """Simulate ``intervals`` intervals (1 to 44,640, a month of minutes) as fast as possible.

    Up to ``GRIDSIM_GATEWAY__STEP_JOB_INTERVALS`` (default 1,440) intervals, it returns once the broker
    has acknowledged every reading of those intervals and, when an aggregator is online, once it has stored
    them (``stored``; bounded by ``sim.step_ack_timeout_s``), so a script can step and then read. Beyond
    that (or with ``job=true``) it answers **202** at once with a job (``Location: /jobs/{id}``): progress in
    intervals with rate and ETA on ``GET /jobs/{id}``, ``GET /jobs/{id}/events`` (SSE) and MQTT
    ``{base}/v1/job/{id}``; ``POST /jobs/{id}/cancel`` stops it after the chunk in flight. 409 while another
    step job runs. Works whether the clock is paused or running.
    """
    if job or body.intervals > settings.gateway.step_job_intervals:
        started = await jobs.start(body.intervals)
        return JSONResponse(
            started.model_dump(mode="json"), status_code=202, headers={"location": f"/jobs/{started.id}"}
        )
    timeout = max(_STEP_TIMEOUT_FLOOR_S, settings.mqtt.rpc_timeout_s, settings.sim.step_ack_timeout_s * 2)
    return await bus.call(meter_sim.STEP, body, timeout=timeout)
