"""Pure domain functions of the feasibility service: no I/O, no asyncio, no SQL.

The seed's decision, vectorised: the Haversine distance from the request to every transformer, the ones
within the "nearby" radius sorted by distance, and the first whose spare capacity carries the request
(consumption ≤ 80 % of kVA, injection ≤ 30 % of kVA by default) is the one assigned.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from gridsim_shared.geo import haversine_m

__all__ = [
    "REASON_CONSUMPTION",
    "REASON_NONE_NEARBY",
    "REASON_PRODUCTION",
    "Candidates",
    "Decision",
    "Limiting",
    "Limits",
    "Loads",
    "Positions",
    "Request",
    "decide",
    "decide_ranked",
    "effective_loads",
    "fits",
    "household_ders",
    "rank",
    "rejection_reason",
]


# The seed's reasons, to the letter.
REASON_CONSUMPTION = "Transformer overloaded for consumption"
REASON_PRODUCTION = "Transformer cannot support additional solar injection"
REASON_NONE_NEARBY = "No transformer nearby can support this load safely"

Limiting = Literal["consumption", "production", "none_in_radius"]
FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


@dataclass(frozen=True)
class Limits:
    """Shares of the nameplate kVA a transformer may carry: the seed's utility safety buffers."""

    consumption_share: float = 0.8
    production_share: float = 0.3


@dataclass(frozen=True)
class Request:
    """What a new connection asks for, where."""

    latitude: float
    longitude: float
    consumption_kw: float
    production_kw: float = 0.0


@dataclass(frozen=True)
class Positions:
    """Every transformer that can be assigned (it has a location and a capacity), as columns."""

    ids: IntArray
    lat_deg: FloatArray
    lon_deg: FloatArray

    @classmethod
    def build(cls, ids: list[int], lat_deg: list[float], lon_deg: list[float]) -> Positions:
        """Columns from Python lists (the database rows)."""
        return cls(
            np.asarray(ids, dtype=np.int64),
            np.asarray(lat_deg, dtype=np.float64),
            np.asarray(lon_deg, dtype=np.float64),
        )

    def __len__(self) -> int:
        return int(self.ids.size)


@dataclass(frozen=True)
class Loads:
    """Capacity and existing load of some transformers (same order as the ids they were read for)."""

    capacity_kva: FloatArray
    consumption_kw: FloatArray
    production_kw: FloatArray


@dataclass(frozen=True)
class Candidates:
    """The transformers within the radius, nearest first: indices into :class:`Positions` and distances."""

    index: IntArray
    distance_m: FloatArray

    def __len__(self) -> int:
        return int(self.index.size)


@dataclass(frozen=True)
class Decision:
    """The outcome for one request: the chosen candidate (position in the ranking) or why there is none."""

    feasible: bool
    chosen: int | None  # position in the ranking (0 = nearest candidate)
    distance_m: float | None
    spare_consumption_kw: float | None
    spare_production_kw: float | None
    limiting: Limiting | None  # why no candidate fits
    candidates: int


def rejection_reason(limiting: Limiting | None) -> str:
    """The seed's rejection reason for ``POST /connection`` given the check that stopped it."""
    if limiting == "consumption":
        return REASON_CONSUMPTION
    if limiting == "production":
        return REASON_PRODUCTION
    return REASON_NONE_NEARBY


def rank(positions: Positions, latitude: float, longitude: float, radius_m: float) -> Candidates:
    """The transformers within ``radius_m`` of the point, nearest first (ties broken by id)."""
    distance = haversine_m(latitude, longitude, positions.lat_deg, positions.lon_deg)
    inside = np.flatnonzero(distance <= radius_m)
    # lexsort's last key is the primary one: distance, then id, so equal distances rank reproducibly.
    order = inside[np.lexsort((positions.ids[inside], distance[inside]))]
    return Candidates(index=order.astype(np.int64), distance_m=distance[order])


def effective_loads(
    loads: Loads, measured_consumption_kw: FloatArray, measured_production_kw: FloatArray
) -> Loads:
    """Existing load when deciding on measured load: the booked load or the measured peak, whichever is higher.

    The measured peak shows load that no booking knows about (households that were on the grid before
    this service); the booked load covers connections approved since the measurement. Taking the larger
    never lets a measurement lower the bar below what was booked.
    """
    return Loads(
        capacity_kva=loads.capacity_kva,
        consumption_kw=np.maximum(loads.consumption_kw, np.nan_to_num(measured_consumption_kw)),
        production_kw=np.maximum(loads.production_kw, np.nan_to_num(measured_production_kw)),
    )


