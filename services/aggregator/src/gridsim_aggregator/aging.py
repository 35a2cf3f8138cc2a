"""Transformer insulation aging (IEEE C57.91-2011 clause 5), the ambient temperature it depends on, and
a health index. Pure (no I/O); the closer carries the state across intervals (docs/grid-health.md).

- Aging acceleration factor, 65 °C-rise thermally upgraded paper (C57.91 eq. 2):
  ``F_AA = exp(15000 / 383 − 15000 / (θ_H + 273))`` — 1 at the reference hot spot of 110 °C.
- Loss of life: ``Σ F_AA · Δt`` hours of normal life used (eq. 3 and 4: the equivalent aging over a
  period is that sum divided by the period).
- Normal insulation life: 180,000 h (C57.91 Table 2, the distribution-transformer functional life test).
"""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import datetime
from functools import lru_cache

import numpy as np

from gridsim_aggregator.domain import ThermalState
from gridsim_shared.climate import Climate, climate_for, outdoor_temperature_c

__all__ = [
    "AGING_B",
    "NORMAL_LIFE_H",
    "REFERENCE_HOT_SPOT_C",
    "age",
    "aging_factor",
    "ambient_c",
    "health_index",
]

AGING_B = 15000.0  # the aging rate constant B of C57.91 eq. 2 (K)
REFERENCE_HOT_SPOT_C = 110.0  # F_AA = 1: normal aging of 65 °C-rise insulation
NORMAL_LIFE_H = 180_000.0
# Health index: the loading part reaches zero after this many hours above nameplate (a tenth of a year).
OVERLOAD_H_FULL = 876.0
DEFAULT_SEED = 42  # the simulation's default seed (GRIDSIM_SIM__SEED)


def aging_factor(hot_spot_c: float) -> float:
    """C57.91's aging acceleration factor F_AA at winding hot spot ``hot_spot_c`` (°C)."""
    return math.exp(AGING_B / (REFERENCE_HOT_SPOT_C + 273.0) - AGING_B / (hot_spot_c + 273.0))


def age(state: ThermalState, hot_spot_c: float, loading_pu: float, dt_s: float) -> ThermalState:
    """``state`` after ``dt_s`` at winding hot spot ``hot_spot_c`` and ``loading_pu``: loss of life grows by
    F_AA·Δt, hours above nameplate by Δt when loaded beyond 1 pu."""
    f = aging_factor(hot_spot_c)
    hours = dt_s / 3600.0
    return replace(
        state,
        loss_of_life_h=state.loss_of_life_h + f * hours,
        overload_h=state.overload_h + (hours if loading_pu > 1.0 else 0.0),
        aging_factor=f,
    )


def health_index(loss_of_life_h: float, overload_h: float) -> float:
    """0 (replace) to 100 (new): 70 % the insulation life left, 30 % how little it has been overloaded.

    gridsim's own composite, after the weighted-score health indices of asset management (A. N. Jahromi
    et al., "An approach to power transformer asset management using health index", IEEE Electrical
    Insulation Magazine 25(2), 2009), with the two factors gridsim measures.
    """
    life = max(0.0, 1.0 - loss_of_life_h / NORMAL_LIFE_H)
    loading = max(0.0, 1.0 - overload_h / OVERLOAD_H_FULL)
    return round(100.0 * (0.7 * life + 0.3 * loading), 2)


def ambient_c(latitude: float, longitude: float, when: datetime, seed: int = DEFAULT_SEED) -> float:
    """The outdoor temperature (°C) around a transformer at a UTC time: its place's climate and weather.

    The nearest built-in climate's normals, diurnal cycle and seeded day-to-day weather
    (:func:`gridsim_shared.climate.outdoor_temperature_c`, docs/realism.md): the same air meter-sim's PV
    cells and thermal loads see with the same seed. San Francisco's transformers see about 11 °C in
    January and 17 °C in July on average; Phoenix's 35 °C in July.
    """
    return _outdoor_c(_climate_at(latitude, longitude), int(when.timestamp()), seed)


# Every transformer's ambient is asked every interval: 10,000 transformers cost 1.5 CPU-s an interval
# uncached (150 µs each: the nearest climate, then its weather). A place's climate never changes, and the
# transformers of one climate share its air at one instant, so each is computed once.
@lru_cache(maxsize=1 << 16)
def _climate_at(latitude: float, longitude: float) -> Climate:
    return climate_for(latitude, longitude)


@lru_cache(maxsize=1 << 10)
def _outdoor_c(climate: Climate, epoch_s: int, seed: int) -> float:
    return float(outdoor_temperature_c(climate, np.array([epoch_s], dtype=np.int64), seed)[0])
