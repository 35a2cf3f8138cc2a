"""The closing rule as a pure function (``close_plan.intervals_to_close``): complete, clocked and bounded
wait, oldest first, stopping at the first interval that must wait. No broker, no database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gridsim_aggregator.close_plan import intervals_to_close
from gridsim_aggregator.repository import PendingInterval

T0 = datetime(2025, 6, 20, 12, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
EXPECTED = frozenset({"t1", "t2"})


def _close(
    pending: list[PendingInterval],
    marks: dict[datetime, float] | None = None,
    *,
    committed: datetime | None = T0,
    clocked: datetime | None = None,
    now: float = 100.0,
) -> list[datetime]:
    return intervals_to_close(
        pending,
        marks or {},
        committed_until=committed,
        clocked_until=clocked,
        expected_transformers=EXPECTED,
        interval_s=60,
        close_after_s=5.0,
        now=now,
    )


def test_complete_intervals_close_in_order_up_to_the_first_incomplete_one() -> None:
    pending = [
        PendingInterval(T0 + MINUTE, EXPECTED, 0.1),
        PendingInterval(T0 + 2 * MINUTE, EXPECTED | {"new"}, 0.1),
        PendingInterval(T0 + 3 * MINUTE, frozenset({"t1"}), 0.1),  # t2 has not committed yet
        PendingInterval(T0 + 4 * MINUTE, EXPECTED, 0.1),  # complete, but may not jump the wait
    ]
    assert _close(pending) == [T0 + MINUTE, T0 + 2 * MINUTE]
    # the first interval ever closes when complete, whatever came before
    assert _close(pending[:1], committed=None) == [T0 + MINUTE]


def test_a_gap_closes_only_by_the_clock_or_the_bounded_wait() -> None:
    after_gap = [PendingInterval(T0 + 2 * MINUTE, EXPECTED, 0.1)]  # nothing committed for T0 + 1 min
    assert _close(after_gap) == []
    assert _close(after_gap, clocked=T0 + 2 * MINUTE) == [T0 + 2 * MINUTE]
    waited = [PendingInterval(T0 + 2 * MINUTE, EXPECTED, 5.0)]
    assert _close(waited) == [T0 + 2 * MINUTE]


def test_clock_marks_without_batches_close_after_the_wait_and_closed_ones_are_ignored() -> None:
    marks = {T0: 0.0, T0 + MINUTE: 90.0, T0 + 2 * MINUTE: 99.0}  # first seen at these monotonic times
    assert _close([], marks, now=100.0) == [T0 + MINUTE]  # waited 10 s; the next only 1 s
    assert _close([], marks, clocked=T0 + 2 * MINUTE, now=100.0) == [T0 + MINUTE, T0 + 2 * MINUTE]
