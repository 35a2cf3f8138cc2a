"""Transformer health and service levels on the real broker and database, with meter-sim, the aggregator
and the gateway running (docs/grid-health.md): IEEE C57.91 aging (an overloaded transformer ages faster,
F_AA follows the standard's formula), the overload trip taking a transformer off supply, a switched
transformer's rollup under its new feeder, and the monthly SLA report (JSON, CSV, breach events).

Meters use the ``flat`` profile (the seed's base_kWh × K): two EVs each, 14.4 kW at a power factor drawn
in [0.8, 1]. Transformer t1 (20 kVA) carries one meter at 0.7-0.9 pu, t2 (8 kVA) one at 1.8-2.3 pu.
"""

from __future__ import annotations

import asyncio
import calendar
import csv
import io
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from gridsim_aggregator.__main__ import serve as serve_aggregator
from gridsim_aggregator.aging import age, aging_factor, ambient_c, health_index
from gridsim_aggregator.domain import ThermalState
from gridsim_gateway.main import create_app
from gridsim_meter_sim.__main__ import serve as serve_meter_sim
from gridsim_shared import channels
from gridsim_shared.bus import Bus
from gridsim_shared.climate import climate_for, outdoor_temperature_c
from gridsim_shared.commands import meter_sim
from gridsim_shared.db import open_pool
from gridsim_shared.settings import HealthSettings, Settings
from gridsim_shared.testing import Collector, gateway_client, running

EV = 13


# ------------------------------------------------------------------------------------------- pure


@pytest.mark.parametrize(
    ("hot_spot_c", "f_aa"),
    # IEEE C57.91-2011 eq. 2 for 65 °C-rise insulation: 1 at 110 °C, doubling about every 6-7 °C.
    [(110.0, 1.0), (120.0, 2.709), (130.0, 7.01), (140.0, 17.19), (98.0, 0.2826), (80.0, 0.0358)],
)
def test_aging_factor_matches_c57_91(hot_spot_c: float, f_aa: float) -> None:
    assert aging_factor(hot_spot_c) == pytest.approx(f_aa, rel=0.01)


def test_loss_of_life_and_health_index() -> None:
    # 24 h at 120 °C uses 2.71 × 24 = 65 h of normal life (C57.91 eq. 3 with a constant F_AA).
    state = ThermalState()
    for _ in range(24 * 60):
        state = age(state, 120.0, 1.2, 60.0)
    assert state.loss_of_life_h == pytest.approx(24 * aging_factor(120.0), rel=1e-9)
    assert state.overload_h == pytest.approx(24.0)
    assert health_index(0.0, 0.0) == 100.0
    assert health_index(180_000.0, 876.0) == 0.0
    assert health_index(state.loss_of_life_h, state.overload_h) < 100.0
    # The climatological ambient: warmer in the afternoon than before dawn, in summer than in winter.
    sf = (37.77, -122.42)
    afternoon, dawn = datetime(2025, 7, 20, 23, tzinfo=UTC), datetime(2025, 7, 20, 13, tzinfo=UTC)
    assert ambient_c(*sf, afternoon) > ambient_c(*sf, dawn)
    assert ambient_c(*sf, afternoon) > ambient_c(*sf, datetime(2025, 1, 20, 23, tzinfo=UTC))
    # Remembered per place and instant (asked for every transformer every interval), never mixed up: the
    # same value as computed afresh, for each place, time and seed.
    phoenix = (33.45, -112.07)
    for place, when, seed in [(sf, afternoon, 1), (sf, afternoon, 2), (phoenix, afternoon, 1), (sf, dawn, 1)]:
        fresh = float(outdoor_temperature_c(climate_for(*place), [int(when.timestamp())], seed)[0])
        assert ambient_c(*place, when, seed) == fresh
        assert ambient_c(*place, when, seed) == fresh  # the remembered one
    assert ambient_c(*phoenix, afternoon, 1) > ambient_c(*sf, afternoon, 1) + 10


# ------------------------------------------------------------------------------------ integration


