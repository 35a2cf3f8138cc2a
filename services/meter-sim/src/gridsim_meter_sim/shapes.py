"""How appliances and energy resources use power over a day: the tables behind ``activity(t)``.

Each appliance *profile* (the ``appliances.profile`` column) has 24 hourly values in local time: the
expected share of its rated power drawn in that hour at a home (a duty, in [0, 1]), and a way of turning
that expectation into on/off behaviour (continuous, sessions, or a thermostat cycle). Other ER kinds keep
the appliance's daily mean but take the time of day from a published business/industry load profile
(domain-facts §1–2). Values are interpolated linearly to the minute.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

__all__ = [
    "KINDS",
    "PROFILES",
    "WEEKEND_FACTOR",
    "Behaviour",
    "activity_table",
    "profile_index",
]

F64 = npt.NDArray[np.float64]

Mode = Literal["continuous", "session", "cycle"]
Season = Literal["none", "summer", "winter", "water"]


@dataclass(frozen=True, slots=True)
class Behaviour:
    """How one appliance profile behaves.

    ``continuous``: a fraction of rated power that drifts every ``slot_min`` minutes (lights, fans).
    ``session``: fully on or off for ``slot_min``-minute sessions, on with probability = duty (TV, oven).
    ``cycle``: a thermostat/compressor cycle of ``slot_min`` minutes, on for duty × period (fridge, AC).
    """

    hourly: tuple[float, ...]
    mode: Mode
    slot_min: int
    season: Season = "none"
    follows_kind: bool = True  # False: thermal loads that keep their own shape in any building


# Home shapes (share of rated power, local time, hour 0 = 00:00-01:00). Sources and reasoning in
# docs/physics.md: ELCAP/H0 evening structure, CREST duty cycles, Indian morning geyser and night AC.
# fmt: off
PROFILES: dict[str, Behaviour] = {
    "lighting": Behaviour(
        (0.10, 0.06, 0.05, 0.05, 0.05, 0.10, 0.30, 0.35, 0.20, 0.08, 0.05, 0.05,
         0.05, 0.05, 0.05, 0.06, 0.10, 0.25, 0.50, 0.70, 0.80, 0.75, 0.55, 0.25),
        "continuous", 10),
    "cooling": Behaviour(
        (0.45, 0.45, 0.45, 0.45, 0.40, 0.35, 0.30, 0.30, 0.30, 0.35, 0.40, 0.45,
         0.50, 0.55, 0.55, 0.55, 0.50, 0.50, 0.50, 0.50, 0.50, 0.50, 0.50, 0.45),
        "continuous", 15, "summer"),
    "evening": Behaviour(
        (0.05, 0.02, 0.01, 0.01, 0.01, 0.02, 0.05, 0.10, 0.10, 0.08, 0.08, 0.10,
         0.12, 0.12, 0.10, 0.10, 0.15, 0.25, 0.40, 0.55, 0.60, 0.55, 0.35, 0.15),
        "session", 30),
    "fridge": Behaviour(
        (0.30, 0.28, 0.27, 0.27, 0.27, 0.28, 0.30, 0.33, 0.34, 0.34, 0.35, 0.36,
         0.37, 0.38, 0.39, 0.40, 0.41, 0.42, 0.42, 0.41, 0.39, 0.36, 0.34, 0.32),
        "cycle", 50, follows_kind=False),
    "daytime": Behaviour(
        (0.02, 0.01, 0.01, 0.01, 0.01, 0.02, 0.05, 0.15, 0.30, 0.45, 0.50, 0.50,
         0.45, 0.45, 0.50, 0.50, 0.45, 0.35, 0.30, 0.30, 0.30, 0.25, 0.15, 0.05),
        "session", 60),
    "cooking": Behaviour(
        (0.00, 0.00, 0.00, 0.00, 0.00, 0.01, 0.05, 0.12, 0.10, 0.04, 0.03, 0.06,
         0.12, 0.08, 0.03, 0.02, 0.03, 0.06, 0.14, 0.18, 0.12, 0.05, 0.02, 0.01),
        "session", 15),
    "laundry": Behaviour(
        (0.00, 0.00, 0.00, 0.00, 0.00, 0.00, 0.02, 0.06, 0.10, 0.12, 0.12, 0.10,
         0.08, 0.06, 0.05, 0.05, 0.05, 0.06, 0.07, 0.08, 0.06, 0.04, 0.02, 0.01),
        "session", 60),
    "ac": Behaviour(
        (0.55, 0.55, 0.50, 0.45, 0.40, 0.30, 0.15, 0.10, 0.10, 0.15, 0.25, 0.35,
         0.45, 0.55, 0.60, 0.60, 0.55, 0.45, 0.40, 0.40, 0.45, 0.50, 0.55, 0.55),
        "cycle", 20, "summer"),
    "heating": Behaviour(
        (0.30, 0.25, 0.25, 0.25, 0.30, 0.45, 0.60, 0.55, 0.30, 0.15, 0.10, 0.10,
         0.10, 0.10, 0.10, 0.15, 0.25, 0.40, 0.50, 0.55, 0.50, 0.45, 0.40, 0.35),
        "cycle", 30, "winter"),
    "geyser": Behaviour(
        (0.00, 0.00, 0.00, 0.00, 0.02, 0.15, 0.40, 0.45, 0.25, 0.08, 0.03, 0.02,
         0.02, 0.02, 0.02, 0.03, 0.05, 0.08, 0.12, 0.15, 0.12, 0.06, 0.02, 0.01),
        "session", 20, "water"),
    "pump": Behaviour(
        (0.00, 0.00, 0.00, 0.00, 0.02, 0.20, 0.35, 0.25, 0.08, 0.03, 0.02, 0.02,
         0.02, 0.02, 0.02, 0.03, 0.05, 0.15, 0.25, 0.15, 0.05, 0.02, 0.00, 0.00),
        "session", 20),
    "ev": Behaviour(
        (0.35, 0.30, 0.25, 0.15, 0.08, 0.03, 0.02, 0.01, 0.01, 0.01, 0.01, 0.01,
         0.01, 0.01, 0.01, 0.02, 0.03, 0.08, 0.25, 0.40, 0.45, 0.45, 0.42, 0.40),
        "session", 60),
    # Any profile name the catalogue gains later without a shape here: a constant load at rated power.
    "constant": Behaviour((1.0,) * 24, "continuous", 60, follows_kind=False),
}
# fmt: on

# Energy-resource kinds, in the order of the ``kind`` codes used in arrays.
KINDS: tuple[str, ...] = ("home", "apartment_complex", "office", "shop", "industrial")

# Time-of-day shapes of non-home kinds (24 hourly multipliers, mean ≈ 1), domain-facts §1–2.
# fmt: off
_KIND_SHAPES: dict[str, tuple[float, ...]] = {
    # ELCAP summer weekday (many households together: the appliances' own shapes smoothed).
    "apartment_complex": (0.83, 0.74, 0.70, 0.70, 0.70, 0.76, 0.89, 0.98, 0.98, 0.98, 0.98, 0.98,
                          0.98, 0.96, 0.96, 0.98, 1.02, 1.11, 1.17, 1.22, 1.37, 1.54, 1.41, 1.07),
    # BDEW G1, business on weekdays 08-18 (offices).
    "office": (0.15, 0.15, 0.15, 0.14, 0.14, 0.15, 0.19, 1.14, 2.42, 2.68, 2.64, 2.57,
               2.25, 1.73, 1.76, 1.86, 1.48, 0.89, 0.50, 0.31, 0.22, 0.19, 0.16, 0.15),
    # BDEW G0, general commerce (shops).
    "shop": (0.46, 0.39, 0.36, 0.37, 0.45, 0.50, 0.60, 0.86, 1.41, 1.71, 1.74, 1.79,
             1.65, 1.38, 1.29, 1.43, 1.50, 1.53, 1.26, 0.87, 0.72, 0.63, 0.57, 0.53),
    # Two day shifts and a lighter night shift (no published profile: a construction, documented).
    "industrial": (0.85, 0.85, 0.85, 0.85, 0.85, 0.85, 1.00, 1.10, 1.15, 1.15, 1.15, 1.10,
                   1.05, 1.10, 1.15, 1.15, 1.10, 1.00, 0.90, 0.90, 0.90, 0.90, 0.90, 0.90),
}
# fmt: on

# Multiplier by kind (rows, KINDS order) and local weekday (columns, Monday first).
WEEKEND_FACTOR = np.array(
    [
        [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0],  # home: weekend demand ~4 % lower; kept flat
        [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0],  # apartment complex
        [1.0, 1.0, 1.0, 1.0, 1.0, 0.45, 0.25],  # office: BDEW G1 Saturday/Sunday levels
        [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.40],  # shop: closed or short on Sunday
        [1.0, 1.0, 1.0, 1.0, 1.0, 0.70, 0.50],  # industrial: fewer shifts at the weekend
    ]
)


def profile_index(name: str) -> int:
    """Position of a profile in :data:`PROFILES` (unknown names fall back to ``constant``)."""
    names = list(PROFILES)
    return names.index(name) if name in PROFILES else names.index("constant")


def _to_minutes(hourly: F64) -> F64:
    """24 hourly values (centred on the half hour) interpolated to 1440 minutes, wrapping at midnight."""
    hours = np.arange(24) + 0.5
    minutes = np.arange(1440) / 60.0
    return np.interp(minutes, hours, hourly, period=24.0)


def activity_table() -> F64:
    """Expected share of rated power, shape (kinds, profiles, 1440 minutes of the local day), in [0, 1]."""
    table = np.empty((len(KINDS), len(PROFILES), 1440))
    for p, behaviour in enumerate(PROFILES.values()):
        own = _to_minutes(np.array(behaviour.hourly))
        for k, kind in enumerate(KINDS):
            if kind == "home" or not behaviour.follows_kind:
                table[k, p] = own
            else:
                # The appliance's daily mean, spread over the day the way this kind of building uses power.
                table[k, p] = own.mean() * _to_minutes(np.array(_KIND_SHAPES[kind]))
    return np.clip(table, 0.0, 1.0)
