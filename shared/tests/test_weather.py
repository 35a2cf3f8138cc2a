"""The daily clear-sky index: month statistics, persistence, determinism and no step at midnight."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from gridsim_shared import climate as cl
from gridsim_shared import weather


def _days(year: int, month: int) -> np.ndarray:
    """Every day of ``month`` over 30 years (days since 1970)."""
    out = []
    for y in range(year, year + 30):
        start = datetime(y, month, 1, tzinfo=UTC).toordinal() - datetime(1970, 1, 1, tzinfo=UTC).toordinal()
        out.extend(range(start, start + 28))
    return np.array(out, dtype=np.int64)


def test_month_means_follow_the_climate_sunshine() -> None:
    for name in ("san-francisco", "phoenix", "berlin", "delhi"):
        c = cl.climate_named(name)
        for month in (1, 6, 7, 12):
            k = weather.daily_clear_sky_index(c, _days(1991, month), seed=42)
            expected = weather.mean_clear_sky_index(c.sunshine[month - 1])
            assert k.mean() == pytest.approx(expected, abs=0.03), (name, month)
            assert k.min() >= weather.K_LO
            assert k.max() < 1.0
    # Month-specific: Berlin's December is dull, Phoenix's June nearly always clear.
    berlin_dec = weather.daily_clear_sky_index(cl.climate_named("berlin"), _days(1991, 12), 42)
    phoenix_jun = weather.daily_clear_sky_index(cl.climate_named("phoenix"), _days(1991, 6), 42)
    assert berlin_dec.mean() < 0.5
    assert phoenix_jun.mean() > 0.9
    assert np.mean(phoenix_jun > 0.9) > 0.6
    assert phoenix_jun.std() < berlin_dec.std()


def test_daily_index_is_persistent_and_seeded() -> None:
    c = cl.climate_named("delhi")
    days = np.arange(20_000, 26_000)
    k = weather.daily_clear_sky_index(c, days, seed=1)
    lag1 = np.corrcoef(k[:-1], k[1:])[0, 1]
    assert 0.3 < lag1 < 0.8
    np.testing.assert_array_equal(k[100:110], weather.daily_clear_sky_index(c, days[100:110], seed=1))
    assert not np.array_equal(k, weather.daily_clear_sky_index(c, days, seed=2))


def test_blended_index_has_no_step_at_midnight() -> None:
    c = cl.climate_named("san-francisco")
    solar = np.arange(20_000 * 86_400, 20_060 * 86_400, 60, dtype=np.int64)
    k = weather.blended_daily_index(c, solar, seed=42)
    assert np.abs(np.diff(k)).max() < 0.01  # ≤ 1/240 of a day-to-day change per minute
    # Between 02:00 and 22:00 solar time the value is the day's own.
    day = weather.daily_clear_sky_index(c, np.array([20_010]), 42)[0]
    noon = 20_010 * 86_400 + 12 * 3600
    assert weather.blended_daily_index(c, np.array([noon]), 42)[0] == day


def test_cloudy_days_have_smaller_temperature_swings() -> None:
    c = cl.climate_named("berlin")
    days = np.arange(20_000, 20_400)
    k = weather.daily_clear_sky_index(c, days, 9)
    lon_s = round(c.longitude * 240)
    swing = []
    for d in days:
        t = np.arange(d * 86_400 - lon_s + 3 * 3600, d * 86_400 - lon_s + 20 * 3600, 600, dtype=np.int64)
        temp = cl.outdoor_temperature_c(c, t, 9)
        swing.append(temp.max() - temp.min())
    assert np.corrcoef(k, swing)[0, 1] > 0.3
