"""The logic behind the root ``conftest.py`` fixtures: a real broker and a real PostgreSQL for tests.

Each is found by a ladder (STYLE.md §2.8), first rung that works wins:

1. ``GRIDSIM_TEST_MQTT_URL`` / ``GRIDSIM_TEST_DATABASE_URL`` when set;
2. the machine's own servers, ``127.0.0.1:1883`` and ``postgresql://postgres@127.0.0.1:5432/test``;
3. private servers from :mod:`gridsim.embedded`, in a temp dir, stopped at the end of the session;
4. testcontainers, only when it is installed and a Docker engine answers.

When none works the tests that need one are skipped, except in CI (``CI`` or
``GRIDSIM_REQUIRE_INTEGRATION`` set), where a silent skip would hide that they never ran: they fail.

``GRIDSIM_TEST_ENGINE`` (``postgres`` or ``timescale``) says which storage engine the database must be;
set, a database of the other kind fails every test that uses it, and the TimescaleDB tests (marked
``timescale``) fail instead of skipping. CI runs the suite once per engine (``.ci/run``).

Only tests marked ``integration`` should use these fixtures (documented, not enforced).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shutil
import tempfile
import threading
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args
from urllib.parse import urlsplit

from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from gridsim.embedded import (
    BrokerAuth,
    EmbeddedServerError,
    free_port,
    port_answers,
    postgres_connects,
    start_broker,
    start_postgres,
)
from gridsim_shared import access
from gridsim_shared.settings import DbSettings, MqttSettings, Settings, SimSettings, UtilitySettings

__all__ = [
    "ENGINES",
    "LOCAL_DATABASE_URL",
    "LOCAL_MQTT_URL",
    "Engine",
    "IsolatedSettings",
    "Ladder",
    "PeakRss",
    "Unavailable",
    "WrongEngine",
    "check_engine",
    "database_engine",
    "database_url_ladder",
    "fill_meter_data",
    "fresh_settings",
    "integration_required",
    "mqtt_url_ladder",
    "required_engine",
    "run_coroutine",
    "served",
]

log = logging.getLogger("gridsim.testing")

LOCAL_MQTT_URL = "mqtt://127.0.0.1:1883"
LOCAL_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/test"
TEST_MQTT_USER = "gridsim-test"

T = TypeVar("T")
# A rung-by-rung search for a server; what it starts is stopped when the ExitStack closes.
Ladder = Callable[[contextlib.ExitStack], str]


Engine = Literal["postgres", "timescale"]
ENGINES: tuple[Engine, ...] = get_args(Engine)


class Unavailable(Exception):
    """No rung of the ladder gave a server; the message says what was tried."""


class WrongEngine(Exception):
    """The test database is not the storage engine ``GRIDSIM_TEST_ENGINE`` names."""


def integration_required() -> bool:
    """True in CI, where a missing broker or database must fail the run instead of skipping."""
    return bool(os.environ.get("CI") or os.environ.get("GRIDSIM_REQUIRE_INTEGRATION"))


def required_engine() -> Engine | None:
    """The storage engine ``GRIDSIM_TEST_ENGINE`` demands, or None when any will do."""
    value = os.environ.get("GRIDSIM_TEST_ENGINE", "").strip().lower()
    if not value:
        return None
    for engine in ENGINES:
        if value == engine:
            return engine
    msg = f"GRIDSIM_TEST_ENGINE={value!r}: must be one of {', '.join(ENGINES)}"
    raise WrongEngine(msg)


def database_engine(database_url: str) -> Engine:
    """What the server at ``database_url`` is: TimescaleDB when it can use the extension."""
    from gridsim_shared.db import connect, timescale_available

    async def probe() -> bool:
        async with await connect(database_url, autocommit=True) as conn:
            return await timescale_available(conn)

    return "timescale" if run_coroutine(probe) else "postgres"


def check_engine(database_url: str) -> None:
    """Raise :class:`WrongEngine` when ``GRIDSIM_TEST_ENGINE`` is set and the database is the other kind."""
    wanted = required_engine()
    if wanted is None:
        return
    found = database_engine(database_url)
    if found != wanted:
        hint = (
            " (TimescaleDB is installed and preloaded by scripts/install-timescaledb.sh --conf)"
            if wanted == "timescale"
            else ""
        )
        msg = f"GRIDSIM_TEST_ENGINE={wanted} but {_redact(database_url)} is {found}{hint}"
        raise WrongEngine(msg)


def _redact(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}:{parts.port or 5432}{parts.path}"


def run_coroutine(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion on a private loop in a worker thread.

    Sync fixtures may be set up while pytest-asyncio owns the main thread's loop; ``asyncio.run``
    there would replace (and then close) it.
    """
    result: list[T] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(factory()))
        except BaseException as error:
            errors.append(error)

    thread = threading.Thread(target=target, name="gridsim-testing")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return result[0]


