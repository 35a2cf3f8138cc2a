"""Climates: where a world is, what its weather is like and what its electricity standard is.

A :class:`Climate` is a place with its IANA time zone, its monthly climate normals (mean temperature and
mean diurnal range, Tmax − Tmin) and the nominal voltage and standard of its low-voltage supply. The
built-in table (sources in ``docs/realism.md``) covers the demo world's San Francisco and six other
climates: hot-dry (Phoenix), hot-humid (Houston), cold (Minneapolis), monsoon (Delhi), temperate 230 V
(Berlin) and southern hemisphere (Sydney).

:func:`outdoor_temperature_c` turns normals into an hourly-to-minutely outdoor temperature: the day's
normal (interpolated between mid-month values), a diurnal cycle whose minimum falls at sunrise and
maximum at 14:30 local solar time (two half cosines, so the daily mean is the normal), and a seeded
weather anomaly that persists from day to day (AR(1) over local solar days, interpolated between solar
noons so nothing jumps at midnight). Cloudy days have a smaller diurnal range than clear ones: the same
daily clear-sky index that dims the PV (:mod:`gridsim_shared.weather`) scales the day's swing. Everything is a pure function of (climate, time, seed).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from gridsim_shared import randomness

__all__ = [
    "CLIMATES",
    "CLIMATE_LIST",
    "Climate",
    "climate_for",
    "climate_named",
    "day_of_year",
    "local_hour",
    "nearest_climate_index",
    "outdoor_temperature_c",
    "solar_day",
    "sunrise_solar_hour",
    "utc_offset_s",
]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

DAY_S = 86_400
T_MAX_SOLAR_HOUR = 14.5  # the day's maximum: mid-afternoon, local solar time
_ANOMALY_MEMORY_DAYS = 10  # the AR(1) forgets its start within a few days (φ^10 < 0.03)
_STREAM_ANOMALY = 0xC11


@dataclass(frozen=True, slots=True)
class Climate:
    """A place's climate normals and electricity supply. Monthly tuples run January → December."""

    name: str  # key: "san-francisco"
    label: str  # "San Francisco, CA (US)"
    timezone: str  # IANA, e.g. "America/Los_Angeles"
    latitude: float
    longitude: float
    mean_c: tuple[float, ...]  # monthly mean temperature (°C), (Tmax + Tmin) / 2
    range_c: tuple[float, ...]  # monthly mean diurnal range Tmax − Tmin (°C)
    nominal_v: float  # the service voltage meters see (V): 240 split-phase US, 230 IEC
    standard: str  # voltage standard key in gridsim_shared.standards
    anomaly_sd_c: float  # day-to-day weather anomaly, standard deviation (°C)
    anomaly_persistence: float  # AR(1) coefficient of the anomaly from one day to the next
    source: str  # where the normals come from
    # Sky (gridsim_shared.weather): monthly fraction of possible sunshine hours, and how much one day's
    # cloudiness carries to the next (lag-1 correlation of the daily state).
    sunshine: tuple[float, ...] = (0.6,) * 12
    sky_persistence: tuple[float, ...] = (0.5,) * 12
    # Clear-sky atmosphere (meter-sim's Ineichen model): monthly Linke turbidity and the site's altitude.
    linke_turbidity: tuple[float, ...] = (3.0,) * 12
    altitude_m: float = 0.0

    def __post_init__(self) -> None:
        monthly = (self.mean_c, self.range_c, self.sunshine, self.sky_persistence, self.linke_turbidity)
        if any(len(v) != 12 for v in monthly):
            msg = f"climate {self.name}: every monthly table needs 12 values"
            raise ValueError(msg)
        if not -90.0 <= self.latitude <= 90.0 or not -180.0 <= self.longitude <= 180.0:
            msg = f"climate {self.name}: latitude/longitude out of range"
            raise ValueError(msg)
        if any(r < 0 for r in self.range_c):
            msg = f"climate {self.name}: a diurnal range cannot be negative"
            raise ValueError(msg)
        if not all(0.0 <= v <= 1.0 for v in self.sunshine) or not all(
            0.0 <= v < 1.0 for v in self.sky_persistence
        ):
            msg = f"climate {self.name}: sunshine must be in [0, 1] and sky_persistence in [0, 1)"
            raise ValueError(msg)
        if not all(1.0 <= v <= 10.0 for v in self.linke_turbidity) or not -500.0 <= self.altitude_m <= 6000.0:
            msg = f"climate {self.name}: Linke turbidity must be in [1, 10] and altitude in [−500, 6000] m"
            raise ValueError(msg)
        ZoneInfo(self.timezone)  # raises for an unknown zone


