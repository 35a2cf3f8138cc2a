"""Benchmark: the gateway's per-request overhead, driven with ``wrk`` against the real gateway process.

Starts ``python -m gridsim_gateway`` (one uvicorn worker, access log off, as ``gridsim up`` runs it) on a
scratch schema and a unique base topic of the machine's broker, publishes a retained clock, stores one
meter with a day of minute readings, then runs ``wrk`` (2 threads, 8 connections) against:

- ``GET /simulation-time`` — answered from memory (the retained clock);
- ``GET /meter/stream?meter_id=…&limit=1`` — the meter's latest reading (two indexed queries), and without
  ``limit`` (the latest 100);
- the ceiling: a trivial ``async def`` FastAPI route returning a constant, on uvicorn in another process
  started the same way, measured in the same run.

Each figure is given as req/s, p50/p99 latency and a ratio to the ceiling; the load average is printed with
each. ``wrk`` is a benchmark tool only (``apt-get install -y wrk``); no test needs it.

    uv run python bench/bench_http.py [--seconds 10] [--label new]

Writes ``bench/results/http.json`` and ``.md`` (``--label`` names the run in the table).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import secrets
import shutil
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from gridsim.embedded import free_port
from gridsim_shared import channels
from gridsim_shared.bus import Bus
from gridsim_shared.db import apply_migrations, connect
from gridsim_shared.messages import ClockState
from gridsim_shared.settings import MqttSettings
from gridsim_shared.topics import NoPath

RESULTS = Path(__file__).parent / "results"
DB_URL = os.environ.get("GRIDSIM_DB__URL", "postgresql://postgres@127.0.0.1:5432/test")
MQTT_URL = os.environ.get("GRIDSIM_MQTT__URL", "mqtt://127.0.0.1:1883")
START = datetime(2025, 6, 20, tzinfo=UTC)

_TRIVIAL_APP = """
import sys
import uvicorn
from fastapi import FastAPI

app = FastAPI()


@app.get("/ping")
async def ping() -> dict[str, bool]:
    return {"ok": True}


uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_config=None, access_log=False)
"""


async def _world(schema: str) -> None:
    """One utility/feeder/transformer and one meter with a day of minute readings."""
    async with await connect(DB_URL, schema) as conn:
        await conn.execute("insert into grid_nodes (code, name, level) values ('u1', 'U', 'utility')")
        await conn.execute(
            "insert into grid_nodes (code, name, level, parent_id) values ('f1', 'F', 'feeder', 1)"
        )
        await conn.execute(
            "insert into grid_nodes (code, name, level, parent_id, capacity_kva) "
            "values ('t1', 'T', 'transformer', 2, 100)"
        )
        await conn.execute("insert into meters (code, transformer_id) values ('MTR-1', 3)")
        await conn.execute(
            "insert into meter_data (ts, meter_id, consumption_kwh, avg_current, avg_voltage) "
            "select %s + g * interval '1 minute', 1, 0.01, 2.5, 240 from generate_series(0, 1439) g",
            (START,),
        )
        await conn.commit()


def _wait_http(url: str, deadline_s: float = 60.0) -> None:
    until = time.monotonic() + deadline_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > until:
            raise TimeoutError(url)
        time.sleep(0.2)


def _wrk(url: str, seconds: int) -> dict[str, Any]:
    out = subprocess.run(
        ["wrk", "-t2", "-c8", f"-d{seconds}s", "--latency", url], capture_output=True, text=True, check=True
    ).stdout

    def ms(label: str) -> float:
        match = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        assert match, out
        value, unit = float(match[1]), match[2]
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert rate, out
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "req_s": round(float(rate[1])),
        "p50_ms": ms("50"),
        "p99_ms": ms("99"),
        "non_2xx": int(errors[1]) if errors else 0,
        "load_average": os.getloadavg()[0],
    }


async def _setup(schema: str, base: str) -> None:
    """The scratch schema with its world, and the retained clock on the run's base topic."""
    await apply_migrations(DB_URL, schema)
    await _world(schema)
    async with Bus(MqttSettings(url=MQTT_URL, base_topic=base), "bench-clock") as bus:
        clock = ClockState(
            current_datetime=START + timedelta(days=1), state="paused", speed=1440, interval_s=60, tick=1440
        )
        await bus.publish(channels.CLOCK, clock, NoPath())


