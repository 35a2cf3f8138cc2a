"""``GET /meter/stream`` (JSON and live SSE) and ``GET /rollups/{node}`` over what the aggregator stored."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
import uvicorn
from aggregator_world import T0, fetch, make_batch, make_world, publish_clock, publish_interval
from test_aggregator_pipeline import wait_watermark

from gridsim.embedded import free_port
from gridsim_aggregator.__main__ import serve
from gridsim_aggregator.settings import AggregatorSettings
from gridsim_gateway.latest import LatestReadings
from gridsim_gateway.main import create_app
from gridsim_shared import channels
from gridsim_shared.bus import Bus
from gridsim_shared.settings import Settings
from gridsim_shared.testing import Collector, running

pytestmark = pytest.mark.integration


async def _aggregator(settings: Settings, stop: asyncio.Event) -> None:
    await serve(settings, stop, AggregatorSettings(flush_ms=5, close_after_s=1.5))


@contextlib.asynccontextmanager
async def http_gateway(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The real gateway on a free port (SSE needs a real server to stream)."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(10):
            while not server.started:
                await asyncio.sleep(0.02)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=20) as client:
            yield client
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


async def test_meter_stream_json_resolutions_errors_and_live(settings: Settings) -> None:
    world = await make_world(settings)
    async with (
        Bus(settings.mqtt, "test") as bus,
        running(_aggregator, settings=settings),
        http_gateway(settings) as http,
    ):
        marks = await Collector(bus, channels.WATERMARK).start()
        for i in range(16):
            await publish_interval(bus, world, T0 + timedelta(minutes=i))
        await wait_watermark(marks, T0 + timedelta(minutes=15))

        latest = (await http.get("/meter/stream", params={"meter_id": "m1", "limit": 5})).json()
        assert [r["timestamp"] for r in latest] == [
            (T0 + timedelta(minutes=i)).isoformat().replace("+00:00", "Z") for i in range(11, 16)
        ]
        assert set(latest[0]) >= {"meter_id", "timestamp", "consumption_kWh", "avg_voltage", "power_factor"}
        stored = await fetch(
            settings,
            "select consumption_kwh from meter_data where meter_id = %s order by ts",
            world.meters["M1"],
        )
        assert [r["consumption_kWh"] for r in latest] == [r[0] for r in stored[-5:]]

        window = {"from": T0.isoformat(), "to": (T0 + timedelta(minutes=14)).isoformat()}
        parent = (
            await http.get("/meter/stream", params={"meter_id": str(world.meters["P2"]), **window})
        ).json()
        assert len(parent) == 15
        assert all(r["is_parent"] for r in parent)
        quarter = (
            await http.get("/meter/stream", params={"meter_id": "P2", "resolution": "15m", **window})
        ).json()
        assert len(quarter) == 1
        assert quarter[0]["readings"] == 15
        assert quarter[0]["consumption_kWh"] == pytest.approx(sum(r["consumption_kWh"] for r in parent))

        missing = await http.get("/meter/stream", params={"meter_id": "nope"})
        assert missing.status_code == 404
        assert missing.json()["error"]["field"] == "meter_id"
        bad = await http.get("/meter/stream", params={"meter_id": "m1", "resolution": "5m"})
        assert bad.status_code == 422
        assert bad.json()["error"]["field"] == "resolution"
        async with await_connection(settings) as conn:
            await conn.execute("insert into meters (code) values ('LONELY')")
        assert (await http.get("/meter/stream", params={"meter_id": "lonely"})).json() == []

        series = (await http.get("/rollups/t1", params={"resolution": "15m"})).json()
        assert series[0]["intervals"] == 15
        assert series[0]["capacity_kVA"] == 50.0

        # Live: new committed readings of M1 arrive as SSE events.
        async with http.stream("GET", "/meter/stream/live", params={"meter_id": "M1"}) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            lines = response.aiter_lines()
            events: list[dict[str, object]] = []
            kind = ""
            async with asyncio.timeout(15):
                published = False
                async for line in lines:
                    if line.startswith("event:"):
                        kind = line.split(":", 1)[1].strip()
                    elif line.startswith("data:") and kind == "ready" and not published:
                        published = True
                        for i in range(16, 18):
                            await publish_interval(bus, world, T0 + timedelta(minutes=i))
                    elif line.startswith("data:") and kind == "reading":
                        events.append(json.loads(line.split(":", 1)[1]))
                        if len(events) == 2:
                            break
        assert [e["timestamp"] for e in events] == [
            (T0 + timedelta(minutes=i)).isoformat().replace("+00:00", "Z") for i in (16, 17)
        ]


def await_connection(settings: Settings):  # type: ignore[no-untyped-def]
    from gridsim_shared.db import connect

    return _conn(settings, connect)


@contextlib.asynccontextmanager
async def _conn(settings: Settings, connect):  # type: ignore[no-untyped-def]
    async with await connect(settings.db.url, settings.db.schema_name, autocommit=True) as conn:
        yield conn


def _z(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


async def test_latest_reading_is_served_from_memory_once_stored(settings: Settings) -> None:
    """``limit=1`` of a meter asked for before comes from the live batches, byte for byte the stored row, and
    only once the watermark says it is stored; a clock sent back makes the gateway ask the database again."""
    world = await make_world(settings)
    app = create_app(settings)
    async with (
        Bus(settings.mqtt, "test") as bus,
        running(_aggregator, settings=settings),
        app.router.lifespan_context(app) as state,
    ):
        assert state is not None
        latest: LatestReadings = state["latest"]

        async def with_state(scope: Any, receive: Any, send: Any) -> None:
            await app(scope if scope["type"] != "http" else {**scope, "state": dict(state)}, receive, send)

        async def seen_by_gateway(mark: datetime) -> None:
            async with asyncio.timeout(10):
                while (w := state["live"].watermark) is None or w.committed_until < mark:
                    await asyncio.sleep(0.02)

        transport = httpx.ASGITransport(app=with_state)
        async with httpx.AsyncClient(transport=transport, base_url="http://gridsim.test") as http:
            marks = await Collector(bus, channels.WATERMARK).start()
            await asyncio.sleep(0.3)
            for i in range(3):
                await publish_interval(bus, world, T0 + timedelta(minutes=i))
            await wait_watermark(marks, T0 + timedelta(minutes=2))
            ask = {"meter_id": "m1", "limit": "1"}
            first = await http.get("/meter/stream", params=ask)  # from the database; M1 is tracked from now
            assert [r["timestamp"] for r in first.json()] == [_z(T0 + timedelta(minutes=2))]
            assert (latest.hits, len(latest)) == (0, 1)

            for i in range(3, 5):
                await publish_interval(bus, world, T0 + timedelta(minutes=i))
                await wait_watermark(marks, T0 + timedelta(minutes=i))
                await seen_by_gateway(T0 + timedelta(minutes=i))
                served = await http.get("/meter/stream", params=ask)
                assert latest.hits == i - 2
                stored = await fetch(
                    settings,
                    "select max(ts), count(*) from meter_data where meter_id = %s",
                    world.meters["M1"],
                )
                assert stored[0][0] == T0 + timedelta(minutes=i)
                # The database path's answer, byte for byte (asked by id: not a tracked key's fast path).
                latest.forget()
                from_db = await http.get("/meter/stream", params={**ask, "meter_id": str(world.meters["M1"])})
                assert served.headers["content-type"] == from_db.headers["content-type"] == "application/json"
                assert served.content == from_db.content
                assert json.loads(served.content)[0]["timestamp"] == _z(T0 + timedelta(minutes=i))

            # A batch ahead of the watermark is not served: the answer stays the stored reading at the mark.
            await bus.publish(
                channels.BATCH, make_batch(world, "t1", T0 + timedelta(minutes=5)), world.path("t1")
            )
            await asyncio.sleep(0.3)
            held = await http.get("/meter/stream", params=ask)
            assert json.loads(held.content)[0]["timestamp"] == _z(T0 + timedelta(minutes=4))

            # The clock goes back: memory no longer answers for what may be re-simulated, the database does.
            hits = latest.hits
            await publish_clock(bus, T0)
            await asyncio.sleep(0.3)
            back = await http.get("/meter/stream", params=ask)
            assert latest.hits == hits
            assert back.status_code == 200
