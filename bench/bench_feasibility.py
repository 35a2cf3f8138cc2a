"""Benchmark: one feasibility check against 10,000 transformers (target: median under 10 ms).

Measures the same check at four depths, so the note can say where the time goes:

1. ``pure``    — ``domain.decide`` over numpy columns (Haversine over all, rank, first that fits);
2. ``engine``  — the service's decision against PostgreSQL (version check, fresh loads of candidates);
3. ``service`` — ``bus.call(feasibility.CHECK, request)`` over MQTT to the running service;
4. ``gateway`` — ``POST /feasibility-check`` through the gateway app in-process (HTTP parsing, validation,
   MQTT, service, DB).

Uses the broker and database of ``GRIDSIM_MQTT__URL`` / ``GRIDSIM_DB__URL`` (defaults: 127.0.0.1, database
``test``) in a scratch schema that is dropped afterwards. Writes ``bench/results/feasibility.json`` and .md.

    uv run python bench/bench_feasibility.py [--transformers 10000] [--checks 500]
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
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np

from gridsim_feasibility import domain, engine
from gridsim_feasibility.__main__ import serve as serve_feasibility
from gridsim_gateway.main import create_app
from gridsim_shared.bus import Bus
from gridsim_shared.commands import feasibility
from gridsim_shared.db import apply_migrations, connect, drop_schemas, open_pool
from gridsim_shared.settings import DbSettings, MqttSettings, Settings, SimSettings
from gridsim_shared.testing import gateway_client, running

RESULTS = Path(__file__).parent / "results"
# San Francisco's land area, roughly: 37.70–37.81 N, 122.51–122.36 W.
LAT = (37.70, 37.81)
LON = (-122.51, -122.36)
CAPACITIES = np.array([25.0, 50.0, 75.0, 100.0, 167.0, 250.0, 500.0])


def _stats(samples_s: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in samples_s)
    return {
        "median_ms": round(statistics.median(ms), 4),
        "p95_ms": round(ms[int(0.95 * (len(ms) - 1))], 4),
        "min_ms": round(ms[0], 4),
        "max_ms": round(ms[-1], 4),
        "n": len(ms),
    }


def _world(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    capacity = rng.choice(CAPACITIES, n)
    return {
        "lat": rng.uniform(*LAT, n),
        "lon": rng.uniform(*LON, n),
        "capacity": capacity,
        # Half-loaded on average, some nearly full: the nearest is not always the answer.
        "consumption": capacity * 0.8 * rng.beta(2, 2, n),
        "production": capacity * 0.3 * rng.beta(2, 3, n),
    }


def _requests(count: int, rng: np.random.Generator) -> list[dict[str, Any]]:
    out = []
    for i in range(count):
        prosumer = i % 3 == 0
        out.append(
            {
                "type": "prosumer" if prosumer else "consumer",
                "requested_consumption_kW": float(rng.uniform(2, 20)),
                "requested_production_kW": float(rng.uniform(1, 8)) if prosumer else 0.0,
                "latitude": float(rng.uniform(*LAT)),
                "longitude": float(rng.uniform(*LON)),
            }
        )
    return out


def bench_pure(
    world: dict[str, np.ndarray], requests: list[dict[str, Any]], radius_m: float
) -> dict[str, Any]:
    n = world["lat"].size
    positions = domain.Positions.build(list(range(1, n + 1)), world["lat"].tolist(), world["lon"].tolist())
    loads = domain.Loads(world["capacity"], world["consumption"], world["production"])
    limits = domain.Limits()
    samples, feasible = [], 0
    for body in requests:
        request = domain.Request(
            body["latitude"],
            body["longitude"],
            body["requested_consumption_kW"],
            body["requested_production_kW"],
        )
        start = time.perf_counter()
        _, decision = domain.decide(positions, loads, request, radius_m, limits)
        samples.append(time.perf_counter() - start)
        feasible += decision.feasible
    return {**_stats(samples), "feasible_share": round(feasible / len(requests), 3)}


async def _load_world(settings: Settings, world: dict[str, np.ndarray]) -> None:
    async with await connect(settings.db.url, settings.db.schema_name, autocommit=True) as conn:
        cur = await conn.execute(
            "with u as (insert into grid_nodes (code, name, level) values ('sf', 'SF', 'utility') returning id)"
            " insert into grid_nodes (code, name, level, parent_id) select 'f1', 'Feeder 1', 'feeder', id from u"
            " returning id"
        )
        feeder = (await cur.fetchone() or (0,))[0]
        async with conn.cursor().copy(
            "copy grid_nodes (code, name, level, parent_id, capacity_kva, city, latitude, longitude,"
            " connected_consumption_kw, connected_production_kw) from stdin"
        ) as copy:
            for i in range(world["lat"].size):
                await copy.write_row(
                    (
                        f"tx-{i + 1}",
                        f"TX-{i + 1}",
                        "transformer",
                        feeder,
                        float(world["capacity"][i]),
                        "San Francisco",
                        float(world["lat"][i]),
                        float(world["lon"][i]),
                        float(world["consumption"][i]),
                        float(world["production"][i]),
                    )
                )
        await conn.execute("analyze grid_nodes")


async def _time(calls: list[Callable[[], Awaitable[Any]]], warmup: int = 20) -> list[float]:
    for call in calls[:warmup]:
        await call()
    samples = []
    for call in calls:
        start = time.perf_counter()
        await call()
        samples.append(time.perf_counter() - start)
    return samples


async def bench_live(
    world: dict[str, np.ndarray], requests: list[dict[str, Any]], radius_m: float
) -> dict[str, Any]:
    mqtt_url = os.environ.get("GRIDSIM_MQTT__URL", "mqtt://127.0.0.1:1883")
    db_url = os.environ.get("GRIDSIM_DB__URL", "postgresql://postgres@127.0.0.1:5432/test")
    suffix = secrets.token_hex(4)
    schema = f"bench_{suffix}"
    settings = Settings(
        mqtt=MqttSettings(url=mqtt_url, base_topic=f"bench-{suffix}"),
        db=DbSettings(url=db_url, schema_name=schema),
        sim=SimSettings(demo_world=False, autostart=False),
    )
    settings.feasibility.radius_m = radius_m
    await apply_migrations(db_url, schema)
    try:
        await _load_world(settings, world)
        results: dict[str, Any] = {}
        async with open_pool(settings.db) as pool:
            index = engine.TransformerIndex()

            async def decide(body: dict[str, Any]) -> None:
                async with pool.connection() as conn:
                    request = domain.Request(
                        body["latitude"],
                        body["longitude"],
                        body["requested_consumption_kW"],
                        body["requested_production_kW"],
                    )
                    await engine.evaluate(conn, index, request, settings.feasibility, book=None)

            first = time.perf_counter()
            await decide(requests[0])
            results["index_load_ms"] = round((time.perf_counter() - first) * 1000, 2)
            results["engine"] = _stats(await _time([lambda b=b: decide(b) for b in requests]))  # type: ignore[misc]

        async with (
            running(serve_feasibility, settings=settings),
            Bus(settings.mqtt, "bench", "0") as bus,
            gateway_client(create_app(settings)) as client,
        ):
            # Built before timing: the figure is the command's round trip, not the caller's validation.
            checks = [feasibility.CHECK.build(**body) for body in requests]
            results["service"] = _stats(
                await _time([lambda c=c: bus.call(feasibility.CHECK, c) for c in checks])  # type: ignore[misc]
            )
            statuses: dict[str, int] = {}

            async def http(body: dict[str, Any]) -> None:
                response = await client.post("/feasibility-check", json=body)
                status = response.json().get("status", str(response.status_code))
                statuses[status] = statuses.get(status, 0) + 1

            results["gateway"] = _stats(await _time([lambda b=b: http(b) for b in requests]))  # type: ignore[misc]
            results["gateway_outcomes"] = statuses
        return results
    finally:
        async with await connect(db_url, autocommit=True) as conn:
            await conn.execute(drop_schemas(schema))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transformers", type=int, default=10_000)
    parser.add_argument("--checks", type=int, default=500)
    parser.add_argument("--radius", type=float, default=2000.0)
    args = parser.parse_args()
    rng = np.random.default_rng(42)
    world = _world(args.transformers, rng)
    requests = _requests(args.checks, rng)
    figures: dict[str, Any] = {
        "transformers": args.transformers,
        "checks": args.checks,
        "radius_m": args.radius,
        "broker": os.environ.get("GRIDSIM_MQTT__URL", "mqtt://127.0.0.1:1883"),
        "load_average_1m": os.getloadavg()[0],
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
        },
        "pure": bench_pure(world, requests, args.radius),
    }
    figures |= asyncio.run(bench_live(world, requests, args.radius))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "feasibility.json").write_text(json.dumps(figures, indent=2) + "\n")
    lines = [
        f"# Feasibility check with {args.transformers:,} transformers ({args.checks} checks, radius {args.radius:.0f} m)",
        "",
        "| depth | median ms | p95 ms |",
        "|---|---|---|",
    ]
    for depth in ("pure", "engine", "service", "gateway"):
        lines.append(f"| {depth} | {figures[depth]['median_ms']:.3f} | {figures[depth]['p95_ms']:.3f} |")
    lines += ["", f"Loading the position index once: {figures['index_load_ms']} ms.", ""]
    (RESULTS / "feasibility.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
