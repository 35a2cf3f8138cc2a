"""Engine parity: the same seed and the same commands give the same answers on plain PostgreSQL and on
TimescaleDB.

One TimescaleDB server holds two schemas: one migrated as plain PostgreSQL would be (no ``*.timescale.sql``:
ordinary rollup tables the aggregator writes) and one with hypertables and continuous aggregates the
aggregator refreshes. The whole system (meter-sim, aggregator, billing, feasibility, gateway) runs the same
scenario on each, in step mode: a transformer, a consumer and a prosumer connected through
``POST /connection``, 14 simulated hours to the end of June in 15-minute intervals, an over-sold P2P trade
at noon. Then the rollups, both June bills, a feasibility decision on measured load and
``GET /meter/stream`` (raw and every rollup resolution) must be equal.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from gridsim import testing
from gridsim_aggregator.__main__ import serve as serve_aggregator
from gridsim_aggregator.repository import timescale_enabled
from gridsim_billing.__main__ import serve as serve_billing
from gridsim_feasibility.__main__ import serve as serve_feasibility
from gridsim_gateway.main import create_app
from gridsim_meter_sim.__main__ import serve as serve_meter_sim
from gridsim_shared.db import connect
from gridsim_shared.settings import FeasibilitySettings, Settings
from gridsim_shared.testing import gateway_client, running

pytestmark = [pytest.mark.integration, pytest.mark.timescale]

START = datetime(2025, 6, 30, 10, tzinfo=UTC)
INTERVAL_S = 900
SF = (37.7749, -122.4194)
NEAR = (37.7756, -122.4194)  # ~80 m north: the transformer's spot
ROLLUPS = [f"{kind}_{width}" for kind in ("meter_data", "grid_rollups") for width in ("15m", "1h", "1d")]
# Wall-clock or random values that differ between any two runs, on one engine as on two.
VOLATILE = {"id", "created_at", "updated_at", "generated_at", "decided_at", "connection_id", "trade_id"}


async def _sql(settings: Settings, query: str, params: Any = None) -> list[tuple[Any, ...]]:
    async with await connect(settings.db.url, settings.db.schema_name, autocommit=True) as conn:
        cur = await conn.execute(query, params)
        return await cur.fetchall() if cur.description else []


@contextlib.asynccontextmanager
async def _system(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    await _sql(
        settings,
        "with u as (insert into grid_nodes (code, name, level) values ('sf', 'SF Utility', 'utility') returning id)"
        " insert into grid_nodes (code, name, level, parent_id, latitude, longitude)"
        " select 'f1', 'Feeder 1', 'feeder', id, %s, %s from u",
        SF,
    )
    async with (
        running(serve_meter_sim, serve_aggregator, serve_billing, serve_feasibility, settings=settings),
        gateway_client(create_app(settings)) as client,
    ):
        yield client


async def _call(client: httpx.AsyncClient, method: str, path: str, status: int = 200, **kw: Any) -> Any:
    response = await client.request(method, path, **kw)
    assert response.status_code == status, response.text
    return response.json()


def _stable(value: Any) -> Any:
    """``value`` without the keys that differ between any two runs; floats to 9 places."""
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    if isinstance(value, float):
        return round(value, 9)
    return value


async def _scenario(settings: Settings) -> dict[str, Any]:
    """Everything the system answers after the same commands."""
    answers: dict[str, Any] = {}
    async with _system(settings) as client:
        tx = await _call(
            client,
            "POST",
            "/admin/transformers",
            201,
            json={"name": "TX-PARITY", "capacity_kVA": 60, "latitude": NEAR[0], "longitude": NEAR[1]},
        )
        meters = {}
        for kind, consumption, production in (("consumer", 6.0, 0.0), ("prosumer", 4.0, 5.0)):
            body = {
                "type": kind,
                "requested_consumption_kW": consumption,
                "requested_production_kW": production,
                "latitude": SF[0],
                "longitude": SF[1],
                "create_meter": True,
            }
            result = await _call(client, "POST", "/connection", 201, json=body)
            assert result["status"] == "approved", result
            meters[kind] = result["meter_code"]
        step = {"intervals": 8}  # 10:00 → 12:00
        assert (await _call(client, "POST", "/simulation/step", json=step))["stored"] is True
        sale = await _call(
            client,
            "POST",
            "/p2p-trade",
            201,
            json={
                "buyer_meter_id": meters["consumer"],
                "seller_meter_id": meters["prosumer"],
                "units_kWh": 500,
                "price_per_kWh": 4.5,
            },
        )
        step = {"intervals": 48}  # 12:00 → midnight: June has ended
        done = await _call(client, "POST", "/simulation/step", json=step)
        assert done["stored"] is True
        assert done["clock"]["current_datetime"] == "2025-07-01T00:00:00Z"
        for kind, code in meters.items():
            answers[f"bill {kind}"] = await _call(
                client, "GET", "/bill", params={"meter_id": code, "month": "2025-06"}
            )
            for resolution in ("raw", "15m", "1h", "1d"):
                answers[f"stream {kind} {resolution}"] = await _call(
                    client,
                    "GET",
                    "/meter/stream",
                    params={
                        "meter_id": code,
                        "from": "2025-06-30T00:00:00Z",
                        "to": "2025-07-01T00:00:00Z",
                        "resolution": resolution,
                    },
                )
        answers["trade"] = await _call(client, "GET", f"/p2p-trades/{sale['trade']['id']}")
        answers["transformer"] = await _call(client, "GET", f"/admin/transformers/{tx['id']}")
        check = {
            "type": "consumer",
            "requested_consumption_kW": 20.0,
            "requested_production_kW": 0.0,
            "latitude": SF[0],
            "longitude": SF[1],
        }
        answers["feasibility"] = await _call(client, "POST", "/feasibility-check", json=check)
    for name in ROLLUPS:
        answers[name] = [list(row) for row in await _sql(settings, f"select * from {name} order by 1, 2")]
    # A created meter's code comes from its connection's random id: named by its kind instead.
    text = json.dumps(answers, default=str)
    for kind, code in meters.items():
        text = text.replace(code, kind)
    return _stable(json.loads(text))


async def test_same_seed_and_commands_give_the_same_answers_on_both_engines(
    mqtt_url: str, timescale_settings: Settings
) -> None:
    measured = FeasibilitySettings(decide_on_measured_load=True)
    answers: dict[str, dict[str, Any]] = {}
    with testing.fresh_settings(mqtt_url, timescale_settings.db.url, timescale=False) as plain:
        for engine, base in (("postgres", plain), ("timescale", timescale_settings)):
            settings = base.model_copy(
                update={
                    "sim": base.sim.model_copy(update={"start": START, "interval_s": INTERVAL_S}),
                    "feasibility": measured,
                }
            )
            async with await connect(settings.db.url, settings.db.schema_name) as conn:
                assert await timescale_enabled(conn) is (engine == "timescale")
            answers[engine] = await _scenario(settings)
    plain_answers, timescale_answers = answers["postgres"], answers["timescale"]
    assert plain_answers["meter_data_1d"], "no rollups: the scenario stored nothing"
    assert plain_answers["bill prosumer"]["status"] == "final"
    assert len(plain_answers["stream consumer raw"]) == 56
    assert plain_answers["feasibility"]["nearest_transformer"]["decided_on"] == "measured"
    for key, value in plain_answers.items():
        assert timescale_answers[key] == value, key
