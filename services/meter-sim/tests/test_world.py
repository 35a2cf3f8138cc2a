"""The demo world: the shipped file is what the script makes, it loads on first start through the API's own
code, and it is the grid the issue asks for (SF utility, 3 feeders, 15 transformers, ~150 meters,
prosumers, an apartment complex with child meters, every meter under its nearest transformer)."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gridsim_meter_sim import domain, fleet_repository, grid_repository, meter_repository
from gridsim_meter_sim.__main__ import serve
from gridsim_meter_sim.geo import nearest
from gridsim_meter_sim.world import default_world_path, load_demo_world, read_world
from gridsim_shared import standards
from gridsim_shared.db import open_pool
from gridsim_shared.errors import GridsimError
from gridsim_shared.geo import distance_m as haversine_m
from gridsim_shared.schemas.meters import MeterListRequest
from gridsim_shared.settings import Settings
from gridsim_shared.testing import running

ROOT = Path(__file__).resolve().parents[3]
SINGLE_PHASE_KVA = {25, 37.5, 50, 75, 100, 167, 250, 333, 500}
THREE_PHASE_KVA = {75, 112.5, 150, 225, 300, 500, 750, 1000}


def with_demo_world(settings: Settings, path: Path | None = None) -> Settings:
    sim = settings.sim.model_copy(update={"demo_world": True, "demo_world_file": str(path) if path else None})
    return settings.model_copy(update={"sim": sim})


def test_the_shipped_file_is_what_the_script_makes() -> None:
    script = ROOT / "scripts" / "make_demo_world.py"
    result = subprocess.run(
        [sys.executable, str(script), "--check"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_the_shipped_file_validates() -> None:
    world = read_world(default_world_path())
    assert [n.name for n in world.grid if n.level == "feeder"] == ["SF Mission", "SF Sunset", "SF Richmond"]
    assert [m.meter_id for m in world.meters] == [f"MTR-{i:04d}" for i in range(150)]
    assert all(37.70 <= m.latitude <= 37.81 for m in world.meters if m.latitude is not None)
    assert all(-122.52 <= m.longitude <= -122.40 for m in world.meters if m.longitude is not None)


def test_a_bad_world_file_names_the_file_and_the_field(tmp_path: Path) -> None:
    path = tmp_path / "world.json"
    path.write_text(json.dumps({"name": "x", "grid": [{"name": "U", "level": "planet"}], "meters": []}))
    with pytest.raises(ValueError, match=r"world\.json: grid\.0\.level"):
        read_world(path)
    with pytest.raises(ValueError, match="cannot read"):
        read_world(tmp_path / "missing.json")


@pytest.mark.integration
async def test_demo_world_loads_on_first_start(settings: Settings) -> None:
    demo = with_demo_world(settings)
    async with running(serve, settings=demo), open_pool(demo.db) as pool:
        # serve loaded it before it was ready; a second attempt finds a grid and does nothing.
        assert await load_demo_world(pool, demo) is None
        async with pool.connection() as conn:
            tree = await grid_repository.grid_tree(conn)
            meters = await meter_repository.list_meters(conn, MeterListRequest())
            rows = await conn.execute(
                "select e.kind, e.type, m.code from energy_resources e join meters m on m.er_id = e.id"
            )
            ers = await rows.fetchall()
            rows = await conn.execute(
                "select count(*) from ders d join appliances a on a.id = d.appliance_id"
                " where a.role = 'production' and d.tilt_deg is not null and d.azimuth_deg is not null"
            )
            [(oriented_arrays,)] = await rows.fetchall()

    assert tree.meters == 150
    assert tree.transformers == 15
    [utility] = tree.utilities
    assert utility.name == "Pacific Gas and Electric Company"
    assert [f.name for f in utility.children] == ["SF Mission", "SF Sunset", "SF Richmond"]
    transformers = {t.id: t for f in utility.children for t in f.children}
    assert len(transformers) == 15
    for tx in transformers.values():
        assert tx.capacity_kVA in SINGLE_PHASE_KVA | THREE_PHASE_KVA

    # Every meter hangs from a real transformer, and those with coordinates from their nearest one.
    located = [(t.id, t.latitude, t.longitude) for t in transformers.values()]
    for meter in meters:
        assert meter.transformer_id in transformers
        assert meter.latitude is not None
        assert meter.longitude is not None
        found = nearest(meter.latitude, meter.longitude, located)
        assert found is not None
        assert found[0] == meter.transformer_id, meter.meter_id
        tx = transformers[meter.transformer_id]
        assert haversine_m(meter.latitude, meter.longitude, tx.latitude or 0, tx.longitude or 0) < 400

    # Households, offices, shops, industry and an apartment complex; a share of them prosumers.
    kinds = {kind for kind, _type, _code in ers}
    assert kinds == {"home", "apartment_complex", "office", "shop", "industrial"}
    share = sum(1 for _kind, er_type, _code in ers if er_type == "prosumer") / len(ers)
    assert 0.15 <= share <= 0.5
    prosumer_meters = {m.meter_id: m for m in meters if m.er_id is not None}
    for _kind, er_type, code in ers:
        expected = 1.0 if er_type == "prosumer" else 0.0
        assert prosumer_meters[code].load_factor_production == expected

    # The apartment complex: a parent meter without an ER, its units and common areas as children.
    parents = [m for m in meters if m.children]
    assert len(parents) == 1
    [building] = parents
    assert building.er_id is None
    children = [m for m in meters if m.parent_id == building.id]
    assert len(children) >= 10
    assert all(c.er_id is not None and c.transformer_id == building.transformer_id for c in children)
    assert len(ers) == 149
    assert oriented_arrays == 29  # every prosumer's rooftop array has its roof's tilt and azimuth


@pytest.mark.integration
async def test_a_users_world_file_is_loaded_instead(settings: Settings, tmp_path: Path) -> None:
    world: dict[str, Any] = json.loads(default_world_path().read_text())
    keep = {"pge-sf", "sf-mission", "sf-mission-tx01"}
    world["grid"] = [n for n in world["grid"] if n["code"] in keep]
    world["meters"] = [m for m in world["meters"] if m["transformer_id"] == "sf-mission-tx01"]
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(world))
    demo = with_demo_world(settings, path)
    async with open_pool(demo.db) as pool:
        summary = await load_demo_world(pool, demo)
        assert summary is not None
        assert (summary.transformers, summary.meters) == (1, len(world["meters"]))
        off = settings.model_copy(update={"sim": settings.sim.model_copy(update={"demo_world": False})})
        assert await load_demo_world(pool, off) is None


@pytest.mark.integration
async def test_a_world_that_breaks_a_rule_is_not_half_loaded(settings: Settings, tmp_path: Path) -> None:
    world: dict[str, Any] = json.loads(default_world_path().read_text())
    world["meters"][5]["transformer_id"] = "sf-sunset"  # a feeder: meters hang from transformers
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(world))
    demo = with_demo_world(settings, path)
    async with open_pool(demo.db) as pool:
        with pytest.raises(GridsimError, match=r"meters\[5\] \(MTR-0005\)") as failure:
            await load_demo_world(pool, demo)
        assert failure.value.field == "transformer_id"
        async with pool.connection() as conn:
            cur = await conn.execute(
                "select (select count(*) from grid_nodes) + (select count(*) from meters)"
            )
            assert await cur.fetchone() == (0,)


@pytest.mark.integration
async def test_the_demo_world_keeps_its_voltage_standard_and_pv_at_unity_power_factor(
    settings: Settings,
) -> None:
    """Seed 42, a summer and a winter day at 15 minutes: every reading inside ANSI C84.1 Range A (the
    demo world's 240 V US standard), PV exports at unity power factor and yields below the clear sky."""
    demo = with_demo_world(settings)
    async with open_pool(demo.db) as pool:
        assert await load_demo_world(pool, demo) is not None
        columns = await fleet_repository.load_fleet(pool, 0, 1)
    fleet = domain.build_fleet_from(42, columns)
    low, high = standards.band_at(37.77, -122.42)
    assert (low, high) == (228.0, 252.0)
    realistic_pv = fleet.prosumer & ~fleet.flat
    kwp = np.bincount(fleet.pv.row, weights=fleet.pv.kwp, minlength=len(fleet))
    for start in (datetime(2025, 6, 21, 7, tzinfo=UTC), datetime(2025, 12, 21, 8, tzinfo=UTC)):
        produced = 0.0
        for quarter in range(96):
            r = domain.simulate(fleet, start + timedelta(minutes=15 * quarter), 900)
            volts = r.voltage[r.active & ~fleet.flat]
            assert volts.min() >= low, (start, quarter)
            assert volts.max() <= high, (start, quarter)
            np.testing.assert_array_equal(r.production_kvah[realistic_pv], r.production_kwh[realistic_pv])
            produced += float(np.nansum(r.production_kwh[realistic_pv]))
        per_kwp = produced / kwp.sum()
        assert 0.3 < per_kwp < 6.6  # a clear June day gives ~6 kWh/kWp, a dull December one much less


# The fleet as it was read before the columnar read: one row per leaf meter and per DER (the oracle).
_ROW_METERS = """
select m.id as meter_id, m.code as meter_code, er.type as er_type, er.kind as er_kind, er.profile as er_profile,
       m.load_factor_consumption, m.load_factor_production, m.status in ('online', 'tampered') as online,
       coalesce(m.latitude, er.latitude, t.latitude, f.latitude, u.latitude, 0) as latitude,
       coalesce(m.longitude, er.longitude, t.longitude, f.longitude, u.longitude, 0) as longitude,
       t.id as transformer_id, t.code as transformer_code, t.capacity_kva as transformer_kva,
       f.code as feeder_code, u.code as utility_code, f.id as feeder_id
from meters m
join energy_resources er on er.id = m.er_id
left join meters parent on parent.id = m.parent_id
join grid_nodes t on t.id = coalesce(m.transformer_id, parent.transformer_id) and t.level = 'transformer'
join grid_nodes f on f.id = t.parent_id and f.level = 'feeder'
join grid_nodes u on u.id = f.parent_id and u.level = 'utility'
where not exists (select 1 from meters child where child.parent_id = m.id)
"""
_ROW_DERS = """
select m.id as er_meter_id, a.profile, a.role, a.base_kwh_per_min, a.power_factor, d.quantity, d.capacity_kw,
       a.name as appliance, d.tilt_deg, d.azimuth_deg
from ders d join appliances a on a.id = d.appliance_id join meters m on m.er_id = d.er_id
where d.switched_on and d.lifecycle = 'connected'
order by m.id, d.id
"""


def _same_fleet(a: domain.Fleet, b: domain.Fleet) -> None:
    for name in (
        "meter_id",
        "transformer",
        "kind",
        "flat",
        "prosumer",
        "online",
        "k_consumption",
        "k_production",
        "latitude",
        "longitude",
        "seed_base_kwh_per_min",
        "solar_kw",
        "feeder",
        "transformer_kva",
        "transformer_bounds",
        "nominal_v",
        "voltage_offset",
    ):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert a.meter_code == b.meter_code
    assert a.transformer_codes == b.transformer_codes
    np.testing.assert_array_equal(a.pv.row, b.pv.row)
    np.testing.assert_array_equal(a.pv.kwp, b.pv.kwp)
    assert [g.cls.name for g in a.loads.groups] == [g.cls.name for g in b.loads.groups]
    for ga, gb in zip(a.loads.groups, b.loads.groups, strict=True):
        for name in ("row", "rated_kw", "tan_phi", "keys", "week_row", "week_row_own"):
            np.testing.assert_array_equal(
                getattr(ga, name), getattr(gb, name), err_msg=f"{ga.cls.name}.{name}"
            )
    np.testing.assert_array_equal(a.loads.always_on_kw, b.loads.always_on_kw)


@pytest.mark.integration
@pytest.mark.parametrize("block", [None, 7])
async def test_the_fleet_read_as_columns_is_the_fleet_read_row_by_row(
    settings: Settings, block: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The engine's columnar read (one bytea per column, joined in numpy) builds, for every shard, the same
    fleet as the leaf meters and DERs read one row each (an apartment's child meters under its
    transformer, offline meters, locations from the meter, its ER or its transformer, flat profiles, rated PV, tilted arrays, transformers without a rating)."""
    if block is not None:  # ids read in blocks of 7 rows (a block is a million at 5M meters)
        monkeypatch.setattr(fleet_repository, "_BLOCK", block)
    demo = with_demo_world(settings)
    async with open_pool(demo.db) as pool:
        assert await load_demo_world(pool, demo) is not None
        async with pool.connection() as conn:
            await conn.execute("update meters set status = 'offline' where id % 17 = 3")
            await conn.execute("update meters set latitude = null, longitude = null where id % 3 = 1")
            await conn.execute(
                "update energy_resources set latitude = null, longitude = null where id % 2 = 0"
            )
            await conn.execute("update energy_resources set profile = 'flat' where id % 13 = 5")
            await conn.execute("update ders set capacity_kw = 3.5 + id % 3 where id % 5 = 0")
            await conn.execute("update ders set tilt_deg = 30, azimuth_deg = 200 where id % 7 = 0")
            await conn.execute("update ders set switched_on = false where id % 23 = 0")
            await conn.execute(
                "update grid_nodes set capacity_kva = null where id % 4 = 0 and level = 'transformer'"
            )
            cur = await conn.execute(_ROW_METERS)
            names = [c.name for c in cur.description or []]
            rows = [dict(zip(names, row, strict=True)) for row in await cur.fetchall()]
            cur = await conn.execute(_ROW_DERS)
            names = [c.name for c in cur.description or []]
            ders = [domain.DerRow(**dict(zip(names, row, strict=True))) for row in await cur.fetchall()]
            cur = await conn.execute("select id from grid_nodes where level = 'feeder' order by id")
            feeders = [row[0] for row in await cur.fetchall()]
            cur = await conn.execute(
                "select code from meters where parent_id is not null and er_id is not null"
            )
            children = {row[0] for row in await cur.fetchall()}
        assert children
        assert children <= {row["meter_code"] for row in rows}
        assert not all(row["online"] for row in rows)
        for shard, shards in ((0, 1), (0, 2), (1, 2)):
            mine = set(feeders[shard::shards])
            meters = [
                domain.MeterRow(**{k: v for k, v in row.items() if k != "feeder_id"})
                for row in rows
                if row["feeder_id"] in mine
            ]
            expected = domain.build_fleet(42, meters, ders)
            got = domain.build_fleet_from(42, await fleet_repository.load_fleet(pool, shard, shards))
            assert len(got) == len(meters) > 0
            _same_fleet(got, expected)
