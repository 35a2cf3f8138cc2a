"""The broker's identities and ACLs on a real Mosquitto (docs/security.md).

Each test module run starts its own Mosquitto on a free port with the password and ACL files generated
from ``gridsim_shared.access`` — the machine's broker on 1883 is anonymous and stays as it is. Every
refusal is shown against a control: the same message from a user that may send it does arrive, and the
broker (one thread) delivers in the order it accepted, so "not delivered" is not "not yet delivered".
"""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
import socket
import ssl
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from pydantic import BaseModel

from gridsim.certs import generate_certificates
from gridsim.embedded import BrokerAuth, BrokerTls, EmbeddedServer, free_port, start_broker
from gridsim.testing import integration_required
from gridsim_shared import access, topics
from gridsim_shared.bus import Bus, Router
from gridsim_shared.channels import Command, NoArgs
from gridsim_shared.messages import Reply, Request
from gridsim_shared.settings import MqttSettings

pytestmark = pytest.mark.integration

BASE = f"sec-{secrets.token_hex(3)}"


@dataclass
class Broker:
    server: EmbeddedServer
    passwords: dict[str, str]
    certs: Path

    def settings(self, user: str | None, *, tls: bool = False) -> MqttSettings:
        url = self.server.url if not tls else self.tls_url
        return MqttSettings(
            url=url,
            base_topic=BASE,
            username=user,
            password=self.passwords.get(user or ""),
            ca_file=str(self.certs / "ca.crt") if tls else None,
            rpc_timeout_s=20,
        )

    tls_url: str = ""


@pytest.fixture(scope="module")
def broker() -> Iterator[Broker]:
    if shutil.which("mosquitto") is None:
        if integration_required():
            pytest.fail("mosquitto is not on PATH (CI is set, so this fails instead of skipping)")
        pytest.skip("mosquitto is not on PATH")
    folder = Path(tempfile.mkdtemp(prefix="gridsim-sec-"))
    folder.chmod(0o755)
    passwords = {user: access.generate_password() for user in access.USERS}
    auth = BrokerAuth(access.mosquitto_passwords(passwords), access.mosquitto_acl(BASE))
    certs = folder / "certs"
    generate_certificates(certs, ["localhost"])
    tls = BrokerTls(certs / "ca.crt", certs / "server.crt", certs / "server.key")
    plain = start_broker(folder / "plain", free_port(), kind="mosquitto", auth=auth)
    try:
        secure = start_broker(folder / "tls", free_port(), kind="mosquitto", auth=auth, tls=tls)
        try:
            yield Broker(plain, passwords, certs, tls_url=secure.url)
        finally:
            secure.stop()
    finally:
        plain.stop()
        shutil.rmtree(folder, ignore_errors=True)


def _client(broker: Broker, user: str | None) -> aiomqtt.Client:
    settings = broker.settings(user)
    return aiomqtt.Client(
        settings.host,
        settings.port,
        username=user,
        password=settings.password,
        identifier=f"{user or 'anon'}-{secrets.token_hex(3)}",
    )


def _topic(kind: str) -> str:
    return f"{BASE}/{topics.VERSION}/{kind}"


async def _next(client: aiomqtt.Client, timeout: float = 20) -> aiomqtt.Message:
    async with asyncio.timeout(timeout):
        async for message in client.messages:
            return message
    msg = "unreachable"
    raise AssertionError(msg)


class Who(BaseModel):
    who: str


class Over(BaseModel):
    over: str


PROBE: Command[Who, dict[str, int]] = Command("meter-sim", "probe", Who, dict[str, int])
SLOW: Command[NoArgs, dict[str, bool]] = Command("meter-sim", "slow", NoArgs, dict[str, bool])
ECHO: Command[Over, Over] = Command("billing", "echo", Over, Over)


@dataclass
class Probe:
    """A command on a real Bus that records who called it."""

    calls: list[Any]
    release: asyncio.Event


@pytest.fixture
async def meter_sim(broker: Broker) -> AsyncIterator[tuple[Bus, Probe]]:
    probe = Probe([], asyncio.Event())
    router: Router[Probe] = Router()

    @router.handles(PROBE)
    async def record(data: Who, deps: Probe) -> dict[str, int]:
        deps.calls.append(data.model_dump())
        return {"calls": len(deps.calls)}

    @router.handles(SLOW)
    async def slow(data: NoArgs, deps: Probe) -> dict[str, bool]:
        await deps.release.wait()
        return {"real": True}

    async with Bus(broker.settings("meter-sim"), "meter-sim") as bus:
        await bus.include(router, probe)
        yield bus, probe


async def test_an_anonymous_client_is_refused(broker: Broker) -> None:
    with pytest.raises(aiomqtt.MqttError):
        async with _client(broker, None):
            pass
    with pytest.raises(aiomqtt.MqttError):
        async with aiomqtt.Client(
            broker.settings("dashboard").host,
            broker.settings("dashboard").port,
            username="dashboard",
            password="not-the-password",
        ):
            pass


