"""Issue 3's entity API end to end: HTTP through the gateway app, MQTT request/reply to meter-sim's real
``serve``, PostgreSQL. Every route, and every 4xx path (404 unknown id, 409 conflict, 422 naming the field).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from gridsim_gateway.main import create_app
from gridsim_meter_sim.__main__ import serve
from gridsim_shared.settings import Settings
from gridsim_shared.testing import gateway_client, running

pytestmark = pytest.mark.integration

SEED_METER = {
    "meter_id": "MT30125",
    "parent_id": None,
    "load_factor": 1.0,
    "meter_type": "1-Ph",
    "city": "Mumbai",
    "state": "Maharashtra",
    "latitude": 19.0760,
    "longitude": 72.8777,
    "pincode": "227409",
}


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway in-process, with meter-sim serving its commands."""
    async with running(serve, settings=settings), gateway_client(create_app(settings)) as client:
        yield client


def error(response: httpx.Response, status: int, field: str | None = None) -> dict[str, Any]:
    """Assert an error response's status (and field); return its error body."""
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()["error"]
    assert body["status"] == status
    if field is not None:
        assert body["field"] == field, body
    return body


async def ok(response: Any, status: int = 200) -> dict[str, Any]:
    """Await a request and assert its status; return the JSON body."""
    result: httpx.Response = await response
    assert result.status_code == status, result.text
    body: dict[str, Any] = result.json()
    return body


async def make_grid(api: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    """A utility, a feeder (sent as a substation) and two transformers ~1.5 km apart."""
    utility = await ok(api.post("/admin/grid-node", json={"name": "Test Utility", "level": "utility"}), 201)
    feeder = await ok(
        api.post(
            "/admin/grid-node",
            json={"name": "SF Mission", "level": "substation", "parent_id": "test-utility"},
        ),
        201,
    )
    tx1 = await ok(
        api.post(
            "/admin/grid-node",
            json={
                "code": "tx-1",
                "name": "Dolores TX-01",
                "level": "transformer",
                "parent_id": feeder["id"],
                "capacity_kVA": 50,
                "latitude": 37.7612,
                "longitude": -122.4262,
            },
        ),
        201,
    )
    tx2 = await ok(
        api.post(
            "/admin/grid-node",
            json={
                "code": "tx-2",
                "name": "Bernal TX-05",
                "level": "transformer",
                "parent_id": "sf-mission",
                "capacity_kVA": 37.5,
                "latitude": 37.7410,
                "longitude": -122.4160,
            },
        ),
        201,
    )
    return {"utility": utility, "feeder": feeder, "tx1": tx1, "tx2": tx2}


# --------------------------------------------------------------------------------------- appliances


async def test_appliance_catalogue(api: httpx.AsyncClient) -> None:
    catalogue = await ok(api.get("/admin/appliances"))
    by_name = {a["name"]: a for a in catalogue}
    assert len(catalogue) >= 13
    assert by_name["Air Conditioner (1.5 Ton)"]["base_kwh_per_min"] == 0.025
    assert by_name["Solar Panel (production)"]["role"] == "production"
    assert "EV Charger (7.2 kW)" in by_name
    assert "AC" in by_name["Air Conditioner (1.5 Ton)"]["aliases"]


# ---------------------------------------------------------------------------------- energy resources


async def test_er_create_with_seed_body_aliases_and_counts(api: httpx.AsyncClient) -> None:
    seed = await ok(
        api.post(
            "/admin/er",
            json={"name": "Viraj's Home", "type": "prosumer", "appliance_type": ["Refrigerator", "Oven"]},
        ),
        201,
    )
    assert seed["type"] == "prosumer"
    assert seed["kind"] == "home"
    assert sorted(seed["appliance_type"]) == ["Microwave Oven", "Refrigerator"]
    assert seed["created_at"]

    body = {
        "name": "Flores residence",
        "type": "PROSUMER",  # the World Engine's capitals are accepted
        "kind": "apartment complex",
        "appliance_type": ["AC", "Television", "Solar Panel", "fan"],
        "appliances": [{"name": "Ceiling Fan", "count": 2}, {"name": "EV Charger"}],
    }
    er = await ok(api.post("/admin/er", json=body), 201)
    counts = {a["name"]: a["count"] for a in er["appliances"]}
    assert counts == {
        "Air Conditioner (1.5 Ton)": 1,
        "Television (LED)": 1,
        "Solar Panel (production)": 1,
        "Ceiling Fan": 3,  # one by name, two by count
        "EV Charger (7.2 kW)": 1,
    }
    assert er["kind"] == "apartment_complex"
    assert er["production_kwh_per_min"] == pytest.approx(0.02)
    assert er["base_kwh_per_min"] == pytest.approx(0.025 + 0.002 + 3 * 0.00125 + 0.12)


async def test_er_unknown_appliance_lists_the_known_ones(api: httpx.AsyncClient) -> None:
    response = await api.post(
        "/admin/er", json={"name": "x", "type": "consumer", "appliance_type": ["Fridge", "Toaster"]}
    )
    body = error(response, 422, "appliance_type.1")
    assert "Toaster" in body["message"]
    assert "Refrigerator" in body["message"]
    assert "Air Conditioner (1.5 Ton)" in body["details"]["known"]
    assert body["details"]["aliases"]["AC"] == "Air Conditioner (1.5 Ton)"
    response = await api.post(
        "/admin/er", json={"name": "x", "type": "consumer", "appliances": [{"name": "Flux Capacitor"}]}
    )
    error(response, 422, "appliances.0.name")
    assert await ok(api.get("/admin/er")) == []  # nothing half-written


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"type": "consumer"}, "name"),
        ({"name": "", "type": "consumer"}, "name"),
        ({"name": "x", "type": "producer"}, "type"),
        ({"name": "x", "type": "consumer", "kind": "castle"}, "kind"),
        ({"name": "x", "type": "consumer", "profile": "wild"}, "profile"),
        ({"name": "x", "type": "consumer", "latitude": 91, "longitude": 0}, "latitude"),
        ({"name": "x", "type": "consumer", "latitude": 10, "longitude": -181}, "longitude"),
        ({"name": "x", "type": "consumer", "latitude": 10}, "longitude"),
        (
            {"name": "x", "type": "consumer", "appliances": [{"name": "Fan", "count": 0}]},
            "appliances.0.count",
        ),
        ({"name": "x", "type": "consumer", "colour": "red"}, "colour"),
    ],
)
async def test_er_validation(api: httpx.AsyncClient, body: dict[str, Any], field: str) -> None:
    error(await api.post("/admin/er", json=body), 422, field)


