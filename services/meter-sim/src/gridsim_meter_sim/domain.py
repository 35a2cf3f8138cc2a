"""Pure domain functions of the meter-sim service: the physics of a reading (DESIGN §4). No I/O.

The fleet is a struct of arrays (one numpy array per attribute, one row per leaf meter, sorted by
transformer) and :func:`simulate` computes one interval for every meter at once: loops run over
appliance classes (about twenty, :mod:`loads`), never over meters. Randomness comes from :mod:`randomness`, keyed by
(seed, meter id, stream, time), so a reading does not depend on shard layout or call order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property

import numpy as np
import numpy.typing as npt

from gridsim_meter_sim import loads as load_model
from gridsim_meter_sim import randomness, shapes, solar
from gridsim_shared import climate as climates_

__all__ = [
    "NOMINAL_V",
    "Adjustment",
    "ApplianceRow",
    "DerRow",
    "Fleet",
    "FleetColumns",
    "MeterRow",
    "Readings",
    "build_fleet",
    "build_fleet_from",
    "seed_consumption_kwh",
    "seed_current_a",
    "simulate",
]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
BOOL = npt.NDArray[np.bool_]

NOMINAL_V = 240.0  # the middle of the seed's 230-250 V band
SEED_V_MIN, SEED_V_MAX = 230.0, 250.0
PF_MIN = 0.8
# Feeder voltage model (per unit of the meter's nominal voltage): end-of-line drop at full transformer
# load (5 %, the usual allocation of ANSI C84.1's Range A to the secondary), the substation regulator's
# set point above nominal, the feeder-wide swing's σ and the meters' fixed spread along the feeder.
SAG_AT_FULL_LOAD = 0.05
SET_POINT_RISE = 0.01
FEEDER_SIGMA = 0.004
METER_SPREAD = 0.01
X_OVER_R = 0.5  # reactance/resistance of LV lines and service drops: Q sags the voltage half as much as P
DEFAULT_KVA_PER_METER = 5.0  # transformers without a rating: sized for ~5 kVA per connected meter

# Random streams: one id per use, so adding a use never shifts another's numbers.
_S_PF, _S_VOLT, _S_VOLT_NOISE, _S_POSITION = 1, 2, 3, 4
_S_FEEDER = 7


@dataclass(frozen=True, slots=True)
class MeterRow:
    """One leaf meter linked to an ER, as the repository reads it."""

    meter_id: int
    meter_code: str
    er_type: str  # consumer | prosumer
    er_kind: str
    er_profile: str  # realistic | flat
    load_factor_consumption: float
    load_factor_production: float
    online: bool
    latitude: float
    longitude: float
    transformer_id: int
    transformer_code: str
    transformer_kva: float | None
    feeder_code: str
    utility_code: str


@dataclass(frozen=True, slots=True)
class DerRow:
    """One switched-on, connected DER of an ER (an appliance × quantity)."""

    er_meter_id: int  # the meter the DER's ER is linked to
    profile: str
    role: str  # consumption | production
    base_kwh_per_min: float
    power_factor: float
    quantity: int
    capacity_kw: float | None
    # A PV array's orientation (degrees; azimuth clockwise from north). None: 20° facing the equator.
    tilt_deg: float | None = None
    azimuth_deg: float | None = None
    appliance: str = ""  # catalogue name: tells a kettle from a microwave (both profile "cooking")


@dataclass(frozen=True)
class FleetColumns:
    """The fleet as the repository reads it: one array per attribute rather than an object per meter
    and per DER (a million-meter fleet is a million meters and four million DERs).

    Meters: the leaf meters in any order, locations resolved (meter, else ER, else grid node).
    Transformers: at least those the meters sit under. DERs: switched on and connected, in the order
    a loop over them would take (meter id, then DER id); a DER of a meter not in the fleet is skipped.
    """

    meter_id: I64
    meter_code: list[str]
    transformer_id: I64  # per meter
    kind: npt.NDArray[np.intp]  # per meter: position in shapes.KINDS (an unknown kind: 0)
    prosumer: BOOL
    flat: BOOL  # the ER's profile is the seed's flat formula
    online: BOOL
    k_consumption: F64
    k_production: F64
    latitude: F64
    longitude: F64
    transformer_ids: I64  # per transformer
    transformer_codes: list[tuple[str, str, str]]  # per transformer: (utility, feeder, transformer)
    transformer_kva: F64  # per transformer: NaN without a rating
    der_meter_id: I64  # per DER: the meter its ER is linked to
    der_appliance: npt.NDArray[np.intp]  # per DER: position in ``appliances``
    der_quantity: I64
    der_capacity_kw: F64  # NaN: none given
    der_tilt_deg: F64  # NaN: the default (20°)
    der_azimuth_deg: F64  # NaN: the default (facing the equator)
    appliances: list[ApplianceRow]

    @classmethod
    def of(cls, meters: Sequence[MeterRow], ders: Sequence[DerRow]) -> FleetColumns:
        """The columns of rows read one object each."""
        transformers: dict[int, tuple[tuple[str, str, str], float | None]] = {}
        for m in meters:
            codes = (m.utility_code, m.feeder_code, m.transformer_code)
            transformers.setdefault(m.transformer_id, (codes, m.transformer_kva))
        kind_of = {k: i for i, k in enumerate(shapes.KINDS)}
        appliances: dict[ApplianceRow, int] = {}
        for d in ders:
            appliances.setdefault(
                ApplianceRow(d.appliance, d.profile, d.role, d.base_kwh_per_min, d.power_factor),
                len(appliances),
            )

        def floats(values: list[float | None]) -> F64:
            return np.array([np.nan if v is None else v for v in values], dtype=np.float64)

        return cls(
            meter_id=np.array([m.meter_id for m in meters], dtype=np.int64),
            meter_code=[m.meter_code for m in meters],
            transformer_id=np.array([m.transformer_id for m in meters], dtype=np.int64),
            kind=np.array([kind_of.get(m.er_kind, 0) for m in meters], dtype=np.intp),
            prosumer=np.array([m.er_type == "prosumer" for m in meters], dtype=bool),
            flat=np.array([m.er_profile == "flat" for m in meters], dtype=bool),
            online=np.array([m.online for m in meters], dtype=bool),
            k_consumption=floats([m.load_factor_consumption for m in meters]),
            k_production=floats([m.load_factor_production for m in meters]),
            latitude=floats([m.latitude for m in meters]),
            longitude=floats([m.longitude for m in meters]),
            transformer_ids=np.array(list(transformers), dtype=np.int64),
            transformer_codes=[codes for codes, _ in transformers.values()],
            transformer_kva=floats([kva for _, kva in transformers.values()]),
            der_meter_id=np.array([d.er_meter_id for d in ders], dtype=np.int64),
            der_appliance=np.array(
                [
                    appliances[
                        ApplianceRow(d.appliance, d.profile, d.role, d.base_kwh_per_min, d.power_factor)
                    ]
                    for d in ders
                ],
                dtype=np.intp,
            ),
            der_quantity=np.array([d.quantity for d in ders], dtype=np.int64),
            der_capacity_kw=floats([d.capacity_kw for d in ders]),
            der_tilt_deg=floats([d.tilt_deg for d in ders]),
            der_azimuth_deg=floats([d.azimuth_deg for d in ders]),
            appliances=list(appliances),
        )


@dataclass(frozen=True, slots=True)
class ApplianceRow:
    """A catalogue appliance as the fleet needs it."""

    name: str  # tells a kettle from a microwave (both profile "cooking")
    profile: str
    role: str  # consumption | production
    base_kwh_per_min: float
    power_factor: float


@dataclass(frozen=True)
class PvPlant:
    """Every PV array of the fleet, and the distinct *sites* whose output per kWp is computed each tick.

    The chain from sun to AC is linear in the array's size (PVWatts sizes the inverter with the array),
    so arrays in the same cloud cell and climate with the same tilt and azimuth share one computation:
    a tick costs one chain per site (tens in a city) plus a gather over the arrays. A site's sun is
    that of its cloud cell's centre (≤ 0.125° away: under 30 s of solar time), which keeps it the same
    whichever shard the arrays are on.
    """

    row: npt.NDArray[np.intp]  # per array: the fleet row (meter) it feeds (realistic prosumers only)
    kwp: F64  # per array: DC nameplate (kWp)
    site_of: npt.NDArray[np.intp]  # per array: its site
    sites: solar.PvArrays  # per site: tilt, azimuth (kwp 1; row = cloud cell position)
    site_climate: npt.NDArray[np.intp]  # per site: position in Fleet.climates
    site_latitude: F64  # per site: its cloud cell's centre
    site_longitude: F64


def _pv_plant(
    row: npt.NDArray[np.intp],
    kwp: F64,
    *,
    tilt: F64,
    azimuth: F64,
    cell_of: npt.NDArray[np.intp],
    climate_of: npt.NDArray[np.intp],
    cells: npt.NDArray[np.uint64],
) -> PvPlant:
    """Group arrays (fleet ``row``, kWp, tilt°, azimuth°) into sites of one cell, climate and orientation."""
    keys = np.stack([cell_of[row], climate_of[row], np.round(tilt * 100), np.round(azimuth * 100)], axis=1)
    sites, first, site_of = np.unique(
        keys.reshape(len(row), 4), axis=0, return_index=True, return_inverse=True
    )
    site_cell = sites[:, 0].astype(np.intp)
    latitude, longitude = solar.cell_centre(cells[site_cell])
    return PvPlant(
        row=row,
        kwp=kwp,
        site_of=site_of.reshape(-1).astype(np.intp),
        sites=solar.PvArrays.build(site_cell, np.ones(len(sites)), tilt[first], azimuth[first]),
        site_climate=sites[:, 1].astype(np.intp),
        site_latitude=latitude,
        site_longitude=longitude,
    )


@dataclass(frozen=True)
class Fleet:
    """Every simulated meter as arrays, rows sorted by transformer then meter id."""

    meter_id: I64
    meter_code: list[str]
    key: npt.NDArray[np.uint64]
    transformer: npt.NDArray[np.intp]  # row → transformer position
    kind: npt.NDArray[np.intp]
    flat: BOOL
    prosumer: BOOL
    online: BOOL
    k_consumption: F64
    k_production: F64
    latitude: F64
    longitude: F64
    seed_base_kwh_per_min: F64  # Σ appliance base kWh/min × quantity (the seed's base_kWh)
    solar_kw: F64  # rated PV power per meter (kWp DC, all its arrays)
    pv: PvPlant  # every PV array and the distinct sites they share the sky of
    climates: list[climates_.Climate]  # the built-in climates this fleet's meters are in
    climate_of: npt.NDArray[np.intp]  # row → position in ``climates`` (nearest built-in)
    loads: load_model.Loads  # appliances, thermal loads, EVs and the demand-response hook (loads.Flex)
    cloud_cells: npt.NDArray[np.uint64]
    cloud_cell_of: npt.NDArray[np.intp]
    voltage_offset: F64  # where the meter sits on its feeder: its no-load voltage deviation (per unit)
    nominal_v: F64  # the meter's nominal service voltage (its climate's supply)
    feeder: npt.NDArray[np.intp]  # row → feeder position
    feeder_key: npt.NDArray[np.uint64]  # one random key per feeder (its shared voltage swing)
    line_position: F64  # share of the end-of-line drop this meter sees, in [0.3, 1]
    # Per transformer (in order of first appearance): codes, capacity, and the row slice [start, stop).
    transformer_codes: list[tuple[str, str, str]]  # (utility, feeder, transformer)
    transformer_kva: F64
    transformer_bounds: I64  # len = transformers + 1
    seed: int
    sky: solar.CloudSky = field(repr=False)

    def __len__(self) -> int:
        return len(self.meter_id)

    # Every meter's keys hashed with the streams drawn every tick, once per fleet (half of each draw's
    # hashing; randomness.stream_keys).
    @cached_property
    def pf_keys(self) -> npt.NDArray[np.uint64]:
        return randomness.stream_keys(self.key, _S_PF)

    @cached_property
    def producers(self) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
        """Rows of prosumers, and of those the flat (seed formula) ones."""
        rows = np.flatnonzero(self.prosumer)
        return rows, rows[self.flat[rows]]

    @cached_property
    def no_production(self) -> F64:
        """Production before the sun: 0 for prosumers, NaN (null) for consumers (read-only)."""
        out = np.where(self.prosumer, 0.0, np.nan)
        out.setflags(write=False)
        return out

    @cached_property
    def reporting(self) -> BOOL:
        """Rows that send a reading: online, and K ≠ 0 on a side they have (read-only)."""
        out: BOOL = self.online & ~((self.k_consumption == 0) & ((self.k_production == 0) | ~self.prosumer))
        out.setflags(write=False)
        return out

    @cached_property
    def all_reporting(self) -> bool:
        return bool(self.reporting.all())

    @cached_property
    def voltage_noise_keys(self) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]]:
        return randomness.normal_streams(self.key, _S_VOLT_NOISE)


@dataclass(frozen=True)
class Readings:
    """One interval for the whole fleet. Rows where ``active`` is False send nothing (K = 0, offline).

    Production columns are NaN for consumers (null on the wire).
    """

    timestamp: datetime
    interval_s: int
    active: BOOL
    consumption_kwh: F64
    production_kwh: F64
    consumption_kvah: F64
    production_kvah: F64
    reactive_kvar: F64
    power_factor: F64
    voltage: F64
    current: F64

    @property
    def count(self) -> int:
        """How many meters report in this interval."""
        return int(self.active.sum())


@dataclass(frozen=True)
class Adjustment:
    """What the operator's controls do to one interval, per fleet row (see controls.py, docs/controls.md).

    ``energy = simulated × factor + add``, for consumption and production separately (production stays
    NaN for consumers). Built by :func:`gridsim_meter_sim.controls.SpikePlan.adjustment`.
    """

    consumption_factor: F64
    consumption_add_kwh: F64
    production_factor: F64
    production_add_kwh: F64


def seed_consumption_kwh(base_kwh_per_min: float, k: float) -> float:
    """The seed's formula: ``energy_kWh = base_kWh * K`` (per minute). The ``flat`` profile reproduces it."""
    return base_kwh_per_min * k


