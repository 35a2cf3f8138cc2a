"""``gridsim up``: a broker and a database (configured or embedded), migrations, six supervised services.

The launcher owns every process it starts. Children run in their own process group, so a terminal's
Ctrl-C reaches only the launcher, which then stops them in order: services (SIGTERM, then SIGKILL),
then the embedded servers. Each child also gets a parent-death signal, so a ``kill -9`` of the
launcher leaves no orphan.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from gridsim import credentials as creds_file
from gridsim.embedded import (
    BROKER_QUEUE_MESSAGES,
    BrokerAuth,
    EmbeddedServer,
    EmbeddedServerError,
    create_database,
    free_port,
    parent_death_signal,
    port_answers,
    postgres_connects,
    set_password,
    start_broker,
    start_postgres,
)
from gridsim_shared import access, roles

__all__ = [
    "SERVICES",
    "UpOptions",
    "apply_migrations_sync",
    "ensure_database",
    "fetch_health",
    "run_up",
]

log = logging.getLogger("gridsim.launcher")

# service name -> importable package with a ``__main__``; the gateway last so /health sees the others.
SERVICES: dict[str, str] = {
    "meter-sim": "gridsim_meter_sim",
    "aggregator": "gridsim_aggregator",
    "billing": "gridsim_billing",
    "feasibility": "gridsim_feasibility",
    "utility": "gridsim_utility",
    "gateway": "gridsim_gateway",
}

STOP_TIMEOUT_S = 10.0
HEALTH_PATIENCE_S = 60.0
# A child that ran this long before crashing is restarted at once: its earlier failures are history.
STABLE_AFTER_S = 60.0
MAX_BACKOFF_S = 30.0
HEALTH_POLL_S = 2.0
# A service reported stalled (or a gateway that does not answer) this long is killed and restarted.
STALLED_RESTART_S = 30.0


@dataclass(frozen=True)
class UpOptions:
    """The command line of ``gridsim up``."""

    data_dir: Path
    embedded: bool = False
    http_port: int | None = None
    mqtt_port: int | None = None
    pg_port: int | None = None
    demo: bool = True
    timescale: bool = False  # the database must have TimescaleDB (a configured one, or an embedded one)


# ------------------------------------------------------------------------------ configuration


def explicit_keys(env_file: Path = Path(".env")) -> set[str]:
    """``GRIDSIM_*`` names the user set, in the environment or in ``.env`` (upper-cased, as pydantic does)."""
    keys = {k.upper() for k in os.environ if k.upper().startswith("GRIDSIM_")}
    if env_file.is_file():
        from dotenv import dotenv_values

        keys |= {k.upper() for k in dotenv_values(env_file) if k.upper().startswith("GRIDSIM_")}
    return keys


def _is_explicit(keys: set[str], group: str) -> bool:
    # Either the nested form (GRIDSIM_MQTT__URL) or the whole group as JSON (GRIDSIM_MQTT='{"url": ...}').
    return f"GRIDSIM_{group}__URL" in keys or f"GRIDSIM_{group}" in keys


def maintenance_conninfo(url: str) -> str:
    """The same server as ``url`` but the ``postgres`` database, which always exists."""
    from psycopg.conninfo import make_conninfo

    return make_conninfo(url, dbname="postgres")


def _database_name(url: str) -> str:
    from psycopg.conninfo import conninfo_to_dict

    name = conninfo_to_dict(url).get("dbname")
    return str(name) if name else "postgres"


def database_answers(url: str, timeout: float = 2.0) -> bool:
    """True when the server behind ``url`` accepts a connection (to its ``postgres`` database)."""
    return postgres_connects(maintenance_conninfo(url), max(1, round(timeout)))


def ensure_database(url: str) -> None:
    """Create the database ``url`` names when the server lacks it."""
    name = _database_name(url)
    if create_database(maintenance_conninfo(url), name):
        log.info("created database %s", name)


def apply_migrations_sync(url: str, schema: str) -> list[str]:
    """Run the shared library's migrations (async) to completion from synchronous code."""
    from gridsim_shared.db import apply_migrations

    return asyncio.run(apply_migrations(url, schema))


# ----------------------------------------------------------------------------------- backends


