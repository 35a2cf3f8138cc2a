"""Billing through the gateway, in-process, on the real broker and database.

Readings here are rows written into the aggregator's rollup tables (the end-to-end test with the simulator
and the aggregator is ``tests/test_e2e_billing.py``). The clock is the ``simulation_clock`` row; a month
closes (its final bills are stored) when :func:`close` publishes a retained clock and watermark past its end,
as meter-sim and the aggregator do: never when a bill is read.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from gridsim_billing import handlers
from gridsim_billing.__main__ import serve as serve_billing
from gridsim_gateway.main import create_app
from gridsim_shared import channels
from gridsim_shared.bus import Bus
from gridsim_shared.db import connect
from gridsim_shared.messages import ClockState, Watermark
from gridsim_shared.schemas.billing import Bill
from gridsim_shared.settings import Settings
from gridsim_shared.testing import Collector, gateway_client, rollup_table, running
from gridsim_shared.topics import NoPath

pytestmark = pytest.mark.integration

MAY = datetime(2025, 5, 1, tzinfo=UTC)
JUNE = datetime(2025, 6, 1, tzinfo=UTC)
NOW = datetime(2025, 6, 20, tzinfo=UTC)
# The simulation started in April: April and May close at NOW.
START = datetime(2025, 4, 1, tzinfo=UTC)
BILLING_TABLES = ("bills", "p2p_settlements", "p2p_trades", "billing_months")


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"sim": settings.sim.model_copy(update={"start": START})})


async def _sql(settings: Settings, query: str, params: Any = None) -> list[tuple[Any, ...]]:
    async with await connect(settings.db.url, settings.db.schema_name, autocommit=True) as conn:
        cur = await conn.execute(query, params)
        return await cur.fetchall() if cur.description else []


async def set_clock(settings: Settings, now: datetime) -> None:
    """meter-sim's clock row, as it would be."""
    await _sql(
        settings,
        "insert into simulation_clock (current_datetime, speed, interval_s, state) values (%s, 1440, 60, 'paused')"
        " on conflict (id) do update set current_datetime = excluded.current_datetime",
        (now,),
    )


async def meter(settings: Settings, code: str, kind: str | None) -> int:
    """A meter (linked to an ER of ``kind`` unless None); returns its id."""
    er_id = None
    if kind is not None:
        rows = await _sql(
            settings, "insert into energy_resources (name, type) values (%s, %s) returning id", (code, kind)
        )
        er_id = rows[0][0]
    rows = await _sql(
        settings, "insert into meters (code, er_id) values (%s, %s) returning id", (code, er_id)
    )
    return int(rows[0][0])


async def energy(
    settings: Settings, meter_id: int, start: datetime, hours: int, *, consumed: float, produced: float = 0.0
) -> None:
    """Spread ``consumed``/``produced`` kWh evenly over ``hours`` hourly rollups, then rebuild the daily ones."""
    hourly = await rollup_table(settings, "meter_data_1h")
    daily = await rollup_table(settings, "meter_data_1d")
    await _sql(
        settings,
        f"insert into {hourly} (meter_id, bucket, consumption_kwh, production_kwh, readings)"
        " select %(m)s, %(s)s + make_interval(hours => h), %(c)s::float8 / %(n)s, %(p)s::float8 / %(n)s, 60"
        " from generate_series(0, %(n)s - 1) h"
        f" on conflict (meter_id, bucket) do update set consumption_kwh = {hourly}.consumption_kwh"
        f" + excluded.consumption_kwh, production_kwh = {hourly}.production_kwh + excluded.production_kwh",
        {"m": meter_id, "s": start, "n": hours, "c": consumed, "p": produced},
    )
    await _sql(settings, f"delete from {daily} where meter_id = %s", (meter_id,))
    await _sql(
        settings,
        f"insert into {daily} (meter_id, bucket, consumption_kwh, production_kwh, readings)"
        " select meter_id, date_trunc('day', bucket at time zone 'UTC') at time zone 'UTC',"
        f" sum(consumption_kwh), sum(production_kwh), sum(readings) from {hourly} where meter_id = %s"
        " group by 1, 2",
        (meter_id,),
    )


