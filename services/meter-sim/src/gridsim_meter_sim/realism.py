"""The realism report: simulate a world in-process (no broker, no database) and compare it with references.

``gridsim realism`` runs :func:`write_report`: the demo world (or a world file), seed 42, a summer and a
winter week (from Monday 16 June and Monday 15 December 2025, local time), loads minute by minute
(:func:`gridsim_meter_sim.loads.power` over a whole day at once), PV, voltage and reactive power from
:func:`gridsim_meter_sim.domain.simulate` every 15 minutes. Each figure is printed beside the published
range it is held to, with the source named; ``docs/realism.md`` explains the models and references, and
``tests/test_realism.py`` holds the demo world inside the ranges.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from gridsim_meter_sim import domain, loads
from gridsim_meter_sim.domain import DerRow, MeterRow
from gridsim_meter_sim.world import WorldFile, default_world_path, read_world

__all__ = [
    "SEASONS",
    "Figure",
    "Season",
    "catalogue",
    "load_figures",
    "season_run",
    "world_fleet",
    "write_report",
]

F64 = npt.NDArray[np.float64]

SEASONS = {"summer": (2025, 6, 16), "winter": (2025, 12, 15)}  # Mondays: a week from each


@dataclass(frozen=True, slots=True)
class CatalogueEntry:
    """An appliance of the catalogue (migrations 0001 and 0100 are the one source)."""

    name: str
    aliases: tuple[str, ...]
    base_kwh_per_min: float
    role: str
    profile: str
    power_factor: float


_ROW = re.compile(
    r"\(\s*\d+,\s*'(?P<name>[^']+)',\s*'\{(?P<aliases>[^}]*)\}',\s*[\d.]+,\s*(?P<base>[\d.]+),\s*"
    r"'(?P<role>\w+)',\s*'(?P<profile>\w+)',\s*(?P<pf>[\d.]+)"
)


def catalogue() -> dict[str, CatalogueEntry]:
    """The appliance catalogue by lower-case name and alias, read from the migrations that create it."""
    migrations = resources.files("gridsim_shared").joinpath("migrations")
    text = "".join(
        migrations.joinpath(name).read_text() for name in ("0001_core.sql", "0100_meter_sim_appliances.sql")
    )
    out: dict[str, CatalogueEntry] = {}
    for m in _ROW.finditer(text):
        aliases = tuple(a.strip('"') for a in m["aliases"].split(",") if a)
        entry = CatalogueEntry(m["name"], aliases, float(m["base"]), m["role"], m["profile"], float(m["pf"]))
        for key in (entry.name, *aliases):
            out[key.lower()] = entry
    return out


@dataclass(frozen=True)
class WorldFleet:
    """A world's fleet and, per fleet row, what the report groups by."""

    fleet: domain.Fleet
    kind: list[str]
    timezone: str


def world_fleet(world: WorldFile, seed: int) -> WorldFleet:
    """The fleet meter-sim would simulate for ``world`` (leaf meters with an ER, K = 1), without a database."""
    entries = catalogue()
    transformers = {node.code: i for i, node in enumerate(world.grid) if node.level == "transformer"}
    parents = {str(m.parent_id) for m in world.meters if m.parent_id}
    by_code = {str(m.meter_id): m for m in world.meters}
    meters: list[MeterRow] = []
    ders: list[DerRow] = []
    for i, m in enumerate(world.meters, start=1):
        er = m.er
        if er is None or str(m.meter_id) in parents:
            continue
        owner = m if m.transformer_id else by_code.get(str(m.parent_id), m)
        transformer = str(owner.transformer_id or "")
        t = transformers.get(transformer, 0)
        lat = m.latitude if m.latitude is not None else (er.latitude or 0.0)
        lon = m.longitude if m.longitude is not None else (er.longitude or 0.0)
        k_prod = m.link_load_factor_production
        meters.append(
            MeterRow(i, m.meter_id, er.type, er.kind, er.profile,
                     m.link_load_factor_consumption if m.link_load_factor_consumption is not None else 1.0,
                     k_prod if k_prod is not None else (1.0 if er.type == "prosumer" else 0.0),
                     True, lat, lon, t, transformer, None, "", "")
        )  # fmt: skip
        counts: dict[str, int] = {}
        for name in er.appliance_type:
            counts[name] = counts.get(name, 0) + 1
        for a in er.appliances:
            counts[a.name] = counts.get(a.name, 0) + a.count * a.switched_on
        for name, count in counts.items():
            c = entries[name.lower()]
            if count:
                ders.append(
                    DerRow(
                        i,
                        c.profile,
                        c.role,
                        c.base_kwh_per_min,
                        c.power_factor,
                        count,
                        None,
                        appliance=c.name,
                    )
                )
    fleet = domain.build_fleet(seed, meters, ders)
    by_id = {m.meter_id: m.er_kind for m in meters}
    timezone = fleet.loads.climates[0].timezone if fleet.loads.climates else "UTC"
    return WorldFleet(fleet, [by_id[int(i)] for i in fleet.meter_id], timezone)


