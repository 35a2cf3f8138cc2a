"""meter-sim's clock never stops in silence: a publish timeout or a database error is logged, counted
and the tick loop goes on (issue 16). Both failed on the code before supervision: the tick loop was a
task nobody watched, so the first exception ended it while the status still said ``online``."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import aiomqtt
import psycopg
import pytest
from test_engine import insert_world, meter_sim

from gridsim_meter_sim import fleet_repository
from gridsim_shared import channels
from gridsim_shared.messages import ReadingBatch, ServiceStatus
from gridsim_shared.settings import Settings, SupervisionSettings
from gridsim_shared.testing import Collector

pytestmark = pytest.mark.integration

FAST = SupervisionSettings(restart_backoff_s=0.05, max_backoff_s=0.05, heartbeat_s=0.2)


async def _clock_running(bus: Any) -> None:
    # 6000 simulated s per real s: an interval every 10 ms.
    await bus.request("meter-sim", "set_speed", {"speed": 6000})
    await bus.request("meter-sim", "resume")


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
        await bus.request("meter-sim", "pause")
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
            lambda s: (
                s.detail["tasks"]["clock"]["crashes"] >= 2 and s.detail["tasks"]["clock"]["restarts"] >= 2
            ),
        )
        assert "OperationalError" in status.detail["tasks"]["clock"]["last_error"]
        seen = len({b.timestamp for b, _ in batches.messages})
        await _batches_until(batches, seen + 5)  # still ticking after the crashes
        await bus.request("meter-sim", "pause")
        status = await _status_until(statuses, lambda s: s.detail["clock_state"] == "paused")
        _none_lost(status, [b for b, _ in batches.messages])