# ----------------------------------------------------------------------------------- ladders


def _private_dir(stack: contextlib.ExitStack) -> Path:
    """A temp dir removed at the end of the session, searchable by the unprivileged server users."""
    path = Path(tempfile.mkdtemp(prefix="gridsim-test-"))
    path.chmod(0o755)  # ours, fresh: PostgreSQL runs as nobody when the tests run as root
    stack.callback(shutil.rmtree, path, ignore_errors=True)
    return path


def _docker_answers() -> bool:
    try:
        import docker
    except ImportError:
        return False
    try:
        docker.from_env().ping()
    except Exception:
        return False
    return True


def mqtt_url_ladder(stack: contextlib.ExitStack) -> str:
    """The broker URL for this session; servers it starts are stopped when ``stack`` closes."""
    if url := os.environ.get("GRIDSIM_TEST_MQTT_URL"):
        return url
    if port_answers("127.0.0.1", 1883):
        return LOCAL_MQTT_URL
    tried = ["GRIDSIM_TEST_MQTT_URL unset", "nothing on 127.0.0.1:1883"]
    # Like `gridsim up`'s broker, it refuses anonymous clients: the tests log in as a user that may use
    # every topic, since each test plays every service under its own topic base.
    password = access.generate_password()
    auth = BrokerAuth(
        passwords=access.mosquitto_passwords({TEST_MQTT_USER: password}),
        acl=access.mosquitto_acl("unused", users=(), superusers=[TEST_MQTT_USER]),
    )
    try:
        server = start_broker(_private_dir(stack), free_port(), auth=auth)
    except (EmbeddedServerError, OSError) as error:
        tried.append(f"embedded broker failed: {error}")
    else:
        stack.callback(server.stop)
        return server.url.replace("://", f"://{TEST_MQTT_USER}:{password}@", 1)
    if _docker_answers():
        from testcontainers.mqtt import MosquittoContainer

        container = stack.enter_context(MosquittoContainer("eclipse-mosquitto:2"))
        return f"mqtt://{container.get_container_host_ip()}:{container.get_exposed_port(1883)}"
    tried.append("no Docker engine (or testcontainers not installed)")
    raise Unavailable("no MQTT broker: " + "; ".join(tried))


def database_url_ladder(stack: contextlib.ExitStack) -> str:
    """The PostgreSQL URL for this session; servers it starts are stopped when ``stack`` closes."""
    if url := os.environ.get("GRIDSIM_TEST_DATABASE_URL"):
        return url
    local = urlsplit(LOCAL_DATABASE_URL)
    if port_answers("127.0.0.1", local.port or 5432) and postgres_connects(LOCAL_DATABASE_URL, 2):
        return LOCAL_DATABASE_URL
    tried = ["GRIDSIM_TEST_DATABASE_URL unset", f"{LOCAL_DATABASE_URL} does not answer"]
    try:
        server = start_postgres(_private_dir(stack) / "pg", free_port(), database="test")
    except (EmbeddedServerError, OSError) as error:
        tried.append(f"embedded PostgreSQL failed: {error}")
    else:
        stack.callback(server.stop)
        return server.url
    if _docker_answers():
        from testcontainers.postgres import PostgresContainer

        container = stack.enter_context(PostgresContainer("timescale/timescaledb:latest-pg16", driver=None))
        return str(container.get_connection_url())
    tried.append("no Docker engine (or testcontainers not installed)")
    raise Unavailable("no PostgreSQL: " + "; ".join(tried))


