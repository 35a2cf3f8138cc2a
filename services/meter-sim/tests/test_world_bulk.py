"""``gridsim world generate`` and the bulk loader: the same rows as the ordinary (per-entity) load."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from gridsim.cli import main as cli
from gridsim.testing import fresh_settings
from gridsim_meter_sim import world_bulk
from gridsim_meter_sim.world import load_world, read_world
from gridsim_meter_sim.world_bulk import generate_world, load_any_world, load_world_bulk
from gridsim_shared.db import connect
from gridsim_shared.errors import ConflictError, InvalidError
from gridsim_shared.settings import Settings

_METERS = """
select m.code, t.code as transformer, p.code as parent, m.meter_type, m.load_factor_consumption,
       m.load_factor_production, m.linked_at is not null as linked, e.name, e.type, e.kind, e.profile,
       (select array_agg(array[d.appliance_id, d.quantity]::int[] order by d.appliance_id, d.quantity)
          from ders d where d.er_id = e.id)::text as ders
from meters m join grid_nodes t on t.id = m.transformer_id left join meters p on p.id = m.parent_id
left join energy_resources e on e.id = m.er_id order by m.code
"""
_NODES = "select code, name, level, capacity_kva, latitude, longitude from grid_nodes order by code"


def _world(tmp_path: Path, meters: int) -> Path:
    path = tmp_path / "world.json"
    generate_world(path, meters, meters_per_transformer=20, transformers_per_feeder=3)
    doc = orjson.loads(path.read_bytes())
    # A parent meter (no ER) with two children that name only their parent.
    doc["meters"].append({"meter_id": "PARENT-1", "transformer_id": "gen-t000001"})
    doc["meters"] += [
        {"meter_id": f"CHILD-{i}", "parent_id": "parent-1", "er": {"name": f"flat {i}", "type": "consumer"}}
        for i in (1, 2)
    ]
    path.write_bytes(orjson.dumps(doc))
    return path


def _write_by_line(path: Path, doc: dict[str, Any]) -> None:
    """``doc`` in the layout ``gridsim world generate`` writes: a grid node, then a meter, per line."""
    head = orjson.dumps({k: v for k, v in doc.items() if k not in ("grid", "meters")})[:-1]
    nodes = b",\n".join(orjson.dumps(node) for node in doc["grid"])
    meters = b",\n".join(orjson.dumps(meter) for meter in doc["meters"])
    path.write_bytes(head + b', "grid": [\n' + nodes + b'\n], "meters": [\n' + meters + b"\n]}\n")


async def _rows(settings: Settings, sql: str) -> list[tuple[Any, ...]]:
    async with await connect(settings.db.url, settings.db.schema_name) as conn:
        return await (await conn.execute(sql)).fetchall()


@pytest.mark.parametrize("source", ["entries", "file by line"])
async def test_bulk_load_gives_the_rows_the_ordinary_load_does(
    *,
    settings: Settings,
    tmp_path: Path,
    mqtt_url: str,
    database_url: str,
    source: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The raw entries (``load_world_bulk``) or the file in the generated layout, read a line at a time
    (``load_any_world``), give the rows the ordinary load does."""
    path = _world(tmp_path, 120)
    raw = orjson.loads(path.read_bytes())
    header = {k: v for k, v in raw.items() if k != "meters"}
    async with await connect(settings.db.url, settings.db.schema_name) as conn:
        if source == "entries":
            bulk = await load_world_bulk(conn, header, raw["meters"])
        else:
            _write_by_line(path, raw)
            monkeypatch.setattr(world_bulk, "BULK_FROM_METERS", 100)
            # It must go in bulk, a line at a time: neither the ordinary load nor the whole file parsed.
            monkeypatch.setattr(world_bulk, "load_world", _not_called)
            monkeypatch.setattr(world_bulk, "_meters_of", _not_called)
            bulk = await load_any_world(conn, path)
        await conn.commit()
    with fresh_settings(mqtt_url, database_url) as other:
        async with await connect(other.db.url, other.db.schema_name) as conn:
            ordinary = await load_world(conn, read_world(path))
            await conn.commit()
        assert bulk == ordinary
        assert bulk.meters == 123
        assert bulk.prosumers == 12
        assert await _rows(settings, _NODES) == await _rows(other, _NODES)
        bulk_meters = await _rows(settings, _METERS)
        assert bulk_meters == await _rows(other, _METERS)
        assert len(bulk_meters) == 123
    # The sequences moved past the rows: the API's next meter and ER get fresh ids.
    async with await connect(settings.db.url, settings.db.schema_name) as conn:
        cur = await conn.execute(
            "insert into energy_resources (name, type) values ('next', 'consumer') returning id"
        )
        row = await cur.fetchone()
        assert row is not None
        assert row[0] == 1 + bulk.energy_resources
        await conn.rollback()


