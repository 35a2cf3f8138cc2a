"""Benchmark: the gateway's per-request overhead, driven with ``wrk`` against the real gateway process.

Starts ``python -m gridsim_gateway`` (one uvicorn worker, access log off, as ``gridsim up`` runs it) on a
scratch schema and a unique base topic of the machine's broker, stores one meter with a day of minute
readings, and keeps **the clock running** for the whole run: a driver thread plays meter-sim and the
aggregator once a second (a running clock, a batch of 100 meters for the next interval, that interval's
row stored, then the watermark moved to it), so the gateway receives live traffic while it is measured.
Then ``wrk`` (2 threads, 8 connections) against:

- ``GET /simulation-time`` — answered from memory (the retained clock, before FastAPI routes it);
- ``GET /meter/stream?meter_id=…&limit=1`` — the meter's latest stored reading, from memory
  (``gridsim_gateway.latest``), and the same on a second gateway with that memory off
  (``GRIDSIM_GATEWAY__LATEST_READINGS_METERS=0``: two indexed queries per request, as before);
- ``GET /meter/stream`` without ``limit`` (the latest 100, from the database);
- the ceilings, on uvicorn in other processes started the same way, measured in the same run: a trivial
  ``async def`` FastAPI route returning a constant, and a bare ASGI app (no framework at all); and under
  them a raw asyncio protocol on uvloop answering every request with a fixed response, no HTTP parsing
  (what any Python HTTP server on this machine stays below).

Each figure is given as req/s, p50/p99 latency and a ratio to each ceiling; the load average is printed
with each. ``wrk`` is a benchmark tool only (``apt-get install -y wrk``); no test needs it.

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
import threading
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from gridsim.embedded import free_port
from gridsim_shared import channels
from gridsim_shared.bus import Bus
from gridsim_shared.db import apply_migrations, connect, drop_schemas
from gridsim_shared.ids import TransformerPath
from gridsim_shared.messages import ClockState, ReadingBatch, Watermark
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

_BARE_APP = """
import sys
import uvicorn

BODY = b'{"ok":true}'


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", b"11"), (b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": BODY})


uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_config=None, access_log=False, lifespan="off")
"""
# The floor under any HTTP server in Python on this machine: one uvloop protocol answering every request
# (counted by its blank line) with a fixed response; no parser, no ASGI, no framework.
_RAW_ASYNCIO = """
import asyncio
import sys
import uvloop

RESPONSE = b"HTTP/1.1 200 OK\\r\\ncontent-length: 11\\r\\ncontent-type: application/json\\r\\n\\r\\n{\\"ok\\":true}"