# ---------------------------------------------------------------------------------- settings


class IsolatedSettings(Settings):
    """``Settings`` built from its arguments only: no environment variables, no ``.env``."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def _drop_schema(database_url: str, schema: str) -> None:
    import psycopg

    from gridsim_shared.db import drop_schemas

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(drop_schemas(schema))


@contextlib.contextmanager
def fresh_settings(mqtt_url: str, database_url: str, *, timescale: bool | None = None) -> Iterator[Settings]:
    """Settings for one test: its own topic prefix, a fresh migrated schema (dropped afterwards).

    The simulation neither loads the demo world nor runs its clock: tests step it. ``timescale`` False
    keeps the schema plain PostgreSQL on a TimescaleDB server (see ``apply_migrations``).
    """
    from gridsim_shared.db import apply_migrations

    suffix = secrets.token_hex(4)
    schema = f"t_{suffix}"
    settings = IsolatedSettings(
        mqtt=MqttSettings(url=mqtt_url, base_topic=f"t-{suffix}"),
        db=DbSettings(url=database_url, schema_name=schema),
        sim=SimSettings(demo_world=False, autostart=False),
        # No OpenADR VTN on a fixed port (tests run side by side); a test that wants one gives a free port.
        utility=UtilitySettings(openadr_port=0),
    )
    try:
        run_coroutine(lambda: apply_migrations(database_url, schema, timescale=timescale))
        yield settings
    finally:
        _drop_schema(database_url, schema)


# ------------------------------------------------------------------------------ HTTP and memory


@contextlib.contextmanager
def served(app: Any, timeout: float = 60.0) -> Iterator[str]:
    """Serve an ASGI ``app`` with uvicorn on a free port in a thread (its own loop); yields the base URL.

    Unlike httpx's in-process transport, a real server streams responses (SSE, large exports).
    """
    import time

    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            msg = "the server did not start"
            raise RuntimeError(msg)
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


class PeakRss:
    """Samples this process's resident memory in a thread while the block runs: baseline, peak, growth."""

    def __init__(self, period_s: float = 0.01) -> None:
        import psutil

        self._process = psutil.Process()
        self._period_s = period_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="peak-rss", daemon=True)
        self.baseline = 0
        self.peak = 0

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._process.memory_info().rss)
            self._stop.wait(self._period_s)

    @property
    def growth(self) -> int:
        """Peak minus baseline, in bytes."""
        return max(0, self.peak - self.baseline)

    def __enter__(self) -> PeakRss:
        import gc

        gc.collect()
        self.baseline = self.peak = self._process.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._process.memory_info().rss)


def fill_meter_data(database_url: str, schema: str, meters: int, intervals: int) -> int:
    """Insert ``meters`` meters and ``intervals`` one-minute readings of each (seeded, server-side)."""
    import psycopg

    from gridsim_shared.db import session_options

    with psycopg.connect(database_url, options=session_options(schema)) as conn:
        conn.execute(
            "insert into meters (code) select 'SYN-' || lpad(m::text, 6, '0') from generate_series(1, %s) m",
            (meters,),
        )
        conn.execute("select setseed(0.42)")
        cur = conn.execute(
            "insert into meter_data (ts, meter_id, consumption_kwh, production_kwh, consumption_kvah,"
            " production_kvah, avg_current, avg_voltage, reactive_power_kvar, power_factor)"
            " select timestamptz '2025-06-20Z' + i * interval '1 minute', m.id, random() * 0.02, null,"
            " random() * 0.021, null, 2 + random(), 238 + 4 * random(), random() * 0.006, 0.95"
            " from meters m, generate_series(0, %s - 1) i",
            (intervals,),
        )
        return cur.rowcount