async def test_er_malformed_json_is_422(api: httpx.AsyncClient) -> None:
    response = await api.post("/admin/er", content=b"{not json", headers={"content-type": "application/json"})
    error(response, 422)


async def test_er_get_list_replace_patch_delete(api: httpx.AsyncClient) -> None:
    er = await ok(
        api.post(
            "/admin/er",
            json={"name": "Viraj's Home", "type": "consumer", "appliance_type": ["Refrigerator", "Oven"]},
        ),
        201,
    )
    path = f"/admin/er/{er['id']}"
    assert (await ok(api.get(path)))["name"] == "Viraj's Home"
    assert [e["id"] for e in await ok(api.get("/admin/er"))] == [er["id"]]

    # The seed's UPDATE: the appliance list replaces the old one.
    replaced = await ok(
        api.put(
            path,
            json={
                "name": "Viraj's Home",
                "type": "prosumer",
                "appliance_type": ["Refrigerator", "Oven", "Solar Panel"],
            },
        )
    )
    assert sorted(replaced["appliance_type"]) == [
        "Microwave Oven",
        "Refrigerator",
        "Solar Panel (production)",
    ]
    assert replaced["type"] == "prosumer"

    renamed = await ok(api.patch(path, json={"name": "Viraj's Flat", "city": "Pune"}))
    assert renamed["name"] == "Viraj's Flat"
    assert renamed["city"] == "Pune"
    assert len(renamed["appliances"]) == 3  # untouched by a PATCH without an appliance list
    fewer = await ok(api.patch(path, json={"appliances": [{"name": "Fan", "count": 3}]}))
    assert [(a["name"], a["count"]) for a in fewer["appliances"]] == [("Ceiling Fan", 3)]

    error(await api.patch(path, json={"name": None}), 422, "name")
    error(await api.patch(path, json={"appliance_type": ["Toaster"]}), 422, "appliance_type.0")
    error(await api.put(path, json={"name": "no type"}), 422, "type")
    assert (await ok(api.get(path)))["name"] == "Viraj's Flat"

    deleted = await ok(api.delete(path))
    assert deleted["id"] == er["id"]
    error(await api.get(path), 404, "er_id")


