"""Closing the loop: an approved connection becomes an energy resource and a smart meter on the live grid.

Rows follow migration 0001 (energy_resources → ders → meters, the meter under the assigned transformer)
and are written in the approval's transaction, so a connection is never approved with half a household.
meter-sim simulates every linked leaf meter it loads; see ``docs/feasibility.md`` for when it picks the
new one up.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from gridsim_feasibility import domain
from gridsim_feasibility.repository import Conn, LoadRow

__all__ = ["Household", "create_household"]


@dataclass(frozen=True)
class Household:
    """What was created for a connection."""

    er_id: int
    meter_id: int
    meter_code: str


async def create_household(
    conn: Conn,
    connection_id: UUID,
    kind: str,
    request: domain.Request,
    transformer: LoadRow,
) -> Household:
    """Insert the ER, its DERs (appliances sized to the request) and a linked meter under ``transformer``."""
    cur = await conn.execute("select city, state, pincode from grid_nodes where id = %s", (transformer.id,))
    place = await cur.fetchone()
    city, state, pincode = place if place else (None, None, None)
    short = connection_id.hex[:10].upper()
    cur = await conn.execute(
        "insert into energy_resources (name, type, kind, city, state, latitude, longitude)"
        " values (%s, %s, 'home', %s, %s, %s, %s) returning id",
        (f"Connection {short}", kind, city, state, request.latitude, request.longitude),
    )
    er = await cur.fetchone()
    assert er is not None
    er_id = int(er[0])
    cur = await conn.execute("select id, power_w from appliances")
    power_w = {int(r[0]): float(r[1]) for r in await cur.fetchall()}
    ders = domain.household_ders(request.consumption_kw, request.production_kw, power_w)
    async with conn.cursor() as insert:
        await insert.executemany(
            "insert into ders (er_id, appliance_id, quantity, capacity_kw) values (%s, %s, %s, %s)",
            [(er_id, appliance_id, quantity, capacity) for appliance_id, quantity, capacity in ders],
        )
    code = f"CN-{short}"
    prosumer = kind == "prosumer"
    cur = await conn.execute(
        """
        insert into meters (code, transformer_id, er_id, load_factor_consumption, load_factor_production,
                            meter_type, city, state, latitude, longitude, pincode, max_capacity_kw, linked_at)
        values (%s, %s, %s, 1, %s, %s, %s, %s, %s, %s, %s, %s, now())
        returning id
        """,
        (
            code,
            transformer.id,
            er_id,
            1.0 if prosumer else 0.0,
            "net-meter" if prosumer else "Smart",
            city,
            state,
            request.latitude,
            request.longitude,
            pincode,
            request.consumption_kw or None,
        ),
    )
    meter = await cur.fetchone()
    assert meter is not None
    return Household(er_id=er_id, meter_id=int(meter[0]), meter_code=code)
