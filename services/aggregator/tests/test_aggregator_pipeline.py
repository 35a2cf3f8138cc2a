"""The aggregator on the real broker and database: ingest, parents, grid rollups, watermark, idempotency."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import numpy as np
import psycopg
import pytest
from aggregator_world import T0, fetch, make_batch, make_world, publish_clock, publish_interval

from gridsim import testing
from gridsim_aggregator import repository
from gridsim_aggregator.__main__ import serve
from gridsim_aggregator.settings import AggregatorSettings
from gridsim_shared import channels
from gridsim_shared.bus import Bus
from gridsim_shared.db import connect
from gridsim_shared.messages import Watermark
from gridsim_shared.settings import Settings
from gridsim_shared.testing import Collector, running

pytestmark = pytest.mark.integration

TUNING = AggregatorSettings(flush_ms=5, close_after_s=1.5)


def _serve(tuning: AggregatorSettings = TUNING):  # type: ignore[no-untyped-def]
    async def run(settings: Settings, stop: asyncio.Event) -> None:
        await serve(settings, stop, tuning)

    return run


async def wait_watermark(collector: Collector, until, timeout: float = 15.0) -> Watermark:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(timeout):
        while True:
            for msg, _ in reversed(collector.messages):
                if msg.committed_until >= until:
                    return msg  # type: ignore[no-any-return]
            await collector.wait_for(len(collector.messages) + 1, timeout)


async def test_interval_stores_leaves_parents_and_grid_rollups(settings: Settings) -> None:
    world = await make_world(settings)
    async with Bus(settings.mqtt, "test") as bus, running(_serve(), settings=settings):
        marks = await Collector(bus, channels.WATERMARK).start()
        parents = await Collector(bus, channels.READING).start()
        rollups = await Collector(bus, channels.ROLLUP_TRANSFORMER).start()
        batches = await publish_interval(bus, world, T0)
        mark = await wait_watermark(marks, T0)
        assert mark.readings_committed == 4
        await parents.wait_for(3)
        await rollups.wait_for(2)

    rows = await fetch(
        settings,
        "select meter_id, consumption_kwh, avg_current, avg_voltage, is_parent, partial from meter_data where ts = %s",
        T0,
    )
    by_id = {r[0]: r for r in rows}
    m = world.meters
    leaves = {m[c]: (batches[t], i) for t in batches for i, c in enumerate(batches[t].meter_code)}
    assert {i for i, r in by_id.items() if not r[4]} == set(leaves)
    # p2 = m1 + m2 + m4 across two transformers, depth 2; voltage load-weighted
    kids = [leaves[m[c]] for c in ("M1", "M2", "M4")]
    kwh = sum(b.consumption_kWh[i] for b, i in kids)  # type: ignore[misc]
    amps = sum(b.avg_current[i] for b, i in kids)
    volts = sum(b.avg_current[i] * b.avg_voltage[i] for b, i in kids) / amps
    p2 = by_id[m["P2"]]
    assert p2[1] == pytest.approx(kwh)
    assert p2[2] == pytest.approx(amps)
    assert p2[3] == pytest.approx(volts)
    assert p2[4] is True
    assert p2[5] is False
    # p3's only child is OFF: zero, not silence, and not partial (nothing was expected)
    assert by_id[m["P3"]][1:4] == (0.0, 0.0, 0.0)
    published = {msg.meter_id: msg for msg, _ in parents.messages}
    assert published[m["P2"]].is_parent
    assert published[m["P2"]].consumption_kWh == pytest.approx(kwh)
    assert published[m["P3"]].consumption_kWh == 0.0
    # transformer rollup: loading against the rating
    t1 = next(msg for msg, path in rollups.messages if path.transformer == "t1")
    assert t1.meters_expected == 3
    assert t1.meters_reporting == 3
    assert not t1.partial
    assert t1.capacity_kVA == 50.0
    assert t1.loading_pct == pytest.approx(100 * t1.apparent_kVA / 50.0)
    assert t1.coincident_peak_kVA == pytest.approx(t1.apparent_kVA)
    grid = await fetch(
        settings, "select level, meters_reporting from grid_rollups where ts = %s order by level", T0
    )
    assert grid == [("feeder", 4), ("transformer", 3), ("transformer", 1), ("utility", 4)] or sorted(
        grid
    ) == sorted([("feeder", 4), ("transformer", 3), ("transformer", 1), ("utility", 4)])


async def test_redelivered_and_malformed_messages_change_nothing(settings: Settings) -> None:
    world = await make_world(settings)
    async with Bus(settings.mqtt, "test") as bus, running(_serve(), settings=settings):
        marks = await Collector(bus, channels.WATERMARK).start()
        first = make_batch(world, "t1", T0)
        await bus.publish(channels.BATCH, first, world.path("t1"))
        await bus.publish_raw(
            channels.BATCH.topic(settings.mqtt.base_topic, world.path("t1")), b'{"not": "a batch"}'
        )
        await bus.publish(channels.BATCH, first, world.path("t1"))  # redelivery
        await bus.publish(channels.BATCH, make_batch(world, "t2", T0), world.path("t2"))
        await publish_clock(bus, T0)
        mark = await wait_watermark(marks, T0)
    assert mark.readings_committed == 4  # the duplicate batch counted once
    rows = await fetch(
        settings, "select count(*), sum(consumption_kwh) from meter_data where ts = %s and not is_parent", T0
    )
    assert rows[0][0] == 4
    expected = sum(first.consumption_kWh) + sum(make_batch(world, "t2", T0).consumption_kWh)  # type: ignore[arg-type]
    assert rows[0][1] == pytest.approx(expected)


async def test_missing_child_closes_partial_after_bounded_wait_then_late_reading_repairs(
    settings: Settings,
) -> None:
    world = await make_world(settings)
    async with Bus(settings.mqtt, "test") as bus, running(_serve(), settings=settings):
        marks = await Collector(bus, channels.WATERMARK).start()
        await bus.publish(channels.BATCH, make_batch(world, "t1", T0), world.path("t1"))  # t2 (M4) is late
        await wait_watermark(marks, T0, timeout=10)
        p2 = await fetch(
            settings, "select partial from meter_data where ts = %s and meter_id = %s", T0, world.meters["P2"]
        )
        assert p2 == [(True,)]
        await bus.publish(channels.BATCH, make_batch(world, "t2", T0), world.path("t2"))
        async with asyncio.timeout(10):
            while (
                await fetch(
                    settings,
                    "select partial from meter_data where ts = %s and meter_id = %s",
                    T0,
                    world.meters["P2"],
                )
            ) != [(False,)]:
                await asyncio.sleep(0.05)
    t2 = await fetch(
        settings,
        "select meters_reporting, partial from grid_rollups where ts = %s and node_id = %s",
        T0,
        world.transformers["t2"],
    )
    assert t2 == [(1, False)]


async def test_an_interval_still_arriving_is_not_closed_by_the_bounded_wait(settings: Settings) -> None:
    """The bounded wait counts from the interval's latest batch, not its first: a million meters' interval
    (10,000 batches) takes longer than the wait to arrive and closed partial every minute when it counted
    from the first (recomputed when the rest came: the aggregator fell further behind each interval)."""
    world = await make_world(settings)
    async with Bus(settings.mqtt, "test") as bus, running(_serve(), settings=settings):
        marks = await Collector(bus, channels.WATERMARK).start()
        # t1's readings in three chunks, 1 s apart: 2 s from the first to the last, over the 1.5 s wait.
        for code in ("M1", "M2", "M3"):
            await bus.publish(channels.BATCH, make_batch(world, "t1", T0, codes=[code]), world.path("t1"))
            await asyncio.sleep(1.0)
        assert marks.messages == []  # nothing closed while batches kept coming
        await bus.publish(channels.BATCH, make_batch(world, "t2", T0), world.path("t2"))
        mark = await wait_watermark(marks, T0, timeout=10)
    assert mark.readings_committed == 4
    partial = await fetch(settings, "select count(*) from meter_data where ts = %s and partial", T0)
    assert partial == [(0,)]
    late = await fetch(settings, "select count(*) from late_intervals")
    assert late == [(0,)]


async def test_time_rollups_sum_the_minutes(settings: Settings) -> None:
    world = await make_world(settings)
    async with Bus(settings.mqtt, "test") as bus, running(_serve(), settings=settings):
        marks = await Collector(bus, channels.WATERMARK).start()
        for i in range(31):  # two whole 15-minute windows, then the first minute of the third
            await publish_interval(bus, world, T0 + timedelta(minutes=i))
        await wait_watermark(marks, T0 + timedelta(minutes=30))
    minutes = await fetch(
        settings,
        "select meter_id, sum(consumption_kwh), count(*) from meter_data where ts < %s group by meter_id order by 1",
        T0 + timedelta(minutes=30),
    )
    quarter = await fetch(
        settings,
        "select meter_id, sum(consumption_kwh), sum(readings) from meter_data_15m group by meter_id order by 1",
    )
    assert [(a, round(b, 9), c) for a, b, c in minutes] == [(a, round(b, 9), c) for a, b, c in quarter]
    hour = await fetch(settings, "select meter_id, consumption_kwh, readings from meter_data_1h order by 1")
    day = await fetch(settings, "select meter_id, consumption_kwh, readings from meter_data_1d order by 1")
    assert [(a, round(b, 9), c) for a, b, c in hour] == [(a, round(b, 9), c) for a, b, c in minutes]
    assert np.allclose([r[1] for r in day], [r[1] for r in hour])
    nodes = await fetch(settings, "select count(*), max(intervals) from grid_rollups_15m")
    assert nodes == [(8, 15)]  # 4 nodes x 2 windows


async def test_a_window_closed_but_not_rolled_before_a_stop_is_rolled_at_the_next_start(
    settings: Settings,
) -> None:
    """Closing an interval and rolling its 15-minute window are two transactions: a process stopped between
    them (kill -9, SIGTERM, the database restarted) left the window's minutes closed but not rolled. With
    the clock stopped no later close rolls it, so the next start must (the chaos campaign's bills of a
    stopped world were one window short)."""
    if testing.database_engine(settings.db.url) == "timescale":
        pytest.skip("on TimescaleDB the rollups are continuous aggregates, not tables the roll writes")
    world = await make_world(settings)
    async with Bus(settings.mqtt, "test") as bus, running(_serve(), settings=settings):
        marks = await Collector(bus, channels.WATERMARK).start()
        for i in range(15):  # one whole window: closing its last minute rolls it
            await publish_interval(bus, world, T0 + timedelta(minutes=i))
        await wait_watermark(marks, T0 + timedelta(minutes=14))
    # What a stop between the two transactions leaves: the watermark moved, the rollups and rolled_until not.
    async with await connect(settings.db.url, settings.db.schema_name, autocommit=True) as conn:
        await conn.execute("update aggregator_state set rolled_until = null")
        for table in ("meter_data_15m", "meter_data_1h", "meter_data_1d"):
            await conn.execute(f"delete from {table}")
    minutes = await fetch(
        settings,
        "select meter_id, round(sum(consumption_kwh)::numeric, 9), count(*) from meter_data group by 1 order by 1",
    )
    assert minutes
    assert {n for _, _, n in minutes} == {15}
    async with running(_serve(), settings=settings):  # nothing more is published: the clock has stopped
        async with asyncio.timeout(30):
            while await fetch(settings, "select rolled_until from aggregator_state") != [
                (T0 + timedelta(minutes=15),)
            ]:
                await asyncio.sleep(0.05)
    for table in ("meter_data_15m", "meter_data_1h", "meter_data_1d"):
        rows = await fetch(
            settings,
            f"select meter_id, round(sum(consumption_kwh)::numeric, 9), sum(readings) from {table} "
            "group by 1 order by 1",
        )
        assert rows == minutes, table


async def test_a_recompute_cut_short_keeps_its_late_mark_and_is_done_again(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A late reading's recompute that fails (the database restarted under it) is retried: its mark leaves
    ``late_intervals`` only with the recomputation. Before, the marks were deleted first and a failed
    recompute left the reading out of the per-meter rollups and the bills for good (chaos campaign)."""
    if testing.database_engine(settings.db.url) == "timescale":
        pytest.skip("on TimescaleDB the recomputed rollups are continuous aggregates, refreshed elsewhere")
    world = await make_world(settings)
    late = T0 + timedelta(minutes=3)
    failures = []
    roll_minutes = repository.roll_minutes

    async def cut_once(*args: object, **kwargs: object) -> None:
        if not failures:
            failures.append(1)
            msg = "the database restarted (test)"
            raise psycopg.OperationalError(msg)
        await roll_minutes(*args, **kwargs)  # type: ignore[arg-type]

    async with Bus(settings.mqtt, "test") as bus, running(_serve(), settings=settings):
        marks = await Collector(bus, channels.WATERMARK).start()
        for i in range(16):  # t2 (M4) misses minute 3; the clock closes it partial
            ts = T0 + timedelta(minutes=i)
            for t in world.leaves:
                if not (t == "t2" and ts == late):
                    await bus.publish(channels.BATCH, make_batch(world, t, ts), world.path(t))
            await publish_clock(bus, ts)
        await wait_watermark(marks, T0 + timedelta(minutes=15))
        m4 = world.meters["M4"]
        monkeypatch.setattr(repository, "roll_minutes", cut_once)
        await bus.publish(channels.BATCH, make_batch(world, "t2", late), world.path("t2"))
        async with asyncio.timeout(30):
            while await fetch(
                settings,
                "select (select readings from meter_data_15m where meter_id = %s and bucket = %s), "
                "(select readings from meter_data_1d where meter_id = %s)",
                m4,
                T0,
                m4,
            ) != [(15, 15)]:
                await asyncio.sleep(0.05)
    assert failures == [1]
    assert await fetch(settings, "select count(*) from late_intervals") == [(0,)]


