"""Write meter-sim's demo world: a San Francisco utility, 3 feeders, 15 transformers, 150 meters.

    uv run python scripts/make_demo_world.py            # rewrites services/meter-sim/.../demo_world.json
    uv run python scripts/make_demo_world.py --check    # exit 1 if the committed file differs
    uv run python scripts/make_demo_world.py --table    # print the transformer sizing table

Deterministic (a fixed seed, no clock): the same script always writes the same file. The shape follows
the DEG World Engine's seed world (WORLD-ENGINE-API.md §2): substations SF Mission, SF Sunset and
SF Richmond with five transformers each, meters MTR-0000…MTR-0149 inside lat 37.70–37.81 and
lon −122.52…−122.40. Every meter lies nearer to its own transformer than to any other.

Transformer sizing (domain-facts §5): each ER's design peak is Σ rated power × count × the share of
rating its profile draws in its busiest hour (DESIGN_SHARE, read off meter-sim's time-of-day shapes at
the evening peak, scaled by KIND_FACTOR for businesses that peak by day). Divided by a 0.9 power factor
this gives the transformer's design kVA. Ordinary transformers get the smallest standard rating that
keeps the design peak at or below 70 %; the two "stressed" ones (many EV chargers) get the rating that
puts it nearest 95 %, so overload events show up at the evening peak.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gridsim_shared.geo import distance_m

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "services/meter-sim/src/gridsim_meter_sim/data/demo_world.json"
SEED = 20250513

# Rated power (W) and profile of the catalogue entries used here (migrations 0001 and 0100).
CATALOGUE: dict[str, tuple[float, str]] = {
    "LED Bulb (10W)": (10, "lighting"),
    "Ceiling Fan": (75, "cooling"),
    "Television (LED)": (120, "evening"),
    "Refrigerator": (200, "fridge"),
    "Laptop Charger": (65, "daytime"),
    "Microwave Oven": (1000, "cooking"),
    "Washing Machine": (500, "laundry"),
    "Air Conditioner (1.5 Ton)": (1500, "ac"),
    "Room Heater": (2000, "heating"),
    "Electric Geyser": (3000, "geyser"),
    "Water Pump": (750, "pump"),
    "Solar Panel (production)": (1200, "solar"),
    "EV Charger (7.2 kW)": (7200, "ev"),
    "Dishwasher": (1131, "cooking"),
    "Electric Kettle": (2000, "cooking"),
    "Tumble Dryer": (2500, "laundry"),
    "Desktop PC": (141, "daytime"),
    "Elevator (7.5 kW)": (7500, "pump"),
    "Commercial Refrigeration": (1500, "fridge"),
    "Commercial HVAC (10 kW)": (10000, "ac"),
    "Industrial Motor (15 kW)": (15000, "daytime"),
    "Heat Pump (3 kW)": (3000, "heating"),
    "Induction Cooktop": (2400, "cooking"),
}
# Planning assumption: expected share of rating drawn in the busiest hour (solar produces, it adds none).
DESIGN_SHARE = {
    "lighting": 0.70,
    "cooling": 0.50,
    "evening": 0.55,
    "fridge": 0.42,
    "daytime": 0.45,
    "cooking": 0.18,
    "laundry": 0.10,
    "ac": 0.55,
    "heating": 0.30,
    "geyser": 0.15,
    "pump": 0.30,
    "ev": 0.45,
    "solar": 0.0,
}
KIND_FACTOR = {"home": 1.0, "apartment_complex": 1.0, "office": 1.3, "shop": 1.2, "industrial": 1.0}
POWER_FACTOR = 0.9
SINGLE_PHASE_KVA = (25, 37.5, 50, 75, 100, 167, 250, 333, 500)
THREE_PHASE_KVA = (75, 112.5, 150, 225, 300, 500, 750, 1000)
NORMAL_LOADING = 0.70
STRESSED_LOADING = 0.95

FIRST = [
    "William",
    "James",
    "Maria",
    "Sofia",
    "Daniel",
    "Olivia",
    "Kevin",
    "Priya",
    "Wei",
    "Aisha",
    "Carlos",
    "Emma",
    "Hiroshi",
    "Fatima",
    "Liam",
    "Grace",
    "Diego",
    "Mei",
    "Noah",
    "Ana",
    "Samuel",
    "Chloe",
    "Arjun",
    "Lucia",
    "Omar",
    "Hannah",
    "Mateo",
    "Yuki",
    "Ethan",
    "Rosa",
]
LAST = [
    "Flores",
    "Chen",
    "Nguyen",
    "Garcia",
    "Kim",
    "Patel",
    "Johnson",
    "Lopez",
    "Wong",
    "Rossi",
    "Smith",
    "Tanaka",
    "Murphy",
    "Singh",
    "Cohen",
    "Brown",
    "Ramirez",
    "Liu",
    "Okafor",
    "Silva",
    "Davis",
    "Martin",
    "Park",
    "Khan",
    "Müller",
    "Ali",
    "Reyes",
    "Lee",
    "Walker",
    "Torres",
]


@dataclass
class Transformer:
    """One transformer of the design and what hangs from it."""

    name: str
    feeder: str
    latitude: float
    longitude: float
    pincode: str
    three_phase: bool
    homes: int
    stressed: bool = False
    businesses: list[str] = field(default_factory=list)
    apartments: int = 0  # units of an apartment complex (plus its parent and common-area meters)

    @property
    def code(self) -> str:
        return f"{self.feeder}-tx{self.number:02d}"

    number: int = 0


FEEDERS = (
    ("sf-mission", "SF Mission", 37.7605, -122.4150, "94110"),
    ("sf-sunset", "SF Sunset", 37.7530, -122.4900, "94122"),
    ("sf-richmond", "SF Richmond", 37.7800, -122.4800, "94118"),
)

TRANSFORMERS = [
    Transformer("Dolores TX-01", "sf-mission", 37.7612, -122.4262, "94110", False, homes=9),
    Transformer(
        "Valencia TX-02",
        "sf-mission",
        37.7640,
        -122.4213,
        "94110",
        True,
        homes=5,
        businesses=[
            "Valencia St Bakery",
            "Mission Laundromat",
            "Dolores Corner Market",
            "Valencia Design Studio",
        ],
    ),
    Transformer("Mission St TX-03", "sf-mission", 37.7552, -122.4188, "94110", True, homes=0, apartments=12),
    Transformer(
        "Potrero TX-04",
        "sf-mission",
        37.7595,
        -122.4065,
        "94107",
        True,
        homes=6,
        businesses=["Potrero Brewing Co.", "18th St Hardware"],
    ),
    Transformer("Bernal TX-05", "sf-mission", 37.7410, -122.4160, "94110", False, homes=10, stressed=True),
    Transformer(
        "Irving TX-06",
        "sf-sunset",
        37.7638,
        -122.4685,
        "94122",
        True,
        homes=8,
        businesses=["Irving St Noodle House", "Sunset Grocery"],
    ),
    Transformer("Judah TX-07", "sf-sunset", 37.7615, -122.4905, "94122", False, homes=10),
    Transformer(
        "Noriega TX-08",
        "sf-sunset",
        37.7538,
        -122.4960,
        "94122",
        True,
        homes=8,
        businesses=["Noriega Laundromat"],
    ),
    Transformer("Taraval TX-09", "sf-sunset", 37.7428, -122.4868, "94116", False, homes=10, stressed=True),
    Transformer("Sunset Blvd TX-10", "sf-sunset", 37.7490, -122.4950, "94116", False, homes=11),
    Transformer(
        "Clement TX-11",
        "sf-richmond",
        37.7828,
        -122.4652,
        "94118",
        True,
        homes=7,
        businesses=["Clement St Books", "Green Apple Cafe"],
    ),
    Transformer(
        "Geary TX-12",
        "sf-richmond",
        37.7805,
        -122.4755,
        "94118",
        True,
        homes=8,
        businesses=["Geary Medical Offices"],
    ),
    Transformer("Balboa TX-13", "sf-richmond", 37.7762, -122.4885, "94121", False, homes=11),
    Transformer("Fulton TX-14", "sf-richmond", 37.7728, -122.4985, "94121", False, homes=10),
    Transformer("Lake St TX-15", "sf-richmond", 37.7866, -122.4728, "94118", False, homes=11),
]
for _number, _tx in enumerate(TRANSFORMERS, start=1):
    _tx.number = _number

# Businesses: kind, ER type, appliances (name -> count), and whether it needs a three-phase meter.
BUSINESSES: dict[str, tuple[str, str, dict[str, int]]] = {
    "Valencia St Bakery": (
        "shop",
        "consumer",
        {"LED Bulb (10W)": 24, "Commercial Refrigeration": 2, "Induction Cooktop": 2, "Microwave Oven": 2,
         "Electric Geyser": 1, "Desktop PC": 1},
    ),
    "Mission Laundromat": (
        "shop",
        "consumer",
        {"LED Bulb (10W)": 20, "Washing Machine": 10, "Tumble Dryer": 8, "Electric Geyser": 2},
    ),
    "Dolores Corner Market": (
        "shop",
        "prosumer",
        {"LED Bulb (10W)": 30, "Commercial Refrigeration": 4, "Desktop PC": 1, "Solar Panel (production)": 8},
    ),
    "Valencia Design Studio": (
        "office",
        "consumer",
        {"LED Bulb (10W)": 60, "Desktop PC": 12, "Laptop Charger": 15, "Refrigerator": 1, "Microwave Oven": 1,
         "Electric Kettle": 1, "Commercial HVAC (10 kW)": 1},
    ),
    "Potrero Brewing Co.": (
        "industrial",
        "prosumer",
        {"Industrial Motor (15 kW)": 3, "Commercial Refrigeration": 6, "Water Pump": 4, "LED Bulb (10W)": 60,
         "Electric Geyser": 2, "Commercial HVAC (10 kW)": 1, "Solar Panel (production)": 40},
    ),
    "18th St Hardware": (
        "shop",
        "consumer",
        {"LED Bulb (10W)": 40, "Desktop PC": 2, "Commercial HVAC (10 kW)": 1},
    ),
    "Irving St Noodle House": (
        "shop",
        "consumer",
        {"LED Bulb (10W)": 25, "Commercial Refrigeration": 3, "Induction Cooktop": 3, "Microwave Oven": 2,
         "Dishwasher": 1, "Electric Geyser": 1},
    ),
    "Sunset Grocery": (
        "shop",
        "prosumer",
        {"LED Bulb (10W)": 40, "Commercial Refrigeration": 6, "Desktop PC": 2, "Solar Panel (production)": 12},
    ),
    "Noriega Laundromat": (
        "shop",
        "consumer",
        {"LED Bulb (10W)": 20, "Washing Machine": 12, "Tumble Dryer": 10, "Electric Geyser": 2},
    ),
    "Clement St Books": (
        "shop",
        "consumer",
        {"LED Bulb (10W)": 50, "Desktop PC": 2, "Refrigerator": 1, "Room Heater": 2},
    ),
    "Green Apple Cafe": (
        "shop",
        "consumer",
        {"LED Bulb (10W)": 20, "Commercial Refrigeration": 2, "Electric Kettle": 2, "Microwave Oven": 1,
         "Dishwasher": 1, "Induction Cooktop": 1},
    ),
    "Geary Medical Offices": (
        "office",
        "prosumer",
        {"LED Bulb (10W)": 150, "Desktop PC": 40, "Laptop Charger": 20, "Commercial HVAC (10 kW)": 3,
         "Elevator (7.5 kW)": 1, "Refrigerator": 3, "Microwave Oven": 2, "Electric Kettle": 2,
         "Solar Panel (production)": 24},
    ),
}  # fmt: skip

APARTMENT_NAME = "Mission Gardens Apartments"
APARTMENT_COMMON: dict[str, int] = {
    "Elevator (7.5 kW)": 2,
    "Water Pump": 2,
    "LED Bulb (10W)": 80,  # corridors, stairs and parking, dusk to dawn
    "EV Charger (7.2 kW)": 4,
    "Washing Machine": 4,
    "Tumble Dryer": 4,
    "Solar Panel (production)": 16,
}


def _place(rng: random.Random, tx: Transformer) -> tuple[float, float]:
    """A point within ~200 m of ``tx`` that is nearer to it than to any other transformer."""
    while True:
        lat = round(tx.latitude + rng.uniform(-0.0018, 0.0018), 6)
        lon = round(tx.longitude + rng.uniform(-0.0022, 0.0022), 6)
        own = distance_m(lat, lon, tx.latitude, tx.longitude)
        if all(
            distance_m(lat, lon, other.latitude, other.longitude) > own
            for other in TRANSFORMERS
            if other is not tx
        ):
            return lat, lon


def _home(rng: random.Random, tx: Transformer) -> tuple[str, dict[str, int]]:
    """A San Francisco household's appliances (gas cooking and heating are common; AC is rare)."""
    prosumer = rng.random() < (0.35 if tx.feeder == "sf-sunset" else 0.25)
    items = {
        "LED Bulb (10W)": rng.randint(8, 18),
        "Refrigerator": 1,
        "Television (LED)": rng.randint(1, 2),
        "Laptop Charger": rng.randint(1, 3),
        "Microwave Oven": 1,
        "Washing Machine": 1,
    }
    optional = (
        ("Tumble Dryer", 0.6, 1),
        ("Dishwasher", 0.6, 1),
        ("Electric Kettle", 0.5, 1),
        ("Induction Cooktop", 0.2, 1),
        ("Ceiling Fan", 0.3, rng.randint(1, 3)),
        ("Room Heater", 0.3, rng.randint(1, 2)),
        ("Electric Geyser", 0.15, 1),
        ("Heat Pump (3 kW)", 0.1, 1),
        ("Desktop PC", 0.3, 1),
        ("Air Conditioner (1.5 Ton)", 0.05, 1),
        ("EV Charger (7.2 kW)", 0.6 if tx.stressed else 0.15, 1),
    )
    for name, chance, count in optional:
        if rng.random() < chance:
            items[name] = count
    if prosumer:
        items["Solar Panel (production)"] = rng.randint(3, 6)
    return ("prosumer" if prosumer else "consumer"), items


