"""The gateway's guards (docs/security.md): key roles, exposure, media type, cross-site, sizes, streams,
signed webhooks. Routes are real; a request refused by a guard never reaches a service, and one that
passes is shown by the route's own 422 for an empty body (so no service needs to run)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from starlette.requests import Request

from gridsim_gateway.main import create_app
from gridsim_gateway.security import ExposureError, StreamSlots, TooManyStreams, check_exposure
from gridsim_gateway.worldengine.webhook import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    OverloadWebhook,
    sign,
    verify_signature,
)
from gridsim_shared.messages import Rollup
from gridsim_shared.settings import GatewaySettings, Settings
from gridsim_shared.testing import gateway_client

WE = "/meter-data-simulator"
KEYS = ["read:r-key", "operate:o-key", "admin:a-key"]


def _with(settings: Settings, **gateway: Any) -> Settings:
    return settings.model_copy(update={"gateway": settings.gateway.model_copy(update=gateway)})


def _key(key: str) -> dict[str, str]:
    return {"X-API-Key": key}


@pytest.mark.integration
async def test_roles_401_without_a_key_403_with_a_smaller_role(settings: Settings) -> None:
    async with gateway_client(create_app(_with(settings, api_keys=KEYS))) as client:
        missing = await client.post("/simulation/pause")
        assert missing.status_code == 401
        assert missing.json()["error"]["field"] == "X-API-Key"
        assert (await client.post("/simulation/pause", headers=_key("wrong"))).status_code == 401
        read_only = await client.post("/simulation/pause", headers=_key("r-key"))
        assert read_only.status_code == 403, read_only.text
        assert read_only.json()["error"]["code"] == "forbidden"
        # operate may drive the clock (422: the empty body reached the route) but not edit the grid
        assert (await client.put("/simulation/speed", json={}, headers=_key("o-key"))).status_code == 422
        assert (await client.post("/admin/meter", json={}, headers=_key("o-key"))).status_code == 403
        assert (await client.post("/admin/meter", json={}, headers=_key("a-key"))).status_code == 422
        assert (await client.post("/admin/transformers", json={}, headers=_key("o-key"))).status_code == 403
        # the World Engine's reset is an admin route too, refused in its own (Strapi) envelope
        reset = await client.put(f"{WE}/utility/reset", headers=_key("o-key"))
        assert reset.status_code == 403
        assert reset.json()["error"]["name"] == "ForbiddenError"
        # reads stay public by default
        assert (await client.get("/simulation-time")).status_code == 503  # no clock yet, but not 401


@pytest.mark.integration
async def test_reads_need_a_key_when_they_are_not_public(settings: Settings) -> None:
    configured = _with(settings, api_keys=KEYS, public_reads=False)
    async with gateway_client(create_app(configured)) as client:
        assert (await client.get("/simulation-time")).status_code == 401
        assert (await client.get("/simulation-time", headers=_key("r-key"))).status_code == 503
        assert (await client.get("/health")).status_code in {200, 503}  # probes need no key


@pytest.mark.integration
async def test_mutating_bodies_must_be_json(settings: Settings) -> None:
    async with gateway_client(create_app(settings)) as client:
        form = await client.post("/admin/meter", data={"meter_id": "M1"})
        assert form.status_code == 415
        assert form.json()["error"] == {
            "status": 415,
            "code": "unsupported_media_type",
            "message": "the body must be application/json (got application/x-www-form-urlencoded)",
            "field": "Content-Type",
            "details": {},
        }
        text = await client.post(
            "/admin/meter", content=b'{"meter_id": "M1"}', headers={"Content-Type": "text/plain"}
        )
        assert text.status_code == 415
        assert (await client.post("/admin/meter", json={})).status_code == 422
        strapi = await client.post(f"{WE}/meters", data={"code": "Z"})
        assert strapi.status_code == 415
        assert strapi.json()["error"]["name"] == "UnsupportedMediaTypeError"


@pytest.mark.integration
async def test_cross_site_requests_change_nothing(settings: Settings) -> None:
    async with gateway_client(create_app(settings)) as client:
        # a page elsewhere posting with no body (no preflight in a browser): the clock must not pause
        for headers in ({"Origin": "http://evil.test"}, {"Sec-Fetch-Site": "cross-site"}, {"Origin": "null"}):
            refused = await client.post("/simulation/pause", headers=headers)
            assert refused.status_code == 403, headers
            assert refused.json()["error"]["field"] == "Origin"
        # the gateway's own pages (same origin) pass the guard and reach the route
        same = await client.put("/simulation/speed", json={}, headers={"Origin": "http://gridsim.test"})
        assert same.status_code == 422
        assert (
            await client.get("/simulation-time", headers={"Origin": "http://evil.test"})
        ).status_code == 503


@pytest.mark.integration
async def test_bodies_over_the_limit_get_413(settings: Settings) -> None:
    async with gateway_client(create_app(_with(settings, max_body_bytes=2048))) as client:
        big = {"meter_id": "M" * 4096}
        assert (await client.post("/admin/meter", json=big)).status_code == 413

        async def chunks() -> Any:
            for _ in range(4):
                yield b" " * 1024

        chunked = await client.post(
            "/admin/meter", content=chunks(), headers={"Content-Type": "application/json"}
        )
        assert chunked.status_code == 413
        assert chunked.json()["error"]["code"] == "payload_too_large"


def test_the_gateway_refuses_to_run_open_beyond_loopback() -> None:
    with pytest.raises(ExposureError, match="ALLOW_OPEN"):
        check_exposure(GatewaySettings(host="0.0.0.0"))
    with pytest.raises(ExposureError):
        check_exposure(GatewaySettings(host="192.0.2.10"))
    check_exposure(GatewaySettings(host="127.0.0.1"))
    check_exposure(GatewaySettings(host="::1"))
    check_exposure(GatewaySettings(host="0.0.0.0", api_keys=["admin:k"]))
    check_exposure(GatewaySettings(host="0.0.0.0", allow_open=True))
    with pytest.raises(ExposureError):
        create_app(Settings(gateway=GatewaySettings(host="0.0.0.0")))


def test_key_entries_carry_their_role() -> None:
    gateway = GatewaySettings(api_keys=["read:a", "operate:b", "c", "other:d"])
    assert gateway.key_roles() == {"a": "read", "b": "operate", "c": "admin", "other:d": "admin"}
    with pytest.raises(ValueError, match="empty key"):
        GatewaySettings(api_keys=["read:"])


def _request(settings: Settings, headers: dict[str, str], host: str = "192.0.2.1") -> Request:
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/events/live",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": (host, 5000),
        "state": {"settings": settings},
    }
    return Request(scope)


async def test_live_streams_are_limited_per_client() -> None:
    settings = Settings(gateway=GatewaySettings(max_streams_per_client=2, api_keys=["read:r"]))
    slots = StreamSlots()

    async def source() -> Any:
        yield 1

    first = slots.guard(_request(settings, {}), source())
    slots.guard(_request(settings, {}), source())
    with pytest.raises(TooManyStreams):
        slots.guard(_request(settings, {}), source())
    # another address, or a key, has slots of its own
    slots.guard(_request(settings, {}, host="192.0.2.2"), source())
    slots.guard(_request(settings, {"X-API-Key": "r"}), source())
    assert [item async for item in first] == [1]  # a finished stream gives its slot back
    assert slots.held("ip:192.0.2.1") == 1
    slots.guard(_request(settings, {}), source())


def test_webhook_signatures_verify_and_expire() -> None:
    body = b'{"totalBaseKWh": 85}'
    signature = sign("s3cret", 1_700_000_000, body)
    assert verify_signature("s3cret", "1700000000", body, signature, now=1_700_000_010)
    assert not verify_signature("other", "1700000000", body, signature, now=1_700_000_010)
    assert not verify_signature("s3cret", "1700000000", body + b" ", signature, now=1_700_000_010)
    assert not verify_signature("s3cret", "1700000000", body, signature, now=1_700_001_000)  # replayed late
    assert not verify_signature("s3cret", "soon", body, signature)


async def test_the_overload_webhook_is_signed() -> None:
    received: list[httpx.Request] = []

    def receive(request: httpx.Request) -> httpx.Response:
        received.append(request)
        return httpx.Response(200)

    async with httpx.AsyncClient(transport=httpx.MockTransport(receive)) as http:
        hook = OverloadWebhook("http://agent.test/alerts", 0.9, pool=None, client=http, secret="s3cret")  # type: ignore[arg-type]

        async def body(rollup: Rollup, share: float) -> dict[str, Any]:
            return {"transformer": {"code": rollup.node_code}, "totalBaseKWh": rollup.apparent_kVA}

        hook.body = body  # type: ignore[method-assign]
        rollup = Rollup.model_validate(
            {
                "level": "transformer",
                "node_id": 1,
                "node_code": "tx-0",
                "timestamp": "2025-06-20T18:00:00Z",
                "consumption_kWh": 1.0,
                "production_kWh": 0.0,
                "net_kWh": 1.0,
                "apparent_kVA": 85.0,
                "capacity_kVA": 90.0,
                "loading_pct": 94.4,
                "meters_expected": 1,
                "meters_reporting": 1,
            }
        )
        await hook.on_rollup(rollup, None)  # type: ignore[arg-type]
        await hook.drain()
    (request,) = received
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.content)["totalBaseKWh"] == 85.0
    assert verify_signature(
        "s3cret", request.headers[TIMESTAMP_HEADER], request.content, request.headers[SIGNATURE_HEADER]
    )


@pytest.mark.integration
async def test_what_the_fuzzer_found_is_a_422_naming_the_field(settings: Settings) -> None:
    """A month outside 1900-2999 (year 0 broke the services' datetime) and a malformed meter reference
    on the switch routes (the command was built in the route, so its checks were a 500)."""
    async with gateway_client(create_app(settings)) as client:
        months = [
            await client.get("/bill", params={"meter_id": 1, "month": "0000-01"}),
            await client.get("/bills", params={"month": "9999-12"}),
            await client.get("/bill/dynamic", params={"meter_id": 1, "month": "0000-12"}),
            await client.get("/sla/f1", params={"month": "0000-01"}),
        ]
        switches = [
            await client.post("/meter/b%C3%A4d%20code/disconnect"),
            await client.post("/meter/b%C3%A4d%20code/reconnect"),
            await client.post("/meter/M1/disconnect", params={"reason": ""}),
        ]
    for response in months:
        assert (response.status_code, response.json()["error"]["field"]) == (422, "month"), response.text
    assert [(r.status_code, r.json()["error"]["field"]) for r in switches] == [
        (422, "meter"),
        (422, "meter"),
        (422, "reason"),
    ], [r.text for r in switches]
