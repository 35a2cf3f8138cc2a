"""Contract tests of the DEG World Engine routes (``/meter-data-simulator``), written from
WORLD-ENGINE-API.md: each route's status, envelope, ``message`` string and field names, the Strapi query
parameters, and Strapi's error envelope. Pure parts first (no marker), then the routes on the real broker
and database with meter-sim (and billing for trades) running."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from gridsim_billing.__main__ import serve as serve_billing
from gridsim_gateway.main import create_app
from gridsim_gateway.worldengine import links
from gridsim_gateway.worldengine.entities import (
    APPLIANCE,
    METER,
    TRANSFORMER,
    er_type_from_we,
    iso,
    meter_type_from_we,
)
from gridsim_gateway.worldengine.envelope import StrapiError, StrapiValidationError, strapi_error_from
from gridsim_gateway.worldengine.readings import health, row_id
from gridsim_gateway.worldengine.sqlquery import Compiler
from gridsim_gateway.worldengine.strapi import Populate, StrapiQuery, parse_query
from gridsim_gateway.worldengine.webhook import OverloadWebhook
from gridsim_meter_sim.__main__ import serve as serve_meter_sim
from gridsim_shared.bus import Router
from gridsim_shared.commands import meter_sim
from gridsim_shared.db import open_pool
from gridsim_shared.errors import ConflictError, NotFoundError
from gridsim_shared.ids import TransformerPath
from gridsim_shared.memory_bus import MemoryBroker
from gridsim_shared.messages import Rollup
from gridsim_shared.schemas.meters import Meter
from gridsim_shared.schemas.worldengine import MeterUpdateLinked
from gridsim_shared.settings import Settings
from gridsim_shared.testing import gateway_client, running, with_tiny_world

WE = "/meter-data-simulator"
TIMESTAMPS = {"createdAt", "updatedAt", "publishedAt"}
METER_FIELDS = {
    "id",
    "code",
    "consumptionLoadFactor",
    "productionLoadFactor",
    "type",
    "city",
    "state",
    "latitude",
    "longitude",
    "pincode",
    "max_capacity_KW",
    "dfp_subscription_id",
} | TIMESTAMPS
ER_FIELDS = {"id", "name", "type"} | TIMESTAMPS
DER_FIELDS = {"id", "switched_on"} | TIMESTAMPS
DATASET_FIELDS = {
    "id",
    "consumptionKWh",
    "productionKWh",
    "consumptionKVAh",
    "avgCurrent",
    "avgVoltage",
    "reactivePowerKVAR",
    "powerFactor",
    "timestamp",
} | TIMESTAMPS


def assert_strapi_error(response: httpx.Response, status: int, name: str, message: str | None = None) -> None:
    """Strapi's error envelope: ``{"data": null, "error": {status, name, message, details}}``."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["data"] is None
    assert set(body["error"]) == {"status", "name", "message", "details"}
    assert body["error"]["status"] == status
    assert body["error"]["name"] == name
    if message is not None:
        assert body["error"]["message"] == message


# ------------------------------------------------------------------------------------------ pure


def test_the_usual_client_query_parses() -> None:
    query = parse_query(
        [
            ("pagination[page]", "2"),
            ("pagination[pageSize]", "100"),
            ("populate[0]", "parent"),
            ("populate[1]", "energyResource"),
            ("populate[2]", "children"),
            ("populate[3]", "appliances"),
            ("sort[0]", "children.code:desc"),
            ("filters[code][$eq]", "MTR-0001"),
            ("q", "ignored"),
        ]
    )
    assert (query.page, query.page_size, query.offset) == (2, 100, 100)
    assert set(query.populate.children) == {"parent", "energyResource", "children", "appliances"}
    assert query.populate.wants(METER.relations).keys() == {"parent", "energyResource", "children"}
    assert query.sort[0].path == ("children", "code")
    assert query.sort[0].descending
    assert query.filters == {"code": {"$eq": "MTR-0001"}}


def test_strapi_defaults_caps_and_populate_forms() -> None:
    assert (parse_query([]).page, parse_query([]).page_size) == (1, 25)
    assert parse_query([("pagination[pageSize]", "500")]).page_size == 100
    assert parse_query([("pagination[start]", "50"), ("pagination[limit]", "25")]).page == 3
    assert parse_query([("populate", "*")]).populate.wants(["a", "b"]).keys() == {"a", "b"}
    nested = Populate.parse({"meter": {"populate": ["parent", "children"]}})
    assert nested.children["meter"].children.keys() == {"parent", "children"}
    dotted = parse_query([("populate[0]", "meter.parent"), ("populate[1]", "meter.children")]).populate
    assert dotted.children["meter"].children.keys() == {"parent", "children"}
    assert [k.descending for k in parse_query([("sort", "code:desc,id")]).sort] == [True, False]
    assert StrapiQuery(page_size=25).pagination(150) == {
        "page": 1,
        "pageSize": 25,
        "pageCount": 6,
        "total": 150,
    }
    assert StrapiQuery().pagination(0)["pageCount"] == 0


