"""Demand-response events: dispatch to the simulated participants, and measured performance.

A complying participant's response is carried into meter-sim's readings through meter-sim's loads model:
one flexible-load window (meter-sim's ``create_flex`` command, the loads model's ``Flex`` hook) per event
over its complying participants sets their thermostats back by the event's offset, holds their water
heaters off and pauses their EV charging for the window; the rebound after it (the building's mass
pulling the thermostat back, the water heaters' and EVs' recovery) is the loads' own physics. Who complies
is a seeded draw per participant and event (``domain.complies``), so a run is repeatable: not every
participant, not every time. See docs/utility.md.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from gridsim_shared import climate as climate_model
from gridsim_shared.bus import Bus
from gridsim_shared.commands import meter_sim
from gridsim_shared.errors import RemoteError, RpcTimeout
from gridsim_shared.schemas.controls import FlexCreate, FlexRefRequest
from gridsim_shared.schemas.utility import DrEvent, Participation
from gridsim_utility import domain
from gridsim_utility import repository as repo
from gridsim_utility.repository import Conn

__all__ = ["Dispatch", "cancel_flex", "dispatch", "evaluate", "view"]

_LOGGER = logging.getLogger(__name__)
HOUR = timedelta(hours=1)

Dispatch = tuple[int, bool, float, int | None]  # meter, complied, expected factor, flexible-load window


async def dispatch(
    bus: Bus,
    seed: int,
    event_id: int,
    *,
    program: dict[str, Any],
    enrolled: Sequence[dict[str, Any]],
    start: datetime,
    end: datetime,
    level: int,
) -> list[Dispatch]:
    """Draw each participant's response and schedule the complying ones' window in meter-sim."""
    drawn: list[tuple[int, bool, float]] = []
    for row in enrolled:
        meter_id = int(row["meter_id"])
        complied = domain.complies(seed, event_id, meter_id, program["compliance"])
        factor = domain.shed_factor(
            seed, event_id, meter_id, shed_share=program["shed_share"], flexible_kw=row["flexible_kw"],
            rated_kw=row["rated_kw"], level=level,
        )  # fmt: skip
        drawn.append((meter_id, complied, factor if complied else 1.0))
    responding = [m for m, complied, _ in drawn if complied]
    flex_id = None
    if responding:
        body = FlexCreate(
            meter_ids=responding,
            start=start,
            end=end,
            hvac_offset_c=domain.hvac_offset_c(program["shed_share"], level),
            defer_water=True,
            defer_ev=True,
            name=f"dr-event-{event_id}",
        )
        flex_id = (await bus.call(meter_sim.CREATE_FLEX, body)).id
    return [(m, complied, factor, flex_id if complied else None) for m, complied, factor in drawn]


async def cancel_flex(bus: Bus, rows: Sequence[dict[str, Any]]) -> None:
    """End the flexible-load windows of participants (an event cancelled or changed) now; idempotent."""
    for flex_id in sorted({r["flex_id"] for r in rows if r.get("flex_id") is not None}):
        try:
            await bus.call(meter_sim.CANCEL_FLEX, FlexRefRequest(flex_id=flex_id))
        except (RemoteError, RpcTimeout):
            _LOGGER.exception("could not end flexible-load window %s", flex_id)


def status(event: dict[str, Any], now: datetime) -> str:
    """scheduled, active, completed or cancelled at simulated ``now``."""
    if event["status"] == "cancelled":
        return "cancelled"
    if now >= event["end"]:
        return "completed"
    return "active" if now >= event["start"] else "scheduled"


def view(
    event: dict[str, Any], parts: Sequence[dict[str, Any]], now: datetime, rebound: float | None
) -> DrEvent:
    """The API's view of an event and its participants."""
    items = [
        Participation(
            meter_id=p["meter_id"],
            complied=p["complied"],
            shed_factor=p["shed_factor"],
            baseline_kWh=_round(p["baseline_kwh"]),
            metered_kWh=_round(p["metered_kwh"]),
            shed_kWh=_round(p["baseline_kwh"] - p["metered_kwh"])
            if p["baseline_kwh"] is not None and p["metered_kwh"] is not None
            else None,
            credit=None if p["credit"] is None else round(p["credit"], 2),
        )
        for p in parts
    ]
    measured = [i.shed_kWh for i in items if i.shed_kWh is not None]
    return DrEvent(
        id=event["id"],
        program_id=event["program_id"],
        program_kind=event["program_kind"],
        start=event["start"],
        end=event["end"],
        level=event["level"],
        trigger=event["trigger"],
        reason=event["reason"],
        status=status(event, now),  # type: ignore[arg-type]
        participants=items,
        shed_kWh=round(sum(measured), 3) if measured else None,
        rebound_kWh=rebound,
        created_sim=event["created_sim"],
    )


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