def _not_called(*_args: Any) -> None:
    msg = "the file was not loaded a line at a time"
    raise AssertionError(msg)


@pytest.mark.parametrize("odd", ["a meter placed by its coordinates", "a meter over two lines"])
async def test_a_file_by_line_that_bulk_cannot_take_is_loaded_as_before(
    *,
    settings: Settings,
    tmp_path: Path,
    mqtt_url: str,
    database_url: str,
    odd: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A file in the generated layout with a meter the bulk load cannot place (the ordinary load puts it
    under its nearest transformer), or whose lines are not one meter each, loads as it did before:
    nothing of the attempt left behind."""
    path = _world(tmp_path, 120)
    raw = orjson.loads(path.read_bytes())
    if odd == "a meter placed by its coordinates":
        raw["meters"].append({"meter_id": "LOOSE-1", "latitude": 37.30, "longitude": -122.50})
        _write_by_line(path, raw)
    else:
        _write_by_line(path, raw)
        text = path.read_bytes().replace(b'"meter_id":"GM0000005",', b'"meter_id":"GM0000005",\n', 1)
        path.write_bytes(text)
    monkeypatch.setattr(world_bulk, "BULK_FROM_METERS", 100)
    async with await connect(settings.db.url, settings.db.schema_name) as conn:
        loaded = await load_any_world(conn, path)
        await conn.commit()
    with fresh_settings(mqtt_url, database_url) as other:
        async with await connect(other.db.url, other.db.schema_name) as conn:
            ordinary = await load_world(conn, read_world(path))
            await conn.commit()
        assert loaded == ordinary
        assert await _rows(settings, _NODES) == await _rows(other, _NODES)
        assert await _rows(settings, _METERS) == await _rows(other, _METERS)


async def test_bulk_load_enforces_the_api_rules(settings: Settings, tmp_path: Path) -> None:
    path = _world(tmp_path, 40)
    raw = orjson.loads(path.read_bytes())
    header = {k: v for k, v in raw.items() if k != "meters"}
    twice = [*raw["meters"], {**raw["meters"][0], "meter_id": raw["meters"][0]["meter_id"].lower()}]
    async with await connect(settings.db.url, settings.db.schema_name) as conn:
        with pytest.raises(ConflictError, match=r"meters\[43\].*already exists"):
            await load_world_bulk(conn, header, twice)
        await conn.rollback()
        linked_parent = [*raw["meters"], {"meter_id": "KID", "parent_id": raw["meters"][0]["meter_id"]}]
        with pytest.raises(ConflictError, match="linked"):
            await load_world_bulk(conn, header, linked_parent)
        await conn.rollback()
        # Grid nodes are batched per level; one the batch cannot vouch for gets create_grid_node's error.
        feeder = next(n for n in header["grid"] if n["level"] == "feeder")
        misplaced = {
            **header,
            "grid": [*header["grid"], {**feeder, "code": "odd-one", "parent_id": feeder["code"]}],
        }
        with pytest.raises(InvalidError, match=r"grid\[\d+\] \(odd-one\).*parent must be a utility"):
            await load_world_bulk(conn, misplaced, raw["meters"])
        await conn.rollback()
        duplicate = {**header, "grid": [*header["grid"], feeder]}
        with pytest.raises(ConflictError, match="already exists"):
            await load_world_bulk(conn, duplicate, raw["meters"])
        await conn.rollback()


async def test_world_generate_writes_a_file_meter_sim_loads(
    settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "big.json"
    assert cli(["world", "generate", "--meters", "2500", "--out", str(out), "--per-transformer", "50"]) == 0
    assert "2,500 meters, 50 transformers" in capsys.readouterr().out
    doc = json.loads(out.read_text())
    assert len(doc["meters"]) == 2500
    assert read_world(out).meters[0].er is not None  # an ordinary, valid world file
    async with await connect(settings.db.url, settings.db.schema_name) as conn:
        summary = await load_any_world(conn, out)  # 2,500 meters: loaded in bulk
        await conn.commit()
    assert (summary.meters, summary.transformers, summary.prosumers) == (2500, 50, 250)
    assert (await _rows(settings, "select count(*) from meters where er_id is not null"))[0][0] == 2500
    # With the tables' statistics (the planner would take them for empty and read the fleet by nested loops).
    stats = (
        "select reltuples::int from pg_class where oid in ('meters'::regclass, 'energy_resources'::regclass)"
    )
    assert await _rows(settings, stats) == [(2500,), (2500,)]
