"""Time-of-day tables behind the load models (:mod:`loads`): hourly shapes in local time.

Each appliance *profile* (the ``appliances.profile`` column) has 24 hourly values, hour 0 = 00:00-01:00:
for homes, when in the day that kind of appliance is used (the start rate of its events, or the share
of rating of a continuous load such as lighting, or a refrigerator's compressor duty). Business kinds
take the time of day from a published business/industry load profile (BDEW G0/G1, ELCAP; domain-facts
§1-2) with weekday/weekend levels. Values are interpolated linearly to the minute by :mod:`loads`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = [
    "KINDS",
    "KIND_SHAPES",
    "PROFILES",
    "WEEKEND_FACTOR",
    "Behaviour",
]

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Behaviour:
    """When in the day one appliance profile is used at a home (24 hourly values, local time)."""

    hourly: tuple[float, ...]


# Home shapes (share of rated power, local time, hour 0 = 00:00-01:00). Sources and reasoning in
# docs/realism.md: ELCAP/H0 evening structure, CREST activity (start-rate) shapes, morning water heating.
# fmt: off
PROFILES: dict[str, Behaviour] = {
    "lighting": Behaviour(
        (0.10, 0.06, 0.05, 0.05, 0.05, 0.10, 0.30, 0.35, 0.20, 0.08, 0.05, 0.05,
         0.05, 0.05, 0.05, 0.06, 0.10, 0.25, 0.50, 0.70, 0.80, 0.75, 0.55, 0.25),
    ),
    "cooling": Behaviour(
        (0.45, 0.45, 0.45, 0.45, 0.40, 0.35, 0.30, 0.30, 0.30, 0.35, 0.40, 0.45,
         0.50, 0.55, 0.55, 0.55, 0.50, 0.50, 0.50, 0.50, 0.50, 0.50, 0.50, 0.45),
    ),
    "evening": Behaviour(
        (0.05, 0.02, 0.01, 0.01, 0.01, 0.02, 0.05, 0.10, 0.10, 0.08, 0.08, 0.10,
         0.12, 0.12, 0.10, 0.10, 0.15, 0.25, 0.40, 0.55, 0.60, 0.55, 0.35, 0.15),
    ),
    "fridge": Behaviour(
        (0.30, 0.28, 0.27, 0.27, 0.27, 0.28, 0.30, 0.33, 0.34, 0.34, 0.35, 0.36,
         0.37, 0.38, 0.39, 0.40, 0.41, 0.42, 0.42, 0.41, 0.39, 0.36, 0.34, 0.32),
    ),
    "daytime": Behaviour(
        (0.02, 0.01, 0.01, 0.01, 0.01, 0.02, 0.05, 0.15, 0.30, 0.45, 0.50, 0.50,
         0.45, 0.45, 0.50, 0.50, 0.45, 0.35, 0.30, 0.30, 0.30, 0.25, 0.15, 0.05),
    ),
    "cooking": Behaviour(
        (0.00, 0.00, 0.00, 0.00, 0.00, 0.01, 0.05, 0.12, 0.10, 0.04, 0.03, 0.06,
         0.12, 0.08, 0.03, 0.02, 0.03, 0.06, 0.14, 0.18, 0.12, 0.05, 0.02, 0.01),
    ),
    "laundry": Behaviour(
        (0.00, 0.00, 0.00, 0.00, 0.00, 0.00, 0.02, 0.06, 0.10, 0.12, 0.12, 0.10,
         0.08, 0.06, 0.05, 0.05, 0.05, 0.06, 0.07, 0.08, 0.06, 0.04, 0.02, 0.01),
    ),
    "ac": Behaviour(
        (0.55, 0.55, 0.50, 0.45, 0.40, 0.30, 0.15, 0.10, 0.10, 0.15, 0.25, 0.35,
         0.45, 0.55, 0.60, 0.60, 0.55, 0.45, 0.40, 0.40, 0.45, 0.50, 0.55, 0.55),
    ),
    "heating": Behaviour(
        (0.30, 0.25, 0.25, 0.25, 0.30, 0.45, 0.60, 0.55, 0.30, 0.15, 0.10, 0.10,
         0.10, 0.10, 0.10, 0.15, 0.25, 0.40, 0.50, 0.55, 0.50, 0.45, 0.40, 0.35),
    ),
    "geyser": Behaviour(
        (0.00, 0.00, 0.00, 0.00, 0.02, 0.15, 0.40, 0.45, 0.25, 0.08, 0.03, 0.02,
         0.02, 0.02, 0.02, 0.03, 0.05, 0.08, 0.12, 0.15, 0.12, 0.06, 0.02, 0.01),
    ),
    "pump": Behaviour(
        (0.00, 0.00, 0.00, 0.00, 0.02, 0.20, 0.35, 0.25, 0.08, 0.03, 0.02, 0.02,
         0.02, 0.02, 0.02, 0.03, 0.05, 0.15, 0.25, 0.15, 0.05, 0.02, 0.00, 0.00),
    ),
    "ev": Behaviour(
        (0.35, 0.30, 0.25, 0.15, 0.08, 0.03, 0.02, 0.01, 0.01, 0.01, 0.01, 0.01,
         0.01, 0.01, 0.01, 0.02, 0.03, 0.08, 0.25, 0.40, 0.45, 0.45, 0.42, 0.40),
    ),
    # Any profile name the catalogue gains later without a shape here: a constant load at rated power.
    "constant": Behaviour((1.0,) * 24),
}
# fmt: on

# Energy-resource kinds, in the order of the ``kind`` codes used in arrays.
KINDS: tuple[str, ...] = ("home", "apartment_complex", "office", "shop", "industrial")

# Time-of-day shapes of non-home kinds (24 hourly multipliers, mean ≈ 1), domain-facts §1–2.
# fmt: off
KIND_SHAPES: dict[str, tuple[float, ...]] = {
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
