"""The utility service on the real broker and database, with meter-sim and the aggregator in step mode.

A small San Francisco feeder (homes with EV chargers, water heaters and AC, one without flexible load) is
simulated in hourly intervals for nine days; the utility forecasts, scores and prices it, then a DR event
issued over HTTP reaches an OpenADR VEN (openleadr's client) and, carried out by meter-sim's loads model
(thermostats set back, water heaters and EV charging deferred through ``loads.Flex``), lowers the
enrolled homes' metered load against their CAISO baseline, with a rebound after. A critical-peak price
then moves the enrolled homes' EV charging out of the priced hours.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from openleadr import OpenADRClient  # type: ignore[import-untyped]

from gridsim.embedded import free_port
from gridsim_aggregator.__main__ import serve as serve_aggregator
from gridsim_gateway.main import create_app
from gridsim_meter_sim.__main__ import serve as serve_meter_sim
from gridsim_shared import channels
from gridsim_shared.bus import Bus
from gridsim_shared.db import connect
from gridsim_shared.events import OverloadDetails, TransformerOverloadEvent
from gridsim_shared.settings import Settings
from gridsim_shared.testing import Collector, gateway_client, running
from gridsim_shared.topics import EventPath
from gridsim_utility.__main__ import serve as serve_utility

pytestmark = pytest.mark.integration

# Local midnight in San Francisco on a Monday.
START = datetime(2025, 6, 2, 7, tzinfo=UTC)
SF = {"city": "San Francisco", "latitude": 37.76, "longitude": -122.42}
FLEX = ["Refrigerator", "Television", "LED Bulb", "EV Charger", "Electric Geyser", "Air Conditioner"]
FLEXIBLE = 10
EV_KW = 7.2  # an hourly reading of at least this much: the home's EV was charging at the interval's start


@contextlib.asynccontextmanager
async def _system(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        running(serve_meter_sim, serve_aggregator, serve_utility, settings=settings),
        gateway_client(create_app(settings)) as client,
    ):
        yield client


async def _call(client: httpx.AsyncClient, method: str, path: str, status: int, **kw: Any) -> Any:
    response = await client.request(method, path, **kw)
    assert response.status_code == status, response.text
    return response.json()


async def _world(client: httpx.AsyncClient) -> tuple[list[int], int]:
    """A utility, a feeder, a transformer, ten flexible homes and one without flexible load."""
    await _call(
        client, "POST", "/admin/grid-node", 201, json={"name": "U", "code": "u1", "level": "utility", **SF}
    )
    await _call(
        client,
        "POST",
        "/admin/grid-node",
        201,
        json={"name": "F", "code": "f1", "level": "feeder", "parent_id": "u1", **SF},
    )
    await _call(
        client, "POST", "/admin/grid-node", 201,
        json={"name": "T", "code": "t1", "level": "transformer", "parent_id": "f1", "capacity_kVA": 150, **SF},
    )  # fmt: skip
    homes = []
    for i in range(FLEXIBLE + 1):
        appliances = FLEX if i < FLEXIBLE else ["Refrigerator", "Television", "LED Bulb"]
        er = await _call(
            client,
            "POST",
            "/admin/er",
            201,
            json={"name": f"H{i}", "type": "consumer", "appliance_type": appliances, **SF},
        )
        meter = await _call(client, "POST", "/admin/meter", 201, json={"meter_id": f"UT-{i}", **SF})
        await _call(
            client, "POST", "/admin/meter/link", 200, json={"meter_id": meter["id"], "er_id": er["id"]}
        )
        homes.append(int(meter["id"]))
    return homes[:FLEXIBLE], homes[FLEXIBLE]


async def _step(client: httpx.AsyncClient, intervals: int) -> None:
    result = await _call(client, "POST", "/simulation/step", 200, json={"intervals": intervals})
    assert result["stored"] is True, result


async def _until(
    client: httpx.AsyncClient, path: str, predicate: Any, timeout: float = 60, **params: Any
) -> Any:
    async with asyncio.timeout(timeout):
        while True:
            response = await client.get(path, params=params)
            assert response.status_code == 200, response.text
            body = response.json()
            if predicate(body):
                return body
            await asyncio.sleep(0.2)


async def _readings(settings: Settings, meter_ids: list[int], start: datetime, end: datetime) -> list[float]:
    """Every hourly consumption reading of the meters in [start, end)."""
    async with await connect(settings.db.url, settings.db.schema_name) as conn:
        cur = await conn.execute(
            "select consumption_kwh from meter_data where meter_id = any(%s) and ts >= %s and ts < %s",
            (meter_ids, start, end),
        )
        return [float(r[0]) for r in await cur.fetchall()]


async def _hourly(settings: Settings, meter_ids: list[int], start: datetime, end: datetime) -> float:
    async with await connect(settings.db.url, settings.db.schema_name) as conn:
        cur = await conn.execute(
            "select coalesce(sum(consumption_kwh), 0) from meter_data where meter_id = any(%s) and ts >= %s and ts < %s",
            (meter_ids, start, end),
        )
        row = await cur.fetchone()
        assert row is not None
        return float(row[0])


@pytest.mark.timeout(600)  # nine simulated days, then three events: minutes on a loaded machine
async def test_forecasts_prices_and_a_dr_event_through_openadr(settings: Settings) -> None:
    port = free_port()
    settings = settings.model_copy(
        update={
            # A loaded machine stores nine days of readings slowly: wait for them longer than usual.
            "sim": settings.sim.model_copy(
                update={"start": START, "interval_s": 3600, "step_ack_timeout_s": 180}
            ),
            "utility": settings.utility.model_copy(update={"openadr_port": port}),
        }
    )
    received: list[dict[str, Any]] = []

    async def on_event(event: dict[str, Any]) -> str:
        received.append(event)
        return "optIn"

    async with _system(settings) as client, Bus(settings.mqtt, "watcher", "0") as bus:
        forecasts = await Collector(
            bus, channels.FORECAST, model="regression", horizon="day-ahead", level="utility"
        ).start()
        prices = await Collector(bus, channels.PRICE, level="feeder").start()
        flexible, plain = await _world(client)
        await _step(client, 9 * 24)  # nine days: a week for the seasonal-naive lag, two days scored

        # Forecasts issued each hour, published, and scored against what the simulator then produced.
        (msg, path), *_ = await forecasts.wait_for(1, timeout=60)
        assert path.node == "u1"
        assert msg.points
        assert all(p.load_kWh > 0 for p in msg.points)
        view = await _until(client, "/forecast", lambda b: len(b["points"]) >= 24, node="u1", hours=72)
        metered = [p for p in view["points"] if p["actual_kWh"] is not None]
        assert metered
        assert all(p["regression_kWh"] is not None and p["seasonal_naive_kWh"] is not None for p in metered)
        scores = await _until(
            client, "/forecast/scores", lambda b: bool(b) and all(r["hours"] > 0 for r in b)
        )
        assert {(r["node_code"], r["horizon"], r["model"]) for r in scores} >= {
            ("u1", "day-ahead", "regression"), ("f1", "hour-ahead", "seasonal-naive"),
        }  # fmt: skip
        assert all(
            r["mape_pct"] is not None and r["mape_pct"] >= 0 for r in scores if r["quantity"] == "load"
        )
        (price_msg, _), *_ = await prices.wait_for(1, timeout=30)
        assert len(price_msg.schedule) == 24
        assert price_msg.current.price > 0
        price = await _call(client, "GET", "/price", 200, params={"node": "f1"})
        assert {p["period"] for p in price["schedule"]} >= {"peak", "off-peak"}

        # Bad input: clear 4xx naming the field, nothing half-applied.
        program = await _call(
            client, "POST", "/dr/programs", 201,
            json={"name": "EV DLC", "kind": "dlc", "event_credit": 50, "compliance": 1.0, "rebound_share": 0.6},
        )  # fmt: skip
        bad = await _call(
            client, "POST", "/dr/enrolments", 422, json={"program_id": program["id"], "meter_id": plain}
        )
        assert bad["error"]["field"] == "meter_id"
        missing = await _call(
            client, "POST", "/dr/enrolments", 404, json={"program_id": 999, "meter_id": flexible[0]}
        )
        assert missing["error"]["field"] == "program_id"
        for meter_id in flexible:
            await _call(
                client,
                "POST",
                "/dr/enrolments",
                201,
                json={"program_id": program["id"], "meter_id": meter_id},
            )
        await _call(
            client, "POST", "/dr/enrolments", 409, json={"program_id": program["id"], "meter_id": flexible[0]}
        )
        now = datetime.fromisoformat((await client.get("/simulation-time")).json()["current_datetime"])
        past = await _call(
            client, "POST", "/dr/events", 422,
            json={"program_id": program["id"], "start": (now - timedelta(hours=1)).isoformat()},
        )  # fmt: skip
        assert past["error"]["field"] == "start"

        # An OpenADR VEN registers, and receives the event created over HTTP.
        ven = OpenADRClient(ven_name="test-ven", vtn_url=f"http://127.0.0.1:{port}/OpenADR2/Simple/2.0b")
        ven.add_handler("on_event", on_event)
        await ven.run()
        try:
            async with asyncio.timeout(30):
                while ven.ven_id is None:
                    await asyncio.sleep(0.1)
            start = now + timedelta(hours=18)  # 18:00-20:00 local: EVs arrive home, water is drawn
            event = await _call(
                client, "POST", "/dr/events", 201,
                json={"program_id": program["id"], "start": start.isoformat(), "duration_min": 120, "level": 3},
            )  # fmt: skip
            assert all(p["complied"] for p in event["participants"])
            overlap = await _call(
                client, "POST", "/dr/events", 409,
                json={"program_id": program["id"], "start": (start + timedelta(hours=1)).isoformat()},
            )  # fmt: skip
            assert overlap["error"]["field"] == "start"
            async with asyncio.timeout(30):
                while not received:
                    await asyncio.sleep(0.1)
        finally:
            await ven.stop()
        signal = received[0]["event_signals"][0]
        assert signal["signal_name"] == "simple"
        assert signal["intervals"][0]["signal_payload"] == 3.0
        assert received[0]["event_descriptor"]["event_id"] == f"gridsim-dr-{event['id']}-r0"
        assert start.isoformat() in received[0]["event_descriptor"]["vtn_comment"]

        # The event's effect in the readings, measured against the CAISO baseline, then the rebound.
        await _step(client, 18 + 2 + 4)
        done = await _until(client, f"/dr/events/{event['id']}", lambda b: b["shed_kWh"] is not None)
        end = start + timedelta(hours=2)
        during = await _hourly(settings, flexible, start, end)
        after = await _hourly(settings, flexible, end, end + timedelta(hours=2))

        # A transformer reported overloaded: an event now for the participants under it.
        auto = await _call(
            client, "POST", "/dr/programs", 201,
            json={"name": "Overload DLC", "kind": "dlc", "auto_overload": True, "compliance": 1.0},
        )  # fmt: skip
        for meter_id in flexible:
            await _call(
                client, "POST", "/dr/enrolments", 201, json={"program_id": auto["id"], "meter_id": meter_id}
            )
        now = datetime.fromisoformat((await client.get("/simulation-time")).json()["current_datetime"])
        overload = TransformerOverloadEvent(
            type="transformer_overload",
            severity="critical",
            timestamp=now,
            subject="t1",
            message="hot spot 125 °C",
            data=OverloadDetails(
                node_id=1, loading_pct=150.0, apparent_kVA=75.0, capacity_kVA=50.0, hot_spot_c=125.0
            ),
        )
        await bus.publish(channels.EVENT, overload, EventPath("transformer_overload", "t1"))
        events = await _until(client, "/dr/events", lambda b: any(e["trigger"] == "overload" for e in b))
        log = await _call(client, "GET", "/dr/log", 200)

        # A price change shifts enrolled EV charging: a critical-peak price 18:00-21:00 local tomorrow.
        cpp = await _call(
            client, "POST", "/dr/programs", 201,
            json={"name": "EV CPP", "kind": "cpp", "cpp_rate": 60.0, "compliance": 1.0},
        )  # fmt: skip
        for meter_id in flexible:
            await _call(
                client, "POST", "/dr/enrolments", 201, json={"program_id": cpp["id"], "meter_id": meter_id}
            )
        peak = now + timedelta(hours=18)
        await _call(
            client, "POST", "/dr/events", 201,
            json={"program_id": cpp["id"], "start": peak.isoformat(), "duration_min": 180},
        )  # fmt: skip
        await _step(client, 17)
        priced = await _call(client, "GET", "/price", 200, params={"node": "f1"})
        await _step(client, 3 + 4)
        window = await _readings(settings, flexible, peak, peak + timedelta(hours=3))
        after_peak = await _readings(settings, flexible, peak + timedelta(hours=3), peak + timedelta(hours=6))
        usual = [
            await _readings(settings, flexible, peak - timedelta(days=d), peak - timedelta(days=d, hours=-3))
            for d in (2, 3, 7)  # the same hours on earlier weekdays (the DLC event's day left out)
        ]

    assert done["status"] == "completed"
    assert done["shed_kWh"] > 0  # Σ CAISO baseline − Σ metered over the event hours
    assert done["rebound_kWh"] is not None
    assert done["rebound_kWh"] > 0
    # Single participants' hours are noisy (an EV session or not); the enrolled load as a whole is shed.
    assert all(p["credit"] == 50.0 and p["shed_factor"] < 1 for p in done["participants"])
    assert sum(p["metered_kWh"] for p in done["participants"]) == pytest.approx(during, abs=0.01)
    assert after > 0
    (auto_event,) = [e for e in events if e["trigger"] == "overload"]
    assert auto_event["program_id"] == auto["id"]
    assert auto_event["level"] == 3
    assert {p["meter_id"] for p in auto_event["participants"]} == set(flexible)
    assert auto_event["status"] in ("scheduled", "active")
    # The critical-peak price is published for the window, and the enrolled EVs charge outside it:
    # on ordinary days some charge in those hours; under the price none does, and they catch up after.
    assert [p["period"] for p in priced["schedule"] if peak <= datetime.fromisoformat(p["timestamp"])][
        :3
    ] == ["critical-peak"] * 3
    assert any(kwh >= EV_KW for day in usual for kwh in day)
    assert len(window) == 3 * FLEXIBLE
    assert not any(kwh >= EV_KW for kwh in window)
    assert any(kwh >= EV_KW for kwh in after_peak)
    assert {"program.create", "enrol", "event.create", "openadr.register", "event.evaluated"} <= {
        e["action"] for e in log
    }
