"""Chaos campaign: the demo world stepped while seeded faults are injected, compared with a fault-free run.

Both runs use private servers (a Mosquitto with persistence and an embedded PostgreSQL, each restartable
on its port; by default the fault-free run has a pair of its own and runs alongside the faulty one, which
saves its minutes; ``--reference-first`` runs it before, on the same pair) and the six services as
processes (``python -m gridsim_<service>``), exactly as deployed; a service that exits on its own is
started again (as the launcher does) and counted. The faulty run steps the clock to the same target
while a seeded injector picks, in a shuffled order with the same number of each kind:

- ``kill_<service>`` for each of meter-sim, aggregator, billing, feasibility, gateway, utility:
  ``kill -9``, then started again;
- ``broker_restart``: Mosquitto stopped (SIGTERM, it saves its persistence file) and started again;
- ``broker_stall``: Mosquitto stopped with SIGSTOP for ``--freeze-s`` then SIGCONT (every client sees a
  stalled TCP peer: publishes wait for acknowledgements that do not come, connects hang);
- ``postgres_restart``: PostgreSQL stopped (fast shutdown) and started again;
- ``postgres_freeze``: every PostgreSQL process stopped with SIGSTOP for ``--freeze-s``, then SIGCONT;
- ``aggregator_pause``: the aggregator stopped with SIGSTOP for ``--freeze-s``, then SIGCONT;
- ``meter_sim_restart``: meter-sim stopped with SIGTERM mid-step and started again.

Two schedules. ``--serial``: one fault at a time, each followed by a wait until everything stepped so far
is stored (clean per-fault figures; slow: the three 30-s windows alone take 75 minutes for 50 of each).
The default, *rounds*: ``--faults-per-kind`` rounds, each holding one fault of every kind in a shuffled
order, injected a second or two apart while the clock is stepped; a window fault (freeze, pause, stall)
runs in the background, so the next faults land while it lasts and while the previous ones recover (two
faults on the same component never overlap: a kill of the aggregator waits for its pause to end).
A round ends when its faults have recovered and everything stepped is stored, closed and rolled; up to
``--overlap`` rounds (2) are in flight at once: the next round's faults land while the previous one
recovers and settles (with 1, each round settles before the next begins). Overlapping faults are harsher
than isolated ones; the comparison at the end is the same.

The simulation is deterministic (a reading is a function of the seed, the meter and the interval), so
every stored reading must equal the fault-free run's bit for bit, every transformer/feeder/utility rollup
too (compared to 1e-9 relative: a redelivered batch may add its sums in another order), and every bill
of the month, read once both runs have closed every interval stepped and rolled every window it completes
(the roll is a second transaction after the close); a row only one run has is a difference; nothing may
be missing. It writes ``bench/results/chaos.json`` and ``chaos.md``: faults by kind, rows compared,
differences (must be 0), and per fault two times measured from its injection (a window fault: from its
end): *recover* until the component works again (a restarted service says ``online``; after a broker
fault every service has beaten again; after a database or aggregator fault the aggregator's watermark
moves), and *settle* until every interval stepped so far is stored, closed and rolled (in rounds: at the
end of the fault's round, so it includes the faults that overlapped it).

    uv run python bench/chaos.py [--faults-per-kind 50] [--intervals 300] [--seed 42] [--freeze-s 30]
                                 [--serial] [--overlap 2] [--reference-first] [--budget-s S]
                                 [--kinds kill_aggregator,broker_stall] [--work DIR] [--probe-timeout-s 600]

A recovery probe that gives up prints, and the results keep (``gave_up``), what each side held then: the
driver's view, what the broker keeps retained (read by a fresh client), the database's watermark and the
clock's answer. ``--work`` keeps the servers' data and every service's log (``<work>/faulty/<service>.log``;
``GRIDSIM_CHAOS_LOG_LEVEL=INFO`` logs what each did).

``make chaos`` runs it with the defaults above; the test suite runs a short campaign
(``tests/test_chaos.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from signal import Signals
from typing import Any

import psutil
import psycopg

from gridsim.embedded import EmbeddedServer, free_port, make_conninfo_url, port_answers, start_postgres
from gridsim_shared import channels
from gridsim_shared.bus import Bus
from gridsim_shared.commands import billing, meter_sim
from gridsim_shared.db import apply_migrations, session_options
from gridsim_shared.errors import GridsimError
from gridsim_shared.messages import ClockState, ServiceStatus, Watermark
from gridsim_shared.settings import MqttSettings
from gridsim_shared.topics import NoPath, ServicePath

KINDS = (
    "kill_meter_sim",
    "kill_aggregator",
    "kill_billing",
    "kill_feasibility",
    "kill_gateway",
    "kill_utility",
    "broker_restart",
    "broker_stall",
    "postgres_restart",
    "postgres_freeze",
    "aggregator_pause",
    "meter_sim_restart",
)
SERVICES = ("meter-sim", "aggregator", "billing", "feasibility", "gateway", "utility")
# Faults that last ``freeze_s`` (a process stopped, then continued): in rounds they run in the background.
WINDOWS = frozenset({"postgres_freeze", "aggregator_pause", "broker_stall"})
RESULTS = Path(__file__).resolve().parent / "results"
QUARTER = timedelta(minutes=15)
STEP_CHUNK = 5  # intervals per step request: faults land between and inside steps
_MOSQUITTO_CONF = """\
listener {port} 127.0.0.1
allow_anonymous true
persistence true
persistence_location {dir}/
autosave_interval 1
max_queued_messages 100000
max_queued_bytes 0
max_inflight_messages 1000
log_dest file {dir}/mosquitto.log
"""


def component(kind: str) -> str:
    """What a fault acts on: two faults on one component never overlap."""
    if kind.startswith("kill_"):
        return kind.removeprefix("kill_").replace("_", "-")
    named = {"meter_sim_restart": "meter-sim", "aggregator_pause": "aggregator"}
    return named.get(kind, kind.split("_", maxsplit=1)[0])


@dataclass
class Fault:
    kind: str
    at_tick: int
    recover_s: float  # until the component works again
    settle_s: float = 0.0  # until everything stepped is stored, closed and rolled
    overlapped: bool = False


@dataclass
class Report:
    seed: int
    intervals: int
    faults: list[Fault] = field(default_factory=list)
    readings_compared: int = 0
    rollups_compared: int = 0
    meter_rollups_compared: int = 0  # rows of meter_data_15m, _1h and _1d
    bills_compared: int = 0
    differences: list[str] = field(default_factory=list)
    missing: int = 0
    elapsed_s: float = 0.0
    reference_s: float = 0.0
    schedule: str = "rounds"
    freeze_s: float = 0.0
    respawns: dict[str, int] = field(default_factory=dict)  # services that exited on their own
    unrecovered: int = 0  # recovery probes that gave up (after ``probe_timeout_s``)
    gave_up: list[str] = field(default_factory=list)  # each, with what every side held then
    cut_short: str = ""  # why fewer rounds than asked ran (``--budget-s``)
    overlap: int = 1  # rounds in flight at once
    hold_until_recovered: bool = False  # a component's next fault waits for its recovery, not its end
    alongside: bool = False  # the fault-free run ran at the same time, on servers of its own


# ------------------------------------------------------------------------------------------ servers


class Broker:
    """A private Mosquitto with persistence, restartable on its port."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o777)  # mosquitto drops to its own user when started as root
        self.port = free_port()
        self.url = f"mqtt://127.0.0.1:{self.port}"
        self.conf = directory / "mosquitto.conf"
        self.conf.write_text(_MOSQUITTO_CONF.format(port=self.port, dir=directory))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(["mosquitto", "-c", str(self.conf)], stderr=subprocess.DEVNULL)
        _wait(lambda: port_answers("127.0.0.1", self.port), 30, "mosquitto did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)

    def signal(self, sig: Signals) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)


