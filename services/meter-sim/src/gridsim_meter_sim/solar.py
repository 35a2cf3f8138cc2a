"""The sun, the sky and a PV system: from the sun's position to the inverter's AC output.

Pure numpy, no I/O, vectorised over arrays (one row per PV array). The chain, each step with the model
pvlib implements under the same name (pvlib is the test oracle, ``tests/test_pv_oracle.py``):

1. sun position: Spencer (1971) declination and equation of time, hour angle from the longitude;
   extraterrestrial irradiance (Spencer 1971);
2. clear sky: Ineichen & Perez (2002) with the site's monthly Linke turbidity and altitude, the
   Kasten & Young (1989) air mass;
3. the sky: a clear-sky index per cloud cell and minute (:class:`CloudSky`) times the clear-sky GHI;
4. beam and diffuse under clouds: the clear sky's own split scaled by the Erbs, Klein & Duffie (1982)
   decomposition (:func:`cloudy_components`);
5. transposition onto the array's tilt and azimuth: Hay & Davies (1980) sky diffuse, isotropic ground
   reflection (albedo 0.25);
6. reflection losses: ASHRAE incidence angle modifier (b₀ = 0.05) on the beam;
7. cell temperature: Faiman (2008) (U₀ = 25, U₁ = 6.84 W/m²K, 1 m/s wind) from the outdoor temperature;
8. DC power: PVWatts v5 (Dobos 2014), γ = −0.37 %/°C, then PVWatts' default 14.08 % system losses;
9. AC power: the PVWatts inverter model (η_nom 96 %), clipped at the inverter's rating (DC/AC ratio 1.2).

Sources and formulas: ``docs/realism.md``. PV runs at unity power factor: it adds no reactive power.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from gridsim_shared import randomness, weather
from gridsim_shared.climate import DAY_S, Climate

__all__ = [
    "ALBEDO",
    "DC_AC_RATIO",
    "KC_MAX",
    "PV_LOSSES",
    "CloudSky",
    "SunPosition",
    "ac_power_kw",
    "airmass_absolute",
    "cell_centre",
    "cloud_cells",
    "declination",
    "equation_of_time_min",
    "erbs",
    "extraterrestrial",
    "faiman_cell_c",
    "haurwitz_ghi",
    "hay_davies",
    "iam_ashrae",
    "ineichen",
    "pvwatts_dc",
    "pvwatts_inverter",
    "sun_position",
]

F64 = npt.NDArray[np.float64]
U64 = npt.NDArray[np.uint64]

# PVWatts default losses (soiling 2, shading 3, mismatch 2, wiring 2, connections 0.5, LID 1.5,
# nameplate 1, availability 3 %), combined multiplicatively: 1 - Π(1 - l) = 14.08 %.
PV_LOSSES = 1.0 - float(np.prod(1.0 - np.array([2, 3, 2, 2, 0.5, 1.5, 1, 3]) / 100.0))
GAMMA_PDC = -0.0037  # PVWatts v5 "premium" (monocrystalline) module: power temperature coefficient, 1/°C
DC_AC_RATIO = 1.2  # PVWatts default: the inverter is rated at 1/1.2 of the array's DC nameplate
ETA_INV_NOMINAL = 0.96  # PVWatts default nominal inverter efficiency
ETA_INV_REFERENCE = 0.9637  # PVWatts' reference efficiency of its efficiency curve
ALBEDO = 0.25  # ground reflectance (grass/urban average; pvlib's default)
IAM_B0 = 0.05  # ASHRAE incidence angle modifier parameter (glass-covered modules)
FAIMAN_U0, FAIMAN_U1, WIND_MS = 25.0, 6.84, 1.0
SOLAR_CONSTANT = 1366.1  # W/m², as in Spencer's formula (pvlib get_extra_radiation)
KC_MAX = 1.1  # bright cloud edges push irradiance above clear sky by up to ~10 %
_MIN_COS_ZENITH = 0.01745  # cos 89°: pvlib's floor for the beam ratio in Hay & Davies


# ------------------------------------------------------------------------------------ sun position
def _spencer_angle(day_of_year: F64 | float) -> F64 | float:
    return 2.0 * np.pi * (np.asarray(day_of_year) - 1.0) / 365.0


def declination(day_of_year: F64 | float) -> F64:
    """Solar declination in radians (Spencer 1971, as pvlib ``declination_spencer71``)."""
    b = _spencer_angle(day_of_year)
    out: F64 = np.asarray(
        0.006918
        - 0.399912 * np.cos(b)
        + 0.070257 * np.sin(b)
        - 0.006758 * np.cos(2 * b)
        + 0.000907 * np.sin(2 * b)
        - 0.002697 * np.cos(3 * b)
        + 0.00148 * np.sin(3 * b)
    )
    return out


def equation_of_time_min(day_of_year: F64 | float) -> F64:
    """Equation of time in minutes (Spencer 1971, as pvlib ``equation_of_time_spencer71``)."""
    b = _spencer_angle(day_of_year)
    out: F64 = np.asarray(
        229.18
        * (
            0.000075
            + 0.001868 * np.cos(b)
            - 0.032077 * np.sin(b)
            - 0.014615 * np.cos(2 * b)
            - 0.040849 * np.sin(2 * b)
        )
    )
    return out


def extraterrestrial(day_of_year: F64 | float) -> F64:
    """Extraterrestrial normal irradiance in W/m² (Spencer 1971, as pvlib ``get_extra_radiation``)."""
    b = _spencer_angle(day_of_year)
    out: F64 = SOLAR_CONSTANT * (
        1.00011
        + 0.034221 * np.cos(b)
        + 0.00128 * np.sin(b)
        + 0.000719 * np.cos(2 * b)
        + 0.000077 * np.sin(2 * b)
    )
    return out


@dataclass(frozen=True, slots=True)
class SunPosition:
    """Where the sun is, per row: cosine of the zenith angle and azimuth (radians, clockwise from north)."""

    cos_zenith: F64
    azimuth: F64
    dni_extra: F64


def _day_of_year(epoch_s: F64) -> F64:
    seconds = np.asarray(epoch_s, dtype=np.float64)
    whole = np.floor(seconds).astype(np.int64)
    year_start = (
        whole.astype("datetime64[s]").astype("datetime64[Y]").astype("datetime64[s]").astype(np.int64)
    )
    out: F64 = 1.0 + (seconds - year_start) / DAY_S  # 1.0 at 1 January 00:00 UTC, fractional
    return out


def sun_position(epoch_s: F64 | float, latitude: F64, longitude: F64) -> SunPosition:
    """The sun's position at UTC instants (epoch seconds) for arrays of latitude/longitude in degrees.

    Solar time = UTC + 4 min/° × longitude + equation of time; hour angle h = 15° × (solar time − 12 h);
    cos z = sin φ sin δ + cos φ cos δ cos h; azimuth from atan2(−sin h cos δ, sin δ cos φ − cos δ sin φ cos h).
    """
    doy = _day_of_year(np.asarray(epoch_s, dtype=np.float64))
    delta = declination(np.floor(doy))
    utc_minutes = np.mod(np.asarray(epoch_s, dtype=np.float64), DAY_S) / 60.0
    solar_minutes = utc_minutes + 4.0 * longitude + equation_of_time_min(np.floor(doy))
    hour_angle = np.radians(15.0 * (solar_minutes / 60.0 - 12.0))
    phi = np.radians(latitude)
    sin_d, cos_d = np.sin(delta), np.cos(delta)
    sin_p, cos_p = np.sin(phi), np.cos(phi)
    cos_h = np.cos(hour_angle)
    cos_zenith = np.clip(sin_p * sin_d + cos_p * cos_d * cos_h, -1.0, 1.0)
    azimuth = np.mod(
        np.arctan2(-np.sin(hour_angle) * cos_d, sin_d * cos_p - cos_d * sin_p * cos_h), 2.0 * np.pi
    )
    return SunPosition(
        cos_zenith, azimuth, np.broadcast_to(extraterrestrial(np.floor(doy)), cos_zenith.shape)
    )


# --------------------------------------------------------------------------------------- clear sky
def airmass_absolute(cos_zenith: F64, altitude_m: F64 | float) -> F64:
    """Pressure-corrected air mass: Kasten & Young (1989) relative air mass × p/p₀ at the altitude."""
    zenith_deg = np.degrees(np.arccos(np.clip(cos_zenith, -1.0, 1.0)))
    up = zenith_deg < 90.0
    relative = 1.0 / (cos_zenith + 0.50572 * np.power(np.maximum(96.07995 - zenith_deg, 1e-3), -1.6364))
    pressure_ratio = (1.0 - 2.25577e-5 * np.asarray(altitude_m)) ** 5.25588
    out: F64 = np.where(up, relative * pressure_ratio, np.nan)
    return out


def ineichen(
    cos_zenith: F64, airmass: F64, linke: F64 | float, altitude_m: F64 | float, dni_extra: F64
) -> tuple[F64, F64, F64]:
    """Clear-sky GHI, DNI, DHI (W/m²) by Ineichen & Perez (2002), as pvlib ``clearsky.ineichen``."""
    up = cos_zenith > 0.0
    am = np.where(up, np.nan_to_num(airmass, nan=1.0), 1.0)
    cos_z = np.where(up, cos_zenith, 1.0)
    tl = np.asarray(linke, dtype=np.float64)
    alt = np.asarray(altitude_m, dtype=np.float64)
    fh1, fh2 = np.exp(-alt / 8000.0), np.exp(-alt / 1250.0)
    cg1, cg2 = 5.09e-5 * alt + 0.868, 3.92e-5 * alt + 0.0387
    ghi = np.maximum(cg1 * dni_extra * cos_z * np.exp(-cg2 * am * (fh1 + fh2 * (tl - 1.0))), 0.0)
    b = 0.664 + 0.163 / fh1
    bnci = b * dni_extra * np.exp(-0.09 * am * (tl - 1.0))
    bnci_2 = ghi * np.clip((1.0 - (0.1 - 0.2 * np.exp(-tl)) / (0.1 + 0.882 / fh1)) / cos_z, 0.0, 1e20)
    dni = np.minimum(bnci, bnci_2)
    dhi = ghi - dni * cos_z
    return np.where(up, ghi, 0.0), np.where(up, dni, 0.0), np.where(up, dhi, 0.0)


def haurwitz_ghi(cos_zenith: F64) -> F64:
    """Haurwitz (1945) clear-sky GHI, 1098 cos z · exp(−0.059 / cos z): only the flat profile's sun multiplier."""
    up = cos_zenith > 0.0
    safe = np.where(up, cos_zenith, 1.0)
    out: F64 = np.where(up, 1098.0 * safe * np.exp(-0.059 / safe), 0.0)
    return out


