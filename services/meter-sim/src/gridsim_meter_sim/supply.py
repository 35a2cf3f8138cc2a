"""Supply state of every meter: outages (faults, planned, feeder sections, overload trips) and remote
disconnects. Pure (no I/O); the SQL is in outage_repository.py, the commands in outage_commands.py.

A meter off supply (its transformer or feeder section is out) or disconnected (its service switch opened
remotely) still reports, as a real AMI meter's readings for such intervals show: zero voltage, no current
and no energy (docs/grid-health.md). An outage covers the intervals whose midpoint lies in
``[start, end)``, sampled like spikes; ``end`` is its restoration, else its drawn repair time.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import numpy.typing as npt

from gridsim_meter_sim import randomness
from gridsim_meter_sim.domain import Fleet, Readings

__all__ = [
    "MOMENTARY_S",
    "OutageRow",
    "RepairTime",
    "SupplyPlan",
    "cut",
    "repair_seconds",
]

BOOL = npt.NDArray[np.bool_]

# IEEE 1366-2022 §3: an interruption of at most five minutes is momentary (MAIFI), longer is sustained.
MOMENTARY_S = 300.0
_S_REPAIR = 700  # random stream of repair-time draws (keyed by outage id)


@dataclass(frozen=True, slots=True)
class RepairTime:
    """Log-normal time to repair: median and the spread of its logarithm (σ).

    Distribution outage repair times are right-skewed and commonly modelled as log-normal (Billinton &
    Allan, *Reliability Evaluation of Power Systems*, 2nd ed., §9; IEEE 1366 Annex B uses the log of
    daily SAIDI for the same reason). Defaults: median 90 min, σ 0.8 (mean ≈ 124 min).
    """

    median_s: float = 5400.0
    sigma: float = 0.8


def repair_seconds(seed: int, outage_id: int, repair: RepairTime) -> float:
    """The repair time of outage ``outage_id``, seeded: the same world and seed draw the same times."""
    key = randomness.meter_keys(seed, np.array([outage_id], dtype=np.int64))
    z = float(randomness.normal(key, _S_REPAIR, 0)[0])
    return repair.median_s * math.exp(repair.sigma * z)


@dataclass(frozen=True, slots=True)
class OutageRow:
    """An outage whose power-restored events are not sent yet, with the meters it takes off supply."""

    id: int
    cause: str  # fault | planned | overload_trip
    start: datetime
    end: datetime | None  # restored_at, else planned_end; None: until an operator restores it
    announced: bool  # last-gasp events sent
    meter_ids: tuple[int, ...]


@dataclass(frozen=True)
class _Placed:
    outage: OutageRow
    rows: npt.NDArray[np.intp]


class SupplyPlan:
    """The open outages and disconnected meters of one fleet, their rows resolved once."""

    def __init__(self, fleet: Fleet, outages: Sequence[OutageRow], disconnected: Iterable[int]) -> None:
        self.size = len(fleet)
        row_of = {int(m): i for i, m in enumerate(fleet.meter_id.tolist())}
        self.outages = [
            _Placed(o, np.array(sorted(row_of[m] for m in o.meter_ids if m in row_of), dtype=np.intp))
            for o in outages
        ]
        self.disconnected = np.zeros(self.size, dtype=bool)
        self.disconnected[[row_of[m] for m in disconnected if m in row_of]] = True
        self._any_disconnected = bool(self.disconnected.any())

    def off(self, when: datetime, interval_s: int) -> BOOL | None:
        """Rows without supply in the interval starting at ``when``; None when every meter has supply."""
        mid = when + timedelta(seconds=interval_s / 2)
        live = [p for p in self.outages if _covers(p.outage, mid)]
        if not live and not self._any_disconnected:
            return None
        off = self.disconnected.copy()
        for placed in live:
            off[placed.rows] = True
        return off

    def out_of_supply(self, row: int, when: datetime, interval_s: int) -> bool:
        """Whether fleet row ``row`` has no supply (an outage) in the interval starting at ``when``."""
        mid = when + timedelta(seconds=interval_s / 2)
        return any(_covers(p.outage, mid) and row in p.rows for p in self.outages)

    def rows_of(self, outage_id: int) -> npt.NDArray[np.intp]:
        """The fleet rows an outage takes off supply."""
        return next((p.rows for p in self.outages if p.outage.id == outage_id), np.zeros(0, dtype=np.intp))

    def due(self, when: datetime, interval_s: int) -> tuple[list[OutageRow], list[OutageRow]]:
        """Outages that start (not yet announced) and that end by the interval starting at ``when``."""
        mid = when + timedelta(seconds=interval_s / 2)
        starting = [p.outage for p in self.outages if not p.outage.announced and _covers(p.outage, mid)]
        ending = [p.outage for p in self.outages if p.outage.end is not None and p.outage.end <= mid]
        return starting, ending

    def without(self, ended: Iterable[int], announced: Iterable[int]) -> None:
        """Forget restored outages and mark announced ones (after the repository recorded both)."""
        gone, told = set(ended), set(announced)
        kept = []
        for p in self.outages:
            if p.outage.id in gone:
                continue
            told_now = p.outage.id in told
            kept.append(_Placed(dataclasses.replace(p.outage, announced=True), p.rows) if told_now else p)
        self.outages = kept


def _covers(outage: OutageRow, mid: datetime) -> bool:
    return outage.start <= mid and (outage.end is None or mid < outage.end)


def cut(readings: Readings, off: BOOL) -> Readings:
    """``readings`` with the ``off`` rows showing no supply: 0 V, 0 A, no energy (production stays null for
    consumers), power factor 1 by convention (no current, no phase angle to measure)."""

    def zero(values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return np.where(off & ~np.isnan(values), 0.0, values)

    return dataclasses.replace(
        readings,
        consumption_kwh=zero(readings.consumption_kwh),
        production_kwh=zero(readings.production_kwh),
        consumption_kvah=zero(readings.consumption_kvah),
        production_kvah=zero(readings.production_kvah),
        reactive_kvar=zero(readings.reactive_kvar),
        power_factor=np.where(off, 1.0, readings.power_factor),
        voltage=zero(readings.voltage),
        current=zero(readings.current),
    )
