"""Bills from readings the simulator generated and the aggregator stored: meter-sim → broker → aggregator →
rollups → billing → gateway, in step mode (no wall-clock waits).

A consumer and a prosumer (solar, in London) are simulated over the last 14 hours of June in 15-minute
intervals. At noon the prosumer sells far more than it will produce; once the clock passes midnight, June's
final bills show the sale capped at the metered production (first come, first served) and every energy
figure equal to the sums of the stored readings.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest

from gridsim_aggregator.__main__ import serve as serve_aggregator
from gridsim_billing.__main__ import serve as serve_billing
from gridsim_gateway.main import create_app
from gridsim_meter_sim.__main__ import serve as serve_meter_sim
from gridsim_shared.db import connect
from gridsim_shared.settings import Settings
from gridsim_shared.testing import gateway_client, running

pytestmark = pytest.mark.integration

START = datetime(2025, 6, 30, 10, tzinfo=UTC)
INTERVAL_S = 900
LONDON = {"city": "London", "latitude": 51.5074, "longitude": -0.1278}


@contextlib.asynccontextmanager
async def _system(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        running(serve_meter_sim, serve_aggregator, serve_billing, settings=settings),
        gateway_client(create_app(settings)) as client,
    ):
        yield client


async def _post(client: httpx.AsyncClient, path: str, body: dict[str, Any], status: int = 201) -> Any:
    response = await client.post(path, json=body)
    assert response.status_code == status, response.text
    return response.json()


async def _home(client: httpx.AsyncClient, code: str, kind: str, appliances: list[str]) -> int:
    er = await _post(
        client, "/admin/er", {"name": code, "type": kind, "appliance_type": appliances, **LONDON}
    )
    meter = await _post(client, "/admin/meter", {"meter_id": code, **LONDON})
    await _post(client, "/admin/meter/link", {"meter_id": meter["id"], "er_id": er["id"]}, status=200)
    return int(meter["id"])


async def _step(client: httpx.AsyncClient, intervals: int) -> dict[str, Any]:
    result: dict[str, Any] = await _post(client, "/simulation/step", {"intervals": intervals}, status=200)
    assert result["stored"] is True, result
    return result


async def _raw_sums(settings: Settings, meter_id: int) -> tuple[Decimal, Decimal]:
    async with await connect(settings.db.url, settings.db.schema_name) as conn:
        cur = await conn.execute(
            "select round(coalesce(sum(consumption_kwh), 0)::numeric, 3), round(coalesce(sum(production_kwh), 0)"
            "::numeric, 3) from meter_data where meter_id = %s and ts >= '2025-06-01Z' and ts < '2025-07-01Z'",
            (meter_id,),
        )
        row = await cur.fetchone()
        assert row is not None
        return row[0], row[1]


async def test_final_bills_from_simulated_and_aggregated_readings(settings: Settings) -> None:
    settings = settings.model_copy(
        update={"sim": settings.sim.model_copy(update={"start": START, "interval_s": INTERVAL_S})}
    )
    async with _system(settings) as client:
        consumer = await _home(client, "E2E-C", "consumer", ["Refrigerator", "Television", "Ceiling Fan"])
        prosumer = await _home(client, "E2E-P", "prosumer", ["Refrigerator", "Solar Panel", "Solar Panel"])
        await _step(client, 8)  # 10:00 → 12:00
        sale = await _post(
            client,
            "/p2p-trade",
            {"buyer_meter_id": "E2E-C", "seller_meter_id": "E2E-P", "units_kWh": 500, "price_per_kWh": 4.5},
        )
        assert sale["trade"]["timestamp"] == "2025-06-30T12:00:00Z"
        provisional = (await client.get("/bill", params={"meter_id": consumer, "month": "2025-06"})).json()
        done = await _step(client, 48)  # 12:00 → midnight: June has ended
        assert done["clock"]["current_datetime"] == "2025-07-01T00:00:00Z"
        c_bill = (await client.get("/bill", params={"meter_id": consumer, "month": "2025-06"})).json()
        p_bill = (await client.get("/bill", params={"meter_id": prosumer, "month": "2025-06"})).json()
        trade = (await client.get(f"/p2p-trades/{sale['trade']['id']}")).json()

    assert provisional["status"] == "provisional"
    assert (c_bill["status"], p_bill["status"]) == ("final", "final")
    consumed_c, _ = await _raw_sums(settings, consumer)
    consumed_p, produced_p = await _raw_sums(settings, prosumer)
    # 14 simulated hours of a fridge, a TV and a fan; a fridge and 2.4 kW of sunny London PV.
    assert consumed_c > 0
    assert produced_p > 1
    assert c_bill["total_consumed_kWh"] == float(consumed_c)
    assert (p_bill["total_consumed_kWh"], p_bill["total_produced_kWh"]) == (
        float(consumed_p),
        float(produced_p),
    )
    # Over-sold: 500 kWh contracted, only the metered production delivered; nothing left to export.
    assert trade["settlement"] == "settled"
    assert trade["contracted_kWh"] == 500.0
    assert trade["delivered_kWh"] == float(produced_p)
    assert c_bill["p2p_kWh"] == float(produced_p)
    assert p_bill["grid_units_exported_kWh"] == 0.0
    assert p_bill["p2p_earning"] == pytest.approx(float(produced_p) * 4.5, abs=0.01)
    assert p_bill["amount_due"] == pytest.approx(float(consumed_p) * 6 - float(produced_p) * 4.5, abs=0.01)
    # The consumer used more than it bought: the rest came from the grid.
    grid_used = max(consumed_c - produced_p, Decimal(0))
    assert c_bill["grid_units_used_kWh"] == pytest.approx(float(grid_used), abs=0.001)
    assert c_bill["amount_due"] == pytest.approx(float(grid_used) * 6 + float(produced_p) * 4.5, abs=0.01)