# ----------------------------------------------------------------------------------- on the array
def erbs(ghi: F64, cos_zenith: F64, dni_extra: F64) -> tuple[F64, F64]:
    """Beam (DNI) and diffuse (DHI) from GHI (Erbs, Klein & Duffie 1982), as pvlib ``irradiance.erbs``."""
    up = cos_zenith > 0.0
    cos_z = np.where(up, np.maximum(cos_zenith, 0.065), 1.0)  # pvlib: min_cos_zenith 0.065 (86.3°)
    kt = np.clip(ghi / (dni_extra * cos_z), 0.0, 1.0)  # clearness index
    diffuse_fraction = np.where(
        kt <= 0.22,
        1.0 - 0.09 * kt,
        np.where(
            kt <= 0.8,
            0.9511 - 0.1604 * kt + 4.388 * kt**2 - 16.638 * kt**3 + 12.336 * kt**4,
            0.165,
        ),
    )
    dhi = ghi * diffuse_fraction
    # pvlib's max_zenith 87°: no beam so near the horizon (it would divide by a vanishing cos z).
    dni = np.where(up & (cos_zenith > np.cos(np.radians(87.0))), (ghi - dhi) / cos_z, 0.0)
    return np.maximum(dni, 0.0), np.where(up, dhi, 0.0)


