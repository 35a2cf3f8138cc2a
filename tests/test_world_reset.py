"""``world.reset`` across owners (issue 13): meter-sim replaces its world and each owner of derived data
empties its own tables — the aggregator its readings, rollups and thermal state, feasibility its
connection requests — before the reset is answered; an owner that was not running catches up at start."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from gridsim_aggregator.__main__ import serve as serve_aggregator
from gridsim_feasibility.__main__ import serve as serve_feasibility
from gridsim_meter_sim.__main__ import serve as serve_meter_sim
from gridsim_shared import commands
from gridsim_shared.bus import Bus
from gridsim_shared.commands import meter_sim
from gridsim_shared.db import session_options
from gridsim_shared.schemas import world
from gridsim_shared.settings import Settings
from gridsim_shared.testing import rollup_table, running, with_tiny_world

pytestmark = pytest.mark.integration


def _with_world(settings: Settings, tmp_path: Path) -> Settings:
    return with_tiny_world(settings, tmp_path, demo_world=True)


async def _seed_old_world(settings: Settings) -> None:
    """Rows the old world left in the aggregator's and feasibility's tables."""
    rollup = await rollup_table(settings, "meter_data_1h")
    async with await psycopg.AsyncConnection.connect(
        settings.db.url, autocommit=True, options=session_options(settings.db.schema_name)
    ) as conn:
        meter = await (await conn.execute("select id from meters")).fetchone()
        assert meter is not None
        await conn.execute(
            "insert into meter_data (ts, meter_id, avg_current, avg_voltage) values (now(), %s, 1, 240)",
            (meter[0],),
        )
        await conn.execute(
            sql.SQL(
                "insert into {} (meter_id, bucket, consumption_kwh) values (%s, date_trunc('hour', now()), 1)"
            ).format(sql.Identifier(rollup)),
            (meter[0],),
        )
        await conn.execute(
            "insert into transformer_thermal (node_id, ts, top_oil_rise_c, hot_spot_gradient_c)"
            " select id, now(), 1, 1 from grid_nodes where level = 'transformer'"
        )
        await conn.execute(
            "insert into connections (type, requested_consumption_kw, latitude, longitude, status, reason)"
            " values ('consumer', 1, 37.7, -122.4, 'rejected', 'none nearby')"
        )


async def _counts(settings: Settings) -> dict[str, Any]:
    rollup = await rollup_table(settings, "meter_data_1h")
    async with await psycopg.AsyncConnection.connect(
        settings.db.url, autocommit=True, options=session_options(settings.db.schema_name)
    ) as conn:
        found: dict[str, Any] = {}
        for table in ("meter_data", rollup, "transformer_thermal", "connections", "meters"):
            row = await (
                await conn.execute(sql.SQL("select count(*) from {}").format(sql.Identifier(table)))
            ).fetchone()
            assert row is not None
            found[table.removesuffix("_history")] = row[0]
        for name, query in (
            ("meter-sim", "select generation from world_state"),
            ("aggregator", "select world_generation from aggregator_state"),
            ("feasibility", "select world_generation from feasibility_state"),
        ):
            row = await (await conn.execute(query)).fetchone()
            assert row is not None
            found[name] = row[0]
        return found


Serve = Callable[[Settings, asyncio.Event], Coroutine[Any, Any, None]]


async def test_the_reset_is_answered_after_every_running_owner_emptied_its_tables(
    settings: Settings, tmp_path: Path
) -> None:
    config = _with_world(settings, tmp_path)
    async with running(serve_meter_sim, serve_aggregator, serve_feasibility, settings=config):
        await _seed_old_world(config)
        before = await _counts(config)
        assert before == {
            "meter_data": 1,
            "meter_data_1h": 1,
            "transformer_thermal": 1,
            "connections": 1,
            "meters": 1,
            "meter-sim": 0,
            "aggregator": 0,
            "feasibility": 0,
        }
        async with Bus(config.mqtt, "test-reset") as bus:
            reply = await bus.call(meter_sim.RESET_WORLD, meter_sim.RESET_WORLD.build())
            assert reply.meters == 1
            # the reply came after both owners confirmed: nothing of the old world is left anywhere
            assert await _counts(config) == {
                "meter_data": 0,
                "meter_data_1h": 0,
                "transformer_thermal": 0,
                "connections": 0,
                "meters": 1,
                "meter-sim": 1,
                "aggregator": 1,
                "feasibility": 1,
            }
            # an owner told twice (a retried fan-out) does nothing the second time
            again = await bus.call(commands.WORLD_RESET["feasibility"], world.WorldReset(generation=1))
            assert again == world.WorldResetDone(service="feasibility", generation=1, deleted={})


async def test_an_owner_that_was_not_running_empties_its_tables_when_it_starts(
    settings: Settings, tmp_path: Path
) -> None:
    config = _with_world(settings, tmp_path)
    async with running(serve_meter_sim, settings=config):
        await _seed_old_world(config)
        async with Bus(config.mqtt, "test-reset") as bus:
            await bus.call(
                meter_sim.RESET_WORLD, meter_sim.RESET_WORLD.build()
            )  # answered without the absent owners
        left = await _counts(config)
        assert (left["meter-sim"], left["connections"], left["meter_data"], left["feasibility"]) == (
            1,
            1,
            1,
            0,
        )
        async with running(serve_aggregator, serve_feasibility, settings=config):
            caught_up = await _counts(config)
    assert caught_up["connections"] == 0
    assert caught_up["meter_data"] == 0
    assert caught_up["meter_data_1h"] == 0
    assert (caught_up["aggregator"], caught_up["feasibility"]) == (1, 1)
