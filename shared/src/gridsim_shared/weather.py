"""The sky: a seeded clear-sky index per local solar day, with each month's statistics.

The clear-sky index k is the ratio of global horizontal irradiance to its clear-sky value (1 = clear,
~0.15 = heavy overcast, briefly > 1 at bright cloud edges). The daily value follows the climate:

- its **mean** per month comes from the fraction of possible sunshine *s* through the Ångström–Prescott
  relation with the FAO-56 coefficients (H/H₀ = 0.25 + 0.50 s, clear sky 0.75 H₀), so
  k̄ = (0.25 + 0.50 s) / 0.75;
- its **spread**: k_day = K_LO + (1 − K_LO) · logistic(μ + S·z) with z a standard normal, which gives the
  familiar mix of clear and overcast days (skewed towards clear in sunny months); μ is solved per month so
  the mean is k̄, hence the spread too differs by month;
- its **persistence**: z is an AR(1) over local solar days with the month's lag-1 correlation.

A day's value holds from 02:00 to 22:00 local solar time and is blended linearly into the next day's
between 22:00 and 02:00, so the index never steps at midnight. All of it is a pure function of
(climate, day, seed): counter-based random numbers, the chain re-run from a few days before.
"""

from __future__ import annotations

import hashlib
from functools import cache

import numpy as np
import numpy.typing as npt

from gridsim_shared import randomness
from gridsim_shared.climate import DAY_S, Climate, memo_by_day

__all__ = [
    "BLEND_END_H",
    "BLEND_START_H",
    "K_LO",
    "blended_daily_index",
    "daily_clear_sky_index",
    "mean_clear_sky_index",
    "month_of_day",
]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

K_LO = 0.15  # heavy overcast: ~15 % of clear-sky irradiance still reaches the ground
_SPREAD = 1.6  # S: how far a day's logistic argument wanders (bimodal clear/overcast mix)
BLEND_START_H, BLEND_END_H = 22.0, 2.0  # local solar hours over which one day hands over to the next
_MEMORY_DAYS = 10
_STREAM_SKY = 0x5C1
_GAUSS_X, _GAUSS_W = np.polynomial.hermite_e.hermegauss(40)  # E[f(z)], z ~ N(0, 1)
_GAUSS_W = _GAUSS_W / _GAUSS_W.sum()


def mean_clear_sky_index(sunshine: float) -> float:
    """Monthly mean daily clear-sky index from the fraction of possible sunshine (Ångström–Prescott, FAO-56)."""
    return (0.25 + 0.50 * sunshine) / 0.75


def _logistic(x: F64) -> F64:
    out: F64 = 0.5 * (1.0 + np.tanh(0.5 * x))  # = 1 / (1 + e^−x), without overflow
    return out


@cache
def _mu(target: float) -> float:
    """μ such that K_LO + (1 − K_LO) E[logistic(μ + S z)] = target (bisection; the mean rises with μ)."""
    goal = (min(max(target, K_LO + 0.01), 0.995) - K_LO) / (1.0 - K_LO)
    lo, hi = -12.0, 12.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if float(_GAUSS_W @ _logistic(mid + _SPREAD * _GAUSS_X)) < goal:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def month_of_day(days: I64) -> I64:
    """Month index 0–11 of each day (days since 1970-01-01)."""
    months = np.asarray(days, dtype=np.int64).astype("datetime64[D]").astype("datetime64[M]").astype(np.int64)
    out: I64 = months % 12
    return out


def _sky_key(climate: Climate, seed: int) -> npt.NDArray[np.uint64]:
    digest = int.from_bytes(hashlib.blake2b(b"sky:" + climate.name.encode(), digest_size=8).digest(), "big")
    return randomness.meter_keys(seed, np.array([digest >> 1], dtype=np.int64))


def _daily_state(climate: Climate, days: I64, seed: int) -> F64:
    """z of each day: unit-variance AR(1) with the month's persistence, restarted _MEMORY_DAYS before."""
    key = _sky_key(climate, seed)
    persistence = np.asarray(climate.sky_persistence)
    z = randomness.normal(key, _STREAM_SKY, (days - _MEMORY_DAYS).astype(np.uint64))
    for back in range(_MEMORY_DAYS - 1, -1, -1):
        d = days - back
        phi = persistence[month_of_day(d)]
        z = phi * z + np.sqrt(1.0 - phi * phi) * randomness.normal(key, _STREAM_SKY, d.astype(np.uint64))
    return z


def daily_clear_sky_index(climate: Climate, days: npt.ArrayLike, seed: int) -> F64:
    """Each local solar day's clear-sky index in [K_LO, 1) (days since 1970-01-01, local solar time)."""

    def compute(unique: I64) -> F64:
        months = month_of_day(unique)
        mu = np.array([_mu(mean_clear_sky_index(climate.sunshine[m])) for m in range(12)])
        z = _daily_state(climate, unique, seed)
        k: F64 = K_LO + (1.0 - K_LO) * _logistic(mu[months] + _SPREAD * z)
        return k

    return memo_by_day("sky", climate, seed, days, compute)


def blend_weight(solar_s: I64) -> tuple[I64, F64]:
    """For instants in local solar seconds: the day whose value is ``w``-weighted, and ``w``.

    value = (1 − w) · v[day − 1] + w · v[day]; w = 1 from 02:00 to 22:00, a linear ramp from 22:00 to 02:00.
    """
    window = (24.0 - BLEND_START_H + BLEND_END_H) * 3600.0
    shifted = solar_s + int((24.0 - BLEND_START_H) * 3600)  # 22:00 → the next day's 00:00
    day = shifted // DAY_S
    into = (shifted - day * DAY_S).astype(np.float64)
    return day, np.minimum(into / window, 1.0)


def blended_daily_index(climate: Climate, solar_s: npt.ArrayLike, seed: int) -> F64:
    """The day-level clear-sky index at instants given in local solar seconds, continuous across nights."""
    day, w = blend_weight(np.asarray(solar_s, dtype=np.int64))
    k = daily_clear_sky_index(climate, np.stack([day - 1, day]), seed)
    out: F64 = (1.0 - w) * k[0] + w * k[1]
    return out
