"""Long work as jobs: a step of many intervals runs in chunks, reports progress and can be cancelled.

One model, :class:`StepJob`, is the HTTP resource (``GET /jobs/{id}``), the SSE event and the retained
MQTT message on ``{base}/v1/job/{job_id}``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from gridsim_shared.messages import ErrorBody, Message

__all__ = ["JOB_STATES", "JobState", "StepJob"]

JobState = Literal["running", "cancelling", "succeeded", "cancelled", "failed"]
JOB_STATES: tuple[JobState, ...] = ("running", "cancelling", "succeeded", "cancelled", "failed")


class StepJob(Message):
    """A step job: how far it has got, how fast, when it should end, and how it ended."""

    id: str = Field(description="the job's id (also the last level of its MQTT topic)")
    kind: Literal["step"] = "step"
    state: JobState = Field(
        description="running; cancelling (stops after the chunk in flight); succeeded, cancelled or failed"
    )
    intervals: int = Field(description="intervals asked for")
    done: int = Field(description="intervals simulated and stored so far")
    readings: int = Field(default=0, description="readings published so far")
    chunk: int = Field(description="intervals per request to meter-sim (adapted to take about a second)")
    rate: float | None = Field(default=None, description="intervals per real second so far")
    eta_s: float | None = Field(default=None, description="real seconds left at that rate")
    started_at: datetime = Field(description="real (wall-clock) time the job started")
    finished_at: datetime | None = None
    first_interval: datetime | None = Field(default=None, description="simulated start of the first interval")
    current_datetime: datetime | None = Field(
        default=None, description="the simulation clock after the last chunk"
    )
    stored: bool | None = Field(
        default=None, description="every chunk's readings were stored (null: unknown)"
    )
    error: ErrorBody | None = None
