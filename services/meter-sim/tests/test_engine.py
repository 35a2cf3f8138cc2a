"""The engine on the real broker and database: readings for linked meters only, the clock's controls,
persistence across restarts, and two shards sharing the work."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gridsim_gateway.main import create_app
from gridsim_meter_sim import fleet_repository
from gridsim_meter_sim.__main__ import serve
from gridsim_shared import channels
from gridsim_shared.bus import Bus
from gridsim_shared.commands import meter_sim as commands
from gridsim_shared.db import open_pool
from gridsim_shared.errors import RemoteError
from gridsim_shared.messages import ClockState, MeterReading, ReadingBatch
from gridsim_shared.settings import Settings
from gridsim_shared.testing import Collector, gateway_client, running

pytestmark = pytest.mark.integration

START = datetime(2025, 6, 20, tzinfo=UTC)


async def insert_world(settings: Settings, *, feeders: int = 1) -> dict[str, int]:
    """A tiny world written straight into the tables (the entities API is not needed)."""
    ids: dict[str, int] = {}
    async with open_pool(settings.db, name="test-world") as pool, pool.connection() as conn:

        async def one(sql: str, *args: Any) -> int:
            cur = await conn.execute(sql, args)
            row = await cur.fetchone()
            assert row is not None
            return int(row[0])

        node = "insert into grid_nodes (code, name, level, parent_id, capacity_kva, latitude, longitude) values (%s, %s, %s, %s, %s, 37.77, -122.42) returning id"
        ids["u"] = await one(node, "u1", "Utility", "utility", None, None)
        for f in range(1, feeders + 1):
            ids[f"f{f}"] = await one(node, f"f{f}", f"Feeder {f}", "feeder", ids["u"], None)
            ids[f"t{f}"] = await one(node, f"t{f}", f"Transformer {f}", "transformer", ids[f"f{f}"], 100.0)
        er = "insert into energy_resources (name, type, profile, latitude, longitude) values (%s, %s, %s, 37.77, -122.42) returning id"
        ids["er_prosumer"] = await one(er, "Solar home", "prosumer", "realistic")
        ids["er_flat"] = await one(er, "Flat home", "consumer", "flat")
        ids["er_off"] = await one(er, "Switched off", "consumer", "realistic")
        der = "insert into ders (er_id, appliance_id, quantity, switched_on, lifecycle) values (%s, %s, %s, %s, %s) returning id"
        await one(der, ids["er_prosumer"], 4, 1, True, "connected")  # fridge
        await one(der, ids["er_prosumer"], 1, 6, True, "connected")  # LED bulbs
        await one(der, ids["er_prosumer"], 12, 3, True, "connected")  # solar panels
        await one(der, ids["er_prosumer"], 13, 1, True, "purchased")  # EV charger not connected yet
        await one(der, ids["er_flat"], 2, 1, True, "connected")  # fan
        await one(der, ids["er_flat"], 3, 1, True, "connected")  # TV
        await one(der, ids["er_flat"], 8, 1, False, "connected")  # AC switched off
        await one(der, ids["er_off"], 4, 1, True, "connected")
        meter = (
            "insert into meters (code, transformer_id, er_id, load_factor_consumption, load_factor_production)"
            " values (%s, %s, %s, %s, %s) returning id"
        )
        ids["m_prosumer"] = await one(meter, "MTR-PRO", ids["t1"], ids["er_prosumer"], 1.0, 1.0)
        ids["m_flat"] = await one(meter, "MTR-FLAT", ids["t1"], ids["er_flat"], 0.5, 0.0)
        ids["m_unlinked"] = await one(meter, "MTR-FREE", ids["t1"], None, 1.0, 0.0)
        ids["m_off"] = await one(meter, "MTR-OFF", ids["t1"], ids["er_off"], 0.0, 0.0)
        if feeders > 1:
            er2 = await one(er, "Second feeder home", "consumer", "realistic")
            await one(der, er2, 4, 1, True, "connected")
            ids["m_feeder2"] = await one(meter, "MTR-F2", ids["t2"], er2, 1.0, 0.0)
    return ids


@asynccontextmanager
async def meter_sim(settings: Settings) -> AsyncIterator[Bus]:
    """meter-sim running in-process (ready: its commands are served, its clock loaded), and a test bus."""
    async with Bus(settings.mqtt, "test", "t") as bus, running(serve, settings=settings):
        yield bus


async def step(bus: Bus, intervals: int) -> dict[str, Any]:
    result = await bus.call(commands.STEP, commands.STEP.build(intervals=intervals), timeout=60)
    return result.model_dump(mode="json")


async def test_linked_meters_read_unlinked_and_switched_off_ones_do_not(settings: Settings) -> None:
    await insert_world(settings)
    async with meter_sim(settings) as bus:
        batches = await Collector(bus, channels.BATCH).start()
        singles = await Collector(bus, channels.READING).start()
        result = await step(bus, 3)
        assert result["intervals"] == 3
        assert result["readings"] == 6  # two reporting meters × three intervals
        assert result["stored"] is None  # no aggregator online
        assert result["clock"]["tick"] == 3
        assert result["first_interval"] == "2025-06-20T00:00:00Z"
        assert result["last_interval"] == "2025-06-20T00:02:00Z"
        await batches.wait_for(3)
        await singles.wait_for(6)
        await asyncio.sleep(0.2)  # anything else in flight would arrive now
    assert len(batches.messages) == 3
    assert len(singles.messages) == 6
    stamps = sorted({b.timestamp for b, _ in batches.messages})
    assert stamps == [START + timedelta(minutes=m) for m in range(3)]
    for batch, path in batches.messages:
        assert isinstance(batch, ReadingBatch)
        assert (path.utility, path.feeder, path.transformer) == ("u1", "f1", "t1")
        assert batch.meter_code == ["MTR-PRO", "MTR-FLAT"]
    by_code: dict[str, list[MeterReading]] = {}
    for reading, path in singles.messages:
        assert path.meter == reading.meter_code.lower()
        by_code.setdefault(reading.meter_code, []).append(reading)
    assert set(by_code) == {"MTR-PRO", "MTR-FLAT"}
    for reading in by_code["MTR-FLAT"]:
        # flat profile: the seed's base_kWh × K = (fan 0.00125 + TV 0.002) × 0.5; the switched-off AC adds nothing
        assert reading.consumption_kWh == pytest.approx((0.00125 + 0.002) * 0.5, abs=1e-6)
        assert reading.production_kWh is None
        assert 230 <= reading.avg_voltage <= 250
        assert reading.power_factor is not None
        assert 0.8 <= reading.power_factor <= 1
    for reading in by_code["MTR-PRO"]:
        # 17:00 in San Francisco on 20 June: the sun is up, three 1.2 kW panels produce
        assert reading.production_kWh is not None
        assert reading.production_kWh > 0


async def test_clock_controls_through_the_gateway(settings: Settings) -> None:
    await insert_world(settings)
    async with meter_sim(settings) as bus, gateway_client(create_app(settings)) as http:
        for _ in range(50):  # the gateway learns the clock from the retained topic
            response = await http.get("/simulation-time")
            if response.status_code == 200:
                break
            await asyncio.sleep(0.05)
        body = response.json()
        assert body["current_datetime"] == "2025-06-20T00:00:00Z"
        assert body["state"] == "paused"
        assert body["speed"] == 1440.0
        assert body["interval_s"] == 60

        clocks = await Collector(bus, channels.CLOCK).start()
        response = await http.put("/simulation/speed", json={"speed": 36000})  # 10 intervals a second
        assert response.status_code == 200, response.text
        assert response.json()["speed"] == 36000
        response = await http.post("/simulation/resume")
        assert response.json()["state"] == "running"

        async def ticks_reach(n: int) -> ClockState:
            async with asyncio.timeout(10):
                while True:
                    await clocks.wait_for(len(clocks.messages) + 1)
                    clock: ClockState = clocks.messages[-1][0]
                    if clock.tick >= n:
                        return clock

        running_clock = await ticks_reach(3)
        assert running_clock.state == "running"
        assert running_clock.last_published == running_clock.current_datetime - timedelta(minutes=1)
        assert running_clock.lag_s >= 0
        paused = (await http.post("/simulation/pause")).json()
        assert paused["state"] == "paused"
        assert (await http.post("/simulation/pause")).json()["state"] == "paused"  # idempotent

        stepped = (await http.post("/simulation/step", json={"intervals": 2})).json()
        assert stepped["clock"]["tick"] == paused["tick"] + 2
        assert stepped["readings"] == 4

        response = await http.post("/simulation/jump", json={"to": "2025-12-21T12:00:30Z"})
        assert response.status_code == 200, response.text
        jumped = response.json()
        assert jumped["current_datetime"] == "2025-12-21T12:00:00Z"  # rounded down to the interval
        assert jumped["tick"] == int((datetime(2025, 12, 21, 12, tzinfo=UTC) - START).total_seconds() // 60)
        stepped = (await http.post("/simulation/step", json={"intervals": 1})).json()
        assert stepped["first_interval"] == "2025-12-21T12:00:00Z"

        # every 4xx path: the field and the reason, never a 500
        bad: list[tuple[str, str, Any, str | None]] = [
            ("put", "/simulation/speed", {"speed": 0}, "speed"),
            ("put", "/simulation/speed", {"speed": -5}, "speed"),
            ("put", "/simulation/speed", {"speed": "fast"}, "speed"),
            ("put", "/simulation/speed", {"speed": 1e9}, "speed"),
            ("put", "/simulation/speed", {}, "speed"),
            ("put", "/simulation/speed", {"speed": 10, "extra": 1}, "extra"),
            ("post", "/simulation/jump", {"to": "2025-12-21T12:00:00"}, "to"),  # no time zone
            ("post", "/simulation/jump", {"to": "yesterday"}, "to"),
            ("post", "/simulation/jump", {"to": "2025-06-19T23:59:00Z"}, "to"),  # before the start
            ("post", "/simulation/jump", {}, "to"),
            ("post", "/simulation/step", {"intervals": 0}, "intervals"),
            ("post", "/simulation/step", {"intervals": 44_641}, "intervals"),
            ("post", "/simulation/step", {"intervals": 1.5}, "intervals"),
        ]
        for method, url, payload, field in bad:
            response = await http.request(method.upper(), url, json=payload)
            assert response.status_code == 422, (url, payload, response.text)
            assert response.json()["error"]["field"] == field, (url, payload, response.text)
        response = await http.put(
            "/simulation/speed", content=b"{not json", headers={"content-type": "application/json"}
        )
        assert response.status_code == 422
        response = await http.get("/simulation/step")
        assert response.status_code == 405
        # nothing changed by the rejected requests
        assert (await http.get("/simulation-time")).json()["speed"] == 36000


async def test_clock_commands_are_refused_while_a_long_step_runs(settings: Settings) -> None:
    """A step of many intervals holds the clock; commands meanwhile get a 409, not a queue and a 504."""
    await insert_world(settings)
    # The longest step still answered in the request itself (a longer one becomes a job): lowered from
    # the default 1,440 so that the test takes seconds, still long enough for the four refused requests.
    settings = settings.model_copy(
        update={"gateway": settings.gateway.model_copy(update={"step_job_intervals": 400})}
    )
    intervals = settings.gateway.step_job_intervals
    async with meter_sim(settings), gateway_client(create_app(settings)) as http:
        long_step = asyncio.create_task(http.post("/simulation/step", json={"intervals": intervals}))
        async with asyncio.timeout(30):
            while (response := await http.post("/simulation/pause")).status_code != 409:
                assert response.status_code == 200, response.text  # the step has not started yet
                await asyncio.sleep(0.01)
        assert response.json()["error"]["code"] == "conflict"
        assert f"while a step of {intervals} intervals is running" in response.json()["error"]["message"]
        for method, url, payload in [
            ("put", "/simulation/speed", {"speed": 60}),
            ("post", "/simulation/jump", {"to": "2025-07-01T00:00:00Z"}),
            ("post", "/simulation/step", {"intervals": 1}),
        ]:
            refused = await http.request(method.upper(), url, json=payload)
            assert refused.status_code == 409, (url, refused.text)
        stepped = await long_step
        assert stepped.status_code == 200, stepped.text
        assert stepped.json()["intervals"] == intervals
        assert (await http.post("/simulation/pause")).status_code == 200  # free again


async def test_a_step_asked_while_another_still_holds_the_clock_is_refused_not_queued(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A step ends by writing the clock row; while the database is slow (frozen, restarting) the step
    still holds the clock. A step asked meanwhile (a client whose request timed out asks again) passed
    the refusal and queued behind it, then ran too: the chaos campaign's faulty run stepped 10 intervals
    past its target while PostgreSQL was frozen. It is refused (409) until the first one is done."""
    await insert_world(settings)
    written, release = asyncio.Event(), asyncio.Event()
    save_clock = fleet_repository.save_clock

    async def slow_save(pool: Any, row: fleet_repository.ClockRow) -> None:
        written.set()
        await release.wait()  # the database answers once the second request was answered
        await save_clock(pool, row)

    async with meter_sim(settings) as bus:
        monkeypatch.setattr(fleet_repository, "save_clock", slow_save)
        first = asyncio.create_task(step(bus, 2))
        await asyncio.wait_for(written.wait(), 30)  # stepped, now writing the clock row
        with pytest.raises(RemoteError) as refused:  # queued, it would time out here
            await bus.call(commands.STEP, commands.STEP.build(intervals=2), timeout=10)
        assert refused.value.status == 409
        assert "while a step of 2 intervals is running" in str(refused.value)
        release.set()
        assert (await first)["intervals"] == 2
        assert (await bus.call(commands.CLOCK)).tick == 2  # not 4