@dataclass(frozen=True)
class Season:
    """One simulated stretch: minute power per row (kW), per class of interest, and 15-min readings."""

    name: str
    start: datetime  # local midnight of the first day
    days: int
    minutes: npt.NDArray[np.int64]  # epoch seconds of each minute
    kw: F64  # (minutes, rows)
    by_class: dict[str, F64]  # class → (minutes, rows)
    pv_kwh: F64  # (intervals, rows) energy produced per 15 min (NaN for consumers)
    voltage: F64  # (intervals, rows)
    kvar_pv: F64  # (intervals,) reactive energy PV adds to exporting prosumers' readings (kVARh)


_CLASSES_REPORTED = ("ev", "kettle", "microwave", "fridge", "water_heater", "always_on")


def season_run(w: WorldFleet, name: str, days: int = 7, first_day: int = 0, *, supply: bool = True) -> Season:
    """Simulate ``days`` days of a season (from its Monday + ``first_day``), loads minute by minute;
    with ``supply``, also the 15-minute readings (PV, voltage, reactive power) of :func:`domain.simulate`."""
    y, m, d = SEASONS[name]
    start = datetime(y, m, d, tzinfo=ZoneInfo(w.timezone)) + timedelta(days=first_day)
    t0 = int(start.timestamp())
    minutes = t0 + 60 * np.arange(days * 1440, dtype=np.int64)
    kw = np.empty((len(minutes), len(w.fleet)))
    by_class = {c: np.empty_like(kw) for c in _CLASSES_REPORTED}
    for day in range(days):  # a day at a time: (1440, instances) arrays stay small
        part = slice(day * 1440, (day + 1) * 1440)
        kw[part] = loads.power(w.fleet.loads, minutes[part])[0]
        for c in _CLASSES_REPORTED:
            by_class[c][part] = loads.power(w.fleet.loads, minutes[part], only=c)[0]
    pv, volts, kvar = [], [], []
    for k in range(days * 96 if supply else 0):
        r = domain.simulate(w.fleet, datetime.fromtimestamp(t0 + 900 * k, UTC), 900)
        pv.append(r.production_kwh)
        volts.append(r.voltage)
        # What PV adds to the reactive energy: the reading's kVARh beyond its loads' (P·tan φ at their pf).
        exporting = (np.nan_to_num(r.production_kwh) > r.consumption_kwh) & w.fleet.prosumer & ~w.fleet.flat
        loads_kvarh = r.consumption_kwh * np.sqrt(
            np.maximum(1.0 / (r.power_factor * r.power_factor) - 1.0, 0.0)
        )
        kvar.append(float(np.abs(r.reactive_kvar - loads_kvarh)[exporting].sum()))
    shape = (len(pv), len(w.fleet))
    return Season(
        name,
        start,
        days,
        minutes,
        kw,
        by_class,
        np.array(pv).reshape(shape),
        np.array(volts).reshape(shape),
        np.array(kvar),
    )


@dataclass(frozen=True, slots=True)
class Figure:
    """One figure of the report beside its reference range."""

    what: str
    value: float
    low: float
    high: float
    unit: str
    source: str

    @property
    def ok(self) -> bool:
        return self.low <= self.value <= self.high


def _hourly(series: F64) -> F64:
    hourly: F64 = series.reshape(-1, 60).mean(axis=1)
    return hourly


def _weekday_minutes(s: Season) -> npt.NDArray[np.bool_]:
    day = np.arange(len(s.minutes)) // 1440
    return np.array([(s.start + timedelta(days=int(d))).weekday() < 5 for d in day])


