"""Geography: the nearest point of a set (distances from the shared Haversine). Pure, no I/O."""

from __future__ import annotations

from collections.abc import Iterable

from gridsim_shared.geo import distance_m

__all__ = ["nearest"]


def nearest(
    latitude: float, longitude: float, candidates: Iterable[tuple[int, float, float]]
) -> tuple[int, float] | None:
    """The ``(id, distance_m)`` of the candidate ``(id, lat, lon)`` nearest to the point; None if none.

    Ties go to the lowest id, so the choice does not depend on the order of ``candidates``.
    """
    best: tuple[float, int] | None = None
    for ident, lat, lon in candidates:
        key = (distance_m(latitude, longitude, lat, lon), ident)
        if best is None or key < best:
            best = key
    return None if best is None else (best[1], best[0])