@pytest.mark.parametrize(
    "pairs",
    [
        [("pagination[page]", "0")],
        [("pagination[pageSize]", "ten")],
        [("sort[0]", "code:sideways")],
    ],
)
def test_bad_pagination_or_sort_is_a_400_validation_error(pairs: list[tuple[str, str]]) -> None:
    with pytest.raises(StrapiValidationError) as caught:
        parse_query(pairs)
    assert caught.value.status == 400
    assert caught.value.name == "ValidationError"


def test_filters_compile_to_bound_parameters_and_unknown_keys_are_refused() -> None:
    compiler = Compiler()
    where = compiler.where(
        METER,
        {"$or": {"0": {"code": {"$eqi": "mtr-1"}}, "1": {"energyResource": {"type": {"$eq": "PROSUMER"}}}}},
        "a",
    )
    assert "exists (select 1 from" in where
    assert compiler.params == ["mtr-1", "prosumer"]  # values travel bound; enums mapped to gridsim's
    with pytest.raises(StrapiValidationError, match="Invalid key nope"):
        Compiler().where(METER, {"nope": {"$eq": "1"}}, "a")
    with pytest.raises(StrapiValidationError, match="Invalid value"):
        Compiler().where(METER, {"id": {"$eq": "x"}}, "a")
    with pytest.raises(StrapiValidationError, match=r"Invalid key parent\.nope"):
        Compiler().order_by(METER, parse_query([("sort", "parent.nope")]).sort, "a")


def test_enums_accept_the_server_spellings_and_map_the_typings_variants() -> None:
    assert [meter_type_from_we(t) for t in ("ONE-PH", "THREE-PH", "SMART", "NETMETER")] == [
        "1-Ph",
        "3-Ph",
        "Smart",
        "net-meter",
    ]
    assert meter_type_from_we("CONVENTIONAL") == "1-Ph"
    assert meter_type_from_we("ANALOG") is None
    assert [er_type_from_we(t) for t in ("CONSUMER", "PROSUMER", "PRODUCER", "x")] == [
        "consumer",
        "prosumer",
        "prosumer",
        None,
    ]


def test_mapping_spells_fields_as_the_world_engine_did() -> None:
    node = {
        "id": 7,
        "code": "tx-1",
        "name": "Dolores MSS-TX01",
        "city": "San Francisco",
        "state": "CA",
        "latitude": 37.76,
        "longitude": -122.42,
        "pincode": "94110",
        "capacity_kva": 90.0,
        "emergency_service": False,
        "created_at": datetime(2025, 5, 20, 10, tzinfo=UTC),
    }
    transformer = TRANSFORMER.to_we(node)
    assert transformer["latitude"] == "37.76"
    assert transformer["longtitude"] == "-122.42"  # sic, and a string
    assert transformer["max_capacity_KW"] == 90.0
    assert transformer["createdAt"] == "2025-05-20T10:00:00.000Z"
    led = APPLIANCE.to_we(
        {"id": 1, "name": "LED Bulb (10W)", "power_w": 10.0, "base_kwh_per_min": 0.00017, "description": "x"}
    )
    assert led["powerRating"] == 10
    assert led["baseKWh"] == 0.0102  # the 20 May seed's per-hour value


def test_gridsim_errors_become_strapi_errors_with_world_engine_field_names() -> None:
    missing = strapi_error_from(
        NotFoundError("meter 'x' not found", field="meter"), not_found="Meter not found"
    )
    assert (missing.status, missing.name, missing.message) == (404, "NotFoundError", "Meter not found")
    duplicate = strapi_error_from(ConflictError("a meter with code exists", field="meter_id"))
    assert (duplicate.status, duplicate.name, duplicate.message) == (
        400,
        "ValidationError",
        "This attribute must be unique",
    )
    assert duplicate.details["errors"][0]["path"] == ["code"]


def test_stream_health_thresholds_and_row_ids() -> None:
    assert health(70.0) == {"health_status": "Normal", "load_percentage": 70.0, "margin_percentage": 30.0}
    assert health(80 / 90 * 100)["health_status"] == "Warning"
    assert health(85 / 90 * 100)["health_status"] == "Critical"
    assert health(None) == {"health_status": "Normal", "load_percentage": None, "margin_percentage": None}
    first = datetime(2025, 6, 20, tzinfo=UTC)
    assert row_id(first, 5) < row_id(first, 6) < row_id(first + timedelta(minutes=1), 1)


