"""Pure functions of the operator's controls: the spike envelope and how spikes change one interval.

No I/O. The repository reads the spikes (with the meters each one covers now); :class:`SpikePlan` maps
them onto a fleet's rows once per fleet, and :meth:`SpikePlan.adjustment` gives the per-row factors and
additions of one interval, vectorised over meters (a loop over spikes, never over meters).

Load factors need nothing here: they are the fleet's K columns (DESIGN §4). See docs/controls.md.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import numpy.typing as npt

from gridsim_meter_sim.domain import Adjustment, Fleet

__all__ = ["EXP_DECAY_TIME_CONSTANTS", "SpikePlan", "SpikeRow", "envelope", "interval_envelope"]

# exp_decay falls by e^-3 (to 5 %) over the spike's duration, then stops.
EXP_DECAY_TIME_CONSTANTS = 3.0


def envelope(shape: str, elapsed_s: float, duration_s: float | None) -> float:
    """How much of a spike's magnitude applies ``elapsed_s`` after its start, in [0, 1].

    Zero before the start and from ``duration_s`` on (``None``: it never ends; only ``step`` then).
    ``step`` is 1 throughout; ``ramp`` rises linearly from 0 to 1 over the duration; ``triangle`` rises to
    1 at half the duration and falls back; ``exp_decay`` jumps to 1 and decays to 5 % at the end.
    """
    if elapsed_s < 0 or (duration_s is not None and elapsed_s >= duration_s):
        return 0.0
    if shape == "step" or duration_s is None:
        return 1.0
    x = elapsed_s / duration_s
    if shape == "ramp":
        return x
    if shape == "triangle":
        return 1.0 - abs(2.0 * x - 1.0)
    if shape == "exp_decay":
        return math.exp(-EXP_DECAY_TIME_CONSTANTS * x)
    msg = f"unknown spike shape {shape!r}"
    raise ValueError(msg)


@dataclass(frozen=True, slots=True)
class SpikeRow:
    """A spike as the engine needs it: timing, magnitude, and the meters it covers."""

    id: int
    kind: str  # load | source | generator
    shape: str
    start: datetime
    duration_s: int | None
    end: datetime | None  # start + duration, or earlier when cancelled; None: never
    multiplier: float | None
    kw: float | None
    generator: str | None  # solar | constant (generators)
    meter_ids: tuple[int, ...]


def interval_envelope(spike: SpikeRow, when: datetime, interval_s: int) -> float:
    """The envelope for the interval starting at ``when``: sampled at the interval's midpoint (as the
    sun is), and zero once the spike has ended or been cancelled."""
    mid = when + timedelta(seconds=interval_s / 2)
    if spike.end is not None and mid >= spike.end:
        return 0.0
    return envelope(spike.shape, (mid - spike.start).total_seconds(), spike.duration_s)


@dataclass(frozen=True)
class _Placed:
    spike: SpikeRow
    rows: npt.NDArray[np.intp]


class SpikePlan:
    """The spikes of one fleet, with each spike's fleet rows resolved once."""

    def __init__(self, fleet: Fleet, spikes: Sequence[SpikeRow]) -> None:
        self.size = len(fleet)
        row_of = {int(m): i for i, m in enumerate(fleet.meter_id.tolist())}
        placed = []
        for spike in spikes:
            rows = np.array(sorted(row_of[m] for m in spike.meter_ids if m in row_of), dtype=np.intp)
            if len(rows):  # a spike on none of this fleet's meters changes none of its readings
                placed.append(_Placed(spike, rows))
        self._placed = placed
        self._prosumer = fleet.prosumer

    def adjustment(self, when: datetime, interval_s: int) -> Adjustment | None:
        """Factors and additions for the interval starting at ``when``; None when no spike touches it."""
        if not self._placed:
            return None
        n = self.size
        hours = interval_s / 3600.0
        c_factor, c_add = np.ones(n), np.zeros(n)
        p_factor, p_add = np.ones(n), np.zeros(n)
        touched = False
        for item in self._placed:
            spike, rows = item.spike, item.rows
            e = interval_envelope(spike, when, interval_s)
            if spike.kind == "generator":
                # The generator's meter reads zero outside its window (installed, not yet or no longer
                # producing); solar follows the sun (its DER), a constant one is flat.
                touched = True
                if spike.generator == "constant":
                    p_factor[rows] = 0.0
                    p_add[rows] += (spike.kw or 0.0) * e * hours
                else:
                    p_factor[rows] *= e
                continue
            if e == 0.0:
                continue
            touched = True
            if spike.kind == "source":
                rows = rows[self._prosumer[rows]]  # consumers have no production to spike
                factor, add = p_factor, p_add
            else:
                factor, add = c_factor, c_add
            if spike.multiplier is not None:
                factor[rows] *= 1.0 + (spike.multiplier - 1.0) * e
            else:
                add[rows] += (spike.kw or 0.0) * e * hours
        if not touched:
            return None
        return Adjustment(c_factor, c_add, p_factor, p_add)
