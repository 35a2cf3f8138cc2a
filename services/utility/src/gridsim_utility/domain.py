"""The utility's programmes as pure functions: forecasts, their scores, prices, DR baselines and credits.

Everything here works on hourly arrays (index 0 = the first hour of the history) and plain values, so the
service, the tests and ``bench/bench_forecast.py`` call the same code. Sources (docs/utility.md):
seasonal-naive and calendar regression as in Hyndman & Athanasopoulos, *Forecasting: Principles and
Practice* (3rd ed., §5.2 and §7); the customer baseline is CAISO's 10-in-10 with a day-of adjustment
(CAISO Business Practice Manual for Demand Response, "Customer Load Baseline"), capped at ±20 %.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Literal

import numpy as np
import numpy.typing as npt

__all__ = [
    "BASELINE_DAYS",
    "DAY_OF_CAP",
    "HORIZONS",
    "MODELS",
    "Horizon",
    "Model",
    "PriceParams",
    "Score",
    "caiso_baseline",
    "complies",
    "day_types",
    "forecast",
    "price_at",
    "regression",
    "score",
    "seasonal_naive",
    "shed_factor",
]

F64 = npt.NDArray[np.float64]

Horizon = Literal["hour-ahead", "day-ahead"]
Model = Literal["seasonal-naive", "regression"]
# Hours between a forecast's issue time and the start of the hour it forecasts.
HORIZONS: dict[Horizon, int] = {"hour-ahead": 1, "day-ahead": 24}
MODELS: tuple[Model, ...] = ("seasonal-naive", "regression")

WEEK_H = 168
# The regression learns from this many days before the issue time (a month of history), recent days
# weighing more: a day's weight halves every HALF_LIFE_DAYS (seasons drift within a month).
TRAIN_DAYS = 28
HALF_LIFE_DAYS = 7.0
# Ridge penalty on the level-anomaly coefficient (the hour × day-type means are not penalised).
_RIDGE = 1e-3

# CAISO 10-in-10: the 10 most recent eligible weekdays (4-in-4 for weekends) within 45 days.
BASELINE_DAYS = {"weekday": 10, "weekend": 4}
BASELINE_LOOKBACK_DAYS = 45
# Day-of adjustment: the ratio of metered to baseline load in the hours before the event, capped ±20 %.
DAY_OF_HOURS = (4, 1)  # from 4 hours to 1 hour before the event's start
DAY_OF_CAP = 0.2


# ------------------------------------------------------------------------------------ forecasts
def day_types(start: datetime, hours: int, utc_offset_h: int = 0) -> tuple[npt.NDArray[np.intp], ...]:
    """(hour of day, is-weekend) of each hour of a series starting at ``start`` (UTC), in local time."""
    first = int(start.timestamp()) // 3600 + utc_offset_h
    index = first + np.arange(hours)
    hour = np.mod(index, 24).astype(np.intp)
    weekday = np.mod(index // 24 + 3, 7)  # 1970-01-01 was a Thursday (Monday = 0)
    return hour, (weekday >= 5).astype(np.intp)


def seasonal_naive(series: F64, target: int) -> float:
    """The same hour one week earlier (weekly seasonality; FPP3 §5.2). NaN when it is not known."""
    lag = target - WEEK_H
    return float(series[lag]) if lag >= 0 else math.nan


def _anomalies(series: F64, expected: F64, ends: npt.NDArray[np.intp]) -> F64:
    """Level anomaly, mean(actual − expected) in kWh, over the 24 hours before each end.

    Additive, not relative: net load crosses zero, where a ratio means nothing. Unknown hours (NaN) are
    left out; 0 where nothing in the window is known.
    """
    known = ~np.isnan(series)
    diff = np.concatenate([[0.0], np.cumsum(np.where(known, series - expected, 0.0))])
    count = np.concatenate([[0], np.cumsum(known)])
    ends = np.clip(ends, 0, len(series))
    starts = np.maximum(ends - 24, 0)
    d = diff[ends] - diff[starts]
    n = (count[ends] - count[starts]).astype(np.float64)
    out: F64 = np.divide(d, n, out=np.zeros(len(ends)), where=n > 0)
    return out


def regression(
    series: F64,
    target: int,
    horizon_h: int,
    *,
    hour: npt.NDArray[np.intp],
    weekend: npt.NDArray[np.intp],
    temperature: F64 | None = None,
) -> float:
    """Calendar regression: a weighted mean per (hour of day × weekday/weekend) over the last ``TRAIN_DAYS``
    days (weights halving every ``HALF_LIFE_DAYS``),
    plus the level anomaly of the 24 hours known at issue time times a weight fitted by least squares on
    the same window (FPP3 §7.4, dummy seasonal predictors). With ``temperature`` (a forecast
    series aligned with ``series``) a temperature term per day type is fitted as well.

    ``series`` holds hourly kWh, NaN where unknown; only hours ending at or before the issue time
    ``target − horizon_h`` are used. NaN when there is no history for the target's hour and day type.
    """
    issue = target - horizon_h  # hours [.., issue) are known
    lo = max(0, issue - TRAIN_DAYS * 24)
    cell = hour * 2 + weekend  # 48 cells
    train = np.arange(lo, issue)
    y = series[lo:issue]
    ok = ~np.isnan(y)
    train, y = train[ok], y[ok]
    if not len(y):
        return math.nan
    weight = 0.5 ** ((issue - train) / (24.0 * HALF_LIFE_DAYS))
    sums = np.bincount(cell[train], weights=weight * y, minlength=48)
    counts = np.bincount(cell[train], weights=weight, minlength=48)
    if counts[cell[target]] == 0:
        return math.nan
    profile = np.divide(sums, counts, out=np.full(48, np.nan), where=counts > 0)
    base = profile[cell[target]]
    # The level anomaly each training hour would have seen at its own issue time, and what followed.
    expected = np.nan_to_num(profile[cell[: target + 1]])
    history = series[: target + 1].copy()
    history[issue:] = np.nan  # nothing after the issue time, not even for the anomaly of training hours
    columns = [_anomalies(history, expected, train - horizon_h)]
    if temperature is not None:
        t_mean = float(np.nanmean(temperature[train]))
        columns.append(temperature[train] - t_mean)
    x = np.column_stack(columns)
    residual = y - profile[cell[train]]
    coef = np.linalg.solve(x.T @ x + _RIDGE * len(y) * np.eye(x.shape[1]), x.T @ residual)
    features = [float(_anomalies(history, expected, np.array([issue]))[0])]
    if temperature is not None:
        features.append(float(temperature[target]) - t_mean)
    return float(base + float(np.dot(coef, features)))


def forecast(
    model: Model,
    series: F64,
    target: int,
    horizon_h: int,
    *,
    hour: npt.NDArray[np.intp],
    weekend: npt.NDArray[np.intp],
) -> float:
    """One model's forecast of ``series[target]`` issued ``horizon_h`` hours before it."""
    if model == "seasonal-naive":
        return seasonal_naive(series, target)
    return regression(series, target, horizon_h, hour=hour, weekend=weekend)