async def test_linking_is_one_command_and_its_errors_speak_world_engine() -> None:
    """The adapter's linking writes on the in-memory bus: one command each, the owner's 404s in the World
    Engine's words (the meter or ER of the link without a path, any other with the route's message)."""
    router: Router[None] = Router()
    received: list[MeterUpdateLinked] = []

    @router.handles(meter_sim.UPDATE_METER_LINKED)
    async def update(body: MeterUpdateLinked, _deps: None) -> Meter:
        received.append(body)
        if body.link_er_id == 404:
            msg = "energy resource 404 not found"
            raise NotFoundError(msg, field="er_id")
        if body.parent_id is not None:
            msg = "no such parent"
            raise NotFoundError(msg, field="parent_id")
        msg = "meter M has child meters"
        raise ConflictError(msg, field="meter_id")

    broker = MemoryBroker()
    async with broker.bus("meter-sim") as owner, broker.bus("gateway") as bus:
        await owner.include(router, None)
        with pytest.raises(StrapiError) as missing_er:
            await links.linking(
                bus,
                meter_sim.UPDATE_METER_LINKED,
                {"meter": 1, "link_er_id": 404},
                not_found="Meter not found",
            )
        assert (missing_er.value.status, missing_er.value.message) == (404, "Energy resource not found")
        assert missing_er.value.details == {}
        with pytest.raises(StrapiError) as missing_parent:
            await links.linking(
                bus, meter_sim.UPDATE_METER_LINKED, {"meter": 1, "parent_id": 9}, not_found="Meter not found"
            )
        assert (missing_parent.value.status, missing_parent.value.message) == (404, "Meter not found")
        assert missing_parent.value.details["errors"][0]["path"] == ["parent"]
        with pytest.raises(StrapiError) as conflict:
            await links.linking(
                bus,
                meter_sim.UPDATE_METER_LINKED,
                {"meter": 1, "link_er_id": None},
                not_found="Meter not found",
            )
        assert (conflict.value.status, conflict.value.name) == (400, "ValidationError")
    # one command per write, and "unlink" (link_er_id sent as null) arrives as sent, not as "unchanged"
    assert len(received) == 3
    assert "link_er_id" in received[2].model_fields_set
    assert received[2].link_er_id is None


# ----------------------------------------------------------------------------------- routes


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """meter-sim and billing running, a gateway client, and a small grid made through gridsim's own API."""
    # Streams tick fast here; their default periods (10 s, 1 s) are the World Engine's.
    periods = {"we_transformer_stream_s": 0.05, "we_dataset_poll_s": 0.05}
    fast = settings.model_copy(update={"gateway": settings.gateway.model_copy(update=periods)})
    async with (
        running(serve_meter_sim, serve_billing, settings=settings),
        gateway_client(create_app(fast)) as c,
    ):
        await _grid(c)
        yield c


async def _grid(client: httpx.AsyncClient) -> None:
    nodes = [
        {
            "code": "pge",
            "name": "Pacific Gas and Electric Company",
            "level": "utility",
            "city": "San Francisco",
        },
        {
            "code": "sf-mission",
            "name": "SF Mission",
            "level": "substation",
            "parent_id": "pge",
            "capacity_kVA": 1000,
        },
        {
            "code": "tx-0",
            "name": "Dolores MSS-TX01",
            "level": "transformer",
            "parent_id": "sf-mission",
            "capacity_kVA": 90,
            "latitude": 37.76,
            "longitude": -122.42,
        },
    ]
    for node in nodes:
        response = await client.post("/admin/grid-node", json=node)
        assert response.status_code == 201, response.text


async def _transformer_id(client: httpx.AsyncClient) -> int:
    node: dict[str, Any] = (await client.get("/admin/grid-node/tx-0")).json()
    return int(node["id"])


async def _meter(client: httpx.AsyncClient, code: str, **extra: Any) -> dict[str, Any]:
    body = {
        "code": code,
        "parent": None,
        "energyResource": None,
        "consumptionLoadFactor": 1,
        "productionLoadFactor": 0,
        "type": "SMART",
        "city": "San Francisco",
        "state": "CA",
        "latitude": 37.7601,
        "longitude": -122.4201,
        "pincode": "94110",
        "transformer": await _transformer_id(client),
        **extra,
    }
    response = await client.post(f"{WE}/meters", json={"data": body})
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()["data"]
    return created


