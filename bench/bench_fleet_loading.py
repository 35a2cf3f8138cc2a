"""Benchmark: meter-sim's fleet query (``fleet_repository.load_fleet_rows``), before and after making it linear.

The query before (kept below as ``_OLD_METERS``) numbered the feeders in a window-function CTE and filtered
on ``position % shards = shard``; the planner estimated that filter at one row and looped every
transformer over every meter, so loading grew with the square of the fleet. Now the shard's transformers
and the leaf meters are read in two linear queries and joined in Python. Both run in the same process against the same scratch world
(homes under transformers of 20 meters, 10 transformers a feeder, 1 % of the meters apartment parents
with two child meters each, 1 % offline), with ``ANALYZE`` done; the rows must be identical.

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
import secrets
import sys
import time
from pathlib import Path
from typing import Any

from psycopg.rows import dict_row

from gridsim_meter_sim.domain import MeterRow
from gridsim_meter_sim.fleet_repository import load_fleet_rows
from gridsim_shared.db import apply_migrations, connect, open_pool
from gridsim_shared.settings import DbSettings

sys.path.insert(0, str(Path(__file__).parent))
from bench_meter_sim import _insert_world

RESULTS = Path(__file__).parent / "results"
DB_URL = os.environ.get("GRIDSIM_DB__URL", "postgresql://postgres@127.0.0.1:5432/test")
PER_TRANSFORMER = 20

# The query as it was (services/meter-sim fleet_repository before the fix), for the comparison only.
_OLD_METERS = """
with feeders as (
    select id, (row_number() over (order by id) - 1) as position
    from grid_nodes where level = 'feeder'
)
select m.id as meter_id, m.code as meter_code,
       er.type as er_type, er.kind as er_kind, er.profile as er_profile,
       m.load_factor_consumption, m.load_factor_production,
       m.status in ('online', 'tampered') as online,
       coalesce(m.latitude, er.latitude, t.latitude, f.latitude, u.latitude, 0) as latitude,
       coalesce(m.longitude, er.longitude, t.longitude, f.longitude, u.longitude, 0) as longitude,
       t.id as transformer_id, t.code as transformer_code, t.capacity_kva as transformer_kva,
       f.code as feeder_code, u.code as utility_code
from meters m
join energy_resources er on er.id = m.er_id
left join meters parent on parent.id = m.parent_id
join grid_nodes t on t.id = coalesce(m.transformer_id, parent.transformer_id) and t.level = 'transformer'
join grid_nodes f on f.id = t.parent_id and f.level = 'feeder'
join grid_nodes u on u.id = f.parent_id and u.level = 'utility'
join feeders on feeders.id = f.id
where feeders.position %% %(shards)s = %(shard)s
  and not exists (select 1 from meters child where child.parent_id = m.id)
order by t.id, m.id
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


async def _old_rows(pool: Any, shard: int, shards: int) -> list[MeterRow]:
    async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_OLD_METERS, {"shard": shard, "shards": shards})
        return [MeterRow(**row) for row in await cur.fetchall()]


async def bench(meters: int, shards: int) -> dict[str, Any]:
    schema = f"bench_fleet_{secrets.token_hex(4)}"
    await apply_migrations(DB_URL, schema)
    try:
        async with await connect(DB_URL, schema) as conn:
            await _insert_world(conn, meters, PER_TRANSFORMER)
            await _insert_children(conn, meters)
            await conn.commit()
        async with open_pool(DbSettings(url=DB_URL, schema_name=schema)) as pool:
            new_s = old_s = 0.0
            rows = 0
            for shard in range(shards):
                started = time.perf_counter()
                new, _ders = await load_fleet_rows(pool, shard, shards)
                new_s += time.perf_counter() - started
                started = time.perf_counter()
                old = await _old_rows(pool, shard, shards)
                old_s += time.perf_counter() - started
                assert repr(new) == repr(old), f"shard {shard}/{shards}: the rows differ"
                rows += len(new)
        return {
            "meters": meters,
            "shards": shards,
            "leaf_rows": rows,
            "old_meter_query_s": round(old_s, 3),
            "new_load_fleet_rows_s": round(new_s, 3),
            "speedup": round(old_s / new_s, 1),
            "identical": True,
            "load_average": os.getloadavg()[0],
        }
    finally:
        async with await connect(DB_URL, "public", autocommit=True) as conn:
            await conn.execute(f"drop schema if exists {schema} cascade")


def write(results: list[dict[str, Any]]) -> None:
    RESULTS.mkdir(exist_ok=True)
    machine = {"cpus": os.cpu_count(), "platform": platform.platform()}
    (RESULTS / "fleet_loading.json").write_text(json.dumps({"machine": machine, "runs": results}, indent=2))
    lines = [
        "# Fleet loading (meter-sim's fleet query)",
        "",
        f"Machine: {machine['cpus']} CPUs, {machine['platform']}. `uv run python bench/bench_fleet_loading.py`.",
        "Old = the window-function CTE filtered on `position % shards` (meter rows only); new = "
        "`load_fleet_rows` (transformers and leaf meters read apart, joined in Python; meter rows and their DERs). Same world, same run; "
        "the meter rows are identical.",
        "",
        "| meters | shards | leaf rows | old query s | new load s | speed-up | load avg |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['meters']:,} | {r['shards']} | {r['leaf_rows']:,} | {r['old_meter_query_s']} | "
            f"{r['new_load_fleet_rows_s']} | {r['speedup']}× | {r['load_average']:.1f} |"
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
