"""Loss accounting (issue 16): readings a broker dropped are counted and reported, never lost in silence.

meter-sim's batches say how many batches and readings their shard published for the interval; a stock
Mosquitto that overflows ``max_queued_messages`` drops some of them on the way to a slow aggregator. The
aggregator compares the announcement with what it stored when it closes the interval: the gap is kept in
``ingest_gaps``, logged, and reported in its status (``readings_missing``, ``intervals_missing``, also
Prometheus' ``gridsim_detail``); a late arrival fills it again. Before, the interval closed partial and
nothing said readings were lost.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from aggregator_world import T0, fetch, make_batch, make_world, publish_clock

from gridsim_aggregator.__main__ import serve
from gridsim_aggregator.settings import AggregatorSettings
from gridsim_shared import channels
from gridsim_shared.bus import Bus
from gridsim_shared.messages import ReadingBatch, ServiceStatus
from gridsim_shared.settings import Settings
from gridsim_shared.testing import Collector, running

pytestmark = pytest.mark.integration

TUNING = AggregatorSettings(flush_ms=5, close_after_s=600)


async def _serve(settings: Settings, stop: asyncio.Event) -> None:
    await serve(settings, stop, TUNING)


def _announced(batch: ReadingBatch, batches: int, readings: int) -> ReadingBatch:
    return batch.model_copy(
        update={"shard": "0/1", "interval_batches": batches, "interval_readings": readings}
    )


async def _closed(settings: Settings, ts: Any) -> None:
    async with asyncio.timeout(30):
        while True:
            rows = await fetch(settings, "select committed_until from aggregator_state")
            if rows and rows[0][0] is not None and rows[0][0] >= ts:
                return
            await asyncio.sleep(0.05)


async def _status(statuses: Collector, predicate: Any) -> ServiceStatus:
    async with asyncio.timeout(30):
        while True:
            for status, _path in reversed(statuses.messages):
                if status.state == "online" and predicate(status.detail):
                    return status  # type: ignore[no-any-return]
            await asyncio.sleep(0.05)


async def test_a_batch_the_broker_dropped_is_counted_and_a_late_one_fills_the_gap(settings: Settings) -> None:
    world = await make_world(settings)
    t1 = T0 + timedelta(minutes=1)
    async with Bus(settings.mqtt, "meter-sim-test") as bus, running(_serve, settings=settings):
        statuses = await Collector(bus, channels.STATUS, service="aggregator").start()
        watermarks = await Collector(bus, channels.WATERMARK).start()
        # T0: both transformers' batches (3 + 1 readings) arrive; nothing is missing.
        for t in ("t1", "t2"):
            await bus.publish(channels.BATCH, _announced(make_batch(world, t, T0), 2, 4), world.path(t))
        await publish_clock(bus, T0)
        await _closed(settings, T0)
        # T0+1: t2's batch never reaches the aggregator (the broker dropped it); the clock closes it.
        late = _announced(make_batch(world, "t2", t1), 2, 4)
        await bus.publish(channels.BATCH, _announced(make_batch(world, "t1", t1), 2, 4), world.path("t1"))
        await publish_clock(bus, t1)
        await _closed(settings, t1)
        assert await fetch(settings, "select ts, expected, stored from ingest_gaps") == [(t1, 4, 3)]
        status = await _status(statuses, lambda d: d.get("readings_missing") == 1)
        assert status.detail["intervals_missing"] == 1
        # The watermark says how far everything delivered was received, for meter-sim's window.
        async with asyncio.timeout(30):
            while not any(w.received_until == t1 for w, _ in watermarks.messages):
                await asyncio.sleep(0.05)
        # The dropped batch arrives after all (republished): the interval is recomputed, the gap closes.
        await bus.publish(channels.BATCH, late, world.path("t2"))
        async with asyncio.timeout(30):
            while await fetch(settings, "select count(*) from ingest_gaps") != [(0,)]:
                await asyncio.sleep(0.05)
        await _status(statuses, lambda d: d.get("readings_missing") == 0 and d.get("intervals_missing") == 0)
    stored = await fetch(settings, "select count(*) from meter_data where not is_parent")
    assert stored == [(8,)]
    partial = await fetch(settings, "select count(*) from grid_rollups where partial and ts = %s", t1)
    assert partial == [(0,)]


async def test_batches_without_an_announcement_count_nothing(settings: Settings) -> None:
    """Older producers send no counts: an interval missing a batch closes partial, nothing is claimed."""
    world = await make_world(settings)
    async with Bus(settings.mqtt, "meter-sim-test") as bus, running(_serve, settings=settings):
        await bus.publish(channels.BATCH, make_batch(world, "t1", T0), world.path("t1"))
        await publish_clock(bus, T0)
        await _closed(settings, T0)
    assert await fetch(settings, "select count(*) from ingest_gaps") == [(0,)]
    assert await fetch(settings, "select count(*) from ingest_expected") == [(0,)]


async def test_the_watermark_never_says_more_was_received_than_the_clock_confirms(settings: Settings) -> None:
    """An interval closed before any clock message settled (complete, or by the bounded wait): its
    watermark says only what came before it was received, so meter-sim does not publish the next one on
    the strength of the close. Before, received_until was absent until the first clock mark settled and
    meter-sim counted from the close: 40,900 readings dropped by a stock broker at 100,000 meters."""
    world = await make_world(settings)
    async with Bus(settings.mqtt, "meter-sim-test") as bus, running(_serve, settings=settings):
        watermarks = await Collector(bus, channels.WATERMARK).start()
        for t in ("t1", "t2"):
            await bus.publish(channels.BATCH, _announced(make_batch(world, t, T0), 2, 4), world.path(t))
        await _closed(settings, T0)  # complete: every expected transformer has its batch
        first = await watermarks.wait_for(1)
        assert first[0][0].committed_until == T0
        assert first[0][0].received_until == T0 - timedelta(minutes=1)
        await publish_clock(bus, T0)
        async with asyncio.timeout(30):
            while not any(w.received_until == T0 for w, _ in watermarks.messages):
                await asyncio.sleep(0.05)