@pytest.mark.integration
async def test_meter_routes(client: httpx.AsyncClient) -> None:
    created = await client.post(
        f"{WE}/meters",
        json={
            "data": {
                "code": "MTR-0000",
                "type": "SMART",
                "latitude": 37.76,
                "longitude": -122.42,
                "pincode": 94110,
            }
        },
    )
    assert created.status_code == 201
    assert created.json()["message"] == "Meter created successfully"
    meter = created.json()["data"]
    assert set(meter) >= METER_FIELDS
    assert (meter["type"], meter["consumptionLoadFactor"], meter["pincode"]) == ("SMART", 1.0, "94110")
    assert meter["max_capacity_KW"] is None
    assert meter["dfp_subscription_id"] is None
    child = await _meter(client, "MTR-0001", parent=meter["id"], type="THREE-PH")
    assert child["type"] == "THREE-PH"

    assert_strapi_error(
        await client.post(f"{WE}/meters", json={"data": {"code": "mtr-0000"}}),
        400,
        "ValidationError",
        "This attribute must be unique",
    )
    bad_type = await client.post(f"{WE}/meters", json={"data": {"code": "X1", "type": "ANALOG"}})
    assert_strapi_error(bad_type, 400, "ValidationError")
    assert bad_type.json()["error"]["details"]["errors"][0]["path"] == ["type"]

    usual = (
        "pagination[page]=1&pagination[pageSize]=100&populate[0]=parent&populate[1]=energyResource"
        "&populate[2]=children&populate[3]=appliances&sort[0]=children.code:desc"
    )
    listed = await client.get(f"{WE}/meters?{usual}")
    assert listed.status_code == 200
    assert listed.json()["message"] == "Meters fetched successfully"
    page = listed.json()["data"]
    assert page["pagination"] == {"page": 1, "pageSize": 100, "pageCount": 1, "total": 2}
    first, second = page["results"]
    assert first["code"] == "MTR-0000"  # the meter with children sorts first on children.code:desc
    assert [c["code"] for c in first["children"]] == ["MTR-0001"]
    assert second["parent"]["code"] == "MTR-0000"
    assert first["energyResource"] is None
    assert "appliances" not in first  # unknown populate keys are ignored
    filtered = (await client.get(f"{WE}/meters?filters[code][$eq]=MTR-0001")).json()["data"]
    assert [m["code"] for m in filtered["results"]] == ["MTR-0001"]
    assert_strapi_error(await client.get(f"{WE}/meters?filters[nope][$eq]=1"), 400, "ValidationError")
    small = (await client.get(f"{WE}/meters?pagination[pageSize]=1&pagination[page]=2&sort=code")).json()
    assert small["data"]["pagination"] == {"page": 2, "pageSize": 1, "pageCount": 2, "total": 2}
    assert [m["code"] for m in small["data"]["results"]] == ["MTR-0001"]

    one = await client.get(f"{WE}/meters/{meter['id']}?populate[0]=transformer&populate[1]=user")
    assert one.json()["message"] == "Meter fetched successfully"
    assert one.json()["data"]["transformer"]["name"] == "Dolores MSS-TX01"
    assert one.json()["data"]["user"] is None
    assert_strapi_error(await client.get(f"{WE}/meters/999999"), 404, "NotFoundError", "Meter not found")
    assert_strapi_error(await client.get(f"{WE}/meters/abc"), 404, "NotFoundError", "Meter not found")

    patch = f"{WE}/meters/{child['id']}"
    assert_strapi_error(
        await client.patch(patch, json={"data": {"parent": child["id"]}}),
        400,
        "BadRequestError",
        "Cannot set meter as its own parent",
    )
    assert_strapi_error(
        await client.patch(patch, json={"data": {"parent": 999999}}),
        404,
        "NotFoundError",
        "Parent meter not found",
    )
    assert_strapi_error(
        await client.patch(patch, json={"data": {"energyResource": 999999}}),
        404,
        "NotFoundError",
        "Energy resource not found",
    )
    assert_strapi_error(
        await client.patch(f"{WE}/meters/999999", json={"data": {"city": "Oakland"}}), 404, "NotFoundError"
    )
    updated = await client.patch(patch, json={"data": {"consumptionLoadFactor": 0.5, "city": "Oakland"}})
    assert updated.json()["message"] == "Meter updated successfully"
    assert updated.json()["data"]["consumptionLoadFactor"] == 0.5
    assert updated.json()["data"]["parent"]["id"] == meter["id"]
    assert {"parent", "energyResource", "children"} <= set(updated.json()["data"])

    control = await client.post(
        f"{WE}/meters/control", json={"parent_meter_id": "MTR-0000", "load_factor": 0.8, "log_type": "BOTH"}
    )
    assert control.json()["message"] == "Meters updated successfully"
    assert control.json()["meta"] == {"count": 1}
    assert control.json()["data"][0]["consumptionLoadFactor"] == 0.8
    assert control.json()["data"][0]["productionLoadFactor"] == 0.8
    assert_strapi_error(
        await client.post(f"{WE}/meters/control", json={"load_factor": 1.5, "log_type": "CONSUMER"}),
        400,
        "ValidationError",
    )
    assert_strapi_error(
        await client.post(
            f"{WE}/meters/control", json={"meter_id": "NOPE", "load_factor": 0.5, "log_type": "BOTH"}
        ),
        404,
        "NotFoundError",
        "No meters found matching the criteria",
    )

    subscribed = await client.put(
        f"{WE}/meters/add-subscription",
        json={"Meter_id": str(child["id"]), "Subscription_order_id": "order-42"},
    )
    assert subscribed.status_code == 200
    assert subscribed.json()["data"]["dfp_subscription_id"] == "order-42"
    by_order = (await client.get(f"{WE}/meters/subscription/order-42")).json()
    assert [m["id"] for m in by_order["data"]] == [child["id"]]

    assert_strapi_error(
        await client.delete(f"{WE}/meters/{meter['id']}"), 400, "ValidationError"
    )  # has a child
    deleted = await client.delete(f"{WE}/meters/{child['id']}")
    assert deleted.json() == {"message": "Meter deleted successfully"}
    assert_strapi_error(
        await client.delete(f"{WE}/meters/{child['id']}"), 404, "NotFoundError", "Meter not found"
    )
    assert_strapi_error(await client.get(f"{WE}/no-such-route"), 404, "NotFoundError")


