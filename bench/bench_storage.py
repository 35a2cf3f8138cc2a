"""Benchmark: storage engines — plain PostgreSQL tables vs TimescaleDB hypertables and continuous aggregates.

On one TimescaleDB server (both engines on the same PostgreSQL, so only the storage differs) two scratch
schemas are migrated: ``plain`` without the ``*.timescale.sql`` migrations (ordinary tables, as on plain
PostgreSQL) and ``timescale`` with them. For each:

1. ``ingest`` — one-minute readings of ``--meters`` meters over ``--days`` days, written the way the
   aggregator writes them: ``repository.insert_readings`` (binary COPY, one committed transaction per
   20,000 readings, the aggregator's default flush). Durable readings/s = rows / wall time. Values have a
   meter's register resolution (kWh to 1 Wh, V to 0.1, A to 0.01, power factor to 0.001), on a daily load
   shape with seeded noise, so compression sees data like a meter's.
2. ``rollups`` — the 15-minute, hourly and daily rollups of all of it: on plain the aggregator's SQL
   (``roll_minutes``, ``roll_coarser``), on TimescaleDB a refresh of the continuous aggregates.
3. ``storage`` — bytes per meter-month of raw rows + rollups (tables, TOAST and indexes; hypertables with
   all their chunks), then, on TimescaleDB, again after compressing every chunk (raw and 15-minute).
4. ``queries`` — median of 30 runs (different meters, warm cache): a month bill (a meter's month of
   ``meter_data_1d``) and a raw day stream (a meter's 1,440 readings of one day, as
   ``GET /meter/stream``), before and after compression.
5. ``year`` — the same for ``--year-meters`` meters over 365 days, on TimescaleDB compressed (and on plain,
   for comparison).

Uses ``GRIDSIM_BENCH_DATABASE_URL`` (default: the TimescaleDB cluster of ``.ci/run``,
``postgresql://postgres@127.0.0.1:5433/test``); scratch schemas are dropped afterwards. Writes
``bench/results/storage.json`` and ``.md``. The issue's sizes (1,000 meters x 30 days) are
``--meters 1000``; the defaults are smaller because this machine is shared.

    uv run python bench/bench_storage.py [--meters 100] [--days 30] [--year-meters 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import statistics
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from psycopg import sql

from gridsim_aggregator import repository
from gridsim_shared.copy_binary import encode_readings, timestamps_us
from gridsim_shared.db import apply_migrations, connect, drop_schemas

URL = os.environ.get("GRIDSIM_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5433/test")
RESULTS = Path(__file__).parent / "results"
START = datetime(2025, 1, 1, tzinfo=UTC)
FLUSH_ROWS = 20_000
MINUTES_PER_DAY = 1440
RAW = ["meter_data"]
ROLLUPS = ["meter_data_15m", "meter_data_1h", "meter_data_1d"]
Conn = psycopg.AsyncConnection[Any]


def _day_of_readings(day: int, meters: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """One day of one-minute readings for ``meters`` meters: (ts µs, meter id, values (n, 8))."""
    minutes = np.arange(MINUTES_PER_DAY)
    hour = minutes / 60.0
    # A home's load: base, a morning and a larger evening peak (kW), per-meter size and noise.
    shape = 0.3 + 0.8 * np.exp(-(((hour - 7.5) / 1.5) ** 2)) + 1.5 * np.exp(-(((hour - 19.5) / 2.0) ** 2))
    size = rng.uniform(0.5, 2.0, meters)
    kw = np.clip(shape[None, :] * size[:, None] + rng.normal(0, 0.15, (meters, MINUTES_PER_DAY)), 0.05, None)
    solar = np.clip(np.sin((hour - 6) / 12 * np.pi), 0, None)[None, :] * (size[:, None] > 1.2) * 3.0
    pf = np.clip(0.95 + rng.normal(0, 0.01, (meters, MINUTES_PER_DAY)), 0.8, 1.0)
    consumption = np.round(kw / 60, 3)
    production = np.round(solar / 60, 3)
    volts = np.round(230 + rng.normal(0, 2, (meters, MINUTES_PER_DAY)), 1)
    values = np.stack(
        [
            consumption,
            production,
            np.round(consumption / pf, 3),
            production,
            np.round(kw * 1000 / volts, 2),  # A
            volts,
            np.round(kw * np.tan(np.arccos(pf)), 3),  # kVAR
            np.round(pf, 3),
        ],
        axis=-1,
    ).reshape(-1, 8)
    base = timestamps_us(START + timedelta(days=day))
    ts = np.tile(base + minutes.astype(np.int64) * 60_000_000, meters)
    ids = np.repeat(np.arange(1, meters + 1, dtype=np.int64), MINUTES_PER_DAY)
    order = np.argsort(ts, kind="stable")  # as they arrive: interval by interval
    return ts[order], ids[order], values[order]


async def _ingest(conn: Conn, meters: int, days: int, seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    rows = 0
    busy = 0.0
    for day in range(days):
        ts, ids, values = _day_of_readings(day, meters, rng)
        for start in range(0, len(ts), FLUSH_ROWS):
            part = slice(start, start + FLUSH_ROWS)
            payload = encode_readings(ts[part], ids[part], values[part])
            t0 = time.perf_counter()
            assert await repository.insert_readings(conn, payload)
            busy += time.perf_counter() - t0
            rows += len(ts[part])
    return {"rows": rows, "seconds": round(busy, 2), "readings_per_s": round(rows / busy)}


async def _roll(conn: Conn, timescale: bool, days: int) -> float:
    end = START + timedelta(days=days)
    t0 = time.perf_counter()
    if timescale:
        await repository.refresh_timescale(conn, START, end, (START, end), (START, end))
    else:
        async with conn.transaction():
            await conn.execute("set local work_mem = '64MB'")
            await repository.roll_minutes(conn, START, end)
            await repository.roll_coarser(
                conn, source="15m", target="1h", width="1 hour", start=START, end=end
            )
            await repository.roll_coarser(conn, source="1h", target="1d", width="1 day", start=START, end=end)
    return round(time.perf_counter() - t0, 2)


async def _relation_bytes(conn: Conn, name: str, timescale: bool) -> int:
    """A table's bytes (heap, TOAST, indexes); a hypertable or continuous aggregate with all its chunks."""
    if timescale:
        cur = await conn.execute(
            "select materialization_hypertable_schema || '.' || materialization_hypertable_name "
            "from timescaledb_information.continuous_aggregates "
            "where view_name = %s and to_regclass(format('%%I.%%I', view_schema, view_name)) = to_regclass(%s)",
            (f"{name}_agg", f"{name}_agg"),
        )
        row = await cur.fetchone()
        target = row[0] if row else name
        cur = await conn.execute("select hypertable_size(%s::regclass)", (target,))
        size = (await cur.fetchone() or [0])[0] or 0
        if name != "meter_data":  # + what history keeps (empty here, but it is part of the rollups)
            cur = await conn.execute("select pg_total_relation_size(%s::regclass)", (f"{name}_history",))
            size += (await cur.fetchone() or [0])[0] or 0
        return int(size)
    cur = await conn.execute("select pg_total_relation_size(%s::regclass)", (name,))
    return int((await cur.fetchone() or [0])[0] or 0)


