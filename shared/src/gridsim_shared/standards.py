"""Service-voltage standards: the band a meter's voltage should stay in, by the place's supply standard.

Each climate (:mod:`gridsim_shared.climate`) names its supply's standard and nominal voltage; the band
is a pair of per-unit limits around that nominal:

- ``ansi-c84.1`` — ANSI C84.1-2020 (US), service voltage on a 120 V base: Range A 114–126 V (−5 % /
  +5 %), the normal design range; Range B 110–127 V (−8.3 % / +5.8 %), tolerable for short periods.
  A 240 V split-phase service scales the same: Range A 228–252 V.
- ``en-50160`` — EN 50160:2010 (Europe) with the IEC 60038 nominal 230 V: ±10 % for 95 % of the 10-minute
  means of a week (Range A here), +10 % / −15 % for all of them (Range B).
- ``cea-india`` — India, CEA (Technical Standards for Connectivity to the Grid) and the Electricity
  Supply Code: ±6 % of the declared 230 V at low voltage (both ranges).
- ``as-60038`` — Australia, AS 60038-2012: 230 V +10 % / −6 % (both ranges).
"""

from __future__ import annotations

from dataclasses import dataclass

from gridsim_shared.climate import climate_for

__all__ = ["STANDARDS", "VoltageStandard", "band_at", "standard_named"]


@dataclass(frozen=True, slots=True)
class VoltageStandard:
    """A supply standard's service-voltage ranges, per unit of the nominal voltage."""

    key: str
    name: str
    range_a: tuple[float, float]  # (low, high) per unit: the normal range
    range_b: tuple[float, float]  # the tolerable range (short excursions)

    def band(self, nominal_v: float, which: str = "A") -> tuple[float, float]:
        """``(low_v, high_v)`` of Range A (default) or B around ``nominal_v``."""
        if which not in ("A", "B"):
            msg = f"range must be 'A' or 'B', not {which!r}"
            raise ValueError(msg)
        low, high = self.range_a if which == "A" else self.range_b
        return round(nominal_v * low, 3), round(nominal_v * high, 3)


STANDARDS: dict[str, VoltageStandard] = {
    s.key: s
    for s in (
        VoltageStandard("ansi-c84.1", "ANSI C84.1-2020", (114 / 120, 126 / 120), (110 / 120, 127 / 120)),
        VoltageStandard("en-50160", "EN 50160:2010 / IEC 60038", (0.90, 1.10), (0.85, 1.10)),
        VoltageStandard("cea-india", "CEA (India) ±6 %", (0.94, 1.06), (0.94, 1.06)),
        VoltageStandard("as-60038", "AS 60038-2012", (0.94, 1.10), (0.94, 1.10)),
    )
}


def standard_named(key: str) -> VoltageStandard:
    """The standard called ``key``; KeyError names the choices."""
    try:
        return STANDARDS[key]
    except KeyError:
        msg = f"unknown voltage standard {key!r}; known: {', '.join(sorted(STANDARDS))}"
        raise KeyError(msg) from None


def band_at(latitude: float, longitude: float, which: str = "A") -> tuple[float, float]:
    """The service-voltage band ``(low_v, high_v)`` at a place: its climate's standard and nominal voltage."""
    climate = climate_for(latitude, longitude)
    return standard_named(climate.standard).band(climate.nominal_v, which)
