"""What closing decides, as pure functions: which intervals may close now, and what closing one does to
the time rollups. The :class:`~gridsim_aggregator.closer.Closer` gathers the inputs (committed batches,
the clock, the instances' progress) and carries the decisions out; nothing here touches a connection.

The closing rule for interval T (oldest first, never out of order):

1. *complete*: T directly follows the last closed interval and every transformer with a meter expected
   to report (linked, online, K > 0) has a batch committed for T; or
2. *clocked*: meter-sim's clock said ``last_published >= T`` and every live aggregator instance has
   committed every message it received before that clock message; or
3. *bounded wait*: ``close_after_s`` has passed since T's latest batch was committed (no progress: an
   interval whose batches are still arriving is not given up on, however many there are), counted from no
   earlier than the closer's own pause ended (``resumed_at``): loading the topology of five million meters
   holds ingest for ~17 s, and the batches waiting in the broker meanwhile are not "no progress".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from gridsim_aggregator import domain, repository
from gridsim_aggregator.repository import PendingInterval

__all__ = ["RollupPlan", "intervals_to_close", "time_rollup_plan"]


def intervals_to_close(
    pending: list[PendingInterval],
    clock_marks: Mapping[datetime, float],
    *,
    committed_until: datetime | None,
    clocked_until: datetime | None,
    expected_transformers: frozenset[str] | set[str],
    interval_s: int,
    close_after_s: float,
    now: float,
    resumed_at: float | None = None,
) -> list[datetime]:
    """The intervals the rule lets close now, oldest first: the run up to the first that must wait.

    ``pending`` are the intervals with committed batches; ``clock_marks`` the intervals meter-sim's clock
    announced as published, each with when (monotonic seconds) it was first seen, for the bounded wait of
    an interval no batch of which was committed. ``resumed_at`` (monotonic seconds): when the aggregator
    last went back to ingesting after holding it (a topology load); no wait counts from before it.
    """
    candidates = {p.ts: p for p in pending}
    marks = {ts: seen for ts, seen in clock_marks.items() if committed_until is None or ts > committed_until}
    ready: list[datetime] = []
    previous = committed_until
    for ts in sorted(set(candidates) | set(marks)):
        p = candidates.get(ts)
        # "Complete" needs the interval right after the last one closed: an interval with no batch
        # committed yet (a flush being retried, another instance's share) leaves a gap that only the
        # clock or the bounded wait may close over.
        contiguous = previous is None or ts - previous <= timedelta(seconds=interval_s)
        complete = contiguous and p is not None and expected_transformers <= p.transformers
        clocked = clocked_until is not None and ts <= clocked_until
        idle = p.idle_s if p is not None else now - marks[ts]
        if resumed_at is not None:
            idle = min(idle, now - resumed_at)
        if not (complete or clocked or idle >= close_after_s):
            break
        ready.append(ts)
        previous = ts
    return ready


@dataclass(frozen=True)
class RollupPlan:
    """What closing an interval does to the time rollups (pure: decided by :func:`time_rollup_plan`)."""

    timescale: bool  # refresh continuous aggregates instead of writing the rollup tables
    start: datetime  # 15-minute windows [start, end) to (re)compute
    end: datetime
    hours: tuple[datetime, datetime]  # hour buckets [h0, h1) they touch
    days: tuple[datetime, datetime]  # day buckets [d0, d1) they touch
    advance: bool  # move rolled_until to ``end`` (not for a recomputation)
    retention_before: datetime | None  # drop raw readings before this (simulated time)
    compress_before: datetime | None  # compress chunks before this (TimescaleDB only)


def windows_left_unrolled(
    committed_until: datetime | None, rolled_until: datetime | None, interval_s: int
) -> bool:
    """Whether the intervals closed so far complete a 15-minute window that is not rolled: closing an
    interval and rolling its window are two transactions, and a process stopped between them leaves one.
    The same rule as :func:`time_rollup_plan` (before any roll, rolling starts at the day of the interval).
    """
    if committed_until is None:
        return False
    end = domain.bucket_start(committed_until + timedelta(seconds=interval_s), repository.ROLLUP_WINDOW)
    start = (
        rolled_until if rolled_until is not None else domain.bucket_start(committed_until, timedelta(days=1))
    )
    return end > start


def time_rollup_plan(
    ts: datetime,
    rolled: datetime | None,
    *,
    interval_s: int,
    recompute: bool,
    timescale: bool,
    retention_days: int,
    compress_after_days: int,
) -> RollupPlan | None:
    """The rollup work after closing (or recomputing) interval ``ts``; None when there is none.

    Windows strictly before the one holding the next interval are complete. Retention and compression run
    when a closing crosses midnight, in simulated time (``end`` minus the configured days).
    """
    window = domain.bucket_start(ts, repository.ROLLUP_WINDOW)
    if recompute:
        if rolled is None or window >= rolled:
            return None  # not rolled yet: the normal roll will include it
        start, end = window, window + repository.ROLLUP_WINDOW
    else:
        end = domain.bucket_start(ts + timedelta(seconds=interval_s), repository.ROLLUP_WINDOW)
        start = rolled if rolled is not None else domain.bucket_start(ts, timedelta(days=1))
        if end <= start:
            return None
    last = end - timedelta(microseconds=1)
    hours = (repository.hour_floor(start), repository.hour_floor(last) + timedelta(hours=1))
    days = (repository.day_floor(start), repository.day_floor(last) + repository.ONE_DAY)
    new_day = not recompute and repository.day_floor(end) > repository.day_floor(start)
    return RollupPlan(
        timescale=timescale,
        start=start,
        end=end,
        hours=hours,
        days=days,
        advance=not recompute,
        retention_before=end - timedelta(days=retention_days) if new_day and retention_days else None,
        compress_before=(
            end - timedelta(days=compress_after_days)
            if new_day and timescale and compress_after_days
            else None
        ),
    )