async def _analyzed(conn: Conn, timescale: bool) -> list[str]:
    if not timescale:
        return RAW + ROLLUPS
    cur = await conn.execute(
        "select materialization_hypertable_schema || '.' || materialization_hypertable_name "
        "from timescaledb_information.continuous_aggregates "
        "where to_regclass(format('%I.%I', view_schema, view_name)) = to_regclass(view_name)"
    )
    return RAW + [row[0] for row in await cur.fetchall()]


async def _storage(conn: Conn, timescale: bool, meters: int, days: int) -> dict[str, float]:
    for name in await _analyzed(conn, timescale):  # fresh statistics for the query plans
        await conn.execute(sql.SQL("analyze {}").format(sql.Identifier(*name.split("."))))
    meter_months = meters * days / 30
    raw = sum([await _relation_bytes(conn, n, timescale) for n in RAW])
    rollups = sum([await _relation_bytes(conn, n, timescale) for n in ROLLUPS])
    return {
        "raw_mb_per_meter_month": round(raw / meter_months / 1e6, 3),
        "rollups_mb_per_meter_month": round(rollups / meter_months / 1e6, 3),
        "total_mb_per_meter_month": round((raw + rollups) / meter_months / 1e6, 3),
    }


async def _compress(conn: Conn) -> float:
    t0 = time.perf_counter()
    for name in ("meter_data", "meter_data_15m_agg"):
        await conn.execute(
            "select compress_chunk(c, if_not_compressed => true) from show_chunks(%s::regclass) c", (name,)
        )
    return round(time.perf_counter() - t0, 2)