async def insert_world(settings: Settings) -> None:
    """u1 → f1 (t1 20 kVA: M1; t2 8 kVA: M2), f2 (t3 20 kVA: M3)."""
    async with open_pool(settings.db, name="test-world") as pool, pool.connection() as conn:

        async def one(sql: str, *args: Any) -> int:
            cur = await conn.execute(sql, args)
            row = await cur.fetchone()
            assert row is not None
            return int(row[0])

        node = (
            "insert into grid_nodes (code, name, level, parent_id, capacity_kva, latitude, longitude)"
            " values (%s, %s, %s, %s, %s, 37.77, -122.42) returning id"
        )
        u1 = await one(node, "u1", "u1", "utility", None, None)
        feeders = {f: await one(node, f, f, "feeder", u1, None) for f in ("f1", "f2")}
        for t, f, kva, meter in (("t1", "f1", 20.0, "M1"), ("t2", "f1", 8.0, "M2"), ("t3", "f2", 20.0, "M3")):
            tid = await one(node, t, t, "transformer", feeders[f], kva)
            er = await one(
                "insert into energy_resources (name, type, profile, latitude, longitude)"
                " values (%s, 'consumer', 'flat', 37.77, -122.42) returning id",
                meter,
            )
            await conn.execute(
                "insert into ders (er_id, appliance_id, quantity) values (%s, %s, 2)", (er, EV)
            )
            await conn.execute(
                "insert into meters (code, transformer_id, er_id) values (%s, %s, %s)", (meter, tid, er)
            )


@dataclass
class Pipeline:
    bus: Bus
    http: httpx.AsyncClient
    rollups: Collector
    events: Collector
    meter_events: Collector

    async def step(self, intervals: int = 1) -> dict[str, Any]:
        result = await self.bus.call(meter_sim.STEP, meter_sim.STEP.build(intervals=intervals), timeout=120)
        assert result.stored is True
        return result.model_dump(mode="json")

    async def get(self, path: str, status: int = 200, **params: Any) -> Any:
        response = await self.http.get(path, params=params)
        assert response.status_code == status, response.text
        return response.json() if "json" in response.headers.get("content-type", "") else response.text


@asynccontextmanager
async def pipeline(settings: Settings) -> AsyncIterator[Pipeline]:
    await insert_world(settings)
    async with Bus(settings.mqtt, "test", "t") as bus:
        clocks = await Collector(bus, channels.CLOCK).start()
        rollups = await Collector(bus, channels.ROLLUP_TRANSFORMER).start()
        events = await Collector(bus, channels.EVENT).start()
        meter_events = await Collector(bus, channels.METER_EVENT).start()
        async with (
            running(serve_meter_sim, serve_aggregator, settings=settings),
            gateway_client(create_app(settings)) as http,
        ):
            await clocks.wait_for(1)
            yield Pipeline(bus, http, rollups, events, meter_events)


def with_health(settings: Settings, **values: Any) -> Settings:
    return settings.model_copy(update={"health": HealthSettings(**values)})


@pytest.mark.integration
async def test_overload_ages_faster_and_health_is_served(settings: Settings) -> None:
    async with pipeline(settings) as p:
        await p.step(15)
        health = {t["transformer_code"]: t for t in await p.get("/grid/transformers/health")}
        t1, t2, t3 = health["t1"], health["t2"], health["t3"]
        assert t2["hot_spot_c"] > t1["hot_spot_c"]
        assert t2["loss_of_life_h"] > 10 * t1["loss_of_life_h"] > 0
        assert t2["overload_h"] == pytest.approx(15 / 60)
        assert t1["overload_h"] == 0.0
        assert t2["health_index"] < t1["health_index"] <= 100.0
        for t in (t1, t2, t3):
            # F_AA of the last interval follows C57.91's formula at the reported hot spot, within 1 %.
            expected = math.exp(15000 / 383 - 15000 / (t["hot_spot_c"] + 273))
            assert t["aging_factor"] == pytest.approx(expected, rel=0.01)
        assert [t["transformer_code"] for t in await p.get("/grid/transformers/health", feeder="f2")] == [
            "t3"
        ]
        assert (await p.get("/grid/transformers/health", 422, feeder="t1"))["error"]["field"] == "feeder"

        # The same figures ride on the transformer rollups.
        last = [m for m, path in p.rollups.messages if path.transformer == "t2"][-1]
        assert last.hot_spot_c == pytest.approx(t2["hot_spot_c"], abs=1e-3)
        assert last.loss_of_life_h == pytest.approx(t2["loss_of_life_h"], abs=1e-6)
        assert last.health_index == t2["health_index"]


