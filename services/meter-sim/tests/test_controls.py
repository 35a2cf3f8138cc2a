"""Driving the grid on the real broker and database: load factors by scope and their combinations, K = 0
silence and K > 1 amplification on the readings, spikes and generators, the DER lifecycle and its
refusals, meter events on their topics, the control log, and the same commands over MQTT.

The world uses the ``flat`` profile (the seed's base_kWh × K, no randomness) and twin meters at the same
place, so every expectation is exact: a controlled meter is compared with the formula or with its twin.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from gridsim_gateway.main import create_app
from gridsim_meter_sim.__main__ import serve
from gridsim_shared import channels
from gridsim_shared.bus import Bus
from gridsim_shared.commands import meter_sim
from gridsim_shared.db import open_pool
from gridsim_shared.errors import RemoteError
from gridsim_shared.messages import MeterReading
from gridsim_shared.settings import Settings
from gridsim_shared.testing import Collector, gateway_client, running

pytestmark = pytest.mark.integration

FAN, TV, AC, EV, SOLAR = 2, 3, 8, 13, 12
BASE = {FAN: 0.00125, TV: 0.002, AC: 0.025, EV: 0.12}


async def insert_world(settings: Settings) -> dict[str, int]:
    """Two feeders; a parent meter P with a sub-parent Q; flat consumers and twin prosumers.

    P (t1) ─┬─ C1 fan+TV, pincode 111111
            └─ Q ── G1 fan+AC, pincode 111111
    C2 (t1) fan+AC, pincode 222222       X (t2) fan+AC, pincode 111111
    S (t1) fan + 3 panels, pincode 222222   S2 (t2) the same as S
    """
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
        ids["u1"] = await one(node, "u1", "Utility", "utility", None, None)
        for f in (1, 2):
            ids[f"f{f}"] = await one(node, f"f{f}", f"Feeder {f}", "feeder", ids["u1"], None)
            ids[f"t{f}"] = await one(node, f"t{f}", f"Transformer {f}", "transformer", ids[f"f{f}"], 100.0)
        er = (
            "insert into energy_resources (name, type, profile, latitude, longitude)"
            " values (%s, %s, 'flat', 37.77, -122.42) returning id"
        )
        der = "insert into ders (er_id, appliance_id, quantity) values (%s, %s, %s)"
        meter = (
            "insert into meters (code, transformer_id, parent_id, er_id, load_factor_consumption,"
            " load_factor_production, pincode) values (%s, %s, %s, %s, 1, %s, %s) returning id"
        )
        ids["P"] = await one(meter, "P", ids["t1"], None, None, 0, None)
        ids["Q"] = await one(meter, "Q", ids["t1"], ids["P"], None, 0, None)
        homes = {
            "C1": ("consumer", "t1", "P", [FAN, TV], "111111"),
            "G1": ("consumer", "t1", "Q", [FAN, AC], "111111"),
            "C2": ("consumer", "t1", None, [FAN, AC], "222222"),
            "X": ("consumer", "t2", None, [FAN, AC], "111111"),
            "S": ("prosumer", "t1", None, [FAN], "222222"),
            "S2": ("prosumer", "t2", None, [FAN], "333333"),
        }
        for code, (kind, t, parent, appliances, pincode) in homes.items():
            ids[f"er_{code}"] = er_id = await one(er, f"Home {code}", kind)
            for appliance in appliances:
                await conn.execute(der, (er_id, appliance, 1))
            if kind == "prosumer":
                await conn.execute(der, (er_id, SOLAR, 3))
            parent_id = ids[parent] if parent else None
            k_p = 1 if kind == "prosumer" else 0
            ids[code] = await one(meter, code, ids[t], parent_id, er_id, k_p, pincode)
    return ids


def expected(*appliances: int, k: float = 1.0) -> float:
    """The flat profile's one-minute consumption: the seed's base_kWh × K."""
    return sum(BASE[a] for a in appliances) * k


NORMAL = {"C1": expected(FAN, TV), "G1": expected(FAN, AC), "C2": expected(FAN, AC), "X": expected(FAN, AC)}
NORMAL |= {"S": expected(FAN), "S2": expected(FAN)}


@dataclass
class Grid:
    """meter-sim and the gateway running, a test bus, and the readings it has seen."""

    bus: Bus
    http: httpx.AsyncClient
    ids: dict[str, int]
    readings: Collector
    events: Collector

    async def step(self) -> dict[str, MeterReading]:
        """Simulate one interval; its readings by meter code (exactly the meters that reported)."""
        result = await self.bus.call(meter_sim.STEP, meter_sim.STEP.build(intervals=1), timeout=60)
        when = result.last_interval
        async with asyncio.timeout(10):
            while True:
                got = {r.meter_code: r for r, _ in self.readings.messages if r.timestamp == when}
                if len(got) >= result.readings:
                    return got
                await asyncio.sleep(0.01)

    async def post(self, path: str, body: dict[str, Any], status: int = 200) -> Any:
        response = await self.http.post(path, json=body)
        assert response.status_code == status, response.text
        return response.json()

    async def patch(self, path: str, body: dict[str, Any], status: int = 200) -> Any:
        response = await self.http.patch(path, json=body)
        assert response.status_code == status, response.text
        return response.json()


@asynccontextmanager
async def grid(settings: Settings) -> AsyncIterator[Grid]:
    ids = await insert_world(settings)
    async with Bus(settings.mqtt, "test", "t") as bus:
        clocks = await Collector(bus, channels.CLOCK).start()
        readings = await Collector(bus, channels.READING).start()
        events = await Collector(bus, channels.METER_EVENT).start()
        async with running(serve, settings=settings), gateway_client(create_app(settings)) as http:
            await clocks.wait_for(1)
            yield Grid(bus, http, ids, readings, events)


def consumption(readings: dict[str, MeterReading]) -> dict[str, float]:
    return {code: round(r.consumption_kWh or 0.0, 6) for code, r in readings.items()}


def approx(values: dict[str, float]) -> Any:
    return pytest.approx(values, abs=2e-6)


async def test_each_scope_and_their_combinations(settings: Settings) -> None:
    async with grid(settings) as g:
        assert consumption(await g.step()) == approx(NORMAL)

        # one meter, by code: K > 1 amplifies that meter only
        body = await g.post("/meter/control", {"meter_id": "C1", "load_factor": 2})
        assert body["meter_codes"] == ["C1"]
        assert consumption(await g.step()) == approx(NORMAL | {"C1": 2 * NORMAL["C1"]})

        # a parent meter: every descendant (child, sub-parent, grandchild), by integer id
        body = await g.post("/meter/control", {"parent_meter_id": g.ids["P"], "load_factor": 0.5})
        assert body["meter_codes"] == ["Q", "C1", "G1"]
        assert consumption(await g.step()) == approx(
            NORMAL | {"C1": NORMAL["C1"] / 2, "G1": NORMAL["G1"] / 2}
        )

        # an appliance type (alias): every meter whose ER has an AC
        body = await g.post("/meter/control", {"appliance_type": "AC", "load_factor": 3})
        assert body["meter_codes"] == ["G1", "C2", "X"]
        step = consumption(await g.step())
        assert step == approx(
            NORMAL
            | {"C1": NORMAL["C1"] / 2, "G1": 3 * NORMAL["G1"], "C2": 3 * NORMAL["C2"], "X": 3 * NORMAL["X"]}
        )

        # a pincode
        body = await g.post("/meter/control", {"pincode": "111111", "load_factor": 1})
        assert body["meter_codes"] == ["C1", "G1", "X"]
        assert consumption(await g.step()) == approx(NORMAL | {"C2": 3 * NORMAL["C2"]})

        # combinations are an AND: AC ∧ pincode 111111 ∧ below P → G1 only
        body = await g.post(
            "/meter/control",
            {
                "appliance_type": "Air Conditioner",
                "pincode": "111111",
                "parent_meter_id": "P",
                "load_factor": 4,
            },
        )
        assert body["meter_codes"] == ["G1"]
        assert consumption(await g.step()) == approx(
            NORMAL | {"C2": 3 * NORMAL["C2"], "G1": 4 * NORMAL["G1"]}
        )
        body = await g.post("/meter/control", {"appliance_type": "AC", "pincode": "222222", "load_factor": 1})
        assert body["meter_codes"] == ["C2"]

        # bad input: a 4xx naming the field, nothing changed
        for bad, status, field in [
            ({"load_factor": 1}, 422, None),
            ({"meter_id": "C1", "load_factor": -1}, 422, "load_factor"),
            ({"meter_id": "C1", "load_factor": 1, "log_type": "sideways"}, 422, "log_type"),
            ({"meter_id": "NOPE", "load_factor": 1}, 404, "meter_id"),
            ({"parent_meter_id": "NOPE", "load_factor": 1}, 404, "parent_meter_id"),
            ({"appliance_type": "Flux Capacitor", "load_factor": 1}, 422, "appliance_type"),
            ({"pincode": "999999", "load_factor": 1}, 404, None),
        ]:
            response = await g.http.post("/meter/control", json=bad)
            assert response.status_code == status, (bad, response.text)
            if field:
                assert response.json()["error"]["field"] == field, response.text
        assert consumption(await g.step()) == approx(NORMAL | {"G1": 4 * NORMAL["G1"]})


async def test_log_types_silence_and_the_control_log(settings: Settings) -> None:
    async with grid(settings) as g:
        first = await g.step()
        assert first["S"].production_kWh == pytest.approx(first["S2"].production_kWh, abs=1e-9)
        assert first["S"].production_kWh is not None
        assert first["S"].production_kWh > 0  # 17:00 in San Francisco in June

        # production only: consumption untouched, production × 2 against the twin
        await g.post("/meter/control", {"meter_id": "S", "load_factor": 2, "log_type": "production"})
        r = await g.step()
        assert r["S"].consumption_kWh == pytest.approx(NORMAL["S"], abs=1e-6)
        assert r["S"].production_kWh == pytest.approx(2 * (r["S2"].production_kWh or 0), abs=2e-6)

        # consumption only: production untouched
        await g.post("/meter/control", {"meter_id": "S", "load_factor": 0, "log_type": "consumption"})
        r = await g.step()
        assert r["S"].consumption_kWh == 0
        assert r["S"].production_kWh == pytest.approx(2 * (r["S2"].production_kWh or 0), abs=2e-6)

        # both to 0: the meter is OFF and silent; an offline status event on its meter-event topic
        sent = await g.post("/meter/control", {"meter_id": "S", "load_factor": 0, "log_type": "both"})
        assert sent["went_offline"] == [g.ids["S"]]
        r = await g.step()
        assert "S" not in r
        assert set(r) == set(NORMAL) - {"S"}
        await g.events.wait_for(1)
        event, path = g.events.messages[-1]
        assert (event.type, event.data.state, path.meter, path.transformer) == (
            "status",
            "offline",
            "s",
            "t1",
        )

        # back on
        sent = await g.post("/meter/control", {"meter_id": "S", "load_factor": 1, "log_type": "both"})
        assert sent["came_online"] == [g.ids["S"]]
        r = await g.step()
        assert r["S"].consumption_kWh == pytest.approx(NORMAL["S"], abs=1e-6)
        assert r["S"].production_kWh == pytest.approx(r["S2"].production_kWh or 0, abs=1e-9)
        await g.events.wait_for(2)
        assert g.events.messages[-1][0].data.state == "online"

        # the log reads every change back with the simulated time it took effect (the next interval)
        log = (await g.http.get("/control-log", params={"meter": "S", "action": "control"})).json()
        assert [e["params"]["log_type"] for e in log] == ["production", "consumption", "both", "both"]
        assert [e["sim_time"] for e in log] == [
            (first["S"].timestamp + timedelta(minutes=m)).isoformat().replace("+00:00", "Z")
            for m in (1, 2, 3, 4)
        ]
        assert all(e["meter_ids"] == [g.ids["S"]] for e in log)
        window = await g.http.get(
            "/control-log",
            params={"since": log[1]["sim_time"], "until": log[3]["sim_time"], "meter": g.ids["S"]},
        )
        assert [e["id"] for e in window.json()] == [log[1]["id"], log[2]["id"]]
        assert (await g.http.get("/control-log", params={"meter": "NOPE"})).status_code == 404


async def test_spikes_start_duration_shape_on_the_right_meters_only(settings: Settings) -> None:
    async with grid(settings) as g:
        await g.step()
        now = (await g.http.get("/simulation-time")).json()["current_datetime"]

        # a step load spike × 3 on transformer t2 (meters X and S2) for two intervals, from the next one
        spike = await g.post(
            "/spikes",
            {"kind": "load", "scope": "transformer", "target": "t2", "multiplier": 3, "duration_s": 120},
            201,
        )
        assert spike["start"] == now
        assert spike["meter_ids"] == sorted([g.ids["X"], g.ids["S2"]])
        # a spike event, stored (and published on the event topic) for dashboards and agents
        (stored,) = (await g.http.get("/events", params={"type": "spike"})).json()
        assert (stored["subject"], stored["data"]["spike_id"]) == ("t2", spike["id"])
        assert sorted(stored["data"]["meter_codes"]) == ["S2", "X"]
        tripled = NORMAL | {"X": 3 * NORMAL["X"], "S2": 3 * NORMAL["S2"]}
        assert consumption(await g.step()) == approx(tripled)
        assert consumption(await g.step()) == approx(tripled)
        assert consumption(await g.step()) == approx(NORMAL)  # the duration is over

        # a triangle of +6 kW per meter on pincode 111111 over four intervals, starting one interval later
        start = datetime.fromisoformat((await g.http.get("/simulation-time")).json()["current_datetime"])
        await g.post(
            "/spikes",
            {
                "kind": "load",
                "scope": "pincode",
                "target": "111111",
                "kw": 6,
                "duration_s": 240,
                "shape": "triangle",
                "start": (start + timedelta(minutes=1)).isoformat(),
            },
            201,
        )
        assert consumption(await g.step()) == approx(NORMAL)  # not started yet
        for e in (0.25, 0.75, 0.75, 0.25):  # sampled at each interval's midpoint
            added = 6 * e / 60
            assert consumption(await g.step()) == approx(
                NORMAL | {c: NORMAL[c] + added for c in ("C1", "G1", "X")}
            )
        assert consumption(await g.step()) == approx(NORMAL)

        # a source spike on meter S: its production × 2 against its twin; nothing else moves
        source = await g.post(
            "/spikes",
            {"kind": "source", "scope": "meter", "target": "S", "multiplier": 2, "duration_s": 600},
            201,
        )
        r = await g.step()
        assert consumption(r) == approx(NORMAL)
        assert r["S"].production_kWh == pytest.approx(2 * (r["S2"].production_kWh or 0), abs=2e-6)
        cancelled = (await g.http.delete(f"/spikes/{source['id']}")).json()
        assert cancelled["cancelled_at"] is not None
        r = await g.step()
        assert r["S"].production_kWh == pytest.approx(r["S2"].production_kWh or 0, abs=1e-9)

        # a constant 120 kW generator joins feeder f2 one interval from now through its own transformer
        start = datetime.fromisoformat((await g.http.get("/simulation-time")).json()["current_datetime"])
        farm = await g.post(
            "/spikes",
            {
                "kind": "generator",
                "scope": "feeder",
                "target": "f2",
                "kw": 120,
                "generator": "constant",
                "start": (start + timedelta(minutes=1)).isoformat(),
                "name": "Test farm",
            },
            201,
        )
        code = farm["generator_meter_code"]
        assert code == f"GEN-{farm['id']}"
        r = await g.step()
        assert r[code].production_kWh == 0  # installed, not producing yet
        assert consumption(r) == approx(NORMAL | {code: 0.0})
        placed = [p for m, p in g.readings.messages if m.meter_code == code][-1]
        assert (placed.feeder, placed.transformer) == ("f2", f"gen-{farm['id']}")
        for _ in range(2):
            r = await g.step()
            assert r[code].production_kWh == pytest.approx(2.0, abs=1e-6)  # 120 kW for a minute
            assert r["S"].production_kWh == pytest.approx(r["S2"].production_kWh or 0, abs=1e-9)
            assert consumption(r) == approx(NORMAL | {code: 0.0})
        await g.http.delete(f"/spikes/{farm['id']}")
        assert code not in await g.step()  # decommissioned

        listed = (await g.http.get("/spikes")).json()
        assert [s["kind"] for s in listed] == ["generator", "source", "load", "load"]
        assert (await g.http.get("/spikes", params={"active": "true"})).json() == []
        log = (await g.http.get("/control-log", params={"action": "spike."})).json()
        assert [e["action"] for e in log] == [
            "spike.load",
            "spike.load",
            "spike.source",
            "spike.cancel",
            "spike.generator",
            "spike.cancel",
        ]
        for bad, field in [
            ({"scope": "meter", "target": "C1", "duration_s": 60}, None),  # no magnitude
            ({"scope": "meter", "target": "C1", "multiplier": 2}, None),  # no duration
            ({"scope": "planet", "target": "C1", "multiplier": 2, "duration_s": 60}, "scope"),
            ({"kind": "generator", "scope": "pincode", "target": "111111", "kw": 5}, None),
        ]:
            response = await g.http.post("/spikes", json=bad)
            assert response.status_code == 422, response.text
            if field:
                assert response.json()["error"]["field"] == field
        response = await g.http.post(
            "/spikes", json={"scope": "transformer", "target": "f1", "multiplier": 2, "duration_s": 60}
        )
        assert response.status_code == 422
        assert "is a feeder" in response.json()["error"]["message"]
        assert (await g.http.delete("/spikes/999999")).status_code == 404


async def test_der_lifecycle_and_its_refusals(settings: Settings) -> None:
    async with grid(settings) as g:
        er = g.ids["er_C1"]
        # three solar panels bought for C1's home (a consumer): nothing changes yet
        panel = await g.post(
            f"/ers/{er}/ders", {"appliance": "Solar Panel", "quantity": 3, "lifecycle": "purchased"}, 201
        )
        assert (panel["lifecycle"], panel["switched_on"], panel["producing_or_consuming"]) == (
            "purchased",
            False,
            False,
        )
        r = await g.step()
        assert r["C1"].production_kWh is None

        # linking it before installation and connection is refused, with the reason
        refused = await g.patch(f"/ders/{panel['id']}", {"lifecycle": "connected"}, 409)
        assert refused["error"]["field"] == "lifecycle"
        assert "must be installed before it is connected" in refused["error"]["message"]
        refused = await g.patch(f"/ders/{panel['id']}", {"switched_on": True}, 409)
        assert refused["error"]["field"] == "switched_on"
        refused = await g.post("/toggle-der-status", {"der_id": panel["id"]}, 409)
        assert "not connected" in refused["error"]["message"]
        refused = await g.post(
            "/create-der",
            {"er_id": er, "appliance": SOLAR, "lifecycle": "installed", "switched_on": True},
            409,
        )
        assert refused["error"]["field"] == "switched_on"

        assert (await g.patch(f"/ders/{panel['id']}", {"lifecycle": "installed"}))["lifecycle"] == "installed"
        r = await g.step()
        assert r["C1"].production_kWh is None

        # connected: switched on, the home becomes a prosumer and produces exactly as its twin-sized S2
        connected = await g.patch(f"/ders/{panel['id']}", {"lifecycle": "connected"})
        assert (connected["switched_on"], connected["producing_or_consuming"]) == (True, True)
        er_after = (await g.http.get(f"/admin/er/{er}")).json()
        assert er_after["type"] == "prosumer"
        r = await g.step()
        assert r["C1"].production_kWh == pytest.approx(r["S2"].production_kWh, abs=1e-9)
        assert r["C1"].consumption_kWh == pytest.approx(NORMAL["C1"], abs=1e-6)

        # an EV charger added (seed's create-der), then switched off, on, and removed
        ev = await g.post("/create-der", {"er_id": er, "appliance": "EV"}, 201)
        assert (ev["switched_on"], ev["lifecycle"]) == (True, "connected")
        assert (await g.step())["C1"].consumption_kWh == pytest.approx(NORMAL["C1"] + BASE[EV], abs=1e-6)
        toggled = await g.post("/toggle-der-status", {"der_id": ev["id"]})
        assert toggled["switched_on"] is False
        assert (await g.step())["C1"].consumption_kWh == pytest.approx(NORMAL["C1"], abs=1e-6)
        await g.patch(f"/ders/{ev['id']}", {"switched_on": True})
        assert (await g.step())["C1"].consumption_kWh == pytest.approx(NORMAL["C1"] + BASE[EV], abs=1e-6)
        removed = (await g.http.delete(f"/ders/{ev['id']}")).json()
        assert removed["id"] == ev["id"]
        assert (await g.step())["C1"].consumption_kWh == pytest.approx(NORMAL["C1"], abs=1e-6)
        assert (await g.http.get(f"/ders/{ev['id']}")).status_code == 404

        # disconnecting the panel stops its production
        back = await g.patch(f"/ders/{panel['id']}", {"lifecycle": "installed"})
        assert back["switched_on"] is False
        assert (await g.step())["C1"].production_kWh == 0

        ders = (await g.http.get(f"/ers/{er}/ders")).json()
        assert [(d["appliance"], d["lifecycle"]) for d in ders][-1] == (
            "Solar Panel (production)",
            "installed",
        )
        log = (await g.http.get("/control-log", params={"meter": "C1"})).json()
        assert [e["action"] for e in log] == [
            "der_create",
            "der.update",
            "der.update",
            "der_create",
            "der_switch",
            "der.update",
            "der.delete",
            "der.update",
        ]
        assert log[2]["params"] | {"previous": None} == {
            "lifecycle": "connected",
            "switched_on": True,
            "er_type": "prosumer",
            "previous": None,
        }
        assert (await g.http.post(f"/ers/{er}/ders", json={"appliance": "Flux Capacitor"})).status_code == 422
        assert (await g.http.post("/ers/999999/ders", json={"appliance": "EV"})).status_code == 404

        # a PV array's orientation: given when added, changed later, refused out of range
        assert (panel["tilt_deg"], panel["azimuth_deg"]) == (None, None)  # default: 20° facing the equator
        oriented = await g.patch(f"/ders/{panel['id']}", {"tilt_deg": 35, "azimuth_deg": 270})
        assert (oriented["tilt_deg"], oriented["azimuth_deg"]) == (35, 270)
        bad = await g.patch(f"/ders/{panel['id']}", {"azimuth_deg": 360}, 422)
        assert bad["error"]["field"] == "azimuth_deg"
        east = await g.post(
            f"/ers/{er}/ders",
            {"appliance": "Solar Panel", "lifecycle": "purchased", "tilt_deg": 15, "azimuth_deg": 90},
            201,
        )
        assert (east["tilt_deg"], east["azimuth_deg"]) == (15, 90)


async def test_tamper_fault_and_outage_events(settings: Settings) -> None:
    async with grid(settings) as g:
        await g.step()
        tamper = await g.post("/meter/X/events", {"type": "tamper", "message": "cover opened"}, 201)
        assert (tamper["status"], tamper["reporting"]) == ("tampered", True)
        await g.events.wait_for(1)
        event, path = g.events.messages[-1]
        assert (event.type, event.subject, event.message) == ("tamper", "X", "cover opened")
        assert (path.utility, path.feeder, path.transformer, path.meter) == ("u1", "f2", "t2", "x")
        assert "X" in await g.step()  # a tampered meter keeps reporting

        fault = await g.post(f"/meter/{g.ids['C2']}/events", {"type": "fault"}, 201)
        assert (fault["status"], fault["reporting"]) == ("fault", False)
        await g.events.wait_for(3)
        assert [(e.type, e.severity) for e, _ in g.events.messages[1:3]] == [
            ("fault", "critical"),
            ("status", "warning"),
        ]
        assert all(p.type == e.type and p.meter == "c2" for e, p in g.events.messages[1:3])
        r = await g.step()
        assert "C2" not in r  # a faulted meter stops reporting until cleared
        assert consumption(r) == approx({k: v for k, v in NORMAL.items() if k != "C2"})

        await g.post("/meter/S/events", {"type": "outage"}, 201)
        assert "S" not in await g.step()
        cleared = await g.post("/meter/C2/events", {"type": "clear"}, 201)
        assert (cleared["status"], cleared["reporting"]) == ("online", True)
        assert "C2" in await g.step()

        stored = (await g.http.get("/events", params={"subject": "C2"})).json()
        assert [(e["type"], e["data"].get("state")) for e in stored] == [
            ("status", "online"),
            ("status", "offline"),
            ("fault", None),
        ]
        assert [e["type"] for e in (await g.http.get("/events", params={"type": "tamper"})).json()] == [
            "tamper"
        ]
        assert (await g.http.post("/meter/NOPE/events", json={"type": "fault"})).status_code == 404
        response = await g.http.post("/meter/C2/events", json={"type": "meltdown"})
        assert response.status_code == 422
        assert response.json()["error"]["field"] == "type"


async def test_the_same_controls_over_mqtt_with_replies(settings: Settings) -> None:
    async with grid(settings) as g:
        await g.step()
        reply = await g.bus.call(
            meter_sim.CONTROL, meter_sim.CONTROL.build(pincode="222222", appliance_type="AC", load_factor=2)
        )
        assert reply.meter_codes == ["C2"]
        spike = await g.bus.call(
            meter_sim.CREATE_SPIKE,
            meter_sim.CREATE_SPIKE.build(scope="meter", target="X", multiplier=5, duration_s=60),
        )
        der = await g.bus.call(
            meter_sim.ADD_DER, meter_sim.ADD_DER.build(er_id=g.ids["er_G1"], appliance="EV")
        )
        assert der.producing_or_consuming is True
        r = await g.step()
        assert consumption(r) == approx(
            NORMAL | {"C2": 2 * NORMAL["C2"], "X": 5 * NORMAL["X"], "G1": NORMAL["G1"] + BASE[EV]}
        )
        assert [s.id for s in await g.bus.call(meter_sim.LIST_SPIKES, meter_sim.LIST_SPIKES.build())] == [
            spike.id
        ]

        panel = await g.bus.call(
            meter_sim.ADD_DER,
            meter_sim.ADD_DER.build(er_id=g.ids["er_X"], appliance=12, lifecycle="purchased"),
        )
        with pytest.raises(RemoteError) as refused:
            await g.bus.call(
                meter_sim.UPDATE_DER, meter_sim.UPDATE_DER.build(der_id=panel.id, lifecycle="connected")
            )
        assert (refused.value.status, refused.value.field) == (409, "lifecycle")
        with pytest.raises(RemoteError) as invalid:
            # sent unvalidated, so the service validates it (and refuses it)
            await g.bus.call(meter_sim.CONTROL, meter_sim.CONTROL.request.model_construct(load_factor=1))
        assert invalid.value.status == 422

        event = await g.bus.call(meter_sim.METER_EVENT, meter_sim.METER_EVENT.build(meter="G1", type="fault"))
        assert event.reporting is False
        await g.events.wait_for(2)
        assert {e.type for e, _ in g.events.messages} == {"fault", "status"}
        assert "G1" not in await g.step()

        log = await g.bus.call(meter_sim.CONTROL_LOG, meter_sim.CONTROL_LOG.build(meter="G1"))
        assert [e.action for e in log] == ["der_create", "meter_event.fault"]
        events = await g.bus.call(meter_sim.EVENTS, meter_sim.EVENTS.build(subject="G1"))
        assert {e.type for e in events} == {"fault", "status"}
