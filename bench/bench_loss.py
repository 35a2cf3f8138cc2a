"""Loss accounting at scale (issue 16): 100,000 meters at 60x, nothing published lost without being counted.

The two runs the issue measured, as one run per broker: meter-sim's engine (in this process) starts its
real-time clock at ``--speed`` (60x: a one-minute interval every real second, 100,000 readings/s with
100,000 meters) on a cold fleet, so the first interval waits for the slow fleet load and the schedule
then asks for intervals back to back (the burst); the clock keeps running for ``--seconds``. The
aggregator runs as its own process (``python -m gridsim_aggregator``). Then the clock stops, the
aggregator is given time to store what was published, and the bench counts:

- readings published (meter-sim's counter: every batch acknowledged by the broker) and readings stored;
- intervals dropped by meter-sim and counted (``dropped_intervals``: the schedule's catch-up skips and the
  ``drop`` policy's skipped intervals) and the time the clock waited for the aggregator (``wait``);
- the watermark's lag behind the last published interval (sampled each second) and partial rollups;
- the broker's own drops: lines of its log saying messages were dropped for this run's clients;
- the readings the aggregator counted as missing (``ingest_gaps``: what the batches said their shard
  published for an interval, minus what was stored; reported as ``readings_missing`` in its status).

Nothing lost in silence means ``published - stored - counted missing == 0`` (every reading the broker
dropped was counted and reported), whatever the clock had to wait or drop (both counted and reported in
meter-sim's status). Each broker runs with the flow-control window its configuration calls for
(docs/operations.md, "Flow control"): ``GRIDSIM_SIM__MAX_AHEAD_MESSAGES`` 100,000 on the project's, the
default (1,000) on the stock one. Brokers: ``project`` — a private
Mosquitto with the queue and in-flight limits of the project's ``mosquitto.conf`` (without its TLS and
password file, on loopback); ``stock`` — the machine's Mosquitto at 127.0.0.1:1883 with the Debian
defaults (``max_queued_messages 1000``, ``max_inflight_messages 20``), whose log is
``/var/log/mosquitto/mosquitto.log``.

    uv run python bench/bench_loss.py [--meters 100000] [--speed 60] [--seconds 60] [--brokers project,stock]
                                      [--policy wait]

Uses ``GRIDSIM_DB__URL`` (default database ``test`` on 127.0.0.1:5432) with a scratch schema dropped
afterwards. Writes ``bench/results/loss.json`` and ``loss.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from gridsim.embedded import free_port, port_answers
from gridsim_meter_sim.engine import Engine
from gridsim_shared.bus import Bus
from gridsim_shared.db import connect, open_pool
from gridsim_shared.settings import DbSettings, MqttSettings, Settings, SimSettings

sys.path.insert(0, str(Path(__file__).parent))
from bench_meter_sim import _insert_world  # type: ignore[import-not-found]
from bench_pipeline import aggregator_process, scratch_schema  # type: ignore[import-not-found]

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
DB_URL = os.environ.get("GRIDSIM_DB__URL", "postgresql://postgres@127.0.0.1:5432/test")
STOCK_URL = "mqtt://127.0.0.1:1883"
STOCK_LOG = Path("/var/log/mosquitto/mosquitto.log")
START = datetime(2025, 6, 21, 1, 0, tzinfo=UTC)
# The project's broker queues 100,000 messages per subscriber; docker-compose.yml sets the window to match.
PROJECT_WINDOW = 100_000
# Lines of the project's mosquitto.conf that need its container (TLS, password file, ACL, paths).
_CONTAINER_ONLY = (
    "listener",
    "cafile",
    "certfile",
    "keyfile",
    "allow_anonymous",
    "password_file",
    "acl_file",
    "persistence_location",
    "log_dest",
    "per_listener_settings",
)


def project_broker_conf(port: int, directory: Path) -> str:
    """The project's broker configuration (its limits and persistence) on a loopback port."""
    kept = [
        line
        for line in (ROOT / "mosquitto.conf").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#") and line.split()[0] not in _CONTAINER_ONLY
    ]
    return "\n".join(
        [
            f"listener {port} 127.0.0.1",
            "allow_anonymous true",
            f"persistence_location {directory}/",
            f"log_dest file {directory}/mosquitto.log",
            *kept,
        ]
    )