def seed_current_a(kwh: float, voltage: float) -> float:
    """The seed's current formula ``kWh·1000 / (V·60)``, kept only to document why it is not used.

    It divides a minute's energy by 60 as if the minute were an hour's 60th twice over: the result is
    3,600 times too small. gridsim uses I = S / V (see docs/physics.md).
    """
    return kwh * 1000.0 / (voltage * 60.0)


def _stable_id(text: str) -> int:
    # Not Python's hash(): that is salted per process, and the key must be the same on every shard.
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big") >> 1


def build_fleet(seed: int, meters: Sequence[MeterRow], ders: Sequence[DerRow]) -> Fleet:
    """Arrays for ``meters`` (any order) and their DERs; rows are sorted by transformer, then meter id."""
    return build_fleet_from(seed, FleetColumns.of(meters, ders))


def build_fleet_from(seed: int, columns: FleetColumns) -> Fleet:
    """The fleet of ``columns``; rows are sorted by transformer, then meter id."""
    c = columns
    order = np.lexsort((c.meter_id, c.transformer_id))
    in_order = bool((order == np.arange(len(order))).all())  # as the repository reads them
    n = len(order)
    meter_id = c.meter_id[order]
    key = randomness.meter_keys(seed, meter_id)

    # Transformers in order of first appearance (the rows are sorted by transformer id).
    ids, transformer = np.unique(c.transformer_id[order], return_inverse=True)
    transformer = transformer.reshape(-1).astype(np.intp)
    by_id = np.argsort(c.transformer_ids, kind="stable")
    position = by_id[np.searchsorted(c.transformer_ids, ids, sorter=by_id)] if n else by_id[:0]
    transformer_codes = [c.transformer_codes[int(p)] for p in position]
    # Feeders by their codes, hashed to a stable id (the same on every shard and after every reload).
    feeder_names = np.array([f"{u}/{f}" for u, f, _ in transformer_codes], dtype=object)
    feeder_codes, feeder_of_transformer = np.unique(feeder_names, return_inverse=True)
    feeder_of = feeder_of_transformer.reshape(-1).astype(np.intp)[transformer]
    feeder_ids = np.array([_stable_id(str(code)) for code in feeder_codes], dtype=np.int64)
    counts = np.bincount(transformer, minlength=len(ids)).astype(np.int64)
    bounds = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    rated_kva = c.transformer_kva[position]
    kva = np.where(np.isnan(rated_kva), np.maximum(25.0, DEFAULT_KVA_PER_METER * counts), rated_kva)

    latitude = c.latitude[order]
    longitude = c.longitude[order]
    flat = c.flat[order]
    prosumer = c.prosumer[order]
    kind = c.kind[order]

    # Each DER's fleet row (DERs of meters outside the fleet are skipped), in the DERs' order.
    by_meter = np.argsort(meter_id, kind="stable")
    at = np.minimum(np.searchsorted(meter_id, c.der_meter_id, sorter=by_meter), max(n - 1, 0))
    found = (meter_id[by_meter[at]] == c.der_meter_id) if n else np.zeros(len(c.der_meter_id), bool)
    der_row = by_meter[at[found]].astype(np.intp)
    appliance = c.der_appliance[found]
    quantity = c.der_quantity[found]
    base = np.array([a.base_kwh_per_min for a in c.appliances], dtype=np.float64)[appliance]
    production = np.array([a.role == "production" for a in c.appliances], dtype=bool)[appliance]

    # Production: rated PV power per meter; arrays of realistic prosumers go to the PV plant.
    capacity = c.der_capacity_kw[found]
    rated = np.where(np.isnan(capacity), base * 60.0, capacity)
    solar_kw = _per_row(der_row[production], (rated * quantity)[production], n)
    pv = production & prosumer[der_row] & ~flat[der_row]
    tilt = c.der_tilt_deg[found]
    azimuth = c.der_azimuth_deg[found]
    pv_row = der_row[pv]
    pv_tilt = np.where(np.isnan(tilt[pv]), solar.DEFAULT_TILT_DEG, tilt[pv])
    equator = np.where(latitude[pv_row] >= 0, 180.0, 0.0)  # solar.default_azimuth_deg, per array
    pv_azimuth = np.where(np.isnan(azimuth[pv]), equator, azimuth[pv])
    # Consumption: the seed's base kWh per meter, and the loads model's DERs.
    consumption = ~production
    seed_base = _per_row(der_row[consumption], (base * quantity)[consumption], n)
    consumers = load_model.Ders(
        row=der_row[consumption],
        appliance=appliance[consumption],
        quantity=quantity[consumption],
        appliances=[(a.name, a.profile, a.base_kwh_per_min * 60.0, a.power_factor) for a in c.appliances],
    )

    nearest = climates_.nearest_climate_index(latitude, longitude)
    used, climate_of = np.unique(nearest, return_inverse=True)
    climates = [climates_.CLIMATE_LIST[int(i)] for i in used]
    all_cells = solar.cloud_cells(latitude, longitude)
    cells, first, cell_of = np.unique(all_cells, return_index=True, return_inverse=True)
    cell_of = cell_of.astype(np.intp)
    pv_plant = _pv_plant(
        pv_row,
        (rated * quantity)[pv],
        tilt=pv_tilt,
        azimuth=pv_azimuth,
        cell_of=cell_of,
        climate_of=climate_of.astype(np.intp),
        cells=cells,
    )
    return Fleet(
        meter_id=meter_id,
        meter_code=c.meter_code if in_order else [c.meter_code[int(i)] for i in order],
        key=key,
        transformer=transformer,
        kind=kind,
        flat=flat,
        prosumer=prosumer,
        online=c.online[order],
        k_consumption=load_model.compact(c.k_consumption[order]),
        k_production=c.k_production[order],
        latitude=latitude,
        longitude=longitude,
        seed_base_kwh_per_min=seed_base,
        solar_kw=solar_kw,
        pv=pv_plant,
        climates=climates,
        climate_of=climate_of.astype(np.intp),
        loads=load_model.build(
            seed,
            keys=key,
            kind=kind,
            climates=climates,
            climate_of=climate_of.astype(np.intp),
            modelled=~flat,
            ders=consumers,
        ),
        cloud_cells=cells,
        cloud_cell_of=cell_of,
        voltage_offset=(randomness.uniform(key, _S_VOLT, 0) - 0.5) * 2.0 * METER_SPREAD,
        nominal_v=load_model.compact(
            np.array([climate.nominal_v for climate in climates], dtype=np.float64)[climate_of]
        ),
        feeder=feeder_of,
        feeder_key=randomness.meter_keys(seed, feeder_ids),
        line_position=0.3 + 0.7 * randomness.uniform(key, _S_POSITION, 0),
        transformer_codes=transformer_codes,
        transformer_kva=kva,
        transformer_bounds=bounds,
        seed=seed,
        sky=solar.CloudSky(seed, cells, longitude[first], climates, climate_of[first].astype(np.intp)),
    )


