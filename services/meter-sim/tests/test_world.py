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
        meters, ders = await fleet_repository.load_fleet_rows(pool, 0, 1)
    fleet = domain.build_fleet(42, meters, ders)
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
