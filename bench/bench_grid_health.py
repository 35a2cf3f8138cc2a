"""Benchmark: what supply state and cumulative registers add to meter-sim's step (docs/grid-health.md).

For a fleet of realistic homes (a third with PV, as in bench_meter_sim.py) one interval of the step's
compute is ``domain.simulate`` and ``Publisher.prepare`` (columnar batch JSON; ``--per-meter`` adds the
per-meter messages). With grid health the engine also runs ``GridHealth.apply`` (the supply plan's cut:
here an outage of 10 % of the meters and 1 % disconnected; the registers' sum) and encodes the three
register columns. Baseline and health intervals alternate, so a load change hits both alike; medians.

Then the on-demand read: meter-sim (demo world, 150 meters) and the gateway run in-process against the
broker and database of ``GRIDSIM_MQTT__URL`` / ``GRIDSIM_DB__URL`` (a scratch schema, dropped after);
``--reads`` reads of one meter each over MQTT (``cmd/meter-sim/read_meter``) and over HTTP
(``GET /meter/{meter}/read``, through the ASGI app), timed from request to answer. ``--no-read`` skips it.

Writes ``bench/results/grid_health.json`` and ``.md``.

    uv run python bench/bench_grid_health.py [--meters 10000] [--intervals 30] [--reads 50]
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

from bench_meter_sim import synthetic_fleet

from gridsim_gateway.main import create_app
from gridsim_meter_sim import domain
from gridsim_meter_sim.__main__ import serve as serve_meter_sim
from gridsim_meter_sim.grid_health import GridHealth
from gridsim_meter_sim.publisher import Publisher
from gridsim_meter_sim.registers import Registers
from gridsim_meter_sim.supply import OutageRow, SupplyPlan
from gridsim_shared.bus import Bus
from gridsim_shared.commands import meter_sim
from gridsim_shared.db import apply_migrations, connect, drop_schemas
from gridsim_shared.settings import DbSettings, MqttSettings, Settings, SimSettings
from gridsim_shared.testing import gateway_client, running

RESULTS = Path(__file__).parent / "results"
MQTT_URL = os.environ.get("GRIDSIM_MQTT__URL", "mqtt://127.0.0.1:1883")
DB_URL = os.environ.get("GRIDSIM_DB__URL", "postgresql://postgres@127.0.0.1:5432/test")


class _Bus:
    base = "bench"


def run(meters: int, intervals: int, *, per_meter: bool) -> dict[str, Any]:
    fleet = synthetic_fleet(meters)
    publisher = Publisher(_Bus(), per_meter=per_meter)  # type: ignore[arg-type]
    start = datetime(2025, 6, 21, 1, 0, tzinfo=UTC)
    ids = fleet.meter_id.tolist()
    outage = OutageRow(1, "fault", start, None, True, tuple(ids[: meters // 10]))
    health = GridHealth(None, None)  # type: ignore[arg-type]  # apply() does no I/O
    health.plan = SupplyPlan(fleet, [outage], ids[meters // 10 : meters // 10 + meters // 100])
    health.registers = Registers.for_fleet(fleet, None, None)

    def baseline(when: datetime) -> None:
        publisher.prepare(fleet, domain.simulate(fleet, when, 60))

    def with_health(when: datetime) -> None:
        readings = health.apply(domain.simulate(fleet, when, 60))
        assert health.registers is not None
        publisher.prepare(fleet, readings, health.registers.columns())

    def apply_only(when: datetime, readings: domain.Readings) -> float:
        t = time.perf_counter()
        health.apply(readings)
        assert health.registers is not None
        health.registers.columns()
        return time.perf_counter() - t

    baseline(start - timedelta(minutes=1))  # warm-up: cloud table, layout
    with_health(start - timedelta(minutes=1))
    base_s, health_s, apply_s = [], [], []
    for i in range(intervals):
        when = start + timedelta(minutes=i)
        t = time.perf_counter()
        baseline(when)
        base_s.append(time.perf_counter() - t)
        t = time.perf_counter()
        with_health(when)
        health_s.append(time.perf_counter() - t)
        apply_s.append(apply_only(when, domain.simulate(fleet, when, 60)))
    base, full = statistics.median(base_s), statistics.median(health_s)
    return {
        "meters": meters,
        "intervals": intervals,
        "per_meter_messages": per_meter,
        "step_ms": round(base * 1000, 2),
        "step_with_health_ms": round(full * 1000, 2),
        "apply_ms": round(statistics.median(apply_s) * 1000, 3),
        "overhead_fraction": round((full - base) / base, 4),
        "apply_fraction": round(statistics.median(apply_s) / base, 4),
    }


async def bench_read(reads: int) -> dict[str, Any]:
    """Median, p95 and worst on-demand read over MQTT and HTTP (milliseconds)."""
    schema, base = f"bench_gh_{secrets.token_hex(4)}", f"bench-{secrets.token_hex(4)}"
    await apply_migrations(DB_URL, schema)
    settings = Settings(
        mqtt=MqttSettings(url=MQTT_URL, base_topic=base),
        db=DbSettings(url=DB_URL, schema_name=schema),
        sim=SimSettings(autostart=False, demo_world=True, publish="batch"),
    )
    try:
        async with (
            Bus(settings.mqtt, "bench", "0") as bus,
            running(serve_meter_sim, settings=settings),
            gateway_client(create_app(settings)) as http,
        ):
            await bus.call(meter_sim.STEP, meter_sim.STEP.build(intervals=5), timeout=120)
            meters = await bus.call(meter_sim.LIST_METERS, meter_sim.LIST_METERS.build(limit=200), timeout=30)
            codes = [m.meter_id for m in meters if not m.children and m.er_id is not None][:reads]
            mqtt_ms, http_ms = [], []
            for i in range(reads):
                code = codes[i % len(codes)]
                t = time.perf_counter()
                await bus.call(meter_sim.READ_METER, meter_sim.READ_METER.build(meter=code), timeout=10)
                mqtt_ms.append((time.perf_counter() - t) * 1000)
                t = time.perf_counter()
                response = await http.get(f"/meter/{code}/read")
                http_ms.append((time.perf_counter() - t) * 1000)
                response.raise_for_status()
    finally:
        async with await connect(DB_URL, "public", autocommit=True) as conn:
            await conn.execute(drop_schemas(schema))

    def stats(values: list[float]) -> dict[str, float]:
        ordered = sorted(values)
        return {
            "median_ms": round(statistics.median(ordered), 1),
            "p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))], 1),
            "max_ms": round(ordered[-1], 1),
        }

    return {"reads": reads, "mqtt": stats(mqtt_ms), "http": stats(http_ms)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=10_000)
    parser.add_argument("--intervals", type=int, default=30)
    parser.add_argument("--reads", type=int, default=50)
    parser.add_argument("--no-read", action="store_true")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    rows = [run(args.meters, args.intervals, per_meter=p) for p in (False, True)]
    read = None if args.no_read else asyncio.run(bench_read(args.reads))
    result: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "load_average_1m": round(load, 2),
        "runs": rows,
        "on_demand_read": read,
        "load_average_1m_end": round(os.getloadavg()[0], 2),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "grid_health.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# Grid health overhead on meter-sim's step",
        "",
        f"{result['when']}, {result['machine']}, load average {result['load_average_1m']} (1 min) at start.",
        "",
        "| meters | per-meter messages | step (ms) | step with supply + registers (ms) | apply alone (ms) | overhead |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['meters']:,} | {'yes' if r['per_meter_messages'] else 'no'} | {r['step_ms']} | "
        f"{r['step_with_health_ms']} | {r['apply_ms']} | {r['overhead_fraction']:.2%} |"
        for r in rows
    ]
    lines += [
        "",
        "Overhead = (step with − step) / step, medians of alternating intervals; apply alone = the supply",
        "cut and the registers' sum and rounding (the rest is encoding three more columns).",
    ]
    if read is not None:
        lines += [
            "",
            f"On-demand read of a meter (demo world, {read['reads']} reads each; load average"
            f" {result['load_average_1m_end']} at the end):",
            "",
            "| over | median (ms) | p95 (ms) | max (ms) |",
            "|---|---|---|---|",
            *(
                f"| {name} | {read[key]['median_ms']} | {read[key]['p95_ms']} | {read[key]['max_ms']} |"
                for name, key in (
                    ("MQTT `cmd/meter-sim/read_meter`", "mqtt"),
                    ("HTTP `GET /meter/{m}/read`", "http"),
                )
            ),
        ]
    (RESULTS / "grid_health.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
