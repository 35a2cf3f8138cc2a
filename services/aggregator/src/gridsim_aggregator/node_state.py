"""What the closer carries from one interval to the next for each grid node: the transformers' thermal
state (with which ones tripped) and each node's coincident peak of the day.

No I/O here: the closer loads the thermal state from ``transformer_thermal`` when it takes over (or after
a world change) and saves what :meth:`TransformerThermals.step` returns, in the interval's transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime

from gridsim_aggregator import aging, domain, repository
from gridsim_aggregator.domain import ThermalParams, ThermalState
from gridsim_aggregator.topology import NodeRollup
from gridsim_shared.events import (
    GridEvent,
    OverloadDetails,
    TransformerOverloadEvent,
    TransformerTripEvent,
    TripDetails,
)

__all__ = ["DailyPeaks", "ThermalStep", "TransformerThermals"]


@dataclass(frozen=True)
class ThermalStep:
    """One interval of every rated transformer: hot spots (°C), the events it raised, the new states."""

    hot: dict[int, float]
    events: list[GridEvent]
    states: dict[int, ThermalState]


@dataclass
class TransformerThermals:
    """Each transformer's thermal state after the last interval it was stepped through (None until loaded),
    and the transformers whose trip event was sent (until they cool below the alarm)."""

    params: ThermalParams
    seed: int  # the simulation's seed: the weather around transformers is meter-sim's
    states: dict[int, tuple[datetime, ThermalState]] | None = None
    tripped: set[int] = field(default_factory=set)

    def step(self, rollups: list[NodeRollup], ts: datetime, interval_s: int) -> ThermalStep:
        """Advance every rated transformer through interval ``ts``: heating (IEEE C57.91), aging, the
        overload flag's transitions and trips."""
        if self.states is None:
            self.states = {}
        params = self.params
        hot: dict[int, float] = {}
        events: list[GridEvent] = []
        updated: dict[int, ThermalState] = {}
        for r in rollups:
            if r.node.level != "transformer" or not r.node.capacity_kva:
                continue
            before_ts, before = self.states.get(r.node.id, (None, ThermalState()))
            dt = interval_s if before_ts is None else max(0.0, (ts - before_ts).total_seconds())
            loading = r.apparent_kva / r.node.capacity_kva
            state = domain.thermal_step(before, loading, dt, params)
            if r.node.latitude is not None and r.node.longitude is not None:
                state = replace(
                    state, ambient_c=aging.ambient_c(r.node.latitude, r.node.longitude, ts, self.seed)
                )
            state = aging.age(state, state.hot_spot_c(params), loading, dt)
            state, change = domain.overload_transition(state, params)
            hot[r.node.id] = state.hot_spot_c(params)
            updated[r.node.id] = state
            self.states[r.node.id] = (ts, state)
            if change is not None:
                events.append(_overload_event(r, ts, change, hot[r.node.id], params))
            if hot[r.node.id] > params.trip_c and r.node.id not in self.tripped:
                self.tripped.add(r.node.id)
                events.append(_trip_event(r, ts, hot[r.node.id], params))
            elif hot[r.node.id] < params.alarm_c:
                self.tripped.discard(r.node.id)
        return ThermalStep(hot, events, updated)


@dataclass
class DailyPeaks:
    """Each node's coincident peak of the simulated day: its highest interval mean kVA so far, and when."""

    known: dict[int, tuple[datetime, float, datetime]] = field(default_factory=dict)  # node → (day, kVA, at)

    def peak(self, r: NodeRollup, ts: datetime) -> tuple[float, datetime]:
        """The node's peak today with ``r`` (interval ``ts``) counted."""
        day = repository.day_floor(ts)
        known = self.known.get(r.node.id)
        if known is None or known[0] != day or r.apparent_kva > known[1]:
            known = (day, r.apparent_kva, ts)
            self.known[r.node.id] = known
        return known[1], known[2]


def _overload_event(
    r: NodeRollup, ts: datetime, change: str, hot_c: float, params: ThermalParams
) -> GridEvent:
    started = change == "start"
    return TransformerOverloadEvent(
        type="transformer_overload" if started else "transformer_overload_cleared",
        severity="critical" if started else "info",
        timestamp=ts,
        subject=r.node.code,
        message=(
            f"transformer {r.node.code} hot spot {hot_c:.0f} °C above {params.alarm_c:.0f} °C "
            f"(loading {r.loading_pct or 0:.0f} % of {r.node.capacity_kva:.0f} kVA)"
            if started
            else f"transformer {r.node.code} hot spot back to {hot_c:.0f} °C"
        ),
        data=OverloadDetails(
            node_id=r.node.id,
            loading_pct=r.loading_pct,
            apparent_kVA=r.apparent_kva,
            capacity_kVA=r.node.capacity_kva,
            hot_spot_c=hot_c,
        ),
    )


def _trip_event(r: NodeRollup, ts: datetime, hot_c: float, params: ThermalParams) -> GridEvent:
    """The transformer's protection opens: meter-sim takes its meters off supply (docs/grid-health.md)."""
    return TransformerTripEvent(
        type="transformer_trip",
        severity="critical",
        timestamp=ts,
        subject=r.node.code,
        message=f"transformer {r.node.code} tripped: hot spot {hot_c:.0f} °C above {params.trip_c:.0f} °C",
        data=TripDetails(node_id=r.node.id, hot_spot_c=hot_c, loading_pct=r.loading_pct),
    )
