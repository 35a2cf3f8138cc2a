"""feasibility's writes on meter-sim's world are meter-sim commands, each atomic (issue 13):
``book_connection`` books the load and creates the household all or nothing; ``create_transformer``
creates a transformer with its connected loads."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from gridsim_meter_sim.__main__ import serve as serve_meter_sim
from gridsim_shared.bus import Bus
from gridsim_shared.commands import meter_sim
from gridsim_shared.db import session_options
from gridsim_shared.errors import RemoteError
from gridsim_shared.schemas.bookings import BookConnection
from gridsim_shared.settings import Settings
from gridsim_shared.testing import running

pytestmark = pytest.mark.integration


async def _sql(settings: Settings, query: str) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(
        settings.db.url, autocommit=True, options=session_options(settings.db.schema_name)
    ) as conn:
        return await (await conn.execute(query.encode())).fetchall()


def _book(transformer_id: int, appliance_id: int, code: str, kw: float) -> BookConnection:
    return meter_sim.BOOK_CONNECTION.build(**_booking(transformer_id, appliance_id, code, kw))


def _booking(transformer_id: int, appliance_id: int, code: str, kw: float) -> dict[str, Any]:
    return {
        "transformer_id": transformer_id,
        "consumption_kw": kw,
        "consumption_share": 0.8,
        "production_share": 0.5,
        "household": {
            "er_name": f"Home {code}",
            "kind": "consumer",
            "meter_code": code,
            "latitude": 37.76,
            "longitude": -122.41,
            "ders": [{"appliance_id": appliance_id, "quantity": 2}],
        },
    }


async def test_a_booking_and_its_household_are_one_transaction(settings: Settings) -> None:
    async with running(serve_meter_sim, settings=settings), Bus(settings.mqtt, "test-book") as bus:
        await bus.call(
            meter_sim.CREATE_GRID_NODE, meter_sim.CREATE_GRID_NODE.build(code="u", name="U", level="utility")
        )
        await bus.call(
            meter_sim.CREATE_GRID_NODE,
            meter_sim.CREATE_GRID_NODE.build(code="f", name="F", level="feeder", parent_id="u"),
        )
        transformer = meter_sim.CREATE_TRANSFORMER.build(
            code="t",
            name="T",
            level="transformer",
            parent_id="f",
            capacity_kVA=50,
            latitude=37.76,
            longitude=-122.41,
            connected_consumption_kW=10,
        )
        tx = (await bus.call(meter_sim.CREATE_TRANSFORMER, transformer)).model_dump(mode="json")
        assert (tx["connected_consumption_kW"], tx["connected_production_kW"]) == (10, 0)
        appliance = (await _sql(settings, "select min(id) from appliances"))[0][0]

        booked = (
            await bus.call(meter_sim.BOOK_CONNECTION, _book(tx["id"], appliance, "CN-1", 5))
        ).model_dump()
        assert booked["transformer"]["consumption_kw"] == 15
        meter_id, er_id = booked["household"]["meter_id"], booked["household"]["er_id"]
        assert await _sql(settings, f"select er_id, transformer_id from meters where id = {meter_id}") == [
            (er_id, tx["id"])
        ]
        assert await _sql(settings, f"select appliance_id, quantity from ders where er_id = {er_id}") == [
            (appliance, 2)
        ]

        # the same meter code again: the household fails, so the booking is rolled back with it
        with pytest.raises(RemoteError) as conflict:
            await bus.call(meter_sim.BOOK_CONNECTION, _book(tx["id"], appliance, "CN-1", 5))
        assert (conflict.value.status, conflict.value.field) == (409, "household.meter_code")
        # more than the 80 % share (40 kW) allows: not booked, nothing written
        full = (
            await bus.call(meter_sim.BOOK_CONNECTION, _book(tx["id"], appliance, "CN-2", 30))
        ).model_dump()
        assert full == {"transformer": None, "household": None}

        assert await _sql(settings, "select connected_consumption_kw from grid_nodes where code = 't'") == [
            (15,)
        ]
        assert await _sql(settings, "select count(*) from energy_resources") == [(1,)]
        assert await _sql(settings, "select count(*) from meters") == [(1,)]
