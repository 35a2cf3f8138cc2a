"""Entry point of the aggregator service: ``gridsim-aggregator`` or ``python -m gridsim_aggregator``."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import asdict
from typing import Any

from gridsim_aggregator.closer import Closer
from gridsim_aggregator.handlers import Deps, batch_filter, router
from gridsim_aggregator.ingest import Ingestor
from gridsim_aggregator.settings import AggregatorSettings, Settings
from gridsim_shared.bus import Bus
from gridsim_shared.db import open_pool
from gridsim_shared.service import run_main

SERVICE = "aggregator"


def client_id(settings: Settings) -> str:
    """Stable MQTT client id: the broker keeps this instance's un-acknowledged batches across crashes."""
    return f"{SERVICE}-{settings.mqtt.base_topic}-{settings.instance}"


async def serve(settings: Settings, stop: asyncio.Event, tuning: AggregatorSettings | None = None) -> None:
    """Run the service until ``stop`` is set."""
    tuning = tuning or AggregatorSettings()
    detail: dict[str, Any] = {}
    async with open_pool(settings.db, name=SERVICE) as pool:
        bus = Bus(
            settings.mqtt,
            SERVICE,
            settings.instance,
            client_id=client_id(settings),
            clean_session=False,
            manual_ack=True,
            status_detail=lambda: detail,
        )
        ingestor = Ingestor(pool, settings.mqtt.base_topic, settings.instance, tuning)
        closer = Closer(
            pool,
            bus,
            settings.db.url,
            settings.db.schema_name,
            tuning,
            interval_s=settings.sim.interval_s,
            raw_retention_days=settings.db.raw_retention_days,
        )
        deps = Deps(settings, tuning, bus, pool, ingestor, closer)
        ingestor.on_committed = closer.wake
        ingestor.on_voltage = deps.on_voltage
        # Subscriptions are registered before connecting: a persistent session's queued batches arrive
        # right after CONNACK and must find their handler.
        await bus.include(router, deps)
        await bus.subscribe_raw(
            batch_filter(settings.mqtt.base_topic, tuning.share_group), ingestor.on_message
        )
        await bus.start()
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(closer.run(stop))
                group.create_task(ingestor.heartbeat(stop))
                group.create_task(_report(bus, ingestor, closer, detail, stop))
                await stop.wait()
                await ingestor.drain()
        finally:
            with contextlib.suppress(Exception):
                await bus.close()


async def _report(
    bus: Bus, ingestor: Ingestor, closer: Closer, detail: dict[str, Any], stop: asyncio.Event
) -> None:
    """Keep the retained status's counters fresh (every 5 s)."""
    while not stop.is_set():
        detail.update(asdict(ingestor.counters), closed=closer.closed, leader=closer.is_leader)
        with contextlib.suppress(Exception):
            await bus.publish_status()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 5.0)


def main() -> None:
    """Console script."""
    run_main(SERVICE, serve)


if __name__ == "__main__":
    main()
