"""The PV chain against pvlib as an oracle: same array, same atmosphere, same air temperature.

gridsim's own implementation (``solar.py``, numpy only) must give a clear-sky day's AC energy per kWp
within ±5 % of pvlib's (NREL SPA sun position, Ineichen, Hay-Davies, ASHRAE IAM, Faiman, PVWatts DC and
inverter) at three latitudes in June and December. pvlib is a dev dependency only.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from gridsim_meter_sim import domain, solar
from gridsim_shared import climate as cl

pvlib = pytest.importorskip("pvlib")
pd = pytest.importorskip("pandas")
# pvlib 0.16 still calls pandas APIs that pandas 3 deprecates; the oracle's own warnings are not ours.
pytestmark = pytest.mark.filterwarnings("ignore::pandas.errors.Pandas4Warning")

SITES = [  # (site, latitude, longitude, climate whose atmosphere and temperature it uses)
    ("San Francisco", 37.77, -122.42, "san-francisco"),
    ("Delhi", 28.58, 77.21, "delhi"),
    ("Berlin", 52.47, 13.40, "berlin"),
    ("Sydney", -33.86, 151.21, "sydney"),
]


def _day_minutes(day: str, longitude: float) -> np.ndarray:
    """Mid-minute instants (UTC epoch s) over the local solar day of ``day``."""
    start = int(datetime.fromisoformat(day).replace(tzinfo=UTC).timestamp()) - round(longitude * 240)
    return np.arange(start, start + 86_400, 60).astype(np.float64) + 30.0


def _gridsim_kwh(
    lat: float, lon: float, t: np.ndarray, climate: cl.Climate, month: int, *, tilt: float, az: float
) -> float:
    n = len(t)
    sun = solar.sun_position(t, np.full(n, lat), np.full(n, lon))
    arrays = solar.PvArrays.build(np.zeros(n, dtype=int), np.ones(n), np.full(n, tilt), np.full(n, az))
    air = cl.outdoor_temperature_c(climate, t.astype(np.int64), 42)
    ac = solar.ac_power_kw(
        sun, arrays, 1.0, air, linke=climate.linke_turbidity[month], altitude_m=climate.altitude_m
    )
    return float(ac.sum() / 60.0)


def _pvlib_kwh(
    lat: float, lon: float, t: np.ndarray, climate: cl.Climate, month: int, *, tilt: float, az: float
) -> float:
    times = pd.DatetimeIndex(pd.to_datetime(t, unit="s", utc=True))
    where = pvlib.location.Location(lat, lon, altitude=climate.altitude_m)
    sp = where.get_solarposition(times)
    airmass = pvlib.atmosphere.get_absolute_airmass(
        pvlib.atmosphere.get_relative_airmass(sp["apparent_zenith"]),
        pvlib.atmosphere.alt2pres(climate.altitude_m),
    )
    extra = pvlib.irradiance.get_extra_radiation(times)
    sky = pvlib.clearsky.ineichen(
        sp["apparent_zenith"],
        airmass,
        climate.linke_turbidity[month],
        altitude=climate.altitude_m,
        dni_extra=extra,
    )
    poa = pvlib.irradiance.get_total_irradiance(
        tilt, az, sp["apparent_zenith"], sp["azimuth"], sky["dni"], sky["ghi"], sky["dhi"],
        dni_extra=extra, model="haydavies", albedo=solar.ALBEDO,
    )  # fmt: skip
    iam = pvlib.iam.ashrae(pvlib.irradiance.aoi(tilt, az, sp["apparent_zenith"], sp["azimuth"]), solar.IAM_B0)
    effective = poa["poa_direct"].fillna(0) * iam + poa["poa_diffuse"].fillna(0)
    air = cl.outdoor_temperature_c(climate, t.astype(np.int64), 42)
    cell = pvlib.temperature.faiman(poa["poa_global"].fillna(0), air, solar.WIND_MS)
    dc = pvlib.pvsystem.pvwatts_dc(effective, cell, 1.0, solar.GAMMA_PDC)
    dc = dc * (1.0 - pvlib.pvsystem.pvwatts_losses() / 100.0)
    ac = pvlib.inverter.pvwatts(dc, 1.0 / solar.DC_AC_RATIO / solar.ETA_INV_NOMINAL, solar.ETA_INV_NOMINAL)
    return float(ac.fillna(0).clip(lower=0).sum() / 60.0)


@pytest.mark.parametrize(("site", "lat", "lon", "climate_name"), SITES)
@pytest.mark.parametrize("day", ["2025-06-20", "2025-12-20"])
def test_clear_sky_daily_energy_matches_pvlib(
    site: str, lat: float, lon: float, climate_name: str, day: str
) -> None:
    climate = cl.climate_named(climate_name)
    month = int(day[5:7]) - 1
    t = _day_minutes(day, lon)
    azimuth = solar.default_azimuth_deg(lat)
    ours = _gridsim_kwh(lat, lon, t, climate, month, tilt=solar.DEFAULT_TILT_DEG, az=azimuth)
    oracle = _pvlib_kwh(lat, lon, t, climate, month, tilt=solar.DEFAULT_TILT_DEG, az=azimuth)
    assert ours == pytest.approx(oracle, rel=0.05), site
    assert 0.5 < ours < 8.0  # kWh per kWp on a clear day


def test_orientation_matters_like_pvlib() -> None:
    """A west-facing steep array against pvlib too, and against the default array."""
    climate = cl.climate_named("san-francisco")
    t = _day_minutes("2025-09-22", -122.42)
    west = _gridsim_kwh(37.77, -122.42, t, climate, 8, tilt=40.0, az=270.0)
    assert west == pytest.approx(_pvlib_kwh(37.77, -122.42, t, climate, 8, tilt=40.0, az=270.0), rel=0.05)
    assert west < _gridsim_kwh(37.77, -122.42, t, climate, 8, tilt=20.0, az=180.0)


def test_gridsim_fleet_clear_day_energy_and_unity_power_factor() -> None:
    """Through the meter-sim itself: an SF prosumer's June day is at most the clear-sky yield, kVAR is the loads'."""
    meter = domain.MeterRow(
        1, "M1", "prosumer", "home", "realistic", 0.0, 1.0, True, 37.77, -122.42, 1, "T1", 50.0, "F1", "U1"
    )
    ders = [domain.DerRow(1, "solar", "production", 0.02, 1.0, 1, 5.0)]
    fleet = domain.build_fleet(42, [meter], ders)
    start = datetime(2025, 6, 20, 7, 0, tzinfo=UTC)
    produced = kvar = 0.0
    for m in range(0, 1440, 5):
        r = domain.simulate(fleet, datetime.fromtimestamp(start.timestamp() + m * 60, UTC), 300)
        produced += float(r.production_kwh[0])
        kvar += float(r.reactive_kvar[0])
        assert r.production_kvah[0] == r.production_kwh[0]
    t = _day_minutes("2025-06-20", -122.42)
    clear = 5.0 * _gridsim_kwh(37.77, -122.42, t, cl.climate_named("san-francisco"), 5, tilt=20.0, az=180.0)
    assert 0.1 * clear < produced <= clear * solar.KC_MAX
    assert kvar == 0.0  # K_consumption = 0: no load, and the PV adds no reactive power
