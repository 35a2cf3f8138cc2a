"""The gateway on the real broker and database: health, simulation time, errors, API keys."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from fastapi import Query

from gridsim_aggregator.__main__ import serve as serve_aggregator
from gridsim_billing.__main__ import serve as serve_billing
from gridsim_feasibility.__main__ import serve as serve_feasibility
from gridsim_gateway.main import create_app
from gridsim_gateway.security import OPERATE
from gridsim_meter_sim.__main__ import serve as serve_meter_sim
from gridsim_shared import channels
from gridsim_shared.bus import Bus
from gridsim_shared.messages import ClockState
from gridsim_shared.settings import GatewaySettings, Settings
from gridsim_shared.testing import gateway_client, running
from gridsim_shared.topics import NoPath
from gridsim_utility.__main__ import serve as serve_utility

pytestmark = pytest.mark.integration


async def _health_until(client: object, predicate: object, timeout: float = 15) -> dict[str, object]:
    import httpx

    assert isinstance(client, httpx.AsyncClient)
    assert callable(predicate)
    async with asyncio.timeout(timeout):
        while True:
            body: dict[str, object] = (await client.get("/health")).json()
            if predicate(body):
                return body
            await asyncio.sleep(0.1)


async def test_health_reports_broker_database_and_every_service(settings: Settings) -> None:
    async with (
        running(
            serve_meter_sim,
            serve_aggregator,
            serve_billing,
            serve_feasibility,
            serve_utility,
            settings=settings,
        ),
        gateway_client(create_app(settings)) as client,
    ):
        body = await _health_until(client, lambda b: b["status"] == "ok")
        assert body["broker"] == {"ok": True, "url": settings.mqtt.url, "error": None}
        assert body["database"]["ok"] is True  # type: ignore[index]
        assert body["services"] == dict.fromkeys(
            ["meter-sim", "aggregator", "billing", "feasibility", "utility", "gateway"], "online"
        )


async def test_health_is_degraded_while_a_service_is_missing(settings: Settings) -> None:
    async with running(serve_billing, settings=settings), gateway_client(create_app(settings)) as client:
        body = await _health_until(client, lambda b: b["services"]["billing"] == "online")
        assert body["status"] == "degraded"
        assert body["services"]["meter-sim"] == "missing"  # type: ignore[index]


async def test_simulation_time_has_the_seed_shape(settings: Settings) -> None:
    async with gateway_client(create_app(settings)) as client:
        clockless = await client.get("/simulation-time")
        assert clockless.status_code == 503
        assert clockless.json()["error"]["code"] == "clock_not_ready"
        async with Bus(settings.mqtt, "test-clock") as bus:
            clock = ClockState(
                current_datetime=datetime(2025, 6, 20, 10, tzinfo=UTC),
                state="paused",
                speed=1440,
                interval_s=60,
                tick=600,
            )
            await bus.publish(channels.CLOCK, clock, NoPath())
            async with asyncio.timeout(10):
                while (response := await client.get("/simulation-time")).status_code != 200:
                    await asyncio.sleep(0.05)
        assert response.json()["current_datetime"] == "2025-06-20T10:00:00Z"
        assert response.json()["tick"] == 600


async def test_errors_name_the_field_and_unknown_routes_are_json_404(settings: Settings) -> None:
    app = create_app(settings)

    @app.get("/probe")
    async def probe(count: int = Query(ge=1)) -> dict[str, int]:
        return {"count": count}

    async with gateway_client(app) as client:
        bad = await client.get("/probe", params={"count": "zero"})
        assert bad.status_code == 422
        assert bad.json()["error"]["field"] == "count"
        assert bad.json()["error"]["message"].startswith("count:")
        missing = await client.get("/no/such/route")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "not_found"


async def test_api_keys_guard_mutating_routes_only_when_configured(settings: Settings) -> None:
    for keys, expected in (([], 200), (["s3cret"], 401)):
        configured = settings.model_copy(update={"gateway": GatewaySettings(api_keys=keys)})
        app = create_app(configured)

        @app.post("/probe", dependencies=[OPERATE])
        async def probe() -> dict[str, bool]:
            return {"done": True}

        async with gateway_client(app) as client:
            response = await client.post("/probe")
            assert response.status_code == expected
            if expected == 401:
                assert response.json()["error"]["field"] == "X-API-Key"
                assert (await client.post("/probe", headers={"X-API-Key": "wrong"})).status_code == 401
                assert (await client.post("/probe", headers={"X-API-Key": "s3cret"})).status_code == 200
            # Reads need no key (/health answers 503 here: no service runs in this test).
            assert (await client.get("/livez")).status_code == 200
            assert (await client.get("/health")).status_code == 503


async def test_openapi_is_served(settings: Settings) -> None:
    async with gateway_client(create_app(settings)) as client:
        spec = (await client.get("/openapi.json")).json()
        assert "/health" in spec["paths"]
        assert "/simulation-time" in spec["paths"]
        assert (await client.get("/docs")).status_code == 200
