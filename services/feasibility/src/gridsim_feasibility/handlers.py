"""Every MQTT subscription and command of the feasibility service, in one place."""

from __future__ import annotations

from dataclasses import dataclass

from psycopg_pool import AsyncConnectionPool

from gridsim_feasibility.settings import Settings
from gridsim_shared.bus import Bus, Router

__all__ = ["Deps", "router"]


@dataclass(frozen=True)
class Deps:
    """What the handlers need, built once in ``__main__``."""

    settings: Settings
    bus: Bus
    pool: AsyncConnectionPool


router: Router[Deps] = Router()
