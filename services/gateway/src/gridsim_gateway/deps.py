"""FastAPI dependencies: the bus, the pool, the settings, the live state and the live-stream slots.

They are ``async def`` on purpose: FastAPI runs a plain ``def`` dependency in the thread pool, a hop per
request that cost about half the throughput of a route answered from memory."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from psycopg_pool import AsyncConnectionPool

from gridsim_gateway.latest import LatestReadings
from gridsim_gateway.security import StreamSlots
from gridsim_gateway.settings import Settings
from gridsim_gateway.state import LiveState
from gridsim_shared.bus import Bus
from gridsim_shared.supervision import Supervisor

__all__ = ["BusDep", "LatestDep", "PoolDep", "SettingsDep", "StateDep", "StreamsDep", "SupervisorDep"]


async def get_bus(request: Request) -> Bus:
    """The gateway's MQTT bus."""
    bus: Bus = request.state.bus
    return bus


async def get_pool(request: Request) -> AsyncConnectionPool:
    """The gateway's database pool."""
    pool: AsyncConnectionPool = request.state.pool
    return pool


async def get_settings(request: Request) -> Settings:
    """The gateway's settings."""
    settings: Settings = request.state.settings
    return settings


async def get_live(request: Request) -> LiveState:
    """Retained state (statuses, clock, watermark)."""
    live: LiveState = request.state.live
    return live


async def get_latest(request: Request) -> LatestReadings:
    """The latest readings of the meters asked for, kept from the live batches."""
    latest: LatestReadings = request.state.latest
    return latest


async def get_streams(request: Request) -> StreamSlots:
    """Live streams open per client."""
    streams: StreamSlots = request.state.streams
    return streams


async def get_supervisor(request: Request) -> Supervisor:
    """The gateway's supervised tasks (its heartbeat)."""
    supervisor: Supervisor = request.state.supervisor
    return supervisor


BusDep = Annotated[Bus, Depends(get_bus)]
SupervisorDep = Annotated[Supervisor, Depends(get_supervisor)]
PoolDep = Annotated[AsyncConnectionPool, Depends(get_pool)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
StateDep = Annotated[LiveState, Depends(get_live)]
LatestDep = Annotated[LatestReadings, Depends(get_latest)]
StreamsDep = Annotated[StreamSlots, Depends(get_streams)]
