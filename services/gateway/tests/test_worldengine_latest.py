"""World Engine's ``/meter-datasets`` (every meter's newest readings): bounded by the aggregator's receipts,
the same rows as ordering the whole table (meter_data is keyed by meter: docs/data.md)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gridsim_gateway.worldengine import readings
from gridsim_shared.db import connect
from gridsim_shared.settings import Settings

pytestmark = pytest.mark.integration

T0 = datetime(2025, 6, 20, tzinfo=UTC)


@pytest.mark.parametrize("receipts", [True, False])
async def test_newest_readings_of_every_meter_are_those_of_the_whole_table(
    settings: Settings, receipts: bool
) -> None:
    async with await connect(settings.db.url, settings.db.schema_name, autocommit=True) as conn:
        await conn.execute(
            "insert into meter_data (ts, meter_id, consumption_kwh, avg_current, avg_voltage) "
            "select %s + make_interval(mins => g), m, g * 0.001, 1, 240 "
            "from generate_series(0, 29) g, generate_series(1, 7) m",
            (T0,),
        )
        if receipts:  # as ingest writes them: one per transformer batch (here 4 + 3 meters an interval)
            await conn.execute(
                "insert into ingest_batches (ts, transformer_code, first_meter_id, readings, producers, "
                "consumption_kwh, production_kwh, consumption_kvah, production_kvah, kvarh, current_sum, "
                "vi_sum, voltage_sum, instance) select %s + make_interval(mins => g), t, f, n, 0, 0, 0, 0, 0, "
                "0, 0, 0, 0, 'test' from generate_series(0, 29) g, (values ('T1', 1, 4), ('T2', 5, 3)) b(t, f, n)",
                (T0,),
            )
        for limit, offset in ((1, 0), (10, 0), (10, 25), (500, 0), (7, 203), (3, 300)):
            got = await readings.meter_datasets(conn, None, limit, offset)
            cur = await conn.execute(
                "select ts, meter_id from meter_data order by ts desc, meter_id desc limit %s offset %s",
                (limit, offset),
            )
            expected = [readings.row_id(ts, m) for ts, m in reversed(await cur.fetchall())]
            assert [r["id"] for r in got] == expected, (limit, offset)