@pytest.mark.integration
async def test_overload_trip_takes_the_transformer_off_supply(settings: Settings) -> None:
    async with pipeline(with_health(settings, trip_hot_spot_c=70.0)) as p:
        for _ in range(30):
            await p.step()
            if any(e.type == "last_gasp" for e, _ in p.meter_events.messages):
                break
        trips = [e for e, _ in p.events.messages if e.type == "transformer_trip"]
        assert [e.subject for e in trips] == ["t2"]
        assert trips[0].data.hot_spot_c > 70.0
        gasps = [
            (e.subject, path.transformer) for e, path in p.meter_events.messages if e.type == "last_gasp"
        ]
        assert gasps == [("M2", "t2")]
        outages = await p.get("/outages")
        assert [(o["cause"], o["node_code"], o["customers"]) for o in outages] == [("overload_trip", "t2", 1)]
        assert outages[0]["planned_end"] is not None  # a drawn repair time


@pytest.mark.integration
async def test_switching_and_the_sla_report(settings: Settings) -> None:
    async with pipeline(with_health(settings, sla_latency_p95_s=1e-6)) as p:
        await p.step(2)
        moved = await p.http.post("/grid/switch", json={"transformer": "t2", "feeder": "f2"})
        assert moved.status_code == 200, moved.text
        result = await p.step()
        when = datetime.fromisoformat(result["last_interval"])
        async with asyncio.timeout(20):
            while not any(m.timestamp == when and path.transformer == "t2" for m, path in p.rollups.messages):
                await asyncio.sleep(0.01)
        feeders = {
            path.feeder for m, path in p.rollups.messages if m.timestamp == when and path.transformer == "t2"
        }
        assert feeders == {"f2"}

        month = when.strftime("%Y-%m")
        report = await p.get("/sla/f2", month=month)
        assert (report["feeder_code"], report["intervals"]) == ("f2", 3)
        assert [(m["meter_code"], m["readings"], m["expected"]) for m in report["meters"]] == [
            ("M2", 3, 3),
            ("M3", 3, 3),
        ]
        assert report["completeness"] == 1.0
        assert report["voltage_compliance"] is not None
        assert report["latency_p95_s"] is not None
        assert report["breaches"] == ["latency_p95_s"]
        rows = list(csv.DictReader(io.StringIO(await p.get("/sla/f2", month=month, format="csv"))))
        assert [(r["meter_code"], r["completeness"]) for r in rows] == [("M2", "1.0"), ("M3", "1.0")]
        assert (await p.get("/sla/t1", 422, month=month))["error"]["field"] == "feeder"
        assert (await p.get("/sla/nope", 404, month=month))["error"]["field"] == "feeder"
        assert (await p.get("/sla/f1", 422, month="2025-13"))["error"]["field"] == "month"

        # Closing the month's last interval raises one sla_breach per feeder that missed a threshold.
        last_day = calendar.monthrange(when.year, when.month)[1]
        await p.bus.call(meter_sim.JUMP, meter_sim.JUMP.build(to=f"{month}-{last_day:02d}T23:58:00Z"))
        await p.step(3)
        async with asyncio.timeout(30):
            while len([e for e, _ in p.events.messages if e.type == "sla_breach"]) < 2:
                await asyncio.sleep(0.05)
        breaches = sorted(
            (e.subject, e.data.month, tuple(e.data.breaches))
            for e, _ in p.events.messages
            if e.type == "sla_breach"
        )
        assert breaches == [("f1", month, ("latency_p95_s",)), ("f2", month, ("latency_p95_s",))]