async def test_er_unknown_ids(api: httpx.AsyncClient) -> None:
    for method in ("get", "delete"):
        error(await api.request(method, "/admin/er/999"), 404, "er_id")
    error(await api.put("/admin/er/999", json={"name": "x", "type": "consumer"}), 404, "er_id")
    error(await api.patch("/admin/er/999", json={"name": "x"}), 404, "er_id")
    error(await api.get("/admin/er/99999999999999999999999"), 404, "er_id")
    error(await api.get("/admin/er/abc"), 422, "er_id")


# ------------------------------------------------------------------------------------------- meters


async def test_meter_create_with_seed_body_goes_to_unassigned(api: httpx.AsyncClient) -> None:
    meter = await ok(api.post("/admin/meter", json=SEED_METER), 201)
    assert meter["meter_id"] == "MT30125"
    assert meter["load_factor_consumption"] == 1.0
    assert meter["load_factor_production"] == 0.0
    assert meter["meter_type"] == "1-Ph"
    assert meter["transformer_code"] == "unassigned-transformer"
    tree = await ok(api.get("/grid"))
    assert [u["code"] for u in tree["utilities"]] == ["unassigned"]
    assert tree["utilities"][0]["children"][0]["children"][0]["meters"][0]["meter_id"] == "MT30125"


async def test_meter_nearest_transformer_and_parents_transformer(api: httpx.AsyncClient) -> None:
    grid = await make_grid(api)
    near_tx2 = await ok(
        api.post("/admin/meter", json={"meter_id": "M-1", "latitude": 37.7420, "longitude": -122.4170}), 201
    )
    assert near_tx2["transformer_id"] == grid["tx2"]["id"]
    near_tx1 = await ok(
        api.post("/admin/meter", json={"meter_id": "M-2", "latitude": 37.7600, "longitude": -122.4250}), 201
    )
    assert near_tx1["transformer_code"] == "tx-1"
    nowhere = await ok(api.post("/admin/meter", json={"meter_id": "M-3"}), 201)
    assert nowhere["transformer_code"] == "unassigned-transformer"
    explicit = await ok(api.post("/admin/meter", json={"meter_id": "M-4", "transformer_id": "tx-1"}), 201)
    assert explicit["transformer_id"] == grid["tx1"]["id"]
    # A child goes under its parent's transformer, whatever its coordinates say.
    child = await ok(
        api.post(
            "/admin/meter",
            json={"meter_id": "M-5", "parent_id": "m-1", "latitude": 37.7612, "longitude": -122.4262},
        ),
        201,
    )
    assert child["transformer_id"] == grid["tx2"]["id"]
    assert child["parent_id"] == near_tx2["id"]
    error(
        await api.post(
            "/admin/meter", json={"meter_id": "M-6", "parent_id": "M-1", "transformer_id": "tx-1"}
        ),
        422,
        "transformer_id",
    )
    error(
        await api.post("/admin/meter", json={"meter_id": "M-6", "transformer_id": "sf-mission"}),
        422,
        "transformer_id",
    )
    error(
        await api.post("/admin/meter", json={"meter_id": "M-6", "transformer_id": "tx-404"}),
        404,
        "transformer_id",
    )

    tree = await ok(api.get("/grid"))
    pge = next(u for u in tree["utilities"] if u["code"] == "test-utility")
    tx2 = next(t for t in pge["children"][0]["children"] if t["code"] == "tx-2")
    assert [(m["meter_id"], [c["meter_id"] for c in m["children"]]) for m in tx2["meters"]] == [
        ("M-1", ["M-5"])
    ]
    assert tree["transformers"] == 3  # tx-1, tx-2 and the unassigned one
    assert tree["meters"] == 5
    no_meters = await ok(api.get("/grid", params={"meters": "false"}))
    assert all(not t["meters"] for u in no_meters["utilities"] for f in u["children"] for t in f["children"])

    listed = await ok(api.get("/admin/meter", params={"transformer_id": "tx-2"}))
    assert [m["meter_id"] for m in listed] == ["M-1", "M-5"]
    children = await ok(api.get("/admin/meter", params={"parent_id": str(near_tx2["id"])}))
    assert [m["meter_id"] for m in children] == ["M-5"]
    error(await api.get("/admin/meter", params={"transformer_id": "tx-404"}), 404, "transformer_id")
    error(await api.get("/admin/meter", params={"parent_id": "nope"}), 404, "parent_id")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"meter_id": "bad code!"}, "meter_id"),
        ({"meter_id": "x" * 33}, "meter_id"),
        ({"latitude": 90.5}, "latitude"),
        ({"longitude": -200, "latitude": 0}, "longitude"),
        ({"latitude": 37.7, "longitude": None}, "longitude"),
        ({"load_factor": -0.1}, "load_factor"),
        ({"load_factor_production": -1}, "load_factor_production"),
        ({"load_factor_consumption": 1e9}, "load_factor_consumption"),
        ({"load_factor": 1, "load_factor_consumption": 2}, "load_factor_consumption"),
        ({"meter_type": "2-Ph"}, "meter_type"),
        ({"pincode": "!!"}, "pincode"),
        ({"serial": "x"}, "serial"),
    ],
)
async def test_meter_validation(api: httpx.AsyncClient, change: dict[str, Any], field: str) -> None:
    error(await api.post("/admin/meter", json=SEED_METER | change), 422, field)