async def _queries(conn: Conn, meters: int, days: int) -> dict[str, float]:
    """Median ms of a month bill and a raw day stream over 30 runs on different meters and days."""
    rng = np.random.default_rng(7)
    month = START + timedelta(days=30 * int(rng.integers(0, max(1, days // 30))))
    bill: list[float] = []
    day_stream: list[float] = []
    for i in range(31):
        meter = int(rng.integers(1, meters + 1))
        day = START + timedelta(days=int(rng.integers(0, days)))
        t0 = time.perf_counter()
        cur = await conn.execute(
            "select coalesce(sum(consumption_kwh), 0), coalesce(sum(production_kwh), 0), sum(readings) "
            "from meter_data_1d where meter_id = %s and bucket >= %s and bucket < %s",
            (meter, month, month + timedelta(days=30)),
        )
        await cur.fetchall()
        t1 = time.perf_counter()
        cur = await conn.execute(
            "select ts, consumption_kwh, production_kwh, consumption_kvah, production_kvah, avg_current, "
            "avg_voltage, reactive_power_kvar, power_factor from meter_data "
            "where meter_id = %s and ts >= %s and ts < %s order by ts",
            (meter, day, day + timedelta(days=1)),
        )
        found = await cur.fetchall()
        t2 = time.perf_counter()
        assert len(found) == MINUTES_PER_DAY
        if i:  # the first run warms the plan cache
            bill.append((t1 - t0) * 1000)
            day_stream.append((t2 - t1) * 1000)
    return {
        "month_bill_ms": round(statistics.median(bill), 2),
        "day_stream_ms": round(statistics.median(day_stream), 2),
    }


async def _engine(timescale: bool, meters: int, days: int, *, compare_uncompressed: bool) -> dict[str, Any]:
    schema = f"bench_storage_{'ts' if timescale else 'pg'}_{secrets.token_hex(3)}"
    await apply_migrations(URL, schema, timescale=timescale)
    result: dict[str, Any] = {"meters": meters, "days": days}
    try:
        async with await connect(URL, schema) as conn:
            assert await repository.timescale_enabled(conn) is timescale
            await conn.commit()
            result["ingest"] = await _ingest(conn, meters, days, seed=meters * 1000 + days)
            result["rollup_s"] = await _roll(conn, timescale, days)
            await conn.set_autocommit(True)
            if compare_uncompressed or not timescale:
                result["storage"] = await _storage(conn, timescale, meters, days)
                result["queries"] = await _queries(conn, meters, days)
            if timescale:
                result["compress_s"] = await _compress(conn)
                result["storage_compressed"] = await _storage(conn, timescale, meters, days)
                result["queries_compressed"] = await _queries(conn, meters, days)
    finally:
        async with await connect(URL, autocommit=True) as conn:
            await conn.execute(drop_schemas(schema))
    return result


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.1f} / {five:.1f} / {fifteen:.1f}"


def _markdown(report: dict[str, Any]) -> str:
    month, year = report["month"], report["year"]
    pg, ts = month["postgres"], month["timescale"]
    lines = [
        "# Storage engines: plain PostgreSQL vs TimescaleDB",
        "",
        f"`uv run python bench/bench_storage.py --meters {pg['meters']} --days {pg['days']} "
        f"--year-meters {year['timescale']['meters']} --year-days {year['timescale']['days']}` on {report['machine']}, "
        f"{report['server']}, {report['date']}. Load average (1/5/15 min) at start "
        f"{report['load_start']}, at end {report['load_end']}: the machine was shared, so absolute times "
        "are pessimistic; the two engines ran one after the other under the same load.",
        "",
        f"## {pg['meters']} meters x {pg['days']} days of one-minute readings "
        f"({pg['ingest']['rows']:,} rows)",
        "",
        "| | plain PostgreSQL | TimescaleDB | TimescaleDB compressed |",
        "| --- | ---: | ---: | ---: |",
        f"| durable ingest, readings/s | {pg['ingest']['readings_per_s']:,} | "
        f"{ts['ingest']['readings_per_s']:,} | |",
        f"| raw, MB per meter-month | {pg['storage']['raw_mb_per_meter_month']} | "
        f"{ts['storage']['raw_mb_per_meter_month']} | {ts['storage_compressed']['raw_mb_per_meter_month']} |",
        f"| rollups (15 min, 1 h, 1 day), MB per meter-month | {pg['storage']['rollups_mb_per_meter_month']} | "
        f"{ts['storage']['rollups_mb_per_meter_month']} | "
        f"{ts['storage_compressed']['rollups_mb_per_meter_month']} |",
        f"| raw + rollups, MB per meter-month | {pg['storage']['total_mb_per_meter_month']} | "
        f"{ts['storage']['total_mb_per_meter_month']} | {ts['storage_compressed']['total_mb_per_meter_month']} |",
        f"| month bill (a meter's month of `meter_data_1d`), ms | {pg['queries']['month_bill_ms']} | "
        f"{ts['queries']['month_bill_ms']} | {ts['queries_compressed']['month_bill_ms']} |",
        f"| raw day stream (1,440 readings), ms | {pg['queries']['day_stream_ms']} | "
        f"{ts['queries']['day_stream_ms']} | {ts['queries_compressed']['day_stream_ms']} |",
        f"| rollups built, s | {pg['rollup_s']} | {ts['rollup_s']} | compressing: {ts['compress_s']} |",
        "",
    ]
    ratio_raw = ts["storage"]["raw_mb_per_meter_month"] / ts["storage_compressed"]["raw_mb_per_meter_month"]
    ratio_all = (
        ts["storage"]["total_mb_per_meter_month"] / ts["storage_compressed"]["total_mb_per_meter_month"]
    )
    ratio_pg = (
        pg["storage"]["total_mb_per_meter_month"] / ts["storage_compressed"]["total_mb_per_meter_month"]
    )
    lines += [
        f"Compression ratio: raw {ratio_raw:.1f}x, raw + rollups {ratio_all:.1f}x "
        f"({ratio_pg:.1f}x smaller than plain PostgreSQL).",
        "",
    ]
    ypg, yts = year["postgres"], year["timescale"]
    lines += [
        f"## One year: {yts['meters']} meters x {yts['days']} days ({yts['ingest']['rows']:,} rows)",
        "",
        "| | plain PostgreSQL | TimescaleDB compressed |",
        "| --- | ---: | ---: |",
        f"| durable ingest, readings/s | {ypg['ingest']['readings_per_s']:,} | "
        f"{yts['ingest']['readings_per_s']:,} |",
        f"| raw + rollups, MB per meter-month | {ypg['storage']['total_mb_per_meter_month']} | "
        f"{yts['storage_compressed']['total_mb_per_meter_month']} |",
        f"| month bill, ms | {ypg['queries']['month_bill_ms']} | {yts['queries_compressed']['month_bill_ms']} |",
        f"| raw day stream, ms | {ypg['queries']['day_stream_ms']} | "
        f"{yts['queries_compressed']['day_stream_ms']} |",
        "",
        "How: ingest is one COPY transaction per 20,000 readings with its commit (durable), as the",
        "aggregator flushes; on TimescaleDB each row is routed to its day's chunk. Rollups are built once",
        "for the whole range here (the aggregator does it window by window). Compression: segment by meter,",
        "order by time, raw chunks and the 15-minute aggregate's chunks. Sizes include indexes.",
        "",
    ]
    return "\n".join(lines)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=100)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--year-meters", type=int, default=10)
    parser.add_argument("--year-days", type=int, default=365, help="fewer only to try the script out")
    args = parser.parse_args()
    async with await connect(URL, autocommit=True) as conn:
        cur = await conn.execute("select version()")
        server = str((await cur.fetchone() or ["?"])[0]).split(" on ")[0]
        cur = await conn.execute("select extversion from pg_extension where extname = 'timescaledb'")
        found = await cur.fetchone()
    if found is None:
        msg = f"{URL} has no TimescaleDB: see scripts/install-timescaledb.sh"
        raise SystemExit(msg)
    report: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "server": f"{server}, TimescaleDB {found[0]}",
        "load_start": _load(),
        "month": {},
        "year": {},
    }
    for engine, timescale in (("postgres", False), ("timescale", True)):
        print(f"{engine}: {args.meters} meters x {args.days} days (load {_load()})", flush=True)
        report["month"][engine] = await _engine(timescale, args.meters, args.days, compare_uncompressed=True)
        print(json.dumps(report["month"][engine]), flush=True)
    for engine, timescale in (("postgres", False), ("timescale", True)):
        print(f"{engine}: {args.year_meters} meters x {args.year_days} days (load {_load()})", flush=True)
        report["year"][engine] = await _engine(
            timescale, args.year_meters, args.year_days, compare_uncompressed=False
        )
        print(json.dumps(report["year"][engine]), flush=True)
    report["load_end"] = _load()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "storage.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / "storage.md").write_text(_markdown(report))
    print(_markdown(report))


if __name__ == "__main__":
    asyncio.run(main())