@dataclass
class Backends:
    """The broker and database the services will use, and the embedded servers to stop afterwards."""

    mqtt_url: str
    db_url: str
    servers: list[EmbeddedServer] = field(default_factory=list)
    # How to start each server again (same port, same data): the launcher restarts one that exits.
    starters: list[Callable[[], EmbeddedServer]] = field(default_factory=list)
    restarts: int = 0
    # Messages the broker queues per subscriber when the launcher started it (None: a configured broker,
    # whose limits are unknown; meter-sim's default window then suits a stock Mosquitto).
    broker_queue: int | None = None

    def add(self, start: Callable[[], EmbeddedServer]) -> EmbeddedServer:
        """Start a server and remember how to start it again."""
        server = start()
        self.servers.append(server)
        self.starters.append(start)
        return server

    def restart_exited(self) -> list[str]:
        """Start again every embedded server whose process exited; the names of those restarted."""
        restarted: list[str] = []
        for index, server in enumerate(self.servers):
            if server.running:
                continue
            code = server.process.returncode
            log.warning("the embedded %s exited (code %s); restarting it", server.name, code)
            server.stop()  # closes its log and scratch folders
            self.servers[index] = self.starters[index]()
            self.restarts += 1
            restarted.append(server.name)
        return restarted

    # Set when the embedded servers enforce them: each service then gets its own login.
    credentials: creds_file.Credentials | None = None
    broker_auth: bool = False
    db_roles: bool = False
    # Services that keep the migrating login: on TimescaleDB only the owner of a continuous aggregate may
    # refresh it, and the aggregator does.
    db_owner_login: frozenset[str] = frozenset()

    def stop(self) -> None:
        # Reverse order of start: the database goes before the broker it was started after.
        for server in reversed(self.servers):
            server.stop()
            log.info("stopped the embedded %s", server.name)
        self.servers.clear()
        self.starters.clear()


def _choose_broker(
    options: UpOptions, configured_url: str, explicit: bool, backends: Backends, acl: str
) -> None:
    parts = urlsplit(configured_url)
    if explicit and not options.embedded:
        if port_answers(parts.hostname or "127.0.0.1", parts.port or 1883):
            log.info("using the configured broker %s", configured_url)
            backends.mqtt_url = configured_url
            return
        log.warning("the configured broker %s does not answer; starting an embedded one", configured_url)
    credentials = backends.credentials or creds_file.load_or_create(options.data_dir)
    backends.credentials = credentials
    auth = BrokerAuth(passwords=access.mosquitto_passwords(credentials.mqtt), acl=acl)
    port = options.mqtt_port or free_port()
    server = backends.add(lambda: start_broker(options.data_dir / "broker", port, auth=auth))
    backends.mqtt_url = server.url
    backends.broker_auth = server.name == "mosquitto"
    backends.broker_queue = BROKER_QUEUE_MESSAGES


def database_has_timescale(url: str) -> bool:
    """Whether the server behind ``url`` can use TimescaleDB (installed and preloaded)."""
    import psycopg

    from gridsim_shared.db import timescale_available

    async def probe() -> bool:
        async with await psycopg.AsyncConnection.connect(maintenance_conninfo(url), autocommit=True) as conn:
            return await timescale_available(conn)

    return asyncio.run(probe())


def _choose_database(options: UpOptions, configured_url: str, explicit: bool, backends: Backends) -> None:
    if explicit and not options.embedded:
        if database_answers(configured_url):
            if options.timescale and not database_has_timescale(configured_url):
                msg = (
                    f"--timescale: the configured database {_redact(configured_url)} has no TimescaleDB "
                    "(installed and in shared_preload_libraries); see scripts/install-timescaledb.sh"
                )
                raise EmbeddedServerError(msg)
            log.info("using the configured database %s", _redact(configured_url))
            backends.db_url = configured_url
            return
        log.warning(
            "the configured database %s does not answer; starting an embedded one", _redact(configured_url)
        )
    name = _database_name(configured_url) if explicit else "gridsim"
    credentials = backends.credentials or creds_file.load_or_create(options.data_dir)
    backends.credentials = credentials
    password = credentials.db[creds_file.DB_SUPERUSER]
    port = options.pg_port or free_port()
    # A TimescaleDB cluster may be another PostgreSQL major version than the plain one: its own folder.
    folder = "postgres-timescale" if options.timescale else "postgres"
    server = backends.add(
        lambda: start_postgres(
            options.data_dir / folder, port, database=name, timescale=options.timescale, password=password
        )
    )
    backends.db_url = server.url
    backends.db_roles = True
    if options.timescale:
        backends.db_owner_login = frozenset({"aggregator"})