class Responder(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport
        self.pending = b""

    def data_received(self, data):
        data = self.pending + data
        requests = data.count(b"\\r\\n\\r\\n")
        self.pending = data[data.rfind(b"\\r\\n\\r\\n") + 4 :] if requests else data
        if requests:
            self.transport.write(RESPONSE * requests)


async def main():
    server = await asyncio.get_running_loop().create_server(Responder, "127.0.0.1", int(sys.argv[1]))
    await server.serve_forever()


uvloop.run(main())
"""
DRIVER_METERS = 100


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
    """The scratch schema with its world."""
    await apply_migrations(DB_URL, schema)
    await _world(schema)


async def _drive(schema: str, base: str, stop: threading.Event) -> None:
    """The clock running at 60x: each second the next interval's batch, its row stored, then the watermark
    (what meter-sim and the aggregator publish), so the gateway serves while it receives live traffic."""
    ids = list(range(1, DRIVER_METERS + 1))
    codes = [f"MTR-{i}" for i in ids]
    async with (
        Bus(MqttSettings(url=MQTT_URL, base_topic=base), "bench-driver") as bus,
        await connect(DB_URL, schema, autocommit=True) as conn,
    ):
        tick = 1440
        while not stop.is_set():
            ts = START + timedelta(minutes=tick)
            clock = ClockState(
                current_datetime=ts + timedelta(minutes=1),
                state="running",
                speed=60,
                interval_s=60,
                tick=tick,
            )
            await bus.publish(channels.CLOCK, clock, NoPath())
            kwh = 0.01 + (tick % 7) / 1000
            batch = ReadingBatch(
                timestamp=ts,
                meter_id=ids,
                meter_code=codes,
                consumption_kWh=[kwh] * len(ids),
                production_kWh=[None] * len(ids),
                consumption_kVAh=[kwh / 0.95] * len(ids),
                production_kVAh=[None] * len(ids),
                avg_current=[2.5] * len(ids),
                avg_voltage=[240.0] * len(ids),
                reactive_power_kVAR=[0.003] * len(ids),
                power_factor=[0.95] * len(ids),
            )
            await bus.publish(channels.BATCH, batch, TransformerPath("u1", "f1", "t1"))
            await conn.execute(
                "insert into meter_data (ts, meter_id, consumption_kwh, consumption_kvah, avg_current,"
                " avg_voltage, reactive_power_kvar, power_factor) values (%s, 1, %s, %s, 2.5, 240, 0.003, 0.95)",
                (ts, kwh, kwh / 0.95),
            )
            await bus.publish(channels.WATERMARK, Watermark(committed_until=ts), NoPath())
            tick += 1
            await asyncio.sleep(1.0)


def _driver(schema: str, base: str) -> tuple[threading.Thread, threading.Event]:
    stop = threading.Event()
    thread = threading.Thread(target=lambda: asyncio.run(_drive(schema, base, stop)), daemon=True)
    thread.start()
    return thread, stop


def _server() -> str:
    """What the gateway's uvicorn runs with: ``loop``/``http`` are left at "auto", which pick uvloop and
    httptools when installed (uvicorn[standard]); access log off (``gridsim_gateway.__main__``)."""
    import httptools
    import uvicorn
    import uvloop
    from uvicorn.loops.auto import auto_loop_factory
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    loop = auto_loop_factory()().__class__
    return (
        f"uvicorn {uvicorn.__version__}, loop {loop.__module__}.{loop.__name__} (uvloop {uvloop.__version__}), "
        f"http {AutoHTTPProtocol.__name__} (httptools {httptools.__version__}), access log off"
    )


async def _drop(schema: str) -> None:
    async with await connect(DB_URL, "public", autocommit=True) as conn:
        await conn.execute(drop_schemas(schema))


def run(seconds: int) -> dict[str, Any]:
    schema = f"bench_http_{secrets.token_hex(4)}"
    base = f"bench-http-{secrets.token_hex(4)}"
    gateway_port, db_gateway_port, trivial_port, bare_port, raw_port = (
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
    )
    env = {
        **os.environ,
        "GRIDSIM_DB__URL": DB_URL,
        "GRIDSIM_DB__SCHEMA_NAME": schema,
        "GRIDSIM_MQTT__URL": MQTT_URL,
        "GRIDSIM_MQTT__BASE_TOPIC": base,
        "GRIDSIM_GATEWAY__PORT": str(gateway_port),
        "GRIDSIM_LOG__LEVEL": "WARNING",
    }
    db_env = {
        **env,
        "GRIDSIM_GATEWAY__PORT": str(db_gateway_port),
        "GRIDSIM_GATEWAY__LATEST_READINGS_METERS": "0",
    }
    processes: list[subprocess.Popen[bytes]] = []
    driver: tuple[threading.Thread, threading.Event] | None = None
    try:
        asyncio.run(_setup(schema, base))
        driver = _driver(schema, base)
        processes.append(subprocess.Popen([sys.executable, "-m", "gridsim_gateway"], env=env))
        processes.append(subprocess.Popen([sys.executable, "-m", "gridsim_gateway"], env=db_env))
        processes.append(subprocess.Popen([sys.executable, "-c", _TRIVIAL_APP, str(trivial_port)]))
        processes.append(subprocess.Popen([sys.executable, "-c", _BARE_APP, str(bare_port)]))
        processes.append(subprocess.Popen([sys.executable, "-c", _RAW_ASYNCIO, str(raw_port)]))
        gateway = f"http://127.0.0.1:{gateway_port}"
        db_gateway = f"http://127.0.0.1:{db_gateway_port}"
        _wait_http(f"{gateway}/simulation-time")
        _wait_http(f"{db_gateway}/simulation-time")
        _wait_http(f"http://127.0.0.1:{trivial_port}/ping")
        _wait_http(f"http://127.0.0.1:{bare_port}/")
        _wait_http(f"http://127.0.0.1:{raw_port}/")
        urls = {
            "raw asyncio responder on uvloop (floor)": f"http://127.0.0.1:{raw_port}/",
            "bare ASGI app (ceiling)": f"http://127.0.0.1:{bare_port}/",
            "trivial FastAPI route (ceiling)": f"http://127.0.0.1:{trivial_port}/ping",
            "GET /simulation-time": f"{gateway}/simulation-time",
            "GET /meter/stream?limit=1 (memory)": f"{gateway}/meter/stream?meter_id=MTR-1&limit=1",
            "GET /meter/stream?limit=1 (database: memory off)": f"{db_gateway}/meter/stream?meter_id=MTR-1&limit=1",
            "GET /meter/stream (latest 100)": f"{gateway}/meter/stream?meter_id=MTR-1",
        }
        for url in urls.values():  # warm up each (imports, pool connections; the first ask tracks the meter)
            _wrk(url, 1)
        rows = {name: _wrk(url, seconds) for name, url in urls.items()}
        # the ceilings again at the end: the machine's load moves; take the better of the two
        for name in (
            "raw asyncio responder on uvloop (floor)",
            "bare ASGI app (ceiling)",
            "trivial FastAPI route (ceiling)",
        ):
            again = _wrk(urls[name], seconds)
            if again["req_s"] > rows[name]["req_s"]:
                rows[name] = again
        raw = rows["raw asyncio responder on uvloop (floor)"]["req_s"]
        bare = rows["bare ASGI app (ceiling)"]["req_s"]
        fastapi = rows["trivial FastAPI route (ceiling)"]["req_s"]
        for row in rows.values():
            row["ratio_to_ceiling"] = round(row["req_s"] / fastapi, 2)
            row["ratio_to_bare"] = round(row["req_s"] / bare, 2)
            row["ratio_to_raw"] = round(row["req_s"] / raw, 2)
        with urllib.request.urlopen(urls["GET /meter/stream?limit=1 (memory)"], timeout=5) as response:
            latest = json.loads(response.read())
        return {
            "ceiling_req_s": fastapi,
            "bare_req_s": bare,
            "raw_req_s": raw,
            "server": _server(),
            "rows": rows,
            "latest_served": latest,
        }
    finally:
        if driver is not None:
            driver[1].set()
            driver[0].join(10)
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
        "req/s on uvicorn measured in the same run; bare = ÷ a bare ASGI app's (no framework) on uvicorn, "
        "same run (runs before the bare ceiling existed show -); raw = ÷ a raw asyncio protocol on uvloop "
        "answering a fixed response without parsing (the floor under any Python HTTP server here; runs "
        "before it existed show -). Since the run 'fast reads' the clock is "
        "running during the measurement (a batch, a stored row and a watermark each second).",
        "",
        "| run | route | req/s | p50 ms | p99 ms | ratio to FastAPI ceiling | ratio to bare | ratio to raw "
        "| non-2xx | load avg |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, run_ in runs.items():
        for route, row in run_["rows"].items():
            lines.append(
                f"| {name} ({run_['at']}) | {route} | {row['req_s']:,} | {row['p50_ms']:.2f} | "
                f"{row['p99_ms']:.2f} | {row['ratio_to_ceiling']} | {row.get('ratio_to_bare', '-')} | "
                f"{row.get('ratio_to_raw', '-')} | {row['non_2xx']} | {row['load_average']:.1f} |"
            )
    servers = [f"- {name}: {run_['server']}" for name, run_ in runs.items() if "server" in run_]
    if servers:
        lines += [
            "",
            "The gateway's server in each run (uvicorn's 'auto' loop and http, as installed):",
            "",
            *servers,
        ]
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
