"""When the closer recomputes a late interval: once its late batches have stopped arriving."""

from __future__ import annotations

from datetime import timedelta

import pytest
from aggregator_world import T0

from gridsim_aggregator import repository
from gridsim_shared.db import connect
from gridsim_shared.settings import Settings

pytestmark = pytest.mark.integration


async def _batch(conn, ts, code: str, committed_ago_s: float) -> None:  # type: ignore[no-untyped-def]
    await conn.execute(
        "insert into ingest_batches (ts, transformer_code, first_meter_id, readings, producers, consumption_kwh,"
        " production_kwh, consumption_kvah, production_kvah, kvarh, current_sum, vi_sum, voltage_sum, instance,"
        " committed_at) values (%s, %s, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 'a', now() - make_interval(secs => %s))",
        (ts, code, committed_ago_s),
    )


async def test_a_late_interval_is_recomputed_once_its_batches_stopped_arriving(settings: Settings) -> None:
    # Closed partial at a million meters while its other batches were still arriving: recomputing it at
    # every pass of the closer until the last came (35 s) republished its rollups each time.
    arriving, settled, marked_only = T0, T0 + timedelta(minutes=1), T0 + timedelta(minutes=2)
    async with await connect(settings.db.url, settings.db.schema_name, autocommit=True) as conn:
        await _batch(conn, arriving, "t1", 30.0)
        await _batch(conn, arriving, "t2", 0.2)  # committed a moment ago: more may follow
        await _batch(conn, settled, "t1", 30.0)
        await _batch(conn, settled, "t2", 3.0)
        await conn.execute(
            "insert into late_intervals (ts) values (%s), (%s), (%s)", (arriving, settled, marked_only)
        )

        assert await repository.late_intervals(conn, 1.0) == [settled, marked_only]
        assert await repository.late_intervals(conn, 0.0) == [arriving, settled, marked_only]