async def evaluate(
    conn: Conn, event: dict[str, Any], program: dict[str, Any]
) -> tuple[list[tuple[int, float | None, float | None, float | None]], float | None]:
    """Each participant's CAISO baseline, metered kWh and credit over the event hours; and the rebound
    (Σ metered − baseline over as many hours after the event, complying participants)."""
    parts = await repo.participation(conn, [event["id"]])
    if not parts:
        return [], None
    start, end = event["start"], event["end"]
    # Local days in the world's time zone, at the UTC offset of the event's start (daylight saving).
    timezone = (await repo.world_climate(conn)).timezone
    offset = timedelta(seconds=int(climate_model.utc_offset_s(timezone, int(start.timestamp()))))
    # The event day's local midnight (UTC), and the hours of that local day.
    day = (start + offset).replace(hour=0, minute=0, second=0, microsecond=0) - offset
    lookback = day - timedelta(days=domain.BASELINE_LOOKBACK_DAYS)
    duration_h = max(1, math.ceil((end - start) / HOUR))
    after_end = end + duration_h * HOUR
    horizon_end = max(day + timedelta(days=1), after_end)
    meter_ids = [p["meter_id"] for p in parts]
    rows = await repo.meter_hourly(conn, meter_ids, lookback, horizon_end)
    days = int((horizon_end - lookback) / timedelta(days=1)) + 1
    series = {m: np.full(days * 24, np.nan) for m in meter_ids}
    for meter_id, bucket, kwh in rows:
        series[meter_id][int((bucket - lookback) / HOUR)] = kwh
    event_idx = np.array([int((t - day) / HOUR) for t in domain.event_hours_of(start, end)], dtype=np.intp)
    after_idx = int(event_idx.max()) + 1 + np.arange(duration_h)
    results: list[tuple[int, float | None, float | None, float | None]] = []
    rebound = 0.0
    rebound_known = False
    local_day = (start + offset).date()
    first_day = (lookback + offset).date()
    for p in parts:
        meter_id = p["meter_id"]
        s = series[meter_id]
        others = {(t + offset).date() for t in await repo.event_days(conn, meter_id, lookback, day)}
        daily = {
            first_day + timedelta(days=k): s[k * 24 : (k + 1) * 24]
            for k in range(int((day - lookback) / timedelta(days=1)))
        }
        k0 = int((day - lookback) / HOUR)
        today = s[k0 : k0 + 48]
        base = domain.caiso_baseline(daily, local_day, others, today[:24], event_idx)
        metered_hours = today[event_idx]
        if base is None or np.isnan(metered_hours).any():
            results.append((meter_id, None, None, None))
            continue
        baseline = float(base[event_idx].sum())
        metered = float(metered_hours.sum())
        shed = baseline - metered
        if program["kind"] == "ptr":
            credit = program["rebate_per_kwh"] * max(0.0, shed)
        elif program["kind"] == "dlc":
            credit = program["event_credit"] if p["complied"] else 0.0
        else:
            credit = 0.0
        results.append((meter_id, baseline, metered, round(credit, 2)))
        if p["complied"]:
            # Past midnight the baseline's same hours stand for the next day's (a day's shape repeats).
            after = today[after_idx]
            if not np.isnan(after).any():
                rebound += float(after.sum() - base[after_idx % 24].sum())
                rebound_known = True
    return results, (round(rebound, 3) if rebound_known else None)
