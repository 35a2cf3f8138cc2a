"""Demand-response windows on a fleet's flexible loads: which window each row follows at each interval.

Pure (no I/O). The repository reads the stored windows (``flex_events``); :class:`FlexPlan` maps them onto
a fleet's rows once per fleet and :meth:`FlexPlan.apply` sets the loads model's :class:`loads.Flex`
before each interval: a row follows the latest window that has started (a later window replaces an
earlier one, whose rebound then stops), and a window is forgotten a day after its end, once its rebound
is long over. See docs/utility.md ("Demand response through the loads").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import numpy.typing as npt

from gridsim_meter_sim.loads import Flex

__all__ = ["FORGET_AFTER", "FlexPlan", "FlexRow"]

# Rebound lasts hours at most (thermal mass: τ = 1 h; a water heater's recovery; an EV's held-back
# charge): a day after its end a window no longer changes anything.
FORGET_AFTER = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class FlexRow:
    """A stored window as the engine needs it (``end``: earlier than asked when cancelled)."""

    id: int
    start: datetime
    end: datetime
    hvac_offset_c: float
    defer_water: bool
    defer_ev: bool
    meter_ids: tuple[int, ...]


@dataclass(frozen=True)
class _Placed:
    row: FlexRow
    rows: npt.NDArray[np.intp]


class FlexPlan:
    """The windows of one fleet, with each window's fleet rows resolved once."""

    def __init__(self, meter_ids: npt.NDArray[np.int64], windows: Sequence[FlexRow]) -> None:
        row_of = {int(m): i for i, m in enumerate(meter_ids.tolist())}
        placed = []
        for w in sorted(windows, key=lambda w: (w.start, w.id)):
            rows = np.array(sorted(row_of[m] for m in w.meter_ids if m in row_of), dtype=np.intp)
            if len(rows) and w.end > w.start:  # cancelled before it started: nothing to do
                placed.append(_Placed(w, rows))
        self._placed = placed
        self._applied: tuple[int, ...] | None = None

    def __len__(self) -> int:
        return len(self._placed)

    def apply(self, flex: Flex, when: datetime) -> None:
        """Set ``flex`` for the interval starting at ``when``: every started, not yet forgotten window,
        in start order (a row's latest window wins). Unchanged since the last call: nothing to do."""
        if not self._placed and self._applied is None:
            return
        live = tuple(i for i, p in enumerate(self._placed) if p.row.start <= when < p.row.end + FORGET_AFTER)
        if live == self._applied:
            return
        flex.clear()
        for i in live:
            w, rows = self._placed[i].row, self._placed[i].rows
            flex.curtail(
                rows,
                int(w.start.timestamp()),
                int(w.end.timestamp()),
                hvac_offset_c=w.hvac_offset_c,
                defer_water=w.defer_water,
                defer_ev=w.defer_ev,
            )
        self._applied = live
