"""Haversine distance and nearest point (pure)."""

from __future__ import annotations

import pytest

from gridsim_meter_sim.geo import nearest
from gridsim_shared.geo import distance_m as haversine_m


def test_haversine_known_distances() -> None:
    assert haversine_m(37.7749, -122.4194, 37.7749, -122.4194) == 0
    # One degree of latitude is ~111.2 km on the mean sphere.
    assert haversine_m(0, 0, 1, 0) == pytest.approx(111_195, rel=1e-4)
    # San Francisco City Hall to the Ferry Building: about 2.9 km.
    assert haversine_m(37.7793, -122.4193, 37.7955, -122.3937) == pytest.approx(2_900, rel=0.05)
    assert haversine_m(10, 170, 10, -170) == pytest.approx(haversine_m(10, -10, 10, 10))


def test_nearest_picks_the_closest_and_breaks_ties_by_id() -> None:
    points = [(3, 37.76, -122.43), (1, 37.74, -122.42), (2, 37.78, -122.47)]
    found = nearest(37.741, -122.421, points)
    assert found is not None
    assert found[0] == 1
    assert found[1] == pytest.approx(haversine_m(37.741, -122.421, 37.74, -122.42))
    assert nearest(0, 0, [(5, 1, 0), (4, -1, 0)]) == (4, pytest.approx(111_195, rel=1e-4))
    assert nearest(0, 0, []) is None
