"""The weather forecast the utility works from: the world's weather plus a forecast error.

gridsim knows the truth (``gridsim_shared.climate`` and ``gridsim_shared.weather`` drive meter-sim's
loads and PV), so a forecast is built as the truth plus a seeded error whose size grows with the lead
time, as a bought numerical-weather-prediction product would have (docs/utility.md):

- temperature: σ 0.6 °C an hour ahead, 1.5 °C a day ahead (day-1 maximum-temperature errors of national
  weather services are ~1-2 °C RMS); a day-level part (the whole day forecast too warm or too cold) and
  an hourly part;
- the day's clear-sky index (cloud cover): the error is drawn on the index's logistic scale (the scale
  ``gridsim_shared.weather`` draws the sky on), as a share of the place and season's own day-to-day
  spread there (over the month around the forecast days): 0.2 of it an hour ahead, 0.5 a day ahead — a
  day-ahead forecast that explains about three quarters of the day-to-day variance. On that scale a
  clear day is forecast nearly right and a changeable one misses by more, as solar forecasts do.

The error is a pure function of (world seed, climate, horizon, hour), so a run is repeatable and the
same hour's forecast is the same whichever refresh asks for it. Never the truth itself: every horizon
has an error.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

import numpy as np
import numpy.typing as npt

from gridsim_shared import climate as climate_model
from gridsim_shared import randomness
from gridsim_shared import weather as sky

__all__ = ["ERRORS", "WeatherForecast", "forecast"]

F64 = npt.NDArray[np.float64]

# horizon hours → (temperature σ day-level, hourly, °C; clear-sky index σ day-level, hourly, as shares
# of the daily index's own spread on its logistic scale)
ERRORS: dict[int, tuple[float, float, float, float]] = {
    1: (0.5, 0.3, 0.2, 0.05),
    24: (1.3, 0.6, 0.5, 0.1),
}
_SPREAD_MARGIN_DAYS = 15
_S_TEMP_DAY, _S_TEMP_HOUR, _S_SKY_DAY, _S_SKY_HOUR = 1, 2, 3, 4


class WeatherForecast:
    """Hourly forecasts for a series of hours, each issued ``horizon_h`` before the hour's start."""

    def __init__(self, temperature_c: F64, clear_sky_index: F64) -> None:
        self.temperature_c = temperature_c
        self.clear_sky_index = clear_sky_index


def _key(climate: climate_model.Climate, seed: int, horizon_h: int) -> npt.NDArray[np.uint64]:
    digest = hashlib.blake2b(f"forecast:{climate.name}:{horizon_h}".encode(), digest_size=8).digest()
    return randomness.meter_keys(seed, np.array([int.from_bytes(digest, "big") >> 1], dtype=np.int64))


def forecast(
    climate: climate_model.Climate, seed: int, start: datetime, hours: int, horizon_h: int
) -> WeatherForecast:
    """Temperature (°C, at each hour's middle) and the day's clear-sky index of ``hours`` hours from
    ``start`` (UTC, on the hour), as forecast ``horizon_h`` hours ahead (a key of :data:`ERRORS`)."""
    sd_t_day, sd_t_hour, sd_k_day, sd_k_hour = ERRORS[horizon_h]
    epoch = int(start.timestamp()) + 3600 * np.arange(hours, dtype=np.int64) + 1800
    key = _key(climate, seed, horizon_h)
    hour_index = (epoch // 3600).astype(np.uint64)
    day = climate_model.solar_day(climate.longitude, epoch)
    day_index = day.astype(np.uint64)
    temperature = climate_model.outdoor_temperature_c(climate, epoch, seed)
    temperature = (
        temperature
        + sd_t_day * randomness.normal(key, _S_TEMP_DAY, day_index)
        + sd_t_hour * randomness.normal(key, _S_TEMP_HOUR, hour_index)
    )
    around = np.arange(int(day.min()) - _SPREAD_MARGIN_DAYS, int(day.max()) + _SPREAD_MARGIN_DAYS + 1)
    spread = float(np.std(_logit(sky.daily_clear_sky_index(climate, around, seed))))
    z = (
        _logit(sky.daily_clear_sky_index(climate, day, seed))
        + sd_k_day * spread * randomness.normal(key, _S_SKY_DAY, day_index)
        + sd_k_hour * spread * randomness.normal(key, _S_SKY_HOUR, hour_index)
    )
    k = sky.K_LO + (1.0 - sky.K_LO) / (1.0 + np.exp(-z))
    return WeatherForecast(np.asarray(temperature, dtype=np.float64), np.asarray(k, dtype=np.float64))


def _logit(k: F64) -> F64:
    """The clear-sky index on its logistic scale (``gridsim_shared.weather``: K_LO + (1 − K_LO) σ(x))."""
    share = np.clip((k - sky.K_LO) / (1.0 - sky.K_LO), 1e-6, 1.0 - 1e-6)
    out: F64 = np.log(share / (1.0 - share))
    return out
