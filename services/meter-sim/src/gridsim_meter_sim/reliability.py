"""IEEE 1366-2022 distribution reliability indices. Pure.

For one feeder and one reporting period, with N_T customers served and interruptions i of N_i customers
lasting r_i minutes:

- SAIFI = Σ N_i / N_T (sustained interruptions, longer than five minutes, per customer served)
- SAIDI = Σ r_i N_i / N_T (minutes of sustained interruption per customer served)
- CAIDI = SAIDI / SAIFI (mean minutes to restore a customer)
- MAIFI = Σ N_mi / N_T (momentary interruptions, five minutes or less, per customer served)

Major-event-day exclusion (the standard's 2.5β method) needs years of daily SAIDI and is not applied.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gridsim_meter_sim.supply import MOMENTARY_S

__all__ = ["Indices", "indices"]


@dataclass(frozen=True, slots=True)
class Indices:
    """The indices of one feeder and period, with the sums they come from."""

    customers_served: int
    sustained: int
    momentary: int
    customers_interrupted: int
    customer_minutes: float
    saifi: float
    saidi: float
    caidi: float | None
    maifi: float


def indices(customers_served: int, interruptions: Sequence[tuple[float, int]]) -> Indices:
    """The indices from ``(minutes, customers)`` of each interruption; all zero with no customer served."""
    sustained = [(r, n) for r, n in interruptions if r * 60.0 > MOMENTARY_S]
    momentary = [(r, n) for r, n in interruptions if r * 60.0 <= MOMENTARY_S]
    interrupted = sum(n for _, n in sustained)
    minutes = sum(r * n for r, n in sustained)
    served = max(customers_served, 0)
    saifi = interrupted / served if served else 0.0
    saidi = minutes / served if served else 0.0
    return Indices(
        customers_served=served,
        sustained=len(sustained),
        momentary=len(momentary),
        customers_interrupted=interrupted,
        customer_minutes=minutes,
        saifi=saifi,
        saidi=saidi,
        caidi=saidi / saifi if saifi else None,
        maifi=sum(n for _, n in momentary) / served if served else 0.0,
    )