def _unit(rng: random.Random) -> dict[str, int]:
    items = {
        "LED Bulb (10W)": rng.randint(5, 9),
        "Refrigerator": 1,
        "Television (LED)": 1,
        "Laptop Charger": rng.randint(1, 2),
        "Microwave Oven": 1,
    }
    for name, chance in (("Electric Kettle", 0.5), ("Room Heater", 0.3), ("Induction Cooktop", 0.3)):
        if rng.random() < chance:
            items[name] = 1
    return items


def design_kw(kind: str, items: dict[str, int]) -> float:
    """An ER's design peak demand in kW (see the module docstring)."""
    watts = sum(CATALOGUE[name][0] * n * DESIGN_SHARE[CATALOGUE[name][1]] for name, n in items.items())
    return watts / 1000 * KIND_FACTOR[kind]


def _rating(tx: Transformer, kva: float) -> float:
    ratings = THREE_PHASE_KVA if tx.three_phase else SINGLE_PHASE_KVA
    if tx.stressed:
        return min(ratings, key=lambda r: abs(kva / r - STRESSED_LOADING))
    return next((r for r in ratings if kva / r <= NORMAL_LOADING), ratings[-1])


# Rooftop arrays face where the roof does: most of them south-ish, some east or west, a few flat-ish;
# picked from the ER's name (not the world's random stream, so the rest of the world stays as it was).
_ROOFS = (
    (20.0, 180.0),
    (25.0, 180.0),
    (30.0, 200.0),
    (20.0, 160.0),
    (25.0, 225.0),
    (25.0, 135.0),
    (20.0, 270.0),
    (20.0, 90.0),
    (10.0, 180.0),
)