@dataclass(frozen=True, slots=True)
class Score:
    """Accuracy over a window: MAPE and WAPE (%), bias (% of the mean |actual|; + = over-forecast)."""

    mape_pct: float
    wape_pct: float
    bias_pct: float
    hours: int


def score(actual: F64, predicted: F64) -> Score:
    """MAPE and bias of the pairs where both are known.

    Hours whose |actual| is under 5 % of the window's mean |actual| are left out of MAPE (net load can
    cross zero at noon, where a percentage error means nothing); WAPE (Σ|error| / Σ|actual|) and bias use
    every pair.
    """
    ok = ~(np.isnan(actual) | np.isnan(predicted))
    a, p = actual[ok], predicted[ok]
    if not len(a):
        return Score(math.nan, math.nan, math.nan, 0)
    scale = float(np.mean(np.abs(a)))
    if scale == 0.0:
        return Score(math.nan, math.nan, math.nan, len(a))
    big = np.abs(a) >= 0.05 * scale
    mape = float(np.mean(np.abs(p[big] - a[big]) / np.abs(a[big]))) * 100.0 if big.any() else math.nan
    wape = float(np.mean(np.abs(p - a))) / scale * 100.0
    bias = float(np.mean(p - a)) / scale * 100.0
    return Score(mape, wape, bias, len(a))


# ------------------------------------------------------------------------------------ prices
@dataclass(frozen=True, slots=True)
class PriceParams:
    """The tariff behind the dynamic price (per kWh, the billing currency)."""

    base_rate: float
    peak_rate: float
    peak_start_h: int
    peak_end_h: int
    # Real-time price: rate × (1 + slope × (load / reference − 1)), clipped to [floor, cap] × rate.
    rtp_slope: float
    floor_share: float
    cap_share: float


