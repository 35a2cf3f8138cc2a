"""Benchmark: the utility's load and net-load forecasts against what meter-sim then produced.

Simulates a world with meter-sim's own physics (``domain.simulate``, one reading per meter per interval,
no broker) for ``--days`` of history plus ``--scored-days``, sums hourly kWh per feeder and for the utility
(consumption, and consumption − production for net load), then issues every forecast the service issues
(``gridsim_utility.domain.forecast``: seasonal-naive and regression, hour-ahead and day-ahead) for each
hour of the scored days, using only the hours known at issue time, and scores them (MAPE, bias).

The world: the demo world loaded through the API's code into a scratch schema (default), or
``--meters N`` synthetic homes (a third with PV) under 100-meter transformers on ten feeders.

    uv run python bench/bench_forecast.py [--meters 10000] [--seed 43] [--interval-s 60]

Writes ``bench/results/forecast.json`` (all runs, keyed by world and seed) and ``forecast.md``.
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
from typing import Any

import numpy as np
import psycopg

from gridsim_meter_sim import domain as sim
from gridsim_meter_sim import loads as load_model
from gridsim_meter_sim.domain import DerRow, MeterRow
from gridsim_meter_sim.fleet_repository import load_fleet
from gridsim_meter_sim.world import default_world_path, load_world, read_world
from gridsim_shared import climate as climate_model
from gridsim_shared.db import apply_migrations, drop_schemas, open_pool
from gridsim_shared.settings import DbSettings
from gridsim_utility import domain, weather

RESULTS = Path(__file__).resolve().parent / "results"
DB_URL = os.environ.get("GRIDSIM_DB__URL", "postgresql://postgres@127.0.0.1:5432/test")
# Local midnight in San Francisco (UTC−7 in summer): a month of history from 20 May, a week scored.
START = datetime(2025, 5, 20, 7, tzinfo=UTC)
HOME = [
    ("lighting", 0.00017, 0.9, 6),
    ("cooling", 0.00125, 0.85, 1),
    ("evening", 0.002, 0.85, 1),
    ("fridge", 0.00333, 0.85, 1),
    ("cooking", 0.01667, 0.98, 1),
    ("laundry", 0.00833, 0.85, 1),
    ("ac", 0.025, 0.85, 1),
    ("geyser", 0.05, 1.0, 1),
]


async def demo_fleet(url: str, seed: int) -> sim.Fleet:
    schema = f"bench_{secrets.token_hex(4)}"
    await apply_migrations(url, schema)
    try:
        async with open_pool(DbSettings(url=url, schema_name=schema)) as pool:
            async with pool.connection() as conn, conn.transaction():
                await load_world(conn, read_world(default_world_path()))
            columns = await load_fleet(pool, 0, 1)
        return sim.build_fleet_from(seed, columns)
    finally:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await conn.execute(drop_schemas(schema))


def synthetic_fleet(n: int, seed: int, per_transformer: int = 100) -> sim.Fleet:
    meters, ders = [], []
    for i in range(1, n + 1):
        t = (i - 1) // per_transformer
        prosumer = i % 3 == 0
        meters.append(
            MeterRow(i, f"MTR-{i:06d}", "prosumer" if prosumer else "consumer", "home", "realistic", 1.0,
                     1.0 if prosumer else 0.0, True, 37.70 + (i % 97) * 0.002, -122.50 + (i % 89) * 0.002,
                     t, f"t{t}", 5.0 * per_transformer, f"f{t % 10}", "u1")
        )  # fmt: skip
        ders += [DerRow(i, p, "consumption", b, pf, q, None) for p, b, pf, q in HOME]
        if prosumer:
            ders.append(DerRow(i, "solar", "production", 0.02, 1.0, 3, None))
    return sim.build_fleet(seed, meters, ders)


def hourly(fleet: sim.Fleet, hours: int, interval_s: int) -> dict[str, dict[str, np.ndarray]]:
    """Hourly consumption and net kWh per node ("utility", "feeder:<code>")."""
    feeders = sorted({codes[1] for codes in fleet.transformer_codes})
    feeder_of_tx = np.array([feeders.index(codes[1]) for codes in fleet.transformer_codes])
    feeder_of_row = feeder_of_tx[fleet.transformer]
    load = np.zeros((hours, len(feeders)))
    net = np.zeros((hours, len(feeders)))
    per_hour = 3600 // interval_s
    first = int(START.timestamp())
    # What domain.simulate reads, an hour at a time: the loads model on a series of instants (one call
    # instead of one per interval), PV interval by interval; the same numbers, a fraction of the time.
    active = fleet.online & ~((fleet.k_consumption == 0) & ((fleet.k_production == 0) | ~fleet.prosumer))
    for h in range(hours):
        instants = first + h * 3600 + interval_s * np.arange(per_hour, dtype=np.int64)
        kw = load_model.power(fleet.loads, instants)[0]
        c = np.where(active, kw.sum(axis=0) * interval_s / 3600.0 * fleet.k_consumption, 0.0)
        p = np.zeros(len(fleet))
        for k in range(per_hour):
            when = START + timedelta(seconds=h * 3600 + k * interval_s)
            produced = sim._production_kwh(fleet, when, interval_s)
            p += np.where(active, np.nan_to_num(produced), 0.0)
        load[h] += np.bincount(feeder_of_row, weights=c, minlength=len(feeders))
        net[h] += np.bincount(feeder_of_row, weights=c - p, minlength=len(feeders))
    nodes = {"utility": {"load": load.sum(axis=1), "net": net.sum(axis=1)}}
    for i, code in enumerate(feeders):
        nodes[f"feeder:{code}"] = {"load": load[:, i], "net": net[:, i]}
    return nodes


def inputs_for(fleet_climate: climate_model.Climate, seed: int, hours: int) -> domain.Inputs:
    """The calendar and the weather forecasts (with their errors) the service would use."""
    hour, weekday = domain.day_types(START, hours, fleet_climate.timezone)
    forecasts = {h: weather.forecast(fleet_climate, seed, START, hours, h) for h in domain.HORIZONS.values()}
    return domain.Inputs(
        hour=hour,
        weekday=weekday,
        temperature={h: f.temperature_c for h, f in forecasts.items()},
        clear_sky={h: f.clear_sky_index for h, f in forecasts.items()},
    )


def score_all(
    nodes: dict[str, dict[str, np.ndarray]], history_h: int, hours: int, inputs: domain.Inputs
) -> list[dict[str, Any]]:
    rows = []
    for node, series in nodes.items():
        load, net = series["load"], series["net"]
        production = load - net
        for horizon, h in domain.HORIZONS.items():
            for model in domain.MODELS:
                predicted = np.array(
                    [
                        domain.forecast(model, load, production, t, h, inputs=inputs)
                        for t in range(history_h, hours)
                    ]
                )
                for quantity, actual, p in (
                    ("load", load, np.maximum(predicted[:, 0], 0.0)),  # as the service stores it
                    ("net", net, predicted[:, 1]),
                ):
                    s = domain.score(actual[history_h:hours], p)
                    rows.append(
                        {
                            "node": node,
                            "quantity": quantity,
                            "horizon": horizon,
                            "model": model,
                            "mape_pct": round(s.mape_pct, 2),
                            "wape_pct": round(s.wape_pct, 2),
                            "bias_pct": round(s.bias_pct, 2),
                            "hours": s.hours,
                        }
                    )
    return rows


def summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per level (utility; feeders averaged), quantity and horizon: naive vs regression MAPE."""
    out = []
    for level in ("utility", "feeder"):
        for quantity in ("load", "net"):
            for horizon in domain.HORIZONS:
                mean: dict[tuple[str, str], float] = {}
                for model in domain.MODELS:
                    for metric in ("mape_pct", "wape_pct", "bias_pct"):
                        vals = [
                            r[metric]
                            for r in rows
                            if r["node"].split(":")[0] == level
                            and r["quantity"] == quantity
                            and r["horizon"] == horizon
                            and r["model"] == model
                        ]
                        mean[model, metric] = float(np.mean(vals))
                naive, reg = mean["seasonal-naive", "mape_pct"], mean["regression", "mape_pct"]
                out.append(
                    {
                        "level": level,
                        "quantity": quantity,
                        "horizon": horizon,
                        "naive_mape_pct": round(naive, 2),
                        "regression_mape_pct": round(reg, 2),
                        "reduction_pct": round((naive - reg) / naive * 100.0, 1),
                        "naive_wape_pct": round(mean["seasonal-naive", "wape_pct"], 2),
                        "regression_wape_pct": round(mean["regression", "wape_pct"], 2),
                        "naive_bias_pct": round(mean["seasonal-naive", "bias_pct"], 2),
                        "regression_bias_pct": round(mean["regression", "bias_pct"], 2),
                    }
                )
    return out


