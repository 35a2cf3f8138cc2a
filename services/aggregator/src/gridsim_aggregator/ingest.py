"""Ingest: ReadingBatch messages → buffered → one COPY transaction per flush → acknowledged.

A message's PUBACK is sent only after the transaction holding its readings commits; until then the
broker keeps it (persistent session), so a crash loses nothing and a redelivery is absorbed by the
``(ts, meter_id)`` key. A flush that fails (database down, connection lost mid-COPY, failed COMMIT) is
retried with backoff until it succeeds, its messages un-acknowledged; meanwhile the buffer stops
accepting messages, which holds the broker's queue (backpressure, no loss).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import psycopg
from psycopg_pool import AsyncConnectionPool
from pydantic import ValidationError

from gridsim_aggregator import domain, repository
from gridsim_aggregator.batch_decode import decode_batch
from gridsim_aggregator.domain import Readings, VoltageTracker
from gridsim_aggregator.repository import BatchReceipt
from gridsim_aggregator.settings import AggregatorSettings
from gridsim_shared import channels, topics
from gridsim_shared.bus import Ack
from gridsim_shared.messages import ClockState
from gridsim_shared.metrics import FLUSH_SECONDS

__all__ = ["Counters", "Ingestor"]

_LOGGER = logging.getLogger(__name__)


@dataclass
class Counters:
    """What ingest has done, for the status topic and tests."""

    batches: int = 0
    readings: int = 0  # readings in committed flushes (redeliveries included)
    flushes: int = 0
    redelivered_flushes: int = 0
    malformed: int = 0
    flush_retries: int = 0
    rejected: int = 0  # batches the database refused for their content (set aside as dead letters)
    dead_letters: int = 0  # malformed or rejected messages written to the dead_letters table
    late_intervals: int = 0
    task_errors: int = 0  # background flushes that raised (logged with their traceback)


@dataclass
class _Item:
    seq: int
    readings: Readings
    receipt: BatchReceipt
    ack: Ack
    topic: str
    payload: bytes  # kept to set the message aside as a dead letter if the database refuses it
    # (shard, batches, readings) its producer published for the interval in all (loss accounting).
    expected: tuple[str, int, int] | None = None


@dataclass
class _Mark:
    """A clock message: once every message received before it is committed, its interval is ours."""

    seq: int
    last_published: datetime


@dataclass
class Ingestor:
    """Buffers batches and flushes them with COPY; tracks how far the clock's readings are committed."""

    pool: AsyncConnectionPool
    base: str
    instance: str
    tuning: AggregatorSettings
    on_committed: Callable[[], None] = lambda: None
    on_voltage: Callable[[list[tuple[int, str, float]], datetime, domain.VoltageBand], None] = (
        lambda _c, _t, _b: None
    )
    # A background flush that raised (a bug: database failures are retried inside) is reported here.
    on_error: Callable[[str, BaseException], None] = lambda _n, exc: _LOGGER.error(
        "background work failed", exc_info=exc
    )
    counters: Counters = field(default_factory=Counters)

    def __post_init__(self) -> None:
        self._buffer: list[_Item] = []
        self._buffered_rows = 0
        self._seq = 0
        self._inflight: dict[int, int] = {}  # flush id → lowest seq in it
        self._flush_ids = 0
        self._slots = asyncio.Semaphore(self.tuning.copy_connections)
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._marks: list[_Mark] = []
        self._clock_until: datetime | None = None
        self._closing = False
        self.last_commit: float | None = None  # wall time of the last committed flush (heartbeat progress)
        self.voltage = VoltageTracker()
        self._bands: dict[str, domain.VoltageBand] = {}  # transformer code → its band

    @property
    def queue(self) -> dict[str, int]:
        """What waits in memory: buffered readings and flushes in flight (queue depth)."""
        return {"buffered_rows": self._buffered_rows, "flushes_in_flight": len(self._inflight)}

    @property
    def clock_until(self) -> datetime | None:
        """The latest clock interval whose readings (as received by this instance) are committed."""
        return self._clock_until

    # ------------------------------------------------------------------ receiving
    async def on_message(self, topic: str, payload: bytes, ack: Ack) -> None:
        """Raw handler of the batch subscription."""
        self._seq += 1
        try:
            incoming = decode_batch(payload)
            path = channels.BATCH.template.parse(self.base, topic)
        except (
            ValidationError,
            topics.TopicError,
            ValueError,
            OverflowError,
        ) as exc:  # overflow: an id past int64
            self.counters.malformed += 1
            _LOGGER.warning("malformed batch on %s (%s): %.200r", topic, exc, payload)
            if await self._dead_letter(topic, payload, f"malformed: {exc}"):
                ack()
            return
        readings, expected = incoming.readings, incoming.expected
        first = int(readings.meter_id.min()) if len(readings) else 0
        receipt = BatchReceipt(
            readings.ts, path.transformer, first, domain.batch_totals(readings), incoming.sent_at
        )
        self._buffer.append(_Item(self._seq, readings, receipt, ack, topic, payload, expected))
        self._buffered_rows += len(readings)
        self.counters.batches += 1
        if self._buffered_rows >= self.tuning.flush_rows:
            await self._start_flush()
        elif self._timer is None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self.tuning.flush_ms / 1000, self._on_timer)

    async def on_clock(self, clock: ClockState, _path: topics.NoPath) -> None:
        """A clock message: everything received before it belongs to intervals up to ``last_published``."""
        if clock.last_published is None:
            return
        self._marks.append(_Mark(self._seq, clock.last_published))
        if self._buffer:
            await self._start_flush()
        else:
            await self._settle_marks()

    def _on_timer(self) -> None:
        self._timer = None
        if self._buffer and not self._closing:
            self._spawn(self._start_flush())

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` in the background, referenced until done (``drain`` waits for it)."""
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            self.counters.task_errors += 1
            self.on_error("flush", exc)

    # ------------------------------------------------------------------ flushing
    async def _start_flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        await self._slots.acquire()  # backpressure: the bus stops dispatching while every slot is busy
        items, self._buffer, self._buffered_rows = self._buffer, [], 0
        if not items:
            self._slots.release()
            return
        self._flush_ids += 1
        flush_id = self._flush_ids
        self._inflight[flush_id] = items[0].seq
        self._spawn(self._flush(flush_id, items))

    async def _flush(self, flush_id: int, items: list[_Item]) -> None:
        try:
            if not await self._store(items):
                return  # shutting down: never acknowledged, the broker redelivers after restart
        finally:
            del self._inflight[flush_id]
            self._slots.release()
        await self._settle_marks()
        self.on_committed()

    async def _store(self, items: list[_Item]) -> bool:
        """Commit ``items`` then acknowledge them; False if shutdown came first (nothing acknowledged).

        Any failure keeps the messages un-acknowledged and is retried with capped backoff until the
        database takes them: a restart, a dead pool connection, a failed COMMIT all end here. Only a
        batch PostgreSQL rejects for its own content (a constraint or data error, isolated by retrying
        the flush batch by batch) is set aside in ``dead_letters`` with the reason, logged and counted,
        like a malformed message, and then acknowledged.
        """
        payload = repository.readings_payload([i.readings for i in items])
        delay = 0.1
        while True:
            try:
                started = time.perf_counter()
                fresh = await self._commit(items, payload)
                FLUSH_SECONDS.observe(time.perf_counter() - started)
                break
            except (psycopg.errors.IntegrityError, psycopg.errors.DataError) as exc:
                if len(items) > 1:
                    results = [await self._store([item]) for item in items]
                    return all(results)
                self.counters.rejected += 1
                item = items[0]
                _LOGGER.error(
                    "the database rejects a batch of %s on %s (%s)", item.readings.ts, item.topic, exc
                )
                if not await self._dead_letter(item.topic, item.payload, f"{type(exc).__name__}: {exc}"):
                    return False
                item.ack()
                return True
            except Exception as exc:
                if self._closing:
                    return False
                self.counters.flush_retries += 1
                _LOGGER.warning(
                    "flush of %d batches failed (%s: %s); retrying in %.1f s",
                    len(items),
                    type(exc).__name__,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
        for item in items:
            item.ack()
        self.counters.flushes += 1
        self.counters.redelivered_flushes += 0 if fresh else 1
        self.last_commit = time.time()
        self.counters.readings += sum(len(i.readings) for i in items)
        await self._learn_bands({i.receipt.transformer_code for i in items})
        for item in items:
            band = self._bands.get(item.receipt.transformer_code, domain.VoltageBand())
            changes = self.voltage.update(
                item.readings.meter_id, item.readings.values[:, domain.VOLTAGE], band
            )
            if changes:
                self.on_voltage(changes, item.readings.ts, band)
        return True

    async def _learn_bands(self, codes: set[str]) -> None:
        """The voltage band of transformers seen for the first time (their place's standard), once each."""
        missing = codes - self._bands.keys()
        if not missing:
            return
        try:
            async with self.pool.connection() as conn:
                places = await repository.transformer_places(conn)
        except Exception:  # bands are for events only: a failed lookup must not fail a committed flush
            _LOGGER.warning(
                "could not read transformer places; using the default voltage band", exc_info=True
            )
            places = {}
        t = self.tuning
        # Every transformer the lookup returned, not only this flush's: a flush early in a run holds a few
        # transformers each, and asking again for every flush that brings a new one was ~15 % of the
        # aggregator's CPU in a 40-interval run at 10k meters (py-spy).
        for code in missing | (places.keys() - self._bands.keys()):
            lat, lon = places.get(code, (None, None))
            self._bands[code] = domain.voltage_band(
                lat, lon, t.voltage_low_v, t.voltage_high_v, t.voltage_range
            )

    async def _commit(self, items: list[_Item], payload: bytes) -> bool:
        async with self.pool.connection() as conn, conn.transaction():
            # The PUBACK that follows releases the broker's copy, so the commit must be on disk first,
            # whatever the server's default (a local server may run with synchronous_commit = off).
            await conn.execute("set local synchronous_commit = on")
            inserted = await repository.insert_readings(conn, payload)
            if inserted is None:
                receipts = [i.receipt for i in items]
            else:
                # A redelivery or a republished interval: count only the readings stored now.
                receipts = [r for i in items if (r := _stored_part(i, inserted)) is not None]
            if receipts:
                await repository.record_batches(conn, receipts, self.instance)
            # What the producers say they published, so the closer can count what never arrived.
            await repository.record_expected(
                conn,
                {(i.readings.ts, i.expected[0]): i.expected[1:] for i in items if i.expected is not None},
            )
            # Locked last, so a close in progress holds up only this final check, not the COPY.
            state = await repository.lock_state_shared(conn)
            if state.committed_until is not None:
                late = sorted({i.readings.ts for i in items if i.readings.ts <= state.committed_until})
                if late:
                    self.counters.late_intervals += len(late)
                    await repository.mark_late(conn, late)
        return inserted is None

    async def _dead_letter(self, topic: str, payload: bytes, reason: str) -> bool:
        """Write the message to ``dead_letters`` (retried while the database is away); False if closing."""
        delay = 0.1
        while True:
            try:
                async with self.pool.connection() as conn:
                    await repository.insert_dead_letter(conn, "aggregator", topic, reason, payload)
            except Exception as exc:
                if self._closing:
                    return False
                _LOGGER.warning("could not store a dead letter (%s); retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            self.counters.dead_letters += 1
            return True

    async def _settle_marks(self) -> None:
        """Advance ``clock_until`` past every clock mark whose earlier messages are all committed."""
        pending = [i.seq for i in self._buffer] + list(self._inflight.values())
        low = min(pending) if pending else self._seq + 1
        settled = [m for m in self._marks if m.seq < low]
        if not settled:
            return
        self._marks = [m for m in self._marks if m.seq >= low]
        until = max(m.last_published for m in settled)
        if self._clock_until is None or until > self._clock_until:
            self._clock_until = until
            await self.write_progress()
            self.on_committed()

    async def write_progress(self) -> None:
        """Heartbeat and clock progress of this instance (the closer reads every instance's)."""
        with contextlib.suppress(psycopg.OperationalError, psycopg.InterfaceError):
            async with self.pool.connection() as conn:
                await repository.set_progress(conn, self.instance, self._clock_until)

    async def heartbeat(self, stop: asyncio.Event, every_s: float = 1.0) -> None:
        """Write the heartbeat until ``stop``."""
        while not stop.is_set():
            await self.write_progress()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every_s)

    async def drain(self, timeout: float = 10.0) -> None:
        """Flush what is buffered and wait for running flushes (graceful shutdown)."""
        deadline = time.monotonic() + timeout
        if self._buffer:
            await self._start_flush()
        while self._tasks and time.monotonic() < deadline:
            await asyncio.wait(list(self._tasks), timeout=max(0.0, deadline - time.monotonic()))
        self._closing = True
        for task in list(self._tasks):
            task.cancel()


def _stored_part(item: _Item, inserted: set[tuple[datetime, int]]) -> BatchReceipt | None:
    """``item``'s receipt over only the readings stored now (None when all were stored before).

    The readings it counts are taken out of ``inserted``: when one flush holds the same batch twice (a
    redelivery arriving before the first copy was flushed), the stored readings count once, in the first.
    """
    readings = item.readings
    mask = np.fromiter(((readings.ts, int(m)) in inserted for m in readings.meter_id), bool, len(readings))
    inserted.difference_update((readings.ts, int(m)) for m in readings.meter_id[mask])
    if mask.all():
        return item.receipt
    if not mask.any():
        return None
    part = Readings(readings.ts, readings.interval_s, readings.meter_id[mask], readings.values[mask])
    receipt = item.receipt
    return BatchReceipt(
        receipt.ts, receipt.transformer_code, receipt.first_meter_id, domain.batch_totals(part)
    )
