"""Every MQTT subscription and command of the meter-sim service, in one place."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from psycopg_pool import AsyncConnectionPool

from gridsim_meter_sim.settings import Settings
from gridsim_shared.bus import Bus, Router

__all__ = ["Deps", "router"]


@dataclass(frozen=True)
class Deps:
    """What the handlers need, built once in ``__main__``."""

    settings: Settings
    bus: Bus
    pool: AsyncConnectionPool
    # Called after any change to meters, links, ERs, DERs or the grid: the engine reloads its arrays
    # before the next interval ("generation starts with the next interval").
    on_world_changed: Callable[[], None]


router: Router[Deps] = Router()