@pytest.mark.integration
async def test_energy_resource_and_der_routes(client: httpx.AsyncClient) -> None:
    meter = await _meter(client, "MTR-0100")
    created = await client.post(
        f"{WE}/energy-resources",
        json={"data": {"name": "William Flores", "type": "CONSUMER", "meter": meter["id"]}},
    )
    assert created.status_code == 201
    assert created.json()["message"] == "Energy resource created successfully"
    er = created.json()["data"]
    assert set(er) >= ER_FIELDS
    assert er["type"] == "CONSUMER"
    assert_strapi_error(
        await client.post(f"{WE}/energy-resources", json={"data": {"name": "x", "type": "BUSINESS"}}),
        400,
        "ValidationError",
    )
    assert_strapi_error(
        await client.post(f"{WE}/energy-resources", json={"data": {"name": "x", "meter": 999999}}),
        404,
        "NotFoundError",
        "Meter not found",
    )
    typings = await client.post(f"{WE}/energy-resources", json={"data": {"name": "Sun", "type": "PRODUCER"}})
    assert typings.json()["data"]["type"] == "PROSUMER"

    listed = (await client.get(f"{WE}/energy-resources?sort[0]=createdAt:desc&populate[0]=meter")).json()
    assert listed["message"] == "Energy resources fetched successfully"
    assert listed["data"]["pagination"]["total"] == 2
    flores = next(e for e in listed["data"]["results"] if e["id"] == er["id"])
    assert flores["meter"]["code"] == "MTR-0100"
    one = await client.get(
        f"{WE}/energy-resources/{er['id']}?populate[0]=meter.parent&populate[1]=meter.children"
    )
    assert one.json()["message"] == "Energy resource fetched successfully"
    assert one.json()["data"]["meter"]["parent"] is None
    assert one.json()["data"]["meter"]["children"] == []
    assert_strapi_error(
        await client.get(f"{WE}/energy-resources/999999"), 404, "NotFoundError", "Energy resource not found"
    )
    renamed = await client.patch(f"{WE}/energy-resources/{er['id']}", json={"data": {"name": "W. Flores"}})
    assert renamed.json()["message"] == "Energy resource updated successfully"
    assert renamed.json()["data"]["name"] == "W. Flores"
    assert renamed.json()["data"]["meter"]["children"] == []

    der = await client.post(
        f"{WE}/der", json={"energy_resource": er["id"], "appliance": 4, "switched_on": True}
    )
    assert der.status_code == 200
    raw = der.json()
    assert set(raw) >= DER_FIELDS
    assert "message" not in raw
    assert raw["switched_on"] is False  # new DERs start off; switched_on in the body is ignored
    assert_strapi_error(
        await client.post(f"{WE}/der", json={"energy_resource": 999999, "appliance": 4}),
        400,
        "BadRequestError",
        "Energy resource not found",
    )
    assert_strapi_error(await client.post(f"{WE}/der", json={"appliance": 4}), 400, "BadRequestError")

    on = await client.post(
        f"{WE}/toggle-der/{er['id']}", json={"der_id": str(raw["id"]), "switched_on": True}
    )
    assert on.json()["message"] == "DER switched on successfully"
    assert on.json()["data"]["switched_on"] is True
    again = await client.post(f"{WE}/toggle-der/{er['id']}", json={"der_id": raw["id"], "switched_on": True})
    assert again.json()["data"]["switched_on"] is True  # sets, does not flip
    flipped = await client.post(f"{WE}/toggle-der/{raw['id']}")  # no body: the path is the DER, flipped
    assert flipped.json()["message"] == "DER switched off successfully"
    assert_strapi_error(
        await client.post(f"{WE}/toggle-der/{er['id']}", json={"der_id": 999999, "switched_on": True}),
        400,
        "BadRequestError",
        "DER not found",
    )
    other = typings.json()["data"]["id"]
    assert_strapi_error(
        await client.post(f"{WE}/toggle-der/{other}", json={"der_id": raw["id"], "switched_on": True}),
        400,
        "BadRequestError",
        "DER does not belong to this Energy Resource",
    )

    ders = (await client.get(f"{WE}/der/{meter['id']}")).json()
    assert isinstance(ders, list)
    assert ders[0]["appliance"]["name"] == "Refrigerator"
    assert ders[0]["appliance"]["powerRating"] == 200
    assert (await client.put(f"{WE}/ders/switch-on", json={"der_ids": [raw["id"], 999999]})).json() == {
        "count": 1
    }
    assert (await client.put(f"{WE}/ders/switch-off", json={"der_ids": [raw["id"]]})).json() == {"count": 1}
    assert_strapi_error(await client.put(f"{WE}/ders/switch-off", json={}), 400, "ValidationError")

    populated = (await client.get(f"{WE}/energy-resources/{er['id']}?populate[0]=ders.appliance")).json()[
        "data"
    ]
    assert [d["appliance"]["id"] for d in populated["ders"]] == [4]

    deleted = await client.delete(f"{WE}/energy-resources/{er['id']}")
    assert deleted.json() == {"message": "Energy resource deleted successfully"}
    assert_strapi_error(await client.delete(f"{WE}/energy-resources/{er['id']}"), 404, "NotFoundError")
    assert (await client.get(f"{WE}/meters/{meter['id']}?populate[0]=energyResource")).json()["data"][
        "energyResource"
    ] is None