async def test_meter_duplicate_code_is_409_ignoring_case(api: httpx.AsyncClient) -> None:
    await ok(api.post("/admin/meter", json=SEED_METER), 201)
    error(await api.post("/admin/meter", json=SEED_METER | {"meter_id": "mt30125"}), 409, "meter_id")
    other = await ok(api.post("/admin/meter", json=SEED_METER | {"meter_id": "MT2"}), 201)
    error(await api.patch(f"/admin/meter/{other['id']}", json={"meter_id": "MT30125"}), 409, "meter_id")
    renamed = await ok(api.patch("/admin/meter/MT2", json={"meter_id": "MT3"}))
    assert renamed["meter_id"] == "MT3"


async def test_meter_referenced_by_id_or_code(api: httpx.AsyncClient) -> None:
    meter = await ok(api.post("/admin/meter", json=SEED_METER), 201)
    by_id = await ok(api.get(f"/admin/meter/{meter['id']}"))
    by_code = await ok(api.get("/admin/meter/mt30125"))
    assert by_id == by_code
    child = await ok(api.post("/admin/meter", json={"meter_id": "CH-1", "parent_id": meter["id"]}), 201)
    child2 = await ok(api.post("/admin/meter", json={"meter_id": "CH-2", "parent_id": "MT30125"}), 201)
    assert child["parent_id"] == child2["parent_id"] == meter["id"]
    assert (await ok(api.get("/admin/meter/MT30125")))["children"] == [child["id"], child2["id"]]
    # A code of digits: tried as an id first, then as a code.
    digits = await ok(api.post("/admin/meter", json={"meter_id": "30125"}), 201)
    assert (await ok(api.get("/admin/meter/30125")))["id"] == digits["id"]
    error(await api.get("/admin/meter/NOPE"), 404, "meter")
    error(await api.get("/admin/meter/99999"), 404, "meter")
    error(await api.get("/admin/meter/bad%20code"), 422, "meter")
    error(await api.post("/admin/meter", json={"meter_id": "CH-3", "parent_id": "NOPE"}), 404, "parent_id")
    error(await api.post("/admin/meter", json={"meter_id": "CH-3", "parent_id": 424242}), 404, "parent_id")


