"""The bus on a real broker: request/reply, error replies, poison messages, status and last will, reconnect."""

from __future__ import annotations

import asyncio
import secrets
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import BaseModel

from gridsim.embedded import free_port, start_broker
from gridsim_shared import channels
from gridsim_shared.bus import Bus, Router
from gridsim_shared.channels import Command, NoArgs
from gridsim_shared.errors import NotFoundError, RemoteError, RpcTimeout
from gridsim_shared.ids import MeterPath
from gridsim_shared.messages import MeterReading, ServiceStatus
from gridsim_shared.readiness import is_ready, wait_ready
from gridsim_shared.settings import MqttSettings
from gridsim_shared.testing import Collector
from gridsim_shared.topics import ServicePath

pytestmark = pytest.mark.integration

PATH = MeterPath("u", "f", "t", "m-1")


class Lookup(BaseModel):
    meter_id: str


class Found(BaseModel):
    id: int


LOOKUP: Command[Lookup, Found] = Command("meter-sim", "lookup", Lookup, Found)
EXPLODE: Command[NoArgs, None] = Command("meter-sim", "explode", NoArgs, None)
NOTHING: Command[NoArgs, None] = Command("meter-sim", "nothing", NoArgs, None)  # nobody serves it
BILL: Command[NoArgs, None] = Command("billing", "bill", NoArgs, None)
# The same operation as LOOKUP, declaring a reply the server does not send.
LOOKUP_WRONG_REPLY: Command[Lookup, list[int]] = Command("meter-sim", "lookup", Lookup, list[int])

router: Router[dict[str, int]] = Router()


@router.handles(LOOKUP)
async def lookup(request: Lookup, deps: dict[str, int]) -> Found:
    if request.meter_id not in deps:
        msg = f"meter {request.meter_id!r} not found"
        raise NotFoundError(msg, field="meter_id")
    return Found(id=deps[request.meter_id])


@router.handles(EXPLODE)
async def explode(_request: NoArgs, _deps: dict[str, int]) -> None:
    msg = "secret internals"
    raise RuntimeError(msg)


def _mqtt(url: str) -> MqttSettings:
    return MqttSettings(url=url, base_topic=f"t-{secrets.token_hex(4)}", rpc_timeout_s=5)


def _reading(meter_id: int) -> MeterReading:
    return MeterReading(
        meter_id=meter_id,
        meter_code="m-1",
        timestamp=datetime(2025, 6, 20, tzinfo=UTC),
        consumption_kWh=0.1,
        avg_current=1.0,
        avg_voltage=240.0,
    )


async def test_request_reply_carries_data_and_errors(mqtt_url: str) -> None:
    settings = _mqtt(mqtt_url)
    async with Bus(settings, "meter-sim") as server, Bus(settings, "gateway") as client:
        await server.include(router, {"MTR-1": 1})
        assert await client.call(LOOKUP, Lookup(meter_id="MTR-1")) == Found(id=1)
        with pytest.raises(RemoteError) as missing:
            await client.call(LOOKUP, Lookup(meter_id="MTR-9"))
        assert (missing.value.status, missing.value.field) == (404, "meter_id")
        with pytest.raises(RemoteError) as invalid:
            # An unvalidated request without its field: only the fields set are sent, so `data` is {}.
            await client.call(LOOKUP, Lookup.model_construct())
        assert (invalid.value.status, invalid.value.field) == (422, "meter_id")
        with pytest.raises(RemoteError) as internal:
            await client.call(EXPLODE)
        assert internal.value.status == 500
        assert "secret" not in internal.value.message
        with pytest.raises(RemoteError) as unknown:
            await client.call(NOTHING)
        assert unknown.value.status == 404
        with pytest.raises(RemoteError) as wrong:
            await client.call(LOOKUP_WRONG_REPLY, Lookup(meter_id="MTR-1"))
        assert (wrong.value.status, wrong.value.code) == (502, "bad_reply")
        with pytest.raises(TypeError, match="needs a Lookup"):
            await client.call(LOOKUP)


async def test_request_without_a_server_times_out(mqtt_url: str) -> None:
    async with Bus(_mqtt(mqtt_url), "gateway") as client:
        with pytest.raises(RpcTimeout, match="billing did not answer bill"):
            await client.call(BILL, timeout=0.3)


async def test_malformed_messages_are_counted_dropped_and_the_consumer_goes_on(mqtt_url: str) -> None:
    settings = _mqtt(mqtt_url)
    async with Bus(settings, "aggregator") as consumer, Bus(settings, "meter-sim") as producer:
        collector = await Collector(consumer, channels.READING).start()
        topic = channels.READING.topic(settings.base_topic, PATH)
        await producer.publish_raw(topic, b"{not json")
        await producer.publish_raw(topic, b'{"meter_id": "x"}')
        await producer.publish_raw(
            f"{settings.base_topic}/v1/reading/u/f/t/UPPER", _reading(2).model_dump_json().encode()
        )
        await producer.publish(channels.READING, _reading(3), PATH)
        (message, path), *_ = await collector.wait_for(1)
        assert message.meter_id == 3
        assert path == PATH
        assert consumer.dropped == 3


