"""SQL of DERs as resources of their own: read them, change their lifecycle and switch, remove them.

Creating one and plain switching are the World Engine engineer's ``create_der`` and ``switch_der``
(worldengine_commands.py); this module adds the lifecycle rules (seed note 4): purchased → installed →
connected, one step at a time; only a connected DER can be switched on; connecting a production DER
(a solar panel) to a consumer's ER makes it a prosumer so the panel's energy shows in the readings.
"""

from __future__ import annotations

from typing import Any

from gridsim_meter_sim.repository import Conn, fetch_all, fetch_one, find_er, link_production_factor
from gridsim_shared.errors import ConflictError, NotFoundError
from gridsim_shared.schemas.controls import DerInfo, DerPatch

__all__ = ["LIFECYCLE", "delete_der", "get_der", "list_ders", "promote_to_prosumer", "update_der"]

LIFECYCLE = ("purchased", "installed", "connected")

_DER_SELECT = """
select d.id, d.er_id, d.appliance_id, a.name as appliance, a.role, d.quantity, d.switched_on, d.lifecycle,
       d.capacity_kw, d.tilt_deg, d.azimuth_deg, (d.switched_on and d.lifecycle = 'connected') as producing_or_consuming,
       m.id as meter_id, d.created_at, d.updated_at
from ders d
join appliances a on a.id = d.appliance_id
left join meters m on m.er_id = d.er_id
"""


async def get_der(conn: Conn, der_id: int, *, lock: bool = False) -> DerInfo:
    """One DER (its row locked for update when asked); 404 naming ``der_id``."""
    suffix = " for update of d" if lock else ""
    row = await fetch_one(conn, _DER_SELECT + "where d.id = %s" + suffix, (der_id,))
    if row is None:
        msg = f"DER {der_id} not found"
        raise NotFoundError(msg, field="der_id")
    return DerInfo.model_validate(row)


async def list_ders(conn: Conn, er_id: int) -> list[DerInfo]:
    """The DERs of an ER; 404 when the ER does not exist."""
    await find_er(conn, er_id)
    rows = await fetch_all(conn, _DER_SELECT + "where d.er_id = %s order by d.id", (er_id,))
    return [DerInfo.model_validate(row) for row in rows]


def check_transition(der: DerInfo, to: str) -> None:
    """Refuse skipping a lifecycle step forward (going back, a disconnection, is allowed)."""
    now, target = LIFECYCLE.index(der.lifecycle), LIFECYCLE.index(to)
    if target > now + 1:
        missing = LIFECYCLE[now + 1]
        msg = (
            f"DER {der.id} ({der.appliance}) is {der.lifecycle}: it must be {missing} before it is {to}"
            " (purchased → installed → connected; a solar panel is linked to the house only after"
            " installation and connection)"
        )
        raise ConflictError(msg, field="lifecycle", details={"lifecycle": der.lifecycle, "requested": to})


def check_switch_on(der_id: int, appliance: str, lifecycle: str) -> None:
    """Refuse switching on a DER that is not connected to the grid."""
    if lifecycle != "connected":
        msg = (
            f"DER {der_id} ({appliance}) is {lifecycle}, not connected: only a connected DER can be"
            " switched on (advance its lifecycle first)"
        )
        raise ConflictError(msg, field="switched_on", details={"lifecycle": lifecycle})


async def promote_to_prosumer(conn: Conn, er_id: int) -> bool:
    """A consumer ER with a connected production DER becomes a prosumer, and its meter's K_production
    takes the prosumer default (1) if it was 0; True when it changed."""
    row = await fetch_one(
        conn,
        "update energy_resources e set type = 'prosumer', updated_at = now() where e.id = %s"
        " and e.type = 'consumer' and exists (select 1 from ders d join appliances a on a.id = d.appliance_id"
        " where d.er_id = e.id and a.role = 'production' and d.lifecycle = 'connected') returning id",
        (er_id,),
    )
    if row is None:
        return False
    await conn.execute(
        "update meters set load_factor_production = %s, updated_at = now()"
        " where er_id = %s and load_factor_production = 0",
        (link_production_factor("prosumer"), er_id),
    )
    return True


async def update_der(conn: Conn, body: DerPatch) -> tuple[DerInfo, DerInfo, dict[str, Any]]:
    """Apply a PATCH; return the DER before and after and what changed. Advancing to connected switches
    the DER on (unless the same PATCH says off); going back from connected switches it off."""
    before = await get_der(conn, body.der_id, lock=True)
    lifecycle = body.lifecycle or before.lifecycle
    if body.lifecycle is not None:
        check_transition(before, body.lifecycle)
    switched_on = before.switched_on
    if body.lifecycle is not None and body.lifecycle != before.lifecycle:
        switched_on = body.lifecycle == "connected"
    if body.switched_on is not None:
        if body.switched_on:
            check_switch_on(before.id, before.appliance, lifecycle)
        switched_on = body.switched_on
    changes: dict[str, Any] = {}
    if lifecycle != before.lifecycle:
        changes["lifecycle"] = lifecycle
    if switched_on != before.switched_on:
        changes["switched_on"] = switched_on
    if body.quantity is not None and body.quantity != before.quantity:
        changes["quantity"] = body.quantity
    if body.capacity_kw is not None and body.capacity_kw != before.capacity_kw:
        changes["capacity_kw"] = body.capacity_kw
    for name in ("tilt_deg", "azimuth_deg"):
        value = getattr(body, name)
        if value is not None and value != getattr(before, name):
            changes[name] = value
    if changes:
        await conn.execute(
            "update ders set lifecycle = %s, switched_on = %s, quantity = %s, capacity_kw = %s,"
            " tilt_deg = %s, azimuth_deg = %s, updated_at = now() where id = %s",
            (
                lifecycle,
                switched_on,
                changes.get("quantity", before.quantity),
                changes.get("capacity_kw", before.capacity_kw),
                changes.get("tilt_deg", before.tilt_deg),
                changes.get("azimuth_deg", before.azimuth_deg),
                before.id,
            ),
        )
        if (
            before.role == "production"
            and lifecycle == "connected"
            and await promote_to_prosumer(conn, before.er_id)
        ):
            changes["er_type"] = "prosumer"
    return before, await get_der(conn, before.id), changes


async def delete_der(conn: Conn, der_id: int) -> DerInfo:
    """Remove a DER; return what it was."""
    der = await get_der(conn, der_id, lock=True)
    await conn.execute("delete from ders where id = %s", (der_id,))
    return der