async def test_meter_update_and_cycles(api: httpx.AsyncClient) -> None:
    grid = await make_grid(api)
    a = await ok(api.post("/admin/meter", json={"meter_id": "A", "transformer_id": "tx-1"}), 201)
    await ok(api.post("/admin/meter", json={"meter_id": "B", "parent_id": "A"}), 201)
    await ok(api.post("/admin/meter", json={"meter_id": "C", "parent_id": "B"}), 201)
    error(await api.patch("/admin/meter/A", json={"parent_id": "C"}), 422, "parent_id")
    error(await api.patch("/admin/meter/A", json={"parent_id": "B"}), 422, "parent_id")
    error(await api.patch("/admin/meter/A", json={"parent_id": "A"}), 422, "parent_id")
    error(await api.patch("/admin/meter/A", json={"parent_id": "ZZZ"}), 404, "parent_id")
    assert (await ok(api.get("/admin/meter/A")))["parent_id"] is None

    # Moving the top of a subtree moves the whole subtree to the new transformer.
    moved = await ok(api.patch("/admin/meter/A", json={"transformer_id": "tx-2", "load_factor": 0.5}))
    assert moved["transformer_id"] == grid["tx2"]["id"]
    assert moved["load_factor_consumption"] == 0.5
    assert (await ok(api.get("/admin/meter/C")))["transformer_id"] == grid["tx2"]["id"]
    error(await api.patch("/admin/meter/C", json={"transformer_id": "tx-1"}), 422, "transformer_id")
    error(await api.patch("/admin/meter/C", json={"transformer_id": "test-utility"}), 422, "transformer_id")
    error(await api.patch("/admin/meter/C", json={"transformer_id": 999}), 404, "transformer_id")

    # Re-parenting C under a meter of another transformer brings it to that transformer.
    await ok(api.post("/admin/meter", json={"meter_id": "D", "transformer_id": "tx-1"}), 201)
    c = await ok(api.patch("/admin/meter/C", json={"parent_id": "D"}))
    assert c["transformer_id"] == grid["tx1"]["id"]
    detached = await ok(api.patch("/admin/meter/C", json={"parent_id": None}))
    assert detached["parent_id"] is None
    assert (await ok(api.put("/admin/meter/C", json={"meter_type": "net-meter"})))[
        "meter_type"
    ] == "net-meter"

    error(
        await api.patch("/admin/meter/A", json={"load_factor_consumption": -1}),
        422,
        "load_factor_consumption",
    )
    error(await api.patch("/admin/meter/A", json={"meter_id": None}), 422, "meter_id")
    error(await api.patch("/admin/meter/A", json={"latitude": 100, "longitude": 0}), 422, "latitude")
    error(await api.patch("/admin/meter/NOPE", json={"load_factor": 1}), 404, "meter")
    assert a["id"] == (await ok(api.get("/admin/meter/A")))["id"]


async def test_meter_delete(api: httpx.AsyncClient) -> None:
    await ok(api.post("/admin/meter", json={"meter_id": "P"}), 201)
    await ok(api.post("/admin/meter", json={"meter_id": "K", "parent_id": "P"}), 201)
    body = error(await api.delete("/admin/meter/P"), 409, "meter")
    assert body["details"]["children"] == ["K"]
    assert (await ok(api.delete("/admin/meter/K")))["message"]
    await ok(api.delete("/admin/meter/P"))
    error(await api.delete("/admin/meter/P"), 404, "meter")
    assert await ok(api.get("/admin/meter")) == []


# -------------------------------------------------------------------------------------------- links