def _redact(url: str) -> str:
    """``url`` without its password, for logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return parts._replace(netloc=netloc).geturl()


def start_backends(options: UpOptions, mqtt_url: str, db_url: str, acl: str | None = None) -> Backends:
    """Pick (or start) the broker and the database; stops what it started if a later step fails."""
    keys = explicit_keys()
    backends = Backends(mqtt_url=mqtt_url, db_url=db_url)
    try:
        _choose_broker(
            options, mqtt_url, _is_explicit(keys, "MQTT"), backends, acl or access.mosquitto_acl("gridsim")
        )
        _choose_database(options, db_url, _is_explicit(keys, "DB"), backends)
    except BaseException:
        backends.stop()
        raise
    return backends


# ----------------------------------------------------------------------------------- services


@dataclass
class ServiceProcess:
    """One supervised service: restarted with exponential backoff whenever it exits on its own."""

    name: str
    module: str
    env: Mapping[str, str]
    process: asyncio.subprocess.Process | None = None
    restarts: int = 0
    stalled_restarts: int = 0
    started: float = 0.0  # monotonic time of the current process's start

    async def supervise(self, stopping: asyncio.Event) -> None:
        failures = 0
        while not stopping.is_set():
            started = time.monotonic()
            await self._start()
            code = await self._wait_for_exit()
            if stopping.is_set():
                return
            failures = 0 if time.monotonic() - started >= STABLE_AFTER_S else failures + 1
            delay = min(MAX_BACKOFF_S, 0.5 * 2**failures)
            self.restarts += 1
            log.warning("%s exited with code %s; restarting in %.1f s", self.name, code, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), delay)

    async def _start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            self.module,
            env=dict(self.env),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            # Own process group: a terminal's Ctrl-C reaches the launcher only, which stops us in order.
            process_group=0,
            preexec_fn=parent_death_signal(signal.SIGTERM),
        )
        self.started = time.monotonic()
        log.info("started %s (pid %d)", self.name, self.process.pid)

    async def _wait_for_exit(self) -> int:
        assert self.process is not None
        assert self.process.stdout is not None
        prefix = f"{self.name:<11} | ".encode()
        async for line in self.process.stdout:
            sys.stderr.buffer.write(prefix + line)
            sys.stderr.buffer.flush()
        return await self.process.wait()

    def kill(self, reason: str) -> None:
        """SIGKILL the process (it hangs); :meth:`supervise` starts a new one."""
        if self.process is not None and self.process.returncode is None:
            log.warning("%s %s; killing it (pid %d) to restart it", self.name, reason, self.process.pid)
            self.stalled_restarts += 1
            self.signal(signal.SIGKILL)

    def signal(self, sig: signal.Signals) -> None:
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(sig)


def enable_service_roles(backends: Backends) -> None:
    """Let each service's database role log in with its password (embedded database only)."""
    if not backends.db_roles or backends.credentials is None:
        return
    for role in roles.ROLES.values():
        set_password(backends.db_url, role, backends.credentials.db[role], login=True)


def service_credentials(name: str, backends: Backends) -> dict[str, str]:
    """The environment that makes service ``name`` log in as itself, where the servers enforce it."""
    env: dict[str, str] = {}
    credentials = backends.credentials
    if credentials is None:
        return env
    if backends.broker_auth and name in credentials.mqtt:
        env["GRIDSIM_MQTT__USERNAME"] = name
        env["GRIDSIM_MQTT__PASSWORD"] = credentials.mqtt[name]
    if backends.db_roles and name in roles.ROLES and name not in backends.db_owner_login:
        from psycopg.conninfo import make_conninfo

        role = roles.ROLES[name]
        env["GRIDSIM_DB__URL"] = make_conninfo(backends.db_url, user=role, password=credentials.db[role])
    return env


