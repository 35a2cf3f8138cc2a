"""Benchmark: the measured shed of a 1-hour direct-load-control event on the demo world's enrolled homes.

The demo world is loaded through the API's code into a scratch schema; every home whose ER has flexible
load (EV charger, water heater, AC, heater, pump: ``gridsim_utility.repository.FLEXIBLE_PROFILES``) is
enrolled in a DLC programme (compliance 0.9, shed share 0.8, level 2). Meter-sim's physics
(its loads model minute by minute, as ``domain.simulate`` reads it at 60-s intervals; no broker) runs
15 days: 14 days of history for the CAISO 10-in-10
baseline, then the event day twice — without the event (the counterfactual, which only a simulator
knows) and with the response exactly as the utility service dispatches it and meter-sim applies it:
``domain.complies`` draws who responds, and one flexible-load window over the responders
(``gridsim_meter_sim.flex.FlexPlan`` on the loads model's ``Flex``: thermostats set back
``domain.hvac_offset_c``, water heaters and EV charging deferred), whose rebound is the loads' own.
Reported: shed against the counterfactual and against the CAISO baseline, and the rebound over the hour
and the three hours after.

    uv run python bench/bench_dr.py [--seed 42] [--start-hour 17]

Writes ``bench/results/dr.json`` and ``dr.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import psycopg

from gridsim_meter_sim import domain as sim
from gridsim_meter_sim import loads as load_model
from gridsim_meter_sim import shapes
from gridsim_meter_sim.fleet_repository import load_fleet
from gridsim_meter_sim.flex import FlexPlan, FlexRow
from gridsim_meter_sim.world import default_world_path, load_world, read_world
from gridsim_shared.db import apply_migrations, drop_schemas, open_pool
from gridsim_shared.settings import DbSettings
from gridsim_utility import domain
from gridsim_utility.repository import FLEXIBLE_PROFILES

RESULTS = Path(__file__).resolve().parent / "results"
DB_URL = os.environ.get("GRIDSIM_DB__URL", "postgresql://postgres@127.0.0.1:5432/test")
UTC_OFFSET_H = -7  # San Francisco in summer
# The event day: Wednesday 25 June 2025 (local), after two weeks of history.
EVENT_DAY = datetime(2025, 6, 25, 7, tzinfo=UTC)
HISTORY_DAYS = 14
PROGRAM = {"compliance": 0.9, "shed_share": 0.8}
LEVEL = 2
EVENT_ID = 1


async def _rows(url: str) -> sim.FleetColumns:
    schema = f"bench_{secrets.token_hex(4)}"
    await apply_migrations(url, schema)
    try:
        async with open_pool(DbSettings(url=url, schema_name=schema)) as pool:
            async with pool.connection() as conn, conn.transaction():
                await load_world(conn, read_world(default_world_path()))
            return await load_fleet(pool, 0, 1)
    finally:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await conn.execute(drop_schemas(schema))


def participants(columns: sim.FleetColumns) -> dict[int, tuple[float, float]]:
    """Homes with flexible load: meter id -> (flexible kW, rated kW)."""
    homes = set(columns.meter_id[columns.kind == shapes.KINDS.index("home")].tolist())
    out: dict[int, list[float]] = {}
    for meter, appliance, quantity in zip(
        columns.der_meter_id.tolist(),
        columns.der_appliance.tolist(),
        columns.der_quantity.tolist(),
        strict=True,
    ):
        a = columns.appliances[appliance]
        if meter not in homes or a.role != "consumption":
            continue
        kw = a.base_kwh_per_min * 60 * quantity
        flex, rated = out.setdefault(meter, [0.0, 0.0])
        out[meter] = [flex + (kw if a.profile in FLEXIBLE_PROFILES else 0.0), rated + kw]
    return {m: (f, r) for m, (f, r) in out.items() if f > 0}


def hourly(fleet: sim.Fleet, start: datetime, hours: int, plan: FlexPlan | None = None) -> np.ndarray:
    """Hourly consumption kWh per fleet row, shape (hours, meters), minute by minute: what
    ``domain.simulate`` reads at 60-s intervals (the loads model's power at each minute × the meter's
    load factor), an hour of minutes at a time (``loads.power`` on a series). ``plan``: the DR windows,
    set on the loads model's ``Flex`` as meter-sim's engine sets them."""
    out = np.zeros((hours, len(fleet)))
    fleet.loads.flex.clear()
    if plan is not None:
        plan.apply(fleet.loads.flex, start)
    active = fleet.online & (fleet.k_consumption > 0)
    first = int(start.timestamp())
    for h in range(hours):
        minutes = first + h * 3600 + 60 * np.arange(60, dtype=np.int64)
        kw = load_model.power(fleet.loads, minutes)[0]
        out[h] = np.where(active, kw.sum(axis=0) / 60.0 * fleet.k_consumption, 0.0)
    fleet.loads.flex.clear()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--start-hour", type=int, default=17, help="local hour the event starts")
    args = parser.parse_args()
    columns = asyncio.run(_rows(DB_URL))
    fleet = sim.build_fleet_from(args.seed, columns)
    flex = participants(columns)
    rows = {int(m): i for i, m in enumerate(fleet.meter_id.tolist())}
    start = EVENT_DAY + timedelta(hours=args.start_hour)
    end = start + timedelta(hours=1)
    responders = [m for m in flex if domain.complies(args.seed, EVENT_ID, m, PROGRAM["compliance"])]
    offset_c = domain.hvac_offset_c(PROGRAM["shed_share"], LEVEL)
    window = FlexRow(EVENT_ID, start, end, offset_c, True, True, tuple(responders))
    plan = FlexPlan(fleet.meter_id, [window])

    t0 = time.perf_counter()
    history = hourly(fleet, EVENT_DAY - timedelta(days=HISTORY_DAYS), HISTORY_DAYS * 24)
    # The event day up to 3 hours after the event, without and with it (identical before its start).
    until = args.start_hour + 4
    counterfactual = hourly(fleet, EVENT_DAY, until)
    with_dr = counterfactual.copy()
    with_dr[args.start_hour :] = hourly(fleet, start, until - args.start_hour, plan)
    elapsed = time.perf_counter() - t0

    idx = np.array([rows[m] for m in flex])
    event_h = np.array([args.start_hour])
    after_h = event_h + 1
    after3_h = event_h + np.arange(1, 4)
    first_day = (EVENT_DAY - timedelta(days=HISTORY_DAYS) + timedelta(hours=UTC_OFFSET_H)).date()
    event_date = (EVENT_DAY + timedelta(hours=UTC_OFFSET_H)).date()
    baseline_event = 0.0
    baseline_after = 0.0
    baseline_after3 = 0.0
    for i in idx:
        daily = {
            first_day + timedelta(days=k): history[k * 24 : (k + 1) * 24, i] for k in range(HISTORY_DAYS)
        }
        day_of = np.full(24, np.nan)
        day_of[:until] = with_dr[:, i]
        base = domain.caiso_baseline(daily, event_date, set(), day_of, event_h)
        assert base is not None
        baseline_event += float(base[event_h].sum())
        baseline_after += float(base[after_h].sum())
        baseline_after3 += float(base[after3_h].sum())
    metered = float(with_dr[event_h][:, idx].sum())
    cf = float(counterfactual[event_h][:, idx].sum())
    result = {
        "seed": args.seed,
        "event": f"{start.isoformat()} to {end.isoformat()} (local {args.start_hour}:00-{args.start_hour + 1}:00)",
        "homes": int((columns.kind == shapes.KINDS.index("home")).sum()),
        "enrolled": len(flex),
        "responding": len(responders),
        "hvac_offset_C": offset_c,
        "flexible_kW_enrolled": round(sum(f for f, _ in flex.values()), 1),
        "counterfactual_kWh": round(cf, 2),
        "metered_kWh": round(metered, 2),
        "caiso_baseline_kWh": round(baseline_event, 2),
        "shed_vs_counterfactual_kWh": round(cf - metered, 2),
        "shed_vs_caiso_kWh": round(baseline_event - metered, 2),
        "rebound_vs_counterfactual_kWh": round(float((with_dr - counterfactual)[after_h][:, idx].sum()), 2),
        "rebound_vs_caiso_kWh": round(float(with_dr[after_h][:, idx].sum()) - baseline_after, 2),
        "rebound_3h_vs_counterfactual_kWh": round(
            float((with_dr - counterfactual)[after3_h][:, idx].sum()), 2
        ),
        "rebound_3h_vs_caiso_kWh": round(float(with_dr[after3_h][:, idx].sum()) - baseline_after3, 2),
        "simulate_s": round(elapsed, 1),
        "loadavg": " ".join(f"{x:.1f}" for x in os.getloadavg()),
    }
    print(result)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "dr.json").write_text(json.dumps(result, indent=1) + "\n")
    (RESULTS / "dr.md").write_text(
        "# A 1-hour DLC event on the demo world's enrolled homes\n\n"
        f"`uv run python bench/bench_dr.py --seed {args.seed}`: every home with flexible load enrolled in a"
        " DLC programme (compliance 0.9, shed share 0.8), a level-2 event"
        f" {result['event']} on Wednesday 25 June 2025, carried out through the loads model's Flex hook"
        f" (thermostats set back {offset_c} °C, water heaters and EV charging deferred; the rebound is the"
        " loads' own); meter-sim's physics at 60-s intervals, the event day"
        " simulated with and without the event; the CAISO 10-in-10 baseline (day-of adjustment capped ±20 %)"
        f" from the 14 days before. Simulated in {result['simulate_s']} s, load average {result['loadavg']}.\n\n"
        "| figure | value |\n|---|---:|\n"
        + "".join(
            f"| {k} | {v} |\n" for k, v in result.items() if k not in ("event", "loadavg", "simulate_s")
        )
    )


if __name__ == "__main__":
    main()
