"""Pure rollup math: aggregation rule, parent closure, thermal criterion, voltage band, binary COPY."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from gridsim_aggregator import domain
from gridsim_aggregator.domain import Readings, ThermalParams, ThermalState
from gridsim_shared.copy_binary import HEADER, TRAILER, encode_readings
from gridsim_shared.messages import ReadingBatch

TS = datetime(2025, 6, 20, tzinfo=UTC)


def _readings(ids: list[int], rows: list[list[float]]) -> Readings:
    return Readings(
        TS, 60, np.array(ids, dtype=np.int64), np.array(rows, dtype=np.float64).reshape(len(ids), 8)
    )


def test_closure_flattens_any_depth_and_cuts_cycles() -> None:
    # 1 ← 2 ← 3 (leaf), 1 ← 4 (leaf); 5 ↔ 6 cycle with leaf 7 under 6
    tree = domain.closure([1, 2, 3, 4, 5, 6, 7], [None, 1, 2, 1, 6, 5, 6])
    assert tree.parents.tolist() == [1, 2, 5, 6]
    pairs = sorted(zip(tree.parents[tree.pair_parent].tolist(), tree.pair_leaf.tolist(), strict=True))
    assert pairs == [(1, 3), (1, 4), (2, 3), (5, 7), (6, 7)]


def test_parent_aggregate_sums_energy_weights_voltage_recomputes_pf() -> None:
    tree = domain.closure([1, 2, 3], [None, 1, 1])
    nan = np.nan
    # cons, prod, cons_va, prod_va, current, voltage, kvar, pf
    r = _readings(
        [2, 3], [[1.0, nan, 1.25, nan, 2.0, 230.0, 0.75, 0.8], [3.0, 0.5, 3.0, 0.5, 6.0, 250.0, 0.0, 1.0]]
    )
    out = domain.totals_as_readings(domain.parent_totals(tree, r))[0]
    assert out[domain.CONS] == 4.0
    assert out[domain.PROD] == 0.5
    assert out[domain.CURRENT] == 8.0
    assert out[domain.VOLTAGE] == pytest.approx((2 * 230 + 6 * 250) / 8)
    assert out[domain.PF] == pytest.approx(4.5 / 4.75)
    assert out[domain.KVAR] == 0.75


def test_parent_of_off_children_reads_zero_and_consumers_keep_null_production() -> None:
    tree = domain.closure([1, 2], [None, 1])
    out = domain.totals_as_readings(domain.parent_totals(tree, _readings([], [])))
    assert out[0, domain.CONS] == 0.0
    assert out[0, domain.VOLTAGE] == 0.0
    assert np.isnan(out[0, domain.PROD])


def test_thermal_criterion_ignores_a_noisy_minute_but_flags_a_sustained_overload() -> None:
    params = ThermalParams()
    state = ThermalState()
    for _ in range(240):  # four hours at 80 %: settles below the alarm
        state = domain.thermal_step(state, 0.8, 60, params)
    spike = domain.thermal_step(state, 2.0, 60, params)  # one minute at 200 %
    assert domain.overload_transition(spike, params)[1] is None
    started = None
    for minute in range(600):  # sustained 140 %
        state = domain.thermal_step(state, 1.4, 60, params)
        state, change = domain.overload_transition(state, params)
        if change == "start":
            started = minute
            break
    assert started is not None
    assert started > 20  # takes the oil time constant, not one interval
    for _ in range(600):
        state = domain.thermal_step(state, 0.5, 60, params)
        state, change = domain.overload_transition(state, params)
        if change == "end":
            break
    assert not state.overloaded


def test_rated_load_settles_at_110_c_hot_spot() -> None:
    params = ThermalParams()
    state = ThermalState()
    for _ in range(24 * 60):
        state = domain.thermal_step(state, 1.0, 60, params)
    assert state.hot_spot_c(params) == pytest.approx(110.0, abs=0.5)


def test_voltage_events_on_leaving_and_reentering_the_band_only() -> None:
    band = domain.VoltageBand(216, 254)
    outside: dict[int, str] = {}
    ids = np.array([1, 2, 3], dtype=np.int64)
    assert domain.voltage_transitions(outside, ids, np.array([240.0, 210.0, 260.0]), band) == [
        (2, "low", 210.0),
        (3, "high", 260.0),
    ]
    assert domain.voltage_transitions(outside, ids, np.array([240.0, 209.0, 261.0]), band) == []
    assert domain.voltage_transitions(outside, ids, np.array([240.0, 230.0, 261.0]), band) == [
        (2, "normal", 230.0)
    ]


def test_binary_copy_encodes_nulls_per_row() -> None:
    ts = np.array([10, 10], dtype=np.int64)
    ids = np.array([1, 2], dtype=np.int64)
    values = np.array([[1.5, np.nan], [2.5, 3.5]])
    data = encode_readings(ts, ids, values)
    assert data.startswith(HEADER)
    assert data.endswith(TRAILER)
    # row 1: 2+4+8+4+8+4+8+4 ; row 2: 2+4+8+4+8+4+8+4+8
    assert len(data) == len(HEADER) + 42 + 50 + len(TRAILER)


def test_batch_columns_keep_nulls_and_one_group_sums_equal_the_grouped_path() -> None:
    batch = ReadingBatch(
        timestamp=datetime(2025, 6, 20, 0, 1, tzinfo=UTC),
        meter_id=[1, 2, 3],
        meter_code=["a", "b", "c"],
        consumption_kWh=[0.01, 0.02, None],
        production_kWh=[None, 0.005, None],
        consumption_kVAh=[0.011, 0.021, None],
        production_kVAh=[None, 0.006, None],
        avg_current=[2.0, 3.0, 0.0],
        avg_voltage=[230.0, 240.0, 250.0],
        reactive_power_kVAR=[0.001, None, None],
        power_factor=[0.9, 0.95, None],
    )
    readings = domain.readings_from_batch(batch)
    assert readings.values.shape == (3, len(domain.COLUMNS))
    assert readings.values.flags.c_contiguous
    assert readings.values[1, domain.PROD] == 0.005
    assert np.isnan(readings.values[0, domain.PROD])
    assert np.isnan(readings.values[2, domain.CONS])
    assert readings.values[2, domain.VOLTAGE] == 250.0
    one = domain.group_totals(readings, np.zeros(3, dtype=np.int64), 1)
    grouped = domain.group_totals(readings, np.zeros(3, dtype=np.int64), 2)  # the bincount path, group 0
    for name in ("consumption_kwh", "production_kwh", "kvarh", "current_sum", "vi_sum", "voltage_sum"):
        assert getattr(one, name)[0] == pytest.approx(getattr(grouped, name)[0]), name
    assert (one.readings[0], one.producers[0]) == (3, 1) == (grouped.readings[0], grouped.producers[0])
    assert one.vi_sum[0] == pytest.approx(2.0 * 230 + 3.0 * 240)


def test_each_transformer_gets_its_places_band_unless_overridden() -> None:
    assert domain.voltage_band(37.77, -122.42, None, None, "A") == domain.VoltageBand(228.0, 252.0)
    assert domain.voltage_band(52.5, 13.4, None, None, "A") == domain.VoltageBand(207.0, 253.0)
    assert domain.voltage_band(37.77, -122.42, 216.0, 254.0, "A") == domain.VoltageBand(216.0, 254.0)
    assert domain.voltage_band(None, None, None, None, "B") == domain.VoltageBand()  # no place: ANSI on 240 V
    tracker = domain.VoltageTracker()
    ids = np.array([1, 2])
    # 220 V is low for a US 240 V service (Range A) but normal for Berlin's 230 V (EN 50160).
    assert tracker.update(ids, np.array([240.0, 220.0]), domain.VoltageBand(228.0, 252.0)) == [
        (2, "low", 220.0)
    ]
    assert tracker.update(ids, np.array([240.0, 220.0]), domain.VoltageBand(207.0, 253.0)) == [
        (2, "normal", 220.0)
    ]