async def test_the_dashboard_reads_readings_but_its_commands_change_nothing(
    broker: Broker, meter_sim: tuple[Bus, Probe]
) -> None:
    _, probe = meter_sim
    reading_topic = _topic("reading/pge/f1/t1/m1")
    async with _client(broker, "dashboard") as dashboard, _client(broker, "meter-sim") as publisher:
        await dashboard.subscribe(_topic("reading/#"), qos=1)
        await publisher.publish(reading_topic, b'{"kWh": 1}', qos=1)
        message = await _next(dashboard)
        assert message.topic.value == reading_topic
        # its command is accepted on the wire (MQTT 3.1.1 has no refusal) but never delivered
        forged = Request(correlation_id="d-1", reply_to=None, data={"who": "dashboard"})
        await dashboard.publish(_topic("cmd/meter-sim/probe"), forged.model_dump_json(), qos=1)
    async with Bus(broker.settings("operator"), "operator") as operator:
        assert await operator.call(PROBE, Who(who="operator")) == {"calls": 1}
    assert probe.calls == [{"who": "operator"}]


async def test_a_service_cannot_publish_another_services_topics(broker: Broker) -> None:
    async with (
        _client(broker, "dashboard") as dashboard,
        _client(broker, "billing") as billing,
        _client(broker, "meter-sim") as meter_sim,
    ):
        await dashboard.subscribe(_topic("clock"), qos=1)
        await dashboard.subscribe(_topic("rollup/#"), qos=1)
        await billing.publish(_topic("clock"), b'{"forged": "billing"}', qos=1)
        await billing.publish(_topic("rollup/pge/f1/t1"), b'{"forged": "billing"}', qos=1)
        await meter_sim.publish(_topic("rollup/pge/f1/t1"), b'{"forged": "meter-sim"}', qos=1)
        await meter_sim.publish(_topic("clock"), b'{"real": "meter-sim"}', qos=1)
        message = await _next(dashboard)
        assert json.loads(message.payload) == {"real": "meter-sim"}  # type: ignore[arg-type]


async def test_a_forged_reply_on_another_clients_reply_topic_is_refused(
    broker: Broker, meter_sim: tuple[Bus, Probe]
) -> None:
    _, probe = meter_sim
    async with Bus(broker.settings("gateway"), "gateway", client_id="gw-forge") as gateway:
        request = asyncio.create_task(gateway.call(SLOW))
        # the operator knows (or guesses) the reply topic and the correlation id
        reply_topic = topics.REPLY.build(BASE, topics.ClientPath("gateway", "gw-forge"))
        forged = Reply(correlation_id="gw-forge-0", status="ok", data={"real": False})
        async with _client(broker, "operator") as operator:
            await operator.publish(reply_topic, forged.model_dump_json(), qos=1)
            # nor may it read the gateway's replies
            await operator.subscribe(_topic("reply/gateway/#"), qos=1)
            probe.release.set()
            assert await request == {"real": True}
            with pytest.raises(TimeoutError):
                await _next(operator, timeout=0.5)


async def test_a_reply_to_outside_the_reply_namespace_is_ignored(
    broker: Broker, meter_sim: tuple[Bus, Probe]
) -> None:
    bus, probe = meter_sim
    dropped = bus.dropped
    async with _client(broker, "dashboard") as watcher, _client(broker, "operator") as operator:
        await watcher.subscribe(_topic("clock"), qos=1)
        # an operator may send commands, but not make meter-sim publish on the clock topic
        bad = Request(correlation_id="o-1", reply_to=_topic("clock"), data={"who": "forged clock"})
        await operator.publish(_topic("cmd/meter-sim/probe"), bad.model_dump_json(), qos=1)
        async with Bus(broker.settings("operator"), "operator") as agent:
            assert await agent.call(PROBE, Who(who="agent")) == {"calls": 1}
        assert probe.calls == [{"who": "agent"}]
        assert bus.dropped == dropped + 1
        with pytest.raises(TimeoutError):
            await _next(watcher, timeout=0.5)


async def test_mqtts_works_end_to_end_with_generated_certificates(broker: Broker) -> None:
    router: Router[list[Any]] = Router()

    @router.handles(ECHO)
    async def echo(data: Over, deps: list[Any]) -> Over:
        deps.append(data.model_dump())
        return data

    seen: list[Any] = []
    async with Bus(broker.settings("billing", tls=True), "billing") as service:
        await service.include(router, seen)
        async with Bus(broker.settings("gateway", tls=True), "gateway") as gateway:
            assert await gateway.call(ECHO, Over(over="tls")) == Over(over="tls")
    assert seen == [{"over": "tls"}]
    # the broker's certificate is checked: signed by the generated CA, for this address
    settings = broker.settings("gateway", tls=True)
    trusted = ssl.create_default_context(cafile=str(broker.certs / "ca.crt"))
    with socket.create_connection((settings.host, settings.port), timeout=10) as raw:
        with trusted.wrap_socket(raw, server_hostname=settings.host) as tls:
            assert tls.version() is not None
    stranger = ssl.create_default_context(cafile=str(broker.certs / "client.crt"))
    with socket.create_connection((settings.host, settings.port), timeout=10) as raw:
        with pytest.raises(ssl.SSLCertVerificationError):
            stranger.wrap_socket(raw, server_hostname=settings.host)