async def test_publish_nowait_delivers_in_order_before_a_later_awaited_publish(mqtt_url: str) -> None:
    settings = _mqtt(mqtt_url)
    offline = Bus(settings, "aggregator")
    assert not offline.publish_nowait(channels.READING, _reading(1), PATH)  # never connected
    async with Bus(settings, "dashboard") as consumer, Bus(settings, "aggregator") as producer:
        collector = await Collector(consumer, channels.READING).start()
        assert all(producer.publish_nowait(channels.READING, _reading(i), PATH) for i in range(1, 200))
        await producer.publish(channels.READING, _reading(200), PATH)
        received = await collector.wait_for(200)
        assert [m.meter_id for m, _ in received] == list(range(1, 201))


async def test_until_unacknowledged_bounds_what_the_client_holds(mqtt_url: str) -> None:
    """A fan-out handed over in parts: after each wait at most ``pending`` messages are unacknowledged
    (paho scans them all on every PUBACK), and everything still arrives in order."""
    settings = _mqtt(mqtt_url)
    async with Bus(settings, "dashboard") as consumer, Bus(settings, "aggregator") as producer:
        collector = await Collector(consumer, channels.READING).start()
        held = []
        for i in range(1, 901):  # under a stock broker's queue of 1,000 for the consumer
            assert producer.publish_nowait(channels.READING, _reading(i), PATH)
            if i % 300 == 0:
                await producer.until_unacknowledged(50)
                assert producer._client is not None
                held.append(len(producer._client._client._out_messages))
        assert max(held) <= 50
        received = await collector.wait_for(900)
        assert [m.meter_id for m, _ in received] == list(range(1, 901))
    await Bus(settings, "aggregator").until_unacknowledged(0)  # never connected: returns at once


async def test_status_is_retained_online_then_offline(mqtt_url: str) -> None:
    settings = _mqtt(mqtt_url)
    service = Bus(settings, "billing", "7")
    await service.start()
    async with Bus(settings, "gateway") as watcher:
        statuses = await Collector(watcher, channels.STATUS, service="billing").start()
        (online, path), *_ = await statuses.wait_for(1)  # retained: arrives although published earlier
        assert (online.state, path) == ("online", ServicePath("billing", "7"))
        await service.close()
        messages = await statuses.wait_for(2)
        assert messages[-1][0].state == "offline"


async def test_ready_is_announced_after_the_handlers_and_wait_ready_waits_for_it(mqtt_url: str) -> None:
    settings = _mqtt(mqtt_url)
    async with Bus(settings, "gateway") as watcher, Bus(settings, "billing", "3") as service:
        statuses = await Collector(watcher, channels.STATUS, service="billing").start()
        (online, _), *_ = await statuses.wait_for(1)
        assert (online.state, online.ready) == ("online", False)  # connected is not ready
        waiting = asyncio.create_task(wait_ready(settings, "billing", timeout=10))
        with pytest.raises(TimeoutError, match=r"not ready within 0\.2 s: billing"):
            await wait_ready(watcher, "billing", timeout=0.2)
        assert not waiting.done()
        await service.ready()
        await asyncio.wait_for(waiting, 10)
        (ready, _) = (await statuses.wait_for(2))[-1]
        assert (ready.state, ready.ready) == ("online", True)
        # A status of an earlier start does not count for a wait that began after this one.
        later = datetime.now(UTC)
        with pytest.raises(TimeoutError):
            await wait_ready(settings, "billing", since=later, timeout=0.2)
    async with Bus(settings, "gateway") as watcher:
        statuses = await Collector(watcher, channels.STATUS, service="billing").start()
        (last, _), *_ = await statuses.wait_for(1)
        assert (last.state, is_ready(last)) == ("offline", False)  # the clean close took it back


_CRASHING_SERVICE = """
import asyncio, sys
from gridsim_shared.bus import Bus
from gridsim_shared.settings import MqttSettings

async def main() -> None:
    async with Bus(MqttSettings(url=sys.argv[1], base_topic=sys.argv[2]), "feasibility"):
        print("up", flush=True)
        await asyncio.sleep(60)

asyncio.run(main())
"""


async def test_last_will_reports_offline_when_the_process_dies(mqtt_url: str) -> None:
    settings = _mqtt(mqtt_url)
    async with Bus(settings, "gateway") as watcher:
        statuses = await Collector(watcher, channels.STATUS, service="feasibility").start()
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _CRASHING_SERVICE,
            mqtt_url,
            settings.base_topic,
            stdout=asyncio.subprocess.PIPE,
        )
        try:
            assert process.stdout is not None
            assert await asyncio.wait_for(process.stdout.readline(), 20) == b"up\n"
            (online, _), *_ = await statuses.wait_for(1)
            assert online.state == "online"
            process.kill()  # no DISCONNECT: the broker publishes the will
            messages = await statuses.wait_for(2, timeout=15)
            last: ServiceStatus = messages[1][0]
            assert last.state == "offline"
        finally:
            if process.returncode is None:
                process.kill()
            await process.wait()


