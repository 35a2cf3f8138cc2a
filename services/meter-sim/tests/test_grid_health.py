"""Grid health on the real broker and database: cumulative registers, outages with last-gasp and
power-restored events, IEEE 1366 indices computed by hand, remote disconnect and reconnect, the on-demand
read over HTTP and MQTT, feeder switching, and the refusals (docs/grid-health.md).

The world uses the ``flat`` profile (the seed's base_kWh × K, no randomness), so every figure is exact.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import pytest

from gridsim_gateway.main import create_app
from gridsim_meter_sim.__main__ import serve
from gridsim_meter_sim.reliability import indices
from gridsim_shared import channels
from gridsim_shared.bus import Bus
from gridsim_shared.commands import meter_sim
from gridsim_shared.db import open_pool
from gridsim_shared.messages import MeterReading
from gridsim_shared.settings import Settings
from gridsim_shared.testing import Collector, gateway_client, running

FAN, AC = 2, 8
PER_MIN = 0.00125 + 0.025  # fan + AC, kWh per one-minute interval (flat profile, K = 1)

# feeder f1: t1 (A1 A2 A3), t2 (B1 B2); feeder f2: t3 (C1); utility u2: feeder g1 with transformer t9.
METERS = {"A1": "t1", "A2": "t1", "A3": "t1", "B1": "t2", "B2": "t2", "C1": "t3"}


async def insert_world(settings: Settings) -> dict[str, int]:
    ids: dict[str, int] = {}
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
        for u, feeders in {"u1": {"f1": ["t1", "t2"], "f2": ["t3"]}, "u2": {"g1": ["t9"]}}.items():
            ids[u] = await one(node, u, u, "utility", None, None)
            for f, transformers in feeders.items():
                ids[f] = await one(node, f, f, "feeder", ids[u], None)
                for t in transformers:
                    ids[t] = await one(node, t, t, "transformer", ids[f], 100.0)
        for code, t in METERS.items():
            er = await one(
                "insert into energy_resources (name, type, profile, latitude, longitude)"
                " values (%s, 'consumer', 'flat', 37.77, -122.42) returning id",
                f"Home {code}",
            )
            for appliance in (FAN, AC):
                await conn.execute(
                    "insert into ders (er_id, appliance_id, quantity) values (%s, %s, 1)", (er, appliance)
                )
            ids[code] = await one(
                "insert into meters (code, transformer_id, er_id) values (%s, %s, %s) returning id",
                code,
                ids[t],
                er,
            )
    return ids


@dataclass
class Grid:
    bus: Bus
    http: httpx.AsyncClient
    ids: dict[str, int]
    readings: Collector
    events: Collector

    async def step(self, intervals: int = 1) -> dict[str, MeterReading]:
        """Step; the last interval's readings by meter code."""
        result = await self.bus.call(meter_sim.STEP, meter_sim.STEP.build(intervals=intervals), timeout=60)
        when = result.last_interval
        async with asyncio.timeout(20):
            while True:
                got = {r.meter_code: r for r, _ in self.readings.messages if r.timestamp == when}
                if len(got) >= result.readings // intervals:
                    return got
                await asyncio.sleep(0.01)

    async def call(self, method: str, path: str, status: int = 200, **kwargs: Any) -> Any:
        response = await self.http.request(method, path, **kwargs)
        assert response.status_code == status, response.text
        return response.json()

    def events_of(self, kind: str) -> list[str]:
        return sorted(e.subject for e, p in self.events.messages if e.type == kind and p.type == kind)


@asynccontextmanager
async def grid(settings: Settings) -> AsyncIterator[Grid]:
    await insert_world(settings)
    async with grid_running(settings) as g:
        yield g


@asynccontextmanager
async def grid_running(settings: Settings) -> AsyncIterator[Grid]:
    """meter-sim and the gateway on the world already in the database."""
    async with open_pool(settings.db, name="test-ids") as pool, pool.connection() as conn:
        cur = await conn.execute("select code, id from grid_nodes union all select code, id from meters")
        ids = {str(code): int(i) for code, i in await cur.fetchall()}
    async with Bus(settings.mqtt, "test", "t") as bus:
        clocks = await Collector(bus, channels.CLOCK).start()
        readings = await Collector(bus, channels.READING).start()
        events = await Collector(bus, channels.METER_EVENT).start()
        async with running(serve, settings=settings), gateway_client(create_app(settings)) as http:
            await clocks.wait_for(1)
            yield Grid(bus, http, ids, readings, events)


async def wait_events(g: Grid, kind: str, count: int) -> list[str]:
    async with asyncio.timeout(20):
        while len(g.events_of(kind)) < count:
            await asyncio.sleep(0.01)
    return g.events_of(kind)


