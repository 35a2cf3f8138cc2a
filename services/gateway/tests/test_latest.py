"""The latest-reading memory alone (no broker, no database): what it serves, when, and how much it keeps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gridsim_gateway.latest import LatestReadings, latest_query
from gridsim_shared.messages import ClockState, ReadingBatch, Watermark
from gridsim_shared.topics import NoPath

T0 = datetime(2025, 6, 20, tzinfo=UTC)


def _batch(ts: datetime, ids: list[int], kwh: float = 0.5) -> ReadingBatch:
    n = len(ids)
    return ReadingBatch(
        timestamp=ts,
        meter_id=ids,
        meter_code=[f"M{i}" for i in ids],
        consumption_kWh=[kwh] * n,
        production_kWh=[None] * n,
        consumption_kVAh=[kwh / 0.9] * n,
        production_kVAh=[None] * n,
        avg_current=[2.0] * n,
        avg_voltage=[240.0] * n,
        reactive_power_kVAR=[0.1] * n,
        power_factor=[0.9] * n,
    )


def _mark(minutes: int) -> Watermark:
    return Watermark(committed_until=T0 + timedelta(minutes=minutes))


def _clock(minutes: int, world_version: int = 0) -> ClockState:
    return ClockState(
        current_datetime=T0 + timedelta(minutes=minutes),
        state="running",
        speed=60,
        interval_s=60,
        tick=minutes,
        world_version=world_version,
    )


async def test_only_the_reading_at_the_watermark_is_served() -> None:
    latest = LatestReadings(capacity=10, depth=3)
    assert not latest.tracking()  # the batches are not even decoded yet
    latest.track((1, "M2", True, True))  # a parent is never tracked
    assert not latest.tracking()
    latest.track((1, "M1", True, False))
    assert latest.tracking()
    for minute in range(4):
        await latest.on_batch(_batch(T0 + timedelta(minutes=minute), [1, 2], kwh=minute + 0.25), NoPath())
    assert latest.answer("1", None) is None  # no watermark yet: nothing is known to be stored
    body = latest.answer("m1", _mark(2))  # by code, any case
    assert body is not None
    assert b'"consumption_kWh":2.25' in body
    assert b'"timestamp":"2025-06-20T00:02:00Z"' in body
    assert latest.answer("1", _mark(3)) is not None
    assert latest.answer("1", _mark(0)) is None  # older than the readings kept (depth 3)
    assert latest.answer("1", _mark(4)) is None  # its reading at the mark never came: ask the database
    assert latest.answer("2", _mark(3)) is None  # not tracked
    assert (latest.hits, latest.misses) == (2, 4)


async def test_parents_unlinked_and_eviction() -> None:
    latest = LatestReadings(capacity=2, depth=2)
    latest.track((9, "P9", True, True))
    latest.track((8, "U8", False, False))
    assert len(latest) == 0
    for meter in (1, 2, 3):
        latest.track((meter, f"M{meter}", True, False))
    assert len(latest) == 2
    await latest.on_batch(_batch(T0, [1, 2, 3]), NoPath())
    assert latest.answer("1", _mark(0)) is None  # the least recently asked went first
    assert latest.answer("M3", _mark(0)) is not None


async def test_clock_back_or_world_change_distrusts_what_memory_holds() -> None:
    latest = LatestReadings()
    latest.track((1, "M1", True, False))
    await latest.on_clock(_clock(5), NoPath())
    await latest.on_batch(_batch(T0 + timedelta(minutes=4), [1]), NoPath())
    assert latest.answer("1", _mark(4)) is not None
    await latest.on_clock(_clock(2), NoPath())  # a jump back: minutes up to 5 may be re-simulated
    await latest.on_batch(_batch(T0 + timedelta(minutes=2), [1]), NoPath())
    assert latest.answer("1", _mark(4)) is None
    await latest.on_clock(_clock(7), NoPath())
    await latest.on_batch(_batch(T0 + timedelta(minutes=6), [1]), NoPath())
    assert latest.answer("1", _mark(6)) is not None  # past the old high-water mark: new intervals
    await latest.on_clock(_clock(8, world_version=1), NoPath())
    assert len(latest) == 0  # links and parents may have changed: every meter is looked up again
    latest.track((1, "M1", True, False))
    latest.bus_reconnects(0)
    await latest.on_batch(_batch(T0 + timedelta(minutes=8), [1]), NoPath())
    latest.bus_reconnects(1)  # batches may have been missed while the connection was down
    assert len(latest) == 0


def test_only_the_plain_latest_query_is_answered_from_memory() -> None:
    assert latest_query(b"meter_id=MTR-1&limit=1") == "MTR-1"
    assert latest_query(b"limit=1&meter_id=17&resolution=raw") == "17"
    for query in (
        b"meter_id=MTR-1",
        b"meter_id=MTR-1&limit=2",
        b"meter_id=MTR-1&limit=1&resolution=1h",
        b"meter_id=MTR-1&limit=1&from=2025-06-20T00:00:00Z",
        b"meter_id=MTR-1&limit=1&limit=1",
        b"meter_id=&limit=1",
        b"meter_id=MTR-1&limit=1&x=1",
        b"",
    ):
        assert latest_query(query) is None, query
