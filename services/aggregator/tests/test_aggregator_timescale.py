"""TimescaleDB: the closer's branch (pure), the migration checked against plain PostgreSQL, and the real
thing (tests marked ``timescale``: run by CI's TimescaleDB pass, skipped where no TimescaleDB is)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest

from gridsim_aggregator import repository
from gridsim_aggregator.close_plan import time_rollup_plan
from gridsim_shared import roles
from gridsim_shared.db import connect, drop_schemas, list_migrations
from gridsim_shared.settings import Settings

T = datetime(2025, 6, 20, 23, 44, tzinfo=UTC)
_QUARTER = timedelta(minutes=15)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
_VIEW = re.compile(
    r"create materialized view (\w+)_agg with \(timescaledb\.continuous[^)]*\) as\n(.*?)\nwith no data;", re.S
)
ROLLUPS = [f"{kind}_{width}" for kind in ("meter_data", "grid_rollups") for width in ("15m", "1h", "1d")]


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


def test_the_migration_puts_an_aggregate_behind_every_rollup_name() -> None:
    text = _timescale_sql()
    assert sorted(name for name, _ in _VIEW.findall(text)) == sorted(ROLLUPS)
    for name in ROLLUPS:
        assert f"alter table {name} rename to {name}_history;" in text
        assert f"create view {name} as" in text


async def _columns(conn: Any, name: str) -> list[tuple[str, str]]:
    cur = await conn.execute(
        "select column_name, data_type from information_schema.columns "
        "where table_name = %s and to_regclass(format('%%I.%%I', table_schema, table_name)) = to_regclass(%s) "
        "order by ordinal_position",
        (name, name),
    )
    return list(await cur.fetchall())


@pytest.mark.integration
async def test_continuous_aggregates_have_the_plain_tables_columns(settings: Settings) -> None:
    """Each aggregate yields the names and types of the plain table it stands in for: readers query the
    rollup names unchanged on both engines.

    On TimescaleDB the real views are compared with the history tables (the plain tables renamed). On plain
    PostgreSQL each aggregate's query from the migration runs with a stand-in for time_bucket."""
    async with await connect(settings.db.url, settings.db.schema_name, autocommit=True) as conn:
        if await repository.timescale_enabled(conn):
            for name in ROLLUPS:
                table = await _columns(conn, f"{name}_history")
                assert table, name
                assert await _columns(conn, name) == table, name
                assert await _columns(conn, f"{name}_agg") == table, name
            return
        await conn.execute(
            "create function time_bucket(w interval, t timestamptz, origin timestamptz) returns timestamptz "
            "language sql immutable as $$ select date_bin(w, t, origin) $$"
        )
        views = _VIEW.findall(_timescale_sql())
        assert sorted(name for name, _ in views) == sorted(ROLLUPS)
        for name, query in views:
            table = await _columns(conn, name)
            await conn.execute(f"create temp view probe_{name} as {query}")
            assert await _columns(conn, f"probe_{name}") == table, name
            # The next level reads this one under its aggregate's name.
            await conn.execute(f"create view {name}_agg as select * from probe_{name}")


@pytest.mark.integration
@pytest.mark.timescale
async def test_timescale_schema_is_detected_and_rollups_refresh(timescale_settings: Settings) -> None:
    settings = timescale_settings
    async with await connect(settings.db.url, settings.db.schema_name, autocommit=True) as conn:
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


async def _snapshot(conn: Any) -> dict[str, list[tuple[Any, ...]]]:
    """Every rollup row, floats rounded (sums over different groupings differ in the last bits)."""
    found: dict[str, list[tuple[Any, ...]]] = {}
    for name in ROLLUPS:
        cur = await conn.execute(f"select * from {name} order by 1, 2")
        found[name] = [
            tuple(round(v, 9) if isinstance(v, float) else v for v in row) for row in await cur.fetchall()
        ]
    return found


@pytest.mark.integration
@pytest.mark.timescale
async def test_moving_from_plain_postgresql_keeps_every_row_and_rollup(timescale_settings: Settings) -> None:
    """A schema built and filled on plain PostgreSQL (four days rolled up, the first two days' raw rows
    already dropped by retention) keeps every raw row and every rollup when 0201 moves it to TimescaleDB."""
    from psycopg import sql

    from gridsim_shared.db import apply_migrations

    url = timescale_settings.db.url
    schema = f"{timescale_settings.db.schema_name}_plain"
    t0 = datetime(2025, 6, 20, tzinfo=UTC)
    try:
        async with await connect(url, schema, autocommit=True) as conn:
            await conn.execute(sql.SQL("create schema {}").format(sql.Identifier(schema)))
            await conn.execute(
                "create table schema_migrations (name text primary key, applied_at timestamptz)"
            )
            for migration in list_migrations():  # what apply_migrations does where there is no TimescaleDB
                if not migration.timescale_only:
                    await conn.execute(migration.text.encode())
                    await conn.execute("insert into schema_migrations values (%s, now())", (migration.name,))
            await conn.execute(
                "insert into meter_data (ts, meter_id, consumption_kwh, production_kwh, avg_current, avg_voltage)"
                " select %s + make_interval(mins => g), m, (g %% 7) * 0.001 + m * 0.0001, (g %% 5) * 0.0005,"
                " 1 + (g %% 3), 230 + (g %% 11) from generate_series(0, 4 * 1440 - 1) g, generate_series(1, 2) m",
                (t0,),
            )
            await conn.execute(
                "insert into grid_rollups (ts, node_id, level, consumption_kwh, production_kwh, consumption_kvah,"
                " production_kvah, kvarh, apparent_kva, meters_expected, meters_reporting)"
                " select %s + make_interval(mins => g), 7, 'transformer', (g %% 7) * 0.01, 0, (g %% 7) * 0.011,"
                " 0, 0.001, (g %% 13) * 1.5, 2, 2 from generate_series(0, 4 * 1440 - 1) g",
                (t0,),
            )
            end = t0 + timedelta(days=4)
            async with conn.transaction():
                await repository.roll_minutes(conn, t0, end)
                await repository.roll_coarser(
                    conn, source="15m", target="1h", width="1 hour", start=t0, end=end
                )
                await repository.roll_coarser(
                    conn, source="1h", target="1d", width="1 day", start=t0, end=end
                )
                await repository.apply_retention(conn, t0 + timedelta(days=2))
            before = await _snapshot(conn)
            assert len(before["meter_data_1d"]) == 8
            assert len(before["grid_rollups_15m"]) == 4 * 96

        assert await apply_migrations(url, schema) == ["0201_aggregator.timescale.sql"]

        async with await connect(url, schema, autocommit=True) as conn:
            assert await repository.timescale_enabled(conn)
            await conn.set_autocommit(False)
            await repository.refresh_all_timescale(conn)  # what the closer does when it becomes leader
            await conn.set_autocommit(True)
            cur = await conn.execute("select count(*), min(ts) from meter_data")
            assert await cur.fetchone() == (2 * 2 * 1440, t0 + timedelta(days=2))
            assert await _snapshot(conn) == before
            # The days retention had dropped come from history; the others from the aggregates.
            cur = await conn.execute("select count(*) from meter_data_1d_history")
            assert await cur.fetchone() == (4,)
    finally:
        async with await connect(url, autocommit=True) as conn:
            await conn.execute(drop_schemas(schema))


