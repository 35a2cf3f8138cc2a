"""The feasibility service through the gateway, in-process, on the real broker and database."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from gridsim_feasibility.__main__ import serve as serve_feasibility
from gridsim_gateway.main import create_app
from gridsim_meter_sim.__main__ import serve as serve_meter_sim
from gridsim_shared import channels
from gridsim_shared.bus import Bus
from gridsim_shared.commands import meter_sim
from gridsim_shared.db import connect
from gridsim_shared.settings import FeasibilitySettings, Settings
from gridsim_shared.testing import Collector, gateway_client, rollup_table, running

pytestmark = pytest.mark.integration

SF = (37.7793, -122.4193)  # City Hall
METRES_PER_DEGREE = math.pi * 6_371_008.8 / 180


def north(metres: float, origin: tuple[float, float] = SF) -> tuple[float, float]:
    """A point ``metres`` north of ``origin``."""
    return origin[0] + metres / METRES_PER_DEGREE, origin[1]


async def _sql(settings: Settings, query: str, params: Any = None) -> list[tuple[Any, ...]]:
    async with await connect(settings.db.url, settings.db.schema_name, autocommit=True) as conn:
        cur = await conn.execute(query, params)
        return await cur.fetchall() if cur.description else []


async def _grid(settings: Settings) -> int:
    """A utility and a feeder (meter-sim's rows); returns the feeder's id."""
    rows = await _sql(
        settings,
        "with u as (insert into grid_nodes (code, name, level) values ('sf', 'SF Utility', 'utility') returning id)"
        " insert into grid_nodes (code, name, level, parent_id, latitude, longitude)"
        " select 'f1', 'Feeder 1', 'feeder', id, %s, %s from u returning id",
        SF,
    )
    return int(rows[0][0])


async def _sim_now(settings: Settings) -> datetime:
    """meter-sim's simulated time (the measurement window ends there)."""
    ((now,),) = await _sql(settings, "select current_datetime from simulation_clock")
    assert isinstance(now, datetime)
    return now


@contextlib.asynccontextmanager
async def _app(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    await _grid(settings)
    async with (
        running(serve_feasibility, serve_meter_sim, settings=settings),
        gateway_client(create_app(settings)) as client,
    ):
        yield client


async def _transformer(
    client: httpx.AsyncClient, name: str, at: tuple[float, float], kva: float, **extra: Any
) -> dict[str, Any]:
    response = await client.post(
        "/admin/transformers",
        json={"name": name, "capacity_kVA": kva, "latitude": at[0], "longitude": at[1], **extra},
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def _request(
    kind: str, consumption: float, production: float = 0.0, at: tuple[float, float] = SF
) -> dict[str, Any]:
    return {
        "type": kind,
        "requested_consumption_kW": consumption,
        "requested_production_kW": production,
        "latitude": at[0],
        "longitude": at[1],
    }


# ------------------------------------------------------------------ admin view of transformers
async def test_transformers_create_list_read(settings: Settings) -> None:
    async with _app(settings) as client:
        created = await _transformer(client, "TX-101", north(300), 500, connected_consumption_kW=185)
        assert created["code"] == "tx-101"
        assert created["spare_consumption_capacity"] == pytest.approx(215.0)  # 500 × 0.8 − 185
        assert created["spare_production_capacity"] == pytest.approx(150.0)
        assert created["city"] == "San Francisco"
        await _transformer(client, "TX-102", north(600), 250)
        page = (await client.get("/admin/transformers", params={"limit": 1})).json()
        assert page["total"] == 2
        assert [t["name"] for t in page["transformers"]] == ["TX-101"]
        by_id = (await client.get(f"/admin/transformers/{created['id']}")).json()
        by_name = (await client.get("/admin/transformers/TX-101")).json()
        assert by_id["id"] == by_name["id"] == created["id"]
        assert by_id["measured_peak_consumption_kW"] is None  # no readings yet

        missing = await client.get("/admin/transformers/99999")
        assert missing.status_code == 404
        assert missing.json()["error"]["field"] == "id"
        duplicate = await client.post(
            "/admin/transformers",
            json={
                "name": "TX 101",
                "code": "tx-101",
                "capacity_kVA": 10,
                "latitude": 37.7,
                "longitude": -122.4,
            },
        )
        assert duplicate.status_code == 409
        assert duplicate.json()["error"]["field"] == "code"
        bad = await client.post(
            "/admin/transformers",
            json={"name": "TX-9", "capacity_kVA": 0, "latitude": 37.7, "longitude": -122.4},
        )
        assert bad.status_code == 422
        assert bad.json()["error"]["field"] == "capacity_kVA"
        not_feeder = await client.post(
            "/admin/transformers",
            json={
                "name": "TX-9",
                "capacity_kVA": 10,
                "latitude": 37.7,
                "longitude": -122.4,
                "parent_id": created["id"],
            },
        )
        assert not_feeder.status_code == 422
        assert not_feeder.json()["error"]["field"] == "parent_id"


# ------------------------------------------------------------------ the seed's response shapes
async def test_feasibility_check_seed_shapes_and_no_side_effects(settings: Settings) -> None:
    async with _app(settings) as client:
        near = await _transformer(
            client, "TX-101", north(310.5), 500, connected_consumption_kW=185, connected_production_kW=85
        )
        body = _request("consumer", 10.0, 0.0)
        response = await client.post("/feasibility-check", json=body)
        assert response.status_code == 200
        result = response.json()
        assert result["status"] == "feasible"
        nearest = result["nearest_transformer"]
        assert {
            k: nearest[k] for k in ("id", "name", "spare_consumption_capacity", "spare_production_capacity")
        } == {
            "id": near["id"],
            "name": "TX-101",
            "spare_consumption_capacity": 215.0,
            "spare_production_capacity": 65.0,
        }
        assert nearest["distance_meters"] == pytest.approx(310.5, abs=0.2)
        assert nearest["decided_on"] == "nameplate"
        # No side effects: the transformer's loads and the connection list are unchanged.
        after = (await client.get(f"/admin/transformers/{near['id']}")).json()
        assert after["connected_consumption_kW"] == 185
        assert (await client.get("/connections")).json()["total"] == 0

        too_big = await client.post("/feasibility-check", json=_request("consumer", 216.0))
        assert too_big.json() == {
            "status": "not_feasible",
            "reason": "No transformer nearby can support this load safely",
            "limiting": "consumption",
            "radius_m": 2000.0,
            "transformers_in_radius": 1,
        }
        injection = (await client.post("/feasibility-check", json=_request("prosumer", 5.0, 66.0))).json()
        assert injection["status"] == "not_feasible"
        assert injection["limiting"] == "production"


async def test_connection_seed_shapes_and_loads_grow(settings: Settings) -> None:
    async with _app(settings) as client:
        tx = await _transformer(client, "TX-101", north(100), 100, connected_production_kW=20)
        approved = await client.post("/connection", json=_request("prosumer", 15.0, 8.0))
        assert approved.status_code == 201
        body = approved.json()
        assert {k: body[k] for k in ("status", "assigned_transformer", "transformer_id", "message")} == {
            "status": "approved",
            "assigned_transformer": "TX-101",
            "transformer_id": tx["id"],
            "message": "Connection successfully created and linked to transformer TX-101",
        }
        after = (await client.get(f"/admin/transformers/{tx['id']}")).json()
        assert after["connected_consumption_kW"] == 15.0
        assert after["connected_production_kW"] == 28.0

        # A prosumer that passes on consumption (15 + 10 ≤ 80) and fails on injection (28 + 3 > 30).
        injection = await client.post("/connection", json=_request("prosumer", 10.0, 3.0))
        assert injection.status_code == 201
        rejected = injection.json()
        assert {k: rejected[k] for k in ("status", "reason")} == {
            "status": "rejected",
            "reason": "Transformer cannot support additional solar injection",
        }
        overload = (await client.post("/connection", json=_request("consumer", 66.0))).json()
        assert {k: overload[k] for k in ("status", "reason")} == {
            "status": "rejected",
            "reason": "Transformer overloaded for consumption",
        }
        far = (await client.post("/connection", json=_request("consumer", 1.0, at=north(5000)))).json()
        assert far["reason"] == "No transformer nearby can support this load safely"
        assert far["limiting"] == "none_in_radius"
        unchanged = (await client.get(f"/admin/transformers/{tx['id']}")).json()
        assert (unchanged["connected_consumption_kW"], unchanged["connected_production_kW"]) == (15.0, 28.0)

        # Stored: GET /connection/{id} and GET /connections.
        stored = (await client.get(f"/connection/{body['connection_id']}")).json()
        assert stored["status"] == "approved"
        assert stored["transformer_id"] == tx["id"]
        assert stored["transformer_name"] == "TX-101"
        assert stored["requested_consumption_kW"] == 15.0
        assert stored["reason"] is None
        assert datetime.fromisoformat(stored["created_at"]) <= datetime.now(UTC)
        stored_rejection = (await client.get(f"/connection/{rejected['connection_id']}")).json()
        assert stored_rejection["status"] == "rejected"
        assert stored_rejection["reason"] == "Transformer cannot support additional solar injection"
        assert stored_rejection["transformer_id"] is None
        listing = (await client.get("/connections")).json()
        assert listing["total"] == 4
        assert listing["connections"][0]["id"] == far["connection_id"]  # newest first
        only_approved = (await client.get("/connections", params={"status": "approved"})).json()
        assert [c["id"] for c in only_approved["connections"]] == [body["connection_id"]]


# ------------------------------------------------------------------ ranking and radius
async def test_nearest_with_capacity_and_the_configurable_radius(settings: Settings) -> None:
    settings = settings.model_copy(update={"feasibility": FeasibilitySettings(radius_m=1000)})
    async with _app(settings) as client:
        await _transformer(client, "TX-FULL", north(100), 100, connected_consumption_kW=79)
        second = await _transformer(client, "TX-SECOND", north(400), 100)
        await _transformer(client, "TX-THIRD", north(700), 500)
        far = await _transformer(client, "TX-FAR", north(1500), 1000)
        check = (await client.post("/feasibility-check", json=_request("consumer", 5.0))).json()
        assert check["nearest_transformer"]["name"] == "TX-SECOND"
        assert check["nearest_transformer"]["distance_meters"] == pytest.approx(400, abs=0.5)
        connection = (await client.post("/connection", json=_request("consumer", 5.0))).json()
        assert connection["transformer_id"] == second["id"]
        # 1,500 m is outside the 1,000 m radius: a request only TX-FAR could carry is not feasible.
        big = (await client.post("/feasibility-check", json=_request("consumer", 700.0))).json()
        assert big["status"] == "not_feasible"
        assert big["radius_m"] == 1000
        assert big["transformers_in_radius"] == 3
        # A transformer moved into the radius is seen at once (the position index follows the database).
        await _sql(settings, "update grid_nodes set latitude = %s where id = %s", (north(900)[0], far["id"]))
        moved = (await client.post("/feasibility-check", json=_request("consumer", 700.0))).json()
        assert moved["nearest_transformer"]["name"] == "TX-FAR"


# ------------------------------------------------------------------ validation
@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"latitude": 91}, "latitude"),
        ({"longitude": -180.5}, "longitude"),
        ({"requested_consumption_kW": -1}, "requested_consumption_kW"),
        ({"requested_consumption_kW": "NaN"}, "requested_consumption_kW"),
        ({"requested_production_kW": "Infinity", "type": "prosumer"}, "requested_production_kW"),
        ({"type": "generator"}, "type"),
        ({"requested_production_kW": 2.0}, "requested_production_kW"),  # a consumer cannot inject
        ({"unexpected": 1}, "unexpected"),
    ],
)
async def test_bad_requests_are_422_naming_the_field(
    settings: Settings, patch: dict[str, Any], field: str
) -> None:
    async with _app(settings) as client:
        for path in ("/feasibility-check", "/connection"):
            response = await client.post(path, json={**_request("consumer", 5.0), **patch})
            assert response.status_code == 422, response.text
            error = response.json()["error"]
            assert error["field"] == field
        assert (await client.get("/connections")).json()["total"] == 0


