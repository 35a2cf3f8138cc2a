"""Climates: normals, local time with daylight saving, the diurnal cycle and the seeded weather anomaly."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from gridsim_shared import climate as cl


def _epoch(*args: int, tz: str = "UTC") -> int:
    return int(datetime(*args, tzinfo=ZoneInfo(tz)).timestamp())  # type: ignore[misc]


def _day(start: datetime, step_s: int = 60) -> np.ndarray:
    t0 = int(start.timestamp())
    return np.arange(t0, t0 + 86_400, step_s, dtype=np.int64)


def test_builtin_table_covers_the_required_climates() -> None:
    assert {"san-francisco", "phoenix", "houston", "minneapolis", "delhi", "berlin"} <= set(cl.CLIMATES)
    for c in cl.CLIMATES.values():
        assert c.source
        assert len(c.mean_c) == 12
        assert c.nominal_v in (230.0, 240.0)
    # NOAA 1991–2020: Phoenix's July mean is ~35.6 °C, Minneapolis' January ~ −8.9 °C.
    assert cl.climate_named("phoenix").mean_c[6] == pytest.approx(35.6, abs=0.3)
    assert cl.climate_named("minneapolis").mean_c[0] == pytest.approx(-8.9, abs=0.3)


def test_climate_named_and_nearest() -> None:
    with pytest.raises(KeyError, match="unknown climate 'atlantis'"):
        cl.climate_named("atlantis")
    assert cl.climate_for(37.78, -122.41).name == "san-francisco"  # the demo world
    assert cl.climate_for(28.6, 77.2).name == "delhi"
    assert cl.climate_for(48.1, 11.6).name == "berlin"  # Munich: nearest built-in
    assert cl.climate_for(-37.8, 145.0).name == "sydney"  # Melbourne


def test_invalid_climate_is_refused() -> None:
    with pytest.raises(ValueError, match="12 values"):
        cl.Climate("x", "x", "UTC", 0, 0, (1.0,), (1.0,), 230, "en-50160", 1, 0.5, "test")


def test_local_hour_follows_daylight_saving() -> None:
    sf = cl.climate_named("san-francisco")
    # Noon UTC is 04:00 PST in January and 05:00 PDT in July.
    hours = cl.local_hour(sf, np.array([_epoch(2025, 1, 15, 12), _epoch(2025, 7, 15, 12)]))
    np.testing.assert_allclose(hours, [4.0, 5.0])
    # Across the spring-forward night, one real hour apart reads two clock hours apart.
    before, after = (
        _epoch(2025, 3, 9, 1, 30, tz="America/Los_Angeles"),
        _epoch(2025, 3, 9, 3, 30, tz="America/Los_Angeles"),
    )
    assert after - before == 3600
    np.testing.assert_allclose(cl.local_hour(sf, np.array([before, after])), [1.5, 3.5])
    delhi = cl.climate_named("delhi")  # UTC+5:30 all year
    np.testing.assert_allclose(cl.local_hour(delhi, np.array([0, _epoch(2025, 7, 1)])), [5.5, 5.5])


def test_temperature_is_deterministic_and_seeded() -> None:
    sf = cl.climate_named("san-francisco")
    t = _day(datetime(2025, 6, 20, tzinfo=UTC))
    a = cl.outdoor_temperature_c(sf, t, seed=42)
    np.testing.assert_array_equal(a, cl.outdoor_temperature_c(sf, t, seed=42))
    # Each instant alone gives the same value as in the batch (no dependence on what else is asked).
    np.testing.assert_array_equal(
        a[::97], [cl.outdoor_temperature_c(sf, np.array([x]), 42)[0] for x in t[::97]]
    )
    assert not np.array_equal(a, cl.outdoor_temperature_c(sf, t, seed=7))


def test_diurnal_cycle_minimum_near_sunrise_maximum_mid_afternoon() -> None:
    phoenix = cl.climate_named("phoenix")
    t = _day(datetime(2025, 7, 10, tzinfo=ZoneInfo("America/Phoenix")))
    temp = cl.outdoor_temperature_c(phoenix, t, seed=1)
    hours = cl.local_hour(phoenix, t)
    assert 4.5 <= hours[np.argmin(temp)] <= 6.5  # sunrise in Phoenix in July ≈ 05:30 MST
    assert 13.5 <= hours[np.argmax(temp)] <= 16.5
    # The day's swing is about the normal July range (21.5 °F ≈ 12 °C), the mean near the normal.
    assert 8.0 <= temp.max() - temp.min() <= 16.0
    assert abs(temp.mean() - 35.6) < 8.0


def test_season_and_climate_contrasts() -> None:
    def mean_of(name: str, month: int) -> float:
        c = cl.climate_named(name)
        start = datetime(2025, month, 1, tzinfo=UTC)
        t = np.arange(int(start.timestamp()), int(start.timestamp()) + 28 * 86_400, 3600, dtype=np.int64)
        return float(cl.outdoor_temperature_c(c, t, seed=42).mean())

    assert mean_of("phoenix", 7) > mean_of("san-francisco", 7) + 12.0
    assert mean_of("minneapolis", 1) < -3.0
    assert abs(mean_of("san-francisco", 6) - mean_of("san-francisco", 12)) < 8.0  # a mild climate
    assert mean_of("sydney", 1) > mean_of("sydney", 7) + 6.0  # southern hemisphere


def test_no_jump_at_midnight_and_anomaly_statistics() -> None:
    berlin = cl.climate_named("berlin")
    start = int(datetime(2025, 1, 1, tzinfo=UTC).timestamp())
    t = np.arange(start, start + 365 * 86_400, 60, dtype=np.int64)
    temp = cl.outdoor_temperature_c(berlin, t, seed=3)
    # Minute-to-minute steps stay small everywhere, including every local midnight.
    assert np.abs(np.diff(temp)).max() < 0.1
    anomaly = cl.daily_anomaly_c(berlin, np.arange(20_000, 22_000), seed=3)
    assert anomaly.std() == pytest.approx(berlin.anomaly_sd_c, rel=0.15)
    lag1 = np.corrcoef(anomaly[:-1], anomaly[1:])[0, 1]
    assert lag1 == pytest.approx(berlin.anomaly_persistence, abs=0.08)
