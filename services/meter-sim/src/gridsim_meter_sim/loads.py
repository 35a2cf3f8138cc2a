"""Load models of the realistic profile: what each appliance of each building draws, minute by minute.

One :class:`Loads` per fleet (built once by :func:`build`, from the fleet's meters and DERs) and one call
of :func:`power` per tick give every meter's active and reactive power. References, calibration and
measured figures: ``docs/realism.md``.

- **Always-on load** per building (lognormal; homes' median ~110 W + appliance standby ≈ 130 W, as
  ELCAP and the California always-on studies measure), reactive at power factor 0.9.
- **Appliance events** (CREST demand model, Richardson et al. 2010): each appliance *instance* (a
  quantity of 3 is three instances, up to 64) switches on with a probability that follows its building's
  occupancy and time of day (the start rate per day times the shape of its use), then runs its own
  cycle profile at its own rated power: a kettle 3 minutes at full power, a washing machine's heating,
  washing and spin, a dishwasher's two heating phases. Homes run on their own schedule (±60 min).
- **Cycling appliances** (refrigerators): a compressor duty cycle with each unit's own period and phase.
- **Continuous loads** (lighting, business equipment, motors, lifts): a share of rating following the
  building's profile (homes: their lighting shape; businesses: BDEW G0/G1-like shapes with
  weekday/weekend), drifting every 10 minutes.
- **Heating and cooling** from a GridLAB-D-style equivalent-thermal-parameter balance: heat needed =
  UA·(T_setpoint − T_outdoor,eff) − internal gains − solar gains; the duty is need / capacity and the
  unit cycles on and off around its thermostat with its own period. T_outdoor,eff is the outdoor
  temperature filtered by the building's thermal mass (3 h time constant). Setpoints follow occupancy
  (night and away setbacks); businesses' UA gives a ~12 °C balance point so that internal gains, not
  the weather, dominate an office (San Francisco's offices use about as much in June as in December).
- **Electric water heaters**: hot-water draws (CREST/NREL: ~170 L/day a home, morning and evening) are
  recovered at full power; the energy depends on the mains water temperature (NREL, Burch & Christensen
  2007) from the climate's normals; tank standby losses cycle the element.
- **EV charging**: one session per driving day, energy from the distance driven (lognormal, median
  10 kWh), plugged in on arrival home (weekday ~18:00) at the charger's rating until the energy is
  delivered; a third of owners use a timer that starts charging in the off-peak window (23:00–02:00).

Every random number is counter-based (:mod:`gridsim_shared.randomness`), keyed by (seed, meter,
appliance instance, stream, slot), so a reading is a pure function of seed, world, commands and time.

Demand response (:class:`Flex`), the hook utility programmes use::

    flex = fleet.loads.flex                      # one per fleet; rows are the fleet's rows
    rows = np.flatnonzero(np.isin(fleet.meter_id, meter_ids))
    flex.curtail(rows, start_s, end_s, hvac_offset_c=2.0, defer_water=True, defer_ev=True)
    flex.clear(rows)                             # or flex.clear() for every row

During ``[start_s, end_s)`` (UTC epoch seconds) thermostats of those rows move ``hvac_offset_c`` °C
toward saving (cooling setpoint up, heating setpoint down); water heaters hold their element off; EV
sessions pause. Afterwards the loads rebound: the building's mass pulls the thermostat back (extra
need UA·offset decaying with a 1 h time constant), the water heater recovers the energy it would have
used in the window at full power, and EV sessions deliver what the window held back. A fleet reload
(world change) starts with no event.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Literal, TypeVar

import numpy as np
import numpy.typing as npt

from gridsim_meter_sim import randomness, shapes
from gridsim_shared import climate as climate_model

__all__ = [
    "CLASSES",
    "ApplianceClass",
    "Ders",
    "Flex",
    "Loads",
    "build",
    "classify",
    "compact",
    "mains_temperature_c",
    "power",
]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]
IDX = npt.NDArray[np.intp]
BOOL = npt.NDArray[np.bool_]

_A = TypeVar("_A", F64, I64)
_V = TypeVar("_V", bound=npt.NDArray[np.generic])

Mode = Literal["event", "cycle", "continuous", "thermal", "water", "ev"]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MAX_INSTANCES = 64  # more units of one appliance at a meter: 64 instances, each worth q/64 units
_DRIFT_SLOT_MIN = 10
_HOME, _APARTMENT = 0, 1  # shapes.KINDS positions
_TAN_ALWAYS_ON = math.tan(math.acos(0.9))


def _run(*phases: tuple[int, float]) -> tuple[float, ...]:
    """A cycle profile from (minutes, share of rated power) phases."""
    return tuple(share for minutes, share in phases for _ in range(minutes))


@dataclass(frozen=True, slots=True)
class ApplianceClass:
    """How one kind of appliance behaves (see the module docstring and docs/realism.md).

    ``cycle``: share of rated power in each minute of one run (events). ``starts_per_day``: runs a day
    per instance at a home, ``business_starts``: at a business. ``shape``: the home time-of-day shape
    (a :data:`shapes.PROFILES` key). ``standby_w``: drawn when off. Thermal classes: ``cop`` and which
    way they work.
    """

    name: str
    mode: Mode
    cycle: tuple[float, ...] = ()
    starts_per_day: float = 0.0
    business_starts: float = 0.0
    shape: str = "constant"
    standby_w: float = 0.0
    heats: bool = False
    cools: bool = False
    cop: float = 1.0
    share_scale: float = 1.0  # continuous loads: share of rating at full activity


# Cycle profiles and start rates after CREST (Richardson et al. 2010, appliance table) and the
# household energy they give (kettle ≈ 0.4 kWh/day, microwave ≈ 0.3, washing ≈ 0.2, dryer ≈ 0.7).
CLASSES: dict[str, ApplianceClass] = {
    c.name: c
    for c in (
        ApplianceClass("kettle", "event", _run((3, 1.0)), 4.0, 8.0, "cooking", 0.0),
        ApplianceClass("microwave", "event", _run((5, 1.0)), 3.6, 10.0, "cooking", 2.0),
        ApplianceClass("hob", "event", _run((4, 1.0), (12, 0.5)), 1.0, 8.0, "cooking", 0.0),
        ApplianceClass(
            "dishwasher",
            "event",
            _run((8, 0.1), (20, 1.0), (15, 0.1), (12, 1.0), (5, 0.05)),
            0.6,
            5.0,
            "evening",
            1.0,
        ),
        ApplianceClass(
            "washer", "event", _run((20, 1.0), (40, 0.25), (15, 0.6), (5, 0.1)), 0.6, 7.0, "laundry", 1.0
        ),
        ApplianceClass("dryer", "event", _run((50, 1.0), (10, 0.1)), 0.35, 6.0, "laundry", 0.5),
        ApplianceClass("tv", "event", _run((100, 1.0)), 2.0, 0.0, "evening", 2.0),
        ApplianceClass("pc", "event", _run((180, 1.0)), 1.2, 0.0, "daytime", 3.0),
        ApplianceClass("laptop", "event", _run((120, 0.8)), 1.5, 0.0, "daytime", 1.0),
        ApplianceClass("pump", "event", _run((15, 1.0)), 3.0, 6.0, "pump", 0.0),
        ApplianceClass("fridge", "cycle", shape="fridge"),
        ApplianceClass("lighting", "continuous", shape="lighting"),
        ApplianceClass("fan", "continuous", shape="cooling"),
        ApplianceClass(
            "elevator", "continuous", shape="pump", share_scale=0.15
        ),  # lifts idle most of the time
        ApplianceClass("motor", "continuous", shape="daytime", share_scale=0.7),
        ApplianceClass("constant", "continuous"),
        ApplianceClass("ac", "thermal", cools=True, cop=3.0),
        ApplianceClass("heater", "thermal", heats=True, cop=1.0),
        ApplianceClass("heat_pump", "thermal", heats=True, cools=True, cop=2.8),
        ApplianceClass("hvac", "thermal", heats=True, cools=True, cop=3.0),
        ApplianceClass(
            "water_heater", "water", starts_per_day=4.0, business_starts=8.0, shape="geyser", standby_w=0.0
        ),
        ApplianceClass("ev", "ev"),
    )
}

# Appliance names → class (lower-case substrings, first match), then the catalogue profile → class.
_BY_NAME: tuple[tuple[str, str], ...] = (
    ("kettle", "kettle"),
    ("microwave", "microwave"),
    ("dishwasher", "dishwasher"),
    ("cooktop", "hob"),
    ("hob", "hob"),
    ("washing", "washer"),
    ("washer", "washer"),
    ("dryer", "dryer"),
    ("television", "tv"),
    ("desktop", "pc"),
    ("laptop", "laptop"),
    ("refrigera", "fridge"),
    ("fridge", "fridge"),
    ("hvac", "hvac"),
    ("heat pump", "heat_pump"),
    ("air conditioner", "ac"),
    ("geyser", "water_heater"),
    ("water heater", "water_heater"),
    ("heater", "heater"),
    ("ev charger", "ev"),
    ("elevator", "elevator"),
    ("motor", "motor"),
    ("pump", "pump"),
    ("bulb", "lighting"),
    ("fan", "fan"),
)
_BY_PROFILE = {
    "lighting": "lighting",
    "cooling": "fan",
    "evening": "tv",
    "fridge": "fridge",
    "daytime": "laptop",
    "cooking": "microwave",
    "laundry": "washer",
    "ac": "ac",
    "heating": "heater",
    "geyser": "water_heater",
    "pump": "pump",
    "ev": "ev",
}
# At a business these follow the building's opening hours rather than a household's sessions.
_BUSINESS_CONTINUOUS = frozenset({"tv", "pc", "laptop", "pump"})


def classify(appliance: str, profile: str) -> str:
    """The :data:`CLASSES` key of a catalogue appliance, by name first, else by its profile."""
    name = appliance.lower()
    for needle, cls in _BY_NAME:
        if needle in name:
            return cls
    return _BY_PROFILE.get(profile, "constant")


# ---------------------------------------------------------------------------------------- time shapes
# Homes: share of residents at home and awake ("active occupancy", CREST's TUS-based chain, averaged),
# and at home at all (asleep included), weekday, local hour 0 = 00:00-01:00.
# fmt: off
_HOME_ACTIVE = (0.06, 0.03, 0.02, 0.02, 0.03, 0.10, 0.42, 0.68, 0.52, 0.34, 0.30, 0.32,
                0.36, 0.34, 0.32, 0.36, 0.46, 0.62, 0.76, 0.80, 0.78, 0.66, 0.44, 0.18)
_HOME_PRESENT = (0.96, 0.96, 0.96, 0.96, 0.96, 0.95, 0.92, 0.82, 0.62, 0.48, 0.45, 0.46,
                 0.48, 0.47, 0.47, 0.52, 0.62, 0.74, 0.85, 0.90, 0.92, 0.94, 0.95, 0.96)
# fmt: on
_WEEKEND_SHIFT_MIN = 60  # weekend mornings start about an hour later (time-use surveys)


def _minutes(hourly: Sequence[float]) -> F64:
    hours = np.arange(24) + 0.5
    return np.interp(np.arange(1440) / 60.0, hours, np.asarray(hourly, dtype=np.float64), period=24.0)


def _day_types(weekday_curve: F64, weekend_mix: float) -> F64:
    """(3, 1440): weekday, Saturday, Sunday for a home: the weekend runs later and flatter."""
    weekend = np.roll(weekday_curve, _WEEKEND_SHIFT_MIN)
    weekend = (1.0 - weekend_mix) * weekend + weekend_mix * weekday_curve.mean()
    return np.stack([weekday_curve, weekend, weekend])


def _kind_days(kind: int) -> F64:
    """(3, 1440) relative activity of a business kind (max 1): BDEW-like weekday shape × weekend level."""
    curve = _minutes(shapes.KIND_SHAPES[shapes.KINDS[kind]])
    curve = curve / curve.max()
    factor = shapes.WEEKEND_FACTOR[kind]
    return np.stack([curve, curve * factor[5], curve * factor[6]])


@dataclass(frozen=True, slots=True)
class _Shapes:
    """Every time-of-day table, flat: [shape id × _WEEK_STRIDE + _PAD + local minute of the week (Monday 0)].

    A week-long table needs no day-type arithmetic on every tick, and each week is padded on both sides
    with a day of its neighbours (the end and the start of the same week), so an instance's minute
    (its climate's minute of the week, reduced once per climate, plus its own offset within ±_PAD: its
    schedule shift, minutes back to its slot's start) indexes it without a modulo per instance."""

    start_rate: F64  # relative start rate of events (a weekday's mean is 1 for homes)
    share: F64  # share of rating of continuous loads, in [0, 1]
    active: F64  # occupancy driving setpoints and internal gains, in [0, 1]
    present: F64  # presence (cooling setpoints at night)
    ids: dict[tuple[int, str], int]  # (kind, home shape name) → shape id


def _build_shapes() -> _Shapes:
    rates: list[F64] = []
    shares: list[F64] = []
    active: list[F64] = []
    present: list[F64] = []
    ids: dict[tuple[int, str], int] = {}
    home_active = _day_types(_minutes(_HOME_ACTIVE), 0.3)
    home_present = _day_types(_minutes(_HOME_PRESENT), 0.4)
    for name, behaviour in shapes.PROFILES.items():
        curve = _minutes(behaviour.hourly)
        days = _day_types(curve, 0.3)
        mean = max(float(curve.mean()), 1e-9)
        ids[(_HOME, name)] = len(rates)
        rates.append(days / mean)
        shares.append(np.clip(days, 0.0, 1.0))
        active.append(home_active)
        present.append(home_present)
    for kind in range(len(shapes.KINDS)):
        if kind == _HOME:
            continue
        days = _kind_days(kind)
        for name in shapes.PROFILES:  # one table per business kind, whatever the appliance
            ids[(kind, name)] = len(rates)
        # Events at a business start in proportion to its activity (a weekday's mean is 1).
        rates.append(days / days[0].mean())
        # Continuous loads: security lighting and standby keep 5 % on when closed.
        shares.append(0.05 + 0.95 * days)
        active.append(days)
        present.append(days)

    def week(days: list[F64]) -> F64:  # (shapes, 3, 1440) → [Sunday, Monday..Sunday, Monday] per shape, flat
        monday_to_sunday = np.array(days)[:, [0, 0, 0, 0, 0, 1, 2], :].reshape(len(days), _WEEK_MIN)
        return np.concatenate(
            [monday_to_sunday[:, -_PAD:], monday_to_sunday, monday_to_sunday[:, :_PAD]], axis=1
        ).ravel()

    return _Shapes(week(rates), week(shares), week(active), week(present), ids)


_WEEK_MIN = 7 * 1440
_PAD = 1440  # a day each side of a week (see _Shapes): more than any offset a lookup adds
_WEEK_STRIDE = _WEEK_MIN + 2 * _PAD
_SHAPES = _build_shapes()


# ------------------------------------------------------------------------------------------- groups
@dataclass(frozen=True, slots=True)
class _Group:
    """The instances of one appliance class in a fleet: one entry per instance."""

    cls: ApplianceClass
    row: IDX  # the fleet row (meter) of each instance
    rated_kw: F64  # per instance, × the units it stands for
    tan_phi: F64
    keys: U64  # the instance's stream key (a hash of meter key, class and unit)
    business: BOOL
    phase_min: I64  # slot phase / cycle phase (minutes)
    period_min: F64  # cycle period (cycling and thermal units)
    dense: bool  # one instance per fleet row, in row order (sums are plain additions)
    starts_per_day: F64  # events: runs a day (the class's home or business rate)
    climate: IDX  # the climate (Loads.climates position) of each instance's row
    # Where the instance's shape (kind × home shape) starts in the _SHAPES tables, and the same on its
    # building's own clock (minus its schedule shift: households are not synchronised).
    week_row: IDX
    week_row_own: IDX
    # Thermal units only (else empty)
    ua_kw_per_k: F64 = field(default_factory=lambda: np.zeros(0))
    capacity_kw: F64 = field(default_factory=lambda: np.zeros(0))  # heat moved at full power (rated × COP)
    gains_kw: F64 = field(default_factory=lambda: np.zeros(0))
    solar_kw: F64 = field(default_factory=lambda: np.zeros(0))
    # Setpoints at no activity and per unit of activity (°C)
    heat_set_c: tuple[F64, F64] = field(default_factory=lambda: (np.zeros(0), np.zeros(0)))
    cool_set_c: tuple[F64, F64] = field(default_factory=lambda: (np.zeros(0), np.zeros(0)))
    # Water heaters: daily hot water (litres); EVs: timer users
    litres_per_day: F64 = field(default_factory=lambda: np.zeros(0))
    timer: BOOL = field(default_factory=lambda: np.zeros(0, dtype=bool))


class Flex:
    """Demand-response state of a fleet's controllable loads (see the module docstring for the API)."""

    def __init__(self, n: int) -> None:
        self.start_s = np.zeros(n, dtype=np.int64)
        self.end_s = np.zeros(n, dtype=np.int64)
        self.hvac_offset_c = np.zeros(n)
        self.defer_water = np.zeros(n, dtype=bool)
        self.defer_ev = np.zeros(n, dtype=bool)
        self._any = False  # whether some row has an event (kept by curtail/clear: asked every tick)

    def curtail(
        self,
        rows: npt.ArrayLike,
        start_s: int,
        end_s: int,
        *,
        hvac_offset_c: float = 0.0,
        defer_water: bool = False,
        defer_ev: bool = False,
    ) -> None:
        """Curtail the loads of fleet ``rows`` over [start_s, end_s) (UTC epoch s); replaces their event."""
        if end_s <= start_s:
            msg = f"end_s ({end_s}) must be after start_s ({start_s})"
            raise ValueError(msg)
        if hvac_offset_c < 0:
            msg = f"hvac_offset_c must be >= 0 (degrees toward saving), got {hvac_offset_c}"
            raise ValueError(msg)
        idx = np.asarray(rows, dtype=np.intp)
        self.start_s[idx] = start_s
        self.end_s[idx] = end_s
        self.hvac_offset_c[idx] = hvac_offset_c
        self.defer_water[idx] = defer_water
        self.defer_ev[idx] = defer_ev
        self._any = True

    def clear(self, rows: npt.ArrayLike | None = None) -> None:
        """Forget the event of ``rows`` (every row when None)."""
        idx = np.arange(len(self.start_s)) if rows is None else np.asarray(rows, dtype=np.intp)
        self.start_s[idx] = 0
        self.end_s[idx] = 0
        self.hvac_offset_c[idx] = 0.0
        self.defer_water[idx] = False
        self.defer_ev[idx] = False
        self._any = rows is not None and bool((self.end_s > 0).any())

    @property
    def any(self) -> bool:
        """Whether any row has an event (so the common case skips the flex arithmetic)."""
        return self._any


@dataclass(frozen=True)
class Loads:
    """A fleet's load model: per-meter base load and the appliance instances, grouped by class."""

    n: int
    seed: int
    always_on_kw: F64
    climates: list[climate_model.Climate]  # the fleet's (Fleet.climates)
    climate_of: IDX  # fleet row → climate
    groups: list[_Group]
    flex: Flex
    # The engine's tick-by-tick memo of per-slot values (see _SlotCache), one per group that has one.
    caches: dict[int, _SlotCache] = field(default_factory=dict, compare=False, repr=False)
    # ... and of cycling units' positions in their cycles (see _CyclePosition), one per such group.
    positions: dict[int, _CyclePosition] = field(default_factory=dict, compare=False, repr=False)
    lock: threading.Lock = field(default_factory=threading.Lock, compare=False, repr=False)


@dataclass(frozen=True)
class Ders:
    """A fleet's consumption DERs as the load model needs them: one entry per DER (an appliance ×
    quantity) as arrays, and the appliances they are. Arrays rather than an object per DER: a
    million-meter fleet has four million DERs."""

    row: IDX  # per DER: the fleet row (meter), not a meter id
    appliance: IDX  # per DER: position in ``appliances``
    quantity: I64  # per DER
    # Per appliance: (catalogue name, profile, rated kW, power factor). The name tells a kettle from a
    # microwave (both profile "cooking").
    appliances: list[tuple[str, str, float, float]]

    def __len__(self) -> int:
        return len(self.row)


def _instances(count: I64) -> tuple[IDX, I64]:
    """For entries standing for ``count`` instances each: the entry of every instance, and its unit
    number within the entry (0, 1, ... count - 1)."""
    entry = np.repeat(np.arange(len(count), dtype=np.intp), count)
    starts = np.cumsum(count) - count
    return entry, np.arange(len(entry), dtype=np.int64) - starts[entry]


def _instance_keys(meter_keys: U64, cls_index: int, unit: I64) -> U64:
    salt = np.uint64((cls_index + 1) * 0x100000001B3)
    return randomness.mix64(randomness.mix64(meter_keys ^ salt) + unit.astype(np.uint64) * _GOLDEN)


def _u(keys: U64, stream: int) -> F64:
    """A fixed uniform number per key (properties of an instance that never change)."""
    return randomness.uniform(keys, 0xA11 + stream, 0)


def _lognormal(keys: U64, stream: int, median: float, sigma: float) -> F64:
    return median * np.exp(sigma * randomness.normal(keys, 0xB11 + stream, 0))


def build(
    seed: int,
    *,
    keys: U64,
    kind: IDX,
    climates: list[climate_model.Climate],
    climate_of: IDX,
    modelled: BOOL,
    ders: Ders,
) -> Loads:
    """The load model of a fleet: ``keys``/``kind``/climate per row; ``modelled`` rows (realistic
    profile) get loads, others none (the flat profile is the seed's formula, not a model)."""
    n = len(keys)
    business = kind != _HOME
    row, quantity = ders.row, ders.quantity
    # Classified once per appliance, not per DER; businesses run some classes continuously.
    home_cls = [classify(name, profile) for name, profile, _, _ in ders.appliances]
    business_cls = [
        ("motor" if c == "pump" else "constant_business") if c in _BUSINESS_CONTINUOUS else c
        for c in home_cls
    ]

    def per_der(values: list[float] | list[bool] | list[int], dtype: type) -> npt.NDArray[np.generic]:
        return np.array(values, dtype=dtype)[ders.appliance]

    def weighted_sum(rows: IDX, weights: F64) -> F64:  # per fleet row, added in DER order
        return np.asarray(np.bincount(rows, weights=weights, minlength=n), dtype=np.float64)

    rated_kw: F64 = np.asarray(per_der([a[2] for a in ders.appliances], np.float64), dtype=np.float64)
    # Always-on: homes lognormal (median 110 W + standby below), businesses ~5 % of their non-thermal
    # rating (emergency lighting, network, standby), apartment common areas likewise. (bincount adds in
    # DER order, as a loop over the DERs would.)
    runs_for_hours = per_der(
        [CLASSES[c].mode in ("continuous", "cycle") and CLASSES[c].name != "elevator" for c in home_cls], bool
    )
    rated_by_row = weighted_sum(row, np.where(runs_for_hours, rated_kw * quantity, 0.0))
    standby_kw = np.asarray(
        per_der([CLASSES[c].standby_w / 1000.0 for c in home_cls], np.float64), np.float64
    )
    standby = weighted_sum(row, standby_kw * np.minimum(quantity, _MAX_INSTANCES))
    home_base = _lognormal(keys, 1, 0.110, 0.4)
    business_base = np.maximum(0.1, 0.05 * rated_by_row) * _lognormal(keys, 2, 1.0, 0.25)
    always_on = np.where(business, business_base, home_base) + standby
    # A meter whose ER has no appliance switched on (a generator's meter, a vacant home) draws nothing.
    equipped = np.zeros(n, dtype=bool)
    equipped[row[quantity > 0]] = True
    always_on = np.where(modelled & equipped, always_on, 0.0)

    shift = np.where(
        business, (_u(keys, 1) * 30 - 15).astype(np.int64), (_u(keys, 1) * 120 - 60).astype(np.int64)
    )

    # Each modelled DER's class. Continuous loads (lighting, motors) are one share of their total
    # rating; the rest are instances (up to _MAX_INSTANCES, each standing for quantity / count units).
    class_names = sorted(set(home_cls) | set(business_cls))
    index = {c: i for i, c in enumerate(class_names)}
    cls_of = np.where(
        business[row],
        per_der([index[c] for c in business_cls], np.intp),
        per_der([index[c] for c in home_cls], np.intp),
    )
    continuous = np.array(
        [CLASSES.get(c, CLASSES["constant"]).mode == "continuous" for c in class_names], bool
    )
    tan_phi = np.asarray(
        per_der([math.tan(math.acos(min(max(a[3], 0.01), 1.0))) for a in ders.appliances], np.float64),
        np.float64,
    )
    modelled_der = modelled[row] & (quantity > 0) & (rated_kw > 0)
    # Per class its instances in DER order, then unit: (row, rated kW × the units it stands for, tan φ, unit).
    per_class: dict[str, tuple[IDX, F64, F64, I64]] = {}
    for i, cls_name in enumerate(class_names):
        selected = np.flatnonzero(modelled_der & (cls_of == i))
        if not len(selected):
            continue
        count = (
            np.ones(len(selected), np.int64)
            if continuous[i]
            else np.minimum(quantity[selected], _MAX_INSTANCES)
        )
        entry, unit = _instances(count)
        picked = selected[entry]
        scaled = rated_kw[selected] * (quantity[selected] / count)
        per_class[cls_name] = (row[picked], scaled[entry], tan_phi[picked], unit)
    # Internal gains of businesses: the heat of their non-thermal equipment when open.
    hvac_units = np.zeros(n)
    for name in ("hvac", "heat_pump", "ac", "heater"):
        if name in per_class:
            hvac_units += np.bincount(per_class[name][0], minlength=n)

    groups = []
    names = list(CLASSES)
    for cls_name in sorted(per_class):
        row, rated, tan, unit = per_class[cls_name]
        cls = CLASSES["constant"] if cls_name == "constant_business" else CLASSES[cls_name]
        ikeys = _instance_keys(keys[row], names.index(cls.name) + (100 if cls_name != cls.name else 0), unit)
        shape_name = cls.shape
        if cls_name == "constant_business":
            shape_name = "daytime"
        if shape_name not in shapes.PROFILES:
            shape_name = "constant"
        # A compressor keeps its own rhythm in any building; everything else follows the building.
        if cls.mode == "cycle":
            shape = np.full(len(row), _SHAPES.ids[(_HOME, shape_name)], dtype=np.intp)
        else:
            by_kind = np.array(
                [_SHAPES.ids[(k, shape_name)] for k in range(len(shapes.KINDS))], dtype=np.intp
            )
            shape = by_kind[kind[row]]
        group = _Group(
            cls=cls,
            row=row,
            rated_kw=compact(rated),
            tan_phi=compact(tan),
            keys=ikeys,
            business=business[row],
            phase_min=(randomness.mix64(ikeys) % np.uint64(1440)).astype(np.int64),
            period_min=_period(cls, ikeys),
            dense=len(row) == n and bool((row == np.arange(n)).all()),
            starts_per_day=compact(np.where(business[row], cls.business_starts, cls.starts_per_day)),
            climate=compact(climate_of[row]),
            week_row=compact(shape * _WEEK_STRIDE + _PAD),
            week_row_own=shape * _WEEK_STRIDE + _PAD - shift[row],
        )
        if cls.mode == "thermal":
            group = _thermal(group, rated_by_row, hvac_units)
        elif cls.mode == "water":
            litres = np.where(group.business, 400.0, 170.0) * _lognormal(ikeys, 3, 1.0, 0.35)
            group = replace(group, litres_per_day=litres)
        elif cls.mode == "ev":
            group = replace(group, timer=_u(ikeys, 4) < _EV_TIMER_SHARE)
        groups.append(group)
    return Loads(n, seed, always_on, climates, climate_of, groups, Flex(n))


def compact(values: _V) -> _V:  # (public: the fleet's per-meter constants use it too)
    """``values``, as a read-only view of its first element when every instance has the same (a home
    fleet's one rating of an appliance, its tan φ, start rate, climate...): arithmetic then reads one
    number instead of streaming another array of the group's size through the cache every tick."""
    if len(values) > 1 and bool((values == values[0]).all()):
        view: _V = np.broadcast_to(values[:1], values.shape)  # type: ignore[assignment]
        return view
    return values


def _period(cls: ApplianceClass, keys: U64) -> F64:
    u = _u(keys, 5)
    if cls.mode == "cycle":
        return 40.0 + 20.0 * u  # refrigerator compressor: ~3 cycles an hour at a third duty
    if cls.mode == "thermal":
        return 18.0 + 14.0 * u  # thermostat deadband cycling at mid duty (GridLAB-D: 2-3 cycles/h)
    if cls.mode == "water":
        return 150.0 + 60.0 * u  # standby-loss reheats
    return np.zeros(len(keys))


# Thermal envelope (ETP, reduced to its steady balance plus a lagged outdoor temperature). Homes: UA of
# a ~150 m² house (GridLAB-D's default house: ~200 W/K); a room heater warms one room.
_HOUSE_UA_KW_PER_K = 0.20
_ROOM_UA_KW_PER_K = 0.06
_BUSINESS_BALANCE_K = 9.0  # occupied setpoint − balance point of a business (internal gains dominate)
_MASS_TAU_H = 3.0
_REBOUND_TAU_MIN = 60.0


def _thermal(group: _Group, rated_by_row: F64, hvac_units: F64) -> _Group:
    k = group.keys
    room = group.cls.name == "heater"
    home_ua = np.where(room, _ROOM_UA_KW_PER_K, _HOUSE_UA_KW_PER_K) * _lognormal(k, 6, 1.0, 0.3)
    home_gains = np.where(room, 0.3, 1.0) * 0.45  # occupants, cooking, lighting (scaled by activity)
    home_solar = np.where(room, 0.15, 0.6) * home_ua / _HOUSE_UA_KW_PER_K
    # A business's gains: the heat of its non-thermal equipment (a share of its rating), per HVAC unit.
    units = np.maximum(hvac_units[group.row], 1.0)
    business_gains = 0.6 * rated_by_row[group.row] / units + 0.3
    business_solar = 0.3 * business_gains
    business_ua = (business_gains + business_solar) / _BUSINESS_BALANCE_K
    b = group.business & ~room
    # Setpoints (°C) = base + slope × activity: homes heat to 20.5 when up and about, 16.5 asleep or away,
    # and cool to 24.5 when at home, 27 away; businesses 21 / 23 when open, set back to 13 / 29.5 when
    # closed (ASHRAE 90.1: 55 / 85 °F). Each unit's thermostat is set a little differently.
    in_business = group.business
    shift = randomness.normal(k, 0xC11, 0) * np.where(b, 0.5, 1.0)
    return replace(
        group,
        ua_kw_per_k=np.where(b, business_ua, home_ua),
        capacity_kw=compact(group.rated_kw * group.cls.cop),
        gains_kw=compact(np.where(b, business_gains, home_gains)),
        solar_kw=np.where(b, business_solar, home_solar),
        heat_set_c=(np.where(in_business, 13.0, 16.5) + shift, compact(np.where(in_business, 8.0, 4.0))),
        cool_set_c=(np.where(in_business, 29.5, 27.0) + shift, compact(np.where(in_business, -6.5, -2.5))),
    )


# ------------------------------------------------------------------------------------------ per tick
@dataclass(frozen=True, slots=True)
class _Tick:
    """Time and weather of one instant or a series, per climate: (climates,) or (T, climates).

    Every meter of a climate shares its clock and weather, so they are worked out once per climate and
    picked per instance by :func:`_at` (no per-meter trigonometry or gathers in a one-climate fleet)."""

    epoch_s: I64  # () for one instant, (T, 1) for a series: every array below broadcasts against it
    epoch_min: I64
    offset_min: I64  # UTC offset of each climate (minutes, daylight saving included)
    local_min: I64  # local epoch minutes per climate
    week_min: I64  # local minute of the week per climate (Monday 00:00 is 0)
    t_eff: F64  # outdoor temperature through the building mass (°C), per climate
    t_mains: F64  # mains water temperature (°C), per climate
    sun: F64  # solar-gain shape in [0, 1], per climate (local clock)
    single: bool  # one climate: the (…, 1) arrays broadcast against any group as they are


def _at(values: _A, tick: _Tick, g: _Group, idx: IDX | None = None) -> _A:
    """A per-climate tick array at each instance of ``g`` (those at ``idx`` when given)."""
    if tick.single:
        return values
    climate = g.climate if idx is None else g.climate[idx]
    out: _A = values[..., climate]
    return out


def _bits(keys: U64, counter: I64 | int) -> U64:
    return randomness.mix64(keys + np.asarray(counter, dtype=np.int64).astype(np.uint64) * _GOLDEN)


def _unit(bits: U64, shift: int) -> F64:
    """A 16-bit uniform in [0, 1) from bits ``shift``..``shift+15`` of a 64-bit hash."""
    return ((bits >> np.uint64(shift)) & np.uint64(0xFFFF)).astype(np.float64) / 65536.0


def _week_index(
    tick: _Tick, g: _Group, offset: I64 | None = None, idx: IDX | None = None, *, own: bool = True
) -> I64:
    """Each instance's position in the _SHAPES tables: its climate's minute of the week + ``offset``
    (minutes, within ±_PAD), on its building's own clock (``own``: its schedule shift) or the plain one.
    ``idx``: only those instances."""
    row = g.week_row_own if own else g.week_row
    if idx is not None:
        row = row[idx]
    index: I64 = row + _at(tick.week_min, tick, g, idx)
    if offset is not None:
        index += offset
    return index


def mains_temperature_c(climate: climate_model.Climate, epoch_s: I64) -> F64:
    """Cold-water mains temperature (°C): NREL's correlation (Burch & Christensen 2007) on the climate's
    monthly normals; seasons flip in the southern hemisphere."""
    monthly_f = np.asarray(climate.mean_c) * 9.0 / 5.0 + 32.0
    mean_f = float(monthly_f.mean())
    spread_f = float(monthly_f.max() - monthly_f.min())
    ratio = 0.4 + 0.01 * (mean_f - 44.0)
    lag = 35.0 - 1.0 * (mean_f - 44.0)
    doy = climate_model.day_of_year(epoch_s) + 1.0 + (182.0 if climate.latitude < 0 else 0.0)
    t_f = mean_f + 6.0 + ratio * spread_f / 2.0 * np.sin(np.radians(0.986 * (doy - 15.0 - lag) - 90.0))
    return (t_f - 32.0) * 5.0 / 9.0


_LAGS_S = np.arange(12, dtype=np.int64) * 1800
_LAG_WEIGHTS = np.exp(-(_LAGS_S / 3600.0) / _MASS_TAU_H)
_LAG_WEIGHTS /= _LAG_WEIGHTS.sum()
_CLIMATE_BLOCK_S = 300


def _climate_blocks(climate: climate_model.Climate, seed: int, blocks: I64) -> F64:
    """(blocks, 3): UTC offset (minutes), mass-filtered outdoor temperature and mains temperature (°C)
    of each 5-minute block: the weather moves slowly, so one value serves a block's ticks and meters."""
    epoch_s = blocks * _CLIMATE_BLOCK_S
    offset = climate_model.utc_offset_s(climate.timezone, epoch_s) // 60
    temps = climate_model.outdoor_temperature_c(climate, epoch_s[:, None] - _LAGS_S[None, :], seed)
    return np.stack(
        [offset.astype(np.float64), temps @ _LAG_WEIGHTS, mains_temperature_c(climate, epoch_s)], axis=1
    )


@lru_cache(maxsize=1024)
def _climate_now(climate: climate_model.Climate, seed: int, block: int) -> tuple[float, float, float]:
    """One block of :func:`_climate_blocks`, cached for the engine's tick (a pure function: no state)."""
    row = _climate_blocks(climate, seed, np.array([block], dtype=np.int64))[0]
    return float(row[0]), float(row[1]), float(row[2])


def _tick(loads: Loads, epoch_s: I64) -> _Tick:
    if epoch_s.ndim == 0:  # one instant (the engine): (climates, 3)
        now = np.array(
            [_climate_now(c, loads.seed, int(epoch_s) // _CLIMATE_BLOCK_S) for c in loads.climates]
        )
    else:  # a series (T, 1): (T, climates, 3)
        blocks, inverse = np.unique(epoch_s[:, 0] // _CLIMATE_BLOCK_S, return_inverse=True)
        table = np.stack([_climate_blocks(c, loads.seed, blocks) for c in loads.climates], axis=1)
        now = table[inverse]
    offset = now[..., 0].astype(np.int64)
    epoch_min = epoch_s // 60
    local_min = epoch_min + offset
    hour = np.mod(local_min, 1440) / 60.0
    sun = np.clip(np.sin(np.pi * (hour - 7.0) / 12.0), 0.0, 1.0)  # solar gains, lagging the sun a little
    single = len(loads.climates) == 1
    week_min = np.mod(local_min + 3 * 1440, _WEEK_MIN)  # 1970-01-01 was a Thursday, 3 days after a Monday
    return _Tick(epoch_s, epoch_min, offset, local_min, week_min, now[..., 1], now[..., 2], sun, single)


def power(loads: Loads, epoch_s: int | I64, only: str | None = None) -> tuple[F64, F64]:
    """Active and reactive power (kW, kVAR) of every fleet row at ``epoch_s`` (UTC seconds).

    One instant gives arrays of shape (rows,); a 1-D series of T instants gives (T, rows) (the realism
    report and tests simulate days at once this way; the engine calls it once per tick). ``only``: just
    that appliance class (a :data:`CLASSES` key, or ``"always_on"``), for the realism report.
    """
    epoch = np.asarray(epoch_s, dtype=np.int64)
    series = epoch.ndim == 1
    if series:
        epoch = epoch[:, None]
    base = loads.always_on_kw if only in (None, "always_on") else np.zeros(loads.n)
    p = np.broadcast_to(base, (len(epoch), loads.n) if series else (loads.n,)).copy()
    q = p * _TAN_ALWAYS_ON
    groups = [g for g in loads.groups if only is None or g.cls.name == only]
    if not groups:
        return p, q
    tick = _tick(loads, epoch)
    flex = loads.flex if loads.flex.any else None
    with loads.lock:  # the slot caches are shared state (the engine ticks in a worker thread)
        for g in groups:
            if g.cls.mode == "event" and not series:
                running, kw = _event_cached(g, tick, _event_cache(loads, g))
                if running is not None:  # only the instances running now; the others add 0
                    _scatter_some(p, g, running, kw)
                    _scatter_some(q, g, running, kw * g.tan_phi[running])
                    continue
            else:
                kw = _group_kw(loads, g, tick, flex, series)
            kw = np.broadcast_to(kw, np.broadcast_shapes(kw.shape, g.row.shape))
            _scatter(p, g.row, kw, g.dense)
            _scatter(q, g.row, kw * g.tan_phi, g.dense)
    return p, q


def _group_kw(loads: Loads, g: _Group, tick: _Tick, flex: Flex | None, series: bool) -> F64:
    mode = g.cls.mode
    if mode == "event":  # a series (one instant: power() asks _event_cached)
        return _event(g, tick)
    if mode == "continuous":
        return _continuous(g, tick, None if series else _cache(loads, g))
    if mode == "ev":
        return _ev(g, tick, flex)
    memo = None if series else loads.positions.setdefault(id(g), _CyclePosition())
    if mode == "cycle":
        return _cycle(g, tick, memo)
    if mode == "thermal":
        return _thermal_kw(g, tick, flex, memo)
    return _water(g, tick, flex, memo)


def _event(g: _Group, tick: _Tick) -> F64:
    """CREST activation: one possible run per slot of twice the cycle's length, started with probability
    rate × slot × shape(slot start), at a random minute that lets it finish inside the slot."""
    cycle = np.asarray(g.cls.cycle)
    length = len(cycle)
    slot_len = 2 * length
    t = tick.epoch_min + g.phase_min
    slot = t // slot_len
    position = t - slot * slot_len
    rate = g.starts_per_day  # at the slot's start on the building's clock
    p_start = rate * slot_len / 1440.0 * _SHAPES.start_rate[_week_index(tick, g, -position)]
    bits = _bits(g.keys, slot)
    start = (bits & np.uint64(0xFFFF)).astype(np.int64) % (slot_len - length + 1)
    into = position - start
    running = (_unit(bits, 16) < p_start) & (into >= 0) & (into < length)
    share = np.where(running, cycle[np.clip(into, 0, length - 1)], 0.0)
    return g.rated_kw * share


class _SlotCache:
    """What each instance of a group decided for its current slot, kept from one engine tick to the next.

    An event instance draws once per slot (whether and when its run starts), a continuous load its drift
    once per 10 minutes; both are pure functions of the slot, so the engine, ticking minute by minute,
    need only redraw the instances whose slot changed (a few per cent of them each minute) instead of
    hashing every instance every tick. A memo, not state: an instance is redrawn whenever the tick falls
    outside the minutes [begin, begin + slot) its entry holds (any jump, forward or back), and every instance when
    a climate's UTC offset changes (the start rate follows the local clock), so a reading is bit for bit
    the uncached formula's (tests/test_loads.py compares them).

    The engine's usual step is the next minute: when every entry was current at the minute before, the
    stale ones are exactly those whose slot starts now ((minute + phase) % slot == 0), kept in buckets by
    that residue, so a step reads one bucket instead of comparing every instance.
    """

    NEVER = -(1 << 62)  # "no run in this slot": far enough back that tick − NEVER never overflows

    def __init__(self, kind: type[np.generic], slot_len: int, phase_min: I64) -> None:
        n = len(phase_min)
        self.slot_len = np.uint64(slot_len)
        # Epoch minute each entry's slot begins; NEVER (as for no run) is never within a slot of a tick.
        self.begin = np.full(n, self.NEVER, dtype=np.int64)
        self.value = np.zeros(n, dtype=kind)
        self.offsets: tuple[int, ...] = ()
        self.current_at: int | None = None  # the minute every entry was last made current at
        # Instances by the residue of minute (mod slot) at which their slot starts: -phase mod slot.
        starts = np.mod(-phase_min, slot_len)
        self.by_start = np.argsort(starts, kind="stable")
        self.bucket = np.searchsorted(starts[self.by_start], np.arange(slot_len + 1))

    def stale(self, epoch_min: int, offsets: tuple[int, ...]) -> IDX:
        """The instances to redraw at ``epoch_min`` (every one of them when the offsets moved); the caller
        redraws them and :meth:`store` s what they drew."""
        if offsets != self.offsets:
            self.offsets = offsets
            self.current_at = None
            return np.arange(len(self.begin))
        if self.current_at == epoch_min - 1:
            r = epoch_min % int(self.slot_len)
            return self.by_start[self.bucket[r] : self.bucket[r + 1]]
        # Outside [begin, begin + slot): before begin wraps to a huge unsigned number (one comparison).
        return np.flatnonzero((epoch_min - self.begin).view(np.uint64) >= self.slot_len)

    def store(self, epoch_min: int, idx: IDX, begin: I64, value: npt.NDArray[np.generic]) -> None:
        """What the instances :meth:`stale` gave drew at ``epoch_min``: every entry is current now."""
        self.begin[idx] = begin
        self.value[idx] = value
        self.current_at = epoch_min

    def unchanged(self, epoch_min: int) -> None:
        """:meth:`stale` gave no instance at ``epoch_min``: every entry is current now."""
        self.current_at = epoch_min


class _EventCache(_SlotCache):
    """An event group's memo: each instance's run start (epoch minute) in its current slot, or NEVER, and
    which instances have a run in their slot (``scheduled``: the only ones that can be running)."""

    def __init__(self, slot_len: int, phase_min: I64) -> None:
        super().__init__(np.int64, slot_len, phase_min)
        self.scheduled = np.zeros(len(phase_min), dtype=bool)

    def store(self, epoch_min: int, idx: IDX, begin: I64, value: npt.NDArray[np.generic]) -> None:
        super().store(epoch_min, idx, begin, value)
        self.scheduled[idx] = value != self.NEVER


def _cache(loads: Loads, g: _Group) -> _SlotCache:
    """A continuous group's memo of its drift."""
    cache = loads.caches.get(id(g))
    if cache is None:
        cache = loads.caches[id(g)] = _SlotCache(np.float64, _DRIFT_SLOT_MIN, g.phase_min)
    return cache


def _event_cache(loads: Loads, g: _Group) -> _EventCache:
    cache = loads.caches.get(id(g))
    if not isinstance(cache, _EventCache):
        cache = _EventCache(2 * len(g.cls.cycle), g.phase_min)
        loads.caches[id(g)] = cache
    return cache


# Above this share of an event group's instances with a run in their slot (a television in the evening),
# computing every instance costs less than picking the running ones.
_SPARSE_EVENTS = 0.125


def _event_cached(g: _Group, tick: _Tick, cache: _EventCache) -> tuple[IDX | None, F64]:
    """:func:`_event` at one instant, redrawing only the instances whose slot changed.

    Returns the instances running now (ascending) and their power (kW), every other instance drawing
    nothing; or, when many have a run in their slot, None and every instance's power."""
    length = len(g.cls.cycle)
    slot_len = 2 * length
    now = int(tick.epoch_min)
    idx = cache.stale(now, tuple(int(o) for o in tick.offset_min))
    if not len(idx):
        cache.unchanged(now)
    else:
        phase = g.phase_min[idx]
        t = now + phase
        slot = t // slot_len
        position = t - slot * slot_len
        rate = g.starts_per_day[idx]  # at the slot's start on the building's clock
        p_start = rate * slot_len / 1440.0 * _SHAPES.start_rate[_week_index(tick, g, -position, idx)]
        bits = _bits(g.keys[idx], slot)
        start = (bits & np.uint64(0xFFFF)).astype(np.int64) % (slot_len - length + 1)
        begin = slot * slot_len - phase
        cache.store(now, idx, begin, np.where(_unit(bits, 16) < p_start, begin + start, _SlotCache.NEVER))
    # Minutes into the run; before its start (negative) wraps to a huge unsigned number, which like
    # "past the end" is not running (the 0.0 appended to the cycle). The table is indexed with int64
    # views of the (small) minutes: numpy converts an unsigned index array first, at three times the cost.
    profile = _cycle_table(g.cls.cycle)
    if np.count_nonzero(cache.scheduled) > _SPARSE_EVENTS * len(g.row):
        into = (now - cache.value).view(np.uint64)
        out: F64 = g.rated_kw * profile[np.minimum(into, np.uint64(length)).view(np.int64)]
        return None, out
    scheduled = np.flatnonzero(cache.scheduled)
    into = (now - cache.value[scheduled]).view(np.uint64)
    on = into < np.uint64(length)
    running = scheduled[on]
    kw: F64 = g.rated_kw[running] * profile[into[on].view(np.int64)]
    return running, kw


@lru_cache(maxsize=64)
def _cycle_table(cycle: tuple[float, ...]) -> F64:
    """An event's cycle profile with a 0.0 after its last minute (not running)."""
    return np.array([*cycle, 0.0])


class _CyclePosition:
    """Where each unit of a cycling group (compressors, thermostats) is in its own cycle at one minute:
    (epoch minute + phase) mod period, kept from one engine tick to the next.

    A step to the next minute adds one (and wraps past the period) instead of a floating-point modulo per
    unit. Both are exact: fmod's result is exact, and with periods ≥ 2 minutes r + 1 (below the period)
    and (r − period) + 1 (once r + 1 reaches it) are representable in the period's precision, so the units
    switch exactly as :func:`np.mod` has them (tests/test_loads.py compares them). Any other step, or the
    first, recomputes every position."""

    def __init__(self) -> None:
        self.minute: int | None = None
        self.value: F64 = np.zeros(0)

    def at(self, epoch_min: int, phase_min: I64, period_min: F64) -> F64:
        if self.minute == epoch_min:
            return self.value
        if self.minute == epoch_min - 1:
            r = self.value
            value = r + 1.0
            wrap = np.flatnonzero(value >= period_min)  # one minute in a period: a few per cent
            value[wrap] = (r[wrap] - period_min[wrap]) + 1.0
        else:
            value = np.mod(epoch_min + phase_min, period_min)
        self.minute, self.value = epoch_min, value
        return value


def _in_cycle(g: _Group, tick: _Tick, memo: _CyclePosition | None) -> F64:
    """Each unit's minute within its cycle: from ``memo`` at one instant (the engine), else computed."""
    if memo is None:
        out: F64 = np.mod(tick.epoch_min + g.phase_min, g.period_min)
        return out
    return memo.at(int(tick.epoch_min), g.phase_min, g.period_min)


def _cycle(g: _Group, tick: _Tick, memo: _CyclePosition | None = None) -> F64:
    duty = _SHAPES.share[_week_index(tick, g, own=False)]
    on = _in_cycle(g, tick, memo) < duty * g.period_min
    kw: F64 = g.rated_kw * on
    return kw


def _continuous(g: _Group, tick: _Tick, cache: _SlotCache | None = None) -> F64:
    share = _SHAPES.share[_week_index(tick, g)]
    if g.cls.name == "fan":  # ceiling fans only when it is warm
        share = share * np.clip((_at(tick.t_eff, tick, g) - 20.0) / 8.0, 0.0, 1.0)
    if cache is None:
        drift = 0.8 + 0.4 * _unit(_bits(g.keys, (tick.epoch_min + g.phase_min) // _DRIFT_SLOT_MIN), 0)
    else:  # one instant: the drift of the instances whose 10-minute slot changed (see _SlotCache)
        now = int(tick.epoch_min)
        idx = cache.stale(now, cache.offsets)  # the drift does not follow the local clock
        if not len(idx):
            cache.unchanged(now)
        else:
            phase = g.phase_min[idx]
            slot = (now + phase) // _DRIFT_SLOT_MIN
            cache.store(
                now, idx, slot * _DRIFT_SLOT_MIN - phase, 0.8 + 0.4 * _unit(_bits(g.keys[idx], slot), 0)
            )
        drift = cache.value
    share = share * drift
    if g.cls.share_scale != 1.0:  # (× 1.0 changes nothing)
        share *= g.cls.share_scale
    return np.clip(share, 0.0, 1.0, out=share) * g.rated_kw


def _scatter(out: F64, row: IDX, values: F64, dense: bool) -> None:
    """out[..., row] += values, summing instances of one meter (``dense``: row is every row in order)."""
    if dense:
        out += values
    elif values.ndim == 1:
        out += np.bincount(row, weights=values, minlength=out.shape[-1])
    else:
        t, n = out.shape
        flat = (row[None, :] + n * np.arange(t)[:, None]).ravel()
        out += np.bincount(flat, weights=values.ravel(), minlength=t * n).reshape(t, n)


def _scatter_some(out: F64, g: _Group, idx: IDX, values: F64) -> None:
    """out[row] += values for the instances ``idx`` (ascending) of ``g``: :func:`_scatter` with every other
    instance's value 0, the same sums (adding 0.0 changes nothing)."""
    if g.dense:  # one instance per row, in row order: the rows are ``idx``, distinct
        out[idx] += values
    else:
        out += np.bincount(g.row[idx], weights=values, minlength=out.shape[-1])


def _window(flex: Flex | None, row: IDX, epoch_s: I64) -> tuple[BOOL, F64]:
    """Whether each instance's row is inside its flex window, and minutes since the window ended."""
    if flex is None:
        return np.zeros(len(row), dtype=bool), np.full(len(row), np.inf)
    start, end = flex.start_s[row], flex.end_s[row]
    inside = (end > 0) & (epoch_s >= start) & (epoch_s < end)
    since = np.where((end > 0) & (epoch_s >= end), (epoch_s - end) / 60.0, np.inf)
    return inside, since


def _thermal_kw(g: _Group, tick: _Tick, flex: Flex | None, memo: _CyclePosition | None = None) -> F64:
    """ETP balance → duty → thermostat cycling (on for duty × period of each period)."""
    index = _week_index(tick, g)
    active = _SHAPES.active[index]
    present = _SHAPES.present[index]  # a business's presence is its activity
    heat_set = g.heat_set_c[0] + g.heat_set_c[1] * active
    if g.cls.name == "heater":  # a room heater is switched on only while someone is up in the room
        heat_set = np.where(active > 0.3, heat_set, 10.0)
    cool_set = g.cool_set_c[0] + g.cool_set_c[1] * present
    t_out = _at(tick.t_eff, tick, g)
    gains = g.gains_kw * (0.3 + 0.7 * active)
    gains += g.solar_kw * _at(tick.sun, tick, g)
    capacity = g.capacity_kw
    if (
        flex is None
    ):  # the common case, in place: the same numbers with fewer arrays (the tick's largest cost)
        duty = _duty_no_flex(g, heat_set, cool_set, t_out=t_out, gains=gains, capacity=capacity)
    else:
        inside, since = _window(flex, g.row, tick.epoch_s)
        offset = flex.hvac_offset_c[g.row]
        heat_set = heat_set - offset * inside
        cool_set = cool_set + offset * inside
        rebound = g.ua_kw_per_k * offset * np.exp(-since / _REBOUND_TAU_MIN)
        duty = np.zeros(np.broadcast_shapes(np.shape(t_out), np.shape(gains)))
        if g.cls.heats:
            need = g.ua_kw_per_k * (heat_set - t_out) - gains
            duty += np.clip((need + rebound * (need > 0)) / capacity, 0.0, 1.0)
        if g.cls.cools:
            need = g.ua_kw_per_k * (t_out - cool_set) + gains
            duty += np.clip((need + rebound * (need > 0)) / capacity, 0.0, 1.0)
    duty = np.minimum(duty, 1.0)
    on = _in_cycle(g, tick, memo) < duty * g.period_min
    kw = g.rated_kw * on
    if g.cls.name == "hvac":  # the supply fan runs while a business is open (~12 % of the unit's rating)
        kw = kw + 0.12 * g.rated_kw * (active > 0.5) * ~on
    out: F64 = kw
    return out


def _duty_no_flex(g: _Group, heat_set: F64, cool_set: F64, *, t_out: F64, gains: F64, capacity: F64) -> F64:
    """Heating + cooling duty (unclipped sum of the two clipped ones), overwriting ``heat_set``/``cool_set``."""
    duty: F64 | None = None
    if g.cls.heats:  # need = UA·(T_set − T_out) − gains
        need = np.subtract(heat_set, t_out, out=heat_set)
        need *= g.ua_kw_per_k
        need -= gains
        need /= capacity
        duty = np.clip(need, 0.0, 1.0, out=need)
    if g.cls.cools:  # need = UA·(T_out − T_set) + gains
        need = np.subtract(t_out, cool_set, out=cool_set)
        need *= g.ua_kw_per_k
        need += gains
        need /= capacity
        np.clip(need, 0.0, 1.0, out=need)
        duty = need if duty is None else np.add(duty, need, out=duty)
    if duty is None:
        return np.zeros(np.broadcast_shapes(np.shape(t_out), np.shape(gains)))
    return duty


_WATER_SET_C = 50.0
_TANK_LOSS_KW = 0.05  # ~1.2 kWh/day standby loss of a 190 L tank
_WATER_SLOT_MIN = 120


def _water(g: _Group, tick: _Tick, flex: Flex | None, memo: _CyclePosition | None = None) -> F64:
    """Draws (CREST/NREL) recovered at full power; standby reheats; deferral with recovery afterwards."""
    t_mains = _at(tick.t_mains, tick, g)
    day_kwh = g.litres_per_day * 4.186 * (_WATER_SET_C - t_mains) / 3600.0 / 0.98
    rate = g.starts_per_day
    t = tick.epoch_min + g.phase_min
    slot = t // _WATER_SLOT_MIN
    position = t - slot * _WATER_SLOT_MIN
    p_start = rate * _WATER_SLOT_MIN / 1440.0 * _SHAPES.start_rate[_week_index(tick, g, -position)]
    bits = _bits(g.keys, slot)
    minutes = day_kwh / rate / g.rated_kw * 60.0 * (0.4 + 1.2 * _unit(bits, 32))
    length = np.clip(np.round(minutes), 1, 90).astype(np.int64)
    start = (bits & np.uint64(0xFFFF)).astype(np.int64) % (_WATER_SLOT_MIN - length + 1)
    into = position - start
    draw = (_unit(bits, 16) < p_start) & (into >= 0) & (into < length)
    standby = _in_cycle(g, tick, memo) < _TANK_LOSS_KW / g.rated_kw * g.period_min
    on = draw | standby
    if flex is not None:
        inside, since = _window(flex, g.row, tick.epoch_s)
        defer = flex.defer_water[g.row]
        window_min = (flex.end_s[g.row] - flex.start_s[g.row]) / 60.0
        recovery = day_kwh * window_min / 1440.0 / g.rated_kw * 60.0
        on = np.where(defer & inside, False, on | (defer & (since < recovery)))
    kw: F64 = g.rated_kw * on
    return kw


_EV_MEDIAN_KWH = 10.0
# Share of owners charging on a time-of-use timer (California EV-rate studies: about half).
_EV_TIMER_SHARE = 0.5


def _ev_session(g: _Group, local_day: I64) -> tuple[BOOL, F64, F64]:
    """Whether each EV drives on ``local_day``, its plug-in minute (from that day's midnight) and duration."""
    bits = _bits(g.keys, local_day)
    weekday = np.mod(local_day + 3, 7) < 5
    drives = _unit(bits, 0) < np.where(weekday, 0.85, 0.7)
    u = np.clip(_unit(bits, 16), 1e-4, 1 - 1e-4)
    z = np.log(u / (1.0 - u)) * 0.5513  # logistic with a standard normal's spread
    kwh = np.clip(_EV_MEDIAN_KWH * np.exp(0.5 * z), 1.0, 40.0)
    v = np.clip(_unit(bits, 32), 1e-4, 1 - 1e-4)
    zs = np.log(v / (1.0 - v)) * 0.5513
    arrival = np.where(weekday, np.clip(18.0 + 2.0 * zs, 12.0, 23.5), np.clip(15.5 + 3.0 * zs, 9.0, 23.5))
    duration = kwh / g.rated_kw * 60.0
    # Timers start in the off-peak window 23:00-05:00, randomised (managed-charging programmes spread
    # starts so that the window's opening does not become a new peak).
    timer_start = (23.0 + 6.0 * _unit(bits, 48)) * 60.0
    start_min = np.where(g.timer, timer_start, arrival * 60.0)
    return drives, start_min, duration


def _ev(g: _Group, tick: _Tick, flex: Flex | None) -> F64:
    """One session per driving day at rated power; a flex window pauses it and the rest runs after."""
    local = _at(tick.local_min, tick, g)
    today = local // 1440
    on = np.zeros(np.broadcast_shapes(local.shape, g.row.shape), dtype=bool)
    for back in (0, 1):  # a session can run past midnight into the next day, never two days on
        day = today - back
        drives, start_rel, duration = _ev_session(g, day)
        start = day * 1440 + start_rel
        end = start + duration
        running = (local >= start) & (local < end)
        if flex is not None:
            to_local = local - tick.epoch_min  # this row's UTC offset (minutes)
            a = flex.start_s[g.row] / 60.0 + to_local
            b = flex.end_s[g.row] / 60.0 + to_local
            moved = flex.defer_ev[g.row] & (flex.end_s[g.row] > 0) & (start < b) & (end > a)
            before = (local >= start) & (local < np.minimum(end, a))
            resume = np.maximum(b, start)
            rest = duration - np.clip(a - start, 0.0, None)
            running = np.where(moved, before | ((local >= resume) & (local < resume + rest)), running)
        on |= drives & running
    return g.rated_kw * on