def cloudy_components(
    clear_ghi: F64, clear_dni: F64, clear_sky_index: F64 | float, sun: SunPosition
) -> tuple[F64, F64, F64]:
    """GHI, DNI, DHI under a clear-sky index k, anchored on the clear sky's own beam/diffuse split.

    GHI = k × clear GHI. The beam is the clear sky's DNI (Ineichen) scaled by how much Erbs says the
    beam falls from the clear GHI to this GHI: DNI = DNI_clear × Erbs(k·GHI_clear) / Erbs(GHI_clear),
    at most DNI_clear (cloud-edge surplus is diffuse light). Erbs alone would split a clear winter sky
    with far too much diffuse light (its correlation is for all skies), costing a tilted array up to a
    quarter of its clear-day December yield at 52° N; anchored, k = 1 gives Ineichen's split exactly.
    """
    k = np.asarray(clear_sky_index, dtype=np.float64)
    ghi = clear_ghi * k
    erbs_clear, _ = erbs(clear_ghi, sun.cos_zenith, sun.dni_extra)
    erbs_cloudy, _ = erbs(ghi, sun.cos_zenith, sun.dni_extra)
    ratio = np.divide(
        erbs_cloudy,
        erbs_clear,
        out=np.broadcast_to(np.minimum(k, 1.0), ghi.shape).copy(),
        where=erbs_clear > 0,
    )
    dni = clear_dni * np.minimum(ratio, 1.0)
    dhi = np.maximum(ghi - dni * np.maximum(sun.cos_zenith, 0.0), 0.0)
    return ghi, dni, dhi