@contextlib.contextmanager
def project_broker() -> Iterator[tuple[str, Path, str]]:
    """A private Mosquitto with the project's configuration: (url, log file, the settings it kept)."""
    with tempfile.TemporaryDirectory(prefix="gridsim-loss-") as tmp:
        directory = Path(tmp)
        directory.chmod(0o777)  # mosquitto drops to its own user when started as root
        port = free_port()
        conf = project_broker_conf(port, directory)
        (directory / "mosquitto.conf").write_text(conf)
        proc = subprocess.Popen(["mosquitto", "-c", str(directory / "mosquitto.conf")])
        try:
            deadline = time.monotonic() + 30
            while not port_answers("127.0.0.1", port):
                if time.monotonic() > deadline:
                    msg = "mosquitto did not start"
                    raise RuntimeError(msg)
                time.sleep(0.05)
            yield f"mqtt://127.0.0.1:{port}", directory / "mosquitto.log", conf
        finally:
            proc.terminate()
            proc.wait(30)


async def _scalar(conn: Any, query: str) -> Any:
    cur = await conn.execute(query)
    row = await cur.fetchone()
    return None if row is None else row[0]


def _log_size(log: Path) -> int:
    try:
        return log.stat().st_size
    except OSError:
        return 0


def broker_drops(log: Path, offset: int, base: str) -> list[str]:
    """The broker's log lines since ``offset`` that say it dropped messages of this run's clients."""
    try:
        with log.open("rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
    except OSError:
        return [f"log {log} unreadable"]
    return [line for line in text.splitlines() if "dropped" in line.lower() and base in line]


async def one_run(
    broker: str,
    mqtt_url: str,
    log: Path,
    *,
    meters: int,
    speed: float,
    seconds: float,
    policy: str,
    max_ahead_messages: int,
) -> dict[str, Any]:
    base = f"loss-{secrets.token_hex(4)}"
    async with scratch_schema("bench_loss") as schema:
        started = time.monotonic()
        async with await connect(DB_URL, schema, autocommit=True) as conn:
            await _insert_world(conn, meters, 100)
            nodes = await _scalar(conn, "select count(*) from grid_nodes")
        world_s = time.monotonic() - started
        sim_policy: Literal["wait", "drop"] = "drop" if policy == "drop" else "wait"
        settings = Settings(
            mqtt=MqttSettings(url=mqtt_url, base_topic=base),
            db=DbSettings(url=DB_URL, schema_name=schema, pool_max=4),
            sim=SimSettings(
                publish="batch",
                demo_world=False,
                start=START,
                autostart=True,
                speed=speed,
                behind_policy=sim_policy,
                max_ahead_messages=max_ahead_messages,
            ),
        )
        offset = _log_size(log)
        samples: list[dict[str, Any]] = []
        with aggregator_process(mqtt_url, base, schema):
            async with (
                await connect(DB_URL, schema, autocommit=True) as conn,
                open_pool(settings.db, name="bench") as pool,
                Bus(settings.mqtt, "meter-sim", "0") as bus,
            ):
                async with asyncio.timeout(300):
                    while not await _scalar(conn, "select count(*) from aggregator_instances"):
                        await asyncio.sleep(0.2)
                engine = Engine(settings, bus, pool)
                await engine.start()  # cold: the first interval loads the fleet, then the burst
                stop = asyncio.Event()
                runner = asyncio.create_task(engine.run(stop))
                # The run is timed from the first interval published: a 100,000-meter fleet loads for
                # minutes on a loaded machine, and the clock falls behind meanwhile (the burst follows).
                loading = time.monotonic()
                async with asyncio.timeout(1800):
                    while not engine.intervals_published:
                        await asyncio.sleep(0.2)
                fleet_load_s = time.monotonic() - loading
                t0 = time.monotonic()
                while (now := time.monotonic() - t0) < seconds:
                    await asyncio.sleep(1.0)
                    mark = await _scalar(conn, "select committed_until from aggregator_state")
                    published = engine.last_published
                    samples.append(
                        {
                            "t_s": round(now, 1),
                            "tick": engine.clock.tick if engine.clock else None,
                            "intervals_published": engine.intervals_published,
                            "watermark_lag_intervals": (published - mark).total_seconds() / 60
                            if mark is not None and published is not None
                            else None,
                            "lag_s": round(engine.lag_s, 2),
                            "dropped_intervals": engine.dropped_intervals,
                            "ahead_intervals": engine.ahead_intervals(),
                        }
                    )
                stop.set()
                await runner
                run_s = time.monotonic() - t0
                detail = engine.status_detail()
                last = engine.last_published
                settle_started = time.monotonic()
                settled = False
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(600):
                        while True:
                            mark = await _scalar(conn, "select committed_until from aggregator_state")
                            if last is None or (mark is not None and mark >= last):
                                settled = True
                                break
                            await asyncio.sleep(0.5)
                count = "select count(*) from meter_data where not is_parent"
                stored_at_watermark = await _scalar(conn, count)
                # An interval may close partial (``close_after_s``) while its late batches still wait in
                # the broker: count again until nothing more arrives for 20 s (at most 5 minutes).
                stored, steady = stored_at_watermark, time.monotonic()
                give_up = steady + 300
                while time.monotonic() - steady < 20 and time.monotonic() < give_up:
                    await asyncio.sleep(2)
                    now_stored = await _scalar(conn, count)
                    if now_stored != stored:
                        stored, steady = now_stored, time.monotonic()
                settle_s = time.monotonic() - settle_started
                partial = await _scalar(conn, "select count(*) from grid_rollups where partial")
                dead = await _scalar(conn, "select count(*) from dead_letters")
                missing = await _scalar(conn, "select coalesce(sum(expected - stored), 0) from ingest_gaps")
                gaps = await _scalar(conn, "select count(*) from ingest_gaps")
        drops = broker_drops(log, offset, base)
    sent = int(detail["readings_published"])
    lags = [s["watermark_lag_intervals"] for s in samples if s["watermark_lag_intervals"] is not None]
    out = {
        "broker": broker,
        "meters": meters,
        "grid_nodes": nodes,
        "speed": speed,
        "policy": policy,
        "seconds": round(run_s, 1),
        "world_insert_s": round(world_s, 1),
        "fleet_load_s": round(fleet_load_s, 1),
        "ticks": detail.get("tick"),
        "intervals_published": detail["intervals_published"],
        "dropped_intervals": detail["dropped_intervals"],
        "flow_dropped": detail.get("flow_dropped"),
        "flow_waits": detail.get("flow_waits"),
        "flow_wait_s": detail.get("flow_wait_s"),
        "readings_published": sent,
        "readings_stored": int(stored),
        "readings_stored_when_watermark_reached": int(stored_at_watermark),
        "max_ahead_messages": max_ahead_messages,
        "lost": sent - int(stored),
        "counted_missing": int(missing),
        "intervals_missing": int(gaps),
        "lost_uncounted": sent - int(stored) - int(missing),
        "readings_counted_as_dropped": int(detail["dropped_intervals"]) * meters,
        "partial_rollups": int(partial),
        "dead_letters": int(dead),
        "broker_drop_lines": len(drops),
        "broker_drop_examples": drops[:3],
        "watermark_lag_intervals_max": max(lags, default=None),
        "settled": settled,
        "settle_s": round(settle_s, 1),
        "load_average": os.getloadavg(),
        "samples": samples,
    }
    print(
        f"{broker}: {sent:,} published, {stored:,} stored, {int(missing):,} counted missing, "
        f"{out['lost_uncounted']} lost uncounted, {out['dropped_intervals']} intervals dropped "
        f"(counted), lag max {out['watermark_lag_intervals_max']}, broker drops {len(drops)}",
        flush=True,
    )
    return out


def write(runs: list[dict[str, Any]], args: argparse.Namespace, conf: str | None) -> None:
    RESULTS.mkdir(exist_ok=True)
    data = {"args": vars(args), "project_broker_conf": conf, "runs": runs}
    (RESULTS / f"{args.stem}.json").write_text(json.dumps(data, indent=2, default=str) + "\n")
    lines = [
        "# Loss accounting at scale",
        "",
        f"`uv run python bench/bench_loss.py --meters {args.meters} --speed {args.speed:g} --seconds "
        f"{args.seconds:g} --policy {args.policy}`; {time.strftime('%Y-%m-%d %H:%M')} UTC. A cold fleet, then "
        "the clock at the speed for the seconds (the burst after the slow fleet load, then the sustained "
        "rate, timed from the first interval published); the aggregator as its own process. *window*: "
        "`GRIDSIM_SIM__MAX_AHEAD_MESSAGES`. *counted missing*: readings the aggregator counted as never "
        "received (`ingest_gaps`, status `readings_missing`). *lost uncounted* = published − stored − "
        "counted missing (must be 0); dropped intervals were never published and are counted in "
        "meter-sim's status.",
        "",
        "| broker | window | meters | fleet load (s) | ticks | intervals published | dropped (counted) | clock "
        "waited (s) | readings published | stored | counted missing | lost uncounted | broker drops | partial "
        "rollups | lag max (intervals) | settle (s) | load avg |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
        "| ---: | --- |",
    ]
    for r in runs:
        load = r["load_average"]
        lines.append(
            f"| {r['broker']} | {r['max_ahead_messages']:,} | {r['meters']:,} | {r['fleet_load_s']} | "
            f"{r['ticks']} | {r['intervals_published']} | "
            f"{r['dropped_intervals']} | {r['flow_wait_s']} | {r['readings_published']:,} | "
            f"{r['readings_stored']:,} | {r['counted_missing']:,} | {r['lost_uncounted']} | "
            f"{r['broker_drop_lines']} | "
            f"{r['partial_rollups']} | {r['watermark_lag_intervals_max']} | {r['settle_s']} | "
            f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} |"
        )
    (RESULTS / f"{args.stem}.md").write_text("\n".join(lines) + "\n")


async def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--meters", type=int, default=100_000)
    parser.add_argument("--speed", type=float, default=60.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--brokers", default="project,stock")
    parser.add_argument("--policy", choices=("wait", "drop"), default="wait")
    parser.add_argument("--stem", default="loss", help="results file names (bench/results/STEM.json, .md)")
    args = parser.parse_args()
    runs: list[dict[str, Any]] = []
    conf: str | None = None
    common = {"meters": args.meters, "speed": args.speed, "seconds": args.seconds, "policy": args.policy}
    for broker in args.brokers.split(","):
        if broker == "project":
            with project_broker() as (url, log, conf):
                runs.append(await one_run("project", url, log, max_ahead_messages=PROJECT_WINDOW, **common))
        elif broker == "stock":
            stock_window = SimSettings().max_ahead_messages  # the default: sized for a stock broker
            runs.append(
                await one_run("stock", STOCK_URL, STOCK_LOG, max_ahead_messages=stock_window, **common)
            )
        else:
            parser.error(f"unknown broker {broker}")
        write(runs, args, conf)
    return 0 if all(r["lost_uncounted"] == 0 for r in runs) else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
