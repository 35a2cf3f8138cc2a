"""Benchmark: meter-sim's tick compute and its step-mode publishing rate through the broker.

1. ``compute`` — one interval of :func:`gridsim_meter_sim.domain.simulate` for 1k, 10k and 100k realistic
   homes (a third with rooftop PV), and the encoding of that interval into columnar batch JSON.
   Target: 100k meters under 20 ms.
2. ``publish`` — the service's own ``Engine.step`` (fleet loaded from PostgreSQL, simulate, encode,
   publish at QoS 1, wait for every PUBACK) against the local Mosquitto, with a subscriber in another
   process counting what arrives. Batched messages, one per transformer. Target: 1,000,000 readings/s.

Uses ``GRIDSIM_MQTT__URL`` / ``GRIDSIM_DB__URL`` (defaults 127.0.0.1:1883 and database ``test``) with a
unique base topic and a scratch schema dropped afterwards. Writes ``bench/results/meter_sim.json`` and .md.

    uv run python bench/bench_meter_sim.py [--meters 100000] [--intervals 20]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import platform
import secrets
import statistics
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from gridsim_meter_sim import domain
from gridsim_meter_sim.domain import DerRow, MeterRow
from gridsim_meter_sim.engine import Engine
from gridsim_meter_sim.publisher import encode_batches
from gridsim_shared import channels
from gridsim_shared.bus import Bus
from gridsim_shared.db import apply_migrations, connect, drop_schemas, open_pool
from gridsim_shared.settings import DbSettings, MqttSettings, Settings, SimSettings

RESULTS = Path(__file__).parent / "results"
MQTT_URL = os.environ.get("GRIDSIM_MQTT__URL", "mqtt://127.0.0.1:1883")
DB_URL = os.environ.get("GRIDSIM_DB__URL", "postgresql://postgres@127.0.0.1:5432/test")
# A household: LED bulbs ×6, fan, TV, fridge, microwave, washing machine, AC (catalogue ids 1,2,3,4,6,7,8).
HOME = [
    ("lighting", 0.00017, 0.9, 6),
    ("cooling", 0.00125, 0.85, 1),
    ("evening", 0.002, 0.85, 1),
    ("fridge", 0.00333, 0.85, 1),
    ("cooking", 0.01667, 0.98, 1),
    ("laundry", 0.00833, 0.85, 1),
    ("ac", 0.025, 0.85, 1),
]


# ------------------------------------------------------------------------------------------ compute
def synthetic_fleet(n: int, per_transformer: int = 100) -> domain.Fleet:
    meters, ders = [], []
    for i in range(1, n + 1):
        t = (i - 1) // per_transformer
        prosumer = i % 3 == 0
        meters.append(
            MeterRow(i, f"MTR-{i:06d}", "prosumer" if prosumer else "consumer", "home", "realistic", 1.0,
                     1.0 if prosumer else 0.0, True, 37.70 + (i % 97) * 0.002, -122.50 + (i % 89) * 0.002,
                     t, f"t{t}", 5.0 * per_transformer, "f1", "u1")
        )  # fmt: skip
        ders += [DerRow(i, p, "consumption", b, pf, q, None) for p, b, pf, q in HOME]
        if prosumer:
            ders.append(DerRow(i, "solar", "production", 0.02, 1.0, 3, None))
    return domain.build_fleet(42, meters, ders)


def bench_compute(sizes: list[int], repeats: int) -> list[dict[str, Any]]:
    rows = []
    for n in sizes:
        fleet = synthetic_fleet(n)
        start = datetime(2025, 6, 21, 1, 0, tzinfo=UTC)  # 18:00 in San Francisco: evening peak, sun low
        domain.simulate(fleet, start, 60)  # warm-up (cloud table of the day)
        compute, cpu, encode = [], [], []
        for k in range(repeats):
            t0 = time.perf_counter()
            c0 = time.thread_time()
            readings = domain.simulate(fleet, start + timedelta(minutes=k + 1), 60)
            cpu.append((time.thread_time() - c0) * 1000)
            t1 = time.perf_counter()
            encode_batches(fleet, readings)
            t2 = time.perf_counter()
            compute.append((t1 - t0) * 1000)
            encode.append((t2 - t1) * 1000)
        rows.append(
            {
                "meters": n,
                "tick_ms_median": round(statistics.median(compute), 2),
                "tick_ms_p95": round(sorted(compute)[int(0.95 * (len(compute) - 1))], 2),
                # CPU time of the tick's thread: what a loaded machine inflates least (wall time counts the
                # waits for a core too).
                "tick_cpu_ms_median": round(statistics.median(cpu), 2),
                "encode_ms_median": round(statistics.median(encode), 2),
            }
        )
        print(
            f"compute {n:>7} meters: tick {rows[-1]['tick_ms_median']} ms, encode {rows[-1]['encode_ms_median']} ms"
        )
    return rows


# ------------------------------------------------------------------------------------------ publish
def _subscriber(base: str, per_message: int, expected: int, ready: Any, out: Any) -> None:
    """Child process: count readings arriving on the batch topics (decoding every 100th to check)."""

    async def main() -> None:
        state = {"messages": 0, "readings": 0, "checked": 0, "first": 0.0, "last": 0.0}
        done = asyncio.Event()

        async def on(_topic: str, payload: bytes, ack: Any) -> None:
            ack()
            now = time.perf_counter()
            if not state["messages"]:
                state["first"] = now
            state["messages"] += 1
            if state["messages"] % 100 == 1:
                assert len(orjson.loads(payload)["meter_id"]) == per_message
                state["checked"] += 1
            state["readings"] += per_message
            state["last"] = now
            if state["readings"] >= expected:
                done.set()

        async with Bus(MqttSettings(url=MQTT_URL, base_topic=base), "bench-subscriber", "0") as bus:
            await bus.subscribe_raw(channels.BATCH.template.filter(base), on)
            await asyncio.sleep(0.2)
            ready.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), 120)
        out.put(state)

    asyncio.run(main())


async def _insert_world(conn: Any, meters: int, per_transformer: int) -> None:
    transformers = meters // per_transformer
    feeders = max(1, transformers // 10)
    await conn.execute("insert into grid_nodes (code, name, level) values ('u1', 'Utility', 'utility')")
    await conn.execute(
        "insert into grid_nodes (code, name, level, parent_id) select 'f' || g, 'Feeder', 'feeder', "
        "(select id from grid_nodes where code = 'u1') from generate_series(1, %s) g",
        (feeders,),
    )
    await conn.execute(
        "insert into grid_nodes (code, name, level, parent_id, capacity_kva) select 't' || g, 'Transformer', "
        "'transformer', (select id from grid_nodes where code = 'f' || (1 + (g - 1) %% %s)), %s "
        "from generate_series(1, %s) g",
        (feeders, 5.0 * per_transformer, transformers),
    )
    await conn.execute(
        "insert into energy_resources (id, name, type, latitude, longitude) select g, 'home ' || g, "
        "case when g %% 3 = 0 then 'prosumer' else 'consumer' end, 37.70 + (g %% 97) * 0.002, "
        "-122.50 + (g %% 89) * 0.002 from generate_series(1, %s) g",
        (meters,),
    )
    await conn.execute(
        "insert into ders (er_id, appliance_id, quantity) select er.id, a.id, case when a.id = 1 then 6 else 1 end "
        "from energy_resources er cross join (values (1), (2), (3), (4), (6), (7), (8)) as a (id)"
    )
    await conn.execute(
        "insert into ders (er_id, appliance_id, quantity) select id, 12, 3 from energy_resources where type = 'prosumer'"
    )
    await conn.execute(
        "insert into meters (code, transformer_id, er_id, load_factor_production) select 'MTR-' || g, "
        "(select id from grid_nodes where code = 't' || (1 + (g - 1) / %s)), g, "
        "case when g %% 3 = 0 then 1 else 0 end from generate_series(1, %s) g",
        (per_transformer, meters),
    )


async def bench_publish(meters: int, per_transformer: int, intervals: int) -> dict[str, Any]:
    schema = f"bench_ms_{secrets.token_hex(4)}"
    base = f"bench-{secrets.token_hex(4)}"
    await apply_migrations(DB_URL, schema)
    settings = Settings(
        mqtt=MqttSettings(url=MQTT_URL, base_topic=base),
        db=DbSettings(url=DB_URL, schema_name=schema),
        sim=SimSettings(publish="batch", autostart=False, demo_world=False, step_ack_timeout_s=5),
    )
    try:
        async with await connect(DB_URL, schema) as conn:
            await _insert_world(conn, meters, per_transformer)
            await conn.commit()
        ctx = mp.get_context("spawn")
        ready, out = ctx.Event(), ctx.Queue()
        expected = meters * intervals
        child = ctx.Process(target=_subscriber, args=(base, per_transformer, expected, ready, out))
        child.start()
        if not ready.wait(180):  # spawning a child that imports numpy is slow on a loaded machine
            msg = "the counting subscriber did not start within 180 s"
            raise RuntimeError(msg)
        async with (
            open_pool(settings.db, name="bench") as pool,
            Bus(settings.mqtt, "meter-sim", "bench") as bus,
        ):
            engine = Engine(settings, bus, pool)
            await engine.start()
            t0 = time.perf_counter()
            await engine._ensure_fleet()
            load_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            result = await engine.step(intervals)
            elapsed = time.perf_counter() - t0
        received = out.get(timeout=150)
        print("subscriber saw", received["messages"], "messages")
        child.join(10)
        sub_span = received["last"] - received["first"]
        row = {
            "meters": meters,
            "meters_per_message": per_transformer,
            "intervals": intervals,
            "fleet_load_s": round(load_s, 2),
            "step_s": round(elapsed, 3),
            "readings_published": result.readings,
            "published_readings_per_s": round(result.readings / elapsed),
            "messages_per_s": round(result.readings / per_transformer / elapsed),
            "readings_received": received["readings"],
            "received_readings_per_s": round(received["readings"] / sub_span) if sub_span > 0 else None,
            "lost": expected - received["readings"],
        }
        print(
            f"publish {meters} meters, {per_transformer}/message: {row['published_readings_per_s']:,} readings/s "
            f"published (acked), {row['readings_received']:,}/{expected:,} received"
        )
        return row
    finally:
        async with await connect(DB_URL, "public") as conn:
            await conn.execute(drop_schemas(schema))
            await conn.commit()


def write(results: dict[str, Any]) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "meter_sim.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [
        "# meter-sim benchmark",
        "",
        f"Machine: {results['machine']['cpus']} CPUs, Python {results['machine']['python']}; run {results['run_at']}; "
        f"load average (1/5/15 min) at start {results['machine'].get('load_start', '?')}.",
        f"Command: `{results.get('command', 'uv run python bench/bench_meter_sim.py')}`.",
        "",
        "## One tick's compute (target: 100k meters under 20 ms)",
        "",
        "| meters | simulate median (ms) | p95 (ms) | simulate CPU median (ms) | encode to batch JSON (ms) |",
        "|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['meters']:,} | {r['tick_ms_median']} | {r['tick_ms_p95']} | {r.get('tick_cpu_ms_median', '')} | "
        f"{r['encode_ms_median']} |"
        for r in results["compute"]
    ]
    lines += [
        "",
        "## Step mode through Mosquitto, batched per transformer, QoS 1 (target: 1,000,000 readings/s)",
        "",
        f"Run {results.get('publish_run_at', results['run_at'])}.",
        "",
        "`Engine.step`: simulate, encode, publish, wait for every PUBACK; a subscriber in another process counts.",
        "",
        "| meters | meters/message | intervals | step (s) | published readings/s | messages/s | received | lost |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['meters']:,} | {r['meters_per_message']} | {r['intervals']} | {r['step_s']} | "
        f"{r['published_readings_per_s']:,} | {r['messages_per_s']:,} | {r['readings_received']:,} | {r['lost']} |"
        for r in results["publish"]
    ]
    lines += [
        "",
        "Notes: the machine is shared (other test suites running at the same time); wall-clock figures vary",
        "by ±40 % between runs on a quiet machine and by far more under load (2026-12-03: load 17, the",
        "100k tick 647 ms wall for 65 ms of CPU): the CPU column is the one to compare. The tick's compute is",
        "`simulate`; `encode` is the columnar JSON of all transformers (orjson, numpy columns). In step mode",
        "the next interval is computed in a worker thread while the broker acknowledges the previous one.",
        "Per-meter messages (`publish=both`) are not in these figures: they go out on meter-sim's bulk",
        "connection (bench_pipeline.py's per-meter rows compare it with `mosquitto_pub`).",
        "",
        "The 100k tick was ~65 ms of CPU (load 17) after the appliance load model (loads.py) replaced the",
        "seed's formula (26.9 ms wall on 2026-11-26, before it). 2026-12-03, same physics bit for bit (every",
        "reading of the demo world and of this fleet over 1,180 ticks with jumps, DST and a flex event",
        "compared equal): event appliances draw once per slot and continuous loads their drift once per 10",
        "minutes (loads._SlotCache: only instances whose slot changed are redrawn), time and weather per",
        "climate instead of per meter, the thermostat balance in place, the per-tick random streams'",
        "meter keys pre-mixed once per fleet, and the flat (seed) side skipped in an all-realistic fleet.",
        "A/B in one window, this fleet, interleaved runs, CPU median of 30 ticks: main 8641283 42.9-51.3 ms,",
        "after 27.3-29.3 ms (load 4.8-10.2); in the bench above 31 ms. The < 20 ms target is",
        "still not met: what is left is array arithmetic over every meter (thermostats ~3 ms, the voltage",
        "model's Box-Muller noise ~4 ms, fridge and continuous loads ~1 ms each, PV ~3 ms).",
        "",
        "2026-12-04, again bit for bit (the same fleets and 1,180-tick comparison, and a test that every memo",
        "stepping minute by minute equals a cold start): the time-of-day tables padded by a day each side so",
        "a lookup needs no modulo per instance (one per climate), the slot memo reading the one bucket of",
        "instances whose slot starts this minute instead of comparing all of them, each compressor's and",
        "thermostat's place in its cycle carried forward by a minute instead of a floating-point modulo",
        "(exact: see loads._CyclePosition), events summed only where running when few have a run, int64",
        "rather than uint64 index arrays (numpy converts those first, at three times the cost), the voltage",
        "model per feeder and per transformer before per meter, random draws in blocks of 16k numbers that",
        "stay in cache between their dozen passes, and per-instance constants every instance shares (a home",
        "fleet's rating, tan phi, setpoint slopes) read as one number instead of an 800 KB array each tick.",
        "A/B in one window, this fleet, interleaved runs, CPU median of 30 ticks: main d9418bf 32.3-34.2 ms vs",
        "21.0-25.2 ms with the first half (load 8.1-13.2); main 5feb7d7 27.0-27.3 ms vs 18.2-18.7 ms with all",
        "of it (load 2.1-2.3); with the encoding run between ticks, as here and in the engine (the tick starts",
        "with the cache the encoding used), 32.7-33.7 ms vs 22.7-23.0 ms (load 15.5-17.5). The < 20 ms target",
        "is met on a quiet machine only when the tick's data is in cache: it stays 21-23 ms of CPU cold and at",
        "load. What is left is memory traffic more than arithmetic (each per-instance array is 800 KB at 100k",
        "meters; a tick streams ~80 of them), and the voltage noise's cosine, ~1.4 ms (glibc's, per number;",
        "another implementation would change the readings' last bits).",
    ]
    (RESULTS / "meter_sim.md").write_text("\n".join(lines) + "\n")


async def amain(args: argparse.Namespace) -> None:
    import sys

    results: dict[str, Any] = {
        "run_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "uv run python bench/bench_meter_sim.py " + " ".join(sys.argv[1:]),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_start": " / ".join(f"{x:.1f}" for x in os.getloadavg()),
        },
        "compute": bench_compute([1_000, 10_000, 100_000], args.repeats),
        "publish": [],
    }
    if args.compute_only:  # keep the publishing figures of the last full run, with their date
        previous = json.loads((RESULTS / "meter_sim.json").read_text())
        results["publish"] = previous["publish"]
        results["publish_run_at"] = previous.get("publish_run_at", previous["run_at"])
    for per in [] if args.compute_only else args.per_message:
        results["publish"].append(await bench_publish(args.meters, per, args.intervals))
    write(results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=100_000)
    parser.add_argument("--intervals", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument(
        "--compute-only", action="store_true", help="only the tick (keeps the last publish rows)"
    )
    parser.add_argument(
        "--per-message", type=int, nargs="+", default=[1000, 100], help="meters per transformer"
    )
    asyncio.run(amain(parser.parse_args()))


if __name__ == "__main__":
    main()
