"""Durability under faults, on real servers: kill -9 the aggregator, restart the broker, restart PostgreSQL.

Each scenario publishes readings at QoS 1 (a batch counts as published once the broker acknowledged it;
one that was not is published again, as meter-sim does), injects the fault half-way, and then checks that
the stored readings equal, interval by interval, what was published.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiomqtt
import psycopg
import pytest
from aggregator_world import T0, fetch, make_batch, make_world, publish_clock, publish_interval

from gridsim.embedded import free_port, port_answers, start_postgres
from gridsim_aggregator.__main__ import serve
from gridsim_aggregator.ingest import Ingestor
from gridsim_aggregator.settings import AggregatorSettings
from gridsim_shared import channels
from gridsim_shared.bus import Bus
from gridsim_shared.db import apply_migrations, connect
from gridsim_shared.ids import TransformerPath
from gridsim_shared.messages import ReadingBatch, Watermark
from gridsim_shared.settings import DbSettings, MqttSettings, Settings
from gridsim_shared.testing import running

pytestmark = pytest.mark.integration

TRANSFORMERS = 4
METERS = 250  # per transformer: 1,000 meters
INTERVALS = 40

_CONF = """\
listener {port} 127.0.0.1
allow_anonymous true
persistence true
persistence_location {dir}/
autosave_interval 1
max_queued_messages 0
max_queued_bytes 0
max_inflight_messages 0
log_dest file {dir}/mosquitto.log
"""


class Broker:
    """A private Mosquitto with persistence, restartable on the same port."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.port = free_port()
        self.url = f"mqtt://127.0.0.1:{self.port}"
        directory.chmod(0o777)  # mosquitto drops to its own user when started as root
        self.conf = directory / "mosquitto.conf"
        self.conf.write_text(_CONF.format(port=self.port, dir=directory))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(["mosquitto", "-c", str(self.conf)])
        for _ in range(250):
            if port_answers("127.0.0.1", self.port):
                return
            time.sleep(0.02)
        msg = "mosquitto did not start"
        raise RuntimeError(msg)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)  # saves the persistent sessions and their queues
            self.proc.wait(10)
            self.proc = None


@pytest.fixture
def broker() -> Iterator[Broker]:
    with tempfile.TemporaryDirectory(prefix="gridsim-broker-") as tmp:
        b = Broker(Path(tmp))
        b.start()
        try:
            yield b
        finally:
            b.stop()


def _settings(
    settings: Settings, mqtt_url: str, db_url: str | None = None, protocol: str = "3.1.1"
) -> Settings:
    return settings.model_copy(
        update={
            "mqtt": MqttSettings(url=mqtt_url, base_topic=settings.mqtt.base_topic, protocol=protocol),
            "db": DbSettings(url=db_url or settings.db.url, schema_name=settings.db.schema_name),
        }
    )


async def _world(settings: Settings) -> list[list[int]]:
    async with await connect(settings.db.url, settings.db.schema_name, autocommit=True) as conn:
        await conn.execute("insert into grid_nodes (code, name, level) values ('u1', 'U', 'utility')")
        await conn.execute(
            "insert into grid_nodes (code, name, level, parent_id) values ('f1', 'F', 'feeder', 1)"
        )
        ids: list[list[int]] = []
        for t in range(TRANSFORMERS):
            cur = await conn.execute(
                "insert into grid_nodes (code, name, level, parent_id, capacity_kva) values (%s, %s, 'transformer', 2, 100) returning id",
                (f"t{t}", f"T{t}"),
            )
            row = await cur.fetchone()
            assert row is not None
            cur = await conn.execute(
                "insert into meters (code, transformer_id) select 'M' || %s || '-' || g, %s "
                "from generate_series(1, %s) g returning id",
                (t, row[0], METERS),
            )
            ids.append([r[0] for r in await cur.fetchall()])
    return ids


def _batch(ids: list[int], i: int) -> ReadingBatch:
    n = len(ids)
    kwh = [0.001 * ((m * 7 + i) % 97 + 1) for m in ids]
    return ReadingBatch(
        timestamp=T0 + timedelta(minutes=i),
        meter_id=ids,
        meter_code=[f"m{m}" for m in ids],
        consumption_kWh=kwh,
        production_kWh=[None] * n,
        consumption_kVAh=[k / 0.9 for k in kwh],
        production_kVAh=[None] * n,
        avg_current=[k * 1000 for k in kwh],
        avg_voltage=[240.0] * n,
        reactive_power_kVAR=[k * 0.48 for k in kwh],
        power_factor=[0.9] * n,
    )


