"""What the gateway learns from retained topics: service status, the clock, the aggregator's watermark."""

from __future__ import annotations

from dataclasses import dataclass, field

from gridsim_shared.ids import TransformerPath
from gridsim_shared.messages import ClockState, Rollup, ServiceStatus, Watermark
from gridsim_shared.topics import NoPath, ServicePath

__all__ = ["SERVICES", "LiveState"]

SERVICES = ("meter-sim", "aggregator", "billing", "feasibility", "gateway")


@dataclass
class LiveState:
    """Latest retained values, updated by the gateway's subscriptions."""

    statuses: dict[tuple[str, str], ServiceStatus] = field(default_factory=dict)
    clock: ClockState | None = None
    watermark: Watermark | None = None
    transformer_rollups: dict[str, Rollup] = field(default_factory=dict)

    async def on_status(self, msg: ServiceStatus, path: ServicePath) -> None:
        """Remember a service instance's status."""
        self.statuses[(path.service, path.instance)] = msg

    async def on_clock(self, msg: ClockState, _path: NoPath) -> None:
        """Remember the clock."""
        self.clock = msg

    async def on_watermark(self, msg: Watermark, _path: NoPath) -> None:
        """Remember the aggregator's committed watermark."""
        self.watermark = msg

    async def on_transformer_rollup(self, msg: Rollup, path: TransformerPath) -> None:
        """Remember each transformer's latest rollup."""
        self.transformer_rollups[path.transformer] = msg

    def service_states(self) -> dict[str, str]:
        """Each service's state: ``online`` when any of its instances is online."""
        states = dict.fromkeys(SERVICES, "missing")
        for (service, _instance), status in self.statuses.items():
            if status.state == "online" or service not in states or states[service] == "missing":
                states[service] = status.state
        return states