async def test_the_clock_resumes_where_it_stopped(settings: Settings) -> None:
    await insert_world(settings)
    async with meter_sim(settings) as bus:
        await step(bus, 5)
        await bus.call(commands.SET_SPEED, commands.SET_SPEED.build(speed=720))
    async with meter_sim(settings) as bus:
        clock = (await bus.call(commands.CLOCK)).model_dump(mode="json")
        assert clock["tick"] == 5
        assert clock["current_datetime"] == "2025-06-20T00:05:00Z"
        assert clock["speed"] == 720
        result = await step(bus, 1)
        assert result["first_interval"] == "2025-06-20T00:05:00Z"


async def test_a_restarted_clock_still_says_what_was_published(settings: Settings) -> None:
    """``last_published`` survives a restart, in the clock's answer and in its retained message. It was
    forgotten (null until the next interval): whoever compares the watermark with it waited for ever once
    the clock stood still (the chaos campaign's recovery probes after its final step), and a follower shard
    took the restarted owner's clock for a jump (not published through) instead of catching up."""
    await insert_world(settings)
    async with meter_sim(settings) as bus:
        await step(bus, 3)
    async with meter_sim(settings) as bus:
        answer = (await bus.call(commands.CLOCK)).model_dump(mode="json")
        assert answer["tick"] == 3
        assert answer["last_published"] == "2025-06-20T00:02:00Z"
        retained = await Collector(bus, channels.CLOCK).start()  # a late subscriber: what the broker keeps
        clock, _path = (await retained.wait_for(1))[-1]
        assert isinstance(clock, ClockState)
        assert clock.tick == 3
        assert clock.last_published == START + timedelta(minutes=2)


async def test_two_shards_share_the_feeders_and_one_owns_the_clock(settings: Settings) -> None:
    await insert_world(settings, feeders=2)
    owner = settings.model_copy(
        update={"sim": settings.sim.model_copy(update={"shard": "0/2", "publish": "batch"})}
    )
    follower = settings.model_copy(
        update={"instance": "1", "sim": settings.sim.model_copy(update={"shard": "1/2", "publish": "batch"})}
    )
    async with running(serve, settings=follower), meter_sim(owner) as bus:
        batches = await Collector(bus, channels.BATCH).start()
        result = await step(bus, 2)
        assert result["shards_caught_up"] is True
        assert result["readings"] == 4  # the owner's own feeder: two meters × two intervals
        await batches.wait_for(4)
    seen = {(path.feeder, tuple(b.meter_code), b.timestamp) for b, path in batches.messages}
    assert seen == {
        ("f1", ("MTR-PRO", "MTR-FLAT"), START),
        ("f1", ("MTR-PRO", "MTR-FLAT"), START + timedelta(minutes=1)),
        ("f2", ("MTR-F2",), START),
        ("f2", ("MTR-F2",), START + timedelta(minutes=1)),
    }
