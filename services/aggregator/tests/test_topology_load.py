"""How the closer loads the world it closes intervals in: a page of meters at a time, built off the event
loop, and loaded again when the world changed while it was being loaded."""

from __future__ import annotations

from typing import Any

import pytest
from aggregator_world import make_world

from gridsim_aggregator import repository
from gridsim_aggregator.closer import Closer
from gridsim_aggregator.settings import AggregatorSettings
from gridsim_aggregator.topology import GridNode, MeterRow
from gridsim_shared.db import connect
from gridsim_shared.settings import Settings


@pytest.mark.integration
async def test_the_topology_read_a_page_at_a_time_is_the_whole_world(settings: Settings) -> None:
    world = await make_world(settings)  # 8 meters
    async with await connect(settings.db.url, settings.db.schema_name, autocommit=True) as conn:
        whole = await repository.load_topology_rows(conn)
        in_threes = await repository.load_topology_rows(conn, page=3)
        in_eights = await repository.load_topology_rows(conn, page=8)  # the last page is exactly full
    assert in_threes == whole
    assert in_eights == whole
    assert sorted(m.id for m in whole[1]) == sorted(world.meters.values())
    assert [m.id for m in whole[1]] == sorted(m.id for m in whole[1])


def _rows(transformer_code: str) -> tuple[list[GridNode], list[MeterRow]]:
    nodes = [
        GridNode(1, "u1", "utility", None, None),
        GridNode(2, "f1", "feeder", 1, None),
        GridNode(3, transformer_code, "transformer", 2, 50.0),
    ]
    return nodes, [MeterRow(10, "m10", None, 3, "online", 1.0, 0.0)]


async def test_a_world_changed_during_the_load_is_loaded_again(monkeypatch: pytest.MonkeyPatch) -> None:
    # The load awaits the database a page at a time and builds in a thread: the clock can announce a new
    # world meanwhile, and the topology of the old one must not be kept.
    closer = Closer(pool=None, bus=None, database_url="", schema="", tuning=AggregatorSettings())  # type: ignore[arg-type]
    loads: list[str] = []

    async def load(_conn: Any, page: int = 100_000) -> tuple[list[GridNode], list[MeterRow]]:
        code = "old" if not loads else "new"
        loads.append(code)
        if code == "old":
            closer.world_replaced()  # the world changes while this load is in flight
        return _rows(code)

    monkeypatch.setattr(repository, "load_topology_rows", load)

    topology = await closer.topology(None)  # type: ignore[arg-type]

    assert loads == ["old", "new"]
    assert set(topology.by_code) == {"u1", "f1", "new"}
    assert await closer.topology(None) is topology  # type: ignore[arg-type]
    assert loads == ["old", "new"]