def _rows(w: WorldFleet, *kinds: str) -> npt.NDArray[np.intp]:
    return np.flatnonzero(np.isin(np.array(w.kind), kinds))


def _per_unit_kwh_per_day(s: Season, w: WorldFleet, cls: str) -> float:
    units = _home_units(w, cls)
    homes = _rows(w, "home")
    energy = float(s.by_class[cls][:, homes].sum()) / 60.0
    return energy / max(units, 1) / s.days


def load_figures(w: WorldFleet, summer: Season, winter: Season) -> list[Figure]:
    """The report's load figures (shared by the CLI and the tests)."""
    homes = _rows(w, "home")
    offices = _rows(w, "office")
    figures: list[Figure] = []
    elcap = "ELCAP (Pratt et al. 1993, PNL-8380), aggregate residential weekday load shapes"
    for s, ref_ratio in ((summer, 2.2), (winter, 2.7)):
        agg = s.kw[:, homes].sum(axis=1)
        weekday = _hourly(agg[_weekday_minutes(s)])
        figures += [
            Figure(f"homes, weekday hourly peak/min ({s.name}; ELCAP {ref_ratio})", weekday.max() / weekday.min(),
                   1.5, 3.5, "", elcap),
            Figure(f"homes, weekday load factor ({s.name})", weekday.mean() / weekday.max(), 0.5, 0.85, "", elcap),
            Figure(f"homes, weekday peak hour ({s.name}, local)",
                   float(np.argmax(weekday.reshape(-1, 24).mean(axis=0))), 17, 21, "h",
                   "ELCAP; CAISO residential load shapes: evening peak"),
            Figure(f"homes, daily energy per home ({s.name})", agg.sum() / 60.0 / len(homes) / s.days, 8.0, 20.0,
                   "kWh", "EIA RECS 2020, Pacific division / PG&E residential average 15-18 kWh/day"),
        ]  # fmt: skip
        quarter = agg.reshape(-1, 15).mean(axis=1)
        peaks = s.kw[:, homes].reshape(-1, 15, len(homes)).mean(axis=1).max(axis=0)
        figures += [
            Figure(f"homes, coincident 15-min peak per home ({s.name})", quarter.max() / len(homes), 0.8, 2.0,
                   "kW", "distribution design practice: 1-2 kW/home after diversity (Kersting, Distribution "
                   "System Modeling and Analysis, ch. 2; Gönen)"),
            Figure(f"homes, diversity factor ({s.name})", peaks.sum() / quarter.max(), 2.0, 8.0, "",
                   "Kersting ch. 2: diversity factors of 100+ residential customers 2-5+"),
        ]  # fmt: skip
    week_min = np.concatenate([summer.kw[:, homes], winter.kw[:, homes]]).min(axis=0)
    figures.append(
        Figure("homes, median always-on load (1-min minimum)", float(np.median(week_min)) * 1000, 100, 300, "W",
               "ELCAP baseload; Delforge et al. 2015 (NRDC, 70,000 California homes): median ~164 W")
    )  # fmt: skip
    figures.append(
        Figure("homes, summer/winter daily energy", summer.kw[:, homes].sum() / winter.kw[:, homes].sum()
               * winter.days / summer.days, 0.7, 1.1, "", "PG&E San Francisco residential monthly usage: "
               "winter slightly above summer (mild climate, little AC)")
    )  # fmt: skip
    for s in (summer, winter):
        figures += [
            Figure(f"EV, energy per EV per day ({s.name})", _per_unit_kwh_per_day(s, w, "ev"), 6.0, 12.0, "kWh",
                   "INL EV Project / NREL: 8-12 kWh/day home charging (~30 mi/day at 0.3 kWh/mi)"),
            Figure(f"kettle, energy per kettle per day ({s.name})", _per_unit_kwh_per_day(s, w, "kettle"), 0.25,
                   0.6, "kWh", "CREST (Richardson et al. 2010); EST 'Powering the Nation' 2012: ~0.4 kWh/day"),
            Figure(f"microwave, energy per day ({s.name})", _per_unit_kwh_per_day(s, w, "microwave"), 0.15, 0.45,
                   "kWh", "CREST; EST 'Powering the Nation' 2012: ~0.3 kWh/day"),
            Figure(f"refrigerator, energy per day ({s.name})", _per_unit_kwh_per_day(s, w, "fridge"), 0.8, 2.2,
                   "kWh", "US DOE / ENERGY STAR: 1-2 kWh/day"),
            Figure(f"water heater, energy per day ({s.name})", _per_unit_kwh_per_day(s, w, "water_heater"), 5.0,
                   14.0, "kWh", "NREL Building America: ~64 L/person/day at 50 °C, 8-12 kWh/day a household"),
        ]  # fmt: skip
    ev_sessions = _ev_sessions_per_day(summer, w)
    figures.append(
        Figure("EV, charging sessions per EV per day (summer)", ev_sessions, 0.5, 1.2, "",
               "INL EV Project: ~1 home session a driving day")
    )  # fmt: skip
    june = summer.kw[:, offices].sum() / summer.days
    december = winter.kw[:, offices].sum() / winter.days
    figures.append(
        Figure("offices, June/December daily energy (San Francisco)", june / december, 0.7, 1.4, "",
               "CBECS 2018 / CEUS: mild-climate offices, internal gains dominate")
    )  # fmt: skip
    week = winter.days >= 7  # the weekday/Sunday figures need a whole week
    for kind, low, high, ref in (
        ("office", 2.0, 8.0, "BDEW G1 (offices): Sunday ≈ 0.25-0.4 of a weekday"),
        ("shop", 1.1, 3.0, "BDEW G0 (general commerce): Sunday short or closed"),
    )[: 2 if week else 0]:
        rows = _rows(w, kind)
        daily = winter.kw[:, rows].sum(axis=1).reshape(-1, 1440).sum(axis=1)
        figures.append(Figure(f"{kind}s, weekday/Sunday daily energy (winter)", daily[:5].mean() / daily[6],
                              low, high, "", ref))  # fmt: skip
    return figures