async def test_time_rollups_add_new_windows_and_a_late_reading_recomputes_its_window(
    settings: Settings,
) -> None:
    """New windows are added into their hour and day; a late reading in a rolled window recomputes it."""
    world = await make_world(settings)
    late = T0 + timedelta(minutes=3)
    async with Bus(settings.mqtt, "test") as bus, running(_serve(), settings=settings):
        marks = await Collector(bus, channels.WATERMARK).start()
        for i in range(31):  # t2 (M4) misses minute 3; the clock closes it partial
            ts = T0 + timedelta(minutes=i)
            for t in world.leaves:
                if not (t == "t2" and ts == late):
                    await bus.publish(channels.BATCH, make_batch(world, t, ts), world.path(t))
            await publish_clock(bus, ts)
        await wait_watermark(marks, T0 + timedelta(minutes=30))
        m4 = world.meters["M4"]
        assert await fetch(
            settings, "select readings from meter_data_15m where meter_id = %s and bucket = %s", m4, T0
        ) == [(14,)]
        await bus.publish(channels.BATCH, make_batch(world, "t2", late), world.path("t2"))
        # Until the day shows it (on TimescaleDB the 15-minute, hourly and daily aggregates are refreshed
        # one after another; on plain PostgreSQL all three change in one transaction).
        async with asyncio.timeout(30):
            while await fetch(
                settings,
                "select (select readings from meter_data_15m where meter_id = %s and bucket = %s), "
                "(select readings from meter_data_1d where meter_id = %s)",
                m4,
                T0,
                m4,
            ) != [(15, 30)]:
                await asyncio.sleep(0.05)
    until = T0 + timedelta(minutes=30)
    minutes = await fetch(
        settings,
        "select meter_id, round(sum(consumption_kwh)::numeric, 9), count(*), max(avg_current) from meter_data "
        "where ts < %s group by 1 order by 1",
        until,
    )
    assert {n for _, _, n, _ in minutes} == {30}  # every reporting leaf and parent, every minute
    for table in ("meter_data_15m", "meter_data_1h", "meter_data_1d"):
        rows = await fetch(
            settings,
            f"select meter_id, round(sum(consumption_kwh)::numeric, 9), sum(readings), max(current_max) "
            f"from {table} where bucket < %s group by 1 order by 1",
            until,
        )
        assert rows == minutes, table
    grid = await fetch(
        settings,
        "select node_id, round(sum(consumption_kwh)::numeric, 9), count(*), max(apparent_kva), "
        "(array_agg(ts order by apparent_kva desc, ts))[1] from grid_rollups where ts < %s group by 1 order by 1",
        until,
    )
    for table in ("grid_rollups_1h", "grid_rollups_1d"):
        rows = await fetch(
            settings,
            f"select node_id, round(consumption_kwh::numeric, 9), intervals, peak_kva, peak_at from {table} "
            "order by 1",
        )
        assert rows == grid, table


