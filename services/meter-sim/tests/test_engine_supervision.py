"""meter-sim's clock never stops in silence: a publish timeout or a database error is logged, counted
and the tick loop goes on (issue 16). Both failed on the code before supervision: the tick loop was a
task nobody watched, so the first exception ended it while the status still said ``online``."""

from __future__ import annotations

import asyncio
import functools
import secrets
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import aiomqtt
import psycopg
import pytest
from test_engine import insert_world, meter_sim

from gridsim.embedded import free_port, start_postgres
from gridsim_meter_sim import domain, fleet_repository, outage_repository, publisher
from gridsim_shared import channels
from gridsim_shared.commands import meter_sim as commands
from gridsim_shared.db import apply_migrations
from gridsim_shared.messages import ReadingBatch, ServiceStatus
from gridsim_shared.settings import DbSettings, Settings, SupervisionSettings
from gridsim_shared.testing import Collector

pytestmark = pytest.mark.integration

FAST = SupervisionSettings(restart_backoff_s=0.05, max_backoff_s=0.05, heartbeat_s=0.2)


async def _clock_running(bus: Any) -> None:
    # 6000 simulated s per real s: an interval every 10 ms.
    await bus.call(commands.SET_SPEED, commands.SET_SPEED.build(speed=6000))
    await bus.call(commands.RESUME)


async def _batches_until(batches: Collector, count: int, timeout: float = 60.0) -> list[ReadingBatch]:
    async with asyncio.timeout(timeout):
        while len({b.timestamp for b, _ in batches.messages}) < count:
            await asyncio.sleep(0.02)
    return [b for b, _ in batches.messages]


async def _status_until(statuses: Collector, predicate: Any, timeout: float = 30.0) -> ServiceStatus:
    async with asyncio.timeout(timeout):
        while True:
            for status, _path in reversed(statuses.messages):
                if status.state == "online" and predicate(status):
                    return status  # type: ignore[no-any-return]
            await asyncio.sleep(0.05)


async def _three_intervals_then_paused(settings: Settings) -> ServiceStatus:
    """Run meter-sim until three intervals are published, pause it: its status once paused."""
    async with meter_sim(settings) as bus:
        batches = await Collector(bus, channels.BATCH).start()
        statuses = await Collector(bus, channels.STATUS, service="meter-sim").start()
        await _clock_running(bus)
        await _batches_until(batches, 3)
        await bus.call(commands.PAUSE)
        return await _status_until(statuses, lambda s: s.detail["clock_state"] == "paused")


def _none_lost(status: ServiceStatus, batches: list[ReadingBatch]) -> None:
    """Every tick of the clock was published or counted as dropped (the schedule's catch-up policy)."""
    detail = status.detail
    assert detail["intervals_published"] + detail["dropped_intervals"] == detail["tick"]
    stamps = {b.timestamp for b in batches}
    assert len(stamps) >= detail["intervals_published"] - 1  # the last may still be on its way