@pytest.mark.integration
@pytest.mark.timescale
async def test_the_closer_refreshes_on_the_connection_it_has_just_queried(
    timescale_settings: Settings,
) -> None:
    """Issue 14's crash: the closer asked whether meter_data is a hypertable on a pooled (non-autocommit)
    connection, which left a transaction open, and the refresh could not switch to autocommit."""
    from psycopg.pq import TransactionStatus

    from gridsim_aggregator.closer import Closer
    from gridsim_aggregator.settings import AggregatorSettings

    settings = timescale_settings
    closer = Closer(
        pool=cast(Any, None),
        bus=cast(Any, None),
        database_url=settings.db.url,
        schema=settings.db.schema_name,
        tuning=AggregatorSettings(),
    )
    t0 = datetime(2025, 6, 20, tzinfo=UTC)
    async with await connect(
        settings.db.url, settings.db.schema_name
    ) as conn:  # as the pool's: no autocommit
        assert await closer._uses_timescale(conn)
        assert conn.info.transaction_status == TransactionStatus.IDLE
        await repository.refresh_timescale(conn, t0, t0 + _QUARTER, (t0, t0 + HOUR), (t0, t0 + DAY))
        await conn.execute(
            "select 1"
        )  # an implicit transaction: refused with a clear error, not a crash later
        with pytest.raises(RuntimeError, match="idle connection"):
            await repository.refresh_timescale(conn, t0, t0 + _QUARTER, (t0, t0 + HOUR), (t0, t0 + DAY))


@pytest.mark.integration
@pytest.mark.timescale
async def test_retention_and_compression_in_simulated_time_keep_the_rollups(
    timescale_settings: Settings,
) -> None:
    """Three simulated days: retention drops the first day's raw chunk, compression compresses the second;
    the daily rollups still show all three days, and a late reading lands in the compressed chunk."""
    settings = timescale_settings
    t0 = datetime(2025, 6, 20, tzinfo=UTC)
    async with await connect(settings.db.url, settings.db.schema_name, autocommit=True) as conn:
        await conn.execute(
            "insert into meter_data (ts, meter_id, consumption_kwh, avg_current, avg_voltage) "
            "select %s + make_interval(mins => g), 1, 0.01, 1, 240 from generate_series(0, 3 * 1440 - 1) g "
            "where g <> 1440 + 600",  # one minute of day 2 missing: it arrives late, below
            (t0,),
        )
        await conn.set_autocommit(False)
        end = t0 + 3 * DAY
        await repository.refresh_timescale(conn, t0, end, (t0, end), (t0, end))
        await repository.timescale_housekeeping(conn, t0 + DAY, t0 + 2 * DAY)
        await conn.commit()
        cur = await conn.execute("select min(ts), count(*) from meter_data")
        assert await cur.fetchone() == (t0 + DAY, 2 * 1440 - 1)
        cur = await conn.execute(
            "select range_start, is_compressed from timescaledb_information.chunks "
            "where hypertable_schema = %s and hypertable_name = 'meter_data' order by 1",
            (roles.schema_of(settings.db.schema_name, "aggregator"),),
        )
        assert await cur.fetchall() == [(t0 + DAY, True), (t0 + 2 * DAY, False)]
        cur = await conn.execute("select bucket, readings from meter_data_1d order by 1")
        assert await cur.fetchall() == [(t0, 1440), (t0 + DAY, 1439), (t0 + 2 * DAY, 1440)]

        late = t0 + DAY + timedelta(minutes=600)
        await conn.execute(
            "insert into meter_data (ts, meter_id, consumption_kwh, avg_current, avg_voltage) "
            "values (%s, 1, 0.01, 1, 240)",
            (late,),
        )
        await conn.commit()
        window = late.replace(minute=0)  # 10:00, the window of the late minute
        await repository.refresh_timescale(
            conn, window, window + _QUARTER, (window, window + HOUR), (t0 + DAY, t0 + 2 * DAY)
        )
        cur = await conn.execute("select bucket, readings from meter_data_1d order by 1")
        assert await cur.fetchall() == [(t0, 1440), (t0 + DAY, 1440), (t0 + 2 * DAY, 1440)]
