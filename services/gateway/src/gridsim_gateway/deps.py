"""FastAPI dependencies: the bus, the pool, the live state, and the API-key guard for mutating routes."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Header, Request
from psycopg_pool import AsyncConnectionPool

from gridsim_gateway.settings import Settings
from gridsim_gateway.state import LiveState
from gridsim_shared.bus import Bus
from gridsim_shared.errors import GridsimError

__all__ = ["BusDep", "PoolDep", "SettingsDep", "StateDep", "require_api_key"]

_SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


class Unauthorized(GridsimError):
    """A mutating request without a valid API key while keys are configured."""

    status = 401
    code = "unauthorized"


def get_bus(request: Request) -> Bus:
    """The gateway's MQTT bus."""
    bus: Bus = request.state.bus
    return bus


def get_pool(request: Request) -> AsyncConnectionPool:
    """The gateway's database pool."""
    pool: AsyncConnectionPool = request.state.pool
    return pool


def get_settings(request: Request) -> Settings:
    """The gateway's settings."""
    settings: Settings = request.state.settings
    return settings


def get_live(request: Request) -> LiveState:
    """Retained state (statuses, clock, watermark)."""
    live: LiveState = request.state.live
    return live


BusDep = Annotated[Bus, Depends(get_bus)]
PoolDep = Annotated[AsyncConnectionPool, Depends(get_pool)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
StateDep = Annotated[LiveState, Depends(get_live)]


async def require_api_key(
    request: Request,
    settings: SettingsDep,
    x_api_key: Annotated[
        str | None, Header(description="required on mutating routes when keys are configured")
    ] = None,
) -> None:
    """Refuse a mutating request without a configured key; open when no key is configured."""
    keys = settings.gateway.api_keys
    if not keys or request.method in _SAFE_METHODS:
        return
    if x_api_key is None or not any(secrets.compare_digest(x_api_key, k) for k in keys):
        msg = "a valid X-API-Key header is required for this route"
        raise Unauthorized(msg, field="X-API-Key")
