"""Health: the broker, the database and every service's retained status."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel

from gridsim_gateway.deps import BusDep, PoolDep, SettingsDep, StateDep

router = APIRouter(tags=["health"])


class Component(BaseModel):
    """One dependency's state."""

    ok: bool
    url: str | None = None
    error: str | None = None


class Health(BaseModel):
    """The system's health."""

    status: Literal["ok", "degraded"]
    broker: Component
    database: Component
    services: dict[str, str]
    clock: str | None = None


@router.get("/health")
async def health(bus: BusDep, pool: PoolDep, settings: SettingsDep, live: StateDep) -> Health:
    """Broker (with its URL), database, and every service's retained status; ``ok`` when all are up."""
    broker = Component(ok=bus.connected, url=settings.mqtt.url)
    try:
        async with pool.connection(timeout=2) as conn:
            await conn.execute("select 1")
        database = Component(ok=True)
    except Exception as exc:  # any failure means "down"; report why
        database = Component(ok=False, error=f"{type(exc).__name__}: {exc}")
    services = live.service_states()
    services["gateway"] = "online" if bus.connected else "offline"
    ok = broker.ok and database.ok and all(state == "online" for state in services.values())
    clock = live.clock.current_datetime.isoformat() if live.clock else None
    return Health(
        status="ok" if ok else "degraded", broker=broker, database=database, services=services, clock=clock
    )