async def _publish_all(
    bus: Bus, ids: list[list[int]], fault: Callable[[], Awaitable[None]]
) -> dict[int, float]:
    """Publish every interval (re-publishing what the broker did not acknowledge); return kWh per interval."""
    expected: dict[int, float] = {}
    for i in range(INTERVALS):
        if i == INTERVALS // 2:
            await fault()
        for t, meters in enumerate(ids):
            batch = _batch(meters, i)
            while True:
                try:
                    await asyncio.wait_for(
                        bus.publish(channels.BATCH, batch, TransformerPath("u1", "f1", f"t{t}")), 5
                    )
                    break
                except (aiomqtt.MqttError, TimeoutError):
                    await asyncio.sleep(0.1)
            expected[i] = expected.get(i, 0.0) + sum(batch.consumption_kWh)  # type: ignore[arg-type]
    await publish_clock(bus, T0 + timedelta(minutes=INTERVALS - 1))
    return expected


# Generous: these tests run beside others on 2 cores; a deadline is only there to end a hung run.
DEADLINE_S = 120.0


async def _wait_closed(settings: Settings, last: datetime) -> None:
    async with asyncio.timeout(DEADLINE_S):
        while True:
            with contextlib.suppress(Exception):
                rows = await fetch(settings, "select committed_until from aggregator_state")
                if rows[0][0] is not None and rows[0][0] >= last:
                    return
            await asyncio.sleep(0.1)


async def _wait_committed(settings: Settings) -> None:
    await _wait_closed(settings, T0 + timedelta(minutes=INTERVALS - 1))


async def _check(settings: Settings, expected: dict[int, float]) -> None:
    rows = await fetch(
        settings,
        "select ts, count(*), count(distinct meter_id), sum(consumption_kwh) from meter_data group by ts order by ts",
    )
    assert len(rows) == INTERVALS
    for ts, count, distinct, kwh in rows:
        i = int((ts - T0).total_seconds() // 60)
        assert count == distinct == TRANSFORMERS * METERS, ts
        assert kwh == pytest.approx(expected[i]), ts
    state = await fetch(settings, "select readings_committed from aggregator_state")
    assert state == [(INTERVALS * TRANSFORMERS * METERS,)]


async def _wait_some_rows(settings: Settings) -> None:
    async with asyncio.timeout(DEADLINE_S):
        while (await fetch(settings, "select count(*) from meter_data"))[0][0] == 0:
            await asyncio.sleep(0.02)


# The bounded wait must never fire here: a partial close is by design not "every reading committed",
# and under load a database restart can hold a flush for many seconds.
TUNING = AggregatorSettings(flush_ms=10, close_after_s=600)


async def _serve(settings: Settings, stop: asyncio.Event) -> None:
    await serve(settings, stop, TUNING)


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
async def test_kill_9_aggregator_mid_run_loses_nothing(
    settings: Settings, broker: Broker, protocol: str
) -> None:
    """On MQTT 5 too: the session (Session Expiry, never a clean start) keeps the batches queued while
    the aggregator is away; before, every reconnect started clean and lost them."""
    s = _settings(settings, broker.url, protocol=protocol)
    ids = await _world(s)
    env = {
        **os.environ,
        "GRIDSIM_MQTT__URL": s.mqtt.url,
        "GRIDSIM_MQTT__BASE_TOPIC": s.mqtt.base_topic,
        "GRIDSIM_MQTT__PROTOCOL": protocol,
        "GRIDSIM_DB__URL": s.db.url,
        "GRIDSIM_DB__SCHEMA_NAME": s.db.schema_name,
        "GRIDSIM_AGGREGATOR__FLUSH_MS": "10",
        "GRIDSIM_AGGREGATOR__CLOSE_AFTER_S": "600",
        "GRIDSIM_LOG__LEVEL": "WARNING",
    }

    def spawn() -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", "gridsim_aggregator"], env=env)

    proc = spawn()
    try:
        async with Bus(s.mqtt, "meter-sim-test") as bus:
            await _wait_status(s)

            async def kill() -> None:
                nonlocal proc
                await _wait_some_rows(s)
                proc.send_signal(signal.SIGKILL)
                proc.wait(5)
                proc = spawn()

            expected = await _publish_all(bus, ids, kill)
            await _wait_committed(s)
        await _check(s, expected)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)


async def _wait_status(settings: Settings) -> None:
    """Wait until the aggregator has registered its (persistent) session."""
    async with asyncio.timeout(DEADLINE_S):
        while not (await fetch(settings, "select count(*) from aggregator_instances"))[0][0]:
            await asyncio.sleep(0.05)


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
async def test_broker_restart_mid_run_loses_nothing(
    settings: Settings, broker: Broker, protocol: str
) -> None:
    """On MQTT 5 too: the aggregator's session (Session Expiry) and its queued, unacknowledged batches
    survive the broker's restart (persistence) and the reconnect resumes it rather than starting clean."""
    s = _settings(settings, broker.url, protocol=protocol)
    ids = await _world(s)
    async with running(_serve, settings=s), Bus(s.mqtt, "meter-sim-test") as bus:
        await _wait_status(s)

        async def restart() -> None:
            await _wait_some_rows(s)
            await asyncio.to_thread(broker.stop)
            await asyncio.sleep(0.5)
            await asyncio.to_thread(broker.start)

        expected = await _publish_all(bus, ids, restart)
        await _wait_committed(s)
    await _check(s, expected)