def _ev_sessions_per_day(s: Season, w: WorldFleet) -> float:
    on = s.by_class["ev"][:, _rows(w, "home")] > 0
    starts = (on[1:] & ~on[:-1]).sum()
    return float(starts) / max(_home_units(w, "ev"), 1) / s.days


def _home_units(w: WorldFleet, cls: str) -> int:
    """How many instances of an appliance class the homes have."""
    return sum(int((~g.business).sum()) for g in w.fleet.loads.groups if g.cls.name == cls)


def supply_figures(w: WorldFleet, summer: Season, winter: Season) -> list[Figure]:
    """PV yield, reactive power at unity power factor and voltage compliance (15-min readings)."""
    figures = []
    pros = np.flatnonzero(w.fleet.prosumer)
    kwp = w.fleet.solar_kw[pros].sum()
    for s, low, high in ((summer, 4.0, 6.8), (winter, 1.5, 3.6)):
        per_kwp = np.nan_to_num(s.pv_kwh[:, pros]).sum() / kwp / s.days if kwp else 0.0
        figures.append(
            Figure(f"PV, yield per kWp per day ({s.name}, with weather)", per_kwp, low, high, "kWh/kWp",
                   "NREL PVWatts v8, San Francisco, 20° south-facing, TMY: June ~5.5-6, December ~2.5-3")
        )  # fmt: skip
    figures.append(
        Figure("PV, reactive energy added to exporting prosumers' readings (unity power factor)",
               float(summer.kvar_pv.sum() + winter.kvar_pv.sum()), 0.0, 1e-6, "kVARh",
               "IEEE 1547-2018 default: unity power factor")
    )  # fmt: skip
    volts = np.concatenate([summer.voltage, winter.voltage])
    inside = ((volts >= 228.0) & (volts <= 252.0)).mean() * 100.0
    figures.append(
        Figure("voltage, 15-min readings inside ANSI C84.1 Range A (228-252 V)", inside, 95.0, 100.0, "%",
               "ANSI C84.1-2020 Range A for 120/240 V service")
    )  # fmt: skip
    return figures