async def test_consumer_injection_message_says_so(settings: Settings) -> None:
    async with _app(settings) as client:
        response = await client.post("/connection", json=_request("consumer", 5.0, 2.0))
        assert response.status_code == 422
        assert "a consumer cannot inject" in response.json()["error"]["message"]
        missing = await client.post(
            "/connection", json={"type": "consumer", "latitude": 37.7, "longitude": -122.4}
        )
        assert missing.status_code == 422
        assert missing.json()["error"]["field"] == "requested_consumption_kW"
        assert (await client.get("/connection/not-a-uuid")).status_code == 422
        unknown = await client.get("/connection/00000000-0000-0000-0000-000000000000")
        assert unknown.status_code == 404
        assert (await client.get("/connections", params={"status": "maybe"})).status_code == 422
        assert (await client.get("/connections", params={"limit": 0})).status_code == 422


# ------------------------------------------------------------------ atomic approval under concurrency
async def test_fifty_concurrent_connections_never_exceed_the_limits(settings: Settings) -> None:
    async with _app(settings) as client:
        tx = await _transformer(client, "TX-HOT", north(50), 100)  # limits: 80 kW draw, 30 kW injection
        requests = [
            _request("consumer", 4.0) if i % 2 else _request("prosumer", 1.0, 1.5) for i in range(50)
        ]  # 25 × 4 + 25 × 1 = 125 kW of draw and 37.5 kW of injection asked for: not all can fit
        responses = await asyncio.gather(*(client.post("/connection", json=r) for r in requests))
        assert all(r.status_code == 201 for r in responses)
        results = [r.json() for r in responses]
        final = (await client.get(f"/admin/transformers/{tx['id']}")).json()
        consumption, production = final["connected_consumption_kW"], final["connected_production_kW"]
        assert consumption <= 80.0
        assert production <= 30.0
        approved = [req for req, res in zip(requests, results, strict=True) if res["status"] == "approved"]
        rejected = [
            (req, res) for req, res in zip(requests, results, strict=True) if res["status"] == "rejected"
        ]
        assert approved
        assert rejected
        # The booked load is exactly the sum of what was approved: no lost or doubled update.
        assert consumption == pytest.approx(sum(r["requested_consumption_kW"] for r in approved))
        assert production == pytest.approx(sum(r["requested_production_kW"] for r in approved))
        # Loads only grow, so a request rejected during the race does not fit the final state either.
        for req, res in rejected:
            over_draw = consumption + req["requested_consumption_kW"] > 80.0
            over_injection = production + req["requested_production_kW"] > 30.0
            assert over_draw or over_injection
            expected = "consumption" if over_draw else "production"
            assert res["limiting"] in {expected, "consumption", "production"}
        stored = (await client.get("/connections", params={"status": "approved", "limit": 1000})).json()
        assert stored["total"] == len(approved)