@pytest.mark.integration
async def test_utility_appliance_and_reading_routes(client: httpx.AsyncClient, settings: Settings) -> None:
    meter = await _meter(client, "MTR-0200")
    er = (
        await client.post(f"{WE}/energy-resources", json={"data": {"name": "A", "meter": meter["id"]}})
    ).json()
    await client.post(f"{WE}/der", json={"energy_resource": er["data"]["id"], "appliance": 8})

    detailed = await client.get(f"{WE}/utility/detailed?populate=*&q=x")
    assert detailed.status_code == 200
    body = detailed.json()
    assert set(body) == {"utilities"}  # no message/data wrapper
    utility = body["utilities"][0]
    assert utility["name"] == "Pacific Gas and Electric Company"
    assert {"latitude", "longtitude", "pincode"} <= set(utility)
    transformer = utility["substations"][0]["transformers"][0]
    assert (transformer["max_capacity_KW"], transformer["emergency_service"]) == (90.0, False)
    assert isinstance(transformer["latitude"], str)
    detailed_meter = transformer["meters"][0]
    assert {"parent", "children", "transformer", "user"}.isdisjoint(detailed_meter)
    assert detailed_meter["energyResource"]["ders"][0]["appliance"]["name"] == "Air Conditioner (1.5 Ton)"

    catalogue = (await client.get(f"{WE}/appliance")).json()
    assert set(catalogue) == {"appliances"}
    assert [a["name"] for a in catalogue["appliances"][:12]] == [
        "LED Bulb (10W)",
        "Ceiling Fan",
        "Television (LED)",
        "Refrigerator",
        "Laptop Charger",
        "Microwave Oven",
        "Washing Machine",
        "Air Conditioner (1.5 Ton)",
        "Room Heater",
        "Electric Geyser",
        "Water Pump",
        "Solar Panel (production)",
    ]
    assert {"id", "name", "powerRating", "baseKWh", "description"} <= set(catalogue["appliances"][0])

    empty = await client.get(f"{WE}/meter-datasets/{meter['id']}")
    assert empty.json() == {"message": "Meter Dataset fetched successfully", "data": []}
    # Readings and rollups as the aggregator stores them (this test checks the read side's shape).
    start = datetime(2025, 6, 20, 12, tzinfo=UTC)
    tx = await _transformer_id(client)
    async with open_pool(settings.db) as pool, pool.connection() as conn:
        for minute in range(3):
            await conn.execute(
                "insert into meter_data (ts, meter_id, consumption_kwh, production_kwh, consumption_kvah,"
                " avg_current, avg_voltage, reactive_power_kvar, power_factor)"
                " values (%s, %s, %s, null, %s, 6.5, 239.5, 0.01, 0.9)",
                (start + timedelta(minutes=minute), meter["id"], 0.025 + minute, 0.0278 + minute),
            )
            await conn.execute(
                "insert into grid_rollups (ts, node_id, level, consumption_kwh, production_kwh, consumption_kvah,"
                " production_kvah, kvarh, apparent_kva, capacity_kva, loading_pct, meters_expected,"
                " meters_reporting) values (%s, %s, 'transformer', 1, 0, 1.1, 0, 0.1, %s, 90, %s, 1, 1)",
                (start + timedelta(minutes=minute), tx, 60.0 + minute * 10, (60.0 + minute * 10) / 0.9),
            )
        await conn.commit()

    rows = (await client.get(f"{WE}/meter-datasets/{meter['id']}")).json()["data"]
    assert [r["consumptionKWh"] for r in rows] == [0.025, 1.025, 2.025]  # ascending
    assert set(rows[0]) >= DATASET_FIELDS
    assert rows[0]["productionKWh"] == 0.0
    assert rows[0]["timestamp"] == "2025-06-20T12:00:00.000Z"
    assert [r["id"] for r in rows] == sorted(r["id"] for r in rows)
    everything = (await client.get(f"{WE}/meter-datasets")).json()
    assert everything["message"] == "Meter Datasets fetched successfully"
    assert everything["data"][0]["meter"]["code"] == "MTR-0200"
    paged = (await client.get(f"{WE}/meter-datasets/{meter['id']}?pagination[pageSize]=1")).json()["data"]
    assert [r["consumptionKWh"] for r in paged] == [2.025]  # the latest

    loads = (await client.get(f"{WE}/grid-loads")).json()
    assert loads["message"] == "Grid Loads fetched successfully"
    assert [row["current_transformer_load"] for row in loads["data"]] == [80.0, 70.0, 60.0]  # newest first
    assert loads["data"][0]["transformer"]["substation"]["name"] == "SF Mission"
    assert {"id", "current_transformer_load", "timestamp", "transformer"} | TIMESTAMPS <= set(
        loads["data"][0]
    )

    streamed = await client.get(f"{WE}/transformer-load-streamed/{tx}?lines=2")
    assert streamed.headers["content-type"].startswith("application/json")
    assert streamed.headers["access-control-allow-origin"] == "*"
    lines = streamed.text.splitlines()
    assert len(lines) == 2
    latest = json.loads(lines[0])
    assert isinstance(latest, list)
    assert len(latest) == 1
    assert latest[0]["current_transformer_load"] == 80.0
    assert (latest[0]["health_status"], latest[0]["load_percentage"], latest[0]["margin_percentage"]) == (
        "Warning",
        88.89,
        11.11,
    )
    assert json.loads(lines[1]) == latest  # nothing new: the last row again
    dataset_stream = await client.get(f"{WE}/meter-dataset-streamed/{meter['id']}?lines=1")
    assert json.loads(dataset_stream.text.splitlines()[0])[0]["consumptionKWh"] == 2.025
    assert_strapi_error(await client.get(f"{WE}/meter-dataset-streamed/999999?lines=1"), 404, "NotFoundError")


