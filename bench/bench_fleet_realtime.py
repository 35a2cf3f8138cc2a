"""A utility-sized fleet at real time (issue 19): from a ``gridsim world generate`` file to readings stored.

The six services run as their own processes, as ``gridsim up`` runs them, on a private Mosquitto with the
project's broker limits and (by default) a private PostgreSQL, so every CPU second and byte counted is
this run's. meter-sim starts on an empty schema with ``GRIDSIM_SIM__DEMO_WORLD_FILE`` set to the
generated world: it bulk-loads the file, reads its fleet and ticks on the wall clock at ``--speed``
(1: real time) with ``publish=batch``. The bench times the start (world committed, first interval
published, first interval stored) and then samples every ``--sample-s`` seconds for ``--minutes`` of
simulated time: the clock (tick, lag, dropped intervals), the aggregator's watermark and its lag behind
the last published interval, and each process's RSS and CPU (the six services, the broker, PostgreSQL:
the postmaster and its children when private). The lag is *flat* when the last ten minutes' lag is no
larger than the first ten minutes' after the start, or than one interval (the one being written when the
sample is taken).

    uv run python bench/bench_fleet_realtime.py --meters 1000000 [--interval-s 60] [--speed 1]
        [--minutes 60] [--sample-s 15] [--shared-postgres] [--world FILE] [--stem fleet_realtime]

Writes ``bench/results/STEM.json`` (every sample) and ``STEM.md`` (one row per run, kept by meters,
interval, speed, services and note: a new run replaces the one of its shape, a noted one stays; and the lag
over time of each run).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from gridsim.embedded import free_port, parent_death_signal, start_postgres
from gridsim.launcher import SERVICES
from gridsim_meter_sim.world_bulk import generate_world
from gridsim_shared import channels
from gridsim_shared.bus import Bus
from gridsim_shared.db import apply_migrations, connect, drop_schemas
from gridsim_shared.messages import ClockState, Watermark
from gridsim_shared.settings import MqttSettings
from gridsim_shared.topics import NoPath

sys.path.insert(0, str(Path(__file__).parent))
from bench_loss import PROJECT_WINDOW, project_broker  # type: ignore[import-not-found]

RESULTS = Path(__file__).parent / "results"
SHARED_DB = os.environ.get("GRIDSIM_DB__URL", "postgresql://postgres@127.0.0.1:5432/test")
START = datetime(2025, 6, 21, 12, 0, tzinfo=UTC)
_TICK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def _proc(pid: int) -> tuple[float, float] | None:
    """(CPU seconds, RSS MB) of a process, children that exited included (a postmaster's backends)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return sum(int(x) for x in fields[11:15]) / _TICK, int(fields[21]) * _PAGE / 1e6


def _pid_of(cmdline: str) -> int:
    """The process whose command line is ``cmdline`` (0: none)."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").strip() == cmdline.encode():
                return int(pid)
    return 0


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _tree(pid: int) -> tuple[float, float]:
    """CPU seconds (exited children included) and RSS MB of a process and its live children."""
    cpu = rss = 0.0
    own = _proc(pid)
    if own is not None:
        cpu, rss = own
    for child in _children(pid):
        got = _proc(child)
        if got is not None:  # its CPU is in the parent's cumulative children time once it exits
            cpu += got[0]
            rss += got[1]
    return cpu, rss


def service_env(
    name: str, *, mqtt_url: str, base: str, db_url: str, schema: str, world: Path, args: argparse.Namespace
) -> dict[str, str]:
    env = {
        **os.environ,
        "GRIDSIM_MQTT__URL": mqtt_url,
        "GRIDSIM_MQTT__BASE_TOPIC": base,
        "GRIDSIM_DB__URL": db_url,
        "GRIDSIM_DB__SCHEMA_NAME": schema,
        "GRIDSIM_LOG__LEVEL": "INFO" if name == "meter-sim" else "WARNING",
        "GRIDSIM_LOG__FORMAT": "console",
        "GRIDSIM_GATEWAY__PORT": str(free_port()),
        "GRIDSIM_SIM__DEMO_WORLD": "true",
        "GRIDSIM_SIM__DEMO_WORLD_FILE": str(world),
        "GRIDSIM_SIM__PUBLISH": "batch",
        "GRIDSIM_SIM__SPEED": str(args.speed),
        "GRIDSIM_SIM__INTERVAL_S": str(args.interval_s),
        "GRIDSIM_SIM__START": START.isoformat(),
        "GRIDSIM_SIM__AUTOSTART": "true",
        "GRIDSIM_SIM__MAX_AHEAD_MESSAGES": str(PROJECT_WINDOW),
        "PYTHONUNBUFFERED": "1",
    }
    if args.close_after_s is not None:
        env["GRIDSIM_AGGREGATOR__CLOSE_AFTER_S"] = str(args.close_after_s)
    env.pop("GRIDSIM_SUPERVISION__METRICS_PORT", None)
    return env


@contextlib.contextmanager
def services(envs: dict[str, dict[str, str]], logs: Path) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name, env in envs.items():
            with (logs / f"{name}.log").open("wb") as log:
                # Gone with the bench, however it ends (a killed bench left its services running).
                procs[name] = subprocess.Popen(
                    [sys.executable, "-m", SERVICES[name]],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    preexec_fn=parent_death_signal(signal.SIGTERM),
                )
        yield procs
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


class Watch:
    """The clock and the watermark as meter-sim and the aggregator publish them (retained)."""

    def __init__(self) -> None:
        self.clock: ClockState | None = None
        self.mark: Watermark | None = None

    async def on_clock(self, msg: ClockState, _path: NoPath) -> None:
        self.clock = msg

    async def on_mark(self, msg: Watermark, _path: NoPath) -> None:
        self.mark = msg


async def _exists(conn: Any, query: str) -> bool:
    cur = await conn.execute(query)
    row = await cur.fetchone()
    return bool(row and row[0])


async def probe_http(port: int, conn: Any, repeats: int = 20) -> dict[str, dict[str, float]]:
    """What a dashboard asks of the gateway at this fleet size: median and p95 ms of each question (issue 19:
    the grid API stays usable, paged tree and search, at a utility's size)."""
    cur = await conn.execute("select code from grid_nodes where parent_id is null limit 1")
    utility = (await cur.fetchone())[0]
    cur = await conn.execute(
        "select code from grid_nodes where level = 'transformer' order by id desc limit 1"
    )
    transformer = (await cur.fetchone())[0]
    cur = await conn.execute("select code from meters order by id desc limit 1")
    meter = (await cur.fetchone())[0]
    questions = {
        "GET /health": "/health",
        # The dashboard's tree on a grid too big for one (docs/dashboard.md): the whole tree refused (422),
        # then each level a page at a time as it is unfolded. An API user may still ask for the nodes alone:
        # answered up to GRIDSIM_GATEWAY__GRID_TREE_MAX_NODES, refused (422) above.
        "GET /grid (the whole tree)": "/grid",
        "GET /grid?meters=false (every grid node, no meters)": "/grid?meters=false",
        "GET /grid/children (a utility's feeders, 200 a page)": f"/grid/children?node={utility}&limit=200",
        "GET /grid/children (a transformer's meters, 200 a page)": f"/grid/children?node={transformer}&limit=200",
        "GET /grid/search (a meter code prefix, 20)": f"/grid/search?q={meter[:-2]}&limit=20",
        "GET /meter/stream (latest reading)": f"/meter/stream?meter_id={meter}&limit=1",
        "GET /meter/stream (latest 60 readings)": f"/meter/stream?meter_id={meter}&limit=60",
    }
    out: dict[str, dict[str, float]] = {}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        for name, url in questions.items():
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                response = await client.get(url)
                times.append((time.perf_counter() - t0) * 1000)
                if response.status_code != 200:
                    break  # the answer is recorded as it is (a refusal, or a failure to look into)
            times.sort()
            out[name] = {
                "status": response.status_code,
                "median_ms": round(statistics.median(times), 2),
                "p95_ms": round(times[int(0.95 * (len(times) - 1))], 2),
                "bytes": len(response.content),
            }
    return out


async def one_run(
    args: argparse.Namespace, world: Path, db_url: str, postmaster: int | None
) -> dict[str, Any]:
    schema = f"bench_rt_{os.getpid()}_{args.meters}"
    await apply_migrations(db_url, schema)
    interval = timedelta(seconds=args.interval_s)
    samples: list[dict[str, Any]] = []
    out: dict[str, Any] = {
        "meters": args.meters,
        "interval_s": args.interval_s,
        "speed": args.speed,
        "services": args.services,
        "close_after_s": args.close_after_s,
    }
    try:
        with (
            project_broker() as (mqtt_url, _log, _conf),
            tempfile.TemporaryDirectory(prefix="gridsim-rt-") as tmp,
        ):
            broker_pid = _pid_of(f"mosquitto -c {_log.parent}/mosquitto.conf")
            base = f"rt{os.getpid()}"
            envs = {
                name: service_env(
                    name, mqtt_url=mqtt_url, base=base, db_url=db_url, schema=schema, world=world, args=args
                )
                for name in args.services.split(",")
            }
            watch = Watch()
            async with (
                Bus(MqttSettings(url=mqtt_url, base_topic=base), "bench", announce=False) as bus,
                await connect(db_url, schema, autocommit=True) as conn,
            ):
                await bus.subscribe(channels.CLOCK, watch.on_clock)
                await bus.subscribe(channels.WATERMARK, watch.on_mark)
                t0 = time.monotonic()
                with services(envs, Path(tmp)) as procs:
                    pids = {name: proc.pid for name, proc in procs.items()}
                    pids["mosquitto"] = broker_pid
                    if postmaster:
                        pids["postgres"] = postmaster
                    base_cpu = {name: _tree(pid)[0] for name, pid in pids.items() if pid}

                    def alive() -> None:
                        for name, proc in procs.items():
                            if proc.poll() is not None:
                                tail = (Path(tmp) / f"{name}.log").read_text()[-3000:]
                                msg = f"{name} exited ({proc.returncode}):\n{tail}"
                                raise RuntimeError(msg)

                    async with asyncio.timeout(args.start_timeout_s):
                        while not await _exists(conn, "select exists (select 1 from meters)"):
                            alive()
                            await asyncio.sleep(0.5)
                        out["world_committed_s"] = round(time.monotonic() - t0, 1)
                        while watch.clock is None or watch.clock.last_published is None:
                            alive()
                            await asyncio.sleep(0.2)
                        out["first_published_s"] = round(time.monotonic() - t0, 1)
                        while watch.mark is None or watch.mark.committed_until is None:
                            alive()
                            await asyncio.sleep(0.2)
                        out["first_stored_s"] = round(time.monotonic() - t0, 1)
                    first = watch.clock.last_published
                    started = time.monotonic()
                    print(f"{args.meters:,} meters: started in {out['first_stored_s']} s", flush=True)
                    while True:
                        alive()
                        clock, mark = watch.clock, watch.mark
                        assert clock is not None
                        assert mark is not None
                        sample: dict[str, Any] = {
                            "t_s": round(time.monotonic() - started, 1),
                            "tick": clock.tick,
                            "last_published": clock.last_published.isoformat()
                            if clock.last_published
                            else None,
                            "committed_until": mark.committed_until.isoformat()
                            if mark.committed_until
                            else None,
                            "lag_intervals": (clock.last_published - mark.committed_until) / interval
                            if clock.last_published and mark.committed_until
                            else None,
                            "clock_lag_s": clock.lag_s,
                            "dropped_intervals": clock.dropped_intervals,
                            "load": round(os.getloadavg()[0], 2),
                        }
                        for name, pid in pids.items():
                            if pid:
                                cpu, rss = _tree(pid)
                                sample[f"{name}_cpu_s"] = round(cpu - base_cpu[name], 1)
                                sample[f"{name}_rss_mb"] = round(rss, 1)
                        samples.append(sample)
                        print(json.dumps(sample), flush=True)
                        simulated = (clock.last_published - first) if clock.last_published else timedelta()
                        if simulated >= timedelta(minutes=args.minutes):
                            break
                        await asyncio.sleep(args.sample_s)
                    out["run_s"] = round(time.monotonic() - started, 1)
                    if "gateway" in envs:
                        out["http"] = await probe_http(int(envs["gateway"]["GRIDSIM_GATEWAY__PORT"]), conn)
                    out["log_tail"] = (Path(tmp) / "meter-sim.log").read_text()[-2000:]
    finally:
        async with await connect(db_url, "public", autocommit=True) as conn:
            await conn.execute(drop_schemas(schema))
    out["samples"] = samples
    out["at"] = datetime.now(UTC).isoformat(timespec="seconds")
    out["summary"] = summarise(samples, args.interval_s * 1.0 / args.speed, list(base_cpu))
    return out


def summarise(samples: list[dict[str, Any]], interval_real_s: float, names: list[str]) -> dict[str, Any]:
    """Lag in the first and last ten minutes (real time), CPU share and peak RSS per process."""
    window = max(600.0, 2 * interval_real_s)
    lags = [(s["t_s"], s["lag_intervals"]) for s in samples if s["lag_intervals"] is not None]
    end = samples[-1]["t_s"] if samples else 0.0
    early = [lag for t, lag in lags if t <= window]
    late = [lag for t, lag in lags if t >= end - window]
    span = max(end, 1.0)
    clock_early = [s["clock_lag_s"] for s in samples if s["t_s"] <= window and s["clock_lag_s"] is not None]
    clock_late = [
        s["clock_lag_s"] for s in samples if s["t_s"] >= end - window and s["clock_lag_s"] is not None
    ]
    out: dict[str, Any] = {
        "lag_first_10min_max": max(early, default=None),
        "lag_last_10min_max": max(late, default=None),
        "lag_max": max((lag for _, lag in lags), default=None),
        # One interval behind is the interval being written as the sample is taken, not growth.
        "flat": bool(early and late and max(late) <= max(*early, 1.0)),
        "clock_lag_s_first_10min_max": max(clock_early, default=None),
        "clock_lag_s_last_10min_max": max(clock_late, default=None),
        "dropped_intervals": samples[-1]["dropped_intervals"] if samples else None,
        "load_mean": round(sum(s["load"] for s in samples) / max(len(samples), 1), 1),
    }
    first, last = (samples[0], samples[-1]) if samples else ({}, {})
    for name in names:
        if f"{name}_cpu_s" in last:
            out[f"{name}_cpu_share"] = round((last[f"{name}_cpu_s"] - first[f"{name}_cpu_s"]) / span, 3)
            out[f"{name}_rss_mb_max"] = max(s[f"{name}_rss_mb"] for s in samples)
            out[f"{name}_rss_mb_end"] = last[f"{name}_rss_mb"]
    return out


def _label(run: dict[str, Any]) -> str:
    """The services a run ran, and the aggregator's bounded wait when it was set."""
    label = "all six" if run["services"] == ",".join(SERVICES) else run["services"]
    wait = run.get("close_after_s")
    return (
        label
        + (f" (close_after_s {wait:g})" if wait else "")
        + (f"; {run['note']}" if run.get("note") else "")
    )


def _shape(run: dict[str, Any]) -> tuple[Any, ...]:
    """What a new run replaces in the results: the older run of the same fleet, speed and services. A run
    with a note (an earlier main, kept for comparison) is never replaced by a new one."""
    return (run["meters"], run["interval_s"], run["speed"], run.get("services"), run.get("note"))


def write(result: dict[str, Any], stem: str) -> None:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{stem}.json"
    runs = json.loads(path.read_text())["runs"] if path.exists() else []
    runs = [r for r in runs if _shape(r) != _shape(result)] + [result]
    for run in runs:  # every row by the same rule, older runs included
        names_cpu = [k.removesuffix("_cpu_s") for k in run["samples"][0] if k.endswith("_cpu_s")]
        run["summary"] = summarise(run["samples"], run["interval_s"] / run["speed"], names_cpu)
    machine = {"cpus": os.cpu_count(), "platform": platform.platform(), "postgres": result.get("postgres")}
    path.write_text(json.dumps({"machine": machine, "runs": runs}, indent=1) + "\n")
    names = [
        "meter-sim",
        "aggregator",
        "billing",
        "feasibility",
        "utility",
        "gateway",
        "mosquitto",
        "postgres",
    ]
    lines = [
        "# A utility-sized fleet at real time",
        "",
        f"Machine: {machine['cpus']} CPUs, {machine['platform']} (load average per row). "
        "`uv run python bench/bench_fleet_realtime.py --meters N --interval-s S --speed X --minutes M`: the six "
        "services as processes, a private Mosquitto with the project's limits, a private PostgreSQL unless "
        "noted; meter-sim loads the `gridsim world generate` file itself (empty schema, "
        "`GRIDSIM_SIM__DEMO_WORLD_FILE`), `publish=batch`. *Start*: seconds from the services' start to the "
        "world committed / the first interval published / the first interval stored. *Lag*: the last "
        "interval published minus the aggregator's watermark, in intervals (first and last ten minutes, "
        "max). CPU: share of one core over the run; RSS: peak MB.",
        "",
        "| meters | services | interval s | speed | simulated min | start: world / published / stored s | lag first / last "
        "10 min / max | flat | dropped | "
        + " | ".join(f"{n} CPU, RSS MB" for n in names)
        + " | load avg | at |",
        "|---:|---|" + "---:|" * (7 + len(names)) + "---:|---|",
    ]
    for r in sorted(runs, key=lambda r: (r["meters"], r["interval_s"])):
        s = r["summary"]
        cells = []
        for n in names:
            if f"{n}_cpu_share" in s:
                cells.append(f"{s[f'{n}_cpu_share']:.0%}, {s[f'{n}_rss_mb_max']:,.0f}")
            else:
                cells.append("–")
        simulated = r["minutes_simulated"]
        lines.append(
            f"| {r['meters']:,} | {_label(r)} | "
            f"{r['interval_s']} | {r['speed']:g} | {simulated:g} | {r['world_committed_s']} / "
            f"{r['first_published_s']} / {r['first_stored_s']} | {s['lag_first_10min_max']} / "
            f"{s['lag_last_10min_max']} / {s['lag_max']} | {'yes' if s['flat'] else 'no'} | "
            f"{s['dropped_intervals']} | " + " | ".join(cells) + f" | {s['load_mean']} | {r['at']} |"
        )
    for run in sorted(runs, key=lambda r: (r["meters"], r["interval_s"])):
        lines += _run_details(run)
    (RESULTS / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _run_details(run: dict[str, Any]) -> list[str]:
    """A run's gateway answers (when probed) and its lag over time (24 samples at most)."""
    head = f"{run['meters']:,} meters, {run['interval_s']} s intervals, speed {run['speed']:g}, {_label(run)}"
    lines: list[str] = []
    if run.get("http"):
        lines += [
            "",
            f"### {head}: the gateway's answers at the end of the run",
            "",
            "Clock running; 20 requests each, one client (one when the answer is not a 200).",
            "",
            "| request | status | median ms | p95 ms | bytes |",
            "|---|---:|---:|---:|---:|",
        ]
        for name, t in run["http"].items():
            lines.append(
                f"| {name} | {t.get('status', 200)} | {t['median_ms']} | {t['p95_ms']} | {t['bytes']:,} |"
            )
    samples = run["samples"]
    step = max(1, len(samples) // 24)
    summary = run["summary"]
    lines += [
        "",
        f"### {head}: lag over time",
        "",
        f"Watermark lag {summary['lag_first_10min_max']} / {summary['lag_last_10min_max']} intervals at most in the "
        f"first / last ten minutes; the clock's own lag behind the wall clock "
        f"{summary.get('clock_lag_s_first_10min_max')} / {summary.get('clock_lag_s_last_10min_max')} s at most.",
        "",
        "| t s | tick | lag (intervals) | clock lag s | meter-sim CPU s, RSS MB | aggregator CPU s, RSS MB "
        "| postgres CPU s | load |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in samples[::step] + ([samples[-1]] if samples and (len(samples) - 1) % step else []):
        lines.append(
            f"| {s['t_s']} | {s['tick']} | {s['lag_intervals']} | {s['clock_lag_s']} | "
            f"{s.get('meter-sim_cpu_s')}, {s.get('meter-sim_rss_mb')} | {s.get('aggregator_cpu_s')}, "
            f"{s.get('aggregator_rss_mb')} | {s.get('postgres_cpu_s', '–')} | {s['load']} |"
        )
    return lines


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--meters", type=int, default=100_000)
    parser.add_argument("--interval-s", type=int, default=60)
    parser.add_argument("--speed", type=float, default=1.0)
    parser.add_argument(
        "--minutes", type=float, default=60.0, help="simulated minutes after the first interval"
    )
    parser.add_argument("--sample-s", type=float, default=15.0)
    parser.add_argument("--start-timeout-s", type=float, default=1800.0)
    parser.add_argument("--world", type=Path, help="a world file to use (default: generated into a temp dir)")
    parser.add_argument(
        "--shared-postgres", action="store_true", help=f"use {SHARED_DB} instead of a private one"
    )
    parser.add_argument("--stem", default="fleet_realtime")
    parser.add_argument(
        "--close-after-s",
        type=float,
        help="the aggregator's bounded wait (GRIDSIM_AGGREGATOR__CLOSE_AFTER_S; default 5 s, counted from an "
        "interval's latest batch)",
    )
    parser.add_argument(
        "--services",
        default=",".join(SERVICES),
        help="the services to run (default all six; meter-sim,aggregator: the ingest pipeline alone)",
    )
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="gridsim-fleet-")))
        # Reachable by the server's user (nobody, as root): else start_postgres keeps its data in a
        # /tmp fallback made to survive restarts, which this folder's removal would leave behind.
        os.chmod(tmp, 0o755)
        world = args.world
        if world is None:
            world = tmp / "world.json"
            generate_world(world, args.meters)
        if args.shared_postgres:
            db_url, postmaster, label = SHARED_DB, None, "shared"
        else:
            pg = stack.enter_context(start_postgres(tmp / "pg", free_port(), database="test"))
            db_url, postmaster, label = pg.url, pg.pid, "private"
        result = await one_run(args, world, db_url, postmaster)
        result["postgres"] = label
        result["minutes_simulated"] = args.minutes
        write(result, args.stem)


def _stop(signum: int, _frame: object) -> None:
    """``kill`` stops the run as Ctrl-C does: its broker, database and temporary folder go with it (the
    services also have a parent-death signal; the broker drops to its own user, which clears its own)."""
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _stop)
    asyncio.run(main())