def markdown(runs: dict[str, Any]) -> str:
    lines = [
        "# Utility forecasts: MAPE against what meter-sim produced",
        "",
        "Each run simulates the world with meter-sim's physics (no broker), 28 days of history from",
        f"{START.isoformat()} (local midnight, San Francisco) and the next 7 days scored hour by hour. Every",
        "forecast uses only the hours known at its issue time (1 h or 24 h before the hour). Feeder rows are",
        "the mean over the world's feeders. `uv run python bench/bench_forecast.py [--meters N] [--seed S]",
        "[--interval-s S] [--cache DIR]` (the cache keeps a run's simulated hourly series, with the",
        "simulation's own time and load average, so a model change is re-scored in seconds).",
        "",
        "The regression (`gridsim_utility.domain.regression` and `solar`): a 28-day profile per local hour",
        "× day type (Monday, Tuesday–Friday, Saturday, Sunday) plus a ridge regression of the departures on",
        "the last hour known at issue time, the 24-hour level, the same hour a day (two, day-ahead) and a",
        "week before, and the forecast temperature; PV production per hour of day on the forecast clear-sky",
        "index; net = load − production. Weather inputs are forecasts with error",
        "(`gridsim_utility.weather`), never the truth. The 10,000-home worlds are read every 15 minutes",
        "(`--interval-s 900`: what meter-sim would publish at that interval) to keep the run affordable;",
        "two seeds give the noise floor of the figures.",
        "",
    ]
    for key, run in runs.items():
        lines += [
            f"## {key}",
            "",
            f"{run['meters']} meters, {run['feeders']} feeders, interval {run['interval_s']} s; simulated in"
            f" {run['simulate_s']} s (load average {run.get('simulate_loadavg', run['loadavg'])}), scored in"
            f" {run['score_s']} s (load average {run['loadavg']}).",
            "",
            "| level | quantity | horizon | naive MAPE % | regression MAPE % | MAPE reduction |"
            " naive WAPE % | regression WAPE % | naive bias % | regression bias % |",
            "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in run["summary"]:
            lines.append(
                f"| {r['level']} | {r['quantity']} | {r['horizon']} | {r['naive_mape_pct']} |"
                f" {r['regression_mape_pct']} | {r['reduction_pct']} % | {r['naive_wape_pct']} |"
                f" {r['regression_wape_pct']} | {r['naive_bias_pct']} | {r['regression_bias_pct']} |"
            )
        lines.append("")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=0, help="synthetic homes (0: the demo world)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--interval-s", type=int, default=60)
    parser.add_argument("--days", type=int, default=28)
    parser.add_argument("--scored-days", type=int, default=7)
    parser.add_argument("--cache", type=Path, default=None, help="keep the simulated hourly series here")
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder of forecast.json and .md")
    args = parser.parse_args()
    fleet = (
        synthetic_fleet(args.meters, args.seed) if args.meters else asyncio.run(demo_fleet(DB_URL, args.seed))
    )
    history_h = args.days * 24
    hours = history_h + args.scored_days * 24
    t0 = time.perf_counter()
    cached = (
        args.cache / f"forecast_{args.meters}_{args.seed}_{args.interval_s}_{hours}.npz"
        if args.cache
        else None
    )
    # The simulation's own cost and load average travel with the cached series (scoring is cheap).
    simulated: dict[str, Any] = {}
    if cached is not None and cached.exists():
        with np.load(cached) as data:
            series = [k for k in data.files if "|" in k]
            nodes = {k.split("|")[0]: {} for k in series}
            for k in series:
                node, quantity = k.split("|")
                nodes[node][quantity] = data[k]
            if "meta" in data.files:
                simulated = json.loads(str(data["meta"]))
    else:
        nodes = hourly(fleet, hours, args.interval_s)
        simulated = {
            "simulate_s": round(time.perf_counter() - t0, 1),
            "loadavg": " ".join(f"{x:.1f}" for x in os.getloadavg()),
        }
        if cached is not None:
            np.savez(
                cached,
                meta=np.array(json.dumps(simulated)),
                **{f"{n}|{q}": v for n, s in nodes.items() for q, v in s.items()},
            )
    t1 = time.perf_counter()
    place = fleet.climates[int(np.bincount(fleet.climate_of).argmax())]  # the world's climate, as the service
    rows = score_all(nodes, history_h, hours, inputs_for(place, args.seed, hours))
    t2 = time.perf_counter()
    run = {
        "meters": len(fleet),
        "feeders": len(nodes) - 1,
        "seed": args.seed,
        "interval_s": args.interval_s,
        "simulate_s": simulated.get("simulate_s", "?"),
        "simulate_loadavg": simulated.get("loadavg", "?"),
        "score_s": round(t2 - t1, 1),
        "loadavg": " ".join(f"{x:.1f}" for x in os.getloadavg()),
        "summary": summary(rows),
        "rows": rows,
    }
    for r in run["summary"]:
        print(r)
    args.results.mkdir(exist_ok=True)
    path = args.results / "forecast.json"
    runs: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    world = f"{args.meters} synthetic homes" if args.meters else "demo world"
    runs[f"{world}, seed {args.seed}"] = run
    path.write_text(json.dumps(runs, indent=1) + "\n")
    (args.results / "forecast.md").write_text(markdown(runs))


if __name__ == "__main__":
    main()
