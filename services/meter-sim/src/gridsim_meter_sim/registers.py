"""Cumulative energy registers: what a real meter's display shows (kWh imported, kWh exported, kVARh).

Pure (no I/O). A register is the running sum of the interval energies the meter *published*: each
interval adds the rounded values that went on the wire, so the register equals the sum of the readings a
consumer received (docs/grid-health.md). A meter off supply or disconnected adds nothing; a meter that
does not report adds nothing. Registers never go back, not even when the clock jumps back.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from gridsim_meter_sim.domain import Fleet, Readings

__all__ = ["ENERGY_DECIMALS", "Registers"]

F64 = npt.NDArray[np.float64]

ENERGY_DECIMALS = 6  # the published resolution of interval energies (1 mWh), see publisher._DECIMALS


@dataclass
class Registers:
    """One row per fleet row: cumulative import kWh, export kWh and import kVARh."""

    meter_id: npt.NDArray[np.int64]
    import_kwh: F64
    export_kwh: F64
    import_kvarh: F64

    @classmethod
    def for_fleet(cls, fleet: Fleet, carried: Registers | None, stored: Registers | None) -> Registers:
        """Registers for ``fleet``'s rows: carried over from the previous fleet by meter id (the freshest),
        else as last saved (``stored``), else zero (a new meter). Matched with sorted ids, not a dict: a
        million meters' registers are a million rows."""
        values = np.zeros((len(fleet), 3))
        for source in (stored, carried):  # carried last: it wins
            if source is None or not len(source.meter_id):
                continue
            order = np.argsort(source.meter_id, kind="stable")
            ids = source.meter_id[order]
            at = np.minimum(np.searchsorted(ids, fleet.meter_id), len(ids) - 1)
            found = ids[at] == fleet.meter_id
            rows = order[at[found]]
            values[found] = np.column_stack(
                [source.import_kwh[rows], source.export_kwh[rows], source.import_kvarh[rows]]
            )
        return cls(fleet.meter_id.copy(), values[:, 0].copy(), values[:, 1].copy(), values[:, 2].copy())

    def add(self, readings: Readings) -> None:
        """Add one interval's published energies (rounded as published; NaN production counts as zero)."""
        on = readings.active
        self.import_kwh += np.where(on, _published(readings.consumption_kwh), 0.0)
        self.export_kwh += np.where(on, _published(readings.production_kwh), 0.0)
        self.import_kvarh += np.where(on, _published(readings.reactive_kvar), 0.0)

    def columns(self) -> dict[str, F64]:
        """The registers as reading columns (``import_kWh`` …), rounded to the published resolution."""
        return {
            "import_kWh": np.round(self.import_kwh, ENERGY_DECIMALS),
            "export_kWh": np.round(self.export_kwh, ENERGY_DECIMALS),
            "import_kVARh": np.round(self.import_kvarh, ENERGY_DECIMALS),
        }

    def row(self, meter_id: int) -> int | None:
        """The row of ``meter_id``, or None when this fleet does not simulate it."""
        found = np.flatnonzero(self.meter_id == meter_id)
        return int(found[0]) if len(found) else None


def _published(values: F64) -> F64:
    return np.nan_to_num(np.round(values, ENERGY_DECIMALS), nan=0.0)