def _per_row(rows: npt.NDArray[np.intp], values: F64, n: int) -> F64:
    """``values`` summed per fleet row, in their order (as a loop adding them one by one would)."""
    return np.asarray(np.bincount(rows, weights=values, minlength=n), dtype=np.float64)


def _consumption_kwh_per_min(fleet: Fleet, when: datetime) -> tuple[F64, F64]:
    """Active and reactive energy per minute (kWh, kVARh) of every meter's loads at ``when``."""
    p_kw, q_kvar = load_model.power(fleet.loads, int(when.timestamp()))
    return p_kw / 60.0, q_kvar / 60.0


def _production_kwh(fleet: Fleet, when: datetime, interval_s: int) -> F64:
    """Solar energy over the interval (kWh); NaN for consumers. Evaluated at the interval's midpoint.

    Realistic: each array's AC output through the whole PV chain (``solar.ac_power_kw``) under its cell's
    clouds and its climate's air temperature and atmosphere, summed per meter. Flat: the seed's formula,
    base kWh per minute × a time-of-day multiplier in [0, 1] (the clear-sky sun, Haurwitz), no clouds.
    """
    rows, flat_rows = fleet.producers
    out = fleet.no_production.copy()
    if not len(rows):
        return out
    mid_s = when.timestamp() + interval_s / 2.0
    hours = interval_s / 3600.0
    if len(flat_rows):
        sun = solar.sun_position(mid_s, fleet.latitude[flat_rows], fleet.longitude[flat_rows])
        multiplier = np.clip(solar.haurwitz_ghi(sun.cos_zenith) / 1000.0, 0.0, 1.0)
        out[flat_rows] = fleet.solar_kw[flat_rows] / 60.0 * multiplier * (interval_s / 60.0)
    plant = fleet.pv
    if len(plant.row):
        per_kwp = _site_ac_kw_per_kwp(fleet, mid_s)
        out += np.bincount(
            plant.row, weights=plant.kwp * per_kwp[plant.site_of] * hours, minlength=len(fleet)
        )
    out *= fleet.k_production  # (consumers' NaN stays NaN)
    return out


