"""``GET /grid/children`` and ``GET /grid/search`` page and find the grid; ``GET /grid`` refuses a tree too big."""

from __future__ import annotations

from typing import Any

import httpx

from gridsim_gateway.main import create_app
from gridsim_shared.db import connect
from gridsim_shared.settings import Settings
from gridsim_shared.testing import gateway_client


async def _world(settings: Settings) -> None:
    """u1 → f1 (t1: 250 meters, p1 with two children; t2: none), f2; and one unassigned-free meter list."""
    async with await connect(settings.db.url, settings.db.schema_name, autocommit=True) as conn:
        await conn.execute(
            "insert into grid_nodes (id, code, name, level) values (1, 'u1', 'Bay Utility', 'utility')"
        )
        await conn.execute(
            "insert into grid_nodes (id, code, name, level, parent_id) values"
            " (2, 'f1', 'Mission feeder', 'feeder', 1), (3, 'f2', 'Sunset feeder', 'feeder', 1)"
        )
        await conn.execute(
            "insert into grid_nodes (id, code, name, level, parent_id, capacity_kva) values"
            " (4, 't1', 'Tx one', 'transformer', 2, 50), (5, 't2', 'Tx two', 'transformer', 2, 75)"
        )
        await conn.execute(
            "insert into meters (code, transformer_id) select 'MTR-' || lpad(g::text, 4, '0'), 4"
            " from generate_series(1, 250) g"
        )
        await conn.execute("insert into energy_resources (id, name, type) values (1, 'home', 'prosumer')")
        await conn.execute("update meters set er_id = 1 where code = 'MTR-0007'")
        await conn.execute("insert into meters (id, code, transformer_id) values (1000, 'P1', 4)")
        await conn.execute(
            "insert into meters (code, transformer_id, parent_id) values ('P1-A', 4, 1000), ('P1-B', 4, 1000)"
        )
        await conn.execute("select setval(pg_get_serial_sequence('grid_nodes', 'id'), 10)")


async def _ok(client: httpx.AsyncClient, path: str, **params: Any) -> Any:
    response = await client.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


async def test_children_page_the_tree_and_search_finds_by_prefix(settings: Settings) -> None:
    await _world(settings)
    async with gateway_client(create_app(settings)) as client:
        top = await _ok(client, "/grid/children")
        assert [(i["code"], i["children"]) for i in top["items"]] == [("u1", 2)]
        assert top["next_after"] is None
        feeders = await _ok(client, "/grid/children", node="U1")
        assert [(i["code"], i["level"], i["children"]) for i in feeders["items"]] == [
            ("f1", "feeder", 2),
            ("f2", "feeder", 0),
        ]
        transformers = await _ok(client, "/grid/children", node="f1")
        assert [(i["code"], i["capacity_kVA"], i["children"]) for i in transformers["items"]] == [
            ("t1", 50.0, 251),
            ("t2", 75.0, 0),
        ]

        # A transformer's 251 meters (P1's children are under P1) in pages of 100, in code order.
        codes: list[str] = []
        after = None
        pages = 0
        while True:
            page = await _ok(
                client, "/grid/children", node="t1", limit=100, **({"after": after} if after else {})
            )
            codes += [i["code"] for i in page["items"]]
            pages += 1
            after = page["next_after"]
            if after is None:
                break
        assert pages == 3
        assert codes == sorted(codes, key=str.lower)
        assert len(codes) == len(set(codes)) == 251
        assert "P1-A" not in codes
        by_code = {
            i["code"]: i for i in (await _ok(client, "/grid/children", node="t1", limit=1000))["items"]
        }
        assert by_code["MTR-0007"]["er_type"] == "prosumer"
        assert by_code["MTR-0008"]["er_type"] is None
        assert by_code["P1"]["children"] == 2
        kids = await _ok(client, "/grid/children", meter="p1")
        assert [i["code"] for i in kids["items"]] == ["P1-A", "P1-B"]

        found = await _ok(client, "/grid/search", q="mtr-024")
        assert [i["code"] for i in found["items"]] == [f"MTR-024{d}" for d in range(10)]
        assert found["items"][0]["path"] == ["u1", "f1", "t1"]
        assert found["truncated"] is False
        assert (await _ok(client, "/grid/search", q="MTR-", limit=5))["truncated"] is True
        child = await _ok(client, "/grid/search", q="p1-b")
        assert [(i["code"], i["path"]) for i in child["items"]] == [("P1-B", ["u1", "f1", "t1", "P1"])]
        named = await _ok(client, "/grid/search", q="sunset")
        assert [(i["code"], i["path"]) for i in named["items"]] == [("f2", ["u1"])]
        assert (await _ok(client, "/grid/search", q="mtr_"))[
            "items"
        ] == []  # _ is a character, not a wildcard

        missing = await client.get("/grid/children", params={"node": "nope"})
        assert (missing.status_code, missing.json()["error"]["field"]) == (404, "node")
        both = await client.get("/grid/children", params={"node": "t1", "meter": "p1"})
        assert (both.status_code, both.json()["error"]["field"]) == (422, "meter")
        nul = await client.get("/grid/search", params={"q": "a\x00"})
        assert (nul.status_code, nul.json()["error"]["field"]) == (422, "q")
        empty = await client.get("/grid/search", params={"q": ""})
        assert (empty.status_code, empty.json()["error"]["field"]) == (422, "q")


async def test_the_whole_tree_is_refused_above_its_limit(settings: Settings) -> None:
    await _world(settings)
    small = settings.model_copy(
        update={"gateway": settings.gateway.model_copy(update={"grid_tree_max_meters": 100})}
    )
    async with gateway_client(create_app(small)) as client:
        refused = await client.get("/grid")
        assert refused.status_code == 422
        assert refused.json()["error"]["field"] == "meters"
        assert "/grid/children" in refused.json()["error"]["message"]

        # Without meters the nodes alone are counted: five here, one more than allowed.
        few_nodes = settings.model_copy(
            update={"gateway": settings.gateway.model_copy(update={"grid_tree_max_nodes": 4})}
        )
    async with gateway_client(create_app(few_nodes)) as client:
        refused = await client.get("/grid", params={"meters": "false"})
        assert refused.status_code == 422
        assert refused.json()["error"]["field"] == "meters"
        assert "more than 4 grid nodes" in refused.json()["error"]["message"]
        assert "/grid/children" in refused.json()["error"]["message"]

    # Both over: the nodes' refusal, not the meters' (which suggests meters=false, refused as well).
    both = few_nodes.model_copy(
        update={"gateway": few_nodes.gateway.model_copy(update={"grid_tree_max_meters": 100})}
    )
    async with gateway_client(create_app(both)) as client:
        refused = await client.get("/grid")
        assert refused.status_code == 422
        assert "more than 4 grid nodes" in refused.json()["error"]["message"]
