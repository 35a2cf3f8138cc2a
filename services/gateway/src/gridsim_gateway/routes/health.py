"""Health: the broker, the database and every service's retained status and heartbeat.

``/livez`` says the gateway's own process answers (a supervisor restarts it when it does not);
``/readyz`` and ``/health`` say whether the whole system works, 503 when any part is down, stalled
or reports a problem (docs/operations.md).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Response
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from pydantic import BaseModel

from gridsim_gateway.deps import BusDep, PoolDep, SettingsDep, StateDep, SupervisorDep

router = APIRouter(tags=["health"])

_NOT_READY: dict[int | str, dict[str, Any]] = {
    503: {"description": "a part of the system is down, stalled or reports a problem"}
}


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
    # online (ready) | unhealthy (a task stalled or failed) | stalled (heartbeat too old) | starting
    # (connected, not ready yet) | offline | missing
    services: dict[str, str]
    problems: list[str] = []
    clock: str | None = None


class Liveness(BaseModel):
    """The gateway process answers."""

    status: Literal["live"] = "live"


class Readiness(BaseModel):
    """Whether every part works; ``problems`` says what does not."""

    status: Literal["ready", "not_ready"]
    problems: list[str]


async def check(
    bus: BusDep, pool: PoolDep, settings: SettingsDep, live: StateDep, supervisor: SupervisorDep
) -> Health:
    """The health report (shared by ``/health`` and ``/readyz``)."""
    broker = Component(ok=bus.connected, url=settings.mqtt.url)
    try:
        async with pool.connection(timeout=2) as conn:
            await conn.execute("select 1")
        database = Component(ok=True)
    except Exception as exc:  # any failure means "down"; report why
        database = Component(ok=False, error=f"{type(exc).__name__}: {exc}")
    beats = settings.supervision.stale_after_beats
    services = live.service_states(beats)
    problems = live.problems(beats)
    own = supervisor.problems()
    services["gateway"] = ("unhealthy" if own else "online") if bus.connected else "offline"
    problems.extend(f"gateway: {problem}" for problem in own)
    if not broker.ok:
        problems.append(f"broker: not connected to {settings.mqtt.url}")
    if not database.ok:
        problems.append(f"database: {database.error}")
    problems.extend(
        f"{name}: {state}" for name, state in services.items() if state in {"offline", "missing", "starting"}
    )
    ok = broker.ok and database.ok and all(state == "online" for state in services.values())
    clock = live.clock.current_datetime.isoformat() if live.clock else None
    return Health(
        status="ok" if ok else "degraded",
        broker=broker,
        database=database,
        services=services,
        problems=problems,
        clock=clock,
    )


ReportDep = Annotated[Health, Depends(check)]


@router.get("/health", responses=_NOT_READY)
async def health(response: Response, report: ReportDep) -> Health:
    """Broker (with its URL), database, and every service's state; 200 ``ok`` when all work, else 503."""
    if report.status != "ok":
        response.status_code = 503
    return report


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics() -> PlainTextResponse:
    """Prometheus metrics of the gateway process: its status counters, RPC latency (docs/operations.md)."""
    return PlainTextResponse(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


@router.get("/livez")
async def livez() -> Liveness:
    """200 while the gateway's process answers; nothing else is checked (``/readyz`` does that)."""
    return Liveness()


@router.get("/readyz", responses=_NOT_READY)
async def readyz(response: Response, report: ReportDep) -> Readiness:
    """200 when the broker, the database and every service work; 503 naming what does not."""
    if report.status != "ok":
        response.status_code = 503
        return Readiness(status="not_ready", problems=report.problems)
    return Readiness(status="ready", problems=[])