def cos_incidence(tilt: F64, surface_azimuth: F64, sun: SunPosition) -> F64:
    """Cosine of the angle of incidence of the beam on the array (tilt and azimuth in radians)."""
    sin_z = np.sqrt(np.maximum(1.0 - sun.cos_zenith**2, 0.0))
    out: F64 = np.clip(
        sun.cos_zenith * np.cos(tilt) + sin_z * np.sin(tilt) * np.cos(sun.azimuth - surface_azimuth),
        -1.0,
        1.0,
    )
    return out


def hay_davies(
    tilt: F64, cos_aoi: F64, sun: SunPosition, *, dni: F64, ghi: F64, dhi: F64
) -> tuple[F64, F64, F64]:
    """Plane-of-array beam, sky diffuse and ground-reflected irradiance (W/m²).

    Sky diffuse: Hay & Davies (1980), anisotropy index A = DNI / I₀ weighting a circumsolar part (beam
    ratio R_b = cos θ / cos z) and an isotropic part (1 + cos β)/2; ground: GHI × albedo × (1 − cos β)/2.
    """
    up = sun.cos_zenith > 0.0
    beam = dni * np.maximum(cos_aoi, 0.0)
    anisotropy = np.where(up, dni / sun.dni_extra, 0.0)
    rb = np.maximum(cos_aoi, 0.0) / np.maximum(sun.cos_zenith, _MIN_COS_ZENITH)
    sky = np.maximum(dhi * (anisotropy * rb + (1.0 - anisotropy) * 0.5 * (1.0 + np.cos(tilt))), 0.0)
    ground = ghi * ALBEDO * 0.5 * (1.0 - np.cos(tilt))
    return beam, sky, ground


def iam_ashrae(cos_aoi: F64, b0: float = IAM_B0) -> F64:
    """ASHRAE incidence angle modifier 1 − b₀ (1/cos θ − 1), 0 beyond 90° or where it turns negative."""
    safe = np.where(cos_aoi > 0.0, cos_aoi, 1.0)
    out: F64 = np.where(cos_aoi > 0.0, np.clip(1.0 - b0 * (1.0 / safe - 1.0), 0.0, 1.0), 0.0)
    return out


def faiman_cell_c(poa_global: F64, air_c: F64, wind_ms: float = WIND_MS) -> F64:
    """Cell temperature (°C), Faiman (2008): T_air + POA / (U₀ + U₁ × wind)."""
    out: F64 = air_c + poa_global / (FAIMAN_U0 + FAIMAN_U1 * wind_ms)
    return out


def pvwatts_dc(effective: F64, cell_c: F64, pdc0_kw: F64, gamma: float = GAMMA_PDC) -> F64:
    """PVWatts v5 DC power (kW): P_dc0 × G_eff / 1000 × (1 + γ (T_cell − 25 °C))."""
    out: F64 = pdc0_kw * effective / 1000.0 * (1.0 + gamma * (cell_c - 25.0))
    return out


def pvwatts_inverter(pdc_kw: F64, pdc0_inverter_kw: F64) -> F64:
    """PVWatts inverter (Dobos 2014), as pvlib ``inverter.pvwatts``: AC kW, clipped at η_nom × P_dc0,inv."""
    zeta = np.divide(pdc_kw, pdc0_inverter_kw, out=np.zeros_like(pdc_kw), where=pdc0_inverter_kw > 0)
    safe = np.where(zeta > 0.0, zeta, 1.0)
    eta = ETA_INV_NOMINAL / ETA_INV_REFERENCE * (-0.0162 * safe - 0.0059 / safe + 0.9858)
    ac = np.where(zeta > 0.0, eta * pdc_kw, 0.0)
    out: F64 = np.clip(ac, 0.0, ETA_INV_NOMINAL * pdc0_inverter_kw)
    return out


