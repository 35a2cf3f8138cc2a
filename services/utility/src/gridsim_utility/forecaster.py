"""Forecast refresh on the simulated clock: issue, store, publish, score; and the prices that follow.

Each simulated hour ``H`` whose rollups are complete (the aggregator's ``rolled_until``) is an issue time:
every node gets an hour-ahead forecast of hour ``H+1`` and a day-ahead forecast of hour ``H+24`` from both
models, using only the hours before ``H``. Hours of the scoring window with no forecast yet (the service
started late) are forecast as of their own issue time, with the same rule, so scores never use hindsight.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt

from gridsim_shared.climate import Climate
from gridsim_utility import domain, weather
from gridsim_utility import repository as repo
from gridsim_utility.repository import Conn, Node

__all__ = [
    "History",
    "Issued",
    "by_node",
    "floor_hour",
    "inputs_of",
    "issue",
    "load_history",
    "price_schedule",
    "scores",
]

F64 = npt.NDArray[np.float64]
HOUR = timedelta(hours=1)


def floor_hour(t: datetime) -> datetime:
    """The start of the hour containing ``t``."""
    return t.replace(minute=0, second=0, microsecond=0)


@dataclass(frozen=True)
class History:
    """Hourly load and net load per node from ``start`` (index 0) up to the issue time, NaN where unknown."""

    start: datetime
    hours: int  # length of every series (known hours + the 24 forecast hours after the issue time)
    load: dict[int, F64]
    net: dict[int, F64]
    hour: npt.NDArray[np.intp]  # local hour of day of each hour
    weekday: npt.NDArray[np.intp]  # local weekday (Monday 0)
    climate: Climate  # the world's: its time zone and the weather the forecasts are made from
    seed: int

    def index(self, t: datetime) -> int:
        return int((t - self.start) / HOUR)

    def time(self, i: int) -> datetime:
        return self.start + i * HOUR


async def load_history(
    conn: Conn, nodes: Sequence[Node], issue_at: datetime, days: int, *, seed: int
) -> History:
    """The hours before ``issue_at`` (``days`` of them) and room for 24 hours after, in the world's
    climate (its time zone for local hours and days)."""
    start = issue_at - timedelta(days=days)
    hours = days * 24 + 25
    load = {n.id: np.full(hours, np.nan) for n in nodes}
    net = {n.id: np.full(hours, np.nan) for n in nodes}
    for node_id, bucket, consumption, production in await repo.node_hourly(
        conn, [n.id for n in nodes], start, issue_at
    ):
        i = int((bucket - start) / HOUR)
        load[node_id][i] = consumption
        net[node_id][i] = consumption - production
    climate = await repo.world_climate(conn)
    hour, weekday = domain.day_types(start, hours, climate.timezone)
    return History(start, hours, load, net, hour, weekday, climate, seed)


@dataclass(frozen=True)
class Issued:
    """One stored forecast row."""

    node_id: int
    horizon: domain.Horizon
    model: domain.Model
    target: datetime
    issued_at: datetime
    load_kwh: float
    net_load_kwh: float


def issue(
    history: History,
    nodes: Sequence[Node],
    issue_at: datetime,
    done: set[tuple[int, str, str, datetime]],
    backfill_from: datetime,
) -> list[Issued]:
    """Every forecast due at ``issue_at`` and those of the window still missing (pure; CPU-bound)."""
    out: list[Issued] = []
    first = max(history.index(backfill_from), domain.WEEK_H)
    last = history.index(issue_at)
    inputs = inputs_of(history)
    for horizon, h in domain.HORIZONS.items():
        # Targets whose issue time (target − h) is at or before now, from the window's start.
        targets = range(first + h, last + h + 1)
        for model in domain.MODELS:
            for node in nodes:
                load_series = history.load[node.id]
                earliest = domain.earliest_target(model, load_series, h)
                if earliest is None:
                    continue
                production = load_series - history.net[node.id]
                for t in range(max(targets.start, earliest), targets.stop):
                    when = history.time(t)
                    if (node.id, horizon, model, when) in done:
                        continue
                    load, net = domain.forecast(model, load_series, production, t, h, inputs=inputs)
                    if math.isnan(load) or math.isnan(net):
                        continue
                    # Load is never negative (a fit on a thin history can undershoot); net load can be.
                    out.append(Issued(node.id, horizon, model, when, when - h * HOUR, max(load, 0.0), net))
    return out


def inputs_of(history: History) -> domain.Inputs:
    """The calendar of the history's hours and the weather forecast of each horizon (with its error)."""
    forecasts = {
        h: weather.forecast(history.climate, history.seed, history.start, history.hours, h)
        for h in domain.HORIZONS.values()
    }
    return domain.Inputs(
        hour=history.hour,
        weekday=history.weekday,
        temperature={h: f.temperature_c for h, f in forecasts.items()},
        clear_sky={h: f.clear_sky_index for h, f in forecasts.items()},
    )


def by_node(stored: Sequence[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    """Stored forecast rows per node, in their order. A refresh at a million meters reads ~500,000 rows
    for 10,201 nodes: what is done per node must read only that node's rows, not all of them each time."""
    out: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in stored:
        out[row["node_id"]].append(row)
    return out


def scores(
    history: History, stored: Sequence[dict[str, Any]], node: Node, window_start: datetime
) -> list[tuple[str, str, str, domain.Score]]:
    """(quantity, horizon, model, score) of a node's stored forecasts against what was metered."""
    out: list[tuple[str, str, str, domain.Score]] = []
    lo = history.index(window_start)
    for horizon in domain.HORIZONS:
        for model in domain.MODELS:
            predicted_load = np.full(history.hours, np.nan)
            predicted_net = np.full(history.hours, np.nan)
            for row in stored:
                if row["node_id"] != node.id or row["horizon"] != horizon or row["model"] != model:
                    continue
                i = history.index(row["target"])
                if 0 <= i < history.hours:
                    predicted_load[i] = row["load_kwh"]
                    predicted_net[i] = row["net_load_kwh"]
            for quantity, actual, predicted in (
                ("load", history.load[node.id], predicted_load),
                ("net_load", history.net[node.id], predicted_net),
            ):
                out.append((quantity, horizon, model, domain.score(actual[lo:], predicted[lo:])))
    return out


def price_schedule(
    params: domain.PriceParams,
    history: History,
    node: Node,
    *,
    stored: Sequence[dict[str, Any]],
    issue_at: datetime,
    cpp: Sequence[dict[str, Any]],
) -> list[tuple[datetime, float, float, str]]:
    """(hour, ToU rate, price, period) for the 24 hours from ``issue_at``.

    The real-time price follows the node's regression forecast (hour-ahead where issued, else day-ahead)
    against its mean metered hourly load over the history; critical-peak events set their own price.
    """
    known = history.load[node.id][: history.index(issue_at)]
    reference = float(np.nanmean(known)) if np.isfinite(known).any() else None
    forecast: dict[datetime, float] = {}
    for row in stored:
        if row["node_id"] == node.id and row["model"] == "regression":
            target = row["target"]
            if row["horizon"] == "hour-ahead" or target not in forecast:
                forecast[target] = float(row["load_kwh"])
    out = []
    for k in range(24):
        t = issue_at + k * HOUR
        rate = None
        for ev in cpp:
            if ev["start"] < t + HOUR and ev["end"] > t:
                rate = float(ev["cpp_rate"])
        local_hour = domain.local_hour(t, history.climate.timezone)
        tou, price, period = domain.price_at(params, local_hour, forecast.get(t), reference, rate)
        out.append((t, tou, price, period))
    return out
