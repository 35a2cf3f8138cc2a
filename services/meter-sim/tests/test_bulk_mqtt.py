"""The bulk per-meter connection on the real broker: every message arrives, in more than one window of
packet ids, and a connection lost before the PUBACKs publishes the unacknowledged messages again."""

from __future__ import annotations

import asyncio
import secrets
import shutil
from pathlib import Path

import pytest

from gridsim.certs import generate_certificates
from gridsim.embedded import BrokerAuth, BrokerTls, free_port, start_broker
from gridsim.testing import integration_required
from gridsim_meter_sim import bulk_mqtt
from gridsim_meter_sim.bulk_mqtt import BulkPublisher, encode_topic
from gridsim_shared import access, channels
from gridsim_shared.bus import Ack, Bus
from gridsim_shared.ids import MeterPath
from gridsim_shared.settings import MqttSettings, Settings

pytestmark = pytest.mark.integration


async def _collect(bus: Bus, base: str) -> set[bytes]:
    seen: set[bytes] = set()

    async def on(_topic: str, payload: bytes, ack: Ack) -> None:
        seen.add(payload)
        ack()

    await bus.subscribe_raw(f"{base}/bulk/#", on)
    await asyncio.sleep(0.2)
    return seen


async def _wait(seen: set[bytes], count: int, timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while len(seen) < count:
            await asyncio.sleep(0.05)


# The shared test broker keeps Mosquitto's default queue of 1,000 messages per subscriber (more sent at once
# to a slower subscriber are dropped by the broker): the tests publish fewer than that.


async def test_every_message_arrives_across_packet_id_windows(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = settings.mqtt.base_topic
    monkeypatch.setattr(bulk_mqtt, "_WINDOW", 300)
    count = 900  # three windows of packet identifiers
    messages = [(encode_topic(f"{base}/bulk/m{i % 300}"), f"{i}".encode()) for i in range(count)]
    async with Bus(settings.mqtt, "test", "collector") as bus:
        seen = await _collect(bus, base)
        publisher = BulkPublisher(settings.mqtt, "test-bulk")
        try:
            await publisher.publish_many(messages)
            await _wait(seen, count)
        finally:
            await publisher.close()
    assert seen == {payload for _, payload in messages}
    assert publisher.messages == count
    assert publisher.reconnects == 0


async def test_a_lost_connection_publishes_the_unacknowledged_again(settings: Settings) -> None:
    base = settings.mqtt.base_topic
    first = [(encode_topic(f"{base}/bulk/a"), b"a%d" % i) for i in range(100)]
    second = [(encode_topic(f"{base}/bulk/b"), b"b%d" % i) for i in range(600)]
    async with Bus(settings.mqtt, "test", "collector") as bus:
        seen = await _collect(bus, base)
        publisher = BulkPublisher(settings.mqtt, "test-bulk-lost")
        try:
            await publisher.publish_many(first)
            writer = publisher._writer
            assert writer is not None
            real_write = writer.write

            def write_then_drop(data: bytes | bytearray | memoryview) -> None:
                # Half the burst reaches the broker, then the connection dies before any PUBACK is read.
                real_write(bytes(data)[: len(data) // 2])
                writer.transport.abort()

            writer.write = write_then_drop  # type: ignore[method-assign]
            await publisher.publish_many(second)
            await _wait(seen, len(first) + len(second))
        finally:
            await publisher.close()
    assert seen == {p for _, p in first + second}
    assert publisher.reconnects >= 1


def test_packets_match_the_mqtt_layout() -> None:
    topic = encode_topic("a/b")
    assert topic == b"\x00\x03a/b"
    packet = bulk_mqtt.publish_packet(topic, 258, b"x" * 200)
    # QoS 1 PUBLISH, remaining length 207 as a two-byte varint (0xCF 0x01), topic, packet id 258, payload
    assert packet[:3] == b"\x32\xcf\x01"
    assert packet[3:8] == b"\x00\x03a/b"
    assert packet[8:10] == b"\x01\x02"
    assert packet[10:] == b"x" * 200
    assert bulk_mqtt.connect_packet("c", "u", "p", 30) == (
        b"\x10\x13\x00\x04MQTT\x04\xc2\x00\x1e\x00\x01c\x00\x01u\x00\x01p"
    )


def test_acknowledgements_are_taken_from_any_cut_of_the_stream() -> None:
    """PUBACKs arrive in chunks the socket chooses: every cut leaves the incomplete rest for the next one,
    and packets we never asked for (a PINGRESP, one with a multi-byte length) are skipped."""
    other = b"\x30\xc8\x01" + b"y" * 200  # a 200-byte packet: a two-byte length
    stream = b"\x40\x02\x00\x01" + b"\xd0\x00" + other + b"\x40\x02\x01\x02" + b"\x40\x02\xff\xff"
    for cut in range(len(stream) + 1):
        unacked = {1, 258, 65535, 7}
        rest = BulkPublisher._parse(stream[:cut], unacked)
        rest = BulkPublisher._parse(rest + stream[cut:], unacked)
        assert rest == b""
        assert unacked == {7}


def _secure_broker_files(folder: Path, base: str) -> tuple[dict[str, str], BrokerAuth, BrokerTls]:
    """Every service's login, the ACL and a generated CA and server certificate (as compose has them)."""
    folder.chmod(0o755)
    passwords = {user: access.generate_password() for user in access.USERS}
    auth = BrokerAuth(access.mosquitto_passwords(passwords), access.mosquitto_acl(base))
    certs = folder / "certs"
    generate_certificates(certs, ["localhost"])
    return passwords, auth, BrokerTls(certs / "ca.crt", certs / "server.crt", certs / "server.key")


async def test_it_logs_in_over_tls_like_the_bus_and_the_acl_applies(tmp_path: Path) -> None:
    """On a broker with logins, an ACL and TLS (as compose runs it): meter-sim's login publishes
    readings over mqtts://; a login without the right to publish readings is refused by the ACL."""
    if shutil.which("mosquitto") is None:
        if integration_required():
            pytest.fail("mosquitto is not on PATH (CI is set, so this fails instead of skipping)")
        pytest.skip("mosquitto is not on PATH")
    base = f"bulk-{secrets.token_hex(3)}"
    passwords, auth, tls = _secure_broker_files(tmp_path, base)
    certs = tmp_path / "certs"
    with start_broker(tmp_path / "tls", free_port(), kind="mosquitto", auth=auth, tls=tls) as broker:

        def settings(user: str) -> MqttSettings:
            return MqttSettings(
                url=broker.url,
                base_topic=base,
                username=user,
                password=passwords[user],
                ca_file=str(certs / "ca.crt"),
            )

        assert settings("meter-sim").tls
        topic = channels.READING.topic(base, MeterPath("u1", "f1", "t1", "m1"))
        async with Bus(settings("dashboard"), "dashboard") as bus:
            seen = set()

            async def on(_topic: str, payload: bytes, ack: Ack) -> None:
                seen.add(payload)
                ack()

            await bus.subscribe_raw(channels.READING.template.filter(base), on)
            await asyncio.sleep(0.2)
            publisher = BulkPublisher(settings("meter-sim"), "meter-sim-bulk-test")
            try:
                await publisher.publish_many([(encode_topic(topic), b"from meter-sim")])
            finally:
                await publisher.close()
            # billing may not publish readings: mosquitto (3.1.1) acknowledges and drops the message
            intruder = BulkPublisher(settings("billing"), "billing-bulk-test")
            try:
                await intruder.publish_many([(encode_topic(topic), b"from billing")])
            finally:
                await intruder.close()
            await _wait(seen, 1)
            await asyncio.sleep(0.5)  # the refused one would have arrived by now
    assert seen == {b"from meter-sim"}