async def test_a_publish_that_times_out_is_retried_and_the_clock_goes_on(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings.model_copy(update={"supervision": FAST})
    await insert_world(settings)
    real_publish = aiomqtt.Client.publish
    failed: list[datetime] = []

    async def flaky_publish(self: aiomqtt.Client, topic: str, *args: Any, **kwargs: Any) -> None:
        # The third and fourth batch publishes never get their PUBACK: aiomqtt raises a plain MqttError.
        if "/batch/" in topic and len(failed) < 2 and kwargs.get("qos") == 1:
            seen = getattr(self, "_test_batches", 0) + 1
            self._test_batches = seen  # type: ignore[attr-defined]
            if seen >= 3:
                payload = args[0] if args else kwargs["payload"]
                failed.append(channels.BATCH.decode(settings.mqtt.base_topic, topic, payload)[0].timestamp)
                msg = "Operation timed out"
                raise aiomqtt.MqttError(msg)
        await real_publish(self, topic, *args, **kwargs)

    monkeypatch.setattr(aiomqtt.Client, "publish", flaky_publish)
    async with meter_sim(settings) as bus:
        batches = await Collector(bus, channels.BATCH).start()
        statuses = await Collector(bus, channels.STATUS, service="meter-sim").start()
        await _clock_running(bus)
        await _batches_until(batches, 10)
        assert len(failed) == 2
        await bus.call(commands.PAUSE)
        status = await _status_until(
            statuses, lambda s: s.detail["clock_state"] == "paused" and s.detail["publish_retries"] >= 2
        )
        assert status.detail["tasks"]["clock"]["crashes"] == 0
        # The interval whose publish timed out (twice) was published again, not skipped.
        assert failed[0] == failed[1]
        assert failed[0] in {b.timestamp for b, _ in batches.messages}
        _none_lost(status, [b for b, _ in batches.messages])


async def test_a_database_error_under_the_clock_is_counted_and_the_clock_goes_on(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings.model_copy(update={"supervision": FAST})
    await insert_world(settings)
    real_save = fleet_repository.save_clock
    failures: list[int] = []

    async def failing_save(pool: Any, row: Any) -> None:
        # Once the clock has ticked a few times, the database goes away twice (a restart, as a query
        # sees it). Only the tick loop saves at tick >= 3 here: the test's commands run at tick 0.
        if row.tick >= 3 and len(failures) < 2:
            failures.append(row.tick)
            msg = "server closed the connection unexpectedly"
            raise psycopg.OperationalError(msg)
        await real_save(pool, row)

    monkeypatch.setattr(fleet_repository, "save_clock", failing_save)
    async with meter_sim(settings) as bus:
        batches = await Collector(bus, channels.BATCH).start()
        statuses = await Collector(bus, channels.STATUS, service="meter-sim").start()
        await _clock_running(bus)
        # A restart follows its crash after the back-off, so a status can show a crash not yet restarted.
        status = await _status_until(
            statuses,
            # The status published on connecting lists no clock task yet (it starts once ready).
            lambda s: (
                s.detail["tasks"].get("clock", {}).get("crashes", 0) >= 2
                and s.detail["tasks"].get("clock", {}).get("restarts", 0) >= 2
            ),
        )
        assert "OperationalError" in status.detail["tasks"]["clock"]["last_error"]
        seen = len({b.timestamp for b, _ in batches.messages})
        await _batches_until(batches, seen + 5)  # still ticking after the crashes
        await bus.call(commands.PAUSE)
        status = await _status_until(statuses, lambda s: s.detail["clock_state"] == "paused")
        _none_lost(status, [b for b, _ in batches.messages])


@pytest.mark.slow
async def test_a_real_postgresql_restart_under_the_running_clock_is_survived(
    settings: Settings, tmp_path: Path
) -> None:
    """The same on a real database: meter-sim's own PostgreSQL stopped and started again while the clock
    runs. Every save and query meanwhile fails; the clock's task is restarted until the database is back
    and then goes on, and every tick is published or counted as dropped."""
    await asyncio.to_thread(tmp_path.chmod, 0o755)  # searchable by the server's own user
    password = secrets.token_urlsafe(16)  # the same at both starts: meter-sim keeps its URL
    port = free_port()
    start = functools.partial(start_postgres, tmp_path / "pg", port, password=password)
    server = await asyncio.to_thread(start)
    try:
        await apply_migrations(server.url, settings.db.schema_name)
        settings = settings.model_copy(
            update={
                "db": DbSettings(url=server.url, schema_name=settings.db.schema_name),
                # Crashes go on while the database is away: restart the clock for as long as it takes.
                "supervision": SupervisionSettings(
                    restart_backoff_s=0.2, max_backoff_s=1.0, heartbeat_s=0.2, max_restarts=1000
                ),
            }
        )
        await insert_world(settings)
        async with meter_sim(settings) as bus:
            batches = await Collector(bus, channels.BATCH).start()
            statuses = await Collector(bus, channels.STATUS, service="meter-sim").start()
            await _clock_running(bus)
            await _batches_until(batches, 5)
            await asyncio.to_thread(server.stop)
            await asyncio.sleep(1.0)  # the clock ticks on a database that is gone
            server = await asyncio.to_thread(start)
            seen = len({b.timestamp for b, _ in batches.messages})
            await _batches_until(batches, seen + 5, timeout=120)  # still ticking after the restart
            await bus.call(commands.PAUSE, timeout=30)
            status = await _status_until(statuses, lambda s: s.detail["clock_state"] == "paused", 60)
            _none_lost(status, [b for b, _ in batches.messages])
    finally:
        await asyncio.to_thread(server.stop)


async def test_a_fleet_load_slower_than_the_watchdog_is_not_a_stall(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A large fleet on a loaded machine loads for longer than ``stall_after_s``. Before, the watchdog
    cancelled the load as a stall and the restarted clock loaded from scratch again, for ever (100,000
    meters at load 16: no interval published)."""
    settings = settings.model_copy(update={"supervision": FAST.model_copy(update={"stall_after_s": 1.0})})
    await insert_world(settings)
    real_build = domain.build_fleet_from
    loads: list[int] = []

    def slow_build(*args: Any) -> Any:
        loads.append(1)
        time.sleep(4.0)  # four stall periods
        return real_build(*args)

    monkeypatch.setattr(domain, "build_fleet_from", slow_build)
    status = await _three_intervals_then_paused(settings)
    # Loaded once: the load was not cancelled as a stall and begun again (a loaded machine may still
    # see a slow interval counted as a stall, so the stall counter itself is not asserted).
    assert len(loads) == 1
    assert status.detail["intervals_published"] >= 3


async def test_the_fleet_is_loaded_while_the_first_interval_runs_not_after_it(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At 1x the first interval ends a real minute after the clock starts: the fleet is read and built
    during that minute, not at its end (a million meters' first interval went out ~14 s late)."""
    settings = settings.model_copy(update={"supervision": FAST})
    await insert_world(settings)
    real_build = domain.build_fleet_from
    built: list[float] = []

    def timed_build(*args: Any) -> Any:
        built.append(time.monotonic())
        return real_build(*args)

    monkeypatch.setattr(domain, "build_fleet_from", timed_build)
    async with meter_sim(settings) as bus:
        batches = await Collector(bus, channels.BATCH).start()
        await bus.call(commands.SET_SPEED, commands.SET_SPEED.build(speed=1))  # an interval a minute
        resumed = time.monotonic()
        await bus.call(commands.RESUME)
        async with asyncio.timeout(20):
            while not built:
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        assert batches.messages == []  # the interval has not ended: nothing published yet
        await bus.call(commands.PAUSE)
    assert built[0] - resumed < 20


async def test_an_interval_published_for_longer_than_the_watchdog_is_not_a_stall(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A million meters' interval is ten thousand batches: more than ``stall_after_s`` to publish on a
    loaded machine. While the broker acknowledges them the clock is making progress; before, the watchdog
    restarted the tick loop in the middle of every such interval (1M meters at load 15: every interval)."""
    settings = settings.model_copy(update={"supervision": FAST.model_copy(update={"stall_after_s": 1.0})})
    await insert_world(settings, feeders=3)  # three transformers: three batches an interval
    monkeypatch.setattr(publisher, "_IN_FLIGHT", 1)  # one batch a chunk: progress after each
    real_publish = aiomqtt.Client.publish

    async def slow_publish(self: aiomqtt.Client, topic: str, *args: Any, **kwargs: Any) -> None:
        if "/batch/" in topic:
            await asyncio.sleep(0.6)  # an interval: 1.8 s, each batch well within the watchdog's 1 s
        await real_publish(self, topic, *args, **kwargs)

    monkeypatch.setattr(aiomqtt.Client, "publish", slow_publish)
    status = await _three_intervals_then_paused(settings)
    assert status.detail["intervals_published"] >= 3
    assert status.detail["tasks"]["clock"]["stalls"] == 0


async def test_a_registers_save_slower_than_the_watchdog_is_not_a_stall(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Five million meters' registers upsert took 55-100 s while the aggregator rolled up its interval.
    Before, the watchdog cancelled the save (the registers were never saved) and restarted the clock at
    every interval."""
    settings = settings.model_copy(update={"supervision": FAST.model_copy(update={"stall_after_s": 1.0})})
    await insert_world(settings)
    real_save = outage_repository.save_registers
    saves: list[str] = []

    async def slow_save(*args: Any) -> None:
        saves.append("started")
        await asyncio.sleep(2.5)  # two and a half stall periods
        await real_save(*args)
        saves.append("saved")

    monkeypatch.setattr(outage_repository, "save_registers", slow_save)
    status = await _three_intervals_then_paused(settings)
    assert "saved" in saves
    assert status.detail["tasks"]["clock"]["stalls"] == 0