@pytest.mark.integration
async def test_p2p_trade_routes(client: httpx.AsyncClient) -> None:
    seller = await _meter(client, "METER002")
    buyer = await _meter(client, "METER003")
    for name, kind, meter in (("Seller", "PROSUMER", seller), ("Buyer", "CONSUMER", buyer)):
        er = {"data": {"name": name, "type": kind, "meter": meter["id"]}}
        assert (await client.post(f"{WE}/energy-resources", json=er)).status_code == 201
    body = {
        "buyer_meter_id": "METER003",
        "seller_meter_id": "METER002",
        "units_kWh": 0.72,
        "price_per_kWh": 8,
    }
    created = await client.post(f"{WE}/p2p-trades", json={"data": body})
    assert created.status_code == 201, created.text
    assert created.json()["message"] == "P2P Trade created successfully"
    trade = created.json()["data"]
    assert {"id", "buyer_meter_id", "seller_meter_id", "units_kWh", "price_per_kWh"} | TIMESTAMPS <= set(
        trade
    )
    assert (trade["buyer_meter_id"], trade["units_kWh"], trade["price_per_kWh"]) == ("METER003", 0.72, 8.0)
    too_much = await client.post(f"{WE}/p2p-trades", json={"data": {**body, "units_kWh": 5}})
    assert_strapi_error(too_much, 400, "ValidationError")
    assert "units_kWh must be between 0.1 and 1" in too_much.json()["error"]["message"]
    unknown = await client.post(f"{WE}/p2p-trades", json={"data": {**body, "buyer_meter_id": "NOPE"}})
    assert_strapi_error(unknown, 404, "NotFoundError")

    listed = (await client.get(f"{WE}/p2p-trades?sort[0]=createdAt:desc&pagination[page]=1")).json()
    assert listed["message"] == "P2P Trades fetched successfully"
    assert listed["data"]["pagination"]["total"] == 1
    by_buyer = (await client.get(f"{WE}/p2p-trades?filters[buyer_meter_id][$eq]=METER002")).json()
    assert by_buyer["data"]["results"] == []
    one = await client.get(f"{WE}/p2p-trades/{trade['id']}")
    assert one.json() == {"message": "P2P Trade fetched successfully", "data": trade}
    assert_strapi_error(
        await client.get(f"{WE}/p2p-trades/nope"), 404, "NotFoundError", "P2P Trade not found"
    )