def service_env(options: UpOptions, backends: Backends, http_port: int) -> dict[str, str]:
    """The environment every service starts with: the user's, plus what the launcher decided."""
    env = dict(os.environ)
    env["GRIDSIM_MQTT__URL"] = backends.mqtt_url
    env["GRIDSIM_DB__URL"] = backends.db_url
    env["GRIDSIM_GATEWAY__PORT"] = str(http_port)
    if not options.demo:
        env["GRIDSIM_SIM__DEMO_WORLD"] = "false"
    if backends.broker_queue is not None:
        # The embedded broker queues more than a stock one: widen meter-sim's window to it.
        env.setdefault("GRIDSIM_SIM__MAX_AHEAD_MESSAGES", str(backends.broker_queue))
    if "GRIDSIM_LOG__FORMAT" not in explicit_keys() and sys.stderr.isatty():
        # The services' output goes through a pipe to this terminal: keep it readable.
        env["GRIDSIM_LOG__FORMAT"] = "console"
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def _metrics_port(env: Mapping[str, str], index: int) -> dict[str, str]:
    """``env`` with each service on its own metrics port: the configured one plus the service's index."""
    own = dict(env)
    base = own.get("GRIDSIM_SUPERVISION__METRICS_PORT", "0")
    if base.isdigit() and int(base):
        own["GRIDSIM_SUPERVISION__METRICS_PORT"] = str(int(base) + index)
    return own


# -------------------------------------------------------------------------------------- health