async def _retained_watermark(settings: Settings, timeout: float) -> Watermark | None:
    """The watermark the broker keeps retained, as a client that subscribes now receives it."""
    got: list[Watermark] = []

    async def on(msg: Watermark, _path: object) -> None:
        got.append(msg)

    async with Bus(settings.mqtt, "watermark-reader", announce=False) as reader:
        await reader.subscribe(channels.WATERMARK, on)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while not got:
                    await asyncio.sleep(0.05)
    return got[-1] if got else None


async def test_a_broker_that_lost_its_retained_watermark_gets_it_back_on_reconnect(
    settings: Settings, broker: Broker
) -> None:
    """A broker restarted without its retained messages (its persistence lost in a crash, or none) no
    longer holds the watermark. With the clock stood still, nothing new is committed to publish it again,
    so a gateway or meter-sim subscribing saw none until the next close. The aggregator publishes its
    latest mark on every new connection."""
    s = _settings(settings, broker.url)
    ids = await _world(s)
    last = T0 + timedelta(minutes=2)
    async with running(_serve, settings=s), Bus(s.mqtt, "meter-sim-test") as bus:
        await _wait_status(s)
        for i in range(3):
            for t, meters in enumerate(ids):
                await bus.publish(channels.BATCH, _batch(meters, i), TransformerPath("u1", "f1", f"t{t}"))
        await publish_clock(bus, last)
        await _wait_closed(s, last)
        before = await _retained_watermark(s, DEADLINE_S)
        assert before is not None
        assert before.committed_until == last

        await asyncio.to_thread(broker.stop)
        (broker.dir / "mosquitto.db").unlink()  # the retained messages are gone with it
        await asyncio.to_thread(broker.start)

        after = await _retained_watermark(s, 30)
        assert after is not None, "the restarted broker holds no watermark"
        assert after.committed_until == last
        assert after.readings_committed == 3 * TRANSFORMERS * METERS


@contextlib.asynccontextmanager
async def private_postgres() -> AsyncIterator[tuple[Path, int]]:
    with tempfile.TemporaryDirectory(prefix="gridsim-pg-") as tmp:
        os.chmod(tmp, 0o755)
        yield Path(tmp) / "data", free_port()


# MQTT 5 adds nothing to a database restart's path beyond what the broker restart covers (the session
# is untouched): that variant runs with the slow tests (11 s each on a loaded machine).
@pytest.mark.parametrize("protocol", ["3.1.1", pytest.param("5", marks=pytest.mark.slow)])
async def test_postgres_restart_mid_run_loses_nothing(
    settings: Settings, broker: Broker, protocol: str
) -> None:
    # The same superuser password at both starts: the URL the services hold must work after the restart.
    password = secrets.token_urlsafe(16)
    async with private_postgres() as (data, port):
        server = await asyncio.to_thread(functools.partial(start_postgres, data, port, password=password))
        try:
            await apply_migrations(server.url, settings.db.schema_name)
            s = _settings(settings, broker.url, server.url, protocol=protocol)
            ids = await _world(s)
            async with running(_serve, settings=s), Bus(s.mqtt, "meter-sim-test") as bus:
                await _wait_status(s)

                async def restart() -> None:
                    nonlocal server
                    await _wait_some_rows(s)
                    await asyncio.to_thread(server.stop)
                    await asyncio.sleep(0.5)
                    server = await asyncio.to_thread(
                        functools.partial(start_postgres, data, port, password=password)
                    )

                expected = await _publish_all(bus, ids, restart)
                await _wait_committed(s)
            await _check(s, expected)
        finally:
            await asyncio.to_thread(server.stop)


