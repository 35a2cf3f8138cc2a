"""meter_data's layout on plain PostgreSQL (migration 0240): keyed by meter, found by time through BRIN.

On TimescaleDB the hypertable keeps its own layout: these tests skip there.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from gridsim_aggregator import repository
from gridsim_shared import roles
from gridsim_shared.db import connect
from gridsim_shared.settings import Settings

pytestmark = pytest.mark.integration

T0 = datetime(2025, 6, 20, tzinfo=UTC)
DAY = timedelta(days=1)
METERS = 50
MINUTES = 600  # per day: 30,000 readings, ~400 pages, a dozen BRIN ranges of 32 pages


async def _plain(conn: Any) -> None:
    if await repository.timescale_enabled(conn):
        pytest.skip("meter_data is a TimescaleDB hypertable here: its own layout")
    # An autovacuum of the new rows would hold the lock summarize_new_ranges does not wait for.
    await conn.execute("alter table meter_data set (autovacuum_enabled = false)")


async def _day(conn: Any, day: int) -> None:
    await conn.execute(
        "insert into meter_data (ts, meter_id, consumption_kwh, avg_current, avg_voltage) "
        "select %s + make_interval(mins => g), m, 0.01, 1, 240 "
        "from generate_series(0, %s - 1) g, generate_series(1, %s) m order by g, m",
        (T0 + day * DAY, MINUTES, METERS),
    )


async def _plan(conn: Any, sql: str, params: tuple[Any, ...]) -> dict[str, Any]:
    cur = await conn.execute("explain (analyze, format json) " + sql, params)
    row = await cur.fetchone()
    assert row is not None
    plan = row[0] if isinstance(row[0], list) else json.loads(row[0])
    result: dict[str, Any] = plan[0]["Plan"]
    return result


def _nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [plan, *(n for child in plan.get("Plans", []) for n in _nodes(child))]


async def test_per_meter_reads_use_the_key_and_time_reads_the_brin_index(settings: Settings) -> None:
    async with await connect(settings.db.url, settings.db.schema_name, autocommit=True) as conn:
        await _plain(conn)
        cur = await conn.execute(
            "select indexname, indexdef from pg_indexes where schemaname = %s "
            "and tablename = 'meter_data' order by 1",
            (roles.schema_of(settings.db.schema_name, "aggregator"),),
        )
        indexes = dict(await cur.fetchall())
        assert set(indexes) == {"meter_data_pkey", "meter_data_ts_brin"}
        assert "(meter_id, ts)" in indexes["meter_data_pkey"]
        assert "USING brin (ts)" in indexes["meter_data_ts_brin"]
        for day in range(3):
            await _day(conn, day)
        await conn.execute("analyze meter_data")
        await conn.execute("set enable_seqscan = off")  # a small table: the plan an index would give
        # A meter's latest readings: straight from the key, newest first, no sort.
        plan = await _plan(
            conn, "select * from meter_data where meter_id = %s order by ts desc limit 100", (7,)
        )
        assert {n.get("Index Name") for n in _nodes(plan)} >= {"meter_data_pkey"}
        assert not any(n["Node Type"] == "Sort" for n in _nodes(plan))


async def test_retention_desummarizes_the_ranges_it_emptied(settings: Settings) -> None:
    """Rows written after retention into the pages it freed must not make those ranges match old windows.

    Kept summaries would span from the deleted day to the new rows, so a window of day 2 would read every
    page day 0 had (~a day of pages); desummarized and summarized afresh, it reads its own range or two and
    at most the one range that holds both day 1's first rows and new ones.
    """
    async with await connect(settings.db.url, settings.db.schema_name, autocommit=True) as conn:
        await _plain(conn)
        await _day(conn, 0)
        cur = await conn.execute("select pg_relation_size('meter_data') / current_setting('block_size')::int")
        row = await cur.fetchone()
        assert row is not None
        day_pages = int(row[0])
        for day in (1, 2):
            await _day(conn, day)
        assert await repository.summarize_new_ranges(conn)
        cur = await conn.execute("select brin_summarize_new_values('meter_data_ts_brin')")
        assert await cur.fetchone() == (0,)  # nothing left to summarize
        deleted = await repository.apply_retention(conn, T0 + DAY)
        assert deleted == METERS * MINUTES
        cur = await conn.execute("select brin_summarize_new_values('meter_data_ts_brin')")
        row = await cur.fetchone()
        assert row is not None
        assert row[0] > day_pages // 32 - 2  # the emptied ranges, summarized again
        await conn.execute("vacuum meter_data")  # their pages may now be reused
        await _day(conn, 5)
        await repository.summarize_new_ranges(conn)
        window = T0 + 2 * DAY
        await conn.execute("set enable_seqscan = off")
        plan = await _plan(
            conn,
            "select count(*) from meter_data where ts >= %s and ts < %s",
            (window, window + timedelta(minutes=15)),
        )
        read = sum(n.get("Lossy Heap Blocks", 0) + n.get("Exact Heap Blocks", 0) for n in _nodes(plan))
        assert 0 < read < day_pages / 2, (read, day_pages)


async def test_the_aggregators_role_summarizes_and_retains_and_no_other_role_may(settings: Settings) -> None:
    """PostgreSQL lets only an index's owner summarize it; the aggregator connects as its own role and
    does it through the owner's functions (migration 1040), which no other service's role may call."""
    async with await connect(settings.db.url, settings.db.schema_name, autocommit=True) as conn:
        await _plain(conn)
        cur = await conn.execute("select rolsuper from pg_roles where rolname = current_user")
        row = await cur.fetchone()
        if row is None or not row[0]:
            pytest.skip("the test user may not create roles: services share its login")
        await _day(conn, 0)
        await conn.execute("set role gridsim_aggregator")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            await conn.execute("select brin_summarize_new_values('meter_data_ts_brin')")
        assert await repository.summarize_new_ranges(conn)
        assert await repository.apply_retention(conn, T0 + timedelta(hours=1)) == METERS * 60
        await conn.execute("set role gridsim_billing")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            await conn.execute("select meter_data_brin_summarize()")
        await conn.execute("reset role")