def _orientation(er_name: str, appliance: str) -> dict[str, float]:
    """A solar array's tilt and azimuth (degrees); nothing for other appliances."""
    if not appliance.startswith("Solar Panel"):
        return {}
    tilt, azimuth = _ROOFS[int(hashlib.sha256(er_name.encode()).hexdigest(), 16) % len(_ROOFS)]
    return {"tilt_deg": tilt, "azimuth_deg": azimuth}


def _er(
    name: str, er_type: str, kind: str, items: dict[str, int], *, at: tuple[float, float]
) -> dict[str, Any]:
    lat, lon = at
    return {
        "name": name,
        "type": er_type,
        "kind": kind,
        "appliances": [{"name": n, "count": c} | _orientation(name, n) for n, c in items.items()],
        "city": "San Francisco",
        "state": "CA",
        "latitude": lat,
        "longitude": lon,
    }


def build() -> tuple[dict[str, Any], list[tuple[str, float, float]]]:
    """The world document and the sizing table ``(transformer, design kVA, rating)``."""
    rng = random.Random(SEED)
    meters: list[dict[str, Any]] = []
    sizing: list[tuple[str, float, float]] = []
    ratings: dict[str, float] = {}
    used_names: set[str] = set()

    def person() -> str:
        while True:
            name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
            if name not in used_names:
                used_names.add(name)
                return name

    def meter(tx: Transformer, meter_type: str, lat: float, lon: float, **extra: Any) -> dict[str, Any]:
        record = {
            "meter_id": f"MTR-{len(meters):04d}",
            "meter_type": meter_type,
            "transformer_id": tx.code,
            "city": "San Francisco",
            "state": "CA",
            "latitude": lat,
            "longitude": lon,
            "pincode": tx.pincode,
        } | extra
        meters.append(record)
        return record

    for tx in TRANSFORMERS:
        kw = 0.0
        for business in tx.businesses:
            kind, er_type, items = BUSINESSES[business]
            lat, lon = _place(rng, tx)
            meter(tx, "3-Ph", lat, lon, er=_er(business, er_type, kind, items, at=(lat, lon)))
            kw += design_kw(kind, items)
        if tx.apartments:
            lat, lon = _place(rng, tx)
            parent = meter(tx, "3-Ph", lat, lon)
            for unit in range(tx.apartments):
                items = _unit(rng)
                name = f"{APARTMENT_NAME} #{101 + (unit // 4) * 100 + unit % 4}"
                meter(
                    tx,
                    "1-Ph",
                    lat,
                    lon,
                    parent_id=parent["meter_id"],
                    er=_er(name, "consumer", "home", items, at=(lat, lon)),
                )
                kw += design_kw("home", items)
            common = _er(
                f"{APARTMENT_NAME} (common areas)",
                "prosumer",
                "apartment_complex",
                APARTMENT_COMMON,
                at=(lat, lon),
            )
            meter(tx, "3-Ph", lat, lon, parent_id=parent["meter_id"], er=common)
            kw += design_kw("apartment_complex", APARTMENT_COMMON)
        for _ in range(tx.homes):
            lat, lon = _place(rng, tx)
            er_type, items = _home(rng, tx)
            meter_type = "net-meter" if er_type == "prosumer" else "Smart"
            meter(tx, meter_type, lat, lon, er=_er(person(), er_type, "home", items, at=(lat, lon)))
            kw += design_kw("home", items)
        kva = kw / POWER_FACTOR
        ratings[tx.code] = _rating(tx, kva)
        sizing.append((tx.name, round(kva, 1), ratings[tx.code]))

    grid: list[dict[str, Any]] = [
        {
            "code": "pge-sf",
            "name": "Pacific Gas and Electric Company",
            "level": "utility",
            "city": "San Francisco",
            "state": "CA",
            "latitude": 37.7929,
            "longitude": -122.3969,
            "pincode": "94105",
        }
    ]
    for code, name, lat, lon, pincode in FEEDERS:
        grid.append(
            {
                "code": code,
                "name": name,
                "level": "feeder",
                "parent_id": "pge-sf",
                "city": "San Francisco",
                "state": "CA",
                "latitude": lat,
                "longitude": lon,
                "pincode": pincode,
            }
        )
    for tx in TRANSFORMERS:
        grid.append(
            {
                "code": tx.code,
                "name": tx.name,
                "level": "transformer",
                "parent_id": tx.feeder,
                "capacity_kVA": ratings[tx.code],
                "city": "San Francisco",
                "state": "CA",
                "latitude": tx.latitude,
                "longitude": tx.longitude,
                "pincode": tx.pincode,
            }
        )
    world = {
        "version": 1,
        "name": "San Francisco demo",
        "description": (
            "PG&E-like San Francisco utility: 3 feeders (SF Mission, SF Sunset, SF Richmond), 15 transformers,"
            " 150 meters (households, shops, offices, a brewery and an apartment complex with child meters)."
            " Made by scripts/make_demo_world.py; copy and edit it, then set GRIDSIM_SIM__DEMO_WORLD_FILE."
        ),
        "grid": grid,
        "meters": meters,
    }
    return world, sizing


def render(world: dict[str, Any]) -> str:
    """The file's exact text."""
    return json.dumps(world, indent=1, ensure_ascii=False) + "\n"


def main() -> int:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the committed file is out of date")
    parser.add_argument("--table", action="store_true", help="print the transformer sizing table")
    args = parser.parse_args()
    world, sizing = build()
    text = render(world)
    if args.table:
        print(f"{'transformer':<20} {'design kVA':>10} {'rating kVA':>10} {'loading':>8}")
        for name, kva, rating in sizing:
            print(f"{name:<20} {kva:>10.1f} {rating:>10} {kva / rating:>8.0%}")
    if args.check:
        if OUTPUT.read_text(encoding="utf-8") != text:
            print(f"{OUTPUT} is out of date: run scripts/make_demo_world.py", file=sys.stderr)
            return 1
        return 0
    if not args.table:
        OUTPUT.parent.mkdir(parents=True, exist_ok=True)
        OUTPUT.write_text(text, encoding="utf-8")
        print(f"wrote {OUTPUT} ({len(world['meters'])} meters)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
