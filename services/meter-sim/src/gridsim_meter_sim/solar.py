"""The sun and the sky: solar position, clear-sky irradiance, PV power and a seeded cloud model.

Pure numpy, no I/O. Formulas and their sources are in ``docs/physics.md`` (domain-facts §4):
Cooper's declination, Spencer's equation of time, the hour angle from the meter's longitude, Haurwitz's
clear-sky global horizontal irradiance, PVWatts' default 14.08 % system losses, and a clear-sky index
driven by a day-type Markov chain with minute-scale AR(1) noise, clipped at 1.1 (cloud-edge surges).
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import numpy.typing as npt

from gridsim_meter_sim import randomness

__all__ = [
    "PV_LOSSES",
    "CloudSky",
    "clear_sky_ghi",
    "declination",
    "equation_of_time_min",
    "pv_kw",
    "solar_elevation",
]

F64 = npt.NDArray[np.float64]

# PVWatts default losses (soiling 2, shading 3, mismatch 2, wiring 2, connections 0.5, LID 1.5,
# nameplate 1, availability 3 %), combined multiplicatively: 1 - Π(1 - l) = 14.08 %.
PV_LOSSES = 1.0 - float(np.prod(1.0 - np.array([2, 3, 2, 2, 0.5, 1.5, 1, 3]) / 100.0))
# Clear-sky index ceiling: bright cloud edges push irradiance above clear sky by up to ~15 %.
KC_MAX = 1.1
_CLOUD_CELL_DEG = 0.25  # meters in the same quarter-degree cell (~25 km) share the weather


def _day_of_year(when: datetime) -> int:
    return when.timetuple().tm_yday


def declination(day_of_year: int) -> float:
    """Solar declination in radians (Cooper 1969): 23.45° · sin(2π (284 + n) / 365)."""
    return float(np.radians(23.45) * np.sin(2.0 * np.pi * (284 + day_of_year) / 365.0))


def equation_of_time_min(day_of_year: int) -> float:
    """Equation of time in minutes (Spencer 1971, as in pvlib ``equation_of_time_spencer71``)."""
    b = 2.0 * np.pi * (day_of_year - 1) / 365.0
    return float(
        229.18
        * (
            0.000075
            + 0.001868 * np.cos(b)
            - 0.032077 * np.sin(b)
            - 0.014615 * np.cos(2 * b)
            - 0.040849 * np.sin(2 * b)
        )
    )


def solar_elevation(when: datetime, latitude: F64, longitude: F64) -> F64:
    """Sun elevation in radians at UTC time ``when`` for arrays of latitude/longitude in degrees.

    Solar time = UTC + 4 min/° × longitude + equation of time; hour angle = 15° × (solar time − 12 h);
    sin α = sin φ sin δ + cos φ cos δ cos h.
    """
    n = _day_of_year(when)
    delta = declination(n)
    utc_minutes = when.hour * 60 + when.minute + when.second / 60.0
    solar_minutes = utc_minutes + 4.0 * longitude + equation_of_time_min(n)
    hour_angle = np.radians(15.0 * (solar_minutes / 60.0 - 12.0))
    phi = np.radians(latitude)
    sin_alpha = np.sin(phi) * np.sin(delta) + np.cos(phi) * np.cos(delta) * np.cos(hour_angle)
    return np.arcsin(np.clip(sin_alpha, -1.0, 1.0))  # type: ignore[no-any-return]


def clear_sky_ghi(elevation: F64) -> F64:
    """Haurwitz clear-sky global horizontal irradiance in W/m²: 1098 cos z · exp(−0.059 / cos z), 0 at night."""
    cos_z = np.sin(elevation)  # cos(zenith) = sin(elevation)
    up = cos_z > 0.0
    safe = np.where(up, cos_z, 1.0)
    return np.where(up, 1098.0 * safe * np.exp(-0.059 / safe), 0.0)


def pv_kw(rated_kw: F64, ghi: F64, clear_sky_index: F64 | float = 1.0) -> F64:
    """AC power of a horizontal PV array: rated × (G / 1000 W/m²) × clear-sky index × (1 − losses)."""
    return rated_kw * (ghi / 1000.0) * clear_sky_index * (1.0 - PV_LOSSES)


# ------------------------------------------------------------------------------------------ clouds
# Day types: clear, partly cloudy, overcast. Daily transitions (rows: today, columns: tomorrow) give
# spells of fine and dull weather; the numbers are a plausible temperate climate, not a fit.
_TRANSITIONS = np.array([[0.70, 0.22, 0.08], [0.35, 0.45, 0.20], [0.20, 0.40, 0.40]])
_KC_MEAN = np.array([0.98, 0.70, 0.30])
_KC_SIGMA = np.array([0.02, 0.22, 0.08])  # stationary standard deviation of the AR(1) noise
_AR_PHI = np.array([0.90, 0.93, 0.97])  # minute-to-minute persistence
_MARKOV_MEMORY_DAYS = 8  # the chain forgets its start within a few days; 8 steps is plenty
_STREAM_DAYTYPE = 0xD1
_STREAM_KC = 0xC2


def cloud_cells(latitude: F64, longitude: F64) -> npt.NDArray[np.uint64]:
    """A key per quarter-degree cell: neighbours share clouds, a city does not share them with another."""
    row = np.floor((latitude + 90.0) / _CLOUD_CELL_DEG).astype(np.int64)
    col = np.floor((longitude + 180.0) / _CLOUD_CELL_DEG).astype(np.int64)
    return (row * 2000 + col).astype(np.uint64)


def day_types(seed: int, cells: npt.NDArray[np.uint64], day: int) -> npt.NDArray[np.int64]:
    """Each cell's day type on ``day`` (days since 1970): a Markov chain run from a few days earlier.

    Starting the chain ``_MARKOV_MEMORY_DAYS`` before ``day`` from the stationary mix makes the state a
    pure function of (seed, cell, day) while keeping day-to-day persistence.
    """
    keys = randomness.meter_keys(seed, cells.astype(np.int64))
    cumulative = np.cumsum(_TRANSITIONS, axis=1)
    state = np.ones(len(cells), dtype=np.int64)  # "partly cloudy" as the start, forgotten within days
    for d in range(day - _MARKOV_MEMORY_DAYS, day + 1):
        u = randomness.uniform(keys, _STREAM_DAYTYPE, np.uint64(d & 0xFFFFFFFF))
        state = (u[:, None] > cumulative[state]).sum(axis=1)
    return np.minimum(state, 2)


def clear_sky_index_day(seed: int, cells: npt.NDArray[np.uint64], day: int) -> F64:
    """Clear-sky index for every cell and every minute of ``day``: shape (cells, 1440), in [0, 1.1]."""
    types = day_types(seed, cells, day)
    mean, sigma, phi = _KC_MEAN[types], _KC_SIGMA[types], _AR_PHI[types]
    innovation = sigma * np.sqrt(1.0 - phi**2)
    keys = randomness.meter_keys(seed ^ 0x5EED, cells.astype(np.int64))
    base = np.uint64((day & 0xFFFFFFFF) * 1440)
    minutes = base + np.arange(1440, dtype=np.uint64)
    shocks = randomness.normal(keys[:, None], _STREAM_KC, minutes[None, :])  # (cells, 1440) at once
    out = np.empty((len(cells), 1440))
    deviation = sigma * shocks[:, 0]
    out[:, 0] = deviation
    for minute in range(1, 1440):  # the AR(1) recursion itself, once per simulated day per cell set
        deviation = phi * deviation + innovation * shocks[:, minute]
        out[:, minute] = deviation
    out += mean[:, None]
    return np.clip(out, 0.0, KC_MAX)


class CloudSky:
    """Clear-sky index per cloud cell and minute, computed once per simulated day and kept.

    A memo of a pure function (same inputs, same day table); only the last two days are kept.
    """

    def __init__(self, seed: int, cells: npt.NDArray[np.uint64]) -> None:
        self.seed = seed
        self.cells = cells
        self._days: dict[int, F64] = {}

    def index(self, when: datetime, cell_of: npt.NDArray[np.intp]) -> F64:
        """Clear-sky index at UTC minute ``when`` for meters whose cloud cell positions are ``cell_of``."""
        day = int(when.timestamp() // 86400)
        table = self._days.get(day)
        if table is None:
            table = clear_sky_index_day(self.seed, self.cells, day)
            self._days = {d: t for d, t in self._days.items() if d == day - 1} | {day: table}
        minute = (when.hour * 60 + when.minute) % 1440
        return table[cell_of, minute]  # type: ignore[no-any-return]