def ac_power_kw(
    sun: SunPosition,
    arrays: PvArrays,
    clear_sky_index: F64 | float,
    air_c: F64,
    *,
    linke: F64 | float,
    altitude_m: F64 | float,
) -> F64:
    """AC power (kW) of each array from the sun, the sky and the air temperature: the whole chain."""
    airmass = airmass_absolute(sun.cos_zenith, altitude_m)
    clear_ghi, clear_dni, _ = ineichen(sun.cos_zenith, airmass, linke, altitude_m, sun.dni_extra)
    ghi, dni, dhi = cloudy_components(clear_ghi, clear_dni, clear_sky_index, sun)
    cos_aoi = cos_incidence(arrays.tilt, arrays.azimuth, sun)
    beam, sky, ground = hay_davies(arrays.tilt, cos_aoi, sun, dni=dni, ghi=ghi, dhi=dhi)
    effective = beam * iam_ashrae(cos_aoi) + sky + ground
    cell = faiman_cell_c(beam + sky + ground, air_c)
    dc = pvwatts_dc(effective, cell, arrays.kwp) * (1.0 - PV_LOSSES)
    return pvwatts_inverter(dc, arrays.kwp / DC_AC_RATIO / ETA_INV_NOMINAL)


@dataclass(frozen=True)
class PvArrays:
    """PV arrays as arrays: one row per array (a meter may have several), tilt and azimuth in radians."""

    row: npt.NDArray[np.intp]  # the fleet row (meter) the array feeds
    kwp: F64  # DC nameplate (kWp)
    tilt: F64
    azimuth: F64  # clockwise from north: π faces south

    @classmethod
    def build(
        cls, row: npt.ArrayLike, kwp: npt.ArrayLike, tilt_deg: npt.ArrayLike, azimuth_deg: npt.ArrayLike
    ) -> PvArrays:
        """From degrees (any array-likes of equal length)."""
        return cls(
            np.asarray(row, dtype=np.intp),
            np.asarray(kwp, dtype=np.float64),
            np.radians(np.asarray(tilt_deg, dtype=np.float64)),
            np.radians(np.asarray(azimuth_deg, dtype=np.float64)),
        )

    def __len__(self) -> int:
        return len(self.row)


DEFAULT_TILT_DEG = 20.0


def default_azimuth_deg(latitude: float) -> float:
    """Facing the equator: south (180°) in the northern hemisphere, north (0°) in the southern."""
    return 180.0 if latitude >= 0 else 0.0


# ------------------------------------------------------------------------------------------ clouds
_CLOUD_CELL_DEG = 0.25  # meters in the same quarter-degree cell (~25 km) share the weather
_AR_PHI = 0.93  # minute-to-minute persistence of passing clouds
# A solar day's table runs from 22:00 the evening before to 02:00 the morning after (the blend window of
# gridsim_shared.weather), so consecutive days overlap by 4 hours.
_TABLE_LEAD_S = int((24.0 - weather.BLEND_START_H) * 3600)
_TABLE_MINUTES = 1440 + int((24.0 - weather.BLEND_START_H + weather.BLEND_END_H) * 60)
_STREAM_KC = 0xC2


def cloud_cells(latitude: F64, longitude: F64) -> U64:
    """A key per quarter-degree cell: neighbours share clouds, a city does not share them with another."""
    row = np.floor((latitude + 90.0) / _CLOUD_CELL_DEG).astype(np.int64)
    col = np.floor((longitude + 180.0) / _CLOUD_CELL_DEG).astype(np.int64)
    return (row * 2000 + col).astype(np.uint64)


def cell_centre(cells: U64) -> tuple[F64, F64]:
    """Latitude and longitude (degrees) of the centres of cloud cells (the inverse of :func:`cloud_cells`)."""
    key = cells.astype(np.int64)
    row, col = key // 2000, key % 2000
    latitude: F64 = ((row + 0.5) * _CLOUD_CELL_DEG - 90.0).astype(np.float64)
    longitude: F64 = ((col + 0.5) * _CLOUD_CELL_DEG - 180.0).astype(np.float64)
    return latitude, longitude


