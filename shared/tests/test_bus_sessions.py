"""Persistent sessions on both protocols (issue 16): a consumer that reconnects under its client id gets
what was queued while it was away, and on MQTT 5 Receive Maximum bounds what it holds unacknowledged.

Before, MQTT 5 set no Session Expiry and every reconnect started clean: what was queued and
unacknowledged was lost at each reconnect (at-most-once), while 3.1.1 kept it."""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime

import pytest

from gridsim_shared import channels
from gridsim_shared.bus import Ack, Bus
from gridsim_shared.ids import MeterPath
from gridsim_shared.messages import MeterReading
from gridsim_shared.settings import MqttSettings

pytestmark = pytest.mark.integration

PATH = MeterPath("u", "f", "t", "m-1")


def _reading(meter_id: int) -> MeterReading:
    return MeterReading(
        meter_id=meter_id,
        meter_code="m-1",
        timestamp=datetime(2025, 6, 20, tzinfo=UTC),
        consumption_kWh=0.1,
        avg_current=1.0,
        avg_voltage=240.0,
    )


def _settings(mqtt_url: str, protocol: str, **extra: int) -> MqttSettings:
    # A short expiry: the test's sessions must not outlive it on the shared broker for a day.
    return MqttSettings(
        url=mqtt_url,
        base_topic=f"t-{secrets.token_hex(4)}",
        protocol=protocol,  # type: ignore[arg-type]
        session_expiry_s=60,
        **extra,  # type: ignore[arg-type]
    )


class _Consumer:
    """A manual-ack consumer under a fixed client id, as the aggregator is; acknowledges on demand."""

    def __init__(self, settings: MqttSettings, client_id: str) -> None:
        self.bus = Bus(settings, "aggregator", client_id=client_id, clean_session=False, manual_ack=True)
        self.received: list[int] = []
        self.unacked: list[Ack] = []
        self.ack_at_once = True

    async def on_message(self, topic: str, payload: bytes, ack: Ack) -> None:
        reading, _ = channels.READING.decode(self.bus.base, topic, payload)
        self.received.append(reading.meter_id)
        if self.ack_at_once:
            ack()
        else:
            self.unacked.append(ack)

    async def start(self) -> _Consumer:
        await self.bus.subscribe_raw(channels.READING.topic(self.bus.base, PATH), self.on_message)
        await self.bus.start()
        return self


async def _until(predicate: object, timeout: float = 15.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():  # type: ignore[operator]
            await asyncio.sleep(0.02)


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
async def test_a_reconnect_under_the_same_client_id_gets_what_was_queued_meanwhile(
    mqtt_url: str, protocol: str
) -> None:
    settings = _settings(mqtt_url, protocol)
    client_id = f"agg-{secrets.token_hex(4)}"
    first = await _Consumer(settings, client_id).start()
    first.ack_at_once = False
    async with Bus(settings, "meter-sim") as producer:
        for i in range(5):
            await producer.publish(channels.READING, _reading(i), PATH)
        await _until(lambda: len(first.received) == 5)
        first.unacked[0]()  # one acknowledged, four received but never acknowledged
        await first.bus.close()
        for i in range(5, 25):  # queued by the broker while no consumer is connected
            await producer.publish(channels.READING, _reading(i), PATH)
    second = await _Consumer(settings, client_id).start()
    try:
        await _until(lambda: set(second.received) >= set(range(1, 25)))
        assert 0 not in second.received  # acknowledged: not redelivered
    finally:
        await second.bus.close()


async def test_mqtt5_receive_maximum_bounds_what_the_broker_sends_before_any_acknowledgement(
    mqtt_url: str,
) -> None:
    """The broker sends Receive Maximum messages and then waits for a PUBACK. What it sends after each
    acknowledgement is its own: Mosquitto 2.0.11 (this machine's) sends up to Receive Maximum more per
    PUBACK (measured: receive maximum 3, 20 queued, one PUBACK every 0.3 s: 14 held unacknowledged at
    once), so only the first window is asserted; then nothing is lost and the order is kept."""
    settings = _settings(mqtt_url, "5", receive_maximum=3)
    consumer = await _Consumer(settings, f"agg-{secrets.token_hex(4)}").start()
    consumer.ack_at_once = False
    try:
        async with Bus(settings, "meter-sim") as producer:
            for i in range(10):
                await producer.publish(channels.READING, _reading(i), PATH)
            await _until(lambda: len(consumer.received) == 3)
            await asyncio.sleep(0.5)
            assert consumer.received == [0, 1, 2]  # the broker waits for acknowledgements
            consumer.ack_at_once = True  # what comes next is acknowledged on receipt
            for ack in consumer.unacked:
                ack()
            await _until(lambda: len(consumer.received) == 10)
        assert consumer.received == list(range(10))
    finally:
        await consumer.bus.close()