async def test_link_defaults_and_unlink(api: httpx.AsyncClient) -> None:
    prosumer = await ok(
        api.post("/admin/er", json={"name": "Sun", "type": "prosumer", "appliance_type": ["Solar Panel"]}),
        201,
    )
    consumer = await ok(
        api.post("/admin/er", json={"name": "Shade", "type": "consumer", "appliance_type": ["TV"]}), 201
    )
    m1 = await ok(api.post("/admin/meter", json=SEED_METER), 201)
    await ok(api.post("/admin/meter", json=SEED_METER | {"meter_id": "MT2", "load_factor": 0.5}), 201)

    linked = await ok(api.post("/admin/meter/link", json={"meter_id": "MT30125", "er_id": prosumer["id"]}))
    assert (linked["er_id"], linked["load_factor_consumption"], linked["load_factor_production"]) == (
        prosumer["id"],
        1.0,
        1.0,
    )
    assert linked["linked_at"] is not None
    # The seed sends ids as strings; the meter's own K_consumption (0.5) is kept.
    linked2 = await ok(api.post("/admin/meter/link", json={"meter_id": "MT2", "er_id": str(consumer["id"])}))
    assert (linked2["load_factor_consumption"], linked2["load_factor_production"]) == (0.5, 0.0)
    assert (await ok(api.get(f"/admin/er/{prosumer['id']}")))["meter_code"] == "MT30125"

    again = await ok(api.post("/admin/meter/link", json={"meter_id": m1["id"], "er_id": prosumer["id"]}))
    assert again["er_id"] == prosumer["id"]  # linking the same pair again changes nothing
    error(
        await api.post("/admin/meter/link", json={"meter_id": "MT30125", "er_id": consumer["id"]}),
        409,
        "meter_id",
    )
    await ok(api.post("/admin/meter", json={"meter_id": "MT3"}), 201)
    error(
        await api.post("/admin/meter/link", json={"meter_id": "MT3", "er_id": prosumer["id"]}), 409, "er_id"
    )
    error(
        await api.post("/admin/meter/link", json={"meter_id": "NOPE", "er_id": prosumer["id"]}),
        404,
        "meter_id",
    )
    error(await api.post("/admin/meter/link", json={"meter_id": "MT3", "er_id": 999}), 404, "er_id")
    error(await api.post("/admin/meter/link", json={"meter_id": "MT3"}), 422, "er_id")
    error(
        await api.post(
            "/admin/meter/link", json={"meter_id": "MT3", "er_id": 1, "load_factor_production": -1}
        ),
        422,
        "load_factor_production",
    )

    # Explicit factors win over the defaults.
    custom = await api.post(
        "/admin/meter/link", json={"meter_id": "MT3", "er_id": 999, "load_factor_consumption": 2}
    )
    error(custom, 404, "er_id")
    third = await ok(api.post("/admin/er", json={"name": "Third", "type": "prosumer"}), 201)
    custom_ok = await ok(
        api.post(
            "/admin/meter/link",
            json={
                "meter_id": "MT3",
                "er_id": third["id"],
                "load_factor_consumption": 2,
                "load_factor_production": 0.5,
            },
        )
    )
    assert (custom_ok["load_factor_consumption"], custom_ok["load_factor_production"]) == (2.0, 0.5)

    # A linked consumer that becomes a prosumer starts producing.
    await ok(
        api.patch(
            f"/admin/er/{consumer['id']}", json={"type": "prosumer", "appliance_type": ["TV", "Solar Panel"]}
        )
    )
    assert (await ok(api.get("/admin/meter/MT2")))["load_factor_production"] == 1.0

    unlinked = await ok(api.post("/admin/meter/unlink", json={"meter_id": "MT30125"}))
    assert unlinked["er_id"] is None
    assert unlinked["linked_at"] is None
    assert (await ok(api.get(f"/admin/er/{prosumer['id']}")))["meter_id"] is None
    error(await api.post("/admin/meter/unlink", json={"meter_id": "MT30125"}), 409, "meter_id")
    error(
        await api.post("/admin/meter/unlink", json={"meter_id": "MT2", "er_id": prosumer["id"]}), 409, "er_id"
    )
    error(await api.post("/admin/meter/unlink", json={"meter_id": "NOPE"}), 404, "meter_id")
    error(await api.post("/admin/meter/unlink", json={}), 422, "meter_id")

    # Deleting a linked ER unlinks its meter.
    await ok(api.delete(f"/admin/er/{consumer['id']}"))
    assert (await ok(api.get("/admin/meter/MT2")))["er_id"] is None
    linked_only = await ok(api.get("/admin/meter", params={"linked": "true"}))
    assert [m["meter_id"] for m in linked_only] == ["MT3"]


async def test_parent_meters_and_links_exclude_each_other(api: httpx.AsyncClient) -> None:
    er = await ok(api.post("/admin/er", json={"name": "Unit", "type": "consumer"}), 201)
    await ok(api.post("/admin/meter", json={"meter_id": "BUILDING"}), 201)
    await ok(api.post("/admin/meter", json={"meter_id": "UNIT-1", "parent_id": "BUILDING"}), 201)
    error(
        await api.post("/admin/meter/link", json={"meter_id": "BUILDING", "er_id": er["id"]}), 409, "meter_id"
    )
    await ok(api.post("/admin/meter/link", json={"meter_id": "UNIT-1", "er_id": er["id"]}))
    error(
        await api.post("/admin/meter", json={"meter_id": "UNIT-2", "parent_id": "UNIT-1"}), 409, "parent_id"
    )
    await ok(api.post("/admin/meter", json={"meter_id": "OTHER"}), 201)
    error(await api.patch("/admin/meter/OTHER", json={"parent_id": "UNIT-1"}), 409, "parent_id")