def price_at(
    params: PriceParams,
    local_hour: int,
    load_kwh: float | None,
    reference_kwh: float | None,
    cpp_rate: float | None,
) -> tuple[float, float, str]:
    """(ToU rate, real-time price, period) for one hour of one node.

    The ToU rate is the period's; the real-time price moves it with the node's forecast (or metered) load
    against its reference (its 28-day mean hourly load); a critical-peak event replaces both.
    """
    peak = params.peak_start_h <= local_hour < params.peak_end_h
    tou = params.peak_rate if peak else params.base_rate
    if cpp_rate is not None:
        return tou, cpp_rate, "critical-peak"
    rtp = tou
    if load_kwh is not None and reference_kwh:
        factor = 1.0 + params.rtp_slope * (load_kwh / reference_kwh - 1.0)
        rtp = tou * min(max(factor, params.floor_share), params.cap_share)
    return tou, round(rtp, 4), "peak" if peak else "off-peak"


# ------------------------------------------------------------------------------------ demand response
def _unit(*parts: object) -> float:
    """A uniform number in [0, 1) from the parts (seeded and order-free: one draw per participant)."""
    digest = hashlib.blake2b(":".join(str(p) for p in parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def complies(seed: int, event_id: int, meter_id: int, compliance: float) -> bool:
    """Does this participant respond to this event? Seeded: not everyone, not every time."""
    return _unit(seed, "comply", event_id, meter_id) < compliance


def shed_factor(
    seed: int,
    event_id: int,
    meter_id: int,
    *,
    shed_share: float,
    flexible_kw: float,
    rated_kw: float,
    level: int,
) -> float:
    """The multiplier on a complying participant's load during the event.

    The share of its rated appliance power that is flexible, times the programme's shed share, times the
    event's level (1: 60 %, 2: 80 %, 3: 100 %), with ±25 % per-participant variation; at most 90 % shed.
    """
    flexible = min(1.0, flexible_kw / rated_kw)
    jitter = 0.75 + 0.5 * _unit(seed, "shed", event_id, meter_id)
    shed = shed_share * flexible * (0.4 + 0.2 * level) * jitter
    return round(1.0 - min(0.9, shed), 4)


def caiso_baseline(
    daily: dict[date, F64],
    event_day: date,
    event_days: set[date],
    day_of: F64 | None,
    event_hours: npt.NDArray[np.intp],
) -> F64 | None:
    """CAISO 10-in-10 customer load baseline for the event day's 24 hours, with the day-of adjustment.

    ``daily``: each past local day's 24 hourly kWh; the baseline averages the most recent 10 weekdays
    (4 weekend days, for a weekend event) within 45 days that were not event days and are complete.
    ``day_of``: the event day's metered hours (NaN unknown); the adjustment ratio of metered to baseline
    load over the 4th to 1st hour before the event's first hour scales the baseline, capped at ±20 %.
    None when no eligible day exists.
    """
    weekend = event_day.weekday() >= 5
    wanted = BASELINE_DAYS["weekend" if weekend else "weekday"]
    eligible = []
    for day in sorted(daily, reverse=True):
        if day >= event_day or (event_day - day).days > BASELINE_LOOKBACK_DAYS or day in event_days:
            continue
        if (day.weekday() >= 5) != weekend or np.isnan(daily[day]).any():
            continue
        eligible.append(daily[day])
        if len(eligible) == wanted:
            break
    if not eligible:
        return None
    baseline: F64 = np.mean(eligible, axis=0)
    if day_of is not None and len(event_hours):
        first = int(event_hours.min())
        window = np.arange(max(0, first - DAY_OF_HOURS[0]), max(0, first - DAY_OF_HOURS[1] + 1))
        metered = day_of[window]
        expected = baseline[window]
        if len(window) and not np.isnan(metered).any() and expected.sum() > 0:
            ratio = float(metered.sum() / expected.sum())
            baseline = baseline * min(max(ratio, 1.0 - DAY_OF_CAP), 1.0 + DAY_OF_CAP)
    return baseline


def event_hours_of(start: datetime, end: datetime) -> list[datetime]:
    """The hour starts an event window covers (a partial hour counts)."""
    first = start.replace(minute=0, second=0, microsecond=0)
    hours = []
    t = first
    while t < end:
        hours.append(t)
        t += timedelta(hours=1)
    return hours
