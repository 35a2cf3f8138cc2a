"""Geography: great-circle distance and the nearest point of a set. Pure functions, no I/O."""

from __future__ import annotations

import math
from collections.abc import Iterable

__all__ = ["EARTH_RADIUS_M", "haversine_m", "nearest"]

# Mean Earth radius (IUGG), the usual constant for the Haversine formula.
EARTH_RADIUS_M = 6_371_008.8


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres between two points given in degrees."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    dphi = phi2 - phi1
    dlmb = math.radians(lon2 - lon1)
    h = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlmb / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


def nearest(
    latitude: float, longitude: float, candidates: Iterable[tuple[int, float, float]]
) -> tuple[int, float] | None:
    """The ``(id, distance_m)`` of the candidate ``(id, lat, lon)`` nearest to the point; None if none.

    Ties go to the lowest id, so the choice does not depend on the order of ``candidates``.
    """
    best: tuple[float, int] | None = None
    for ident, lat, lon in candidates:
        key = (haversine_m(latitude, longitude, lat, lon), ident)
        if best is None or key < best:
            best = key
    return None if best is None else (best[1], best[0])