async def _drop(schema: str) -> None:
    async with await connect(DB_URL, "public", autocommit=True) as conn:
        await conn.execute(f"drop schema if exists {schema} cascade")


def run(seconds: int) -> dict[str, Any]:
    schema = f"bench_http_{secrets.token_hex(4)}"
    base = f"bench-http-{secrets.token_hex(4)}"
    gateway_port, trivial_port = free_port(), free_port()
    env = {
        **os.environ,
        "GRIDSIM_DB__URL": DB_URL,
        "GRIDSIM_DB__SCHEMA_NAME": schema,
        "GRIDSIM_MQTT__URL": MQTT_URL,
        "GRIDSIM_MQTT__BASE_TOPIC": base,
        "GRIDSIM_GATEWAY__PORT": str(gateway_port),
        "GRIDSIM_LOG__LEVEL": "WARNING",
    }
    processes: list[subprocess.Popen[bytes]] = []
    try:
        asyncio.run(_setup(schema, base))
        processes.append(subprocess.Popen([sys.executable, "-m", "gridsim_gateway"], env=env))
        processes.append(subprocess.Popen([sys.executable, "-c", _TRIVIAL_APP, str(trivial_port)]))
        gateway = f"http://127.0.0.1:{gateway_port}"
        _wait_http(f"{gateway}/simulation-time")
        _wait_http(f"http://127.0.0.1:{trivial_port}/ping")
        urls = {
            "trivial route (ceiling)": f"http://127.0.0.1:{trivial_port}/ping",
            "GET /simulation-time": f"{gateway}/simulation-time",
            "GET /meter/stream?limit=1": f"{gateway}/meter/stream?meter_id=MTR-1&limit=1",
            "GET /meter/stream (latest 100)": f"{gateway}/meter/stream?meter_id=MTR-1",
        }
        for url in urls.values():  # warm up each (imports, pool connections)
            _wrk(url, 1)
        rows = {name: _wrk(url, seconds) for name, url in urls.items()}
        # the ceiling again at the end: the machine's load moves; take the better of the two
        again = _wrk(urls["trivial route (ceiling)"], seconds)
        ceiling = max(rows["trivial route (ceiling)"]["req_s"], again["req_s"])
        for row in rows.values():
            row["ratio_to_ceiling"] = round(row["req_s"] / ceiling, 2)
        return {"ceiling_req_s": ceiling, "rows": rows}
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=15)
        asyncio.run(_drop(schema))


def write(label: str, result: dict[str, Any], seconds: int) -> None:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "http.json"
    runs = json.loads(path.read_text())["runs"] if path.exists() else {}
    runs[label] = {**result, "seconds": seconds, "at": datetime.now(UTC).isoformat(timespec="seconds")}
    machine = {"cpus": os.cpu_count(), "platform": platform.platform()}
    path.write_text(json.dumps({"machine": machine, "runs": runs}, indent=2))
    lines = [
        "# Gateway HTTP (wrk -t2 -c8, one uvicorn worker)",
        "",
        f"Machine: {machine['cpus']} CPUs, {machine['platform']} (shared; load average per row). "
        "`uv run python bench/bench_http.py --label <name>`. Ratio = req/s ÷ a trivial FastAPI route's "
        "req/s on uvicorn measured in the same run.",
        "",
        "| run | route | req/s | p50 ms | p99 ms | ratio to ceiling | non-2xx | load avg |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, run_ in runs.items():
        for route, row in run_["rows"].items():
            lines.append(
                f"| {name} ({run_['at']}) | {route} | {row['req_s']:,} | {row['p50_ms']:.2f} | "
                f"{row['p99_ms']:.2f} | {row['ratio_to_ceiling']} | {row['non_2xx']} | {row['load_average']:.1f} |"
            )
    (RESULTS / "http.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--label", default="current")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (apt-get install -y wrk)")
    write(args.label, run(args.seconds), args.seconds)


if __name__ == "__main__":
    main()
