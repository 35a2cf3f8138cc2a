"""The closer's decisions without I/O: the closing rule (``close_plan.intervals_to_close``: complete,
clocked and bounded wait, oldest first, stopping at the first interval that must wait) and what it carries
between intervals (``node_state``: thermal steps with overload and trip events, daily peaks). No broker,
no database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gridsim_aggregator.close_plan import intervals_to_close, windows_left_unrolled
from gridsim_aggregator.domain import ThermalParams, Totals
from gridsim_aggregator.node_state import DailyPeaks, TransformerThermals
from gridsim_aggregator.repository import PendingInterval
from gridsim_aggregator.topology import GridNode, NodeRollup

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
    resumed_at: float | None = None,
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
        resumed_at=resumed_at,
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


def test_the_wait_does_not_count_while_the_closer_held_ingest() -> None:
    # The closer held ingest 20 s loading a topology (five million meters: ~17 s): the interval's latest
    # batch is 20 s old, but its other batches waited in the broker. The wait counts from the load's end.
    arriving = [PendingInterval(T0 + MINUTE, frozenset({"t1"}), 20.0)]
    assert _close(arriving, now=100.0, resumed_at=99.5) == []
    assert _close(arriving, now=105.0, resumed_at=99.5) == [T0 + MINUTE]
    assert _close(arriving, now=100.0, resumed_at=None) == [T0 + MINUTE]
    # Complete and clocked intervals close whatever the pause.
    assert _close([PendingInterval(T0 + MINUTE, EXPECTED, 20.0)], resumed_at=100.0) == [T0 + MINUTE]
    marks = {T0 + MINUTE: 80.0}
    assert _close([], marks, now=100.0, resumed_at=98.0) == []


def _rollup(kva: float, node: GridNode | None = None) -> NodeRollup:
    node = node or GridNode(id=7, code="t7", level="transformer", parent_id=None, capacity_kva=50.0)
    return NodeRollup(node, Totals.zeros(1), kva, 100 * kva / 50.0, 1, 1)


def test_a_transformer_overloads_trips_once_and_clears_as_it_cools() -> None:
    thermals = TransformerThermals(ThermalParams(), seed=42)
    kinds: list[str] = []
    ts = T0
    for _ in range(12):  # two hours at 250 % of the rating, stepped in 10-minute intervals
        ts += 10 * MINUTE
        kinds += [e.type for e in thermals.step([_rollup(125.0)], ts, 600).events]
    assert kinds.count("transformer_overload") == 1
    assert kinds.count("transformer_trip") == 1  # sent once while it stays hot
    assert thermals.tripped == {7}
    for _ in range(48):  # eight hours unloaded
        ts += 10 * MINUTE
        kinds += [e.type for e in thermals.step([_rollup(0.0)], ts, 600).events]
    assert kinds.count("transformer_overload_cleared") == 1
    assert thermals.tripped == set()
    feeder = GridNode(id=2, code="f", level="feeder", parent_id=None, capacity_kva=None)
    assert thermals.step([_rollup(10.0, feeder)], ts, 600).states == {}  # only rated transformers


def test_the_daily_peak_is_the_highest_interval_of_the_simulated_day() -> None:
    peaks = DailyPeaks()
    assert peaks.peak(_rollup(10.0), T0) == (10.0, T0)
    assert peaks.peak(_rollup(30.0), T0 + MINUTE) == (30.0, T0 + MINUTE)
    assert peaks.peak(_rollup(20.0), T0 + 2 * MINUTE) == (30.0, T0 + MINUTE)
    tomorrow = T0 + timedelta(days=1)
    assert peaks.peak(_rollup(5.0), tomorrow) == (5.0, tomorrow)  # a new day starts from its first interval


def test_a_closed_window_not_rolled_is_left_to_roll() -> None:
    """Closing an interval and rolling its window are two transactions: what a stop between them leaves."""
    day = T0.replace(hour=0)
    assert not windows_left_unrolled(None, None, 60)  # nothing closed
    assert not windows_left_unrolled(day, None, 60)  # the first minute completes no window
    assert windows_left_unrolled(day + 14 * MINUTE, None, 60)  # its last minute completes the first
    assert not windows_left_unrolled(day + 14 * MINUTE, day + 15 * MINUTE, 60)  # rolled
    assert not windows_left_unrolled(T0 + 20 * MINUTE, T0 + 15 * MINUTE, 60)  # the next one is not whole
    assert windows_left_unrolled(T0 + 29 * MINUTE, T0 + 15 * MINUTE, 60)
    assert windows_left_unrolled(T0 + 44 * MINUTE, T0 + 15 * MINUTE, 60)  # two windows behind