# --------------------------------------------------------------------------------------- grid nodes


async def test_grid_nodes(api: httpx.AsyncClient) -> None:
    grid = await make_grid(api)
    assert grid["feeder"]["level"] == "feeder"
    assert grid["feeder"]["code"] == "sf-mission"
    assert grid["tx1"]["capacity_kVA"] == 50
    assert (await ok(api.get("/admin/grid-node/tx-1"))) == (
        await ok(api.get(f"/admin/grid-node/{grid['tx1']['id']}"))
    )
    patched = await ok(
        api.patch("/admin/grid-node/tx-1", json={"capacity_kVA": 75, "name": "Dolores TX-01b"})
    )
    assert (patched["capacity_kVA"], patched["name"]) == (75, "Dolores TX-01b")

    await ok(
        api.post(
            "/admin/grid-node", json={"name": "SF Sunset", "level": "feeder", "parent_id": "test-utility"}
        ),
        201,
    )
    moved = await ok(api.patch("/admin/grid-node/tx-2", json={"parent_id": "sf-sunset"}))
    assert moved["parent_id"] != grid["feeder"]["id"]
    error(await api.patch("/admin/grid-node/tx-2", json={"parent_id": "test-utility"}), 422, "parent_id")
    error(await api.patch("/admin/grid-node/tx-2", json={"capacity_kVA": 0}), 422, "capacity_kVA")
    error(await api.patch("/admin/grid-node/tx-404", json={"name": "x"}), 404, "node")

    await ok(api.post("/admin/meter", json={"meter_id": "M1", "transformer_id": "tx-1"}), 201)
    body = error(await api.delete("/admin/grid-node/tx-1"), 409, "node")
    assert body["details"]["meters"] == ["M1"]
    error(await api.delete("/admin/grid-node/sf-mission"), 409, "node")
    await ok(api.delete("/admin/meter/M1"))
    await ok(api.delete("/admin/grid-node/tx-1"))
    await ok(api.delete("/admin/grid-node/sf-mission"))
    error(await api.delete("/admin/grid-node/sf-mission"), 404, "node")
    error(await api.get("/admin/grid-node/sf-mission"), 404, "node")
    error(await api.get("/admin/grid-node/BAD CODE"), 422, "node")


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"name": "T", "level": "transformer", "parent_id": "feeder-1"}, 422, "capacity_kVA"),
        (
            {"name": "T", "level": "transformer", "parent_id": "feeder-1", "capacity_kVA": 0},
            422,
            "capacity_kVA",
        ),
        (
            {"name": "T", "level": "transformer", "parent_id": "feeder-1", "capacity_kVA": -5},
            422,
            "capacity_kVA",
        ),
        (
            {"name": "T", "level": "transformer", "parent_id": "utility-1", "capacity_kVA": 50},
            422,
            "parent_id",
        ),
        ({"name": "T", "level": "transformer", "capacity_kVA": 50}, 422, "parent_id"),
        ({"name": "T", "level": "transformer", "parent_id": "nope", "capacity_kVA": 50}, 404, "parent_id"),
        ({"name": "F", "level": "feeder"}, 422, "parent_id"),
        ({"name": "U", "level": "utility", "parent_id": "utility-1"}, 422, "parent_id"),
        ({"name": "Utility 1", "level": "utility"}, 409, "name"),
        ({"code": "feeder-1", "name": "Another", "level": "utility"}, 409, "code"),
        ({"code": "Upper", "name": "x", "level": "utility"}, 422, "code"),
        ({"code": "unassigned-2", "name": "x", "level": "utility"}, 422, "code"),
        ({"name": "!!!", "level": "utility"}, 422, "name"),
        ({"name": "x", "level": "region"}, 422, "level"),
        ({"name": "x", "level": "utility", "latitude": -91, "longitude": 0}, 422, "latitude"),
    ],
)
async def test_grid_node_errors(
    api: httpx.AsyncClient, body: dict[str, Any], status: int, field: str
) -> None:
    await ok(api.post("/admin/grid-node", json={"name": "Utility 1", "level": "utility"}), 201)
    await ok(
        api.post("/admin/grid-node", json={"name": "Feeder 1", "level": "feeder", "parent_id": "utility-1"}),
        201,
    )
    error(await api.post("/admin/grid-node", json=body), status, field)