class Database:
    """The embedded PostgreSQL, restartable on its port and data folder."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.port = free_port()
        self.password = secrets.token_urlsafe(16)  # the same at every restart: the services keep their URL
        self.server: EmbeddedServer | None = None

    @property
    def url(self) -> str:
        return make_conninfo_url(self.port, "chaos", self.password)

    def start(self) -> None:
        self.server = start_postgres(self.dir, self.port, database="chaos", password=self.password)

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()

    def processes(self) -> list[psutil.Process]:
        assert self.server is not None
        root = psutil.Process(self.server.pid)
        return [root, *root.children(recursive=True)]


class Services:
    """The services as processes with one environment; restartable one by one."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.log_dir = log_dir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.generation: Counter[str] = Counter()  # starts per service: a step request dies with its process
        self.respawns: Counter[str] = Counter()
        self.busy: set[str] = set()  # being restarted by the injector: not respawned meanwhile
        self.supervising = False

    def start(self, name: str) -> None:
        module = "gridsim_" + name.replace("-", "_")
        with (self.log_dir / f"{name}.log").open("ab") as log:  # the child keeps its own descriptor
            self.procs[name] = subprocess.Popen(
                [sys.executable, "-m", module], env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        self.generation[name] += 1

    async def supervise(self) -> None:
        """Start again a service that exited on its own (as the launcher does), and count it."""
        while True:
            await asyncio.sleep(0.5)
            if not self.supervising:
                continue
            for name, proc in list(self.procs.items()):
                if name not in self.busy and proc.poll() is not None:
                    self.respawns[name] += 1
                    self.start(name)

    def signal(self, name: str, sig: Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.procs[name].send_signal(sig)

    def restart(self, name: str, sig: Signals) -> None:
        self.busy.add(name)
        try:
            self.signal(name, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.procs[name].wait(30)
            if self.procs[name].poll() is None:
                self.procs[name].kill()
                self.procs[name].wait(10)
            self.start(name)
        finally:
            self.busy.discard(name)

    def stop_all(self) -> None:
        self.supervising = False
        for name in list(self.procs):
            self.signal(name, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def _wait(done: Any, timeout: float, message: str) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise RuntimeError(message)
        time.sleep(0.05)


# -------------------------------------------------------------------------------------------- a run


class Run:
    """One world on its own schema and topic base: servers, services, and the clock driven to a target."""

    def __init__(
        self,
        name: str,
        broker: Broker,
        db: Database,
        work: Path,
        seed: int,
        *,
        names: tuple[str, ...] = SERVICES,
    ) -> None:
        self.name = name
        self.names = names  # the services run (a short campaign may leave some out)
        self.broker = broker
        self.db = db
        self.schema = f"chaos_{name}"
        self.base = f"chaos-{name}-{os.getpid()}"
        log_dir = work / name
        log_dir.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "GRIDSIM_MQTT__URL": broker.url,
            "GRIDSIM_MQTT__BASE_TOPIC": self.base,
            "GRIDSIM_DB__URL": db.url,
            "GRIDSIM_DB__SCHEMA_NAME": self.schema,
            "GRIDSIM_SIM__SEED": str(seed),
            "GRIDSIM_SIM__AUTOSTART": "false",
            "GRIDSIM_SIM__PUBLISH": "batch",
            # An interval is closed only once complete: a fault never turns into a partial rollup.
            "GRIDSIM_AGGREGATOR__CLOSE_AFTER_S": "600",
            "GRIDSIM_AGGREGATOR__FLUSH_MS": "20",
            # A step answers within a few seconds even while the aggregator is away (stored=false).
            "GRIDSIM_SIM__STEP_ACK_TIMEOUT_S": "5",
            "GRIDSIM_SUPERVISION__HEARTBEAT_S": "1",
            "GRIDSIM_LOG__FORMAT": "json",
            # INFO (GRIDSIM_CHAOS_LOG_LEVEL) says what each service did: connections, leadership, closes.
            "GRIDSIM_LOG__LEVEL": os.environ.get("GRIDSIM_CHAOS_LOG_LEVEL", "WARNING"),
            "GRIDSIM_GATEWAY__PORT": str(free_port()),
            "GRIDSIM_UTILITY__OPENADR_PORT": str(free_port()),
        }
        env.pop("GRIDSIM_SUPERVISION__METRICS_PORT", None)
        self.services = Services(env, log_dir)
        self.mqtt = MqttSettings(url=broker.url, base_topic=self.base, rpc_timeout_s=10)

    async def start(self) -> None:
        await apply_migrations(self.db.url, self.schema)
        for name in self.names:
            self.services.start(name)
        await self.clock()  # meter-sim answers: the demo world is loaded

    async def clock(self, timeout: float = 300.0) -> dict[str, Any]:
        """meter-sim's clock, asked until it answers (it may be restarting)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                async with Bus(self.mqtt, "chaos-driver") as bus:
                    answer: dict[str, Any] = (await bus.call(meter_sim.CLOCK, timeout=5)).model_dump(
                        mode="json"
                    )
                    return answer
            except (GridsimError, ConnectionError, TimeoutError, OSError):
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)

    async def step_to(self, target: int) -> None:
        """Step until the clock's tick reaches ``target`` (a step cut by a fault is simply asked again:
        the clock resumes from its stored tick and republishes, which consumers de-duplicate)."""
        while True:
            tick = int((await self.clock())["tick"])
            if tick >= target:
                return
            with contextlib.suppress(GridsimError, ConnectionError, TimeoutError, OSError):
                async with Bus(self.mqtt, "chaos-driver") as bus:
                    await self._step(bus, min(STEP_CHUNK, target - tick))

    async def _step(self, bus: Bus, intervals: int) -> None:
        """One step request, given up as soon as meter-sim is restarted: the killed process will never
        answer, and waiting out the request's timeout would count the driver's patience as recovery."""
        generation = self.services.generation["meter-sim"]
        request = asyncio.ensure_future(
            bus.call(meter_sim.STEP, meter_sim.STEP.build(intervals=intervals), timeout=15)
        )
        try:
            while not request.done():
                await asyncio.wait({request}, timeout=0.2)
                if self.services.generation["meter-sim"] != generation:
                    return
            request.result()
        finally:
            request.cancel()
            with contextlib.suppress(BaseException):
                await request

    def watermark(self) -> tuple[datetime | None, datetime | None]:
        """The aggregator's ``committed_until`` (intervals closed) and ``rolled_until`` (15-minute windows
        rolled into the per-meter and grid time rollups); (None, None) while the database is away."""
        with contextlib.suppress(psycopg.Error):
            with psycopg.connect(
                self.db.url, connect_timeout=3, options=session_options(self.schema)
            ) as conn:
                row = conn.execute("select committed_until, rolled_until from aggregator_state").fetchone()
                if row:
                    return row[0], row[1]
        return None, None

    async def settle(self, timeout: float = 900.0) -> None:
        """Wait until the aggregator has closed the last stepped interval *and* rolled every window it
        completes: the roll is a second transaction after the close, and the bills read the rollups (a
        run stopped between the two, as the fault-free one was right after this wait, billed one window
        short)."""
        clock = await self.clock()
        # None only when nothing was ever published: a restarted meter-sim remembers it (it forgot it once,
        # and this wait then passed at once while the probes, waiting for the same clock, gave up).
        raw = clock["last_published"]
        last = datetime.fromisoformat(raw.replace("Z", "+00:00")) if raw else None
        whole = _floor(last + timedelta(seconds=int(clock["interval_s"])), QUARTER) if last else None
        deadline = time.monotonic() + timeout
        while True:
            mark, rolled = await asyncio.to_thread(self.watermark)
            if last is None or (mark is not None and mark >= last and _rolled(rolled, whole, last)):
                return
            if time.monotonic() > deadline:
                msg = f"{self.name}: watermark {mark} / rolled {rolled} never reached {last} / {whole}"
                raise RuntimeError(msg)
            await asyncio.sleep(0.5)

    async def bills(self, month: str, timeout: float = 300.0) -> list[dict[str, Any]]:
        """The month's bills, asked until billing answers (it may have just started)."""
        deadline = time.monotonic() + timeout
        async with Bus(self.mqtt, "chaos-driver") as bus:
            while True:
                try:
                    page = await bus.call(
                        billing.BILLS, billing.BILLS.build(month=month, page_size=1000), timeout=5
                    )
                    break
                except GridsimError:
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.5)
        items = [bill.model_dump(mode="json") for bill in page.items]
        return sorted(items, key=lambda b: str(b.get("meter_id")))


