"""The simulation engine: the clock, the fleet, and one interval after another onto the bus.

One instance owns the clock (shard 0): it persists it in ``simulation_clock``, advances it on the
wall-clock schedule (``speed`` simulated seconds per real second) or by ``step``, and publishes it
retained on the clock topic after every interval. Other shards follow that retained topic and simulate
their own feeders for each interval the owner has published. Falling behind is reported, never hidden:
``lag_s`` says how late the last interval was, ``dropped_intervals`` how many were skipped to keep the
schedule (DESIGN §3). Details in docs/physics.md ("The clock").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from psycopg_pool import AsyncConnectionPool

from gridsim_meter_sim import control_repository, domain, fleet_repository, flex_repository
from gridsim_meter_sim.controls import SpikePlan
from gridsim_meter_sim.domain import Fleet
from gridsim_meter_sim.fleet_repository import ClockRow
from gridsim_meter_sim.flex import FlexPlan
from gridsim_meter_sim.grid_health import GridHealth
from gridsim_meter_sim.publisher import Prepared, Publisher
from gridsim_shared import channels
from gridsim_shared.errors import ConflictError, InvalidError
from gridsim_shared.messages import ClockState, ServiceStatus, Watermark
from gridsim_shared.schemas.simulation import SimulationTime, StepResult
from gridsim_shared.settings import Settings
from gridsim_shared.supervision import Supervisor
from gridsim_shared.topics import NoPath, ServicePath

__all__ = ["Engine", "parse_shard"]

_LOGGER = logging.getLogger(__name__)

SERVICE = "meter-sim"
# When more intervals than this are due at once, the excess is skipped (and counted) to keep the schedule.
MAX_CATCH_UP = 10
# A follower replays at most this many intervals it missed; a larger gap is a jump.
MAX_FOLLOW = 1440
_TASK = "clock"  # the supervised tick loop
# A fleet load counts as progress for at most this many stall periods (10 min at the default 60 s).
_LOAD_STALLS = 10
PERSIST_EVERY_S = 1.0  # the clock row is written at most this often while ticking (and on every command)
_THREAD_ABOVE = 2000  # fleets larger than this are simulated in a worker thread (PUBACKs keep flowing)


def parse_shard(shard: str) -> tuple[int, int]:
    """``"i/n"`` → ``(i, n)``, with 0 ≤ i < n."""
    index, _, count = shard.partition("/")
    i, n = int(index), int(count)
    if n < 1 or not 0 <= i < n:
        msg = f"sim.shard must be i/n with 0 <= i < n (got {shard!r})"
        raise ValueError(msg)
    return i, n


@dataclass
class _Clock:
    current: datetime  # start of the next interval to simulate
    tick: int
    speed: float
    interval_s: int
    state: Literal["running", "paused"]

    @property
    def interval(self) -> timedelta:
        return timedelta(seconds=self.interval_s)

    @property
    def origin(self) -> datetime:
        return self.current - self.tick * self.interval


class Engine:
    """The clock and the physics of one meter-sim instance."""

    def __init__(
        self, settings: Settings, bus: Any, pool: AsyncConnectionPool, supervisor: Supervisor | None = None
    ) -> None:
        self.settings = settings
        # The tick loop runs under it: a crash is logged, counted and restarted, a stall too.
        self.supervisor = supervisor or Supervisor(SERVICE, settings.supervision)
        self.bus = bus
        self.pool = pool
        self.shard, self.shards = parse_shard(settings.sim.shard)
        self.owner = self.shard == 0
        self.publisher = Publisher(
            bus, per_meter=settings.sim.publish == "both", shard=f"{self.shard}/{self.shards}"
        )
        self.clock: _Clock | None = None
        self.fleet: Fleet | None = None
        self.spikes: SpikePlan | None = None  # load/source spikes and generators on this fleet's rows
        self.flex: FlexPlan | None = None  # demand-response windows on this fleet's flexible loads
        self.health = GridHealth(pool, bus)  # supply state and energy registers (grid_health.py)
        self.world_version = 0
        self._world_dirty = True
        self.lag_s = 0.0
        self.dropped_intervals = 0
        # Flow control (docs/operations.md): waits for the aggregator, time spent waiting, intervals dropped.
        self.flow_waits = 0
        self.flow_wait_s = 0.0
        self.flow_dropped = 0
        self._batches_per_interval = 1
        self.last_published: datetime | None = None
        self.intervals_published = 0
        # The latest intervals handed to the publisher (the flow-control window counts those after its
        # base): a step computes the next interval while the previous one is still being sent.
        self._offered: deque[datetime] = deque(maxlen=settings.sim.max_ahead_intervals + 1)
        self._lock = asyncio.Lock()  # one interval (or one command) at a time
        # (intervals asked, intervals done) while a step runs: clock commands are refused meanwhile rather
        # than queued behind a step that may take minutes (a month of intervals).
        self._stepping: tuple[int, int] | None = None
        self._wake = asyncio.Event()  # the schedule changed: pause, resume, speed, jump, step
        self._persisted_at = 0.0
        self._watermark: datetime | None = None
        self._watermark_changed = asyncio.Event()
        # Nothing at or before this interval can be pending at the aggregator: set by a jump, whose
        # skipped intervals were never published (so they never count against the flow-control window).
        self._nothing_pending_until: datetime | None = None
        self._received_until: datetime | None = None  # the watermark's received_until (flow control)
        # The first interval offered for publishing while an aggregator was seen with no watermark yet:
        # a cold start's window counts from just before it (see _window_base).
        self._cold_start_from: datetime | None = None
        self._aggregators: dict[str, bool] = {}
        self._followers: dict[str, datetime | None] = {}
        self._followers_changed = asyncio.Event()
        self._owner_clock: ClockState | None = None
        self._owner_clock_changed = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()

    # ------------------------------------------------------------------ start and run
    async def start(self) -> None:
        """Load (or create) the clock, subscribe to what the engine listens to, publish the clock."""
        await self.bus.subscribe(channels.WATERMARK, self._on_watermark)
        await self.bus.subscribe(channels.STATUS, self._on_aggregator_status, service="aggregator")
        if self.owner:
            await self.bus.subscribe(channels.STATUS, self._on_shard_status, service=SERVICE)
            self.clock = await self._load_or_create_clock()
            await self._publish_clock()
        else:
            await self.bus.subscribe(channels.CLOCK, self._on_owner_clock)

    async def run(self, stop: asyncio.Event) -> None:
        """Tick until ``stop`` is set: on the wall clock (owner) or after the owner's clock (followers).

        The tick loop is supervised: an exception (a publish that failed, the database restarting) is
        logged, counted and the loop restarted where the clock stands (an interval whose publish did
        not finish is published again; consumers de-duplicate). No progress for ``stall_after_s``
        restarts it too. Raises :class:`~gridsim_shared.supervision.TaskFailed` when it crashes too often.
        """
        loop = self._run_owner if self.owner else self._run_follower
        self.supervisor.spawn(_TASK, loop, stall_after_s=self.settings.supervision.stall_after_s)
        try:
            await self.supervisor.wait(stop)
        finally:
            await self.supervisor.close()
            for pending in list(self._tasks):
                pending.cancel()
            if self.owner and self.clock is not None:
                with contextlib.suppress(Exception):
                    await self._persist(force=True)
            with contextlib.suppress(Exception):
                await self.health.save(force=True)
            await self.publisher.aclose()

    def _idle_s(self, wait: float) -> float:
        """How long the tick loop may wait before it beats again (the watchdog restarts a silent loop)."""
        self.supervisor.beat(_TASK)
        return min(wait, self.settings.supervision.stall_after_s / 3)

    async def _load_or_create_clock(self) -> _Clock:
        row = await fleet_repository.load_clock(self.pool)
        if row is not None:
            state: Literal["running", "paused"] = "running" if row.state == "running" else "paused"
            clock = _Clock(row.current_datetime.astimezone(UTC), row.tick, row.speed, row.interval_s, state)
            # What was published before the restart is still published: the clock says so from its
            # first message (a null here read as "nothing yet" until the next interval went out).
            self.last_published = row.last_published.astimezone(UTC) if row.last_published else None
            _LOGGER.info(
                "clock resumed at %s (tick %d, %s, last published %s)",
                clock.current,
                clock.tick,
                clock.state,
                self.last_published,
            )
            return clock
        sim = self.settings.sim
        start = sim.start if sim.start.tzinfo else sim.start.replace(tzinfo=UTC)
        clock = _Clock(
            start.astimezone(UTC), 0, sim.speed, sim.interval_s, "running" if sim.autostart else "paused"
        )
        await fleet_repository.save_clock(self.pool, self._row(clock))
        return clock

    async def _run_owner(self) -> None:
        assert self.clock is not None
        while True:
            if self.clock.state != "running":
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._idle_s(float("inf")))
                continue
            await self._run_schedule()

    async def _run_schedule(self) -> None:
        """Tick on the wall clock from now until the schedule changes (pause, speed, jump, step)."""
        assert self.clock is not None
        self._wake.clear()
        period = self.clock.interval_s / self.clock.speed  # real seconds per interval
        anchor, anchor_tick = time.monotonic(), self.clock.tick
        while self.clock.state == "running" and not self._wake.is_set():
            done = self.clock.tick - anchor_tick
            deadline = anchor + (done + 1) * period  # when the current interval ends in real time
            wait = deadline - time.monotonic()
            if wait > 0:
                if self._fleet_stale():
                    # Read and build a new fleet while the interval runs, not at its end: at 1x a million
                    # meters' first interval went out ~14 s late (read, build, registers at the deadline).
                    async with self._lock:
                        await self._ensure_fleet()
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._idle_s(wait))
                continue
            due = int((time.monotonic() - anchor) / period) - done
            if self._over_window(self.clock.current) and self.settings.sim.behind_policy == "wait":
                # The aggregator is behind: slow the clock rather than let the broker's queue grow.
                self.flow_waits += 1
                await self._hold_back(self.clock.current)
                anchor, anchor_tick = time.monotonic(), self.clock.tick  # the schedule restarts from now
                continue
            async with self._lock:
                if self._wake.is_set():
                    return
                if due > MAX_CATCH_UP:
                    skipped = due - MAX_CATCH_UP
                    self.dropped_intervals += skipped
                    self.clock.current += skipped * self.clock.interval
                    self.clock.tick += skipped
                    deadline += skipped * period
                    _LOGGER.warning("fell %d intervals behind; skipped %d to keep the schedule", due, skipped)
                if self._over_window(self.clock.current):
                    if self.settings.sim.behind_policy == "drop":
                        await self._drop_interval()
                    continue  # `wait`: the next round holds back
                await self._advance(publish_status=False)
                self.lag_s = max(0.0, time.monotonic() - deadline)
                await self._publish_clock()
                await self._persist()

    # ------------------------------------------------------------------ flow control
    def ahead_intervals(self) -> int | None:
        """Intervals published beyond the aggregator's durable watermark; None when no aggregator was
        ever seen (meter-sim alone) or it has closed nothing yet."""
        base = self._window_base()
        if base is None or self.last_published is None or not self.clock:
            return None
        return max(0, int((self.last_published - base) / self.clock.interval))

    def _window_base(self) -> datetime | None:
        """The interval up to which nothing published is pending: the watermark, or a later jump's start.

        Pending means in the broker's queue too: an interval the aggregator closed by its bounded wait may
        still have batches queued there, so the base is the earlier of the watermark and what every
        aggregator instance has received (``received_until``). With an aggregator seen but nothing closed
        yet (a cold start), the base is the interval before the first one offered: the second waits for
        the first to close (before, a cold start burst out intervals before any watermark existed).
        """
        if not self._aggregators:
            return None
        mark = self._watermark
        if mark is None:
            if self._cold_start_from is None or self.clock is None:
                return None
            mark = self._cold_start_from - self.clock.interval
        elif self._received_until is not None and self._received_until < mark:
            mark = self._received_until
        if self._nothing_pending_until is not None and self._nothing_pending_until > mark:
            return self._nothing_pending_until
        return mark

    def _over_window(self, upcoming: datetime) -> bool:
        """True when publishing the interval starting at ``upcoming`` would leave the window."""
        if self._aggregators and self._watermark is None and self._cold_start_from is None:
            self._cold_start_from = upcoming  # the first interval offered on a cold start goes
        base = self._window_base()
        if base is None or self.clock is None:
            return False
        # What the broker's queue would hold: the intervals published after the base, and ``upcoming``.
        # Intervals the schedule skipped to keep up were never published and hold nothing; counting them
        # (as the time span from the base did) stalled the clock for good after a wide skip, since the
        # watermark never passes an interval that was not published (bench_pipeline's real-time run at
        # 1440x: one interval published in 300 s after a skip of 15).
        pending = 1 + sum(1 for t in self._offered if base < t < upcoming)
        if pending == 1:
            # Everything published before ``upcoming`` is closed: one interval may always go, even one
            # with more batches than the window (it would otherwise wait for ever); see _batches_measured.
            return False
        sim = self.settings.sim
        ahead = int((upcoming - base) / self.clock.interval)  # counting ``upcoming``
        return (
            ahead > sim.max_ahead_intervals or pending * self._batches_per_interval > sim.max_ahead_messages
        )

    async def _hold_back(self, upcoming: datetime, *, interruptible: bool = True) -> None:
        """Wait until the aggregator's watermark leaves room for ``upcoming`` in the window (or, when
        ``interruptible``, until a command changes the schedule)."""
        started = time.monotonic()
        while not (interruptible and self._wake.is_set()):
            self._watermark_changed.clear()
            if not self._over_window(upcoming):
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._watermark_changed.wait(), self._idle_s(1.0))
        self.flow_wait_s += time.monotonic() - started

    async def _drop_interval(self) -> None:
        """The ``drop`` policy: skip the current interval (counted and reported, never published)."""
        assert self.clock is not None
        if self.flow_dropped % 100 == 0:
            _LOGGER.warning(
                "%d intervals ahead of the aggregator's watermark; dropping %s (%d dropped so far)",
                self.ahead_intervals() or 0,
                self.clock.current,
                self.flow_dropped + 1,
            )
        self.flow_dropped += 1
        self.dropped_intervals += 1
        self.clock.current += self.clock.interval
        self.clock.tick += 1
        self.supervisor.beat(_TASK)
        await self._publish_clock()
        await self._persist()

    # ------------------------------------------------------------------ one interval
    def _fleet_stale(self) -> bool:
        """Whether the next interval must first (re)load the fleet or its supply plan."""
        return self._world_dirty or self.fleet is None or self.health.dirty

    async def _ensure_fleet(self) -> Fleet:
        new_fleet = self._world_dirty or self.fleet is None
        if new_fleet:
            self._world_dirty = False
            await self._beating(self._load_fleet())
        assert self.fleet is not None
        if new_fleet or self.health.dirty:
            await self._beating(self.health.load(self.fleet, new_fleet=new_fleet))
        return self.fleet

    async def _load_fleet(self) -> None:
        columns = await fleet_repository.load_fleet(self.pool, self.shard, self.shards)
        spikes = await control_repository.load_spikes(self.pool)
        windows = await flex_repository.load_flex(self.pool)
        self.fleet = await asyncio.to_thread(domain.build_fleet_from, self.settings.sim.seed, columns)
        await asyncio.to_thread(self.publisher.warm, self.fleet)
        self.spikes = SpikePlan(self.fleet, spikes)
        self.flex = FlexPlan(self.fleet.meter_id, windows)
        _LOGGER.info("fleet loaded: %d meters (shard %d/%d)", len(self.fleet), self.shard, self.shards)

    async def _beating(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` (a fleet load, a registers save) while telling the clock's watchdog it is progress,
        not a stall.

        A large fleet on a loaded machine takes longer than ``stall_after_s`` to load (100,000 meters:
        over a minute at load 16); the watchdog then cancelled the load and the restarted clock began it
        again from scratch, for ever. The beats stop after ``_LOAD_STALLS`` times ``stall_after_s``: a
        load that hangs (a query that never returns) is still reported and restarted.
        """
        task = asyncio.ensure_future(work)
        until = time.monotonic() + _LOAD_STALLS * self.settings.supervision.stall_after_s
        try:
            while not task.done():
                await asyncio.wait({task}, timeout=self._idle_s(float("inf")))
                if time.monotonic() < until:
                    self.supervisor.beat(_TASK)
            task.result()
        finally:
            task.cancel()

    def supply_changed(self) -> None:
        """Outages or disconnects changed: reload the supply plan (not the fleet) before the next interval."""
        self.health.dirty = True

    def _prepare(self, fleet: Fleet, when: datetime, interval_s: int) -> Prepared:
        adjust = self.spikes.adjustment(when, interval_s) if self.spikes is not None else None
        if self.flex is not None:  # demand-response windows on the loads model's flexible loads
            self.flex.apply(fleet.loads.flex, when)
        readings = self.health.apply(domain.simulate(fleet, when, interval_s, adjust))
        registers = self.health.registers.columns() if self.health.registers is not None else None
        return self.publisher.prepare(fleet, readings, registers)

    async def _compute(self, when: datetime, interval_s: int) -> Prepared:
        fleet = await self._ensure_fleet()
        if self.owner:  # one writer of outage records: the clock owner
            await self.health.due(fleet, when, interval_s)
        if len(fleet) > _THREAD_ABOVE:
            prepared = await asyncio.to_thread(self._prepare, fleet, when, interval_s)
        else:
            prepared = self._prepare(fleet, when, interval_s)
        # What one interval puts in the broker's queue for the aggregator (its batches), for the window.
        self._batches_measured(max(1, len(prepared.messages)))
        self._offered.append(when)  # every caller publishes what it computed
        return prepared

    def _batches_measured(self, batches: int) -> None:
        """Remember an interval's batch count; warn once per fleet size when one interval alone exceeds
        the window (``max_ahead_messages``, which should stay under the broker's queue per subscriber):
        the broker may then drop batches of one interval, which the aggregator counts as missing."""
        limit = self.settings.sim.max_ahead_messages
        if batches > limit and batches != self._batches_per_interval:
            _LOGGER.warning(
                "one interval is %d batch messages, more than GRIDSIM_SIM__MAX_AHEAD_MESSAGES (%d): "
                "a broker that queues fewer for a slow aggregator drops some (counted as readings_missing)",
                batches,
                limit,
            )
        self._batches_per_interval = batches

    async def _advance(self, *, publish_status: bool) -> int:
        """Simulate and publish the clock's current interval, then move the clock one interval on."""
        assert self.clock is not None
        prepared = await self._compute(self.clock.current, self.clock.interval_s)
        count = await self.publisher.send(prepared, self._progress)
        self._mark_published(self.clock.current)
        if publish_status:
            await self.bus.publish_status()
        return count

    def _progress(self) -> None:
        """Part of an interval was acknowledged by the broker: progress, for the clock's watchdog."""
        self.supervisor.beat(_TASK)

    def _mark_published(self, when: datetime) -> None:
        assert self.clock is not None
        self.last_published = when
        self.intervals_published += 1
        self.supervisor.beat(_TASK)
        self.clock.current = when + self.clock.interval
        self.clock.tick += 1

    # ------------------------------------------------------------------ commands (clock owner)
    def _require_owner(self) -> _Clock:
        if not self.owner or self.clock is None:
            msg = f"this meter-sim instance (shard {self.shard}/{self.shards}) does not own the clock"
            raise ConflictError(msg)
        return self.clock

    def clock_state(self) -> ClockState:
        """The clock as published on the clock topic."""
        clock = self.clock
        if clock is None:
            msg = "the clock has not been received from the owning instance yet"
            raise ConflictError(msg)
        return ClockState(
            current_datetime=clock.current,
            state=clock.state,
            speed=clock.speed,
            interval_s=clock.interval_s,
            tick=clock.tick,
            lag_s=round(self.lag_s, 3),
            dropped_intervals=self.dropped_intervals,
            last_published=self.last_published,
            world_version=self.world_version,
        )

    def simulation_time(self) -> SimulationTime:
        """The clock as the HTTP API shows it."""
        return SimulationTime.of(self.clock_state())

    async def _command_done(self, action: str, params: dict[str, Any]) -> SimulationTime:
        clock = self._require_owner()
        self._wake.set()  # the wall-clock schedule re-anchors from now
        await self._persist(force=True)
        async with self.pool.connection() as conn:
            await control_repository.log(conn, clock.current, f"clock.{action}", {}, params, [])
        await self._publish_clock()
        return self.simulation_time()

    def _refuse_while_stepping(self, action: str) -> None:
        if self._stepping is not None:
            asked, done = self._stepping
            msg = f"cannot {action} while a step of {asked} intervals is running ({done} done); retry when it returns"
            raise ConflictError(msg, details={"step_intervals": asked, "step_done": done})

    async def pause(self) -> SimulationTime:
        """Stop the clock (idempotent)."""
        self._refuse_while_stepping("pause")
        async with self._lock:
            self._require_owner().state = "paused"
            self.lag_s = 0.0
            return await self._command_done("pause", {})

    async def resume(self) -> SimulationTime:
        """Run the clock on the wall-clock schedule (idempotent)."""
        self._refuse_while_stepping("resume")
        async with self._lock:
            self._require_owner().state = "running"
            return await self._command_done("resume", {})

    async def set_speed(self, speed: float) -> SimulationTime:
        """Simulated seconds per real second from now on."""
        self._refuse_while_stepping("set the speed")
        async with self._lock:
            self._require_owner().speed = speed
            return await self._command_done("speed", {"speed": speed})

    async def jump(self, to: datetime) -> SimulationTime:
        """Move the clock to ``to`` (rounded down to an interval); nothing is produced for skipped intervals."""
        self._refuse_while_stepping("jump")
        async with self._lock:
            clock = self._require_owner()
            origin = clock.origin
            ticks = int((to - origin).total_seconds() // clock.interval_s)
            if ticks < 0:
                msg = f"to: {to.isoformat()} is before the simulation's start {origin.isoformat()}"
                raise InvalidError(msg, field="to")
            previous = clock.current
            clock.tick = ticks
            clock.current = origin + ticks * clock.interval
            if clock.current > previous:  # the skipped intervals are never published: none is pending
                self._nothing_pending_until = clock.current - clock.interval
            self.lag_s = 0.0
            return await self._command_done(
                "jump", {"from": previous.isoformat(), "to": clock.current.isoformat()}
            )

    async def step(self, intervals: int) -> StepResult:
        """Simulate ``intervals`` intervals as fast as possible; return once they are published (and stored).

        Computing interval k+1 overlaps with waiting for the broker's acknowledgements of interval k.
        """
        started = time.monotonic()
        self._refuse_while_stepping("step")
        # Claimed before waiting for the clock and held until its row is written: a step asked meanwhile
        # (a client whose request timed out while a slow database held this one up asks again) is
        # refused, never queued behind this one to run the clock twice as far as the client wanted.
        self._stepping = (intervals, 0)
        try:
            async with self._lock:
                clock = self._require_owner()
                first = clock.current
                readings = 0
                sending: asyncio.Task[int] | None = None
                when = clock.current
                try:
                    for done in range(intervals):
                        if self._over_window(when):  # a step always waits for the aggregator, never drops
                            self.flow_waits += 1
                            await self._hold_back(when, interruptible=False)
                        prepared = await self._compute(when, clock.interval_s)
                        if sending is not None:
                            readings += await sending
                        sending = asyncio.create_task(self._send_and_tick(prepared, when))
                        when += clock.interval
                        self._stepping = (intervals, done)
                    if sending is not None:
                        readings += await sending
                finally:
                    if sending is not None and not sending.done():
                        sending.cancel()
                    self._wake.set()
                    await self._persist(force=True)
                last = self.last_published
        finally:
            self._stepping = None
        stored, caught_up = await self._wait_downstream(last, readings)
        return StepResult(
            intervals=intervals,
            readings=readings,
            first_interval=first,
            last_interval=last,
            clock=self.simulation_time(),
            stored=stored,
            shards_caught_up=caught_up,
            elapsed_s=round(time.monotonic() - started, 3),
        )

    async def _send_and_tick(self, prepared: Prepared, when: datetime) -> int:
        count = await self.publisher.send(prepared, self._progress)
        self._mark_published(when)
        self.lag_s = 0.0
        await self._publish_clock()
        return count

    async def _wait_downstream(self, last: datetime | None, readings: int) -> tuple[bool | None, bool]:
        """Wait (bounded) until follower shards and the aggregator have caught up with ``last``."""
        if last is None:
            return None, True
        deadline = time.monotonic() + self.settings.sim.step_ack_timeout_s
        caught_up = await self._wait_until(
            deadline,
            self._followers_changed,
            lambda: all(p is not None and p >= last for p in self._followers.values()),
        )
        if not any(self._aggregators.values()) or (readings == 0 and not self._followers):
            return None, caught_up
        stored = await self._wait_until(
            deadline,
            self._watermark_changed,
            lambda: self._watermark is not None and self._watermark >= last,
        )
        return stored, caught_up

    @staticmethod
    async def _wait_until(deadline: float, changed: asyncio.Event, done: Any) -> bool:
        while not done():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), remaining)
        return True

    # ------------------------------------------------------------------ world changes
    def world_changed(self) -> None:
        """Meters, links, ERs, DERs or the grid changed: reload before the next interval, tell the shards."""
        self._world_dirty = True
        self.world_version += 1
        if self.owner and self.clock is not None:
            task = asyncio.create_task(self._publish_clock())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ followers
    async def _on_owner_clock(self, msg: ClockState, _path: NoPath) -> None:
        self._owner_clock = msg
        self._owner_clock_changed.set()

    async def _run_follower(self) -> None:
        while True:
            self._owner_clock_changed.clear()
            target = self._owner_clock
            self.supervisor.beat(_TASK)
            if target is None:
                await self._wait_owner_clock()
                continue
            async with self._lock:
                await self._follow(target)
            if self._owner_clock is target:
                await self._wait_owner_clock()

    async def _wait_owner_clock(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._owner_clock_changed.wait(), self._idle_s(float("inf")))

    async def _follow(self, target: ClockState) -> None:
        """Catch up with the owner's clock: simulate the intervals it published, or jump with it."""
        if target.world_version != self.world_version:
            self.world_version = target.world_version
            self._world_dirty = True
        interval = timedelta(seconds=target.interval_s)
        clock = self.clock
        published_through = target.last_published == target.current_datetime - interval
        gap = (target.current_datetime - clock.current) / interval if clock else 0
        if clock is None or not published_through or not 0 <= gap <= MAX_FOLLOW or clock.interval != interval:
            if clock is not None and published_through and gap > MAX_FOLLOW:
                self.dropped_intervals += int(gap)
            self.clock = _Clock(
                target.current_datetime, target.tick, target.speed, target.interval_s, target.state
            )
            return
        clock.speed, clock.state = target.speed, target.state
        published = False
        while clock.current < target.current_datetime:
            prepared = await self._compute(clock.current, clock.interval_s)
            await self.publisher.send(prepared, self._progress)
            self._mark_published(clock.current)
            published = True
        clock.tick = target.tick
        self.lag_s = target.lag_s
        if published:
            await self.bus.publish_status()
            await self.health.save()  # a follower's registers (the owner saves with its clock row)

    # ------------------------------------------------------------------ what the engine listens to
    async def _on_watermark(self, msg: Watermark, _path: NoPath) -> None:
        self._watermark = msg.committed_until
        self._received_until = msg.received_until
        self._watermark_changed.set()

    async def _on_aggregator_status(self, msg: ServiceStatus, path: ServicePath) -> None:
        self._aggregators[path.instance] = msg.state == "online"
        self._watermark_changed.set()

    async def _on_shard_status(self, msg: ServiceStatus, path: ServicePath) -> None:
        if path.instance == self.bus.instance:
            return
        if msg.state != "online":
            self._followers.pop(path.instance, None)
        else:
            raw = msg.detail.get("last_published")
            self._followers[path.instance] = datetime.fromisoformat(raw) if isinstance(raw, str) else None
        self._followers_changed.set()

    # ------------------------------------------------------------------ clock topic, clock row, status
    async def _publish_clock(self) -> None:
        await self.bus.publish(channels.CLOCK, self.clock_state(), NoPath())

    def _row(self, clock: _Clock) -> ClockRow:
        return ClockRow(
            clock.current, clock.tick, clock.speed, clock.interval_s, clock.state, self.last_published
        )

    async def _persist(self, *, force: bool = False) -> None:
        if self.clock is None or not self.owner:
            return
        now = time.monotonic()
        if force or now - self._persisted_at >= PERSIST_EVERY_S:
            self._persisted_at = now
            await fleet_repository.save_clock(self.pool, self._row(self.clock))
            # Saving the registers is progress however long it takes: five million meters' upsert ran
            # 55-100 s while the aggregator rolled up its interval, and the watchdog cancelled it (so the
            # registers were never saved) and restarted the clock at every interval.
            await self._beating(self.health.save(force=force))
            await self.bus.publish_status()  # fresh lag, drops and progress in the retained status

    def status_detail(self) -> dict[str, Any]:
        """What the service's retained status says about the simulation (lag, drops, progress)."""
        clock = self.clock
        return {
            "shard": f"{self.shard}/{self.shards}",
            "role": "clock" if self.owner else "follower",
            "meters": len(self.fleet) if self.fleet is not None else 0,
            "world_version": self.world_version,
            "tick": clock.tick if clock else None,
            "clock_state": clock.state if clock else None,
            "lag_s": round(self.lag_s, 3),
            "dropped_intervals": self.dropped_intervals,
            "last_published": self.last_published.isoformat() if self.last_published else None,
            "intervals_published": self.intervals_published,
            "readings_published": self.publisher.readings_published,
            "messages_published": self.publisher.messages_published,
            "ahead_intervals": self.ahead_intervals(),
            "flow_waits": self.flow_waits,
            "flow_wait_s": round(self.flow_wait_s, 3),
            "flow_dropped": self.flow_dropped,
        }
