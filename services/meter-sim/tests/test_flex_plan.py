"""FlexPlan (flex.py): stored demand-response windows onto a fleet's loads.Flex, as the engine applies
them before each interval. In-process, no broker or database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from gridsim_meter_sim import loads
from gridsim_meter_sim.flex import FORGET_AFTER, FlexPlan, FlexRow

T0 = datetime(2025, 6, 25, 0, tzinfo=UTC)
METERS = np.array([11, 12, 13, 14], dtype=np.int64)


def _window(wid: int, start_h: float, end_h: float, meters: tuple[int, ...], offset: float = 2.0) -> FlexRow:
    return FlexRow(
        wid, T0 + timedelta(hours=start_h), T0 + timedelta(hours=end_h), offset, True, wid % 2 == 0, meters
    )


def test_rows_follow_their_latest_started_window() -> None:
    flex = loads.Flex(len(METERS))
    first = _window(1, 1, 2, (11, 12))
    later = _window(2, 3, 4, (12, 13), offset=3.0)
    elsewhere = _window(3, 1, 2, (99,))  # a meter of another shard: nothing here
    plan = FlexPlan(METERS, [later, first, elsewhere])
    assert len(plan) == 2
    plan.apply(flex, T0)  # nothing started yet
    assert not flex.any
    plan.apply(flex, T0 + timedelta(hours=1))
    assert list(flex.end_s > 0) == [True, True, False, False]
    assert flex.hvac_offset_c[0] == 2.0
    plan.apply(flex, T0 + timedelta(hours=3, minutes=30))
    # Meter 12 follows the later window now; meter 11 keeps the first one (its rebound continues).
    assert flex.start_s[1] == int(later.start.timestamp())
    assert flex.hvac_offset_c[1] == 3.0
    assert bool(flex.defer_ev[1])
    assert flex.start_s[0] == int(first.start.timestamp())
    assert flex.end_s[3] == 0
    # A day after its end a window is forgotten (its rebound is long over).
    plan.apply(flex, later.end + FORGET_AFTER)
    assert not flex.any


def test_a_window_cancelled_before_it_started_does_nothing() -> None:
    flex = loads.Flex(len(METERS))
    cancelled = FlexRow(5, T0 + timedelta(hours=2), T0 + timedelta(hours=2), 2.0, True, True, (11,))
    plan = FlexPlan(METERS, [cancelled])
    assert len(plan) == 0
    plan.apply(flex, T0 + timedelta(hours=2, minutes=30))
    assert not flex.any
