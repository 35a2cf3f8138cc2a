"""The engine's grid-health state: each meter's supply (outages, disconnects) and its energy registers.

The engine calls :meth:`GridHealth.load` with every new fleet, :meth:`GridHealth.due` before each interval
(outages starting send last-gasp events, outages whose repair time or announced end has come send
power-restored events; both are recorded first), :meth:`GridHealth.apply` on each interval's readings, and
:meth:`GridHealth.save` now and then. See docs/grid-health.md.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Literal

import numpy as np
from psycopg_pool import AsyncConnectionPool

from gridsim_meter_sim import outage_repository, supply
from gridsim_meter_sim.domain import Fleet, Readings
from gridsim_meter_sim.registers import Registers
from gridsim_meter_sim.supply import OutageRow, SupplyPlan
from gridsim_shared import channels
from gridsim_shared.bus import Bus
from gridsim_shared.events import GridEvent, SupplyDetails, SupplyEvent, SupplyKind
from gridsim_shared.ids import slug
from gridsim_shared.topics import MeterEventPath

__all__ = ["SAVE_DUTY", "SAVE_EVERY_S", "GridHealth", "meter_event"]

_LOGGER = logging.getLogger(__name__)

SAVE_EVERY_S = 5.0  # registers are saved at most this often while ticking (and when the engine stops)
# ...and the next save waits until the last one's duration is at most this share of the time between
# starts: an upsert of every meter's registers is the database's single largest write at a utility's
# size (five million meters: 55-150 s each), and saved back to back it took PostgreSQL's whole core.
SAVE_DUTY = 0.1


def meter_event(
    kind: SupplyKind, code: str, meter_id: int, when: datetime, data: Mapping[str, object]
) -> GridEvent:
    """A meter's supply event: ``last_gasp`` (lost supply), ``power_restored``, ``disconnected``, ``reconnected``."""
    severity: Literal["info", "warning"] = "warning" if kind in ("last_gasp", "disconnected") else "info"
    text = {
        "last_gasp": f"meter {code} lost supply (last gasp)",
        "power_restored": f"meter {code}: power restored",
        "disconnected": f"meter {code} disconnected remotely",
        "reconnected": f"meter {code} reconnected remotely",
    }[kind]
    return SupplyEvent(
        type=kind,
        severity=severity,
        timestamp=when,
        subject=code,
        message=text,
        data=SupplyDetails.model_validate({**data, "meter_id": meter_id}),
    )


class GridHealth:
    """Supply plan and registers of one engine's fleet."""

    def __init__(
        self, pool: AsyncConnectionPool, bus: Bus, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.pool = pool
        self.bus = bus
        self._monotonic = monotonic  # the clock the saves are timed by (a test's own)
        self.plan: SupplyPlan | None = None
        self.registers: Registers | None = None
        self.last: Readings | None = None  # the last interval simulated (for on-demand reads)
        self.dirty = True  # outages or disconnects changed: reload the plan before the next interval
        self._next_save_at = 0.0  # monotonic time
        self._as_of: datetime | None = None

    async def load(self, fleet: Fleet, *, new_fleet: bool) -> None:
        """Reload the supply plan (and, for a new fleet, carry the registers over to its rows)."""
        if new_fleet or self.registers is None:
            carried = self.registers
            stored: Registers | None
            if carried is None:  # the first fleet: every meter's saved registers
                stored = await outage_repository.load_registers(self.pool, None)
            else:  # a new fleet: the saved registers of the meters it did not have
                missing = fleet.meter_id[~np.isin(fleet.meter_id, carried.meter_id)]
                stored = await outage_repository.load_registers(self.pool, missing) if len(missing) else None
            self.registers = Registers.for_fleet(fleet, carried, stored)
            self.last = None
        if new_fleet or self.dirty or self.plan is None:
            self.dirty = False
            outages, disconnected = await outage_repository.load_supply(self.pool)
            self.plan = SupplyPlan(fleet, outages, disconnected)

    async def due(self, fleet: Fleet, when: datetime, interval_s: int) -> None:
        """Record and announce the outages that start or end by the interval starting at ``when``."""
        if self.plan is None:
            return
        starting, ending = self.plan.due(when, interval_s)
        if not starting and not ending:
            return
        events: list[tuple[int, GridEvent]] = []
        for outage in starting:
            events += self._events(fleet, outage, "last_gasp", outage.start)
        ended = []
        for outage in ending:
            assert outage.end is not None
            by = "schedule" if outage.cause == "planned" else "repair"
            ended.append((outage.id, outage.end, by))
            if outage.announced or outage in starting:
                events += self._events(fleet, outage, "power_restored", outage.end)
        async with self.pool.connection() as conn, conn.transaction():
            await outage_repository.mark_announced(conn, [o.id for o in starting])
            await outage_repository.mark_restored(conn, ended)
            await outage_repository.insert_events(conn, [e for _, e in events])
        self.plan.without([o.id for o in ending], [o.id for o in starting])
        await self.publish(fleet, events)

    def _events(
        self, fleet: Fleet, outage: OutageRow, kind: SupplyKind, when: datetime
    ) -> list[tuple[int, GridEvent]]:
        assert self.plan is not None
        rows = self.plan.rows_of(outage.id)
        data = {"outage_id": outage.id, "cause": outage.cause}
        return [
            (int(r), meter_event(kind, fleet.meter_code[r], int(fleet.meter_id[r]), when, data)) for r in rows
        ]

    async def publish(self, fleet: Fleet, events: list[tuple[int, GridEvent]]) -> None:
        """Publish meter events (by fleet row) on their meter-event topics; a broker hiccup is logged."""
        if not events:
            return

        async def one(row: int, event: GridEvent) -> None:
            u, f, t = fleet.transformer_codes[int(fleet.transformer[row])]
            path = MeterEventPath(event.type, u, f, t, slug(fleet.meter_code[row]))
            await self.bus.publish(channels.METER_EVENT, event, path)

        results = await asyncio.gather(*(one(r, e) for r, e in events), return_exceptions=True)
        failed = sum(isinstance(r, BaseException) for r in results)
        if failed:
            _LOGGER.warning(
                "%d of %d supply events could not be published (they are stored)", failed, len(events)
            )

    def apply(self, readings: Readings) -> Readings:
        """Cut supply where it is off and add the interval to the registers (CPU only)."""
        if self.plan is not None:
            off = self.plan.off(readings.timestamp, readings.interval_s)
            if off is not None:
                readings = supply.cut(readings, off)
        # An interval simulated again (a publish retried after a restart of the tick loop) adds nothing.
        if self.registers is not None and readings.timestamp != self._as_of:
            self.registers.add(readings)
        self.last = readings
        self._as_of = readings.timestamp
        return readings

    async def save(self, *, force: bool = False) -> None:
        """Save the registers, unless forced at most every SAVE_EVERY_S and SAVE_DUTY of the time."""
        started = self._monotonic()
        if self.registers is None or self._as_of is None or not (force or started >= self._next_save_at):
            return
        self._next_save_at = started + SAVE_EVERY_S  # a save that fails is tried again as usual
        await outage_repository.save_registers(self.pool, self.registers, self._as_of)
        took = self._monotonic() - started
        self._next_save_at = started + max(SAVE_EVERY_S, took / SAVE_DUTY)
