"""Exactly-once rollups and dead letters, on the real broker and database (issue 16).

A transformer's interval rollup is the sum of its *stored* readings however often, and in whatever
shape, the interval was published; a message that cannot be stored is set aside in ``dead_letters``
with its reason and the consumer goes on. Both failed before: receipts keyed by the first meter summed
a republished interval twice, and a poison batch was acknowledged away without a trace.
"""

from __future__ import annotations

import asyncio

import pytest
from aggregator_world import T0, fetch, make_batch, make_world, publish_clock, publish_interval
from test_aggregator_durability import _wait_closed, _wait_status

from gridsim_aggregator.__main__ import serve
from gridsim_aggregator.settings import AggregatorSettings
from gridsim_shared import channels
from gridsim_shared.bus import Bus
from gridsim_shared.settings import Settings
from gridsim_shared.testing import running

pytestmark = pytest.mark.integration

TUNING = AggregatorSettings(flush_ms=10, close_after_s=600)


async def _serve(settings: Settings, stop: asyncio.Event) -> None:
    await serve(settings, stop, TUNING)


async def _stored(settings: Settings, count: int) -> None:
    async with asyncio.timeout(120):
        while (await fetch(settings, "select count(*) from meter_data where not is_parent"))[0][0] < count:
            await asyncio.sleep(0.05)


async def test_a_republished_interval_is_counted_once_in_the_rollups(settings: Settings) -> None:
    world = await make_world(settings)
    async with Bus(settings.mqtt, "test") as bus, running(_serve, settings=settings):
        await _wait_status(settings)
        # meter-sim published t1's interval with M1 missing (M2 first), then restarted and published
        # it again with every meter (M1 first, other values for M2 and M3), then the broker redelivered.
        await bus.publish(channels.BATCH, make_batch(world, "t1", T0, codes=["M2", "M3"]), world.path("t1"))
        await _stored(settings, 2)
        again = make_batch(world, "t1", T0, seed=7)
        await bus.publish(channels.BATCH, again, world.path("t1"))
        await _stored(settings, 3)
        await bus.publish(channels.BATCH, again, world.path("t1"))
        await bus.publish(channels.BATCH, make_batch(world, "t2", T0), world.path("t2"))
        await publish_clock(bus, T0)
        await _wait_closed(settings, T0)
    stored = await fetch(
        settings,
        "select count(*), sum(d.consumption_kwh), sum(d.consumption_kvah) from meter_data d join meters m on m.id = d.meter_id "
        "where d.ts = %s and m.transformer_id = %s and not d.is_parent",
        T0,
        world.transformers["t1"],
    )
    rollup = await fetch(
        settings,
        "select meters_reporting, consumption_kwh, consumption_kvah from grid_rollups where ts = %s and node_id = %s",
        T0,
        world.transformers["t1"],
    )
    assert stored[0][0] == 3
    assert rollup[0][0] == 3
    assert rollup[0][1] == pytest.approx(stored[0][1], rel=1e-12)
    assert rollup[0][2] == pytest.approx(stored[0][2], rel=1e-12)


async def test_a_malformed_batch_is_set_aside_and_the_consumer_goes_on(settings: Settings) -> None:
    world = await make_world(settings)
    topic = channels.BATCH.topic(settings.mqtt.base_topic, world.path("t1"))
    async with Bus(settings.mqtt, "test") as bus, running(_serve, settings=settings):
        await _wait_status(settings)
        await bus.publish_raw(topic, b'{"timestamp": "not a time", "meter_id": [1]}')
        await publish_interval(bus, world, T0)
        await _wait_closed(settings, T0)
    letters = await fetch(settings, "select service, topic, reason, payload from dead_letters")
    assert len(letters) == 1
    service, where, reason, payload = letters[0]
    assert (service, where) == ("aggregator", topic)
    assert reason.startswith("malformed: ")
    assert "timestamp" in reason
    assert bytes(payload) == b'{"timestamp": "not a time", "meter_id": [1]}'
    rows = await fetch(settings, "select count(*) from meter_data where ts = %s and not is_parent", T0)
    assert rows == [(4,)]  # the interval that followed was stored whole
