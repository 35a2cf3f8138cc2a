"""Closing intervals: parent meters, grid rollups, overload events, time rollups, the watermark.

Exactly one instance closes (it holds a PostgreSQL advisory lock; the others ingest only and take over
when it dies). Closing reads only committed data, so it does not matter which instance ingested what.

Which intervals may close (complete, clocked, or waited for long enough) and what closing one does to the
time rollups are pure decisions (:mod:`~gridsim_aggregator.close_plan`); the lock that makes this instance
the closer is its :mod:`~gridsim_aggregator.leader` lease; the watermark goes out through the
:mod:`~gridsim_aggregator.watermark` publisher. This class gathers the inputs and carries the decisions out.

A node or parent closed with fewer readings than expected is marked ``partial``. Readings that arrive
after their interval closed are stored, and the interval is recomputed (``late_intervals``), partial flags
included; the watermark does not move back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import psycopg
from psycopg_pool import AsyncConnectionPool

from gridsim_aggregator import aging, domain, repository
from gridsim_aggregator.close_plan import (
    RollupPlan,
    intervals_to_close,
    time_rollup_plan,
    windows_left_unrolled,
)
from gridsim_aggregator.domain import ThermalParams, ThermalState, Totals
from gridsim_aggregator.leader import LeaderLease
from gridsim_aggregator.node_state import DailyPeaks, TransformerThermals
from gridsim_aggregator.repository import Conn
from gridsim_aggregator.settings import AggregatorSettings
from gridsim_aggregator.topology import NodeRollup, Topology, build_topology, grid_rollups
from gridsim_aggregator.watermark import WatermarkPublisher
from gridsim_shared import channels, topics
from gridsim_shared.bus import Bus
from gridsim_shared.channels import Channel
from gridsim_shared.events import (
    GridEvent,
)
from gridsim_shared.ids import FeederPath, MeterPath, TransformerPath, UtilityPath
from gridsim_shared.messages import ClockState, MeterReading, Rollup, Watermark

__all__ = ["Closer"]

_LOGGER = logging.getLogger(__name__)
# An interval's messages are handed to the client this many at a time (Bus.until_unacknowledged).
_SETTLE_EVERY = 500
# TimescaleDB: at most this many intervals closed before their aggregates are refreshed and they are
# published (a day of one-minute intervals is 1,440: the watermark still moves every few seconds).
_BURST = 60


@dataclass
class _Closed:
    """What one closed interval publishes once its transaction has committed."""

    ts: datetime
    topo: Topology  # the world it was closed in (a world change may drop the closer's copy meanwhile)
    parents: list[tuple[MeterPath, MeterReading]] = field(default_factory=list)
    rollups: list[NodeRollup] = field(default_factory=list)
    events: list[GridEvent] = field(default_factory=list)
    readings: int = 0
    thermal: dict[int, ThermalState] = field(default_factory=dict)  # transformers' state after it


@dataclass
class Closer:
    """Closes intervals while this instance is the leader."""

    pool: AsyncConnectionPool
    bus: Bus
    database_url: str
    schema: str
    tuning: AggregatorSettings
    interval_s: int = 60
    raw_retention_days: int = 0
    thermal: ThermalParams = field(default_factory=ThermalParams)
    seed: int = 42  # the simulation's seed: the weather around transformers is meter-sim's
    closed: int = 0
    # Loss accounting: intervals closed with readings missing (their shards published more than was
    # stored: a broker dropped batches) and the readings missing in all, as ``ingest_gaps`` holds them.
    intervals_missing: int = 0
    readings_missing: int = 0

    def __post_init__(self) -> None:
        self._wake = asyncio.Event()
        self._clock_marks: dict[datetime, float] = {}  # clock-announced interval → when first seen
        self._world_version: int | None = None
        self._topology: Topology | None = None
        self._resumed_at: float | None = None  # when ingest last resumed after a topology load (monotonic)
        self._topology_generation = 0  # bumped whenever the topology is forgotten
        self.thermals = TransformerThermals(self.thermal, self.seed)
        # Called with "YYYY-MM" when the first interval of the next month is closed (SLA breach events).
        self.on_month_closed: Callable[[str], None] | None = None
        self._timescale: bool | None = None
        # TimescaleDB: intervals closed since the aggregates were last refreshed, with what they publish.
        # A burst of closings (step mode) refreshes once, then publishes in order; see _after_closing.
        self._unrefreshed: list[RollupPlan] = []
        self._unpublished: list[Callable[[], Awaitable[None]]] = []
        # TimescaleDB: refresh every aggregate over all time before closing again (set at leadership and
        # when the world changed: a reset deletes raw rows, which a continuous aggregate does not follow).
        self._refresh_all = True
        self.peaks = DailyPeaks()
        self.watermark = WatermarkPublisher(self.bus)
        self.is_leader = False
        self._gaps_unknown = True  # read ingest_gaps' totals at the first close
        self._received_until: datetime | None = None

    def wake(self) -> None:
        """Something was committed: look for intervals to close."""
        self._wake.set()

    def world_replaced(self) -> None:
        """The world was reset: reload the topology and thermal state; on TimescaleDB refresh every
        aggregate over all time (the raw rows were deleted, which a continuous aggregate does not follow)."""
        self._forget_topology()
        self.thermals.states = None
        self._refresh_all = True
        self._gaps_unknown = True
        self.wake()

    async def on_clock(self, clock: ClockState, _path: topics.NoPath) -> None:
        """Remember intervals meter-sim finished publishing; reload the world when it changed."""
        self.interval_s = clock.interval_s
        if self._world_version is not None and clock.world_version != self._world_version:
            self._forget_topology()
            self._refresh_all = True
        self._world_version = clock.world_version
        if clock.last_published is not None:
            self._clock_marks.setdefault(clock.last_published, time.monotonic())
        self.wake()

    # ------------------------------------------------------------------ leadership loop
    async def run(self, stop: asyncio.Event) -> None:
        """Try to become the closer; close intervals while leader; retry after database failures."""
        lease = LeaderLease(self.database_url, self.schema)
        while not stop.is_set():
            try:
                async with lease.acquire() as held:
                    if held is None:
                        await _sleep_or_stop(stop, 1.0)
                        continue
                    self.is_leader = True
                    self._forget_topology()
                    self.thermals.states = None
                    self._timescale = None
                    self._refresh_all = True
                    self._gaps_unknown = True
                    _LOGGER.info("this instance closes intervals")
                    while not stop.is_set():
                        await self.close_ready()
                        await self.watermark.publish()
                        await held.renew()  # the lock lives as long as this connection
                        self._wake.clear()
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(self._wake.wait(), 0.25)
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                _LOGGER.warning("closer lost the database (%s); retrying", exc)
                await _sleep_or_stop(stop, 0.5)
            finally:
                self.is_leader = False

    # ------------------------------------------------------------------ closing
    async def topology(self, conn: Conn) -> Topology:
        """The world, loaded when first needed or after ``world_version`` changed."""
        while self._topology is None:
            generation = self._topology_generation
            # Read a page at a time and built in a worker thread: a million meters' load is 3.4 s of Python
            # (2.6 read, 0.8 build; ~17 s at five million), which in one piece on the event loop would also
            # hold ingest, heartbeats and the broker's keepalive.
            nodes, meters = await repository.load_topology_rows(conn)
            topology = await asyncio.to_thread(build_topology, nodes, meters)
            if generation == self._topology_generation:  # else the world changed meanwhile: load it again
                self._topology = topology
                # Ingest was slowed meanwhile: the bounded wait counts from now, or an interval arriving
                # during the load could close partial.
                self._resumed_at = time.monotonic()
        return self._topology

    def _forget_topology(self) -> None:
        """Load the topology again when next needed (and not keep one being loaded)."""
        self._topology = None
        self._topology_generation += 1

    async def close_ready(self) -> int:
        """Close every interval the rule allows, recompute late ones; return how many were closed."""
        async with self.pool.connection() as conn:
            if self._refresh_all:
                if await self._uses_timescale(conn):
                    await repository.refresh_all_timescale(conn)
                self._refresh_all = False
            state = await repository.read_state(conn)
            if self.watermark.latest is None and state.committed_until is not None:
                # A new closer (a restart, a takeover) publishes the mark committed before it: a broker
                # that lost its retained copy meanwhile gets it back without waiting for the next close.
                self.watermark.advance(
                    Watermark(
                        committed_until=state.committed_until,
                        readings_committed=state.readings_committed,
                        received_until=state.committed_until - timedelta(seconds=self.interval_s),
                    )
                )
            pending = await repository.pending_intervals(conn, state.committed_until)
            clocked_until = await repository.live_clock_progress(conn, self.tuning.instance_live_s)
            self._received(clocked_until)
            topo = await self.topology(conn)
            if pending and any(code not in topo.by_code for p in pending for code in p.transformers):
                self._forget_topology()  # a batch names a transformer created since we loaded
                topo = await self.topology(conn)
        done = state.committed_until
        if done is not None and windows_left_unrolled(done, state.rolled_until, self.interval_s):
            # Closing an interval and rolling its window are two transactions (the roll must not hold
            # off ingest); a process stopped between them (kill -9, SIGTERM, the database gone) left
            # windows closed but not rolled. The next close would roll them, but a clock that has
            # stopped never brings one: roll them now, before the watermark is published again.
            async with self.pool.connection() as conn:
                await self._roll_time(conn, done, state.rolled_until, recompute=False)
        committed = state.committed_until
        self._clock_marks = {
            ts: seen for ts, seen in self._clock_marks.items() if committed is None or ts > committed
        }
        ready = intervals_to_close(
            pending,
            self._clock_marks,
            committed_until=state.committed_until,
            clocked_until=clocked_until,
            expected_transformers=topo.expected_transformers,
            interval_s=self.interval_s,
            close_after_s=self.tuning.close_after_s,
            now=time.monotonic(),
            resumed_at=self._resumed_at,
        )
        count = 0
        for ts in ready:
            await self.close(ts)
            self._clock_marks.pop(ts, None)
            count += 1
            if len(self._unpublished) >= _BURST:
                await self._after_closing()
        await self.recompute_late()
        await self._after_closing()
        return count

    async def close(self, ts: datetime, *, recompute: bool = False) -> None:
        """Close interval ``ts`` in one transaction, then publish what it produced."""
        async with self.pool.connection() as conn:
            async with conn.transaction():
                state = await repository.lock_state(conn)
                if not recompute and state.committed_until is not None and ts <= state.committed_until:
                    return
                closed = await self._close_in(conn, ts, recompute=recompute)
                if recompute:
                    # The mark leaves the list with the recomputation, rollups included, in one
                    # transaction: a recompute cut short (kill -9, the database restarted) keeps it, and
                    # the late readings are not left out of the rollups for good. Rare: the longer lock
                    # that holds off ingest meanwhile is worth it.
                    await repository.forget_late(conn, ts)
                    await self._roll_time(conn, ts, state.rolled_until, recompute=True)
                else:
                    await repository.advance(conn, ts, closed.readings)
            if not recompute:
                await self._roll_time(conn, ts, state.rolled_until, recompute=False)

        async def publish() -> None:
            await self._publish(closed, state.readings_committed + closed.readings, recompute=recompute)
            before = state.committed_until
            new_month = before is not None and (before.year, before.month) != (ts.year, ts.month)
            if new_month and not recompute and before is not None and self.on_month_closed is not None:
                self.on_month_closed(f"{before.year:04d}-{before.month:02d}")

        self.closed += 0 if recompute else 1
        if self._timescale:
            self._unpublished.append(publish)  # after the aggregates are refreshed: _after_closing
        else:
            await publish()

    async def recompute_late(self) -> None:
        """Recompute intervals that received readings after they were closed, once those stopped arriving."""
        async with self.pool.connection() as conn, conn.transaction():
            late = await repository.late_intervals(conn, self.tuning.late_settle_s)
        for ts in late:
            await self.close(ts, recompute=True)

    async def _close_in(self, conn: Conn, ts: datetime, *, recompute: bool) -> _Closed:
        topo = await self.topology(conn)
        closed = _Closed(ts, topo)
        # Parent meters: the sum over their leaves, any depth.
        leaves = await repository.leaf_readings(conn, ts, self.interval_s, topo.tree.leaves)
        totals = domain.parent_totals(topo.tree, leaves)
        values = domain.totals_as_readings(totals)
        expected = domain.expected_per_parent(topo.tree, topo.expected_leaves)
        partial = totals.readings < expected
        await repository.upsert_parents(conn, ts, topo.tree.parents, values, partial)
        for i, pid in enumerate(topo.tree.parents.tolist()):
            path = topo.meter_paths.get(pid)
            if path is not None:
                closed.parents.append(
                    (
                        path,
                        _reading(
                            pid,
                            topo.meter_code[pid],
                            ts=ts,
                            interval_s=self.interval_s,
                            v=values[i],
                            partial=bool(partial[i]),
                        ),
                    )
                )
        # Grid rollups from the batches' sums.
        by_code, closed.readings = await repository.batch_totals(conn, ts)
        gap = await repository.record_gap(conn, ts, closed.readings)
        if gap is not None or recompute or self._gaps_unknown:
            self.intervals_missing, self.readings_missing = await repository.gap_totals(conn)
            self._gaps_unknown = False
        if gap is not None and not recompute:
            _LOGGER.warning(
                "interval %s closed with %d of %d published readings: %d missing (dropped before they "
                "reached the aggregator; %d missing in %d intervals so far)",
                ts,
                gap[1],
                gap[0],
                gap[0] - gap[1],
                self.readings_missing,
                self.intervals_missing,
            )
        per_transformer: dict[int, Totals] = {
            topo.by_code[code]: t for code, t in by_code.items() if code in topo.by_code
        }
        closed.rollups = grid_rollups(topo, per_transformer, self.interval_s)
        hot: dict[int, float] = {}
        if not recompute:
            hot, closed.events, closed.thermal = await self._thermal(conn, ts, closed.rollups)
            await repository.insert_events(conn, closed.events)
        await repository.upsert_grid(conn, ts, closed.rollups, hot)
        return closed

    async def _thermal(
        self, conn: Conn, ts: datetime, rollups: list[NodeRollup]
    ) -> tuple[dict[int, float], list[GridEvent], dict[int, ThermalState]]:
        if self.thermals.states is None:
            self.thermals.states = await repository.load_thermal(conn)
        step = self.thermals.step(rollups, ts, self.interval_s)
        await repository.save_thermal(conn, ts, step.states)
        return step.hot, step.events, step.states

    async def _roll_time(self, conn: Conn, ts: datetime, rolled: datetime | None, *, recompute: bool) -> None:
        plan = time_rollup_plan(
            ts,
            rolled,
            interval_s=self.interval_s,
            recompute=recompute,
            timescale=await self._uses_timescale(conn),
            retention_days=self.raw_retention_days,
            compress_after_days=self.tuning.timescale_compress_after_days,
        )
        if plan is None:
            return
        if not plan.timescale:
            # The window's rows are found through meter_data's BRIN index on ts: its new ranges first.
            await repository.summarize_new_ranges(conn)
        async with conn.transaction():
            if plan.advance and await repository.lock_rolled(conn) != rolled:
                return  # rolled meanwhile (a previous leader's last transaction): the next close goes on
            if not plan.timescale:
                # A window's minutes (150k rows at 10k meters) hash-aggregate in memory instead of a sort
                # spilled to disk at the default 4 MB.
                await conn.execute("set local work_mem = '64MB'")
            if not plan.timescale and plan.advance:
                # Windows never rolled before: added into their hours and days in one pass.
                await repository.roll_new_windows(conn, plan.start, plan.end)
            elif not plan.timescale:
                # A recomputation (late readings): the window and every bucket it touches from the finer rows.
                await repository.roll_minutes(conn, plan.start, plan.end)
                # Hours and days: recomputed from the finer rows for every one the new windows touch.
                h0, h1 = plan.hours
                await repository.roll_coarser(
                    conn, source="15m", target="1h", width="1 hour", start=h0, end=h1
                )
                d0, d1 = plan.days
                await repository.roll_coarser(conn, source="1h", target="1d", width="1 day", start=d0, end=d1)
            if plan.advance:
                await repository.set_rolled(conn, plan.end)
            if plan.retention_before is not None and not plan.timescale:
                deleted = await repository.apply_retention(conn, plan.retention_before)
                _LOGGER.info("retention dropped %d raw readings before %s", deleted, plan.retention_before)
        if plan.timescale:
            self._unrefreshed.append(plan)

    async def _after_closing(self) -> None:
        """TimescaleDB: refresh the aggregates over every window closed since the last refresh (one call
        per aggregate for a whole burst, not six per interval), apply retention and compression, then
        publish what those intervals produced, in order. Publishing after the refresh keeps the plain
        path's promise: when the watermark says an interval is committed, its rollups show it.
        """
        plans, self._unrefreshed = self._unrefreshed, []
        if plans:
            start = min(p.start for p in plans)
            end = max(p.end for p in plans)
            hours = (min(p.hours[0] for p in plans), max(p.hours[1] for p in plans))
            days = (min(p.days[0] for p in plans), max(p.days[1] for p in plans))
            retention = max((p.retention_before for p in plans if p.retention_before), default=None)
            compress = max((p.compress_before for p in plans if p.compress_before), default=None)
            async with self.pool.connection() as conn:
                await repository.refresh_timescale(conn, start, end, hours, days)
                await repository.timescale_housekeeping(conn, retention, compress)
        held, self._unpublished = self._unpublished, []
        for publish in held:
            await publish()

    async def _uses_timescale(self, conn: Conn) -> bool:
        """Whether meter_data is a hypertable here (migration 0201): then the rollups are continuous
        aggregates the closer refreshes instead of tables it writes. Checked once per leadership.

        The check runs in its own transaction so that ``conn`` is idle again afterwards: the refresh of
        the continuous aggregates that follows needs autocommit, which an open transaction forbids."""
        if self._timescale is None:
            async with conn.transaction():
                self._timescale = await repository.timescale_enabled(conn)
            _LOGGER.info("storage: %s", "TimescaleDB hypertables" if self._timescale else "plain PostgreSQL")
        return self._timescale

    # ------------------------------------------------------------------ publishing
    async def _publish(self, closed: _Closed, readings_committed: int, *, recompute: bool) -> None:
        """Publish after commit. With the broker away the watermark is kept and published on recovery
        (retained: only the latest matters); parent readings, rollups and events of that moment are logged
        as lost to subscribers (they are stored).

        An interval fans out one message per parent and grid node (111 at 10k meters): they are handed to
        the client without awaiting each PUBACK (a future and a timer per message was a third of the
        aggregator's CPU). The client delivers them at QoS 1 in order, so the awaited watermark that
        follows reaches the broker after them.
        """
        bus = self.bus
        sent = [bus.publish_nowait(channels.READING, reading, path) for path, reading in closed.parents]
        for i, r in enumerate(closed.rollups):
            if i % _SETTLE_EVERY == _SETTLE_EVERY - 1:
                await bus.until_unacknowledged(_SETTLE_EVERY)  # 10,200 grid nodes at 1M meters: see there
            channel, msg, path = _rollup_message(
                closed.topo,
                r=r,
                ts=closed.ts,
                interval_s=self.interval_s,
                peak=self.peaks.peak(r, closed.ts),
                thermal=closed.thermal.get(r.node.id),
                params=self.thermal,
            )
            sent.append(bus.publish_nowait(channel, msg, path))
        sent += [
            bus.publish_nowait(channels.EVENT, e, topics.EventPath(e.type, e.subject)) for e in closed.events
        ]
        if not all(sent):
            _LOGGER.warning(
                "could not publish %d messages of interval %s (broker away); they are stored",
                sent.count(False),
                closed.ts,
            )
        if not recompute:
            self.watermark.advance(
                Watermark(
                    committed_until=closed.ts,
                    readings_committed=readings_committed,
                    # No instance's progress known yet (no clock message settled since it started): all
                    # that is sure is what came before this interval.
                    received_until=self._received_until
                    if self._received_until is not None
                    else closed.ts - timedelta(seconds=self.interval_s),
                )
            )
        await self.watermark.publish()

    def _received(self, until: datetime | None) -> None:
        """Every live instance's received-and-committed clock progress, for the watermark (meter-sim's
        window). It moves without a close too (batches of an interval closed partial arriving late): the
        watermark is then published again."""
        if until is None or until == self._received_until:
            return
        self._received_until = until
        self.watermark.received(until)


def _reading(
    meter_id: int, code: str, *, ts: datetime, interval_s: int, v: np.ndarray, partial: bool
) -> MeterReading:
    def opt(x: float) -> float | None:
        return None if np.isnan(x) else float(x)

    return MeterReading(
        meter_id=meter_id,
        meter_code=code,
        timestamp=ts,
        interval_s=interval_s,
        consumption_kWh=opt(v[domain.CONS]),
        production_kWh=opt(v[domain.PROD]),
        consumption_kVAh=opt(v[domain.CONS_VA]),
        production_kVAh=opt(v[domain.PROD_VA]),
        avg_current=float(v[domain.CURRENT]),
        avg_voltage=float(v[domain.VOLTAGE]),
        reactive_power_kVAR=opt(v[domain.KVAR]),
        power_factor=opt(v[domain.PF]),
        is_parent=True,
        partial=partial,
    )


def _rollup_message(
    topo: Topology,
    *,
    r: NodeRollup,
    ts: datetime,
    interval_s: int,
    peak: tuple[float, datetime],
    thermal: ThermalState | None = None,
    params: ThermalParams | None = None,
) -> tuple[Channel[Rollup, Any], Rollup, UtilityPath | FeederPath | TransformerPath]:
    """A node's rollup with the channel and path of its level (transformers: with their health)."""
    t = r.totals
    health: dict[str, float] = {}
    if thermal is not None and params is not None:
        health = {
            "hot_spot_c": round(thermal.hot_spot_c(params), 3),
            "aging_factor": round(thermal.aging_factor, 6),
            "loss_of_life_h": round(thermal.loss_of_life_h, 6),
            "overload_h": round(thermal.overload_h, 6),
            "health_index": aging.health_index(thermal.loss_of_life_h, thermal.overload_h),
        }
    msg = Rollup(
        level=r.node.level,  # type: ignore[arg-type]
        node_id=r.node.id,
        node_code=r.node.code,
        timestamp=ts,
        interval_s=interval_s,
        consumption_kWh=float(t.consumption_kwh[0]),
        production_kWh=float(t.production_kwh[0]),
        net_kWh=float(t.consumption_kwh[0] - t.production_kwh[0]),
        apparent_kVA=r.apparent_kva,
        capacity_kVA=r.node.capacity_kva,
        loading_pct=r.loading_pct,
        meters_expected=r.meters_expected,
        meters_reporting=r.meters_reporting,
        partial=r.partial,
        coincident_peak_kVA=peak[0],
        coincident_peak_at=peak[1],
        **health,
    )
    path = topo.node_path(r.node)
    if isinstance(path, TransformerPath):
        return channels.ROLLUP_TRANSFORMER, msg, path
    if isinstance(path, FeederPath):
        return channels.ROLLUP_FEEDER, msg, path
    assert isinstance(path, UtilityPath)
    return channels.ROLLUP_UTILITY, msg, path


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
