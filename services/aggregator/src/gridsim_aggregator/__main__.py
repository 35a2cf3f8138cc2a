"""Entry point of the aggregator service: ``gridsim-aggregator`` or ``python -m gridsim_aggregator``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import asdict
from typing import Any

from gridsim_aggregator import service_levels
from gridsim_aggregator.closer import Closer
from gridsim_aggregator.domain import ThermalParams
from gridsim_aggregator.handlers import Deps, batch_filter, catch_up_world, router
from gridsim_aggregator.ingest import Ingestor
from gridsim_aggregator.settings import AggregatorSettings, Settings
from gridsim_shared.bus import Bus
from gridsim_shared.db import open_pool
from gridsim_shared.service import run_main
from gridsim_shared.supervision import Supervisor

SERVICE = "aggregator"
_LOGGER = logging.getLogger(__name__)


def client_id(settings: Settings) -> str:
    """Stable MQTT client id: the broker keeps this instance's un-acknowledged batches across crashes."""
    return f"{SERVICE}-{settings.mqtt.base_topic}-{settings.instance}"


async def serve(settings: Settings, stop: asyncio.Event, tuning: AggregatorSettings | None = None) -> None:
    """Run the service until ``stop`` is set."""
    tuning = tuning or AggregatorSettings()
    supervisor = Supervisor(SERVICE, settings.supervision)
    async with open_pool(settings.db, name=SERVICE) as pool:

        def detail() -> dict[str, Any]:
            # Progress in every heartbeat: the last commit (clock_until), what was stored and closed.
            clock_until = ingestor.clock_until
            return (
                asdict(ingestor.counters)
                | ingestor.queue
                | {
                    "clock_until": clock_until.isoformat() if clock_until else None,
                    "last_commit_age_s": None
                    if ingestor.last_commit is None
                    else round(time.time() - ingestor.last_commit, 1),
                    "closed": closer.closed,
                    "intervals_missing": closer.intervals_missing,
                    "readings_missing": closer.readings_missing,
                    "leader": closer.is_leader,
                }
            )

        bus = Bus(
            settings.mqtt,
            SERVICE,
            settings.instance,
            client_id=client_id(settings),
            clean_session=False,
            manual_ack=True,
            status_detail=detail,
        )
        ingestor = Ingestor(pool, settings.mqtt.base_topic, settings.instance, tuning)
        ingestor.on_error = supervisor.crashed
        closer = Closer(
            pool,
            bus,
            settings.db.url,
            settings.db.schema_name,
            tuning,
            interval_s=settings.sim.interval_s,
            raw_retention_days=settings.db.raw_retention_days,
            thermal=ThermalParams(trip_c=settings.health.trip_hot_spot_c),
            seed=settings.sim.seed,
        )
        deps = Deps(settings, tuning, bus, pool, ingestor, closer)
        ingestor.on_committed = closer.wake
        ingestor.on_voltage = deps.on_voltage
        # Subscriptions are registered before connecting: a persistent session's queued batches arrive
        # right after CONNACK and must find their handler.
        await bus.include(router, deps)
        health = service_levels.HealthDeps(settings, tuning, bus, pool)
        await bus.include(service_levels.router, health)

        def month_closed(month: str) -> None:
            task = asyncio.create_task(_report_month(health, month))
            deps.tasks.add(task)
            task.add_done_callback(deps.tasks.discard)

        closer.on_month_closed = month_closed
        await bus.subscribe_raw(
            batch_filter(settings.mqtt.base_topic, tuning.share_group), ingestor.on_message
        )
        await bus.start()
        try:
            # After connecting (meter-sim now sees this service online and sends it world_reset): a world
            # reset made while it was down or connecting is handled here, before it says it is ready.
            await catch_up_world(deps)
            # Subscribed at connect (the broker acknowledged every filter before start returned).
            await bus.ready()
            supervisor.attach(bus)  # the heartbeat republishes the status with the counters above
            supervisor.spawn("closer", lambda: closer.run(stop))
            supervisor.spawn("progress", lambda: ingestor.heartbeat(stop))
            await supervisor.wait(stop)
            await ingestor.drain()
        finally:
            await supervisor.close()
            with contextlib.suppress(Exception):
                await bus.close()


async def _report_month(health: service_levels.HealthDeps, month: str) -> None:
    """The closed month's SLA breach events; a failure is logged (the report can be asked for again)."""
    try:
        await service_levels.report_month(health, month)
    except Exception:
        _LOGGER.exception("could not check the service levels of %s", month)


def main() -> None:
    """Console script."""
    run_main(SERVICE, serve)


if __name__ == "__main__":
    main()