# ------------------------------------------------------------------ closing the loop
async def test_approved_connection_becomes_a_meter_and_reports_measured_peak(settings: Settings) -> None:
    async with _app(settings) as client:
        tx = await _transformer(client, "TX-LOOP", north(80), 100)
        body = {**_request("prosumer", 15.0, 8.0), "create_meter": True}
        result = (await client.post("/connection", json=body)).json()
        assert result["status"] == "approved"
        meter = await _sql(
            settings,
            "select m.code, m.transformer_id, m.meter_type, m.load_factor_production, e.type, e.latitude"
            " from meters m join energy_resources e on e.id = m.er_id where m.id = %s",
            (result["meter_id"],),
        )
        assert meter == [(result["meter_code"], tx["id"], "net-meter", 1.0, "prosumer", SF[0])]
        ders = await _sql(
            settings,
            "select appliance_id, quantity, capacity_kw from ders where er_id = %s",
            (result["er_id"],),
        )
        solar = [(q, kw) for a, q, kw in ders if a == 12]
        assert solar == [(7, pytest.approx(8.0 / 7))]  # panels rated together at the requested 8 kW
        stored = (await client.get(f"/connection/{result['connection_id']}")).json()
        assert (stored["meter_id"], stored["er_id"]) == (result["meter_id"], result["er_id"])

        # Readings arrive for the meter (as the aggregator writes them): the check reports the peak hour.
        now = await _sim_now(settings)
        for hours_ago, kwh, solar in [(1, 12.0, 1.0), (2, 30.0, 6.5), (3, 8.0, 0.0), (400, 99.0, 0.0)]:
            await _sql(
                settings,
                f"insert into {await rollup_table(settings, 'meter_data_1h')}"
                " (meter_id, bucket, consumption_kwh, production_kwh, readings) values (%s, %s, %s, %s, 60)",
                (result["meter_id"], now - timedelta(hours=hours_ago), kwh, solar),
            )
        check = (await client.post("/feasibility-check", json=_request("consumer", 1.0))).json()
        nearest = check["nearest_transformer"]
        assert nearest["measured_peak_consumption_kW"] == 30.0  # 400 h ago is outside the 168 h window
        assert nearest["measured_peak_production_kW"] == 6.5
        assert nearest["measured_spare_consumption_capacity"] == 50.0
        assert nearest["spare_consumption_capacity"] == 65.0  # nameplate: 80 − 15 booked
        detail = (await client.get(f"/admin/transformers/{tx['id']}")).json()
        assert detail["measured_peak_consumption_kW"] == 30.0
        # The aggregator's per-transformer hourly rollups, where present, are the measurement.
        await _sql(
            settings,
            f"insert into {await rollup_table(settings, 'grid_rollups_1h')}"
            " (node_id, bucket, consumption_kwh, production_kwh) values (%s, %s, 42, 2)",
            (tx["id"], now - timedelta(hours=5)),
        )
        detail = (await client.get(f"/admin/transformers/{tx['id']}")).json()
        assert detail["measured_peak_consumption_kW"] == 42.0


