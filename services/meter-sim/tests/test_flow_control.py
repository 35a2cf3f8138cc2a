"""Flow control: meter-sim never runs more than a bounded window ahead of the aggregator's durable
watermark; it waits (a step, or the clock with ``behind_policy=wait``) or drops intervals, counted
(issue 16). Before, it published without bound and the broker dropped what overflowed its queue."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from test_engine import START, insert_world, meter_sim

from gridsim_shared import channels
from gridsim_shared.bus import Bus
from gridsim_shared.commands import meter_sim as commands
from gridsim_shared.messages import ServiceStatus, Watermark
from gridsim_shared.settings import Settings
from gridsim_shared.testing import Collector
from gridsim_shared.topics import NoPath, ServicePath

pytestmark = pytest.mark.integration

MINUTE = timedelta(minutes=1)


def _windowed(settings: Settings, **sim: Any) -> Settings:
    return settings.model_copy(
        update={"sim": settings.sim.model_copy(update={"max_ahead_intervals": 3, **sim})}
    )


async def _aggregator_at(bus: Bus, committed_until: Any, received_until: Any = None) -> None:
    """Stand in for the aggregator: online, with its watermark (both retained, as it publishes them)."""
    await _aggregator_online(bus)
    await bus.publish(
        channels.WATERMARK,
        Watermark(committed_until=committed_until, received_until=received_until),
        NoPath(),
    )


async def _aggregator_online(bus: Bus) -> None:
    await bus.publish(
        channels.STATUS,
        ServiceStatus(service="aggregator", instance="0", state="online"),
        ServicePath("aggregator", "0"),
    )


async def _status_until(statuses: Collector, predicate: Any, timeout: float = 60.0) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            for status, _path in reversed(statuses.messages):
                if status.state == "online" and predicate(status.detail):
                    return status.detail  # type: ignore[no-any-return]
            await asyncio.sleep(0.05)


async def test_a_step_waits_for_the_watermark_when_the_window_is_full(settings: Settings) -> None:
    settings = _windowed(settings)
    await insert_world(settings)
    async with meter_sim(settings) as bus:
        batches = await Collector(bus, channels.BATCH).start()
        statuses = await Collector(bus, channels.STATUS, service="meter-sim").start()
        await _aggregator_at(bus, START - MINUTE)
        step = asyncio.create_task(bus.call(commands.STEP, commands.STEP.build(intervals=10), timeout=120))
        try:
            detail = await _status_until(
                statuses, lambda d: d.get("flow_waits", 0) >= 1 and d["ahead_intervals"] == 3, timeout=15
            )
        except TimeoutError:
            print(
                "STATUSES",
                len(statuses.messages),
                [x.detail for x, _ in statuses.messages][-2:],
                len(batches.messages),
                step.done(),
            )
            raise
        assert detail["intervals_published"] == 3
        assert not step.done()
        assert {b.timestamp for b, _ in batches.messages} == {START, START + MINUTE, START + 2 * MINUTE}
        await _aggregator_at(bus, START + 9 * MINUTE)  # the aggregator caught up: room for the rest
        result = await step
    assert result.intervals == 10
    assert result.stored is True
    assert len({b.timestamp for b, _ in batches.messages}) == 10  # nothing dropped


async def test_the_drop_policy_skips_intervals_and_counts_them(settings: Settings) -> None:
    settings = _windowed(settings, max_ahead_intervals=2, behind_policy="drop")
    await insert_world(settings)
    async with meter_sim(settings) as bus:
        batches = await Collector(bus, channels.BATCH).start()
        statuses = await Collector(bus, channels.STATUS, service="meter-sim").start()
        await _aggregator_at(bus, START - MINUTE)
        await bus.call(commands.SET_SPEED, commands.SET_SPEED.build(speed=6000))
        await bus.call(commands.RESUME)
        await _status_until(statuses, lambda d: d.get("flow_dropped", 0) >= 5)
        await bus.call(commands.PAUSE)
        detail = await _status_until(statuses, lambda d: d["clock_state"] == "paused")
    published = {b.timestamp for b, _ in batches.messages}
    # Never beyond the window (watermark + 2 intervals), whatever the schedule's own catch-up skipped.
    assert START in published
    assert published <= {START, START + MINUTE}
    assert detail["intervals_published"] == len(published)
    assert detail["flow_dropped"] >= 5
    # Every tick is published or counted as dropped (the schedule's own catch-up drops included).
    assert detail["intervals_published"] + detail["dropped_intervals"] == detail["tick"]


async def test_without_an_aggregator_ever_seen_meter_sim_is_not_held(settings: Settings) -> None:
    settings = _windowed(settings)
    await insert_world(settings)
    async with meter_sim(settings) as bus:
        result = await bus.call(commands.STEP, commands.STEP.build(intervals=6), timeout=60)
    assert result.intervals == 6
    assert result.stored is None


async def test_one_interval_larger_than_the_message_window_still_goes_one_at_a_time(
    settings: Settings,
) -> None:
    """An interval of more batches than ``max_ahead_messages`` (100,000 meters against a stock broker's
    1,000) is published once everything before it is closed, never two at once; before, the window
    allowed it two or more intervals whatever their size, or held it for ever."""
    settings = _windowed(settings, max_ahead_intervals=240, max_ahead_messages=1)
    await insert_world(settings)
    async with meter_sim(settings) as bus:
        batches = await Collector(bus, channels.BATCH).start()
        statuses = await Collector(bus, channels.STATUS, service="meter-sim").start()
        await _aggregator_at(bus, START - MINUTE)
        step = asyncio.create_task(bus.call(commands.STEP, commands.STEP.build(intervals=3), timeout=120))
        await _status_until(statuses, lambda d: d.get("flow_waits", 0) >= 1 and d["intervals_published"] == 1)
        assert {b.timestamp for b, _ in batches.messages} == {START}
        await _aggregator_at(bus, START)  # START closed: room for the next one, only
        await _status_until(statuses, lambda d: d["intervals_published"] == 2)
        await asyncio.sleep(0.3)
        assert {b.timestamp for b, _ in batches.messages} == {START, START + MINUTE}
        await _aggregator_at(bus, START + 2 * MINUTE)
        result = await step
    assert result.intervals == 3


async def test_an_interval_closed_before_it_was_all_received_still_holds_the_window(
    settings: Settings,
) -> None:
    """The aggregator's bounded wait closes an interval whose batches are still queued in the broker: the
    window counts from what every instance has received (``received_until``), not from the close. Before,
    the next interval went out on the close and overflowed a stock broker's queue (bench_loss, 100,000
    meters: 73,500 readings dropped)."""
    settings = _windowed(settings, max_ahead_intervals=1)
    await insert_world(settings)
    async with meter_sim(settings) as bus:
        batches = await Collector(bus, channels.BATCH).start()
        statuses = await Collector(bus, channels.STATUS, service="meter-sim").start()
        await _aggregator_at(bus, START - MINUTE, START - MINUTE)
        step = asyncio.create_task(bus.call(commands.STEP, commands.STEP.build(intervals=2), timeout=120))
        await _status_until(statuses, lambda d: d.get("flow_waits", 0) >= 1 and d["intervals_published"] == 1)
        await _aggregator_at(bus, START, START - MINUTE)  # closed, but not all received yet
        await asyncio.sleep(0.5)
        assert {b.timestamp for b, _ in batches.messages} == {START}
        await _aggregator_at(bus, START, START)  # the late batches arrived
        await _status_until(statuses, lambda d: d["intervals_published"] == 2)
        await _aggregator_at(bus, START + MINUTE, START + MINUTE)
        result = await step
    assert result.intervals == 2


async def test_on_a_cold_start_the_second_interval_waits_for_the_first_to_close(settings: Settings) -> None:
    """An aggregator online that has closed nothing yet: before, the window did not apply until its first
    watermark, and the intervals of the burst after a slow fleet load all went out at once. The window
    counts from the interval before the first published."""
    settings = _windowed(settings, max_ahead_intervals=1)
    await insert_world(settings)
    async with meter_sim(settings) as bus:
        batches = await Collector(bus, channels.BATCH).start()
        statuses = await Collector(bus, channels.STATUS, service="meter-sim").start()
        await _aggregator_online(bus)
        await asyncio.sleep(0.3)
        step = asyncio.create_task(bus.call(commands.STEP, commands.STEP.build(intervals=3), timeout=120))
        await _status_until(statuses, lambda d: d.get("flow_waits", 0) >= 1 and d["intervals_published"] == 1)
        await asyncio.sleep(0.3)
        assert {b.timestamp for b, _ in batches.messages} == {START}
        await _aggregator_at(bus, START + 2 * MINUTE, START + 2 * MINUTE)
        result = await step
    assert result.intervals == 3


async def test_the_clock_keeps_going_after_its_schedule_skips_more_than_the_window(
    settings: Settings,
) -> None:
    """The running clock falls behind and skips intervals to keep its schedule (more than the message
    window holds); the aggregator closes everything published. Before, the skipped intervals counted
    against the window as if queued, and the clock waited for ever for a watermark past intervals that were
    never published (bench_pipeline's real-time run at 1440x: one interval in 300 s)."""
    settings = _windowed(settings, max_ahead_intervals=240, max_ahead_messages=3)  # 1 batch an interval
    await insert_world(settings)
    async with meter_sim(settings) as bus:
        batches = await Collector(bus, channels.BATCH).start()
        statuses = await Collector(bus, channels.STATUS, service="meter-sim").start()
        await _aggregator_at(bus, START - MINUTE, START - MINUTE)
        stop = asyncio.Event()

        async def aggregator() -> None:  # closes every interval as soon as its batch arrives
            closed = None
            while not stop.is_set():
                latest = max((b.timestamp for b, _ in batches.messages), default=None)
                if latest is not None and latest != closed:
                    closed = latest
                    await _aggregator_at(bus, latest, latest)
                await asyncio.sleep(0.02)

        closing = asyncio.create_task(aggregator())
        try:
            # A minute of simulated time every millisecond: every interval takes longer than its slot.
            await bus.call(commands.SET_SPEED, commands.SET_SPEED.build(speed=60_000))
            await bus.call(commands.RESUME)
            skipped = await _status_until(statuses, lambda d: d["dropped_intervals"] >= 5)
            detail = await _status_until(
                statuses, lambda d: d["intervals_published"] >= skipped["intervals_published"] + 10
            )
            await bus.call(commands.PAUSE)
        finally:
            stop.set()
            await closing
    assert detail["flow_dropped"] == 0  # the `wait` policy: skips are the schedule's, not the window's
    assert detail["dropped_intervals"] >= 5