@pytest.mark.integration
async def test_reset_needs_the_key_and_reloads_the_world(settings: Settings, tmp_path: Path) -> None:
    keyed = with_tiny_world(settings, tmp_path)
    keyed = keyed.model_copy(update={"gateway": settings.gateway.model_copy(update={"api_keys": ["k1"]})})
    async with running(serve_meter_sim, settings=keyed), gateway_client(create_app(keyed)) as client:
        client.headers["X-API-Key"] = "k1"
        await _grid(client)  # the world before the reset, made through gridsim's own API
        await _meter(client, "OLD-1")
        del client.headers["X-API-Key"]
        assert_strapi_error(await client.put(f"{WE}/utility/reset"), 401, "UnauthorizedError")
        assert_strapi_error(
            await client.post(f"{WE}/meters", json={"data": {"code": "Z"}}), 401, "UnauthorizedError"
        )
        reset = await client.put(f"{WE}/utility/reset", headers={"X-API-Key": "k1"})
        assert reset.status_code == 200
        assert reset.json() == {"message": "Utility reset successfully", "result": [None]}
        utilities = (await client.get(f"{WE}/utility/detailed")).json()["utilities"]
        assert [u["name"] for u in utilities] == ["Utility"]
        meters = utilities[0]["substations"][0]["transformers"][0]["meters"]
        assert [m["code"] for m in meters] == ["M1"]
        assert len(meters[0]["energyResource"]["ders"]) == 2


@pytest.mark.integration
async def test_overload_webhook_posts_the_world_engine_body(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    posted: list[dict[str, Any]] = []

    def receive(request: httpx.Request) -> httpx.Response:
        posted.append(json.loads(request.content))
        return httpx.Response(200)

    tx = await _transformer_id(client)
    async with (
        open_pool(settings.db) as pool,
        httpx.AsyncClient(transport=httpx.MockTransport(receive)) as http,
    ):
        hook = OverloadWebhook("http://agent.test/grid-alerts/transformer-stress", 0.9, pool, http)

        def rollup(kva: float) -> Rollup:
            return Rollup(
                level="transformer",
                node_id=tx,
                node_code="tx-0",
                timestamp=datetime(2025, 6, 20, 18, tzinfo=UTC),
                consumption_kWh=kva / 60,
                production_kWh=0,
                net_kWh=kva / 60,
                apparent_kVA=kva,
                capacity_kVA=90,
                loading_pct=kva / 90 * 100,
                meters_expected=1,
                meters_reporting=1,
            )

        path = TransformerPath("pge", "sf-mission", "tx-0")
        await hook.on_rollup(rollup(80), path)  # 89 %: below the share
        await hook.on_rollup(rollup(85), path)  # 94 %: above
        await hook.drain()
    assert len(posted) == 1
    assert posted[0]["totalBaseKWh"] == 85
    assert posted[0]["transformer"]["name"] == "Dolores MSS-TX01"
    assert posted[0]["transformer"]["max_capacity_KW"] == 90.0
    assert posted[0]["transformer"]["substation"]["name"] == "SF Mission"
    assert posted[0]["timestamp"] == iso(datetime(2025, 6, 20, 18, tzinfo=UTC))
