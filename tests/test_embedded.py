"""The embedded broker and PostgreSQL: they start, answer, keep data, and die with their parent."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import aiomqtt
import psutil
import psycopg
import pytest

from gridsim import launcher, testing
from gridsim.embedded import (
    NOBODY,
    EmbeddedServer,
    EmbeddedServerError,
    free_port,
    port_answers,
    start_broker,
    start_postgres,
)
from gridsim.launcher import UpOptions
from gridsim_shared.db import apply_migrations
from gridsim_shared.settings import DbSettings, Settings

pytestmark = pytest.mark.integration

BROKERS = [
    pytest.param(
        "mosquitto",
        marks=pytest.mark.skipif(shutil.which("mosquitto") is None, reason="mosquitto not on PATH"),
    ),
    "iotcore",
]


@pytest.fixture
def server_dir() -> Iterator[Path]:
    """A temp dir the unprivileged server users can reach (pytest's tmp_path is 0700 under root)."""
    path = Path(tempfile.mkdtemp(prefix="gridsim-embedded-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _listening_addresses(server: EmbeddedServer) -> set[str]:
    # Every server here listens in its main process (the postmaster, not its backends).
    connections = psutil.Process(server.pid).net_connections(kind="inet")
    return {conn.laddr.ip for conn in connections if conn.status == psutil.CONN_LISTEN}


async def _round_trip(url_port: int, payload: bytes) -> bytes:
    topic = f"gridsim-test/{os.getpid()}/round-trip"
    async with aiomqtt.Client("127.0.0.1", port=url_port) as client:
        await client.subscribe(topic, qos=1)
        await client.publish(topic, payload, qos=1)
        async with asyncio.timeout(5):
            async for message in client.messages:
                assert isinstance(message.payload, bytes)
                return message.payload
    msg = "the broker closed the stream without a message"
    raise AssertionError(msg)


@pytest.mark.parametrize("kind", BROKERS)
async def test_broker_round_trip_including_a_large_payload(server_dir: Path, kind: str) -> None:
    port = free_port()
    assert not port_answers("127.0.0.1", port)
    server = start_broker(server_dir, port, kind=kind)  # type: ignore[arg-type]
    try:
        assert server.url == f"mqtt://127.0.0.1:{port}"
        assert port_answers("127.0.0.1", port)
        assert await _round_trip(port, b"hello") == b"hello"
        # rumqttd drops payloads over 20 KB by default, silently; batched readings are bigger.
        big = os.urandom(2 * 1024 * 1024)
        assert await _round_trip(port, big) == big
        assert _listening_addresses(server) == {"127.0.0.1"}
    finally:
        server.stop()
    assert not server.running
    assert not port_answers("127.0.0.1", port)


def test_postgres_query_and_data_survive_a_restart(server_dir: Path) -> None:
    data = server_dir / "pg"
    with start_postgres(data, free_port(), database="gridsim") as server:
        assert server.url.endswith("/gridsim")
        with psycopg.connect(server.url, autocommit=True) as conn:
            conn.execute("create table kept (id int primary key, note text)")
            conn.execute("insert into kept values (1, 'survives')")
        if os.geteuid() == 0:
            assert psutil.Process(server.pid).uids().effective == NOBODY
        assert _listening_addresses(server) == {"127.0.0.1"}
    assert not server.running

    # Another port, same data dir: no initdb, the row is still there.
    with start_postgres(data, free_port(), database="gridsim") as again:
        with psycopg.connect(again.url) as conn:
            row = conn.execute("select note from kept where id = 1").fetchone()
    assert row == ("survives",)


@pytest.mark.timescale
def test_postgres_with_timescale_preloads_it(server_dir: Path, timescale_settings: Settings) -> None:
    """What `gridsim up --timescale` starts: an installation that has TimescaleDB, with it preloaded. Runs
    where the test database is TimescaleDB (CI built it into this machine's PostgreSQL)."""
    with start_postgres(server_dir / "pg", free_port(), database="gridsim", timescale=True) as server:
        assert testing.database_engine(server.url) == "timescale"
        applied = asyncio.run(apply_migrations(server.url))
        assert "0201_aggregator.timescale.sql" in applied


@pytest.mark.skipif(os.geteuid() != 0, reason="only root runs PostgreSQL as nobody")
def test_postgres_falls_back_to_tmp_when_a_parent_is_closed_to_nobody(server_dir: Path) -> None:
    closed = server_dir / "closed"
    closed.mkdir(mode=0o700)
    closed.chmod(0o700)
    server = start_postgres(closed / "pg", free_port())
    try:
        assert server.data_dir.parent == Path(tempfile.gettempdir())
        assert server.data_dir.name.startswith("gridsim-pg-")
        assert oct(closed.stat().st_mode & 0o777) == "0o700"  # left as it was
    finally:
        server.stop()
        shutil.rmtree(server.data_dir, ignore_errors=True)
        server.log_path.unlink(missing_ok=True)


def _broker_stores() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob("gridsim-mqtt-store-*"))


def _broker_scratch_dirs() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob("gridsim-broker-*"))


@pytest.mark.skipif(os.geteuid() != 0, reason="only root runs the broker as another user")
@pytest.mark.skipif(shutil.which("mosquitto") is None, reason="mosquitto not on PATH")
async def test_mosquitto_in_a_folder_closed_to_its_user_still_starts_and_leaves_nothing(
    server_dir: Path,
) -> None:
    closed = server_dir / "closed"
    closed.mkdir(mode=0o700)
    closed.chmod(0o700)
    scratch_before = _broker_scratch_dirs()
    stores_before = _broker_stores()
    port = free_port()
    server = start_broker(closed / "broker", port, kind="mosquitto")
    try:
        assert await _round_trip(port, b"config was readable") == b"config was readable"
        assert server.log_path.parent == (closed / "broker").resolve()
    finally:
        server.stop()
        # The persistence folder falls back to the temp dir, kept on purpose (like PostgreSQL's): a
        # restart finds the queued messages there. This test's own is removed.
        for store in _broker_stores() - stores_before:
            shutil.rmtree(store, ignore_errors=True)
    assert _broker_scratch_dirs() == scratch_before
    assert oct(closed.stat().st_mode & 0o777) == "0o700"


_PARENT_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from gridsim.embedded import free_port, start_broker, start_postgres
    root = Path(sys.argv[1])
    servers = [
        start_broker(root / "mosq", free_port()),
        start_broker(root / "rumqttd", free_port(), kind="iotcore"),
        start_postgres(root / "pg", free_port()),
    ]
    print(" ".join(str(s.pid) for s in servers), flush=True)
    time.sleep(120)
    """
)


def test_kill_9_of_the_parent_leaves_no_server(server_dir: Path) -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", _PARENT_SCRIPT, str(server_dir)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert parent.stdout is not None
        pids = [int(pid) for pid in parent.stdout.readline().split()]
        assert len(pids) == 3
        children = [psutil.Process(pid) for pid in pids]
        assert all(child.is_running() for child in children)
    finally:
        parent.kill()
        parent.wait()
        assert parent.stdout is not None
        parent.stdout.close()
    _, alive = psutil.wait_procs(children, timeout=10)
    orphans = [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]
    for orphan in orphans:  # don't leave them running when the assertion fails
        orphan.kill()
    assert [p.pid for p in orphans] == []


# ------------------------------------------------------------------- the fixture ladder (gridsim.testing)


def test_ladder_prefers_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRIDSIM_TEST_MQTT_URL", "mqtt://broker.invalid:1884")
    monkeypatch.setenv("GRIDSIM_TEST_DATABASE_URL", "postgresql://u@db.invalid/x")
    with contextlib.ExitStack() as stack:
        assert testing.mqtt_url_ladder(stack) == "mqtt://broker.invalid:1884"
        assert testing.database_url_ladder(stack) == "postgresql://u@db.invalid/x"


def test_ladder_starts_private_servers_when_nothing_local_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GRIDSIM_TEST_MQTT_URL", raising=False)
    monkeypatch.delenv("GRIDSIM_TEST_DATABASE_URL", raising=False)
    monkeypatch.setattr(testing, "port_answers", lambda host, port, timeout=0.3: False)
    with contextlib.ExitStack() as stack:
        mqtt_url = testing.mqtt_url_ladder(stack)
        database_url = testing.database_url_ladder(stack)
        assert mqtt_url != testing.LOCAL_MQTT_URL
        assert database_url != testing.LOCAL_DATABASE_URL
        mqtt_port = urlsplit(mqtt_url).port
        assert mqtt_port is not None
        assert port_answers("127.0.0.1", mqtt_port)
        with psycopg.connect(database_url) as conn:
            assert conn.execute("select current_database()").fetchone() == ("test",)
    assert not port_answers("127.0.0.1", mqtt_port)  # stopped with the stack


def test_settings_fixture_gives_an_isolated_migrated_schema(
    settings: Settings, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GRIDSIM_SIM__DEMO_WORLD", "false")  # must not leak into test settings
    schema = settings.db.schema_name
    assert re.fullmatch(r"t_[0-9a-f]{8}", schema)
    assert settings.mqtt.base_topic == "t-" + schema.removeprefix("t_")
    assert (settings.sim.demo_world, settings.sim.autostart) == (False, False)
    rebuilt = testing.IsolatedSettings(db=DbSettings(url=database_url, schema_name=schema))
    assert rebuilt.sim.demo_world is True  # the default, not the environment's "false"
    assert rebuilt.model_fields_set == {"db"}
    with psycopg.connect(database_url) as conn:
        migrated = conn.execute(
            "select count(*) from information_schema.tables"
            " where table_schema = %s and table_name = 'schema_migrations'",
            (schema,),
        ).fetchone()
    assert migrated == (1,)


def test_fresh_settings_drops_its_schema(mqtt_url: str, database_url: str) -> None:
    with testing.fresh_settings(mqtt_url, database_url) as settings:
        schema = settings.db.schema_name
    with psycopg.connect(database_url) as conn:
        left = conn.execute(
            "select count(*) from information_schema.schemata where schema_name = %s", (schema,)
        ).fetchone()
    assert left == (0,)


# ------------------------------------------------------------ gridsim up: configured or embedded backends


def test_up_uses_a_configured_server_that_answers_and_embeds_one_that_does_not(
    server_dir: Path, mqtt_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead_database = f"postgresql://postgres@127.0.0.1:{free_port()}/gridsim_custom"
    monkeypatch.chdir(server_dir)  # no .env
    monkeypatch.setenv("GRIDSIM_MQTT__URL", mqtt_url)
    monkeypatch.setenv("GRIDSIM_DB__URL", dead_database)
    backends = launcher.start_backends(UpOptions(data_dir=server_dir), mqtt_url, dead_database)
    try:
        assert backends.mqtt_url == mqtt_url
        assert [s.name for s in backends.servers] == ["postgres"]
        assert backends.db_url.endswith("/gridsim_custom")  # the configured name, on the embedded server
        with psycopg.connect(backends.db_url):
            pass
    finally:
        backends.stop()


def test_up_embedded_ignores_the_configured_servers(
    server_dir: Path, mqtt_url: str, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(server_dir)
    monkeypatch.setenv("GRIDSIM_MQTT__URL", mqtt_url)
    monkeypatch.setenv("GRIDSIM_DB__URL", database_url)
    options = UpOptions(data_dir=server_dir, embedded=True)
    backends = launcher.start_backends(options, mqtt_url, database_url)
    servers = list(backends.servers)
    try:
        broker = "mosquitto" if shutil.which("mosquitto") else "rumqttd"
        assert {s.name for s in servers} == {broker, "postgres"}
        assert backends.mqtt_url != mqtt_url
        assert backends.db_url != database_url
    finally:
        backends.stop()
    assert not any(s.running for s in servers)


def test_postgres_over_tcp_needs_the_password(server_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", str(server_dir / "no-pgpass"))
    port = free_port()
    with start_postgres(server_dir / "pg", port, database="gridsim", password="s3cret pw/") as server:
        for url in (
            f"postgresql://postgres@127.0.0.1:{port}/gridsim",
            f"postgresql://postgres:wrong@127.0.0.1:{port}/gridsim",
            f"postgresql://nobody@127.0.0.1:{port}/gridsim",
        ):
            with pytest.raises(psycopg.OperationalError, match="password"):
                psycopg.connect(url, connect_timeout=10)
        with psycopg.connect(server.url, connect_timeout=10) as conn:
            assert conn.execute("select current_user").fetchone() == ("postgres",)
        # the Unix socket (trust) sits in the data folder, which only the server's user may enter
        assert list(server.data_dir.glob(".s.PGSQL.*"))
        assert server.data_dir.stat().st_mode & 0o777 == 0o700


def test_rumqttd_is_never_started_beyond_loopback(server_dir: Path) -> None:
    # it has no passwords or ACLs: only this machine's users may reach it (docs/security.md)
    with pytest.raises(EmbeddedServerError, match="no passwords or ACLs"):
        start_broker(server_dir, free_port(), kind="iotcore", host="0.0.0.0")
    assert not list(server_dir.glob("*.toml"))  # refused before anything was written or started
