"""Step jobs: a long ``POST /simulation/step`` run as a series of ordinary steps, in the background.

Each chunk is one ``step`` command to meter-sim (which simulates, publishes and waits for storage), so a job
is exactly the steps a script could send itself; between chunks the job publishes its progress (MQTT,
retained; SSE listeners) and checks for a cancel. Chunks are sized from the rate so far to take about
``gateway.step_job_chunk_s``: progress stays fresh and a cancel stops within about that long, leaving the
clock after the last whole chunk. Jobs live in the gateway instance that runs them (their retained MQTT
message outlives it); one step job runs at a time.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

from gridsim_shared import channels
from gridsim_shared.bus import Bus
from gridsim_shared.commands import meter_sim
from gridsim_shared.errors import ConflictError, NotFoundError, error_body
from gridsim_shared.schemas.jobs import StepJob
from gridsim_shared.schemas.simulation import StepRequest
from gridsim_shared.settings import Settings
from gridsim_shared.topics import JobPath

__all__ = ["FINAL_STATES", "JobRunner", "next_chunk"]

_LOGGER = logging.getLogger(__name__)
FINAL_STATES = frozenset({"succeeded", "cancelled", "failed"})
_FIRST_CHUNK = 10
_MAX_CHUNK = 1440
_KEEP_FINISHED = 100  # finished jobs remembered for GET /jobs/{id}


def next_chunk(rate: float | None, target_s: float, remaining: int) -> int:
    """Intervals for the next request: about ``target_s`` seconds at ``rate`` intervals/s, 1..1440."""
    if rate is None or rate <= 0:
        return max(1, min(_FIRST_CHUNK, remaining))
    return max(1, min(int(rate * target_s), _MAX_CHUNK, remaining))


class _Job:
    """A running job's mutable state and its listeners."""

    def __init__(self, job: StepJob) -> None:
        self.state = job
        self.cancel = asyncio.Event()
        self.task: asyncio.Task[None] | None = None


class JobRunner:
    """Starts, tracks, publishes and cancels step jobs for one gateway."""

    def __init__(self, bus: Bus, settings: Settings) -> None:
        self.bus = bus
        self.settings = settings
        self._jobs: dict[str, _Job] = {}

    # ------------------------------------------------------------ queries
    def get(self, job_id: str) -> StepJob:
        """The job's latest state; 404 naming ``job_id`` when unknown."""
        return self._job(job_id).state

    def list(self) -> list[StepJob]:
        """Every job this gateway knows, newest first."""
        return sorted((j.state for j in self._jobs.values()), key=lambda s: s.started_at, reverse=True)

    def _job(self, job_id: str) -> _Job:
        job = self._jobs.get(job_id)
        if job is None:
            msg = f"job_id: no job {job_id!r} (jobs live in the gateway that started them)"
            raise NotFoundError(msg, field="job_id")
        return job

    async def follow(self, job_id: str, poll_s: float = 0.1) -> AsyncIterator[StepJob]:
        """The job's state now and after every change, until it has finished."""
        job = self._job(job_id)
        seen: StepJob | None = None
        while True:
            state = job.state
            if state is not seen:
                seen = state
                yield state
                if state.state in FINAL_STATES:
                    return
            await asyncio.sleep(poll_s)

    # ------------------------------------------------------------ commands
    async def start(self, intervals: int) -> StepJob:
        """Start a step job of ``intervals`` intervals; 409 while another step job runs."""
        running = [j.state.id for j in self._jobs.values() if j.state.state not in FINAL_STATES]
        if running:
            msg = f"a step job is already running ({running[0]}); cancel it or wait for it"
            raise ConflictError(msg, field="intervals", details={"job_id": running[0]})
        job = _Job(
            StepJob(
                id=secrets.token_hex(8),
                state="running",
                intervals=intervals,
                done=0,
                chunk=next_chunk(None, self.settings.gateway.step_job_chunk_s, intervals),
                started_at=datetime.now(UTC),
            )
        )
        self._forget_old()
        self._jobs[job.state.id] = job
        await self._publish(job)
        job.task = asyncio.create_task(self._run(job), name=f"step-job-{job.state.id}")
        return job.state

    async def cancel(self, job_id: str) -> StepJob:
        """Ask a job to stop after the chunk in flight (idempotent; a finished job is returned as is)."""
        job = self._job(job_id)
        if job.state.state == "running":
            job.cancel.set()
            await self._update(job, state="cancelling")
        return job.state

    async def close(self) -> None:
        """Cancel every running job and wait for them (gateway shutdown)."""
        for job in self._jobs.values():
            job.cancel.set()
        tasks = [j.task for j in self._jobs.values() if j.task is not None and not j.task.done()]
        if tasks:
            await asyncio.wait(tasks, timeout=30)

    # ------------------------------------------------------------ the work
    def _forget_old(self) -> None:
        finished = [j for j in self._jobs.values() if j.state.state in FINAL_STATES]
        finished.sort(key=lambda j: j.state.started_at)
        for job in finished[: max(0, len(finished) - _KEEP_FINISHED + 1)]:
            del self._jobs[job.state.id]

    async def _publish(self, job: _Job) -> None:
        try:
            await self.bus.publish(channels.JOB, job.state, JobPath(job.state.id))
        except Exception:  # progress on MQTT is best effort; HTTP and SSE still have it
            _LOGGER.warning("could not publish the progress of job %s", job.state.id, exc_info=True)

    async def _update(self, job: _Job, **changes: object) -> None:
        job.state = job.state.model_copy(update=changes)
        await self._publish(job)

    async def _run(self, job: _Job) -> None:
        target_s = self.settings.gateway.step_job_chunk_s
        timeout = max(600.0, self.settings.mqtt.rpc_timeout_s, self.settings.sim.step_ack_timeout_s * 2)
        started = time.monotonic()
        done = readings = 0
        stored: bool | None = True
        rate: float | None = None
        try:
            while done < job.state.intervals and not job.cancel.is_set():
                chunk = next_chunk(rate, target_s, job.state.intervals - done)
                result = await self.bus.call(meter_sim.STEP, StepRequest(intervals=chunk), timeout=timeout)
                done += result.intervals
                readings += result.readings
                if result.stored is not True:
                    stored = result.stored if stored is not False else False
                elapsed = time.monotonic() - started
                rate = done / elapsed if elapsed > 0 else None
                left = job.state.intervals - done
                await self._update(
                    job,
                    done=done,
                    readings=readings,
                    chunk=chunk,
                    rate=round(rate, 3) if rate else None,
                    eta_s=round(left / rate, 1) if rate else None,
                    first_interval=job.state.first_interval or result.first_interval,
                    current_datetime=result.clock.current_datetime,
                    stored=stored,
                )
        except Exception as exc:  # any failure ends the job, reported, never silently
            _LOGGER.warning("step job %s failed after %d intervals", job.state.id, done, exc_info=True)
            await self._finish(job, "failed", error=error_body(exc))
            return
        await self._finish(job, "cancelled" if done < job.state.intervals else "succeeded")

    async def _finish(self, job: _Job, state: str, **changes: object) -> None:
        await self._update(job, state=state, eta_s=0.0, finished_at=datetime.now(UTC), **changes)
