"""World Engine's ``/meter-datasets`` (every meter's newest readings): bounded by the transformer rollups,
the same rows as ordering the whole table (meter_data is keyed by meter: docs/data.md)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gridsim_gateway.worldengine import readings
from gridsim_shared.db import connect
from gridsim_shared.settings import Settings

pytestmark = pytest.mark.integration

T0 = datetime(2025, 6, 20, tzinfo=UTC)


@pytest.mark.parametrize("rollups", [True, False])
async def test_newest_readings_of_every_meter_are_those_of_the_whole_table(
    settings: Settings, rollups: bool
) -> None:
    async with await connect(settings.db.url, settings.db.schema_name, autocommit=True) as conn:
        await conn.execute(
            "insert into meter_data (ts, meter_id, consumption_kwh, avg_current, avg_voltage) "
            "select %s + make_interval(mins => g), m, g * 0.001, 1, 240 "
            "from generate_series(0, 59) g, generate_series(1, 7) m",
            (T0,),
        )
        if rollups:  # as the closer writes them: per transformer (here 4 + 3 meters) and interval
            await conn.execute(
                "insert into grid_rollups (ts, node_id, level, consumption_kwh, production_kwh, "
                "consumption_kvah, production_kvah, kvarh, apparent_kva, meters_expected, meters_reporting) "
                "select %s + make_interval(mins => g), n, 'transformer', 0, 0, 0, 0, 0, 0, k, k "
                "from generate_series(0, 59) g, (values (1, 4), (2, 3)) b(n, k)",
                (T0,),
            )
        for limit, offset in ((1, 0), (10, 0), (10, 25), (500, 0), (7, 203), (3, 418), (3, 500)):
            got = await readings.meter_datasets(conn, None, limit, offset)
            cur = await conn.execute(
                "select ts, meter_id from meter_data order by ts desc, meter_id desc limit %s offset %s",
                (limit, offset),
            )
            expected = [readings.row_id(ts, m) for ts, m in reversed(await cur.fetchall())]
            assert [r["id"] for r in got] == expected, (limit, offset)