def _plots(out: Path, w: WorldFleet, seasons: Sequence[Season]) -> list[str]:
    try:
        import matplotlib as mpl

        mpl.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # matplotlib is a dev dependency: the report is complete without its pictures
        return []
    homes = _rows(w, "home")
    names = []
    fig, ax = plt.subplots(figsize=(9, 4))
    for s in seasons:
        agg = s.kw[:, homes].sum(axis=1) / len(homes)
        hourly = _hourly(agg[_weekday_minutes(s)]).reshape(-1, 24)
        ax.plot(np.arange(24), hourly.mean(axis=0), label=f"{s.name} weekday mean")
        ax.fill_between(np.arange(24), hourly.min(axis=0), hourly.max(axis=0), alpha=0.2)
    ax.set(xlabel="local hour", ylabel="kW per home", title="Homes: weekday aggregate load per home")
    ax.legend()
    names.append(_save(fig, out / "homes_weekday.png"))
    fig, axes = plt.subplots(2, 1, figsize=(11, 6), sharey=True)
    for ax, s in zip(axes, seasons, strict=True):
        hours = np.arange(len(s.minutes)) / 1440.0
        ax.plot(hours, s.kw[:, homes].sum(axis=1), lw=0.5, label="homes, 1-min")
        ax.plot(hours[::15], s.kw[:, homes].sum(axis=1).reshape(-1, 15).mean(axis=1), lw=1.0, label="15-min")
        ax.set(ylabel="kW", title=f"{s.name} week from {s.start:%d %b %Y}")
        ax.legend(loc="upper right")
    axes[-1].set_xlabel("day")
    names.append(_save(fig, out / "homes_weeks.png"))
    fig, ax = plt.subplots(figsize=(9, 4))
    for kind in ("office", "shop", "industrial", "apartment_complex"):
        rows = _rows(w, kind)
        if len(rows):
            for s, style in zip(seasons, ("-", "--"), strict=True):
                day = s.kw[:, rows].sum(axis=1)[: 5 * 1440].reshape(5, 24, 60).mean(axis=(0, 2))
                ax.plot(np.arange(24), day, style, label=f"{kind} {s.name}")
    ax.set(xlabel="local hour", ylabel="kW (all buildings of the kind)", title="Businesses: weekday shapes")
    ax.legend(fontsize=7)
    names.append(_save(fig, out / "business_weekday.png"))
    fig, ax = plt.subplots(figsize=(6, 4))
    week_min = np.concatenate([s.kw[:, homes] for s in seasons]).min(axis=0) * 1000
    ax.hist(week_min, bins=30)
    ax.set(xlabel="W", ylabel="homes", title="Always-on load (1-min minimum over both weeks)")
    names.append(_save(fig, out / "always_on.png"))
    plt.close("all")
    return names


def _save(fig: object, path: Path) -> str:
    fig.savefig(path, dpi=90, bbox_inches="tight")  # type: ignore[attr-defined]
    return path.name


def write_report(
    out: Path, *, seed: int = 42, world_file: Path | None = None, progress: Callable[[str], None] = print
) -> list[Figure]:
    """Simulate the world's summer and winter weeks and write ``out/realism.md`` (+ PNG plots)."""
    world = read_world(world_file or default_world_path())
    out.mkdir(parents=True, exist_ok=True)
    w = world_fleet(world, seed)
    progress(f"{world.name}: {len(w.fleet)} meters, seed {seed}")
    seasons = []
    for name in SEASONS:
        progress(f"simulating the {name} week minute by minute")
        seasons.append(season_run(w, name))
    summer, winter = seasons
    figures = load_figures(w, summer, winter) + supply_figures(w, summer, winter)
    plots = _plots(out, w, seasons)
    lines = [
        f"# Realism report: {world.name}",
        "",
        f"Seed {seed}; weeks from {summer.start:%A %d %B %Y} and {winter.start:%A %d %B %Y} "
        f"({w.timezone}); loads minute by minute, PV and voltage every 15 minutes; "
        f"{len(_rows(w, 'home'))} homes. Models and references: docs/realism.md.",
        "",
        f"**{sum(f.ok for f in figures)} of {len(figures)} figures inside their reference range.**",
        "",
        "| figure | gridsim | reference range | in range | source |",
        "|---|---:|---:|:---:|---|",
    ]
    for f in figures:
        lines.append(
            f"| {f.what} | {f.value:.3g} {f.unit} | {f.low:g}-{f.high:g} | {'yes' if f.ok else '**no**'} | {f.source} |"
        )
    lines.append("")
    lines += [f"![{name}]({name})" for name in plots]
    (out / "realism.md").write_text("\n".join(lines) + "\n")
    progress(f"wrote {out / 'realism.md'} ({sum(f.ok for f in figures)}/{len(figures)} in range)")
    return figures
