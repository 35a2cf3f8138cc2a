"""The forecast refresh's pure part (gridsim_utility.forecaster): what it issues and what it spends."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from gridsim_shared.climate import CLIMATE_LIST
from gridsim_utility import domain, forecaster
from gridsim_utility.repository import Node

DAYS = 7 + domain.TRAIN_DAYS + 8  # what the service loads: the scoring window and the regression's month
ISSUE_AT = datetime(2025, 7, 30, 18, tzinfo=UTC)
WINDOW_START = ISSUE_AT - timedelta(days=7)


def _history(known_days: dict[int, int], seed: int = 7) -> forecaster.History:
    """Nodes whose hourly load is known for their last ``known_days`` days before the issue time (a daily
    and weekly shape with noise, some solar), unknown before."""
    start = ISSUE_AT - timedelta(days=DAYS)
    hours = DAYS * 24 + 25
    climate = CLIMATE_LIST[0]
    hour, weekday = domain.day_types(start, hours, climate.timezone)
    rng = np.random.default_rng(seed)
    load, net = {}, {}
    issue = DAYS * 24
    for node_id, days in known_days.items():
        shape = 10 + 4 * np.sin((hour - 7) / 24 * 2 * math.pi) + (weekday >= 5) * 2.0
        consumption = shape + rng.normal(0, 0.5, hours)
        production = np.clip(np.sin((hour - 6) / 12 * math.pi), 0, None) * 3.0
        series = np.full(hours, np.nan)
        net_series = np.full(hours, np.nan)
        first = issue - days * 24
        series[first:issue] = consumption[first:issue]
        net_series[first:issue] = (consumption - production)[first:issue]
        load[node_id], net[node_id] = series, net_series
    return forecaster.History(start, hours, load, net, hour, weekday, climate, seed)


def _every_forecast(history: forecaster.History, nodes: list[Node]) -> list[forecaster.Issued]:
    """What issue() must answer, computed the slow way: every model at every hour of the window."""
    inputs = forecaster.inputs_of(history)
    first = max(history.index(WINDOW_START), domain.WEEK_H)
    last = history.index(ISSUE_AT)
    out = []
    for horizon, h in domain.HORIZONS.items():
        for model in domain.MODELS:
            for node in nodes:
                production = history.load[node.id] - history.net[node.id]
                for t in range(first + h, last + h + 1):
                    load, net = domain.forecast(model, history.load[node.id], production, t, h, inputs=inputs)
                    if not (math.isnan(load) or math.isnan(net)):
                        when = history.time(t)
                        out.append(forecaster.Issued(node.id, horizon, model, when, when - h * forecaster.HOUR,
                                                     max(load, 0.0), net))  # fmt: skip
    return out


def test_issue_makes_every_forecast_the_models_can_make_and_no_other() -> None:
    # A node known for the whole history, one for the last ten days (the seasonal-naive model can forecast
    # only its last three; the regression all ten), one for the last thirty hours, one never.
    history = _history({1: DAYS, 2: 10, 3: 0, 4: 0})
    history.load[3][-25 - 30 : -25] = 5.0
    history.net[3][-25 - 30 : -25] = 4.0
    nodes = [Node(i, f"n{i}", "transformer", None) for i in (1, 2, 3, 4)]

    issued = forecaster.issue(history, nodes, ISSUE_AT, set(), WINDOW_START)

    expected = _every_forecast(history, nodes)
    assert issued == expected
    per_node = {n.id: sum(1 for f in issued if f.node_id == n.id) for n in nodes}
    assert per_node[1] > per_node[2] > per_node[3] > 0
    assert per_node[4] == 0


def test_issue_tries_no_forecast_before_a_node_has_history(monkeypatch: pytest.MonkeyPatch) -> None:
    # A new world: nothing metered yet for 500 nodes. Every forecast of the window would be NaN; trying
    # them all (500 nodes x 2 horizons x 2 models x 168 hours) is what kept the utility busy ~100 CPU-s an
    # hour at a million meters.
    calls = 0
    real = domain.forecast

    def counting(*args: object, **kwargs: object) -> tuple[float, float]:
        nonlocal calls
        calls += 1
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(domain, "forecast", counting)
    nodes = [Node(i, f"n{i}", "transformer", None) for i in range(500)]
    history = _history(dict.fromkeys(range(500), 0))

    assert forecaster.issue(history, nodes, ISSUE_AT, set(), WINDOW_START) == []
    assert calls == 0


def test_issue_skips_what_is_done() -> None:
    history = _history({1: DAYS})
    nodes = [Node(1, "n1", "feeder", None)]
    every = forecaster.issue(history, nodes, ISSUE_AT, set(), WINDOW_START)
    done = {(f.node_id, f.horizon, f.model, f.target) for f in every[::2]}

    rest = forecaster.issue(history, nodes, ISSUE_AT, done, WINDOW_START)

    assert rest == every[1::2]


def test_stored_rows_grouped_by_node_in_their_order() -> None:
    rows = [{"node_id": n, "i": i} for i, n in enumerate([3, 1, 3, 2, 1])]

    grouped = forecaster.by_node(rows)

    assert {k: [r["i"] for r in v] for k, v in grouped.items()} == {3: [0, 2], 1: [1, 4], 2: [3]}