def _floor(ts: datetime, width: timedelta) -> datetime:
    """Start of the bucket of ``width`` holding ``ts`` (aligned on midnight UTC, as the aggregator's)."""
    epoch = datetime(2000, 1, 1, tzinfo=UTC)
    return epoch + ((ts - epoch) // width) * width


def _rolled(rolled: datetime | None, whole: datetime | None, last: datetime) -> bool:
    """Every window before ``whole`` is rolled (before any roll, the aggregator starts at the day of the
    first interval, so windows before that day need none)."""
    if whole is None:
        return True
    return whole <= (rolled if rolled is not None else _floor(last, timedelta(days=1)))


def _rows(run: Run, query: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(run.db.url, options=session_options(run.schema)) as conn:
        return conn.execute(query).fetchall()


def compare(reference: Run, faulty: Run, report: Report) -> None:
    """Readings bit for bit, rollups to 1e-9 relative, bills exactly; counts what is missing."""
    readings = "select * from meter_data order by ts, meter_id"
    ref = _rows(reference, readings)
    got = _rows(faulty, readings)
    report.readings_compared = len(ref)
    report.missing += max(0, len(ref) - len(got))
    ref_by_key = {(r[0], r[1]): r for r in ref}
    got_by_key = {(r[0], r[1]): r for r in got}
    for key, row in ref_by_key.items():
        if got_by_key.get(key) != row:
            report.differences.append(f"reading {key}: {row} != {got_by_key.get(key)}")
    report.differences.extend(f"extra reading {key}" for key in got_by_key.keys() - ref_by_key.keys())
    rollups = (
        "select ts, node_id, consumption_kwh, production_kwh, consumption_kvah, production_kvah, kvarh, "
        "meters_reporting, partial from grid_rollups order by ts, node_id"
    )
    ref_rollups = _rows(reference, rollups)
    got_rollups = {(r[0], r[1]): r for r in _rows(faulty, rollups)}
    report.rollups_compared = len(ref_rollups)
    for row in ref_rollups:
        other = got_rollups.get((row[0], row[1]))
        if other is None:
            report.missing += 1
            report.differences.append(f"rollup {row[:2]} missing")
        elif not _close(row, other):
            report.differences.append(f"rollup {row[:2]}: {row} != {other}")
    extra = got_rollups.keys() - {(r[0], r[1]) for r in ref_rollups}
    report.differences.extend(f"extra rollup {key}" for key in sorted(extra))
    # The per-meter rollups the bills are read from: a reading counted twice shows here first.
    for table in ("meter_data_15m", "meter_data_1h", "meter_data_1d"):
        query = (
            "select bucket, meter_id, consumption_kwh, production_kwh, consumption_kvah, production_kvah, "
            f"kvarh, readings from {table} order by bucket, meter_id"
        )
        ref_rows = _rows(reference, query)
        got_by = {(r[0], r[1]): r for r in _rows(faulty, query)}
        report.meter_rollups_compared += len(ref_rows)
        for row in ref_rows:
            other = got_by.get((row[0], row[1]))
            if other is None:
                report.missing += 1
                report.differences.append(f"{table} {row[:2]} missing")
            elif not _close(row, other):
                report.differences.append(f"{table} {row[:2]}: {row} != {other}")
        # A row only the faulty run has is a difference too (a window rolled there and not in the
        # fault-free run shows here, not as a missing row).
        extra = got_by.keys() - {(r[0], r[1]) for r in ref_rows}
        report.differences.extend(f"extra {table} row {key}" for key in sorted(extra))


def _close(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    for x, y in zip(a, b, strict=True):
        if isinstance(x, float) and isinstance(y, float):
            if abs(x - y) > 1e-9 * max(1.0, abs(x), abs(y)):
                return False
        elif x != y:
            return False
    return True


# ---------------------------------------------------------------------------------------- injection


class Watcher:
    """What the driver sees on the bus: each service's retained status, the clock and the watermark."""

    def __init__(self, run: Run, probe_timeout_s: float = 600.0) -> None:
        self.run = run
        self.status: dict[str, ServiceStatus] = {}
        self.clock: ClockState | None = None
        self.mark: Watermark | None = None
        self.unrecovered = 0  # probes that timed out
        self.gave_up: list[str] = []  # each with what every side held when it gave up (diagnose)
        self.probe_timeout_s = probe_timeout_s
        self._bus = Bus(run.mqtt, "chaos-watch")

    async def __aenter__(self) -> Watcher:
        await self._bus.start()
        await self._bus.subscribe(channels.STATUS, self._on_status)
        await self._bus.subscribe(channels.CLOCK, self._on_clock)
        await self._bus.subscribe(channels.WATERMARK, self._on_mark)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._bus.close()

    async def _on_status(self, msg: ServiceStatus, path: ServicePath) -> None:
        self.status[path.service] = msg

    async def _on_clock(self, msg: ClockState, _path: NoPath) -> None:
        self.clock = msg

    async def _on_mark(self, msg: Watermark, _path: NoPath) -> None:
        self.mark = msg

    def committed(self) -> datetime | None:
        return self.mark.committed_until if self.mark is not None else None

    def back(self, service: str, since: datetime) -> bool:
        """``service`` restarted after ``since`` and says ``online``."""
        status = self.status.get(service)
        return (
            status is not None
            and status.state == "online"
            and status.started_at is not None
            and status.started_at > since
        )

    def all_beating(self, since: datetime) -> bool:
        """Every service has said ``online`` since ``since`` (after a broker fault: all reconnected)."""
        return all(
            (s := self.status.get(name)) is not None
            and s.state == "online"
            and s.heartbeat_at is not None
            and s.heartbeat_at > since
            for name in self.run.names
        )

    def flowing(self, mark: datetime | None) -> bool:
        """The aggregator committed past ``mark``, or has everything published."""
        now = self.committed()
        if now is None:
            return False
        if mark is None or now > mark:
            return True
        last = self.clock.last_published if self.clock is not None else None
        return last is not None and now >= last

    async def until(self, done: Any, what: str) -> None:
        deadline = time.monotonic() + self.probe_timeout_s
        while not done():
            if time.monotonic() > deadline:  # counted and reported; the settle that follows still waits
                self.unrecovered += 1
                seen = await self.diagnose()
                self.gave_up.append(f"{what}: {seen}")
                print(f"probe gave up: {what}: {seen}", flush=True)
                return
            await asyncio.sleep(0.1)

    async def diagnose(self) -> str:
        """What each side holds when a probe gives up: this watcher's view, what the broker keeps retained
        (read by a fresh client), the database's watermark and meter-sim's clock as it answers."""
        fresh: dict[str, Any] = {}

        def keep(name: str) -> Callable[[Any, Any], Awaitable[None]]:
            async def on(msg: Any, _path: Any) -> None:
                fresh[name] = msg

            return on

        with contextlib.suppress(GridsimError, ConnectionError, TimeoutError, OSError):
            async with Bus(self.run.mqtt, "chaos-diagnose", announce=False) as bus:
                await bus.subscribe(channels.WATERMARK, keep("mark"))
                await bus.subscribe(channels.CLOCK, keep("clock"))
                await asyncio.sleep(1.0)
        db_mark, _rolled = await asyncio.to_thread(self.run.watermark)
        answer: dict[str, Any] | None = None
        with contextlib.suppress(GridsimError, ConnectionError, TimeoutError, OSError):
            answer = await self.run.clock(timeout=10)
        fresh_mark, fresh_clock = fresh.get("mark"), fresh.get("clock")
        return (
            f"watcher mark {self.committed()} clock last_published "
            f"{self.clock.last_published if self.clock else None} tick {self.clock.tick if self.clock else None}"
            f"; broker retained mark {fresh_mark.committed_until if fresh_mark else None} clock last_published "
            f"{fresh_clock.last_published if fresh_clock else None}"
            f"; database committed_until {db_mark}; clock answer last_published "
            f"{answer.get('last_published') if answer else None} tick {answer.get('tick') if answer else None}"
        )


async def inject(
    kind: str,
    run: Run,
    broker: Broker,
    db: Database,
    *,
    freeze_s: float,
    watch: Watcher | None = None,
    on_end: Callable[[], None] | None = None,
) -> float:
    """Inject ``kind``; return the seconds from its end (a window's SIGCONT, a restart) until the
    component works again (0 without a watcher). ``on_end`` is called when the fault ends, before the
    wait for recovery."""
    since = datetime.now(UTC)
    if kind.startswith("kill_") or kind == "meter_sim_restart":
        name = component(kind)
        sig = signal.SIGTERM if kind == "meter_sim_restart" else signal.SIGKILL
        await asyncio.to_thread(run.services.restart, name, sig)
        ended = time.monotonic()
        if on_end is not None:
            on_end()
        if watch is not None:
            await watch.until(lambda: watch.back(name, since), f"{kind} back online")
        return time.monotonic() - ended
    if kind == "broker_restart":
        await asyncio.to_thread(broker.stop)
        await asyncio.to_thread(broker.start)
    elif kind == "broker_stall":
        broker.signal(signal.SIGSTOP)
        await asyncio.sleep(freeze_s)
        broker.signal(signal.SIGCONT)
    elif kind == "postgres_restart":
        await asyncio.to_thread(db.stop)
        await asyncio.to_thread(db.start)
    elif kind == "postgres_freeze":
        frozen = db.processes()
        for proc in frozen:
            with contextlib.suppress(psutil.Error):
                proc.suspend()
        await asyncio.sleep(freeze_s)
        for proc in frozen:
            with contextlib.suppress(psutil.Error):
                proc.resume()
    elif kind == "aggregator_pause":
        run.services.signal("aggregator", signal.SIGSTOP)
        await asyncio.sleep(freeze_s)
        run.services.signal("aggregator", signal.SIGCONT)
    else:
        msg = f"unknown fault {kind}"
        raise ValueError(msg)
    ended, ended_at = time.monotonic(), datetime.now(UTC)
    if on_end is not None:
        on_end()
    if watch is not None:
        if kind.startswith("broker_"):
            await watch.until(lambda: watch.all_beating(ended_at), f"{kind}: every service beating")
        else:
            mark = watch.committed()
            await watch.until(lambda: watch.flowing(mark), f"{kind}: watermark past {mark}")
    return time.monotonic() - ended


async def _serial(
    faulty: Run, broker: Broker, db: Database, *, watch: Watcher, plan: list[str], intervals: int,
    freeze_s: float, rng: random.Random, report: Report,
) -> None:  # fmt: skip
    """One fault at a time, each lands while a step is in flight; the next waits until all is stored."""
    marks = sorted(rng.sample(range(1, intervals), min(len(plan), intervals - 1)))
    marks += [intervals - 1] * (len(plan) - len(marks))
    for kind, at in zip(plan, marks, strict=True):
        stepping = asyncio.create_task(faulty.step_to(at + 1))
        await asyncio.sleep(rng.uniform(0.0, 0.3))
        recover = await inject(kind, faulty, broker, db, freeze_s=freeze_s, watch=watch)
        ended = time.monotonic()
        await stepping
        await faulty.settle()  # recovered: everything published is stored, closed and rolled
        report.faults.append(Fault(kind, at, round(recover, 2), round(time.monotonic() - ended, 2)))


async def _rounds(
    faulty: Run, broker: Broker, db: Database, *, watch: Watcher, kinds: tuple[str, ...], per_kind: int,
    intervals: int, freeze_s: float, rng: random.Random, report: Report, progress: Path | None = None,
    budget_s: float | None = None, overlap: int = 2, hold_until_recovered: bool = False,
) -> None:  # fmt: skip
    """``per_kind`` rounds of one fault of every kind (shuffled), injected a second or two apart while the
    clock is stepped; windows run in the background. A round ends when its faults have recovered and all
    stepped so far is stored, closed and rolled; up to ``overlap`` rounds run at once (the next round's
    faults land while the previous one recovers and settles; two faults on one component never overlap:
    each waits, in order, until the component's previous fault has ended: a kill may land while the
    component still recovers from the previous one; with ``hold_until_recovered``, only once it works
    again)."""
    locks = {component(k): asyncio.Lock() for k in kinds}
    per_round = max(1, (intervals - 1) // max(1, per_kind))
    started = time.monotonic()
    in_flight: list[asyncio.Task[None]] = []
    stepper: asyncio.Task[None] | None = None
    done = 0

    async def fault(kind: str, slot: int, ended: dict[int, float]) -> float:
        lock = locks[component(kind)]
        await lock.acquire()
        released = False

        def release() -> None:  # once: at the fault's end, or after its recovery, or on an error
            nonlocal released
            if not released:
                released = True
                lock.release()

        try:
            recover = await inject(
                kind, faulty, broker, db, freeze_s=freeze_s, watch=watch,
                on_end=None if hold_until_recovered else release,
            )  # fmt: skip
        finally:
            release()
        ended[slot] = time.monotonic() - recover
        return recover

    async def finish(running: list[tuple[asyncio.Task[float], str, int]], ended: dict[int, float]) -> None:
        nonlocal done
        recovers = await asyncio.gather(*(task for task, _, _ in running))
        await faulty.settle()  # what was stepped until now: this round's faults and any that overlap it
        settled = time.monotonic()
        for slot, ((_, kind, at), recover) in enumerate(zip(running, recovers, strict=True)):
            report.faults.append(
                Fault(kind, at, round(recover, 2), round(settled - ended[slot], 2), overlapped=True)
            )
        done += 1
        print(
            f"round {done}/{per_kind} settled at {time.strftime('%H:%M:%S')}, {len(report.faults)} faults,"
            f" load {os.getloadavg()[0]:.1f}",
            flush=True,
        )
        if progress is not None:  # what a campaign cut short still shows
            text = json.dumps(summary(report), indent=2, default=str) + "\n"
            await asyncio.to_thread(progress.write_text, text)

    try:
        for index in range(per_kind):
            while len(in_flight) >= overlap:  # the oldest round in flight must end first
                await in_flight.pop(0)
            if budget_s is not None and time.monotonic() - started > budget_s:
                report.cut_short = f"time budget of {budget_s:.0f} s spent after {index} of {per_kind} rounds"
                print(report.cut_short, flush=True)
                break
            order = list(kinds)
            rng.shuffle(order)
            share = per_round / len(order)
            running: list[tuple[asyncio.Task[float], str, int]] = []
            ended: dict[int, float] = {}
            for slot, kind in enumerate(order):
                target = min(intervals - 1, round(index * per_round + (slot + 1) * share))
                if stepper is not None and not stepper.done():
                    stepper.cancel()  # the next request asks for the new target
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await stepper
                stepper = asyncio.create_task(faulty.step_to(target))
                await asyncio.sleep(rng.uniform(0.2, 0.5) if slot == 0 else rng.uniform(0.5, 2.0))
                running.append((asyncio.create_task(fault(kind, slot, ended)), kind, target))
            in_flight.append(asyncio.create_task(finish(running, ended)))
        for task in in_flight:
            await task
        if stepper is not None:
            await stepper
    finally:
        for task in in_flight:
            task.cancel()


async def campaign(
    seed: int,
    intervals: int,
    faults_per_kind: int,
    freeze_s: float,
    kinds: tuple[str, ...] = KINDS,
    *,
    serial: bool = False,
    progress: Path | None = None,
    budget_s: float | None = None,
    services: tuple[str, ...] = SERVICES,
    overlap: int = 2,
    alongside: bool = True,
    hold_until_recovered: bool = False,
    work_dir: Path | None = None,
    probe_timeout_s: float = 600.0,
) -> Report:
    """The fault-free run (alongside on servers of its own, or first on the same ones) and the faulty run
    with ``faults_per_kind`` of every kind, then the comparison."""
    report = Report(
        seed=seed,
        intervals=intervals,
        schedule="serial" if serial else "rounds",
        freeze_s=freeze_s,
        overlap=overlap,
        hold_until_recovered=hold_until_recovered,
        alongside=alongside,
    )
    rng = random.Random(seed)
    plan = [k for k in kinds for _ in range(faults_per_kind)]
    rng.shuffle(plan)
    with contextlib.ExitStack() as stack:
        if work_dir is None:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="gridsim-chaos-")))
        else:  # kept: the services' logs (<work>/<run>/<service>.log) and the broker's, for reading
            work = work_dir
            work.mkdir(parents=True, exist_ok=True)
        os.chmod(work, 0o755)  # searchable by the servers' own users
        broker = Broker(work / "broker")
        db = Database(work / "pg")
        broker.start()
        db.start()
        servers: list[Broker | Database] = [broker, db]
        if alongside:  # the fault-free run on servers of its own: no fault of the other run reaches it
            ref_broker, ref_db = Broker(work / "ref-broker"), Database(work / "ref-pg")
            ref_broker.start()
            ref_db.start()
            servers += [ref_broker, ref_db]
        else:
            ref_broker, ref_db = broker, db
        reference = Run("reference", ref_broker, ref_db, work, seed, names=services)
        faulty = Run("faulty", broker, db, work, seed, names=services)
        supervisors = [
            asyncio.create_task(reference.services.supervise()),
            asyncio.create_task(faulty.services.supervise()),
        ]

        async def fault_free() -> None:
            started = time.monotonic()
            await reference.start()
            reference.services.supervising = True
            await reference.step_to(intervals)
            await reference.settle()
            report.reference_s = round(time.monotonic() - started, 1)
            reference.services.stop_all()

        fault_free_run: asyncio.Task[None] | None = None
        try:
            if alongside:
                fault_free_run = asyncio.create_task(fault_free())
            else:
                await fault_free()

            started = time.monotonic()
            async with Watcher(faulty, probe_timeout_s) as watch:
                await faulty.start()
                faulty.services.supervising = True
                if serial:
                    await _serial(
                        faulty, broker, db, watch=watch, plan=plan, intervals=intervals,
                        freeze_s=freeze_s, rng=rng, report=report,
                    )  # fmt: skip
                else:
                    await _rounds(
                        faulty, broker, db, watch=watch, kinds=kinds, per_kind=faults_per_kind,
                        intervals=intervals, freeze_s=freeze_s, rng=rng, report=report,
                        progress=progress, budget_s=budget_s, overlap=overlap,
                        hold_until_recovered=hold_until_recovered,
                    )  # fmt: skip
                await faulty.step_to(intervals)
                await faulty.settle()
                report.unrecovered = watch.unrecovered
                report.gave_up = watch.gave_up
            report.elapsed_s = round(time.monotonic() - started, 1)
            report.respawns = dict(faulty.services.respawns)
            if fault_free_run is not None:
                await fault_free_run
            month = "2025-06"
            ref_bills, got_bills = await reference_bills(reference, faulty, month)
            report.bills_compared = len(ref_bills)
            report.differences.extend(
                f"bill {a.get('meter_id')}: {a} != {b}"
                for a, b in zip(ref_bills, got_bills, strict=False)
                if a != b
            )
            if len(ref_bills) != len(got_bills):
                report.differences.append(f"bills: {len(ref_bills)} != {len(got_bills)}")
            compare(reference, faulty, report)
        finally:
            for task in supervisors:
                task.cancel()
            if fault_free_run is not None:
                fault_free_run.cancel()
                with contextlib.suppress(BaseException):
                    await fault_free_run
            reference.services.stop_all()
            faulty.services.stop_all()
            for server in servers:
                server.stop()
    return report


async def reference_bills(reference: Run, faulty: Run, month: str) -> tuple[list[Any], list[Any]]:
    """Both runs' bills of ``month``, read through billing (started again for the reference)."""
    got = await faulty.bills(month)
    faulty.services.stop_all()
    reference.services.start("billing")
    reference.services.start("meter-sim")  # billing reads the simulated clock
    try:
        ref = await reference.bills(month)
    finally:
        reference.services.stop_all()
    return ref, got


# ------------------------------------------------------------------------------------------ results


def _stats(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "median": ordered[len(ordered) // 2],
        "p90": ordered[min(len(ordered) - 1, (len(ordered) * 9) // 10)],
        "max": ordered[-1],
    }


def summary(report: Report) -> dict[str, Any]:
    recover: dict[str, list[float]] = defaultdict(list)
    settle: dict[str, list[float]] = defaultdict(list)
    for fault in report.faults:
        recover[fault.kind].append(fault.recover_s)
        settle[fault.kind].append(fault.settle_s)
    return {
        "seed": report.seed,
        "intervals": report.intervals,
        "schedule": report.schedule,
        "freeze_s": report.freeze_s,
        "overlap": report.overlap,
        "hold_until_recovered": report.hold_until_recovered,
        "reference_alongside": report.alongside,
        "faults": len(report.faults),
        "faults_by_kind": dict(sorted(Counter(f.kind for f in report.faults).items())),
        "recover_s_by_kind": {k: _stats(v) for k, v in sorted(recover.items())},
        "settle_s_by_kind": {k: _stats(v) for k, v in sorted(settle.items())},
        "respawns": report.respawns,
        "unrecovered": report.unrecovered,
        "gave_up": report.gave_up,
        "cut_short": report.cut_short,
        "readings_compared": report.readings_compared,
        "rollups_compared": report.rollups_compared,
        "meter_rollups_compared": report.meter_rollups_compared,
        "bills_compared": report.bills_compared,
        "differences": len(report.differences),
        "missing": report.missing,
        "differences_by_kind": dict(sorted(Counter(_difference_kind(d) for d in report.differences).items())),
        "first_differences": _first_of_each_kind(report.differences, 5),
        "elapsed_s": report.elapsed_s,
        "reference_s": report.reference_s,
    }


def _difference_kind(difference: str) -> str:
    """What a difference is about: "reading", "rollup", "bill", "extra meter_data_15m row", ...
    (the words before the row's key), so that a failed campaign says where to look."""
    words = []
    for word in difference.split(" "):
        if word[:1] in "({[0123456789" or word.endswith(":"):
            if word.endswith(":") and word[:1] not in "({[0123456789":
                words.append(word[:-1])
            break
        words.append(word)
    return " ".join(words)


def _first_of_each_kind(differences: list[str], n: int) -> list[str]:
    """The first ``n`` differences of each kind (a list cut at its first 20 showed only bills)."""
    taken: Counter[str] = Counter()
    first = []
    for difference in differences:
        kind = _difference_kind(difference)
        if taken[kind] < n:
            taken[kind] += 1
            first.append(difference)
    return first


def write_results(report: Report, load: tuple[float, float, float], folder: Path = RESULTS) -> dict[str, Any]:
    data = summary(report) | {"load_average": load, "fault_log": [asdict(f) for f in report.faults]}
    folder.mkdir(exist_ok=True, parents=True)
    (folder / "chaos.json").write_text(json.dumps(data, indent=2, default=str) + "\n")
    schedule = (
        "one fault at a time, each followed by a wait until all is stored"
        if report.schedule == "serial"
        else "rounds of one fault of every kind in a shuffled order, a second or two apart, windows in the "
        f"background: faults overlap; {report.overlap} round(s) in flight at once; a component's next fault "
        + (
            "waits until it works again after the previous one"
            if report.hold_until_recovered
            else "waits for the previous one's end (it may land during its recovery)"
        )
    ) + (
        "; the fault-free run alongside, on a broker and database of its own"
        if report.alongside
        else "; the fault-free run first, on the same servers"
    )
    lines = [
        "# Chaos campaign",
        "",
        f"Seed {report.seed}, demo world, {report.intervals} one-minute intervals stepped; schedule: "
        f"{schedule}; freezes, pauses and stalls last {report.freeze_s:g} s; load average "
        f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} when it ended. `uv run python bench/chaos.py`.",
        "",
        f"- faults injected: {len(report.faults)}",
        f"- readings compared: {report.readings_compared:,}; grid rollups: {report.rollups_compared:,}; "
        f"per-meter rollups: {report.meter_rollups_compared:,}; bills: {report.bills_compared}",
        f"- **differences: {len(report.differences)}**, missing: {report.missing}"
        + (f" (by kind: {summary(report)['differences_by_kind']})" if report.differences else ""),
        f"- faulty run {report.elapsed_s:.0f} s, fault-free run {report.reference_s:.0f} s"
        + (f"; **cut short**: {report.cut_short}" if report.cut_short else ""),
        f"- services that exited on their own and were started again: {report.respawns or 'none'}; "
        f"recovery probes that gave up (10 min): {report.unrecovered}",
        "",
        "Recover: from the fault's end (a restart done, a SIGCONT) until the component works again (a "
        "restarted service says `online`; after a broker fault every service has beaten again; after a "
        "database or aggregator fault the watermark moves). Settle: from the same moment until everything "
        "stepped so far is stored, closed and rolled"
        + (" (at the end of the fault's round)." if report.schedule == "rounds" else "."),
        "",
        "| fault | count | recover median (s) | p90 | max | settle median (s) | p90 | max |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for kind, rec in data["recover_s_by_kind"].items():
        st = data["settle_s_by_kind"][kind]
        lines.append(
            f"| {kind} | {data['faults_by_kind'][kind]} | {rec['median']:.2f} | {rec['p90']:.2f} | "
            f"{rec['max']:.2f} | {st['median']:.2f} | {st['p90']:.2f} | {st['max']:.2f} |"
        )
    (folder / "chaos.md").write_text("\n".join(lines) + "\n")
    return data


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--intervals", type=int, default=300)
    parser.add_argument("--faults-per-kind", type=int, default=50)
    parser.add_argument("--freeze-s", type=float, default=30.0)
    parser.add_argument("--kinds", default=",".join(KINDS), help="comma-separated fault kinds")
    parser.add_argument("--serial", action="store_true", help="one fault at a time (slow)")
    parser.add_argument(
        "--reference-first",
        action="store_true",
        help="run the fault-free run before the faulty one on the same servers (default: alongside it, "
        "on a broker and database of its own)",
    )
    parser.add_argument(
        "--hold-until-recovered",
        action="store_true",
        help="a fault on a component waits until the component works again after the previous one "
        "(default: until the previous fault has ended)",
    )
    parser.add_argument(
        "--overlap", type=int, default=2, help="rounds in flight at once (1: each round settles first)"
    )
    parser.add_argument(
        "--budget-s", type=float, help="start no new round after this many seconds of the faulty run"
    )
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder of chaos.{json,md}")
    parser.add_argument(
        "--work",
        type=Path,
        help="keep the servers' data and the services' logs here (default: a temporary folder)",
    )
    parser.add_argument(
        "--probe-timeout-s", type=float, default=600.0, help="a recovery probe gives up after this long"
    )
    args = parser.parse_args()
    kinds = tuple(k for k in args.kinds.split(",") if k)
    args.results.mkdir(parents=True, exist_ok=True)  # the progress file is written after each round
    report = asyncio.run(
        campaign(
            args.seed,
            args.intervals,
            args.faults_per_kind,
            args.freeze_s,
            kinds,
            serial=args.serial,
            progress=args.results / "chaos.partial.json",
            budget_s=args.budget_s,
            overlap=args.overlap,
            alongside=not args.reference_first,
            hold_until_recovered=args.hold_until_recovered,
            work_dir=args.work,
            probe_timeout_s=args.probe_timeout_s,
        )
    )
    data = write_results(report, os.getloadavg(), args.results)
    print(json.dumps({k: v for k, v in data.items() if k != "fault_log"}, indent=2, default=str))
    return 0 if not report.differences and report.missing == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