async def test_deciding_on_measured_load(settings: Settings) -> None:
    settings = settings.model_copy(update={"feasibility": FeasibilitySettings(decide_on_measured_load=True)})
    async with _app(settings) as client:
        tx = await _transformer(client, "TX-MEASURED", north(80), 100)
        meter = await _sql(
            settings, "insert into meters (code, transformer_id) values ('M-1', %s) returning id", (tx["id"],)
        )
        now = await _sim_now(settings)
        await _sql(
            settings,
            f"insert into {await rollup_table(settings, 'meter_data_1h')}"
            " (meter_id, bucket, consumption_kwh, production_kwh) values (%s, %s, 70, 0)",
            (meter[0][0], now - timedelta(hours=1)),
        )
        check = (await client.post("/feasibility-check", json=_request("consumer", 5.0))).json()
        assert check["nearest_transformer"]["decided_on"] == "measured"
        assert check["nearest_transformer"]["spare_consumption_capacity"] == 10.0  # 80 − measured 70
        rejected = (await client.post("/connection", json=_request("consumer", 11.0))).json()
        assert rejected["reason"] == "Transformer overloaded for consumption"
        first = (await client.post("/connection", json=_request("consumer", 6.0))).json()
        assert first["status"] == "approved"
        # The booked load was raised to the measured peak, then the request added: 70 + 6.
        after = (await client.get(f"/admin/transformers/{tx['id']}")).json()
        assert after["connected_consumption_kW"] == 76.0
        second = (await client.post("/connection", json=_request("consumer", 6.0))).json()
        assert second["status"] == "rejected"


async def test_created_meter_produces_readings(settings: Settings) -> None:
    """The whole loop: approve with create_meter, meter-sim reloads, one step gives the meter a reading."""
    await _grid(settings)
    async with (
        running(serve_meter_sim, serve_feasibility, settings=settings),
        gateway_client(create_app(settings)) as client,
        Bus(settings.mqtt, "probe", "1") as bus,
    ):
        await _transformer(client, "TX-LIVE", north(60), 100)
        result = (
            await client.post("/connection", json={**_request("prosumer", 6.0, 3.0), "create_meter": True})
        ).json()
        assert result["status"] == "approved"
        readings = await Collector(bus, channels.READING, meter=result["meter_code"].lower()).start()
        async with asyncio.timeout(20):
            while not readings.messages:
                # meter-sim reloads its world on the notification; step until the new meter reports.
                await bus.call(meter_sim.STEP, meter_sim.STEP.build(intervals=1), timeout=15)
                with contextlib.suppress(TimeoutError):
                    await readings.wait_for(1, timeout=1)
        reading, path = readings.messages[0]
        assert path.transformer == "tx-live"
        assert reading.consumption_kWh >= 0