def test_reliability_indices_by_hand() -> None:
    # 5 customers; one sustained outage of 10 min on 3 of them, one momentary (2 min) on 2 of them.
    ix = indices(5, [(10.0, 3), (2.0, 2)])
    assert (ix.saifi, ix.saidi, ix.caidi, ix.maifi) == pytest.approx((0.6, 6.0, 10.0, 0.4))
    assert (ix.sustained, ix.momentary, ix.customers_interrupted) == (1, 1, 3)
    assert indices(0, []).saifi == 0.0
    assert indices(5, []).caidi is None


@pytest.mark.integration
async def test_registers_outages_and_reliability(settings: Settings) -> None:
    async with grid(settings) as g:
        # Registers: the running sum of the published interval energies, monotone.
        sums: dict[str, float] = dict.fromkeys(METERS, 0.0)
        for _ in range(3):
            r = await g.step()
            for code, reading in r.items():
                sums[code] += reading.consumption_kWh or 0.0
                assert reading.import_kWh == pytest.approx(sums[code], abs=1e-9)
                assert reading.export_kWh == 0.0
        assert sums["A1"] == pytest.approx(3 * PER_MIN, abs=1e-6)

        # A fault on the section [t1] of feeder f1 for 10 minutes: 3 customers.
        outage = await g.call(
            "POST",
            "/outages",
            201,
            json={"scope": "section", "target": "f1", "transformers": ["t1"], "duration_s": 600},
        )
        assert (outage["customers"], outage["transformer_codes"], outage["momentary"]) == (3, ["t1"], None)
        r = await g.step()
        assert await wait_events(g, "last_gasp", 3) == ["A1", "A2", "A3"]
        for code in ("A1", "A2", "A3"):
            assert (r[code].avg_voltage, r[code].consumption_kWh, r[code].avg_current) == (0.0, 0.0, 0.0)
            assert r[code].import_kWh == pytest.approx(sums[code], abs=1e-9)  # no energy while out
        assert r["B1"].avg_voltage > 200
        assert r["B1"].consumption_kWh == pytest.approx(PER_MIN, abs=1e-6)
        read = await g.call("GET", "/meter/A1/read")
        assert (read["supplied"], read["avg_voltage"], read["import_kWh"]) == (
            False,
            0.0,
            pytest.approx(sums["A1"]),
        )
        assert g.events_of("power_restored") == []

        r = await g.step(9)  # still out in the 10th minute
        assert r["A1"].avg_voltage == 0.0
        r = await g.step()  # repaired
        assert await wait_events(g, "power_restored", 3) == ["A1", "A2", "A3"]
        assert r["A1"].avg_voltage > 200
        assert r["A1"].consumption_kWh == pytest.approx(PER_MIN, abs=1e-6)
        done = await g.call("GET", f"/outages/{outage['id']}")
        assert (done["restored_by"], done["momentary"]) == ("repair", False)

        # A momentary one on t2, restored by the operator after 2 minutes.
        momentary = await g.call("POST", "/outages", 201, json={"scope": "transformer", "target": "t2"})
        assert momentary["customers"] == 2
        assert momentary["planned_end"] is not None  # a drawn repair time
        await g.step(2)
        restored = await g.call("POST", f"/outages/{momentary['id']}/restore")
        assert (restored["restored_by"], restored["momentary"]) == ("operator", True)
        assert (await g.call("POST", f"/outages/{momentary['id']}/restore", 409))["error"][
            "field"
        ] == "outage_id"
        await g.step()
        assert await wait_events(g, "power_restored", 5) == ["A1", "A2", "A3", "B1", "B2"]

        # IEEE 1366 for f1 (N_T = 5): SAIFI 3/5, SAIDI 10·3/5 min, CAIDI 10 min, MAIFI 2/5.
        month = outage["start"][:7]
        f1, f2, g1 = await g.call("GET", "/reliability", params={"month": month})
        assert (g1["feeder_code"], g1["customers_served"]) == ("g1", 0)
        assert (f1["feeder_code"], f1["customers_served"]) == ("f1", 5)
        assert (f1["SAIFI"], f1["SAIDI"], f1["CAIDI"], f1["MAIFI"]) == pytest.approx((0.6, 6.0, 10.0, 0.4))
        assert (f2["SAIFI"], f2["SAIDI"], f2["CAIDI"], f2["MAIFI"]) == (0.0, 0.0, None, 0.0)

        # A planned outage of feeder f2 ahead: nothing until it starts.
        start = (await g.bus.call(meter_sim.CLOCK)).model_dump(mode="json")["current_datetime"]
        planned = {"scope": "feeder", "target": "f2", "cause": "planned", "start": start, "duration_s": 120}
        assert (await g.call("POST", "/outages", 201, json=planned))["customers"] == 1
        r = await g.step()
        assert r["C1"].avg_voltage == 0.0
        r = await g.step(2)
        assert r["C1"].avg_voltage > 200
        assert "C1" in await wait_events(g, "power_restored", 6)

        # Refusals: nothing changed.
        assert (await g.call("POST", "/outages/999/restore", 404))["error"]["field"] == "outage_id"
        bad = await g.call("POST", "/outages", 422, json={"scope": "section", "target": "f1"})
        assert "transformers" in bad["error"]["message"]
        other = await g.call(
            "POST", "/outages", 422, json={"scope": "section", "target": "f1", "transformers": ["t3"]}
        )
        assert other["error"]["field"] == "transformers"
        assert len(await g.call("GET", "/outages")) == 3