async def close(
    settings: Settings,
    now: datetime = NOW,
    committed: datetime | None = None,
    expected: tuple[str, ...] = ("2025-04", "2025-05"),
) -> None:
    """Publish the clock at ``now`` and the watermark at ``committed`` (retained, as meter-sim and the
    aggregator do); wait until billing has closed exactly the ``expected`` months."""
    committed = committed or now
    async with Bus(settings.mqtt, "clock", "0") as bus:
        clock = ClockState(current_datetime=now, state="paused", speed=1440, interval_s=60, tick=0)
        await bus.publish(channels.CLOCK, clock, NoPath())
        await bus.publish(channels.WATERMARK, Watermark(committed_until=committed), NoPath())
    async with asyncio.timeout(30):
        while await _sql(
            settings, "select month from billing_months where completed_at is not null order by month"
        ) != [(m,) for m in expected]:
            await asyncio.sleep(0.05)


async def snapshot(settings: Settings) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of billing's tables, in a stable order."""
    return {t: await _sql(settings, f"select * from {t} order by 1, 2") for t in BILLING_TABLES}


@contextlib.asynccontextmanager
async def _app(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with running(serve_billing, settings=settings), gateway_client(create_app(settings)) as client:
        yield client


@dataclass
class World:
    """Two consumers, two prosumers, one unlinked meter (ids)."""

    c1: int
    c2: int
    p1: int
    p2: int
    unlinked: int


async def world(settings: Settings) -> World:
    """The meters every test uses; the clock at 2025-06-20."""
    await set_clock(settings, datetime(2025, 6, 20, tzinfo=UTC))
    return World(
        c1=await meter(settings, "C1", "consumer"),
        c2=await meter(settings, "C2", "consumer"),
        p1=await meter(settings, "P1", "prosumer"),
        p2=await meter(settings, "P2", "prosumer"),
        unlinked=await meter(settings, "U1", None),
    )


async def trade(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    response = await client.post("/p2p-trade", json=body)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    assert (result["status"], result["message"]) == ("success", "Trade posted successfully")
    return dict(result["trade"])


async def bill(client: httpx.AsyncClient, meter_ref: int | str, month: str) -> dict[str, Any]:
    response = await client.get("/bill", params={"meter_id": meter_ref, "month": month})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == set(Bill.model_fields)  # every field of the Bill schema, always
    return body


def _error(response: httpx.Response, status: int, field: str | None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["field"] == field, error
    return error


# ---------------------------------------------------------------- the seed's examples, final bills
async def test_seed_examples_as_final_bills(settings: Settings) -> None:
    """C1 consumed 150 and bought 30 for 150 → 870; P1 consumed 100, produced 120, sold 40 for 550 → −190."""
    w = await world(settings)
    await energy(settings, w.c1, MAY, 24 * 31, consumed=150)
    await energy(settings, w.p1, MAY, 24 * 31, consumed=100, produced=120)
    async with _app(settings) as client:
        await trade(
            client,
            buyer_meter_id="C1",
            seller_meter_id="P1",
            units_kWh=30,
            price_per_kWh=5,
            timestamp="2025-05-10T10:00:00Z",
        )
        await trade(
            client,
            buyer_meter_id=w.c2,
            seller_meter_id=w.p1,
            units_kWh=10,
            price_per_kWh=40,
            timestamp="2025-05-20T10:00:00Z",
        )
        await close(settings)
        consumer = await bill(client, "c1", "2025-05")
        prosumer = await bill(client, w.p1, "2025-05")

    assert consumer["status"] == "final"
    assert consumer["id"] is not None
    assert {k: consumer[k] for k in ("type", "total_consumed_kWh", "p2p_kWh", "grid_units_used_kWh")} == {
        "type": "consumer",
        "total_consumed_kWh": 150.0,
        "p2p_kWh": 30.0,
        "grid_units_used_kWh": 120.0,
    }
    assert (consumer["grid_rate"], consumer["p2p_cost"], consumer["amount_due"]) == (6.0, 150.0, 870.0)
    assert {
        k: prosumer[k]
        for k in (
            "type",
            "total_consumed_kWh",
            "total_produced_kWh",
            "p2p_kWh",
            "grid_units_used_kWh",
            "grid_units_exported_kWh",
            "p2p_earning",
            "grid_earning",
            "amount_due",
        )
    } == {
        "type": "prosumer",
        "total_consumed_kWh": 100.0,
        "total_produced_kWh": 120.0,
        "p2p_kWh": 40.0,
        "grid_units_used_kWh": 100.0,
        "grid_units_exported_kWh": 80.0,
        "p2p_earning": 550.0,
        "grid_earning": 240.0,
        "amount_due": -190.0,
    }
    assert prosumer["period_start"] == "2025-05-01T00:00:00Z"
    assert prosumer["generated_at"] == "2025-06-20T00:00:00Z"  # the simulated time May was closed


async def test_final_bill_is_stored_once_and_returned_unchanged(settings: Settings) -> None:
    w = await world(settings)
    await energy(settings, w.c1, MAY, 24, consumed=10)
    async with _app(settings) as client:
        await close(settings)
        first = await bill(client, w.c1, "2025-05")
        await energy(settings, w.c1, MAY + timedelta(days=3), 24, consumed=90)  # a late reading
        await set_clock(settings, datetime(2025, 6, 25, tzinfo=UTC))
        await close(settings, datetime(2025, 6, 25, tzinfo=UTC))
        again = await bill(client, w.c1, "2025-05")
        in_page = (await client.get("/bills", params={"month": "2025-05"})).json()["items"]
    assert again == first
    assert first["amount_due"] == 60.0
    assert next(b for b in in_page if b["meter_id"] == w.c1) == first
    assert await _sql(
        settings, "select count(*) from bills where meter_id = %s and month = %s", (w.c1, "2025-05")
    ) == [(1,)]


async def test_current_month_is_provisional_and_follows_the_data(settings: Settings) -> None:
    w = await world(settings)
    await energy(settings, w.c1, JUNE, 24, consumed=10)
    async with _app(settings) as client:
        first = await bill(client, w.c1, "2025-06")
        await energy(settings, w.c1, JUNE + timedelta(days=1), 24, consumed=5)
        second = await bill(client, w.c1, "2025-06")
    assert (first["status"], first["id"], first["amount_due"]) == ("provisional", None, 60.0)
    assert (second["status"], second["amount_due"]) == ("provisional", 90.0)
    assert await _sql(settings, "select count(*) from bills") == [(0,)]


async def test_month_without_data_is_a_zero_bill(settings: Settings) -> None:
    w = await world(settings)
    async with _app(settings) as client:
        await close(settings)
        empty = await bill(client, w.p2, "2025-04")
        # March is before the simulation's start: never closed, so computed on each read (and zero).
        before = await bill(client, w.p2, "2025-03")
    assert empty["status"] == "final"
    assert (empty["total_consumed_kWh"], empty["total_produced_kWh"], empty["amount_due"]) == (0.0, 0.0, 0.0)
    assert (before["status"], before["id"], before["amount_due"]) == ("provisional", None, 0.0)


# ---------------------------------------------------------------- settlement
async def test_oversold_seller_delivers_first_come_first_served(settings: Settings) -> None:
    """P2 produced 10 kWh in May and sold 6 + 6 + 3: the first trade gets 6, the second 4, the third 0."""
    w = await world(settings)
    await energy(settings, w.p2, MAY, 24 * 31, consumed=0, produced=10)
    await energy(settings, w.c1, MAY, 24 * 31, consumed=50)
    await energy(settings, w.c2, MAY, 24 * 31, consumed=50)
    async with _app(settings) as client:
        # Posted out of time order: the allocation follows the trades' time, not their arrival.
        late = await trade(
            client,
            buyer_meter_id=w.c1,
            seller_meter_id=w.p2,
            units_kWh=3,
            price_per_kWh=4,
            timestamp="2025-05-25T00:00:00Z",
        )
        first = await trade(
            client,
            buyer_meter_id=w.c1,
            seller_meter_id=w.p2,
            units_kWh=6,
            price_per_kWh=4,
            timestamp="2025-05-02T00:00:00Z",
        )
        second = await trade(
            client,
            buyer_meter_id=w.c2,
            seller_meter_id=w.p2,
            units_kWh=6,
            price_per_kWh=5,
            timestamp="2025-05-03T00:00:00Z",
        )
        before = (await client.get("/p2p-trades", params={"meter_id": "P2", "month": "2025-05"})).json()
        await close(settings)  # closing May settles P2's May for good
        c2_bill = await bill(client, w.c2, "2025-05")
        after = (await client.get("/p2p-trades", params={"meter_id": w.p2, "role": "seller"})).json()
        one = (await client.get(f"/p2p-trades/{second['id']}")).json()
        p2_bill = await bill(client, "P2", "2025-05")
        c1_bill = await bill(client, w.c1, "2025-05")

    assert [t["id"] for t in before["items"]] == [first["id"], second["id"], late["id"]]
    assert [(t["contracted_kWh"], t["delivered_kWh"]) for t in before["items"]] == [(6, 6), (6, 4), (3, 0)]
    assert {t["settlement"] for t in before["items"]} == {"provisional"}
    assert [(t["delivered_kWh"], t["settlement"]) for t in after["items"]] == [
        (6, "settled"),
        (4, "settled"),
        (0, "settled"),
    ]
    assert (one["delivered_kWh"], one["delivered_value"], one["total_price"]) == (4.0, 20.0, 30.0)
    # Bills use delivered quantities: C2 pays for 4 kWh, not 6; P2 earns for 10, exports nothing.
    assert (c2_bill["p2p_kWh"], c2_bill["p2p_contracted_kWh"], c2_bill["p2p_cost"]) == (4.0, 6.0, 20.0)
    assert c2_bill["amount_due"] == 46 * 6 + 20
    assert (p2_bill["p2p_kWh"], p2_bill["grid_units_exported_kWh"], p2_bill["p2p_earning"]) == (
        10.0,
        0.0,
        44.0,
    )
    assert p2_bill["amount_due"] == -44.0
    assert (c1_bill["p2p_kWh"], c1_bill["p2p_cost"]) == (6.0, 24.0)
    assert await _sql(
        settings, "select produced_kwh, contracted_kwh, delivered_kwh from p2p_settlements"
    ) == [(Decimal(10), Decimal(15), Decimal(10))]


async def test_trades_at_month_boundaries_belong_to_the_month_of_their_time(settings: Settings) -> None:
    w = await world(settings)
    await energy(settings, w.p1, MAY, 24 * 45, consumed=0, produced=100)
    await energy(settings, w.c1, MAY, 24 * 45, consumed=100)
    async with _app(settings) as client:
        last = await trade(
            client,
            buyer_meter_id=w.c1,
            seller_meter_id=w.p1,
            units_kWh=1,
            price_per_kWh=2,
            timestamp="2025-05-31T23:59:59Z",
        )
        first = await trade(
            client,
            buyer_meter_id=w.c1,
            seller_meter_id=w.p1,
            units_kWh=2,
            price_per_kWh=2,
            timestamp="2025-06-01T00:00:00Z",
        )
        may = (await client.get("/p2p-trades", params={"meter_id": w.c1, "month": "2025-05"})).json()
        june = (await client.get("/p2p-trades", params={"meter_id": w.c1, "month": "2025-06"})).json()
        may_bill = await bill(client, w.c1, "2025-05")
        june_bill = await bill(client, w.c1, "2025-06")
    assert (last["month"], first["month"]) == ("2025-05", "2025-06")
    assert [t["id"] for t in may["items"]] == [last["id"]]
    assert may["total"] == 1
    assert [t["id"] for t in june["items"]] == [first["id"]]
    assert (may_bill["p2p_kWh"], june_bill["p2p_kWh"]) == (1.0, 2.0)


async def test_trade_defaults_to_now_and_publishes_an_event(settings: Settings) -> None:
    w = await world(settings)
    async with _app(settings) as client, Bus(settings.mqtt, "listener", "0") as bus:
        events = await Collector(bus, channels.EVENT, type="p2p-trade").start()
        made = await trade(
            client, buyer_meter_id=w.c1, seller_meter_id=w.p1, units_kWh=5.0, price_per_kWh=5.5
        )
        ((event, path),) = await events.wait_for(1)
    assert made["timestamp"] == "2025-06-20T00:00:00Z"
    assert made["month"] == "2025-06"
    assert (made["units_kWh"], made["price_per_kWh"], made["total_price"]) == (5.0, 5.5, 27.5)
    assert (path.type, path.subject) == ("p2p-trade", "p1")
    assert str(event.data.id) == made["id"]


# ---------------------------------------------------------------- many bills, tariffs
async def test_bills_for_a_month_are_paginated(settings: Settings) -> None:
    w = await world(settings)
    await energy(settings, w.c2, MAY, 24, consumed=1)
    async with _app(settings) as client:
        await close(settings)
        page1 = (await client.get("/bills", params={"month": "2025-05", "page_size": 3})).json()
        page2 = (await client.get("/bills", params={"month": "2025-05", "page_size": 3, "page": 2})).json()
    assert (page1["total"], page1["status"], len(page1["items"]), len(page2["items"])) == (4, "final", 3, 1)
    ids = [b["meter_id"] for b in page1["items"] + page2["items"]]
    assert ids == [w.c1, w.c2, w.p1, w.p2]  # the unlinked meter has no bill
    assert page1["items"][1]["amount_due"] == 6.0


async def test_time_of_use_tariff_shows_the_split(settings: Settings) -> None:
    tou = settings.model_copy(
        update={"billing": settings.billing.model_copy(update={"tou_peak_rate": Decimal(9)})}
    )
    w = await world(tou)
    # One day: 1 kWh every hour, so 5 of 24 kWh fall in the 16:00–21:00 peak.
    await energy(tou, w.c1, MAY, 24, consumed=24)
    async with _app(tou) as client:
        body = await bill(client, w.c1, "2025-05")
    assert body["tariff"] == "tou"
    assert body["tou"] == {
        "timezone": "UTC",
        "peak_start_hour": 16,
        "peak_end_hour": 21,
        "peak_rate": 9.0,
        "offpeak_rate": 6.0,
        "peak_kWh": 5.0,
        "offpeak_kWh": 19.0,
        "peak_cost": 45.0,
        "offpeak_cost": 114.0,
    }
    assert body["amount_due"] == 159.0


# ---------------------------------------------------------------- every 4xx
async def test_trade_validation_names_the_field(settings: Settings) -> None:
    w = await world(settings)
    good = {"buyer_meter_id": w.c1, "seller_meter_id": w.p1, "units_kWh": 1, "price_per_kWh": 5}
    cases: list[tuple[dict[str, Any], int, str | None]] = [
        ({**good, "buyer_meter_id": "NOPE"}, 404, "buyer_meter_id"),
        ({**good, "seller_meter_id": 999999}, 404, "seller_meter_id"),
        ({**good, "seller_meter_id": w.c2}, 422, "seller_meter_id"),  # a consumer cannot sell
        ({**good, "seller_meter_id": w.unlinked}, 422, "seller_meter_id"),
        ({**good, "buyer_meter_id": w.unlinked}, 422, "buyer_meter_id"),
        ({**good, "buyer_meter_id": "p1"}, 422, "seller_meter_id"),  # the same meter, by code
        ({**good, "units_kWh": 0}, 422, "units_kWh"),
        ({**good, "units_kWh": -2}, 422, "units_kWh"),
        ({**good, "units_kWh": "NaN"}, 422, "units_kWh"),
        ({**good, "units_kWh": "Infinity"}, 422, "units_kWh"),
        ({**good, "units_kWh": "five"}, 422, "units_kWh"),
        ({**good, "price_per_kWh": 0}, 422, "price_per_kWh"),
        ({**good, "price_per_kWh": -1.5}, 422, "price_per_kWh"),
        ({**good, "price_per_kWh": "-Infinity"}, 422, "price_per_kWh"),
        ({**good, "timestamp": "2025-06-20T00:00:01Z"}, 422, "timestamp"),  # one second in the future
        ({**good, "timestamp": "2025-06-01T00:00:00"}, 422, "timestamp"),  # no time zone
        ({**good, "timestamp": "yesterday"}, 422, "timestamp"),
        ({k: v for k, v in good.items() if k != "units_kWh"}, 422, "units_kWh"),
        ({**good, "colour": "green"}, 422, "colour"),
    ]
    async with _app(settings) as client:
        for body, status, field in cases:
            _error(await client.post("/p2p-trade", json=body), status, field)
        malformed = await client.post(
            "/p2p-trade", content=b"{not json", headers={"content-type": "application/json"}
        )
        assert malformed.status_code == 422
        # A closed month takes no new trade, between any meters.
        await trade(client, **{**good, "timestamp": "2025-04-15T00:00:00Z"})
        await close(settings)
        for buyer, ts in ((w.c1, "2025-05-15T00:00:00Z"), (w.c2, "2025-04-16T00:00:00Z")):
            body = {**good, "buyer_meter_id": buyer, "timestamp": ts}
            error = _error(await client.post("/p2p-trade", json=body), 409, "timestamp")
            assert "final bill" in error["message"] or "closed" in error["message"], error
    assert await _sql(settings, "select count(*) from p2p_trades") == [(1,)]  # nothing half-written
    # ...and the April trade was settled when April closed.
    assert await _sql(settings, "select delivered_kwh is not null from p2p_trades") == [(True,)]


async def test_trade_and_bill_reads_reject_bad_input(settings: Settings) -> None:
    w = await world(settings)
    async with _app(settings) as client:
        _error(await client.get("/p2p-trades/not-a-uuid"), 422, "trade_id")
        _error(await client.get("/p2p-trades/00000000-0000-0000-0000-000000000000"), 404, "id")
        _error(await client.get("/p2p-trades", params={"month": "2025-13"}), 422, "month")
        _error(await client.get("/p2p-trades", params={"meter_id": "NOPE"}), 404, "meter_id")
        _error(await client.get("/p2p-trades", params={"role": "broker"}), 422, "role")
        for month in ("2025-5", "2025-13", "May", "2025-05-01", ""):
            _error(await client.get("/bill", params={"meter_id": w.c1, "month": month}), 422, "month")
        _error(await client.get("/bill", params={"meter_id": w.c1}), 422, "month")
        _error(await client.get("/bill", params={"month": "2025-05"}), 422, "meter_id")
        _error(await client.get("/bill", params={"meter_id": "NOPE", "month": "2025-05"}), 404, "meter_id")
        no_er = _error(
            await client.get("/bill", params={"meter_id": w.unlinked, "month": "2025-05"}), 422, "meter_id"
        )
        assert "energy resource" in no_er["message"]
        _error(
            await client.get("/bill", params={"meter_id": w.c1, "month": "2025-07"}), 422, "month"
        )  # future
        _error(await client.get("/bills", params={"month": "25-05"}), 422, "month")
        _error(await client.get("/bills", params={"month": "2025-05", "page": 0}), 422, "page")


async def test_no_clock_is_a_503_not_a_guess(settings: Settings) -> None:
    w = World(
        c1=await meter(settings, "C1", "consumer"),
        c2=0,
        p1=await meter(settings, "P1", "prosumer"),
        p2=0,
        unlinked=0,
    )
    async with _app(settings) as client:
        response = await client.post(
            "/p2p-trade",
            json={"buyer_meter_id": w.c1, "seller_meter_id": w.p1, "units_kWh": 1, "price_per_kWh": 1},
        )
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "clock_not_ready"


# ---------------------------------------------------------------- no read writes; the month closer
async def test_reading_a_bill_writes_nothing(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """May has ended on the clock and the watermark, but its closer is held up: every read of May (bill,
    bills, trades, the Green Button feed that carries the bill) answers provisionally and writes nothing.
    Before, the first read stored May's final bills and settled its sellers."""
    monkeypatch.setattr(handlers, "CLOSE_WAIT_S", 0.2)  # how long a read waits for the closer
    w = await world(settings)
    await energy(settings, w.c1, MAY, 24 * 31, consumed=150)
    await energy(settings, w.p1, MAY, 24 * 31, consumed=100, produced=120)
    lock = _month_lock("2025-05")
    async with _app(settings) as client, await connect(settings.db.url, settings.db.schema_name) as holder:
        sale = await trade(
            client,
            buyer_meter_id=w.c1,
            seller_meter_id=w.p1,
            units_kWh=30,
            price_per_kWh=5,
            timestamp="2025-05-01T00:00:00Z",
        )
        await holder.execute("select pg_advisory_lock(%s, hashtext(%s))", lock)
        await holder.commit()
        await close(settings, expected=("2025-04",))  # May waits for the lock the test holds
        before = await snapshot(settings)
        reads = [
            await client.get("/bill", params={"meter_id": w.c1, "month": "2025-05"}),
            await client.get("/bill", params={"meter_id": "P1", "month": "2025-05"}),
            await client.get("/bills", params={"month": "2025-05"}),
            await client.get("/p2p-trades", params={"month": "2025-05"}),
            await client.get(f"/p2p-trades/{sale['id']}"),
            await client.get("/export/greenbutton", params={"meter_id": "C1", "month": "2025-05"}),
        ]
        after = await snapshot(settings)
        await holder.execute("select pg_advisory_unlock(%s, hashtext(%s))", lock)
        await holder.commit()
        await close(settings)
        final = await bill(client, w.c1, "2025-05")
        closed = await snapshot(settings)
        again = [
            await bill(client, w.c1, "2025-05"),
            (await client.get("/bills", params={"month": "2025-05"})),
        ]
        assert await snapshot(settings) == closed
    assert [r.status_code for r in reads] == [200] * len(reads), [r.text for r in reads]
    assert after == before
    assert [r[0] for r in before["billing_months"]] == ["2025-04"]  # May: not closed yet
    assert [r[4] for r in before["bills"]] == ["2025-04"] * 4
    assert reads[0].json()["status"] == reads[2].json()["status"] == "provisional"
    assert (reads[0].json()["id"], reads[0].json()["amount_due"]) == (None, 870.0)
    assert reads[4].json()["settlement"] == "provisional"
    assert (final["status"], final["amount_due"]) == ("final", 870.0)
    assert final["id"] is not None
    assert again[0] == final
    assert again[1].json()["status"] == "final"


async def test_month_close_is_exactly_once_and_finishes_after_a_restart(settings: Settings) -> None:
    w = await world(settings)
    await energy(settings, w.c1, MAY, 24, consumed=10)
    async with _app(settings) as client:
        # Mid-May on the watermark: April closes, May does not.
        await close(settings, committed=datetime(2025, 5, 15, tzinfo=UTC), expected=("2025-04",))
        may = await bill(client, w.c1, "2025-05")
    assert may["status"] == "provisional"
    # The service stopped just after it began closing May (the month is marked, no bill stored yet)...
    await _sql(settings, "insert into billing_months (month, closed_at) values ('2025-05', %s)", (NOW,))
    async with _app(settings) as client:
        # ...which already closes May to trades,
        late = {"buyer_meter_id": w.c1, "seller_meter_id": w.p1, "units_kWh": 1, "price_per_kWh": 5}
        _error(
            await client.post("/p2p-trade", json={**late, "timestamp": "2025-05-20T00:00:00Z"}),
            409,
            "timestamp",
        )
        # and the restarted service finishes it on the retained clock and watermark.
        await close(settings)
        closed = await snapshot(settings)
        await close(settings, datetime(2025, 6, 25, tzinfo=UTC))  # more clock: nothing closes twice
        assert await snapshot(settings) == closed
        final = await bill(client, w.c1, "2025-05")
    assert await _sql(settings, "select month, count(*) from bills group by 1 order by 1") == [
        ("2025-04", 4),
        ("2025-05", 4),
    ]
    assert await _sql(settings, "select month, bills from billing_months order by 1") == [
        ("2025-04", 4),
        ("2025-05", 4),
    ]
    assert (final["status"], final["amount_due"]) == ("final", 60.0)


async def test_a_clock_without_a_watermark_closes_nothing(settings: Settings) -> None:
    """No aggregator has committed anything: no month is finalised on the clock alone."""
    w = await world(settings)
    await energy(settings, w.c1, MAY, 24, consumed=10)
    async with _app(settings) as client, Bus(settings.mqtt, "clock", "0") as bus:
        clock = ClockState(current_datetime=NOW, state="paused", speed=1440, interval_s=60, tick=0)
        await bus.publish(channels.CLOCK, clock, NoPath())
        await asyncio.sleep(0.5)
        may = await bill(client, w.c1, "2025-05")
    assert (may["status"], may["amount_due"]) == ("provisional", 60.0)
    assert await _sql(settings, "select count(*) from billing_months") == [(0,)]
    assert await _sql(settings, "select count(*) from bills") == [(0,)]


def _month_lock(month: str) -> tuple[int, str]:
    """The advisory lock key billing takes to close ``month`` (see repository.lock_month)."""
    return (0x6269_6C6C, month)
