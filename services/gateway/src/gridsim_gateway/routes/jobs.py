"""Long work as jobs: ``GET /jobs``, ``GET /jobs/{id}``, its progress as SSE, and cancel.

A job is started by ``POST /simulation/step`` beyond ``GRIDSIM_GATEWAY__STEP_JOB_INTERVALS`` intervals (or
with ``?job=true``), which answers 202 with the job and its ``Location``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from sse_starlette import EventSourceResponse, ServerSentEvent

from gridsim_gateway.jobs import FINAL_STATES, JobRunner
from gridsim_shared.schemas.jobs import StepJob

router = APIRouter(tags=["jobs"])


async def get_jobs(request: Request) -> JobRunner:
    """The gateway's job runner."""
    jobs: JobRunner = request.state.jobs
    return jobs


JobsDep = Annotated[JobRunner, Depends(get_jobs)]


@router.get("/jobs")
async def list_jobs(jobs: JobsDep) -> list[StepJob]:
    """Jobs this gateway runs or ran (the latest 100 finished ones), newest first."""
    return jobs.list()


@router.get("/jobs/{job_id}")
async def get_job(job_id: str, jobs: JobsDep) -> StepJob:
    """A job's progress: intervals done of those asked, rate, ETA, the clock, and how it ended."""
    return jobs.get(job_id)


@router.post("/jobs/{job_id}/cancel")
async def cancel_job(job_id: str, jobs: JobsDep) -> StepJob:
    """Stop the job after the chunk in flight (state ``cancelling``, then ``cancelled``). The clock stays
    after the last whole chunk: every interval before it was simulated and stored. Idempotent."""
    return await jobs.cancel(job_id)


@router.get("/jobs/{job_id}/events", response_class=EventSourceResponse)
async def job_events(job_id: str, request: Request, jobs: JobsDep) -> EventSourceResponse:
    """Server-Sent Events: ``progress`` (a StepJob) now and after every chunk, then ``done`` when it ends."""
    jobs.get(job_id)  # 404 before the stream starts

    async def events() -> AsyncIterator[ServerSentEvent]:
        async for state in jobs.follow(job_id):
            if await request.is_disconnected():
                return
            final = state.state in FINAL_STATES
            yield ServerSentEvent(data=state.model_dump_json(), event="done" if final else "progress")

    return EventSourceResponse(events(), ping=15)
