"""The utility's pure functions: forecasts, scores, prices, CAISO baseline, seeded DR responses."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pytest

from gridsim_utility import domain
from gridsim_utility.programs import rebound_multiplier

START = datetime(2025, 5, 5, tzinfo=UTC)  # a Monday


def synthetic(days: int, seed: int = 1, noise: float = 0.15) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An hourly load with a daily shape, lower weekends, and independent noise."""
    hours = days * 24
    hour, weekend = domain.day_types(START, hours)
    shape = 10 + 6 * np.sin((hour - 6) / 24 * 2 * np.pi) + 4 * (hour >= 18)
    series = shape * np.where(weekend == 1, 0.8, 1.0)
    rng = np.random.default_rng(seed)
    return series * (1 + noise * rng.standard_normal(hours)), hour, weekend


def test_day_types_follow_local_time() -> None:
    hour, weekend = domain.day_types(START, 48, utc_offset_h=-7)
    assert hour[0] == 17  # 00:00 UTC Monday is 17:00 Sunday at UTC−7
    assert weekend[0] == 1
    assert weekend[7] == 0  # 07:00 UTC Monday is local midnight Monday


def test_seasonal_naive_is_last_weeks_hour() -> None:
    series = np.arange(400, dtype=float)
    assert domain.seasonal_naive(series, 200) == 32.0
    assert math.isnan(domain.seasonal_naive(series, 100))


def test_regression_beats_seasonal_naive_on_noisy_weekly_load() -> None:
    series, hour, weekend = synthetic(42)
    targets = range(35 * 24, 42 * 24)
    for h in domain.HORIZONS.values():
        naive = np.array([domain.seasonal_naive(series, t) for t in targets])
        reg = np.array([domain.regression(series, t, h, hour=hour, weekend=weekend) for t in targets])
        actual = series[35 * 24 :]
        s_naive, s_reg = domain.score(actual, naive), domain.score(actual, reg)
        assert s_reg.mape_pct < 0.8 * s_naive.mape_pct
        assert abs(s_reg.bias_pct) < 3


def test_regression_uses_nothing_after_its_issue_time() -> None:
    series, hour, weekend = synthetic(36)
    target = 35 * 24 + 5
    before = domain.regression(series, target, 24, hour=hour, weekend=weekend)
    changed = series.copy()
    changed[target - 24 :] *= 5  # the hours after the issue time, the target included
    assert domain.regression(changed, target, 24, hour=hour, weekend=weekend) == before
    changed[target - 25] *= 5  # the last hour known at issue time does count
    assert domain.regression(changed, target, 24, hour=hour, weekend=weekend) != before


def test_regression_follows_a_level_shift_with_the_hour_ahead_horizon() -> None:
    series, hour, weekend = synthetic(36, noise=0.0)
    target = 35 * 24 + 12
    shifted = series.copy()
    shifted[target - 30 :] += 5.0  # a sudden rise, seen in the last day before the hour-ahead issue
    flat = domain.regression(series, target, 1, hour=hour, weekend=weekend)
    assert domain.regression(shifted, target, 1, hour=hour, weekend=weekend) > flat


def test_regression_without_history_for_the_cell_is_nan() -> None:
    series = np.full(24 * 10, np.nan)
    hour, weekend = domain.day_types(START, len(series))
    assert math.isnan(domain.regression(series, 24 * 9, 1, hour=hour, weekend=weekend))


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
    assert rebound_multiplier(1.0, 0.5) == 1.0
    assert rebound_multiplier(0.6, 0.5) > 1.0


def test_event_hours_cover_partial_hours() -> None:
    start = datetime(2025, 6, 25, 17, 30, tzinfo=UTC)
    assert domain.event_hours_of(start, start + timedelta(hours=1)) == [
        datetime(2025, 6, 25, 17, tzinfo=UTC),
        datetime(2025, 6, 25, 18, tzinfo=UTC),
    ]