async def test_reconnects_and_resubscribes_after_a_broker_restart(tmp_path: Path) -> None:
    port = free_port()
    settings = _mqtt(f"mqtt://127.0.0.1:{port}")
    broker = start_broker(tmp_path / "broker", port)
    try:
        async with Bus(settings, "aggregator") as consumer, Bus(settings, "meter-sim") as producer:
            collector = await Collector(consumer, channels.READING).start()
            broker.stop()
            await asyncio.sleep(0.3)
            assert not consumer.connected
            broker = start_broker(tmp_path / "broker", port)
            await consumer.wait_connected(15)
            await producer.wait_connected(15)
            await asyncio.sleep(0.2)
            await producer.publish(channels.READING, _reading(5), PATH)
            (message, _), *_ = await collector.wait_for(1)
            assert message.meter_id == 5
            assert consumer.reconnects >= 1
    finally:
        broker.stop()


async def test_commands_of_several_routers_are_served_by_one_table(mqtt_url: str) -> None:
    """Two routers included on one bus: each command answered once, by its own router with its deps."""
    other: Router[str] = Router()
    whoami_command: Command[NoArgs, str] = Command("meter-sim", "whoami", NoArgs, str)

    @other.handles(whoami_command)
    async def whoami(_request: NoArgs, deps: str) -> str:
        return deps

    settings = _mqtt(mqtt_url)
    async with Bus(settings, "meter-sim") as server, Bus(settings, "gateway") as client:
        await server.include(router, {"MTR-1": 1})
        await server.include(other, "second router")
        for _ in range(5):  # a second command subscription would race and answer "unknown operation"
            assert await client.call(LOOKUP, Lookup(meter_id="MTR-1")) == Found(id=1)
            assert await client.call(whoami_command) == "second router"
        with pytest.raises(ValueError, match="already serves"):
            await server.include(other, "twice")
        with pytest.raises(ValueError, match=r"cannot serve meter-sim\.lookup"):
            await client.include(router, {})  # the gateway's bus: not meter-sim's command topic


async def test_a_custom_validator_failing_in_a_command_is_a_422_reply(mqtt_url: str) -> None:
    """pydantic's error context holds the ValueError itself; the reply must still serialise."""
    from pydantic import field_validator

    class Even(BaseModel):
        n: int

        @field_validator("n")
        @classmethod
        def _even(cls, value: int) -> int:
            if value % 2:
                msg = "must be even"
                raise ValueError(msg)
            return value

    checks: Router[None] = Router()
    half_command: Command[Even, int] = Command("meter-sim", "half", Even, int)

    @checks.handles(half_command)
    async def half(request: Even, _deps: None) -> int:
        return request.n // 2

    settings = _mqtt(mqtt_url)
    async with Bus(settings, "meter-sim") as server, Bus(settings, "gateway") as client:
        await server.include(checks, None)
        with pytest.raises(RemoteError) as odd:
            await client.call(half_command, Even.model_construct(n=3))
        assert (odd.value.status, odd.value.field) == (422, "n")
        assert "must be even" in odd.value.message


async def test_a_channel_receives_only_its_depth_of_a_shared_kind(mqtt_url: str) -> None:
    """Transformer, feeder and utility rollups share the kind `rollup`: none is another's malformed message."""
    from gridsim_shared.ids import FeederPath, TransformerPath, UtilityPath
    from gridsim_shared.messages import Rollup

    settings = _mqtt(mqtt_url)

    def rollup(level: str, code: str) -> Rollup:
        return Rollup.model_validate(
            {
                "level": level,
                "node_id": 1,
                "node_code": code,
                "timestamp": datetime(2025, 6, 20, tzinfo=UTC),
                "consumption_kWh": 1.0,
                "production_kWh": 0.0,
                "net_kWh": 1.0,
                "apparent_kVA": 60.0,
                "meters_expected": 1,
                "meters_reporting": 1,
            }
        )

    async with Bus(settings, "gateway") as consumer, Bus(settings, "aggregator") as producer:
        transformers = await Collector(consumer, channels.ROLLUP_TRANSFORMER).start()
        feeders = await Collector(consumer, channels.ROLLUP_FEEDER).start()
        await producer.publish(channels.ROLLUP_UTILITY, rollup("utility", "u"), UtilityPath("u"))
        await producer.publish(channels.ROLLUP_FEEDER, rollup("feeder", "f"), FeederPath("u", "f"))
        await producer.publish(
            channels.ROLLUP_TRANSFORMER, rollup("transformer", "t"), TransformerPath("u", "f", "t")
        )
        (transformer, _), *_ = await transformers.wait_for(1)
        (feeder, _), *_ = await feeders.wait_for(1)
        assert (transformer.level, feeder.level) == ("transformer", "feeder")
        await asyncio.sleep(0.2)
        assert (len(transformers.messages), len(feeders.messages), consumer.dropped) == (1, 1, 0)
