"""Benchmark: meter-sim's fleet read, row by row (as it was) against columnar (``fleet_repository.load_fleet``).

Row by row (kept below as ``_ROW_METERS``/``_ROW_DERS``): every leaf meter and every DER read as a row
(a dict each, then a ``MeterRow``/``DerRow``), the fleet built from those objects (``domain.build_fleet``).
Columnar: one row of columns, each a bytea of the values' binary forms read by numpy, the fleet built
from the arrays (``domain.build_fleet_from``). Both run in the same process against the same scratch
world (homes under transformers of 20 meters, 10 transformers a feeder, 1 % of the meters apartment
parents with two child meters each, 1 % offline), with ``ANALYZE`` done; the fleets must be identical.
(Before the row-by-row read, one window-function query looped every transformer over every meter:
163 s at 100k meters, see git history.)

    uv run python bench/bench_fleet_loading.py [--meters 10000 100000] [--shards 1 2]

Uses ``GRIDSIM_DB__URL`` (default database ``test`` on 127.0.0.1:5432) with a scratch schema dropped
afterwards. Writes ``bench/results/fleet_loading.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import secrets
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from psycopg.rows import dict_row

from gridsim_meter_sim import domain
from gridsim_meter_sim.domain import DerRow, MeterRow
from gridsim_meter_sim.fleet_repository import load_fleet
from gridsim_shared.db import apply_migrations, connect, drop_schemas, open_pool
from gridsim_shared.settings import DbSettings

sys.path.insert(0, str(Path(__file__).parent))
from bench_meter_sim import _insert_world

RESULTS = Path(__file__).parent / "results"
DB_URL = os.environ.get("GRIDSIM_DB__URL", "postgresql://postgres@127.0.0.1:5432/test")
PER_TRANSFORMER = 20

# The read as it was (services/meter-sim fleet_repository before the columnar read), for the comparison.
_ROW_METERS = """
select m.id as meter_id, m.code as meter_code,
       er.type as er_type, er.kind as er_kind, er.profile as er_profile,
       m.load_factor_consumption, m.load_factor_production,
       m.status in ('online', 'tampered') as online,
       coalesce(m.latitude, er.latitude, t.latitude, f.latitude, u.latitude, 0) as latitude,
       coalesce(m.longitude, er.longitude, t.longitude, f.longitude, u.longitude, 0) as longitude,
       t.id as transformer_id, t.code as transformer_code, t.capacity_kva as transformer_kva,
       f.code as feeder_code, u.code as utility_code, f.id as feeder_id
from meters m
join energy_resources er on er.id = m.er_id
left join meters parent on parent.id = m.parent_id
join grid_nodes t on t.id = coalesce(m.transformer_id, parent.transformer_id) and t.level = 'transformer'
join grid_nodes f on f.id = t.parent_id and f.level = 'feeder'
join grid_nodes u on u.id = f.parent_id and u.level = 'utility'
where not exists (select 1 from meters child where child.parent_id = m.id)
order by t.id, m.id
"""
_ROW_DERS = """
select m.id as er_meter_id, a.profile, a.role, a.base_kwh_per_min, a.power_factor, d.quantity, d.capacity_kw,
       a.name as appliance, d.tilt_deg, d.azimuth_deg
