"""What the gateway learns from retained topics: service status, the clock, the aggregator's watermark."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from gridsim_shared.ids import TransformerPath
from gridsim_shared.messages import ClockState, Rollup, ServiceStatus, Watermark
from gridsim_shared.readiness import is_ready
from gridsim_shared.schemas.simulation import SimulationTime
from gridsim_shared.topics import NoPath, ServicePath

__all__ = ["SERVICES", "LiveState", "instance_state"]

SERVICES = ("meter-sim", "aggregator", "billing", "feasibility", "utility", "gateway")


@dataclass
class LiveState:
    """Latest retained values, updated by the gateway's subscriptions."""

    statuses: dict[tuple[str, str], ServiceStatus] = field(default_factory=dict)
    clock: ClockState | None = None
    watermark: Watermark | None = None
    transformer_rollups: dict[str, Rollup] = field(default_factory=dict)
    # ``GET /simulation-time``'s body for ``clock``, serialised once per clock message rather than per request.
    simulation_time_json: bytes | None = None

    async def on_status(self, msg: ServiceStatus, path: ServicePath) -> None:
        """Remember a service instance's status."""
        self.statuses[(path.service, path.instance)] = msg

    async def on_clock(self, msg: ClockState, _path: NoPath) -> None:
        """Remember the clock (and its HTTP view, serialised)."""
        self.simulation_time_json = SimulationTime.of(msg).model_dump_json().encode()
        self.clock = msg

    async def on_watermark(self, msg: Watermark, _path: NoPath) -> None:
        """Remember the aggregator's committed watermark."""
        self.watermark = msg

    async def on_transformer_rollup(self, msg: Rollup, path: TransformerPath) -> None:
        """Remember each transformer's latest rollup."""
        self.transformer_rollups[path.transformer] = msg

    def service_states(self, stale_after_beats: float = 4.0, now: datetime | None = None) -> dict[str, str]:
        """Each service's state, the best of its instances: ``online`` (ready: it serves), ``unhealthy`` (it
        reports a stalled or failed task), ``starting`` (connected, not ready yet), ``stalled`` (its heartbeat is older than ``stale_after_beats`` periods: the
        process hangs or lost the broker without its will firing yet), ``offline`` or ``missing``."""
        now = now or datetime.now(UTC)
        states = dict.fromkeys(SERVICES, "missing")
        for (service, _instance), status in self.statuses.items():
            if service not in states:
                continue  # a client that is no part of the system (a test's probe, a tool) is not judged
            state = instance_state(status, stale_after_beats, now)
            if _RANK[state] > _RANK[states[service]]:
                states[service] = state
        return states

    def problems(self, stale_after_beats: float = 4.0, now: datetime | None = None) -> list[str]:
        """Every instance's reported problems and stale heartbeats, one line each."""
        now = now or datetime.now(UTC)
        found: list[str] = []
        for (service, instance), status in sorted(self.statuses.items()):
            if status.state != "online":
                continue
            name = f"{service}/{instance}"
            found.extend(f"{name}: {problem}" for problem in status.problems)
            if instance_state(status, stale_after_beats, now) == "stalled":
                assert status.heartbeat_at is not None
                age = (now - status.heartbeat_at).total_seconds()
                found.append(f"{name}: no heartbeat for {age:.0f} s")
        return found


_RANK = {"missing": 0, "offline": 1, "starting": 2, "stalled": 3, "unhealthy": 4, "online": 5}


def instance_state(status: ServiceStatus, stale_after_beats: float, now: datetime) -> str:
    """One instance's state from its retained status (see :meth:`LiveState.service_states`)."""
    if status.state != "online":
        return "offline"
    if not is_ready(status):
        return "starting"  # connected, but its handlers or what it depends on are not there yet
    if (
        status.heartbeat_at is not None
        and status.heartbeat_s
        and (now - status.heartbeat_at).total_seconds() > status.heartbeat_s * stale_after_beats
    ):
        return "stalled"
    return "unhealthy" if status.problems else "online"
