"""SQL of the bookings feasibility asks for: a connection's load on a transformer and its household.

A transformer's ``connected_*`` columns are the loads booked on it. :func:`try_book` is one conditional
UPDATE that can never take a transformer past its shares of capacity however many bookings race for it:
PostgreSQL re-checks the condition against the latest committed row when a concurrent transaction changed
it first, so racing bookings queue on the row and the later ones see the earlier ones' loads. A failed
condition locks nothing, so the caller can fall through to the next transformer without holding two rows.
"""

from __future__ import annotations

from gridsim_meter_sim.repository import Conn, fetch_all, fetch_one
from gridsim_shared.errors import InvalidError
from gridsim_shared.schemas.bookings import BookConnection, BookedHousehold, NewHousehold, TransformerLoad

__all__ = ["create_household", "set_connected_loads", "try_book"]

_LOAD_COLUMNS = (
    "id, code, name, capacity_kva, connected_consumption_kw as consumption_kw,"
    " connected_production_kw as production_kw"
)


async def try_book(conn: Conn, body: BookConnection) -> TransformerLoad | None:
    """Add the request to the transformer's booked loads if, at this instant, it still fits; else None."""
    row = await fetch_one(
        conn,
        f"""
        update grid_nodes set
            connected_consumption_kw = greatest(connected_consumption_kw, %(mc)s) + %(c)s,
            connected_production_kw = greatest(connected_production_kw, %(mp)s) + %(p)s
        where id = %(id)s and level = 'transformer' and capacity_kva is not null
          and greatest(connected_consumption_kw, %(mc)s) + %(c)s <= capacity_kva * %(cs)s
          and greatest(connected_production_kw, %(mp)s) + %(p)s <= capacity_kva * %(ps)s
        returning {_LOAD_COLUMNS}
        """,
        {
            "id": body.transformer_id,
            "c": body.consumption_kw,
            "p": body.production_kw,
            "mc": body.measured_consumption_kw,
            "mp": body.measured_production_kw,
            "cs": body.consumption_share,
            "ps": body.production_share,
        },
    )
    return None if row is None else TransformerLoad.model_validate(row)


async def create_household(conn: Conn, transformer_id: int, household: NewHousehold) -> BookedHousehold:
    """Insert the ER, its DERs and a linked meter under the transformer (its city, state and pincode)."""
    place = await fetch_one(
        conn, "select city, state, pincode from grid_nodes where id = %s", (transformer_id,)
    )
    city, state, pincode = (place["city"], place["state"], place["pincode"]) if place else (None, None, None)
    known = {r["id"] for r in await fetch_all(conn, "select id from appliances")}
    unknown = sorted({d.appliance_id for d in household.ders} - known)
    if unknown:
        msg = f"appliance {unknown[0]} not found in the catalogue"
        raise InvalidError(msg, field="household.ders")
    er = await fetch_one(
        conn,
        "insert into energy_resources (name, type, kind, city, state, latitude, longitude)"
        " values (%s, %s, 'home', %s, %s, %s, %s) returning id",
        (household.er_name, household.kind, city, state, household.latitude, household.longitude),
    )
    assert er is not None
    er_id = int(er["id"])
    async with conn.cursor() as insert:
        await insert.executemany(
            "insert into ders (er_id, appliance_id, quantity, capacity_kw) values (%s, %s, %s, %s)",
            [(er_id, d.appliance_id, d.quantity, d.capacity_kw) for d in household.ders],
        )
    prosumer = household.kind == "prosumer"
    meter = await fetch_one(
        conn,
        """
        insert into meters (code, transformer_id, er_id, load_factor_consumption, load_factor_production,
                            meter_type, city, state, latitude, longitude, pincode, max_capacity_kw, linked_at)
        values (%s, %s, %s, 1, %s, %s, %s, %s, %s, %s, %s, %s, now())
        returning id
        """,
        (
            household.meter_code,
            transformer_id,
            er_id,
            1.0 if prosumer else 0.0,
            "net-meter" if prosumer else "Smart",
            city,
            state,
            household.latitude,
            household.longitude,
            pincode,
            household.max_capacity_kw,
        ),
    )
    assert meter is not None
    return BookedHousehold(er_id=er_id, meter_id=int(meter["id"]), meter_code=household.meter_code)


async def set_connected_loads(conn: Conn, node_id: int, consumption_kw: float, production_kw: float) -> None:
    """A new transformer's already-connected loads."""
    await conn.execute(
        "update grid_nodes set connected_consumption_kw = %s, connected_production_kw = %s where id = %s",
        (consumption_kw, production_kw, node_id),
    )
