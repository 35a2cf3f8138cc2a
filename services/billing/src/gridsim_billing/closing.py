"""Month close: billing finalises a month when it ends, never when someone reads a bill.

A month closes once the simulated clock has passed its end and the aggregator's watermark has committed
its last interval (:func:`domain.closed_until`). Every retained clock and watermark billing receives pokes
the :class:`MonthCloser`, which closes, one month at a time and in order, every month from the simulation's
start month (or the month after the last one closed) up to that boundary:

1. it marks the month as closing (``billing_months``), which closes it to new trades;
2. page by page of billable meters, under the month's exclusive lock, it settles the sellers those meters
   trade with and stores each meter's final bill (what was stored is kept: a rerun stores only what is
   missing);
3. it settles any seller left (one no longer billable) and marks the month completed.

Each step commits on its own and is idempotent, so a restart finishes a half-closed month (the retained
clock and watermark arrive again on subscribe) and every final bill is stored exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from psycopg_pool import AsyncConnectionPool

from gridsim_billing import repository as repo
from gridsim_billing.domain import Tariff, closed_until, month_of, month_period, next_month
from gridsim_billing.ledger import Books
from gridsim_billing.settings import Settings
from gridsim_shared.messages import ClockState, Watermark

__all__ = ["MonthCloser", "close_due_months", "due"]

_LOGGER = logging.getLogger(__name__)

# Meters per transaction while closing: bounds each transaction's length and the month lock's hold on
# trades, and keeps the memory of one page small on a large fleet.
PAGE_SIZE = 2000


def due(month_end_utc: datetime, clock: ClockState | None, watermark: Watermark | None, tz: ZoneInfo) -> bool:
    """Whether a month ending at ``month_end_utc`` has closed on the latest clock and watermark seen."""
    if clock is None or watermark is None:
        return False
    boundary = closed_until(clock.current_datetime, watermark.committed_until, clock.interval_s, tz)
    return boundary is not None and month_end_utc <= boundary


async def close_due_months(
    settings: Settings, pool: AsyncConnectionPool, clock: ClockState, watermark: Watermark
) -> list[str]:
    """Close every month that has ended and is not closed yet; returns the months closed now."""
    tariff = Tariff.from_settings(settings.billing)
    tz = ZoneInfo(tariff.timezone)
    boundary = closed_until(clock.current_datetime, watermark.committed_until, clock.interval_s, tz)
    if boundary is None:
        return []
    async with pool.connection() as conn:
        pending = await repo.pending_closes(conn)
        last = await repo.last_closed_month(conn)
    month = next_month(last) if last is not None else month_of(settings.sim.start, tz)
    months = list(pending)
    while month_period(month, tz).end <= boundary:
        months.append(month)
        month = next_month(month)
    books = Books(tariff, clock.current_datetime)
    for m in months:
        await _close(pool, books, m)
    return months


async def _close(pool: AsyncConnectionPool, books: Books, month: str) -> None:
    period = month_period(month, books.tz)
    async with pool.connection() as conn:
        async with conn.transaction():
            await repo.lock_month(conn, month, exclusive=True)
            await repo.start_close(conn, month, books.now)
        after = 0
        while True:
            async with conn.transaction():
                await repo.lock_month(conn, month, exclusive=True)
                meters = await repo.billable_meters_after(conn, after, PAGE_SIZE)
                if not meters:
                    break
                await books.bills(conn, meters, period, final=True)
            after = meters[-1].id
        async with conn.transaction():
            await repo.lock_month(conn, month, exclusive=True)
            left = await repo.unsettled_sellers(conn, month)
            await books.deliveries(conn, period, set(left), persist=True)
            stored = await repo.complete_close(conn, month)
    _LOGGER.info("closed %s: %d final bills stored, %d sellers settled apart", month, stored, len(left))


@dataclass
class MonthCloser:
    """Runs :func:`close_due_months` in the background, one run at a time, again while poked.

    Subscriptions only poke it (a month of a large fleet takes a while to close, and a handler that
    waited for it would hold up the clock and watermark behind it). A read of a closed month waits for it
    (:meth:`wait_idle`) so it answers with the stored final bill.
    """

    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _idle: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None
    closed: list[str] = field(default_factory=list)
    # The month boundary the last successful run closed up to (None until one succeeded).
    checked_until: datetime | None = None
    _target: datetime | None = None

    def __post_init__(self) -> None:
        self._idle.set()

    def poke(self, work: Callable[[], Awaitable[list[str]]], boundary: datetime | None = None) -> None:
        """Run ``work`` now, or once more after the run in progress (for months ending by ``boundary``)."""
        self._target = boundary
        self._wake.set()
        self._idle.clear()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(work), name="billing-month-closer")

    async def _run(self, work: Callable[[], Awaitable[list[str]]]) -> None:
        try:
            while self._wake.is_set():
                self._wake.clear()
                target = self._target
                try:
                    self.closed += await work()
                    self.checked_until = target
                except Exception:  # the database away, say: the next clock or watermark tries again
                    _LOGGER.exception("closing months failed; the next clock or watermark retries")
        finally:
            self._idle.set()

    async def wait_idle(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the closer to finish what it was poked for."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._idle.wait()
        return self._idle.is_set()

    async def stop(self) -> None:
        """Cancel a run in progress (it resumes from the database on the next start)."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
