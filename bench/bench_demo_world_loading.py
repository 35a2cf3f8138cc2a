"""How loaded the demo world's transformers are under meter-sim's physics, over simulated days.

    uv run python bench/bench_demo_world_loading.py [--database-url postgresql://postgres@127.0.0.1:5432/test]

Loads ``demo_world.json`` into a scratch schema through the API's code, reads the fleet as the engine
does, runs the engine's pure ``simulate`` for every minute of a summer and a winter day, and reports
each transformer's peak load (kVA: Σ consumption kVAh − production kVAh per hour, never below zero)
as a share of its rating: the 15-minute peak and the 1-minute peak. The figures go to
``bench/results/demo_world_loading.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import psycopg

from gridsim_meter_sim import domain
from gridsim_meter_sim.fleet_repository import load_fleet
from gridsim_meter_sim.world import default_world_path, load_world, read_world
from gridsim_shared.db import apply_migrations, drop_schemas, open_pool
from gridsim_shared.settings import DbSettings

RESULTS = Path(__file__).resolve().parent / "results"
# Local midnight in San Francisco (UTC−7 in summer, UTC−8 in winter).
DAYS = {"summer": datetime(2025, 6, 20, 7, tzinfo=UTC), "winter": datetime(2025, 1, 15, 8, tzinfo=UTC)}


async def run(url: str) -> dict[str, Any]:
    schema = f"bench_{secrets.token_hex(4)}"
    await apply_migrations(url, schema)
    try:
        async with open_pool(DbSettings(url=url, schema_name=schema)) as pool:
            async with pool.connection() as conn, conn.transaction():
                await load_world(conn, read_world(default_world_path()))
            columns = await load_fleet(pool, 0, 1)
        fleet = domain.build_fleet_from(42, columns)
        bounds = fleet.transformer_bounds
        names = [codes[2] for codes in fleet.transformer_codes]
        report: dict[str, Any] = {"meters": len(fleet), "days": {}}
        for label, start in DAYS.items():
            minutes = 1440
            kva = np.zeros((minutes, len(names)))
            for minute in range(minutes):
                r = domain.simulate(fleet, start + timedelta(minutes=minute), 60)
                net = np.where(
                    r.active, np.nan_to_num(r.consumption_kvah) - np.nan_to_num(r.production_kvah), 0
                )
                per_tx = np.add.reduceat(net, bounds[:-1]) * 60  # kVAh per minute → kVA
                kva[minute] = np.maximum(per_tx, 0)
            quarter = kva.reshape(96, 15, -1).mean(axis=1)
            rows = []
            for i, code in enumerate(names):
                rating = float(fleet.transformer_kva[i])
                peak15 = float(quarter[:, i].max())
                rows.append(
                    {
                        "transformer": code,
                        "rating_kVA": rating,
                        "peak_15min_kVA": round(peak15, 2),
                        "peak_15min_share": round(peak15 / rating, 3),
                        "peak_15min_local_time": f"{int(quarter[:, i].argmax()) * 15 // 60:02d}:"
                        f"{int(quarter[:, i].argmax()) * 15 % 60:02d}",
                        "peak_1min_share": round(float(kva[:, i].max()) / rating, 3),
                        "minutes_over_rating": int((kva[:, i] > rating).sum()),
                    }
                )
            report["days"][label] = rows
        return report
    finally:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await conn.execute(drop_schemas(schema))


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Demo world: transformer loading under meter-sim's physics",
        "",
        f"{report['meters']} simulated meters, one simulated day each, seed 42. Load = Σ (consumption −"
        " production) kVA of the transformer's meters, as a share of its rating.",
        "",
    ]
    for label, rows in report["days"].items():
        lines += [
            f"## {label} day",
            "",
            "| transformer | rating kVA | 15-min peak | at (local) | 1-min peak | minutes over rating |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {r['transformer']} | {r['rating_kVA']} | {r['peak_15min_share']:.0%} | {r['peak_15min_local_time']}"
            f" | {r['peak_1min_share']:.0%} | {r['minutes_over_rating']} |"
            for r in rows
        ]
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    report = asyncio.run(run(args.database_url))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "demo_world_loading.json").write_text(json.dumps(report, indent=1) + "\n")
    (RESULTS / "demo_world_loading.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
