"""The launcher's supervision: embedded servers restarted when they exit, hung services killed to restart,
and the embedded Mosquitto keeping a persistent session's queue across a restart (issue 16)."""

from __future__ import annotations

import asyncio
import shutil
import sys
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from gridsim import launcher
from gridsim.embedded import free_port, port_answers, start_broker
from gridsim.launcher import Backends, ServiceProcess


class _FakeServer:
    def __init__(self, name: str) -> None:
        self.name = name
        self.running = True
        self.stopped = False
        self.process = type("P", (), {"returncode": -9})()

    def stop(self) -> None:
        self.stopped = True


def test_an_exited_embedded_server_is_started_again() -> None:
    started: list[_FakeServer] = []

    def start() -> Any:
        started.append(_FakeServer("postgres"))
        return started[-1]

    backends = Backends(mqtt_url="", db_url="")
    first = backends.add(start)
    assert backends.restart_exited() == []
    first.running = False
    assert backends.restart_exited() == ["postgres"]
    assert first.stopped
    assert backends.servers == [started[1]]
    assert backends.restarts == 1


async def test_a_stalled_service_is_killed_and_a_healthy_one_left_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(launcher, "HEALTH_POLL_S", 0.01)
    monkeypatch.setattr(launcher, "STALLED_RESTART_S", 0.05)
    reports = {"services": {"billing": "stalled", "aggregator": "online"}}
    monkeypatch.setattr(launcher, "fetch_health", lambda _url: reports)
    services = [ServiceProcess("billing", "x", {}), ServiceProcess("aggregator", "x", {})]
    for service in services:
        service.process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "import time; time.sleep(60)"
        )
    stopping = asyncio.Event()
    watching = asyncio.create_task(launcher.watch_services("http://x/health", services, stopping))
    billing, aggregator = services
    assert billing.process is not None
    assert aggregator.process is not None
    assert await asyncio.wait_for(billing.process.wait(), 30) == -9
    stopping.set()
    await asyncio.wait_for(watching, 10)
    assert billing.stalled_restarts == 1
    assert aggregator.process.returncode is None
    aggregator.process.kill()
    await aggregator.process.wait()


async def test_a_gateway_that_stops_answering_is_killed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(launcher, "HEALTH_POLL_S", 0.01)
    monkeypatch.setattr(launcher, "STALLED_RESTART_S", 0.05)
    monkeypatch.setattr(launcher, "fetch_health", lambda _url: None)
    gateway = ServiceProcess("gateway", "x", {})
    gateway.process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import time; time.sleep(60)"
    )
    stopping = asyncio.Event()
    watching = asyncio.create_task(launcher.watch_services("http://x/health", [gateway], stopping))
    assert await asyncio.wait_for(gateway.process.wait(), 30) == -9
    stopping.set()
    await asyncio.wait_for(watching, 10)


@pytest.mark.integration
@pytest.mark.skipif(shutil.which("mosquitto") is None, reason="mosquitto not on PATH")
async def test_the_embedded_broker_restarts_with_the_queued_messages_of_a_persistent_session(
    tmp_path: Path,
) -> None:
    await asyncio.to_thread(tmp_path.chmod, 0o755)  # searchable by the broker's own user
    port = free_port()
    backends = Backends(mqtt_url="", db_url="")
    backends.add(lambda: start_broker(tmp_path / "broker", port))
    try:
        async with aiomqtt.Client("127.0.0.1", port, identifier="keeper", clean_session=False) as client:
            await client.subscribe("kept/#", qos=1)
        async with aiomqtt.Client("127.0.0.1", port, identifier="writer") as writer:
            await writer.publish("kept/one", b"queued while away", qos=1)
        backends.servers[0].stop()  # a clean stop saves the persistence file
        assert await asyncio.to_thread(backends.restart_exited) == ["mosquitto"]
        assert port_answers("127.0.0.1", port)
        async with aiomqtt.Client("127.0.0.1", port, identifier="keeper", clean_session=False) as client:
            async with asyncio.timeout(30):
                message = await anext(aiter(client.messages))
        assert message.payload == b"queued while away"
    finally:
        backends.stop()