def spare(loads: Loads, limits: Limits) -> tuple[FloatArray, FloatArray]:
    """The seed's spare capacities: share × kVA − connected load, for consumption and for production."""
    return (
        loads.capacity_kva * limits.consumption_share - loads.consumption_kw,
        loads.capacity_kva * limits.production_share - loads.production_kw,
    )


def fits(loads: Loads, request: Request, limits: Limits) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """The seed's two checks for each transformer: does the draw fit, does the injection fit."""
    return (
        loads.consumption_kw + request.consumption_kw <= loads.capacity_kva * limits.consumption_share,
        loads.production_kw + request.production_kw <= loads.capacity_kva * limits.production_share,
    )


def decide_ranked(candidates: Candidates, loads: Loads, request: Request, limits: Limits) -> Decision:
    """The first candidate (nearest first) that carries the request, given the candidates' loads.

    The comparisons are the seed's, written the same way as the database's conditional update
    (``connected + requested <= capacity × share``), so the check and the approval never disagree.
    When nothing fits, ``limiting`` says which check stopped it: ``consumption`` when no candidate can
    take the draw, ``production`` when some could take the draw but none of those the injection.
    """
    n = len(candidates)
    if n == 0:
        return Decision(False, None, None, None, None, "none_in_radius", 0)
    fits_consumption, fits_production = fits(loads, request, limits)
    fits_both = np.flatnonzero(fits_consumption & fits_production)
    if fits_both.size == 0:
        limiting: Limiting = "production" if bool(fits_consumption.any()) else "consumption"
        return Decision(False, None, None, None, None, limiting, n)
    first = int(fits_both[0])
    spare_consumption, spare_production = spare(loads, limits)
    return Decision(
        feasible=True,
        chosen=first,
        distance_m=float(candidates.distance_m[first]),
        spare_consumption_kw=float(spare_consumption[first]),
        spare_production_kw=float(spare_production[first]),
        limiting=None,
        candidates=n,
    )


def decide(
    positions: Positions, loads: Loads, request: Request, radius_m: float, limits: Limits
) -> tuple[Candidates, Decision]:
    """The whole decision over every transformer (``loads`` aligned with ``positions``)."""
    candidates = rank(positions, request.latitude, request.longitude, radius_m)
    picked = Loads(
        capacity_kva=loads.capacity_kva[candidates.index],
        consumption_kw=loads.consumption_kw[candidates.index],
        production_kw=loads.production_kw[candidates.index],
    )
    return candidates, decide_ranked(candidates, picked, request, limits)


# ------------------------------------------------------------------ closing the loop: a new household
# Appliance catalogue ids (migration 0001) of a household, most essential first, each with a count.
HOUSEHOLD = ((4, 1), (1, 10), (3, 1), (5, 1), (2, 2), (7, 1), (6, 1), (8, 1), (10, 1), (13, 1))
AIR_CONDITIONER = 8
SOLAR_PANEL = 12


def household_ders(
    consumption_kw: float, production_kw: float, power_w: dict[int, float]
) -> list[tuple[int, int, float | None]]:
    """The DERs of a new connection's household: ``(appliance_id, quantity, capacity_kw)``.

    Appliances are added from the household list while their rated power still fits in the requested
    consumption (a connection's requested kW is its sanctioned load: what may run at once), then
    air conditioners fill what is left. Production is solar panels of the catalogue's size, rated
    together at exactly the requested kW.
    """
    ders: list[tuple[int, int, float | None]] = []
    budget_w = consumption_kw * 1000
    for appliance_id, quantity in HOUSEHOLD:
        rated = power_w[appliance_id] * quantity
        if rated <= budget_w:
            ders.append((appliance_id, quantity, None))
            budget_w -= rated
    extra_ac = int(budget_w // power_w[AIR_CONDITIONER])
    if extra_ac > 0:
        ders.append((AIR_CONDITIONER, extra_ac, None))
    if production_kw > 0:
        # capacity_kw is per unit (meter-sim multiplies by quantity): panels of equal size, exact total.
        panels = max(1, round(production_kw * 1000 / power_w[SOLAR_PANEL]))
        ders.append((SOLAR_PANEL, panels, production_kw / panels))
    return ders
