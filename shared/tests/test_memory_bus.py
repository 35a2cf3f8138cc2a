"""The in-memory bus: the real bus's interface, topic matching, retained messages, commands; no broker."""

from __future__ import annotations

import asyncio
import inspect
from datetime import UTC, datetime

import pytest
from pydantic import BaseModel

from gridsim_shared import channels
from gridsim_shared.bus import Bus, Router
from gridsim_shared.channels import Command, NoArgs
from gridsim_shared.errors import NotFoundError, RemoteError, RpcTimeout
from gridsim_shared.ids import FeederPath, MeterPath, TransformerPath
from gridsim_shared.memory_bus import TRANSPORT, MemoryBroker, MemoryBus
from gridsim_shared.messages import MeterReading
from gridsim_shared.readiness import wait_ready
from gridsim_shared.testing import Collector
from gridsim_shared.topics import ServicePath

T0 = datetime(2025, 6, 20, tzinfo=UTC)


class Lookup(BaseModel):
    meter_id: str


class Found(BaseModel):
    id: int


LOOKUP: Command[Lookup, Found] = Command("billing", "lookup", Lookup, Found)
NOTHING: Command[NoArgs, None] = Command("billing", "nothing", NoArgs, None)  # nobody serves it
CHECK: Command[NoArgs, None] = Command("feasibility", "check", NoArgs, None)  # no such service runs

router: Router[dict[str, int]] = Router()


@router.handles(LOOKUP)
async def lookup(request: Lookup, deps: dict[str, int]) -> Found:
    if request.meter_id not in deps:
        msg = f"meter {request.meter_id!r} not found"
        raise NotFoundError(msg, field="meter_id")
    return Found(id=deps[request.meter_id])


def _reading(meter_id: int, code: str = "m-1") -> MeterReading:
    return MeterReading(
        meter_id=meter_id,
        meter_code=code,
        timestamp=T0,
        consumption_kWh=0.1,
        avg_current=1.0,
        avg_voltage=240.0,
    )


def test_only_the_transport_is_replaced() -> None:
    # Everything else (publish, subscribe, include, request, commands, status) is the real bus's code, so a
    # method the library adds to Bus works on the in-memory bus too, or this fails and says which.
    overridden = {
        name
        for name, value in vars(MemoryBus).items()
        if callable(value) and name in vars(Bus) and name != "__init__"
    }
    assert overridden == TRANSPORT
    for name in TRANSPORT:
        assert inspect.signature(getattr(MemoryBus, name)) == inspect.signature(getattr(Bus, name)), name


async def test_wildcards_match_as_on_the_broker_and_invalid_messages_are_dropped() -> None:
    broker = MemoryBroker()
    async with broker.bus("aggregator") as consumer, broker.bus("meter-sim") as producer:
        everything = await Collector(consumer, channels.READING).start()
        one_feeder = await Collector(consumer, channels.READING, feeder="f1").start()
        await producer.publish(channels.READING, _reading(1), MeterPath("u", "f1", "t", "m-1"))
        await producer.publish(channels.READING, _reading(2, "m-2"), MeterPath("u", "f2", "t", "m-2"))
        await producer.publish_raw(f"{broker.base_topic}/v1/reading/u/f1/t/m-3", b"{not json")
        await producer.publish_raw(f"{broker.base_topic}/v1/elsewhere/u/f1", b"{}")
        await broker.settle()
        assert [m.meter_id for m, _ in everything.messages] == [1, 2]
        assert [(m.meter_id, p.feeder) for m, p in one_feeder.messages] == [(1, "f1")]
        assert consumer.dropped == 2  # the malformed reading, by each of the two handlers it matches
        assert consumer.received == 3  # what matched a subscription; the other topic never reached it


