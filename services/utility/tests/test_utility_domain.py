"""The utility's pure functions: forecasts, scores, prices, CAISO baseline, seeded DR responses."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pytest

from gridsim_utility import domain

START = datetime(2025, 5, 5, tzinfo=UTC)  # a Monday


LA = "America/Los_Angeles"


def synthetic(days: int, seed: int = 1, noise: float = 0.15) -> tuple[np.ndarray, domain.Inputs]:
    """An hourly load with a daily shape, lower weekends, and independent noise (UTC calendar)."""
    hours = days * 24
    hour, weekday = domain.day_types(START, hours, "UTC")
    shape = 10 + 6 * np.sin((hour - 6) / 24 * 2 * np.pi) + 4 * (hour >= 18)
    series = shape * np.where(weekday >= 5, 0.8, 1.0)
    rng = np.random.default_rng(seed)
    return series * (1 + noise * rng.standard_normal(hours)), domain.Inputs(hour=hour, weekday=weekday)


def test_day_types_follow_local_time_with_daylight_saving() -> None:
    hour, weekday = domain.day_types(START, 48, LA)
    assert hour[0] == 17  # 00:00 UTC Monday 5 May is 17:00 Sunday in San Francisco (PDT, UTC−7)
    assert weekday[0] == 6
    assert weekday[7] == 0  # 07:00 UTC Monday is local midnight Monday
    winter, _ = domain.day_types(datetime(2025, 12, 1, tzinfo=UTC), 1, LA)
    assert winter[0] == 16  # PST, UTC−8
    assert domain.local_hour(datetime(2025, 12, 1, tzinfo=UTC), LA) == 16


def test_seasonal_naive_is_last_weeks_hour() -> None:
    series = np.arange(400, dtype=float)
    assert domain.seasonal_naive(series, 200) == 32.0
    assert math.isnan(domain.seasonal_naive(series, 100))


def test_regression_beats_seasonal_naive_on_noisy_weekly_load() -> None:
    series, inputs = synthetic(42)
    targets = range(35 * 24, 42 * 24)
    for h in domain.HORIZONS.values():
        naive = np.array([domain.seasonal_naive(series, t) for t in targets])
        reg = np.array([domain.regression(series, t, h, inputs) for t in targets])
        actual = series[35 * 24 :]
        s_naive, s_reg = domain.score(actual, naive), domain.score(actual, reg)
        assert s_reg.mape_pct < 0.8 * s_naive.mape_pct
        assert abs(s_reg.bias_pct) < 3


def test_regression_learns_the_weather_from_the_forecast() -> None:
    """Load that follows the temperature: the regression with the temperature forecast (with error)
    beats the one without it."""
    series, inputs = synthetic(42, noise=0.03)
    rng = np.random.default_rng(5)
    daily = np.repeat(rng.normal(0, 3, 42), 24)  # a warm or cold day
    series = series + 0.8 * daily
    forecast = {h: daily + rng.normal(0, 0.8, len(daily)) for h in domain.HORIZONS.values()}
    with_weather = domain.Inputs(inputs.hour, inputs.weekday, temperature=forecast)
    targets = range(35 * 24, 42 * 24)
    actual = series[35 * 24 :]
    for h in domain.HORIZONS.values():
        plain = np.array([domain.regression(series, t, h, inputs) for t in targets])
        warm = np.array([domain.regression(series, t, h, with_weather) for t in targets])
        assert domain.score(actual, warm).mape_pct < 0.8 * domain.score(actual, plain).mape_pct


def test_solar_is_clear_sky_output_times_the_forecast_index() -> None:
    hours = 30 * 24
    hour, weekday = domain.day_types(START, hours, "UTC")
    shape = np.clip(np.sin((hour - 6) / 12 * np.pi), 0, None)
    rng = np.random.default_rng(3)
    k = np.repeat(rng.uniform(0.3, 1.0, 30), 24)
    production = 5.0 * shape * k
    inputs = domain.Inputs(hour, weekday, clear_sky={24: k})
    target = 29 * 24 + 12
    assert domain.solar(production, target, 24, inputs) == pytest.approx(production[target], rel=1e-6)
    assert domain.solar(production, 29 * 24 + 2, 24, inputs) == 0.0  # night
    load = np.full(hours, 8.0)
    assert domain.forecast("regression", load, production, target, 24, inputs=inputs)[1] == pytest.approx(
        8.0 - production[target], rel=1e-6
    )


def test_regression_uses_nothing_after_its_issue_time() -> None:
    series, inputs = synthetic(36)
    target = 35 * 24 + 5
    before = domain.regression(series, target, 24, inputs)
    changed = series.copy()
    changed[target - 24 :] *= 5  # the hours after the issue time, the target included
    assert domain.regression(changed, target, 24, inputs) == before
    changed[target - 25] *= 5  # the last hour known at issue time does count
    assert domain.regression(changed, target, 24, inputs) != before


def test_regression_follows_a_level_shift_with_the_hour_ahead_horizon() -> None:
    series, inputs = synthetic(36, noise=0.0)
    target = 35 * 24 + 12
    shifted = series.copy()
    shifted[target - 30 :] += 5.0  # a sudden rise, seen in the last day before the hour-ahead issue
    flat = domain.regression(series, target, 1, inputs)
    assert domain.regression(shifted, target, 1, inputs) > flat


def test_regression_without_history_for_the_cell_is_nan() -> None:
    series = np.full(24 * 10, np.nan)
    hour, weekday = domain.day_types(START, len(series), LA)
    assert math.isnan(domain.regression(series, 24 * 9, 1, domain.Inputs(hour=hour, weekday=weekday)))


def test_score_mape_wape_and_bias() -> None:
    actual = np.array([10.0, 20.0, np.nan, 0.1])
    predicted = np.array([11.0, 18.0, 5.0, 0.1])
    s = domain.score(actual, predicted)
    assert s.hours == 3
    # The 0.1 kWh hour is under 5 % of the mean |actual| (10.03): out of MAPE, in WAPE and bias.
    assert s.mape_pct == pytest.approx((10 + 10) / 2)
    assert s.wape_pct == pytest.approx(3.0 / 3 / (30.1 / 3) * 100)
    assert s.bias_pct == pytest.approx(-1.0 / 3 / (30.1 / 3) * 100)
    assert domain.score(np.array([np.nan]), np.array([1.0])).hours == 0


PARAMS = domain.PriceParams(
    base_rate=6.0,
    peak_rate=9.0,
    peak_start_h=16,
    peak_end_h=21,
    rtp_slope=0.8,
    floor_share=0.5,
    cap_share=3.0,
)


def test_prices_tou_rtp_and_critical_peak() -> None:
    assert domain.price_at(PARAMS, 10, None, None, None) == (6.0, 6.0, "off-peak")
    assert domain.price_at(PARAMS, 17, None, None, None) == (9.0, 9.0, "peak")
    low = domain.price_at(PARAMS, 10, 50.0, 100.0, None)[1]
    high = domain.price_at(PARAMS, 10, 150.0, 100.0, None)[1]
    assert low == pytest.approx(6.0 * 0.6)
    assert high == pytest.approx(6.0 * 1.4)
    assert domain.price_at(PARAMS, 10, 0.0, 100.0, None)[1] == pytest.approx(3.0)  # floor
    assert domain.price_at(PARAMS, 10, 1000.0, 100.0, None)[1] == pytest.approx(18.0)  # cap
    assert domain.price_at(PARAMS, 17, 150.0, 100.0, 40.0) == (9.0, 40.0, "critical-peak")


def _days(n: int, end: date, value: float = 1.0) -> dict[date, np.ndarray]:
    return {end - timedelta(days=k): np.full(24, value * k) for k in range(1, n + 1)}


def test_caiso_baseline_averages_ten_eligible_weekdays() -> None:
    event_day = date(2025, 6, 25)  # a Wednesday
    daily = _days(30, event_day)
    hours = np.array([17, 18])
    base = domain.caiso_baseline(daily, event_day, set(), None, hours)
    assert base is not None
    weekdays = [k for k in range(1, 31) if (event_day - timedelta(days=k)).weekday() < 5][:10]
    assert base[0] == pytest.approx(np.mean(weekdays))
    # An earlier event day is skipped; the next eligible weekday takes its place.
    skipped = event_day - timedelta(days=weekdays[0])
    base2 = domain.caiso_baseline(daily, event_day, {skipped}, None, hours)
    assert base2 is not None
    expected = [k for k in range(1, 31) if (event_day - timedelta(days=k)).weekday() < 5 and k != weekdays[0]]
    assert base2[0] == pytest.approx(np.mean(expected[:10]))


def test_caiso_baseline_weekend_uses_four_weekend_days() -> None:
    event_day = date(2025, 6, 28)  # a Saturday
    daily = _days(30, event_day)
    base = domain.caiso_baseline(daily, event_day, set(), None, np.array([12]))
    assert base is not None
    weekend = [k for k in range(1, 31) if (event_day - timedelta(days=k)).weekday() >= 5][:4]
    assert base[0] == pytest.approx(np.mean(weekend))


def test_caiso_day_of_adjustment_is_capped() -> None:
    event_day = date(2025, 6, 25)
    daily = {event_day - timedelta(days=k): np.full(24, 10.0) for k in range(1, 20)}
    hours = np.array([17, 18])
    day_of = np.full(24, np.nan)
    day_of[13:17] = 11.0  # 10 % above the baseline in the 4 hours before the event
    base = domain.caiso_baseline(daily, event_day, set(), day_of, hours)
    assert base is not None
    assert base[17] == pytest.approx(11.0)
    day_of[13:17] = 20.0  # +100 %: capped at +20 %
    capped = domain.caiso_baseline(daily, event_day, set(), day_of, hours)
    assert capped is not None
    assert capped[17] == pytest.approx(12.0)
    assert domain.caiso_baseline({}, event_day, set(), None, hours) is None


def test_compliance_is_seeded_and_near_its_share() -> None:
    draws = [domain.complies(42, 7, m, 0.6) for m in range(2000)]
    assert draws == [domain.complies(42, 7, m, 0.6) for m in range(2000)]
    assert 0.55 < sum(draws) / len(draws) < 0.65
    assert draws != [domain.complies(42, 8, m, 0.6) for m in range(2000)]  # not every time


def test_shed_factor_and_rebound() -> None:
    factors = [
        domain.shed_factor(42, 1, m, shed_share=0.8, flexible_kw=7.2, rated_kw=12.0, level=3)
        for m in range(200)
    ]
    assert all(0.1 <= f < 1.0 for f in factors)
    lower = domain.shed_factor(42, 1, 5, shed_share=0.8, flexible_kw=7.2, rated_kw=12.0, level=1)
    assert lower > factors[5]  # a milder level sheds less
    # The thermostat setback grows with the level and the programme's shed share, within 0-4 °C.
    assert domain.hvac_offset_c(0.8, 1) < domain.hvac_offset_c(0.8, 2) < domain.hvac_offset_c(0.8, 3) <= 4.0
    assert domain.hvac_offset_c(0.3, 2) < domain.hvac_offset_c(0.8, 2)


def test_event_hours_cover_partial_hours() -> None:
    start = datetime(2025, 6, 25, 17, 30, tzinfo=UTC)
    assert domain.event_hours_of(start, start + timedelta(hours=1)) == [
        datetime(2025, 6, 25, 17, tzinfo=UTC),
        datetime(2025, 6, 25, 18, tzinfo=UTC),
    ]
