"""The spike envelope and how a spike plan changes an interval (pure, no I/O)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from gridsim_meter_sim.controls import SpikePlan, SpikeRow, envelope, interval_envelope
from gridsim_meter_sim.domain import DerRow, MeterRow, build_fleet, simulate

T0 = datetime(2025, 6, 20, 12, tzinfo=UTC)


@pytest.mark.parametrize("shape", ["step", "ramp", "triangle", "exp_decay"])
def test_zero_outside_the_window(shape: str) -> None:
    assert envelope(shape, -0.001, 100) == 0.0
    assert envelope(shape, 100, 100) == 0.0
    assert envelope(shape, 1e9, 100) == 0.0


def test_shapes_inside_the_window() -> None:
    assert envelope("step", 0, 100) == 1.0
    assert envelope("step", 99.9, 100) == 1.0
    assert envelope("ramp", 25, 100) == pytest.approx(0.25)
    assert envelope("ramp", 75, 100) == pytest.approx(0.75)
    assert envelope("triangle", 25, 100) == pytest.approx(0.5)
    assert envelope("triangle", 50, 100) == pytest.approx(1.0)
    assert envelope("triangle", 75, 100) == pytest.approx(0.5)
    assert envelope("exp_decay", 0, 100) == 1.0
    assert envelope("exp_decay", 50, 100) == pytest.approx(math.exp(-1.5))
    assert envelope("exp_decay", 99.999, 100) == pytest.approx(math.exp(-3), rel=1e-3)


def test_open_ended_step_never_stops() -> None:
    assert envelope("step", 10 * 365 * 86400, None) == 1.0
    with pytest.raises(ValueError, match="unknown spike shape"):
        envelope("square", 1, 10)


def _spike(**kw: object) -> SpikeRow:
    base: dict[str, object] = {
        "id": 1,
        "kind": "load",
        "shape": "step",
        "start": T0,
        "duration_s": 180,
        "end": T0 + timedelta(seconds=180),
        "multiplier": 3.0,
        "kw": None,
        "generator": None,
        "meter_ids": (1,),
    }
    base.update(kw)
    return SpikeRow(**base)  # type: ignore[arg-type]


def test_interval_envelope_samples_the_midpoint_and_stops_when_cancelled() -> None:
    spike = _spike()
    assert [interval_envelope(spike, T0 + timedelta(minutes=m), 60) for m in range(-1, 4)] == [0, 1, 1, 1, 0]
    cancelled = _spike(end=T0 + timedelta(seconds=60))
    assert [interval_envelope(cancelled, T0 + timedelta(minutes=m), 60) for m in range(3)] == [1, 0, 0]


def _fleet():  # type: ignore[no-untyped-def]
    def meter(i: int, er_type: str) -> MeterRow:
        return MeterRow(
            i,
            f"M{i}",
            er_type,
            "home",
            "flat",
            1.0,
            1.0 if er_type == "prosumer" else 0.0,
            True,
            37.77,
            -122.42,
            1,
            "t1",
            100.0,
            "f1",
            "u1",
        )

    ders = [DerRow(i, "fan", "consumption", 0.01, 0.9, 1, None) for i in (1, 2, 3)]
    ders.append(DerRow(3, "solar", "production", 0.02, 1.0, 2, None))
    return build_fleet(7, [meter(1, "consumer"), meter(2, "consumer"), meter(3, "prosumer")], ders)


def test_plan_applies_only_to_its_meters_and_only_in_its_window() -> None:
    fleet = _fleet()
    plan = SpikePlan(
        fleet,
        [_spike(meter_ids=(1,)), _spike(id=2, kind="source", multiplier=None, kw=6.0, meter_ids=(2, 3, 99))],
    )
    assert plan.adjustment(T0 - timedelta(minutes=1), 60) is None
    adjust = plan.adjustment(T0, 60)
    assert adjust is not None
    base = simulate(fleet, T0, 60)
    spiked = simulate(fleet, T0, 60, adjust)
    assert spiked.consumption_kwh.tolist() == pytest.approx([0.03, 0.01, 0.01])
    # the source spike adds 6 kW × 1 min to the prosumer only; the consumer keeps no production
    assert np.isnan(spiked.production_kwh[1])
    assert spiked.production_kwh[2] == pytest.approx(base.production_kwh[2] + 0.1)