async def test_a_subscription_not_wanted_acknowledges_its_messages_unread() -> None:
    broker = MemoryBroker()
    wanted = False
    got: list[int] = []

    async def keep(msg: MeterReading, _path: MeterPath) -> None:
        got.append(msg.meter_id)

    async with broker.bus("gateway") as consumer, broker.bus("meter-sim") as producer:
        await consumer.subscribe_while(lambda: wanted, channels.READING, keep)
        path = MeterPath("u", "f1", "t", "m-1")
        await producer.publish(channels.READING, _reading(1), path)
        await producer.publish_raw(f"{broker.base_topic}/v1/reading/u/f1/t/m-1", b"{not json")
        await broker.settle()
        assert (got, consumer.dropped) == ([], 0)  # not decoded: not even the malformed one was seen
        wanted = True
        await producer.publish(channels.READING, _reading(2), path)
        await producer.publish_raw(f"{broker.base_topic}/v1/reading/u/f1/t/m-1", b"{not json")
        await broker.settle()
        assert (got, consumer.dropped) == ([2], 1)


async def test_retained_messages_reach_later_subscribers_until_cleared() -> None:
    broker = MemoryBroker()
    async with broker.bus("gateway") as late, broker.bus("billing", "7") as service:
        await service.ready()
        statuses = await Collector(late, channels.STATUS, service="billing").start()
        (status, path), *_ = await statuses.wait_for(1)
        assert (status.state, status.ready, path) == ("online", True, ServicePath("billing", "7"))
        rollups = await Collector(late, channels.ROLLUP_FEEDER).start()
        topic = channels.ROLLUP_FEEDER.topic(broker.base_topic, FeederPath("u", "f"))
        await service.publish_raw(topic, b"", retain=True)  # an empty retained payload clears
        await broker.settle()
        assert rollups.messages == []
        assert topic not in broker.retained
    # Closing said offline, retained.
    async with broker.bus("gateway") as watcher:
        statuses = await Collector(watcher, channels.STATUS, service="billing").start()
        (status, _), *_ = await statuses.wait_for(1)
        assert (status.state, status.ready) == ("offline", False)


async def test_commands_reply_with_data_or_the_error_and_time_out_without_a_server() -> None:
    broker = MemoryBroker()
    async with broker.bus("billing") as server, broker.bus("gateway") as client:
        await server.include(router, {"m-1": 42})
        assert await client.call(LOOKUP, Lookup(meter_id="m-1")) == Found(id=42)
        with pytest.raises(RemoteError) as missing:
            await client.call(LOOKUP, Lookup(meter_id="m-9"))
        assert (missing.value.status, missing.value.field) == (404, "meter_id")
        with pytest.raises(RemoteError) as invalid:  # what a caller of another version might send
            await client.call(LOOKUP, Lookup.model_construct())  # sends {}: no meter_id
        assert (invalid.value.status, invalid.value.field) == (422, "meter_id")
        with pytest.raises(RemoteError) as unknown:
            await client.call(NOTHING)
        assert unknown.value.status == 404
        with pytest.raises(RpcTimeout):
            await client.call(CHECK, timeout=0.05)


async def test_a_share_group_gets_each_message_once() -> None:
    broker = MemoryBroker()
    seen: list[str] = []

    def member(name: str) -> object:
        async def on(_topic: str, _payload: bytes, ack: object) -> None:
            seen.append(name)

        return on

    path = TransformerPath("u", "f", "t")
    async with broker.bus("aggregator", "0") as a, broker.bus("aggregator", "1") as b:
        filter_ = f"$share/agg/{channels.BATCH.template.filter(broker.base_topic)}"
        await a.subscribe_raw(filter_, member("a"))  # type: ignore[arg-type]
        await b.subscribe_raw(filter_, member("b"))  # type: ignore[arg-type]
        async with broker.bus("meter-sim") as producer:
            for _ in range(3):
                await producer.publish_raw(channels.BATCH.topic(broker.base_topic, path), b"{}")
        await broker.settle()
    assert len(seen) == 3


async def test_wait_ready_on_the_memory_bus() -> None:
    broker = MemoryBroker()
    async with broker.bus("gateway") as watcher, broker.bus("meter-sim") as service:
        waiting = asyncio.create_task(wait_ready(watcher, "meter-sim", timeout=5))
        await broker.settle()
        assert not waiting.done()  # online, not ready
        await service.ready()
        await asyncio.wait_for(waiting, 5)
        assert service.is_ready
