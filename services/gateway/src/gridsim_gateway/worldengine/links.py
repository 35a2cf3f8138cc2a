"""Meter ↔ energy-resource links with Strapi's one-to-one semantics, on meter-sim's ``link``/``unlink``.

Setting ``meter.energyResource`` (or ``energyResource.meter``) in Strapi moved the household: whatever
either side was linked to before is let go. gridsim refuses to link an ER that is already linked, so the
old links are undone first, then the new one is made.
"""

from __future__ import annotations

from fastapi import Request

from gridsim_gateway.worldengine.common import call, reading
from gridsim_gateway.worldengine.envelope import StrapiNotFound
from gridsim_shared.bus import Bus
from gridsim_shared.commands import meter_sim

__all__ = ["ER_NOT_FOUND", "link", "unlink_er", "unlink_meter"]

ER_NOT_FOUND = "Energy resource not found"
_METER_NOT_FOUND = "Meter not found"


async def _linked(request: Request, meter_id: int | None, er_id: int | None) -> tuple[int | None, int | None]:
    """(the ER the meter is linked to, the meter the ER is linked to)."""
    async with reading(request) as conn:
        meter_er = None
        if meter_id is not None:
            cur = await conn.execute("select er_id from meters where id = %s", (meter_id,))
            row = await cur.fetchone()
            if row is None:
                raise StrapiNotFound(_METER_NOT_FOUND)
            meter_er = row[0]
        er_meter = None
        if er_id is not None:
            cur = await conn.execute("select 1 from energy_resources where id = %s", (er_id,))
            if await cur.fetchone() is None:
                raise StrapiNotFound(ER_NOT_FOUND)
            cur = await conn.execute("select id from meters where er_id = %s", (er_id,))
            row = await cur.fetchone()
            er_meter = row[0] if row else None
    return meter_er, er_meter


async def link(
    bus: Bus, request: Request, meter_id: int, er_id: int, production_factor: float | None
) -> None:
    """Link ``meter_id`` to ``er_id``, letting go of either side's previous link."""
    meter_er, er_meter = await _linked(request, meter_id, er_id)
    if meter_er == er_id and production_factor is None:
        return
    if meter_er is not None and meter_er != er_id:
        await call(bus, meter_sim.UNLINK, {"meter_id": meter_id}, not_found=_METER_NOT_FOUND)
    if er_meter is not None and er_meter != meter_id:
        await call(bus, meter_sim.UNLINK, {"meter_id": er_meter}, not_found=_METER_NOT_FOUND)
    body: dict[str, object] = {"meter_id": meter_id, "er_id": er_id}
    if production_factor is not None:
        body["load_factor_production"] = production_factor
    await call(bus, meter_sim.LINK, body, not_found=ER_NOT_FOUND)


async def unlink_meter(bus: Bus, request: Request, meter_id: int) -> None:
    """Unlink a meter from its household, if it has one."""
    meter_er, _ = await _linked(request, meter_id, None)
    if meter_er is not None:
        await call(bus, meter_sim.UNLINK, {"meter_id": meter_id}, not_found=_METER_NOT_FOUND)


async def unlink_er(bus: Bus, request: Request, er_id: int) -> None:
    """Unlink a household from its meter, if it has one."""
    _, er_meter = await _linked(request, None, er_id)
    if er_meter is not None:
        await call(bus, meter_sim.UNLINK, {"meter_id": er_meter}, not_found=_METER_NOT_FOUND)