def _intraday_sigma(k_day: F64) -> F64:
    # Broken-cloud days vary most minute to minute, clear and overcast days little: 0.5 k (1 − k) peaks
    # at 0.125 for k = 0.5.
    out: F64 = 0.5 * k_day * (1.0 - k_day)
    return out


def unit_noise_day(keys: U64, day: int) -> F64:
    """A unit-variance AR(1) series per cell over a solar day's extended window: shape (cells, 1680)."""
    base = np.uint64((day & 0xFFFFFFFF) * _TABLE_MINUTES)
    minutes = base + np.arange(_TABLE_MINUTES, dtype=np.uint64)
    shocks = randomness.normal(keys[:, None], _STREAM_KC, minutes[None, :])
    out = np.empty_like(shocks)
    innovation = np.sqrt(1.0 - _AR_PHI**2)
    value = shocks[:, 0]
    out[:, 0] = value
    for minute in range(1, _TABLE_MINUTES):  # the AR(1) recursion itself, once per solar day per cell set
        value = _AR_PHI * value + innovation * shocks[:, minute]
        out[:, minute] = value
    return out


class CloudSky:
    """Clear-sky index per cloud cell and minute, in [0, KC_MAX].

    The day-level index of the cell's climate (:mod:`gridsim_shared.weather`, per local solar day,
    blended 22:00–02:00) plus minute-scale AR(1) noise of the cell, whose size follows the day's
    cloudiness. Each solar day's noise table covers 22:00 the evening before to 02:00 after, and the two
    tables overlapping at night are blended with the same ramp, so nothing steps at midnight. A memo of
    a pure function: the same (seed, cells, minute) gives the same value whatever was asked before.
    """

    def __init__(
        self,
        seed: int,
        cells: U64,
        cell_longitude: F64,
        climates: Sequence[Climate],
        cell_climate: npt.NDArray[np.intp],
    ) -> None:
        self.seed = seed
        self.cells = cells
        self.keys = randomness.meter_keys(seed ^ 0x5EED, cells.astype(np.int64))
        self.offset_s = np.round(cell_longitude * 240.0).astype(np.int64)  # local mean solar time
        self.climates = list(climates)
        self.cell_climate = cell_climate
        self._tables: dict[int, F64] = {}

    def _table(self, day: int) -> F64:
        table = self._tables.get(day)
        if table is None:
            table = unit_noise_day(self.keys, day)
            if len(self._tables) > 4:  # a tick needs at most 3 days (cells on either side of midnight)
                self._tables.clear()
            self._tables[day] = table
        return table

    def index(self, epoch_s: int, cell_of: npt.NDArray[np.intp]) -> F64:
        """Clear-sky index at a UTC instant for meters (or arrays) whose cloud cell positions are ``cell_of``."""
        cells = np.unique(cell_of)
        solar_s = epoch_s + self.offset_s[cells]
        k_day = np.empty(len(cells))
        for c, climate in enumerate(self.climates):
            mine = self.cell_climate[cells] == c
            if mine.any():
                k_day[mine] = weather.blended_daily_index(climate, solar_s[mine], self.seed)
        day, w = weather.blend_weight(solar_s)  # the same night-time ramp as the day-level index
        # Day `day`'s table starts at 22:00 of the evening before; day − 1's covers 1440 minutes earlier.
        in_today = (solar_s + _TABLE_LEAD_S - day * DAY_S) // 60
        in_yesterday = in_today + 1440
        noise = np.empty(len(cells))
        for d in np.unique(day):
            sel = day == d
            today = self._table(int(d))[cells[sel], np.minimum(in_today[sel], _TABLE_MINUTES - 1)]
            late = in_yesterday[sel] < _TABLE_MINUTES
            yesterday = np.zeros(int(sel.sum()))
            if late.any():
                previous = self._table(int(d) - 1)
                yesterday[late] = previous[cells[sel][late], in_yesterday[sel][late]]
            noise[sel] = np.where(late, (1.0 - w[sel]) * yesterday + w[sel] * today, today)
        kc = np.clip(k_day + _intraday_sigma(k_day) * noise, 0.0, KC_MAX)
        out: F64 = kc[np.searchsorted(cells, cell_of)]
        return out
