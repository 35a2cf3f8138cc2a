"""Dynamic bills are finalised when a month closes, by the utility's refresh loop, never by a read.

The utility runs alone on the real broker and database; meters, hourly rollups, the clock row and the
aggregator's ``rolled_until`` are rows written here, as meter-sim and the aggregator would.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from gridsim_gateway.main import create_app
from gridsim_shared.db import connect
from gridsim_shared.settings import Settings
from gridsim_shared.testing import gateway_client, rollup_table, running
from gridsim_utility.__main__ import serve as serve_utility

pytestmark = pytest.mark.integration

MAY = datetime(2025, 5, 1, tzinfo=UTC)
NOW = datetime(2025, 6, 20, tzinfo=UTC)


async def _sql(settings: Settings, query: str, params: Any = None) -> list[tuple[Any, ...]]:
    async with await connect(settings.db.url, settings.db.schema_name, autocommit=True) as conn:
        cur = await conn.execute(query, params)
        return await cur.fetchall() if cur.description else []


async def _world(settings: Settings) -> list[int]:
    """A utility node, two meters linked to ERs and one unlinked; 1 kWh an hour each in May."""
    await _sql(settings, "insert into grid_nodes (code, name, level) values ('u1', 'Utility', 'utility')")
    await _sql(
        settings,
        "insert into simulation_clock (current_datetime, speed, interval_s, state) values (%s, 1440, 60, 'paused')",
        (NOW,),
    )
    ids = []
    for code, kind in (("D1", "consumer"), ("D2", "prosumer"), ("D3", None)):
        er = None
        if kind is not None:
            rows = await _sql(
                settings,
                "insert into energy_resources (name, type) values (%s, %s) returning id",
                (code, kind),
            )
            er = rows[0][0]
        rows = await _sql(
            settings, "insert into meters (code, er_id) values (%s, %s) returning id", (code, er)
        )
        ids.append(int(rows[0][0]))
    hourly = await rollup_table(settings, "meter_data_1h")
    await _sql(
        settings,
        f"insert into {hourly} (meter_id, bucket, consumption_kwh, production_kwh, readings)"
        " select m, %s + make_interval(hours => h), 1.0, 0.0, 60"
        " from unnest(%s::bigint[]) m, generate_series(0, 31 * 24 - 1) h",
        (MAY, ids),
    )
    return ids


async def _rolled_until(settings: Settings, ts: datetime) -> None:
    await _sql(settings, "update aggregator_state set rolled_until = %s, committed_until = %s", (ts, ts))


async def _snapshot(settings: Settings) -> list[list[tuple[Any, ...]]]:
    return [
        await _sql(settings, "select meter_id, month, body from dynamic_bills order by 1, 2"),
        await _sql(settings, "select month, bills from utility_bill_months order by 1"),
    ]


async def _until_closed(settings: Settings, month: str) -> None:
    async with asyncio.timeout(60):
        while not await _sql(settings, "select 1 from utility_bill_months where month = %s", (month,)):
            await asyncio.sleep(0.1)


async def test_dynamic_bills_are_stored_when_the_month_closes_and_reads_write_nothing(
    settings: Settings,
) -> None:
    settings = settings.model_copy(update={"sim": settings.sim.model_copy(update={"start": MAY})})
    d1, _d2, d3 = await _world(settings)
    await _rolled_until(settings, datetime(2025, 5, 31, 12, tzinfo=UTC))  # May not rolled up yet
    async with running(serve_utility, settings=settings), gateway_client(create_app(settings)) as client:
        before = await _snapshot(settings)
        open_may = await client.get("/bill/dynamic", params={"meter_id": d1, "month": "2025-05"})
        assert await _snapshot(settings) == before == [[], []]  # the read stored nothing
        await _rolled_until(settings, NOW)  # May is complete: the refresh loop closes it
        await _until_closed(settings, "2025-05")
        closed = await _snapshot(settings)
        final = await client.get("/bill/dynamic", params={"meter_id": "d1", "month": "2025-05"})
        unlinked = await client.get("/bill/dynamic", params={"meter_id": d3, "month": "2025-05"})
        await asyncio.sleep(1.5)  # more polls of the loop: nothing is closed or stored twice
        assert await _snapshot(settings) == closed
    assert open_may.status_code == 200, open_may.text
    assert (open_may.json()["status"], open_may.json()["consumed_kWh"]) == ("provisional", 744.0)
    assert final.status_code == 200, final.text
    assert (final.json()["status"], final.json()["consumed_kWh"]) == ("final", 744.0)
    assert [(row[0], row[1]) for row in closed[0]] == [(d1, "2025-05"), (_d2, "2025-05")]
    assert closed[1] == [("2025-05", 2)]
    # A meter without an ER gets no stored bill at close, and reading its closed month stores none.
    assert (unlinked.status_code, unlinked.json()["status"]) == (200, "provisional")
