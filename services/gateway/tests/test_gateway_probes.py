"""/livez, /readyz and /health's 503: a service that is missing, stalled or reports a problem is seen."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from gridsim_billing.__main__ import serve as serve_billing
from gridsim_gateway.main import create_app
from gridsim_gateway.state import LiveState, instance_state
from gridsim_shared import channels
from gridsim_shared.bus import Bus
from gridsim_shared.commands import billing
from gridsim_shared.errors import RemoteError
from gridsim_shared.memory_bus import MemoryBroker
from gridsim_shared.messages import ServiceStatus
from gridsim_shared.settings import Settings
from gridsim_shared.testing import gateway_client, running
from gridsim_shared.topics import ServicePath

OTHERS = ("meter-sim", "aggregator", "billing", "feasibility", "utility")
NOW = datetime(2025, 6, 20, 12, tzinfo=UTC)


def _status(service: str, *, age_s: float = 0.0, problems: list[str] | None = None) -> ServiceStatus:
    return ServiceStatus(
        service=service,
        instance="0",
        state="online",
        ready=True,
        heartbeat_at=NOW - timedelta(seconds=age_s),
        heartbeat_s=5.0,
        problems=problems or [],
    )


def test_instance_state_from_heartbeat_and_problems() -> None:
    assert instance_state(_status("billing"), 4, NOW) == "online"
    assert instance_state(_status("billing", age_s=19), 4, NOW) == "online"
    assert instance_state(_status("billing", age_s=21), 4, NOW) == "stalled"
    assert instance_state(_status("billing", problems=["clock stalled"]), 4, NOW) == "unhealthy"
    offline = _status("billing").model_copy(update={"state": "offline"})
    assert instance_state(offline, 4, NOW) == "offline"
    # A status without heartbeats (no heartbeat_at) is judged by its state and readiness alone.
    ready = ServiceStatus(service="billing", instance="0", state="online", ready=True)
    assert instance_state(ready, 4, NOW) == "online"
    # Connected but not ready (its handlers not subscribed yet): starting, and /readyz says so.
    starting = ready.model_copy(update={"ready": False})
    assert instance_state(starting, 4, NOW) == "starting"
    assert (
        instance_state(_status("billing", age_s=60).model_copy(update={"ready": False}), 4, NOW) == "starting"
    )


async def test_the_best_instance_speaks_for_its_service_and_problems_name_the_instance() -> None:
    live = LiveState()
    await live.on_status(_status("billing", age_s=60), ServicePath("billing", "0"))
    await live.on_status(_status("billing").model_copy(update={"instance": "1"}), ServicePath("billing", "1"))
    await live.on_status(_status("meter-sim", problems=["clock stalled"]), ServicePath("meter-sim", "0"))
    states = live.service_states(4, NOW)
    assert states["billing"] == "online"
    assert states["meter-sim"] == "unhealthy"
    assert states["aggregator"] == "missing"
    assert live.problems(4, NOW) == ["billing/0: no heartbeat for 60 s", "meter-sim/0: clock stalled"]


async def test_a_service_is_starting_until_it_says_ready_then_offline_when_it_leaves() -> None:
    # The gateway's status subscription on the in-memory bus, fed by real service buses.
    broker = MemoryBroker()
    live = LiveState()
    async with broker.bus("gateway", announce=False) as gateway, broker.bus("billing") as billing:
        await gateway.subscribe(channels.STATUS, live.on_status)
        await broker.settle()
        assert live.service_states()["billing"] == "starting"  # connected, handlers not subscribed yet
        await billing.ready()
        await broker.settle()
        assert live.service_states()["billing"] == "online"
        async with broker.bus("test-probe"):  # a client that is no service is not judged
            await broker.settle()
            assert "test-probe" not in live.service_states()
        await billing.close()
        await broker.settle()
        assert live.service_states()["billing"] == "offline"


async def _get_until(
    client: httpx.AsyncClient, path: str, predicate: Any, timeout: float = 30
) -> httpx.Response:
    async with asyncio.timeout(timeout):
        while True:
            response = await client.get(path)
            if predicate(response):
                return response
            await asyncio.sleep(0.05)


@pytest.mark.integration
async def test_livez_answers_and_readyz_names_the_missing_services(settings: Settings) -> None:
    async with running(serve_billing, settings=settings), gateway_client(create_app(settings)) as client:
        assert (await client.get("/livez")).json() == {"status": "live"}
        health = await _get_until(client, "/health", lambda r: r.json()["services"]["billing"] == "online")
        assert health.status_code == 503
        assert health.json()["status"] == "degraded"
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["status"] == "not_ready"
        assert "meter-sim: missing" in ready.json()["problems"]
        assert not any(p.startswith("billing") for p in ready.json()["problems"])


@pytest.mark.integration
async def test_readyz_follows_the_heartbeats_and_problems_services_report(settings: Settings) -> None:
    async with Bus(settings.mqtt, "test-probe") as bus, gateway_client(create_app(settings)) as client:

        async def report(service: str, *, age_s: float = 0.0, problems: list[str] | None = None) -> None:
            status = _status(service, problems=problems).model_copy(
                update={"heartbeat_at": datetime.now(UTC) - timedelta(seconds=age_s)}
            )
            await bus.publish(channels.STATUS, status, ServicePath(service, "0"))

        for service in OTHERS:
            await report(service)
        ready = await _get_until(client, "/readyz", lambda r: r.status_code == 200)
        assert ready.json() == {"status": "ready", "problems": []}
        assert (await client.get("/health")).status_code == 200

        await report("aggregator", problems=["closer crashed 6 times in 60 s; last: ValueError: x"])
        ready = await _get_until(client, "/readyz", lambda r: r.status_code == 503)
        assert ready.json()["problems"] == [
            "aggregator/0: closer crashed 6 times in 60 s; last: ValueError: x"
        ]
        health = (await client.get("/health")).json()
        assert health["services"]["aggregator"] == "unhealthy"

        await report("aggregator")
        await _get_until(client, "/readyz", lambda r: r.status_code == 200)
        await report("feasibility", age_s=120)  # its process hangs: the heartbeat stopped two minutes ago
        ready = await _get_until(client, "/readyz", lambda r: r.status_code == 503)
        assert ready.json()["problems"] == ["feasibility/0: no heartbeat for 120 s"]
        assert (await client.get("/health")).json()["services"]["feasibility"] == "stalled"


@pytest.mark.integration
async def test_metrics_export_the_status_counters_and_rpc_latency(settings: Settings) -> None:
    async with (
        running(serve_billing, settings=settings),
        gateway_client(create_app(settings)) as client,
        Bus(settings.mqtt, "test-probe") as bus,
    ):
        await _get_until(client, "/health", lambda r: r.json()["services"]["billing"] == "online")
        # Ready: billing serves its commands (a 503 without a clock is still answered, still timed).
        with contextlib.suppress(RemoteError):
            await bus.call(billing.LIST_TRADES, billing.LIST_TRADES.build())
        text = (await client.get("/metrics")).text
    assert 'gridsim_bus_received{instance="0",service="gateway"}' in text
    assert 'gridsim_task_crashes{instance="0",service="billing",task="heartbeat"} 0.0' in text
    assert 'gridsim_rpc_seconds_count{operation="list_trades",service="billing"}' in text
    assert 'gridsim_problems{instance="0",service="gateway"} 0.0' in text