def fetch_health(url: str, timeout: float = 2.0) -> dict[str, Any] | None:
    """GET ``url`` (the gateway's /health) and decode it; None when nothing sensible answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body = response.read()
    except urllib.error.HTTPError as error:
        body = error.read()  # a 503 "degraded" still carries the report
    except (OSError, ValueError):
        return None
    try:
        decoded = json.loads(body)
    except ValueError:
        return None
    return decoded if isinstance(decoded, dict) else None


def client_host(host: str) -> str:
    """Where to connect for a server bound to ``host`` (a wildcard bind answers on loopback)."""
    return "127.0.0.1" if host in {"0.0.0.0", "", "::"} else host


def health_url(host: str, port: int) -> str:
    return f"http://{client_host(host)}:{port}/health"


async def _wait_healthy(url: str, stopping: asyncio.Event) -> dict[str, Any] | None:
    """Poll /health until it reports ok; warn once after HEALTH_PATIENCE_S; None if stopped first."""
    started = time.monotonic()
    warned = False
    last: dict[str, Any] | None = None
    while not stopping.is_set():
        last = await asyncio.to_thread(fetch_health, url)
        if last is not None and last.get("status") == "ok":
            return last
        if not warned and time.monotonic() - started > HEALTH_PATIENCE_S:
            log.warning("not healthy after %.0f s; still waiting. Last /health: %s", HEALTH_PATIENCE_S, last)
            warned = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), 0.5)
    return None


def _print_urls(http_base: str, backends: Backends, elapsed: float, data_dir: Path) -> None:
    lines = [
        f"gridsim is up ({elapsed:.1f} s)",
        f"  HTTP      {http_base}",
        f"  API docs  {http_base}/docs",
        f"  MQTT      {backends.mqtt_url}",
        f"  database  {_redact(backends.db_url)}",
    ]
    if backends.broker_auth and backends.credentials is not None:
        dashboard = backends.credentials.mqtt[access.DASHBOARD]
        lines += [
            f"  MQTT read-only login for dashboards: user {access.DASHBOARD}, password {dashboard}",
            f"  every credential (0600): {data_dir / creds_file.FILE_NAME}  (`gridsim credentials` shows them)",
        ]
    print("\n".join([*lines, "Press Ctrl-C to stop."]), flush=True)


# ---------------------------------------------------------------------------------- supervisor


async def watch_services(url: str, services: list[ServiceProcess], stopping: asyncio.Event) -> None:
    """Kill (so restart) a service whose heartbeat is stale, or the gateway when it stops answering.

    A process that hangs (a blocked event loop, a deadlock) neither exits nor recovers: /health reports it
    ``stalled`` once its heartbeat is older than ``stale_after_beats`` periods. Crashes need nothing
    here: :meth:`ServiceProcess.supervise` restarts a process that exits.
    """
    by_name = {service.name: service for service in services}
    since: dict[str, float] = {}
    while not stopping.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), HEALTH_POLL_S)
        if stopping.is_set():
            return
        report = await asyncio.to_thread(fetch_health, url)
        now = time.monotonic()
        states = report.get("services", {}) if report is not None else {"gateway": "stalled"}
        for name, state in states.items():
            if state != "stalled" or name not in by_name:
                since.pop(name, None)
                continue
            first = since.setdefault(name, now)
            # A process just (re)started has not published its first heartbeat yet: give it time.
            if now - first >= STALLED_RESTART_S and now - by_name[name].started >= STALLED_RESTART_S:
                by_name[name].kill("has not answered" if report is None else "stalled (stale heartbeat)")
                since.pop(name, None)


async def watch_backends(backends: Backends, stopping: asyncio.Event) -> None:
    """Start again an embedded broker or database that exited (services reconnect on their own)."""
    while not stopping.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), 1.0)
        if not stopping.is_set():
            try:
                await asyncio.to_thread(backends.restart_exited)
            except Exception:
                log.exception("could not restart an embedded server; trying again")


async def _stop_services(services: list[ServiceProcess], tasks: list[asyncio.Task[None]]) -> None:
    for service in services:
        service.signal(signal.SIGTERM)
    _, pending = await asyncio.wait(tasks, timeout=STOP_TIMEOUT_S)
    if pending:
        late = [s.name for s in services if s.process is not None and s.process.returncode is None]
        log.warning("killing services that ignored SIGTERM for %.0f s: %s", STOP_TIMEOUT_S, ", ".join(late))
        for service in services:
            service.signal(signal.SIGKILL)
        await asyncio.wait(pending, timeout=STOP_TIMEOUT_S)


async def supervise(
    options: UpOptions, backends: Backends, http_host: str, http_port: int, started: float
) -> int:
    """Run the services until SIGINT/SIGTERM; return the exit code."""
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    env = service_env(options, backends, http_port)
    services = [
        ServiceProcess(name, module, _metrics_port(env | service_credentials(name, backends), index))
        for index, (name, module) in enumerate(SERVICES.items())
    ]
    tasks = [asyncio.create_task(s.supervise(stopping), name=s.name) for s in services]
    try:
        report = await _wait_healthy(health_url(http_host, http_port), stopping)
        if report is not None:
            base = health_url(http_host, http_port).removesuffix("/health")
            _print_urls(base, backends, time.monotonic() - started, options.data_dir)
        watchers = [
            asyncio.create_task(watch_services(health_url(http_host, http_port), services, stopping)),
            asyncio.create_task(watch_backends(backends, stopping)),
        ]
        await stopping.wait()
        for watcher in watchers:
            watcher.cancel()
        log.info("stopping gridsim")
    finally:
        stopping.set()
        await _stop_services(services, tasks)
    return 0


@contextlib.contextmanager
def _sigterm_as_keyboard_interrupt() -> Iterator[None]:
    """Until the event loop takes over, SIGTERM unwinds like Ctrl-C so ``finally`` blocks run."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_up(options: UpOptions) -> int:
    """``gridsim up``: blocks until stopped; returns the process exit code."""
    from gridsim_shared.settings import Settings

    started = time.monotonic()
    settings = Settings()
    http_port = options.http_port or settings.gateway.port
    if port_answers(client_host(settings.gateway.host), http_port):
        log.error("port %d is taken (another gridsim?); pick one with --http-port", http_port)
        return 1
    options.data_dir.mkdir(parents=True, exist_ok=True)
    backends: Backends | None = None
    try:
        with _sigterm_as_keyboard_interrupt():
            acl = access.mosquitto_acl(
                settings.mqtt.base_topic, discovery=settings.homeassistant.discovery_prefix
            )
            backends = start_backends(options, settings.mqtt.url, settings.db.url, acl)
            ensure_database(backends.db_url)
            applied = apply_migrations_sync(backends.db_url, settings.db.schema_name)
            enable_service_roles(backends)
            log.info("migrations applied: %s", ", ".join(applied) or "none (up to date)")
        return asyncio.run(supervise(options, backends, settings.gateway.host, http_port, started))
    except KeyboardInterrupt:
        log.info("interrupted during start-up")
        return 130
    except EmbeddedServerError as error:  # no usable database (e.g. --timescale where none has it)
        log.error("%s", error)
        return 1
    finally:
        if backends is not None:
            backends.stop()
