"""Closing the loop: an approved connection becomes an energy resource and a smart meter on the live grid.

meter-sim owns the grid, meters, energy resources and DERs, so feasibility does not write them: it sizes
the household (appliances from the request, :func:`domain.household_ders`) and sends it with the booking
(``book_connection``), which meter-sim applies in one transaction with the load on the transformer — a
connection is never approved with half a household. See ``docs/feasibility.md`` for when the new meter
starts producing readings.
"""

from __future__ import annotations

from uuid import UUID

from gridsim_feasibility import domain
from gridsim_feasibility.repository import Conn
from gridsim_shared.schemas.bookings import HouseholdDer, NewHousehold

__all__ = ["household_for"]


async def household_for(conn: Conn, connection_id: UUID, kind: str, request: domain.Request) -> NewHousehold:
    """The household to create for a connection: its ER, DERs sized to the request and meter code."""
    cur = await conn.execute("select id, power_w from appliances")
    power_w = {int(r[0]): float(r[1]) for r in await cur.fetchall()}
    ders = domain.household_ders(request.consumption_kw, request.production_kw, power_w)
    short = connection_id.hex[:10].upper()
    return NewHousehold(
        er_name=f"Connection {short}",
        kind="prosumer" if kind == "prosumer" else "consumer",
        meter_code=f"CN-{short}",
        latitude=request.latitude,
        longitude=request.longitude,
        max_capacity_kw=request.consumption_kw or None,
        ders=[HouseholdDer(appliance_id=a, quantity=q, capacity_kw=c) for a, q, c in ders],
    )
