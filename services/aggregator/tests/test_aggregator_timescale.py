"""TimescaleDB: the closer's branch (pure), the migration checked against plain PostgreSQL, and the real
thing where the extension exists (skipped here: TimescaleDB is not on PyPI or Debian)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from gridsim_aggregator.closer import time_rollup_plan
from gridsim_shared.db import connect, list_migrations, timescale_available
from gridsim_shared.settings import Settings

T = datetime(2025, 6, 20, 23, 44, tzinfo=UTC)
_VIEW = re.compile(
    r"create materialized view (\w+) with \(timescaledb\.continuous[^)]*\) as\n(.*?)\nwith no data;", re.S
)


def _plan(ts: datetime, rolled: datetime | None, *, timescale: bool, recompute: bool = False, **kw: int):  # type: ignore[no-untyped-def]
    return time_rollup_plan(
        ts,
        rolled,
        interval_s=60,
        recompute=recompute,
        timescale=timescale,
        retention_days=kw.get("retention_days", 0),
        compress_after_days=kw.get("compress_after_days", 7),
    )


@pytest.mark.parametrize("timescale", [False, True])
def test_closing_the_last_minute_of_a_window_rolls_it_and_what_it_touches(timescale: bool) -> None:
    plan = _plan(T, T - timedelta(minutes=14), timescale=timescale)
    assert plan is not None
    assert plan.timescale is timescale
    assert (plan.start, plan.end) == (T - timedelta(minutes=14), T + timedelta(minutes=1))
    assert plan.hours == (T.replace(minute=0), T.replace(minute=0) + timedelta(hours=1))
    assert plan.days == (T.replace(hour=0, minute=0), T.replace(hour=0, minute=0) + timedelta(days=1))
    assert plan.advance


def test_mid_window_minute_has_nothing_to_roll() -> None:
    assert _plan(T - timedelta(minutes=5), T - timedelta(minutes=14), timescale=True) is None


def test_recompute_of_a_rolled_window_refreshes_it_without_advancing() -> None:
    plan = _plan(T - timedelta(minutes=20), T + timedelta(minutes=1), timescale=True, recompute=True)
    assert plan is not None
    assert (plan.start, plan.end) == (T - timedelta(minutes=29), T - timedelta(minutes=14))
    assert not plan.advance
    assert plan.retention_before is None
    assert _plan(T, T - timedelta(minutes=14), timescale=True, recompute=True) is None  # not rolled yet


def test_retention_and_compression_run_at_midnight_in_simulated_time() -> None:
    last = T.replace(hour=23, minute=59)
    midnight = last + timedelta(minutes=1)
    plain = _plan(last, midnight - timedelta(minutes=15), timescale=False, retention_days=30)
    assert plain is not None
    assert plain.retention_before == midnight - timedelta(days=30)
    assert plain.compress_before is None  # compression is a hypertable's
    hyper = _plan(last, midnight - timedelta(minutes=15), timescale=True, retention_days=0)
    assert hyper is not None
    assert hyper.retention_before is None
    assert hyper.compress_before == midnight - timedelta(days=7)
    never = _plan(last, midnight - timedelta(minutes=15), timescale=True, compress_after_days=0)
    assert never is not None
    assert never.compress_before is None
    inside = _plan(T, T - timedelta(minutes=14), timescale=True, retention_days=30)
    assert inside is not None
    assert inside.retention_before is None
    assert inside.compress_before is None


def test_the_timescale_migration_is_applied_only_with_the_extension() -> None:
    ours = [m for m in list_migrations() if m.name.startswith("02")]
    assert [(m.name, m.timescale_only) for m in ours][:2] == [
        ("0200_aggregator.sql", False),
        ("0201_aggregator.timescale.sql", True),
    ]


def _timescale_sql() -> str:
    return next(m.text for m in list_migrations() if m.name == "0201_aggregator.timescale.sql")


def test_the_migration_replaces_every_rollup_table_with_an_aggregate() -> None:
    names = [name for name, _ in _VIEW.findall(_timescale_sql())]
    assert sorted(names) == sorted(
        f"{kind}_{width}" for kind in ("meter_data", "grid_rollups") for width in ("15m", "1h", "1d")
    )


@pytest.mark.integration
async def test_continuous_aggregates_have_the_plain_tables_columns(settings: Settings) -> None:
    """Each aggregate's query, run on plain PostgreSQL with stand-ins for time_bucket and last(), yields the
    names and types of the table it replaces: readers query them unchanged."""
    async with await connect(settings.db.url, settings.db.schema_name, autocommit=True) as conn:
        await conn.execute(
            "create function time_bucket(w interval, t timestamptz) returns timestamptz language sql immutable "
            "as $$ select date_bin(w, t, timestamptz '2000-01-03 00:00:00+00') $$"
        )
        await conn.execute(
            "create function last_step(s anyelement, x anyelement, k float8) returns anyelement language sql "
            "immutable as $$ select x $$"
        )
        await conn.execute(
            "create aggregate last(anyelement, float8) (sfunc = last_step, stype = anyelement)"
        )
        for name, query in _VIEW.findall(_timescale_sql()):
            cur = await conn.execute(
                "select column_name, data_type from information_schema.columns "
                "where table_schema = current_schema() and table_name = %s order by ordinal_position",
                (name,),
            )
            table = await cur.fetchall()
            await conn.execute(f"create temp view probe_{name} as {query}")
            cur = await conn.execute(
                "select column_name, data_type from information_schema.columns "
                "where table_name = %s order by ordinal_position",
                (f"probe_{name}",),
            )
            assert await cur.fetchall() == table, name
            # The next level reads this one under its name: make the view stand in for the table.
            await conn.execute(f"drop table {name}")
            await conn.execute(f"create view {name} as select * from probe_{name}")


@pytest.mark.integration
@pytest.mark.timescale
async def test_timescale_schema_is_detected_and_rollups_refresh(settings: Settings) -> None:
    from gridsim_aggregator import repository

    async with await connect(settings.db.url, settings.db.schema_name, autocommit=True) as conn:
        if not await timescale_available(conn):
            pytest.skip("the timescaledb extension is not installed on this server")
        assert await repository.timescale_enabled(conn)
        t0 = datetime(2025, 6, 20, tzinfo=UTC)
        await conn.execute(
            "insert into meter_data (ts, meter_id, consumption_kwh, avg_current, avg_voltage) "
            "select %s + make_interval(mins => g), 1, 0.01, 1, 240 from generate_series(0, 59) g",
            (t0,),
        )
        await conn.set_autocommit(False)
        await repository.refresh_timescale(
            conn, t0, t0 + timedelta(hours=1), (t0, t0 + timedelta(hours=1)), (t0, t0 + timedelta(days=1))
        )
        cur = await conn.execute("select count(*), sum(readings) from meter_data_15m")
        assert await cur.fetchone() == (4, 60)
        cur = await conn.execute("select consumption_kwh, readings from meter_data_1h")
        row = await cur.fetchone()
        assert row is not None
        assert row[1] == 60
        assert row[0] == pytest.approx(0.6)
