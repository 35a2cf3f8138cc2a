"""Benchmark: what supply state and cumulative registers add to meter-sim's step (docs/grid-health.md).

For a fleet of realistic homes (a third with PV, as in bench_meter_sim.py) one interval of the step's
compute is ``domain.simulate`` and ``Publisher.prepare`` (columnar batch JSON; ``--per-meter`` adds the
per-meter messages). With grid health the engine also runs ``GridHealth.apply`` (the supply plan's cut:
here an outage of 10 % of the meters and 1 % disconnected; the registers' sum) and encodes the three
register columns. Baseline and health intervals alternate, so a load change hits both alike; medians.

CPU only: no broker, no database. Writes ``bench/results/grid_health.json`` and ``.md``.

    uv run python bench/bench_grid_health.py [--meters 10000] [--intervals 30]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench_meter_sim import synthetic_fleet

from gridsim_meter_sim import domain
from gridsim_meter_sim.grid_health import GridHealth
from gridsim_meter_sim.publisher import Publisher
from gridsim_meter_sim.registers import Registers
from gridsim_meter_sim.supply import OutageRow, SupplyPlan

RESULTS = Path(__file__).parent / "results"


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
    health.registers = Registers.for_fleet(fleet, None, {})

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=10_000)
    parser.add_argument("--intervals", type=int, default=30)
    args = parser.parse_args()
    load = os.getloadavg()[0]
    rows = [run(args.meters, args.intervals, per_meter=p) for p in (False, True)]
    result = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "load_average_1m": round(load, 2),
        "runs": rows,
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
    (RESULTS / "grid_health.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