async def test_two_instances_share_the_load_and_roll_up_correctly(settings: Settings) -> None:
    """$share splits the batches; one instance closes; parents spanning both shares are still right."""
    world = await make_world(settings)
    shared = AggregatorSettings(flush_ms=5, close_after_s=5, share_group="aggregator")
    second = settings.model_copy(update={"instance": "1"})

    async def one(s: Settings, stop: asyncio.Event) -> None:
        await serve(s, stop, shared)

    async with (
        Bus(settings.mqtt, "test") as bus,
        running(one, settings=settings),
        running(one, settings=second),
    ):
        marks = await Collector(bus, channels.WATERMARK).start()
        sent = [await publish_interval(bus, world, T0 + timedelta(minutes=i)) for i in range(10)]
        await wait_watermark(marks, T0 + timedelta(minutes=9))
    per_instance = await fetch(
        settings, "select instance, count(*) from ingest_batches group by 1 order by 1"
    )
    assert len(per_instance) == 2  # both took a share
    assert sum(n for _, n in per_instance) == 20
    p2 = await fetch(
        settings,
        "select ts, consumption_kwh, partial from meter_data where meter_id = %s order by ts",
        world.meters["P2"],
    )
    for (ts, kwh, partial), batches in zip(p2, sent, strict=True):
        want = sum(
            b.consumption_kWh[i]  # type: ignore[misc]
            for b in batches.values()
            for i, c in enumerate(b.meter_code)
            if c in {"M1", "M2", "M4"}
        )
        assert kwh == pytest.approx(want), ts
        assert partial is False