async def test_failed_flush_holds_closing_until_it_commits(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A flush that fails (database error) while a later one commits: the later interval must not close
    past the missing one (that watermark would promise readings that are not stored), and the failed
    flush's messages are retried, not dropped."""
    world = await make_world(settings)
    failing = T0 + timedelta(minutes=1)
    later_committed = asyncio.Event()
    failures = 0
    commit = Ingestor._commit

    async def flaky(self: Ingestor, items: list[Any], payload: bytes) -> bool:
        nonlocal failures
        if any(i.readings.ts == failing for i in items) and failures == 0:
            failures += 1
            # Fail only once a later interval's flush has committed: the order a restart produces.
            await asyncio.wait_for(later_committed.wait(), 10)
            msg = "terminating connection due to administrator command"
            raise psycopg.errors.AdminShutdown(msg)
        fresh = await commit(self, items, payload)
        if any(i.readings.ts > failing for i in items):
            later_committed.set()
        return fresh

    monkeypatch.setattr(Ingestor, "_commit", flaky)
    tuning = AggregatorSettings(flush_ms=5, close_after_s=60)

    async def one(s: Settings, stop: asyncio.Event) -> None:
        await serve(s, stop, tuning)

    async with Bus(settings.mqtt, "test") as bus, running(one, settings=settings):
        await _wait_status(settings)
        await publish_interval(bus, world, T0, clock=False)
        await _wait_closed(settings, T0)
        await publish_interval(bus, world, failing, clock=False)
        await asyncio.sleep(0.05)  # the next intervals go out in another flush
        for i in (2, 3):
            await publish_interval(bus, world, T0 + timedelta(minutes=i), clock=False)
        await _wait_closed(settings, T0 + timedelta(minutes=3))
    assert failures == 1
    state = await fetch(settings, "select readings_committed from aggregator_state")
    assert state == [(16,)]  # 4 intervals x 4 leaf readings, all counted when their interval closed
    partial = await fetch(settings, "select count(*) from grid_rollups where partial")
    assert partial == [(0,)]


async def test_batch_the_database_rejects_is_isolated_and_the_rest_stored(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A constraint error is about content, not the database being away: the flush is retried batch by
    batch, the rejected batch alone is dropped (acknowledged, counted), its flush-mates are stored."""
    world = await make_world(settings)
    commit = Ingestor._commit
    seen: list[int] = []

    async def strict(self: Ingestor, items: list[Any], payload: bytes) -> bool:
        seen.append(len(items))
        if any(i.receipt.transformer_code == "t2" for i in items):
            msg = "new row violates check constraint"
            raise psycopg.errors.CheckViolation(msg)
        return await commit(self, items, payload)

    monkeypatch.setattr(Ingestor, "_commit", strict)
    tuning = AggregatorSettings(flush_ms=500, flush_rows=1000, close_after_s=0.5)

    async def one(s: Settings, stop: asyncio.Event) -> None:
        await serve(s, stop, tuning)

    async with Bus(settings.mqtt, "test") as bus, running(one, settings=settings):
        await _wait_status(settings)
        await publish_interval(bus, world, T0, clock=False)
        await _wait_closed(settings, T0)
    rows = await fetch(settings, "select count(*) from meter_data where ts = %s and not is_parent", T0)
    assert rows == [(3,)]  # t1's three meters; t2's batch was refused
    assert seen[0] == 2  # both batches were in one flush, then tried one by one
    assert sorted(seen[1:]) == [1, 1]
    letters = await fetch(settings, "select topic, reason from dead_letters")
    assert letters == [
        (
            channels.BATCH.topic(settings.mqtt.base_topic, world.path("t2")),
            "CheckViolation: new row violates check constraint",
        )
    ]


async def test_a_poison_batch_postgresql_itself_refuses_becomes_a_dead_letter(settings: Settings) -> None:
    """No stand-in: a schema drift (a check constraint the readings do not meet) makes the real database
    refuse one transformer's batch. It is set aside in dead_letters with PostgreSQL's reason, its
    flush-mates are stored, and the interval closes. Before, ingest acknowledged it away without a trace."""
    world = await make_world(settings)
    async with await connect(settings.db.url, settings.db.schema_name, autocommit=True) as conn:
        await conn.execute(
            "alter table meter_data add constraint drift_small check (consumption_kwh is null or consumption_kwh < 100)"
        )
    tuning = AggregatorSettings(flush_ms=500, flush_rows=1000, close_after_s=0.5)

    async def one(s: Settings, stop: asyncio.Event) -> None:
        await serve(s, stop, tuning)

    poison = make_batch(world, "t2", T0).model_copy(update={"consumption_kWh": [5000.0]})
    async with Bus(settings.mqtt, "test") as bus, running(one, settings=settings):
        await _wait_status(settings)
        await bus.publish(channels.BATCH, make_batch(world, "t1", T0), world.path("t1"))
        await bus.publish(channels.BATCH, poison, world.path("t2"))
        await _wait_closed(settings, T0)
    rows = await fetch(settings, "select count(*) from meter_data where ts = %s and not is_parent", T0)
    assert rows == [(3,)]  # t1's three meters
    letters = await fetch(settings, "select topic, reason from dead_letters")
    assert len(letters) == 1
    assert letters[0][0] == channels.BATCH.topic(settings.mqtt.base_topic, world.path("t2"))
    assert letters[0][1].startswith("CheckViolation: ")
    assert "drift_small" in letters[0][1]
