"""Great-circle distance (the Haversine formula), used wherever gridsim places something on the map."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["EARTH_RADIUS_M", "distance_m", "haversine_m"]

# Mean Earth radius (IUGG), the usual constant for the Haversine formula.
EARTH_RADIUS_M = 6_371_008.8

FloatArray = npt.NDArray[np.float64]


def haversine_m(
    lat_deg: float, lon_deg: float, lats_deg: npt.ArrayLike, lons_deg: npt.ArrayLike
) -> FloatArray:
    """Distances in metres from one point to many, all in degrees (vectorised over the many)."""
    lat1 = np.radians(lat_deg)
    lat2 = np.radians(np.asarray(lats_deg, dtype=np.float64))
    dlat = lat2 - lat1
    dlon = np.radians(np.asarray(lons_deg, dtype=np.float64) - lon_deg)
    a = np.sin(dlat / 2) ** 2 + np.cos(lat1) * np.cos(lat2) * np.sin(dlon / 2) ** 2
    # clip: rounding can push `a` a hair above 1 for antipodal points, and arcsin(>1) is NaN.
    distance: FloatArray = 2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))
    return distance


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Distance in metres between two points given in degrees."""
    return float(haversine_m(lat1, lon1, lat2, lon2))