def _site_ac_kw_per_kwp(fleet: Fleet, mid_s: float) -> F64:
    """AC power per kWp of every PV site at instant ``mid_s`` (UTC epoch seconds)."""
    plant = fleet.pv
    month = int(np.datetime64(int(mid_s), "s").astype("datetime64[M]").astype(np.int64) % 12)
    epoch = np.array([int(mid_s)], dtype=np.int64)
    air = np.array([climates_.outdoor_temperature_c(c, epoch, fleet.seed)[0] for c in fleet.climates])
    linke = np.array([c.linke_turbidity[month] for c in fleet.climates])
    altitude = np.array([c.altitude_m for c in fleet.climates])
    climate = plant.site_climate
    sun = solar.sun_position(mid_s, plant.site_latitude, plant.site_longitude)
    kc = fleet.sky.index(int(mid_s), plant.sites.row)
    return solar.ac_power_kw(
        sun, plant.sites, kc, air[climate], linke=linke[climate], altitude_m=altitude[climate]
    )


def simulate(fleet: Fleet, when: datetime, interval_s: int, adjust: Adjustment | None = None) -> Readings:
    """Every meter's reading for the interval starting at ``when`` (UTC, aware), after ``adjust`` (spikes)."""
    n = len(fleet)
    tick = np.uint64(int(when.timestamp()) // interval_s)
    minutes = interval_s / 60.0
    hours = interval_s / 3600.0
    active = fleet.reporting

    # Flat (the seed's formula) or realistic per row; most fleets are all one or the other, and then only
    # that side is computed (np.where of both would give the same numbers at twice the work).
    pick = _Pick(fleet.flat)
    p_min, q_min = _consumption_kwh_per_min(fleet, when)
    consumption = pick(
        lambda: fleet.seed_base_kwh_per_min * fleet.k_consumption * minutes,
        lambda: p_min * fleet.k_consumption * minutes,
    )
    production = _production_kwh(fleet, when, interval_s)
    if adjust is not None:
        consumption = consumption * adjust.consumption_factor + adjust.consumption_add_kwh
        production = production * adjust.production_factor + adjust.production_add_kwh
    produced = np.nan_to_num(production)

    # Power factor: the seed's uniform [0.8, 1] for flat ERs; for realistic ones the appliance mix
    # (Σ P and Σ Q of what is running) with a little jitter, kept in the seed's [0.8, 1] band.
    u_pf = randomness.uniform_from(fleet.pf_keys, tick)
    apparent_min = np.sqrt(p_min * p_min + q_min * q_min)
    mix = np.divide(p_min, apparent_min, out=np.ones(n), where=apparent_min > 0)
    pf = pick(lambda: PF_MIN + (1.0 - PF_MIN) * u_pf, lambda: np.clip(mix + 0.04 * (u_pf - 0.5), PF_MIN, 1.0))

    # kVAh and kVAR. Flat ERs: the seed's single power factor on both sides. Realistic: the loads draw
    # at their mix's power factor, PV inverters run at unity (IEEE 1547's default mode): production
    # kVAh = kWh and the reactive energy is the loads' alone.
    consumption_kvah = consumption / pf
    production_kvah = pick(lambda: production / pf, lambda: production)

    def seed_kvar() -> F64:
        throughput_kwh = consumption + produced
        throughput_kvah = consumption_kvah + np.nan_to_num(production_kvah)
        return np.sqrt(np.maximum(throughput_kvah * throughput_kvah - throughput_kwh * throughput_kwh, 0.0))

    def load_kvar() -> F64:  # (in place on one temporary: the same operations)
        kvar = consumption_kvah * consumption_kvah
        kvar -= consumption * consumption
        np.maximum(kvar, 0.0, out=kvar)
        return np.sqrt(kvar, out=kvar)

    kvar = pick(seed_kvar, load_kvar)

    # Through the service cable: net active power (import − export) and the loads' reactive power.
    p_net = (consumption - produced) / hours
    q = pick(lambda: (consumption - produced) * np.sqrt(1.0 / (pf * pf) - 1.0), lambda: kvar) / hours
    apparent_kva = np.hypot(p_net, q)
    # (× active is × 1.0 when every row reports: the same numbers)
    voltage = _voltage(
        fleet, *((p_net, q) if fleet.all_reporting else (p_net * active, q * active)), tick, pick
    )
    current = apparent_kva * 1000.0 / voltage
    return Readings(
        timestamp=when,
        interval_s=interval_s,
        active=active,
        consumption_kwh=consumption,
        production_kwh=production,
        consumption_kvah=consumption_kvah,
        production_kvah=production_kvah,
        reactive_kvar=kvar,
        power_factor=pf,
        voltage=voltage,
        current=current,
    )


class _Pick:
    """``np.where(flat, flat_side(), realistic_side())`` computing only the side(s) some row needs."""

    def __init__(self, flat: BOOL) -> None:
        self.flat = flat
        self.any_flat = bool(flat.any())
        self.all_flat = self.any_flat and bool(flat.all())

    def __call__(self, flat_side: Callable[[], F64], realistic_side: Callable[[], F64]) -> F64:
        if not self.any_flat:
            return realistic_side()
        if self.all_flat:
            return flat_side()
        out: F64 = np.where(self.flat, flat_side(), realistic_side())
        return out


def _voltage(fleet: Fleet, p_kw: F64, q_kvar: F64, tick: np.uint64, pick: _Pick | None = None) -> F64:
    """Service voltage: the seed's uniform 230-250 V for flat ERs; otherwise a feeder model.

    Realistic, for a meter on nominal V_n (its climate's supply: 240 V US split-phase, 230 V IEC):
    the substation holds its bus at V_n + 1 % (the regulator's set point covers the drop down the
    line), ± a slow feeder-wide swing (tap steps and upstream load, σ 0.4 % bounded at ±2σ by the
    regulator's bandwidth, new every 15 minutes and interpolated), ± the meter's fixed place on its
    feeder (±1 %), minus a drop proportional to its
    transformer's loading (R·P + X·Q with X/R = 0.5; PV export lifts) and how far down the line it is:
    a transformer at full load pulls its last customer 5 % down. Plus a little noise.
    """
    if not len(fleet):
        return np.zeros(0)

    def realistic() -> F64:
        drop_kva = p_kw + X_OVER_R * q_kvar
        load_kva = np.bincount(fleet.transformer, weights=drop_kva, minlength=len(fleet.transformer_kva))
        loading = load_kva / fleet.transformer_kva
        noise = randomness.normal_from(fleet.voltage_noise_keys, tick)
        # Per feeder and per transformer first, then per meter (the same operations in the same order).
        v = fleet.nominal_v * (
            (1.0 + SET_POINT_RISE + _feeder_swing(fleet, tick))[fleet.feeder]
            + fleet.voltage_offset
            - (SAG_AT_FULL_LOAD * loading)[fleet.transformer] * fleet.line_position
            + 0.0012 * noise
        )
        return np.maximum(v, 1.0)

    def seed_band() -> F64:
        return SEED_V_MIN + (SEED_V_MAX - SEED_V_MIN) * randomness.uniform(fleet.key, _S_VOLT_NOISE + 1, tick)

    return (pick or _Pick(fleet.flat))(seed_band, realistic)


_FEEDER_BLOCK_TICKS = 15  # the feeder swing is drawn every 15 intervals and interpolated between


def _feeder_swing(fleet: Fleet, tick: np.uint64) -> F64:
    """Each feeder's voltage deviation (per unit), shared by every meter under it."""
    block, into = divmod(int(tick), _FEEDER_BLOCK_TICKS)
    w = into / _FEEDER_BLOCK_TICKS
    now = randomness.normal(fleet.feeder_key, _S_FEEDER, np.uint64(block))
    after = randomness.normal(fleet.feeder_key, _S_FEEDER, np.uint64(block + 1))
    # The substation regulator's bandwidth bounds the swing: at most ±2σ.
    swing: F64 = FEEDER_SIGMA * np.clip((1.0 - w) * now + w * after, -2.0, 2.0)
    return swing
