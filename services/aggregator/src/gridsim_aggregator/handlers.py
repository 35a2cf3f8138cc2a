"""Every MQTT subscription of the aggregator service, in one place.

Batches arrive on a shared subscription (``$share/<group>/.../batch/#``): each instance gets a share of
the transformers' batches. The clock is subscribed plainly by every instance: it drives the closing rule
(see :mod:`gridsim_aggregator.closer`) and tells each instance how far its own share is committed.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime

from psycopg_pool import AsyncConnectionPool

from gridsim_aggregator import repository
from gridsim_aggregator.closer import Closer
from gridsim_aggregator.domain import VoltageBand
from gridsim_aggregator.ingest import Ingestor
from gridsim_aggregator.settings import AggregatorSettings, Settings
from gridsim_shared import channels, topics
from gridsim_shared.bus import Bus, Router
from gridsim_shared.commands import aggregator
from gridsim_shared.events import (
    GridEvent,
    VoltageExcursionDetails,
    VoltageExcursionEvent,
    VoltageRestoredDetails,
    VoltageRestoredEvent,
)
from gridsim_shared.ids import slug
from gridsim_shared.messages import ClockState
from gridsim_shared.schemas import world

__all__ = ["Deps", "batch_filter", "router"]

_LOGGER = logging.getLogger(__name__)


@dataclass
class Deps:
    """What the handlers need, built once in ``__main__``."""

    settings: Settings
    tuning: AggregatorSettings
    bus: Bus
    pool: AsyncConnectionPool
    ingestor: Ingestor
    closer: Closer
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def on_voltage(self, changes: list[tuple[int, str, float]], ts: datetime, band: VoltageBand) -> None:
        """Voltage band transitions seen in committed readings: store and publish them (in the background)."""
        task = asyncio.create_task(self._voltage_events(changes, ts, band))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _voltage_events(
        self, changes: list[tuple[int, str, float]], ts: datetime, band: VoltageBand
    ) -> None:
        try:
            async with self.pool.connection() as conn:
                cur = await conn.execute(
                    "select id, code from meters where id = any(%s)", ([c[0] for c in changes],)
                )
                codes: dict[int, str] = dict(await cur.fetchall())
                events = [
                    _voltage_event(codes.get(m, str(m)), meter_id=m, side=side, voltage=v, ts=ts, band=band)
                    for m, side, v in changes
                ]
                await repository.insert_events(conn, events)
            for event in events:
                await self.bus.publish(
                    channels.EVENT, event, topics.EventPath(event.type, slug(event.subject))
                )
        except Exception:
            _LOGGER.exception("could not record %d voltage events", len(changes))


def _voltage_event(
    code: str, *, meter_id: int, side: str, voltage: float, ts: datetime, band: VoltageBand
) -> GridEvent:
    limits = band
    band_text = f"{limits.low_v:.0f}–{limits.high_v:.0f} V"
    if side == "normal":
        return VoltageRestoredEvent(
            type="voltage_restored",
            severity="info",
            timestamp=ts,
            subject=code,
            message=f"meter {code} voltage back in band ({voltage:.1f} V, band {band_text})",
            data=VoltageRestoredDetails(meter_id=meter_id, avg_voltage=voltage),
        )
    return VoltageExcursionEvent(
        type="voltage_low" if side == "low" else "voltage_high",
        severity="warning",
        timestamp=ts,
        subject=code,
        message=f"meter {code} voltage {voltage:.1f} V is {'below' if side == 'low' else 'above'} its band ({band_text})",
        data=VoltageExcursionDetails(
            meter_id=meter_id, avg_voltage=voltage, low_v=limits.low_v, high_v=limits.high_v
        ),
    )


def batch_filter(base: str, share_group: str) -> str:
    """The ingest subscription: shared when a group is set."""
    plain = channels.BATCH.template.filter(base)
    return f"$share/{share_group}/{plain}" if share_group else plain


router: Router[Deps] = Router()


@router.subscribe(channels.CLOCK)
async def on_clock(msg: ClockState, path: topics.NoPath, deps: Deps) -> None:
    """The clock: marks how far meter-sim has published; drives closing."""
    await deps.ingestor.on_clock(msg, path)
    await deps.closer.on_clock(msg, path)


@router.handles(aggregator.WORLD_RESET)
async def world_reset(body: world.WorldReset, deps: Deps) -> world.WorldResetDone:
    """``world.reset``: meter-sim replaced its world; empty the readings, rollups and thermal state of the
    old one (this service's own tables, in one transaction) and rebuild from the new world."""
    return await forget_world(deps, body.generation)


async def forget_world(deps: Deps, generation: int) -> world.WorldResetDone:
    """Empty what the worlds before ``generation`` left (idempotent: a generation handled is skipped)."""
    async with deps.pool.connection() as conn, conn.transaction():
        deleted = await repository.forget_world(conn, generation)
    if deleted is not None:
        deps.closer.world_replaced()
        _LOGGER.info("world reset to generation %d: deleted %s", generation, deleted)
    return world.WorldResetDone(service="aggregator", generation=generation, deleted=deleted or {})


async def catch_up_world(deps: Deps) -> None:
    """At start: handle a reset made while this service was not running (its generation is behind)."""
    async with deps.pool.connection() as conn:
        generation = await repository.meter_sim_world_generation(conn)
    if generation > 0:
        await forget_world(deps, generation)