def _f_to_c(
    high_f: tuple[float, ...], low_f: tuple[float, ...]
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """NOAA publishes normals in °F as mean daily maximum and minimum: convert to mean and range in °C."""
    mean = tuple(round(((h + lo) / 2.0 - 32.0) * 5.0 / 9.0, 2) for h, lo in zip(high_f, low_f, strict=True))
    spread = tuple(round((h - lo) * 5.0 / 9.0, 2) for h, lo in zip(high_f, low_f, strict=True))
    return mean, spread


def _c(high_c: tuple[float, ...], low_c: tuple[float, ...]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    mean = tuple(round((h + lo) / 2.0, 2) for h, lo in zip(high_c, low_c, strict=True))
    spread = tuple(round(h - lo, 2) for h, lo in zip(high_c, low_c, strict=True))
    return mean, spread


def _climate(
    name: str,
    label: str,
    timezone: str,
    *,
    at: tuple[float, float],
    normals: tuple[tuple[float, ...], tuple[float, ...]],
    supply: tuple[float, str],
    anomaly: tuple[float, float],
    sky: tuple[tuple[float, ...], tuple[float, ...]],
    atmosphere: tuple[tuple[float, ...], float],
    source: str,
) -> Climate:
    return Climate(
        name=name,
        label=label,
        timezone=timezone,
        latitude=at[0],
        longitude=at[1],
        mean_c=normals[0],
        range_c=normals[1],
        nominal_v=supply[0],
        standard=supply[1],
        anomaly_sd_c=anomaly[0],
        anomaly_persistence=anomaly[1],
        sunshine=sky[0],
        sky_persistence=sky[1],
        linke_turbidity=atmosphere[0],
        altitude_m=atmosphere[1],
        source=source,
    )


# Mean daily maximum / minimum per month, as published (rounded to 0.1). US: °F; elsewhere °C.
# Sunshine: mean fraction of possible sunshine hours per month (NOAA Comparative Climatic Data; DWD, IMD,
# BoM sunshine hours over the month's day length). Linke turbidity: the monthly SoDa climatology of
# Remund et al. (2003) at the site, as distributed with pvlib (lookup_linke_turbidity), rounded to 0.1.
CLIMATES: dict[str, Climate] = {
    c.name: c
    for c in (
        _climate(
            "san-francisco",
            "San Francisco, CA (US)",
            "America/Los_Angeles",
            at=(37.77, -122.43),
            normals=_f_to_c(
                (57.9, 60.4, 62.4, 64.1, 66.4, 68.9, 69.1, 70.0, 72.3, 70.4, 63.8, 57.9),
                (46.0, 47.6, 48.6, 49.9, 52.0, 54.3, 55.4, 56.4, 56.6, 54.9, 50.3, 46.3),
            ),
            supply=(240.0, "ansi-c84.1"),
            anomaly=(1.6, 0.6),
            sky=(
                (0.56, 0.62, 0.69, 0.73, 0.72, 0.73, 0.66, 0.65, 0.72, 0.70, 0.62, 0.54),
                (0.5, 0.5, 0.5, 0.5, 0.6, 0.7, 0.7, 0.7, 0.6, 0.5, 0.5, 0.5),
            ),
            atmosphere=((3.3, 3.2, 3.2, 3.2, 3.4, 3.5, 3.6, 3.5, 3.4, 3.2, 3.1, 3.0), 16.0),
            source="NOAA NCEI U.S. Climate Normals 1991–2020, San Francisco Downtown (USW00023272)",
        ),
        _climate(
            "phoenix",
            "Phoenix, AZ (US)",
            "America/Phoenix",
            at=(33.43, -112.01),
            normals=_f_to_c(
                (67.6, 71.0, 77.6, 85.5, 95.0, 104.2, 106.5, 105.1, 100.4, 89.2, 76.5, 66.2),
                (46.1, 49.5, 54.6, 61.0, 70.1, 79.6, 85.0, 84.1, 78.3, 66.0, 53.6, 45.6),
            ),
            supply=(240.0, "ansi-c84.1"),
            anomaly=(2.0, 0.65),
            sky=(
                (0.77, 0.80, 0.83, 0.88, 0.93, 0.94, 0.85, 0.85, 0.89, 0.88, 0.83, 0.77),
                (0.5, 0.5, 0.5, 0.6, 0.7, 0.7, 0.6, 0.6, 0.6, 0.6, 0.5, 0.5),
            ),
            atmosphere=((2.3, 2.4, 2.8, 3.1, 3.4, 3.4, 3.4, 3.6, 3.2, 3.0, 2.9, 2.7), 337.0),
            source="NOAA NCEI U.S. Climate Normals 1991–2020, Phoenix Sky Harbor Intl AP (USW00023183)",
        ),
        _climate(
            "houston",
            "Houston, TX (US)",
            "America/Chicago",
            at=(29.98, -95.36),
            normals=_f_to_c(
                (63.7, 67.6, 74.3, 80.6, 87.3, 92.4, 94.5, 95.2, 90.4, 82.7, 72.4, 65.2),
                (43.9, 47.6, 54.2, 60.6, 68.4, 74.2, 75.9, 75.7, 71.0, 61.4, 51.6, 45.3),
            ),
            supply=(240.0, "ansi-c84.1"),
            anomaly=(2.8, 0.65),
            sky=((0.42, 0.48, 0.51, 0.52, 0.58, 0.64, 0.66, 0.63, 0.60, 0.60, 0.50, 0.44), (0.5,) * 12),
            atmosphere=((3.0, 3.0, 3.3, 3.6, 3.9, 4.4, 5.1, 4.5, 4.0, 3.4, 3.1, 3.0), 29.0),
            source="NOAA NCEI U.S. Climate Normals 1991–2020, Houston Intercontinental AP (USW00012960)",
        ),
        _climate(
            "minneapolis",
            "Minneapolis, MN (US)",
            "America/Chicago",
            at=(44.88, -93.23),
            normals=_f_to_c(
                (23.6, 28.0, 41.0, 56.1, 68.6, 78.1, 82.6, 79.9, 71.6, 57.5, 41.5, 27.9),
                (8.0, 12.4, 24.7, 36.9, 48.6, 58.9, 64.1, 61.9, 52.9, 39.9, 26.5, 13.3),
            ),
            supply=(240.0, "ansi-c84.1"),
            anomaly=(4.5, 0.7),
            sky=((0.51, 0.57, 0.54, 0.56, 0.59, 0.64, 0.70, 0.67, 0.61, 0.56, 0.39, 0.40), (0.5,) * 12),
            atmosphere=((2.7, 2.9, 3.1, 3.5, 3.7, 4.0, 3.9, 4.0, 3.5, 3.1, 3.0, 2.7), 255.0),
            source="NOAA NCEI U.S. Climate Normals 1991–2020, Minneapolis–St Paul Intl AP (USW00014922)",
        ),
        _climate(
            "delhi",
            "New Delhi (IN)",
            "Asia/Kolkata",
            at=(28.58, 77.21),
            normals=_c(
                (20.1, 23.9, 29.8, 36.3, 39.9, 39.1, 35.0, 33.7, 33.9, 32.9, 27.7, 22.2),
                (7.5, 10.6, 15.4, 21.3, 25.8, 27.3, 27.0, 26.4, 24.8, 19.0, 12.8, 8.4),
            ),
            supply=(230.0, "cea-india"),
            anomaly=(1.8, 0.7),
            sky=(
                (0.66, 0.73, 0.69, 0.73, 0.69, 0.54, 0.39, 0.44, 0.61, 0.77, 0.79, 0.68),
                (0.6, 0.5, 0.5, 0.5, 0.5, 0.6, 0.7, 0.7, 0.6, 0.6, 0.6, 0.6),
            ),
            atmosphere=((3.0, 3.3, 3.7, 4.1, 4.3, 4.5, 5.1, 5.3, 4.3, 3.7, 3.2, 3.2), 216.0),
            source="India Meteorological Department, Climatological Normals, New Delhi (Safdarjung)",
        ),
        _climate(
            "berlin",
            "Berlin (DE)",
            "Europe/Berlin",
            at=(52.47, 13.40),
            normals=_c(
                (3.7, 5.3, 9.3, 15.1, 19.5, 22.7, 25.0, 24.7, 19.9, 14.2, 8.2, 4.3),
                (-1.2, -0.7, 1.9, 5.6, 9.6, 12.8, 15.0, 14.7, 11.0, 6.9, 3.0, -0.1),
            ),
            supply=(230.0, "en-50160"),
            anomaly=(3.5, 0.7),
            sky=((0.23, 0.27, 0.34, 0.46, 0.48, 0.46, 0.47, 0.48, 0.45, 0.38, 0.24, 0.20), (0.5,) * 12),
            atmosphere=((2.8, 2.8, 4.0, 3.6, 3.8, 3.8, 3.9, 3.8, 4.0, 3.6, 2.9, 2.8), 48.0),
            source="Deutscher Wetterdienst (DWD) Klimareferenzperiode 1991–2020, Berlin-Tempelhof (433)",
        ),
        _climate(
            "sydney",
            "Sydney, NSW (AU)",
            "Australia/Sydney",
            at=(-33.86, 151.21),
            normals=_c(
                (26.0, 25.8, 24.8, 22.4, 19.6, 17.1, 16.6, 17.9, 20.3, 22.2, 23.8, 25.3),
                (19.0, 19.3, 17.9, 14.9, 11.6, 9.2, 8.1, 9.0, 11.2, 13.6, 15.8, 17.6),
            ),
            supply=(230.0, "as-60038"),
            anomaly=(2.0, 0.6),
            sky=((0.51, 0.50, 0.52, 0.58, 0.59, 0.59, 0.65, 0.69, 0.65, 0.60, 0.54, 0.53), (0.5,) * 12),
            atmosphere=((3.1, 2.8, 2.8, 2.6, 2.6, 2.5, 2.5, 2.6, 2.7, 2.8, 2.7, 2.8), 39.0),
            source="Bureau of Meteorology climate statistics, Sydney (Observatory Hill) 066062",
        ),
    )
}


CLIMATE_LIST: tuple[Climate, ...] = tuple(CLIMATES.values())


def nearest_climate_index(latitudes: npt.ArrayLike, longitudes: npt.ArrayLike) -> npt.NDArray[np.intp]:
    """For many points at once: the position in :data:`CLIMATE_LIST` of each one's nearest climate."""
    lat = np.radians(np.asarray(latitudes, dtype=np.float64))[:, None]
    lon = np.radians(np.asarray(longitudes, dtype=np.float64))[:, None]
    c_lat = np.radians([c.latitude for c in CLIMATE_LIST])[None, :]
    c_lon = np.radians([c.longitude for c in CLIMATE_LIST])[None, :]
    # The haversine term grows with distance, so its argmin is the nearest (no arcsin needed).
    a = np.sin((c_lat - lat) / 2) ** 2 + np.cos(lat) * np.cos(c_lat) * np.sin((c_lon - lon) / 2) ** 2
    nearest: npt.NDArray[np.intp] = np.argmin(a, axis=1).astype(np.intp)
    return nearest


def climate_named(name: str) -> Climate:
    """The built-in climate called ``name`` (a key of :data:`CLIMATES`); KeyError names the choices."""
    try:
        return CLIMATES[name]
    except KeyError:
        msg = f"unknown climate {name!r}; built-in: {', '.join(sorted(CLIMATES))}"
        raise KeyError(msg) from None


def climate_for(latitude: float, longitude: float) -> Climate:
    """The built-in climate nearest to a point (great-circle distance)."""
    return CLIMATE_LIST[int(nearest_climate_index([latitude], [longitude])[0])]


# --------------------------------------------------------------------------------------------- time
def _as_epoch(epoch_s: npt.ArrayLike) -> I64:
    return np.asarray(epoch_s, dtype=np.int64)


def utc_offset_s(timezone: str, epoch_s: npt.ArrayLike) -> I64:
    """The zone's UTC offset in seconds (daylight saving included) at each instant.

    Offsets change only on quarter-hour boundaries, so each distinct quarter hour is asked of
    ``zoneinfo`` once; a tick of any number of meters at one instant costs one lookup.
    """
    epoch = _as_epoch(epoch_s)
    blocks, inverse = np.unique(epoch // 900, return_inverse=True)
    offsets = np.array([_offset_of_block(timezone, int(b)) for b in blocks], dtype=np.int64)
    return offsets[inverse].reshape(epoch.shape)


@cache
def _zone(timezone: str) -> ZoneInfo:
    return ZoneInfo(timezone)


def _offset_of_block(timezone: str, block: int) -> int:
    from datetime import UTC, datetime

    offset = datetime.fromtimestamp(block * 900, tz=UTC).astimezone(_zone(timezone)).utcoffset()
    return int(offset.total_seconds()) if offset is not None else 0


def local_hour(climate: Climate, epoch_s: npt.ArrayLike) -> F64:
    """Local clock hour in [0, 24) at the climate's place, with daylight saving (``zoneinfo``)."""
    epoch = _as_epoch(epoch_s)
    local = epoch + utc_offset_s(climate.timezone, epoch)
    hours: F64 = np.mod(local, DAY_S).astype(np.float64) / 3600.0
    return hours


def day_of_year(epoch_s: npt.ArrayLike) -> F64:
    """Fractional day of the year (0 at 1 January 00:00 UTC) and the length of that year, vectorised."""
    epoch = _as_epoch(epoch_s)
    year_start = (
        epoch.astype("datetime64[s]").astype("datetime64[Y]").astype("datetime64[s]").astype(np.int64)
    )
    return (epoch - year_start).astype(np.float64) / DAY_S


def _year_length(epoch_s: I64) -> F64:
    year = epoch_s.astype("datetime64[s]").astype("datetime64[Y]").astype(np.int64) + 1970
    leap = ((year % 4 == 0) & (year % 100 != 0)) | (year % 400 == 0)
    return np.where(leap, 366.0, 365.0)


def _declination(doy: F64) -> F64:
    # Cooper (1969), as in the meter-sim's solar geometry.
    delta: F64 = np.radians(23.45) * np.sin(2.0 * np.pi * (284.0 + doy) / 365.0)
    return delta


def _solar_seconds(longitude: float, epoch_s: I64) -> I64:
    # Local mean solar time: 4 minutes per degree of longitude (the equation of time's ±16 min is
    # immaterial for temperature and keeps solar days exactly DAY_S long).
    return epoch_s + round(longitude * 240.0)


def solar_day(longitude: float, epoch_s: npt.ArrayLike) -> I64:
    """The local solar day (days since 1970-01-01 at local mean solar midnight) of each instant."""
    return _solar_seconds(longitude, _as_epoch(epoch_s)) // DAY_S


def sunrise_solar_hour(latitude: float, doy: F64) -> F64:
    """Sunrise in local solar hours: 12 − ω₀/15°, cos ω₀ = −tan φ tan δ (polar day/night clipped)."""
    cos_w = -np.tan(np.radians(latitude)) * np.tan(_declination(doy))
    sunrise: F64 = 12.0 - np.degrees(np.arccos(np.clip(cos_w, -1.0, 1.0))) / 15.0
    return sunrise


# ------------------------------------------------------------------------------------- temperature
def _monthly(values: tuple[float, ...], epoch_s: I64) -> F64:
    """Monthly normals interpolated linearly between mid-month points (cyclic over the year)."""
    position = day_of_year(epoch_s) / _year_length(epoch_s) * 12.0 - 0.5  # 0 = mid-January
    table = np.asarray(values, dtype=np.float64)
    lower = np.floor(position).astype(np.int64)
    w = position - lower
    return (1.0 - w) * table[lower % 12] + w * table[(lower + 1) % 12]


def _climate_key(climate: Climate, seed: int) -> npt.NDArray[np.uint64]:
    # A stable 63-bit id from the climate's name (not Python's salted hash()): same weather every run.
    digest = int.from_bytes(hashlib.blake2b(climate.name.encode(), digest_size=8).digest(), "big")
    return randomness.meter_keys(seed, np.array([digest >> 1], dtype=np.int64))


_DAY_MEMO: dict[tuple[str, Climate, int, int], float] = {}
_DAY_MEMO_LIMIT = 200_000


def memo_by_day(
    kind: str, climate: Climate, seed: int, days: npt.ArrayLike, compute: Callable[[I64], F64]
) -> F64:
    """``compute(days)`` for day-level weather, remembering each (kind, climate, seed, day)'s value.

    Day-level values are pure functions of those four, and a simulation asks for the same few days at
    every tick; the memo turns a dozen counter-based draws per tick into a dictionary lookup.
    """
    day_array = np.asarray(days, dtype=np.int64)
    unique, inverse = np.unique(day_array, return_inverse=True)
    values = np.empty(len(unique))
    missing = []
    for i, d in enumerate(unique.tolist()):
        known = _DAY_MEMO.get((kind, climate, seed, d))
        if known is None:
            missing.append(i)
        else:
            values[i] = known
    if missing:
        todo = np.array(missing, dtype=np.intp)
        computed = compute(unique[todo])
        if len(_DAY_MEMO) > _DAY_MEMO_LIMIT:
            _DAY_MEMO.clear()
        for i, v in zip(todo.tolist(), computed.tolist(), strict=True):
            _DAY_MEMO[(kind, climate, seed, unique[i].item())] = v
            values[i] = v
    out: F64 = values[inverse].reshape(day_array.shape)
    return out


def daily_anomaly_c(climate: Climate, days: npt.ArrayLike, seed: int) -> F64:
    """The weather anomaly (°C) of each local solar day: an AR(1) over days, a pure function of its inputs.

    The chain is run from ``_ANOMALY_MEMORY_DAYS`` before each day from zero, which it forgets, so a
    day's value does not depend on which days were asked before it.
    """

    def compute(unique: I64) -> F64:
        key = _climate_key(climate, seed)
        phi = climate.anomaly_persistence
        innovation = climate.anomaly_sd_c * np.sqrt(1.0 - phi * phi)
        value = np.zeros(len(unique))
        for back in range(_ANOMALY_MEMORY_DAYS, -1, -1):
            d = (unique - back).astype(np.uint64)
            value = phi * value + innovation * randomness.normal(key, _STREAM_ANOMALY, d)
        # Started from 0, the chain's variance is sd² (1 − φ^(2(M+1))): rescale so every day has sd².
        scaled: F64 = value / np.sqrt(1.0 - phi ** (2 * (_ANOMALY_MEMORY_DAYS + 1)))
        return scaled

    return memo_by_day("anomaly", climate, seed, days, compute)


def _diurnal_shape(solar_hour: F64, sunrise: F64) -> F64:
    """−1 at sunrise, +1 at the afternoon maximum, half cosines between (so the day's mean is 0)."""
    peak = T_MAX_SOLAR_HOUR
    rising = (solar_hour >= sunrise) & (solar_hour < peak)
    since_peak = np.mod(solar_hour - peak, 24.0)  # hours from today's (or yesterday's) maximum
    to_next_sunrise = np.mod(sunrise - peak, 24.0)
    falling = np.cos(np.pi * since_peak / to_next_sunrise)
    up = -np.cos(np.pi * (solar_hour - sunrise) / (peak - sunrise))
    return np.where(rising, up, falling)


def _cloud_factor(climate: Climate, solar_s: I64, epoch: I64, seed: int) -> F64:
    """How the day's sky scales its diurnal range: clear days swing more than the month's mean, cloudy less.

    Clouds cut daytime heating and night-time radiative cooling alike; 0.55 + 0.45 k/k̄ keeps the month's
    mean range while a heavy overcast day (k ≈ 0.2 in a k̄ ≈ 0.8 month) swings about two thirds as much.
    """
    # weather imports this module (Climate, DAY_S): imported here to keep the dependency one-way at load.
    from gridsim_shared import weather

    k = weather.blended_daily_index(climate, solar_s, seed)
    k_mean = _monthly(tuple(weather.mean_clear_sky_index(s) for s in climate.sunshine), epoch)
    factor: F64 = np.clip(0.55 + 0.45 * k / k_mean, 0.4, 1.4)
    return factor


def outdoor_temperature_c(climate: Climate, epoch_s: npt.ArrayLike, seed: int) -> F64:
    """Outdoor air temperature (°C) at each instant: normal + diurnal cycle + the day's weather.

    Deterministic for (climate, instants, seed); vectorised over ``epoch_s`` (int64 seconds, UTC).
    """
    epoch = _as_epoch(epoch_s)
    solar_s = _solar_seconds(climate.longitude, epoch)
    solar_hour = np.mod(solar_s, DAY_S).astype(np.float64) / 3600.0
    doy = day_of_year(epoch)
    sunrise = np.clip(sunrise_solar_hour(climate.latitude, doy), 3.0, T_MAX_SOLAR_HOUR - 4.0)
    mean = _monthly(climate.mean_c, epoch)
    half_range = 0.5 * _monthly(climate.range_c, epoch)
    # The anomaly is defined at each solar noon and interpolated between: no step at midnight.
    from_noon = (solar_s - DAY_S // 2).astype(np.float64) / DAY_S
    day = np.floor(from_noon).astype(np.int64)
    w = from_noon - day
    days = np.stack([day, day + 1])
    anomaly = daily_anomaly_c(climate, days, seed)
    weather = (1.0 - w) * anomaly[0] + w * anomaly[1]
    temperature: F64 = (
        mean
        + weather
        + half_range * _cloud_factor(climate, solar_s, epoch, seed) * _diurnal_shape(solar_hour, sunrise)
    )
    return temperature