@pytest.mark.integration
async def test_disconnect_read_and_switching(settings: Settings) -> None:
    async with grid(settings) as g:
        await g.step()
        cut = await g.call("POST", "/meter/B1/disconnect", params={"reason": "non-payment"})
        assert cut["disconnected"] is True
        assert (await g.call("POST", "/meter/B1/disconnect", 409))["error"]["field"] == "meter"
        assert (await g.call("POST", "/meter/NOPE/disconnect", 404))["error"]["field"] == "meter"
        r = await g.step()
        assert (r["B1"].avg_voltage, r["B1"].consumption_kWh) == (0.0, 0.0)
        assert await wait_events(g, "disconnected", 1) == ["B1"]
        read = await g.call("GET", "/meter/B1/read")
        assert (read["disconnected"], read["supplied"], read["import_kWh"]) == (
            True,
            True,
            pytest.approx(PER_MIN),
        )
        await g.call("POST", "/meter/B1/reconnect")
        assert (await g.call("POST", "/meter/B1/reconnect", 409))["error"]["field"] == "meter"
        r = await g.step()
        assert r["B1"].consumption_kWh == pytest.approx(PER_MIN, abs=1e-6)
        assert await wait_events(g, "reconnected", 1) == ["B1"]

        # On-demand read over MQTT and HTTP, each within a second.
        started = time.monotonic()
        over_mqtt = (
            await g.bus.call(meter_sim.READ_METER, meter_sim.READ_METER.build(meter="A1"), timeout=5)
        ).model_dump(mode="json")
        mqtt_s = time.monotonic() - started
        started = time.monotonic()
        over_http = await g.call("GET", f"/meter/{g.ids['A1']}/read")
        http_s = time.monotonic() - started
        assert over_mqtt == over_http
        assert over_http["import_kWh"] == pytest.approx(3 * PER_MIN, abs=1e-6)
        assert datetime.fromisoformat(over_http["last_interval"]) == r["A1"].timestamp
        print(f"on-demand read: MQTT {mqtt_s * 1000:.0f} ms, HTTP {http_s * 1000:.0f} ms")

        # Feeder switching: t2 moves from f1 to f2; a feeder of another utility is refused.
        moved = await g.call("POST", "/grid/switch", json={"transformer": "t2", "feeder": "f2"})
        assert (moved["from_feeder"], moved["to_feeder"], moved["meters"]) == ("f1", "f2", 2)
        assert (await g.call("POST", "/grid/switch", 409, json={"transformer": "t2", "feeder": "f2"}))[
            "error"
        ]["field"] == "feeder"
        foreign = await g.call("POST", "/grid/switch", 422, json={"transformer": "t2", "feeder": "g1"})
        assert foreign["error"]["field"] == "feeder"
        before = len(g.readings.messages)
        await g.step()
        paths = {p.meter: p.feeder for r, p in g.readings.messages[before:]}
        assert (paths["b1"], paths["a1"]) == ("f2", "f1")
        log = await g.call("GET", "/control-log", params={"action": "grid.switch"})
        assert [e["params"]["to"] for e in log] == ["f2"]


@pytest.mark.integration
async def test_registers_survive_a_restart(settings: Settings) -> None:
    async with grid(settings) as g:
        r = await g.step(2)
        assert r["A1"].import_kWh == pytest.approx(2 * PER_MIN, abs=1e-9)
    # meter-sim stopped (saving its registers); a new one carries on from them.
    async with grid_running(settings) as g:
        r = await g.step()
        assert r["A1"].import_kWh == pytest.approx(3 * PER_MIN, abs=1e-9)
        assert (await g.call("GET", "/meter/A1/read"))["import_kWh"] == pytest.approx(3 * PER_MIN, abs=1e-9)
