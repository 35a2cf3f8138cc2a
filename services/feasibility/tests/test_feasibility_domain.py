"""The feasibility decision as pure functions: Haversine, ranking, radius, both reasons, spare capacities."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gridsim_feasibility import domain
from gridsim_feasibility.domain import Limits, Loads, Positions, Request
from gridsim_shared.geo import EARTH_RADIUS_M, distance_m

LIMITS = Limits(0.8, 0.3)
# San Francisco City Hall (the seed's request point is close by).
SF = (37.7793, -122.4193)


def _haversine_scalar(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    return distance_m(lat1, lon1, lat2, lon2)


def test_haversine_one_degree_of_latitude_is_111_km() -> None:
    # 1° along a meridian = πR/180 on a sphere of the mean radius.
    assert _haversine_scalar(0.0, 0.0, 1.0, 0.0) == pytest.approx(math.pi * EARTH_RADIUS_M / 180, rel=1e-12)


def test_haversine_known_city_distances() -> None:
    # Great-circle distances on the mean-radius sphere, cross-checked with published values:
    # San Francisco → Los Angeles ≈ 559 km, London → Paris ≈ 344 km.
    assert _haversine_scalar(37.7749, -122.4194, 34.0522, -118.2437) / 1000 == pytest.approx(559.1, abs=1.0)
    assert _haversine_scalar(51.5074, -0.1278, 48.8566, 2.3522) / 1000 == pytest.approx(343.6, abs=1.0)


def test_haversine_zero_and_antipodes() -> None:
    assert _haversine_scalar(37.7749, -122.4194, 37.7749, -122.4194) == 0.0
    assert _haversine_scalar(0.0, 0.0, 0.0, 180.0) == pytest.approx(math.pi * EARTH_RADIUS_M)


def _offset(metres_north: float, metres_east: float, origin: tuple[float, float] = SF) -> tuple[float, float]:
    lat0, lon0 = origin
    dlat = metres_north / (math.pi * EARTH_RADIUS_M / 180)
    dlon = metres_east / (math.pi * EARTH_RADIUS_M / 180 * math.cos(math.radians(lat0)))
    return lat0 + dlat, lon0 + dlon


def _world(
    points: list[tuple[float, float]],
    capacity: list[float],
    consumption: list[float],
    production: list[float],
) -> tuple[Positions, Loads]:
    ids = list(range(101, 101 + len(points)))
    positions = Positions.build(ids, [p[0] for p in points], [p[1] for p in points])
    loads = Loads(np.array(capacity), np.array(consumption), np.array(production))
    return positions, loads


def test_rank_orders_by_distance_and_applies_the_radius() -> None:
    points = [_offset(900, 0), _offset(0, 300), _offset(-2500, 0), _offset(0, -600)]
    positions, _ = _world(points, [500] * 4, [0] * 4, [0] * 4)
    ranked = domain.rank(positions, *SF, radius_m=1000)
    assert positions.ids[ranked.index].tolist() == [102, 104, 101]  # 300 m, 600 m, 900 m; 2.5 km is out
    assert ranked.distance_m == pytest.approx([300, 600, 900], abs=0.5)


def test_radius_boundary_is_inclusive() -> None:
    positions, _ = _world([_offset(1000, 0)], [500], [0], [0])
    distance = float(domain.rank(positions, *SF, radius_m=1e9).distance_m[0])
    assert len(domain.rank(positions, *SF, radius_m=distance)) == 1
    assert len(domain.rank(positions, *SF, radius_m=distance - 0.01)) == 0


def test_equal_distances_rank_by_id() -> None:
    positions = Positions.build([7, 3, 5], [SF[0]] * 3, [SF[1]] * 3)
    assert positions.ids[domain.rank(positions, *SF, 10).index].tolist() == [3, 5, 7]


def test_nearest_with_capacity_wins_over_nearest() -> None:
    # The nearest is full; the second carries the request; the third is farther still.
    points = [_offset(100, 0), _offset(200, 0), _offset(300, 0)]
    positions, loads = _world(points, [100, 100, 1000], [79, 10, 0], [0, 0, 0])
    candidates, decision = domain.decide(positions, loads, Request(*SF, 5.0), 2000, LIMITS)
    assert decision.feasible
    assert decision.chosen == 1
    assert positions.ids[candidates.index[decision.chosen]] == 102
    assert decision.distance_m == pytest.approx(200, abs=0.5)
    # The seed's spare capacities: 100 × 0.8 − 10 and 100 × 0.3 − 0.
    assert decision.spare_consumption_kw == pytest.approx(70.0)
    assert decision.spare_production_kw == pytest.approx(30.0)


def test_exactly_at_the_limit_fits() -> None:
    positions, loads = _world([_offset(10, 0)], [100], [70], [20])
    _, decision = domain.decide(positions, loads, Request(*SF, 10.0, 10.0), 2000, LIMITS)
    assert decision.feasible  # 70 + 10 = 80 = 100 × 0.8; 20 + 10 = 30 = 100 × 0.3


def test_consumption_reason_when_no_candidate_takes_the_draw() -> None:
    positions, loads = _world([_offset(10, 0), _offset(20, 0)], [100, 50], [75, 38], [0, 0])
    _, decision = domain.decide(positions, loads, Request(*SF, 6.0), 2000, LIMITS)
    assert not decision.feasible
    assert decision.limiting == "consumption"
    assert domain.rejection_reason(decision.limiting) == "Transformer overloaded for consumption"


def test_prosumer_passes_consumption_and_fails_injection() -> None:
    positions, loads = _world([_offset(10, 0)], [100], [0], [25])
    _, decision = domain.decide(positions, loads, Request(*SF, 15.0, 8.0), 2000, LIMITS)
    assert not decision.feasible
    assert decision.limiting == "production"
    assert (
        domain.rejection_reason(decision.limiting) == "Transformer cannot support additional solar injection"
    )


def test_injection_full_nearby_falls_through_to_a_farther_transformer() -> None:
    positions, loads = _world([_offset(10, 0), _offset(1500, 0)], [100, 100], [0, 0], [25, 0])
    candidates, decision = domain.decide(positions, loads, Request(*SF, 15.0, 8.0), 2000, LIMITS)
    assert decision.feasible
    assert positions.ids[candidates.index[decision.chosen or 0]] == 102


def test_nothing_within_the_radius() -> None:
    positions, loads = _world([_offset(5000, 0)], [1000], [0], [0])
    _, decision = domain.decide(positions, loads, Request(*SF, 1.0), 2000, LIMITS)
    assert not decision.feasible
    assert decision.limiting == "none_in_radius"
    assert decision.candidates == 0
    assert domain.rejection_reason(None) == "No transformer nearby can support this load safely"


def test_no_transformers_at_all() -> None:
    positions, loads = _world([], [], [], [])
    _, decision = domain.decide(positions, loads, Request(*SF, 1.0), 2000, LIMITS)
    assert decision.limiting == "none_in_radius"


def test_shares_are_configurable() -> None:
    positions, loads = _world([_offset(10, 0)], [100], [85], [0])
    _, strict = domain.decide(positions, loads, Request(*SF, 5.0), 2000, LIMITS)
    _, lenient = domain.decide(positions, loads, Request(*SF, 5.0), 2000, Limits(0.95, 0.3))
    assert not strict.feasible
    assert lenient.feasible
    assert lenient.spare_consumption_kw == pytest.approx(10.0)


def test_measured_load_is_the_higher_of_booked_and_measured() -> None:
    booked = Loads(np.array([100.0, 100.0]), np.array([10.0, 60.0]), np.array([5.0, 0.0]))
    effective = domain.effective_loads(booked, np.array([70.0, np.nan]), np.array([0.0, 12.0]))
    assert effective.consumption_kw.tolist() == [70.0, 60.0]
    assert effective.production_kw.tolist() == [5.0, 12.0]


def test_vectorised_decision_over_ten_thousand_transformers() -> None:
    rng = np.random.default_rng(7)
    n = 10_000
    lat = SF[0] + rng.uniform(-0.05, 0.05, n)
    lon = SF[1] + rng.uniform(-0.06, 0.06, n)
    positions = Positions.build(list(range(1, n + 1)), lat.tolist(), lon.tolist())
    capacity = rng.choice([25.0, 50.0, 100.0, 167.0, 500.0], n)
    loads = Loads(capacity, capacity * rng.uniform(0, 0.85, n), capacity * rng.uniform(0, 0.35, n))
    request = Request(*SF, 20.0, 5.0)
    candidates, decision = domain.decide(positions, loads, request, 1500, LIMITS)
    assert decision.feasible
    # Brute force: the nearest transformer within the radius whose two checks pass.
    distance = [_haversine_scalar(*SF, lat[i], lon[i]) for i in range(n)]
    ok = [
        i
        for i in range(n)
        if distance[i] <= 1500
        and loads.consumption_kw[i] + 20 <= capacity[i] * 0.8
        and loads.production_kw[i] + 5 <= capacity[i] * 0.3
    ]
    best = min(ok, key=lambda i: (distance[i], i))
    assert positions.ids[candidates.index[decision.chosen or 0]] == best + 1


def test_household_ders_fit_the_requested_load() -> None:
    power = {1: 10, 2: 75, 3: 120, 4: 200, 5: 65, 6: 1000, 7: 500, 8: 1500, 10: 3000, 12: 1200, 13: 7200}
    ders = domain.household_ders(15.0, 8.0, {k: float(v) for k, v in power.items()})
    consumption_w = sum(power[a] * q for a, q, _ in ders if a != 12)
    assert 13_500 <= consumption_w <= 15_000
    solar = [d for d in ders if d[0] == 12]
    assert solar == [(12, 7, pytest.approx(8.0 / 7))]
    small = domain.household_ders(0.5, 0.0, {k: float(v) for k, v in power.items()})
    assert sum(power[a] * q for a, q, _ in small) <= 500
    assert all(a != 12 for a, _, _ in small)