from ders d join appliances a on a.id = d.appliance_id join meters m on m.er_id = d.er_id
where d.switched_on and d.lifecycle = 'connected' and m.id = any(%(meter_ids)s)
order by m.id, d.id
"""


async def _insert_children(conn: Any, meters: int) -> None:
    """Every 100th meter becomes an apartment parent with two child meters (under the parent's
    transformer, no transformer of their own); every 100th (offset 7) goes offline."""
    await conn.execute(
        "insert into energy_resources (id, name, type, kind) select %s + g, 'flat ' || g, 'consumer', "
        "'apartment_complex' from generate_series(1, %s) g",
        (meters, 2 * (meters // 100)),
    )
    await conn.execute(
        "insert into meters (code, parent_id, er_id) select 'CHILD-' || g, 100 * ((g + 1) / 2), %s + g "
        "from generate_series(1, %s) g",
        (meters, 2 * (meters // 100)),
    )
    await conn.execute("update meters set status = 'offline' where id % 100 = 7")
    await conn.execute("analyze")


async def _row_by_row(pool: Any, shard: int, shards: int) -> tuple[list[MeterRow], list[DerRow]]:
    async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await conn.execute("set work_mem = '256MB'")  # as the columnar read does
        await cur.execute("select id from grid_nodes where level = 'feeder' order by id")
        feeders = {row["id"] for row in (await cur.fetchall())[shard::shards]}
        await cur.execute(_ROW_METERS)
        meters = [
            MeterRow(**{k: v for k, v in row.items() if k != "feeder_id"})
            for row in await cur.fetchall()
            if row["feeder_id"] in feeders
        ]
        await cur.execute(_ROW_DERS, {"meter_ids": [m.meter_id for m in meters]})
        ders = [DerRow(**row) for row in await cur.fetchall()]
    return meters, ders


def _same(a: domain.Fleet, b: domain.Fleet) -> bool:
    arrays = ("meter_id", "transformer", "kind", "flat", "online", "k_consumption", "latitude", "longitude")
    arrays += ("seed_base_kwh_per_min", "solar_kw", "transformer_kva", "nominal_v")
    return (
        all(np.array_equal(getattr(a, name), getattr(b, name)) for name in arrays)
        and a.meter_code == b.meter_code
        and a.transformer_codes == b.transformer_codes
        and all(
            np.array_equal(ga.row, gb.row) and np.array_equal(ga.rated_kw, gb.rated_kw)
            for ga, gb in zip(a.loads.groups, b.loads.groups, strict=True)
        )
    )


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def bench(meters: int, shards: int) -> dict[str, Any]:
    schema = f"bench_fleet_{secrets.token_hex(4)}"
    await apply_migrations(DB_URL, schema)
    try:
        async with await connect(DB_URL, schema) as conn:
            await _insert_world(conn, meters, PER_TRANSFORMER)
            await _insert_children(conn, meters)
            await conn.commit()
        async with open_pool(DbSettings(url=DB_URL, schema_name=schema)) as pool:
            timing = dict.fromkeys(("row_read_s", "row_build_s", "column_read_s", "column_build_s"), 0.0)
            timing |= dict.fromkeys(("row_cpu_s", "column_cpu_s"), 0.0)
            rows = 0
            for shard in range(shards):
                t, c = time.perf_counter(), _cpu_s()
                columns = await load_fleet(pool, shard, shards)
                timing["column_read_s"] += time.perf_counter() - t
                t = time.perf_counter()
                new = domain.build_fleet_from(42, columns)
                timing["column_build_s"] += time.perf_counter() - t
                timing["column_cpu_s"] += _cpu_s() - c
                del columns
                t, c = time.perf_counter(), _cpu_s()
                meter_rows, der_rows = await _row_by_row(pool, shard, shards)
                timing["row_read_s"] += time.perf_counter() - t
                t = time.perf_counter()
                old = domain.build_fleet(42, meter_rows, der_rows)
                timing["row_build_s"] += time.perf_counter() - t
                timing["row_cpu_s"] += _cpu_s() - c
                del meter_rows, der_rows
                assert _same(new, old), f"shard {shard}/{shards}: the fleets differ"
                rows += len(new)
        row_s = timing["row_read_s"] + timing["row_build_s"]
        column_s = timing["column_read_s"] + timing["column_build_s"]
        return {
            "meters": meters,
            "shards": shards,
            "leaf_rows": rows,
            **{k: round(v, 2) for k, v in timing.items()},
            "speedup": round(row_s / column_s, 1),
            "identical": True,
            "load_average": os.getloadavg()[0],
        }
    finally:
        async with await connect(DB_URL, "public", autocommit=True) as conn:
            await conn.execute(drop_schemas(schema))


def write(results: list[dict[str, Any]]) -> None:
    RESULTS.mkdir(exist_ok=True)
    machine = {"cpus": os.cpu_count(), "platform": platform.platform()}
    (RESULTS / "fleet_loading.json").write_text(json.dumps({"machine": machine, "runs": results}, indent=2))
    lines = [
        "# Fleet loading (meter-sim's fleet read and build)",
        "",
        f"Machine: {machine['cpus']} CPUs, {machine['platform']} (shared). "
        "`uv run python bench/bench_fleet_loading.py --meters N --shards S`.",
        "Row by row = every leaf meter and DER read as a row and an object, `build_fleet` over the objects (the "
        "read before 2026-12-04); columnar = `load_fleet` (one bytea per column, numpy) and `build_fleet_from`. "
        "Same world, same run, fleets identical. Seconds are wall (read + build), CPU is this process's; the "
        "PostgreSQL side of the read is the rest of the wall time.",
        "",
        "| meters | shards | leaf rows | row by row: read + build s (CPU s) | columnar: read + build s (CPU s) "
        "| speed-up | load avg |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['meters']:,} | {r['shards']} | {r['leaf_rows']:,} | {r['row_read_s']} + {r['row_build_s']} "
            f"({r['row_cpu_s']}) | {r['column_read_s']} + {r['column_build_s']} ({r['column_cpu_s']}) | "
            f"{r['speedup']}× | {r['load_average']:.1f} |"
        )
    (RESULTS / "fleet_loading.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--meters", type=int, nargs="+", default=[10_000])
    parser.add_argument("--shards", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    results = [await bench(m, s) for m in args.meters for s in args.shards]
    write(results)


if __name__ == "__main__":
    asyncio.run(main())
