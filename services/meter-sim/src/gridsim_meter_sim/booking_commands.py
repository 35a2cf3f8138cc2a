"""meter-sim commands feasibility sends (issue 13): each one atomic, in one of meter-sim's transactions.

- ``book_connection``: book a granted connection's load on a transformer and, when asked, create its
  household (energy resource, DERs, linked meter) — all or nothing; the simulation picks the new meter up
  from the next interval (``on_world_changed``), so feasibility needs no second "reload" command.
- ``create_transformer``: a transformer and its already-connected loads at once.
"""

from __future__ import annotations

import psycopg

from gridsim_meter_sim import booking_repository, grid_repository
from gridsim_meter_sim.handlers import Deps
from gridsim_shared.bus import Router
from gridsim_shared.commands import meter_sim
from gridsim_shared.errors import ConflictError, InvalidError
from gridsim_shared.schemas import bookings
from gridsim_shared.schemas.meters import GridNode, GridNodeCreate

__all__ = ["router"]

router: Router[Deps] = Router()


@router.handles(meter_sim.BOOK_CONNECTION)
async def book_connection(body: bookings.BookConnection, deps: Deps) -> bookings.ConnectionBooked:
    """Book the load if it still fits (None: it does not, nothing written); create the household too."""
    async with deps.pool.connection() as conn, conn.transaction():
        booked = await booking_repository.try_book(conn, body)
        if booked is None:
            return bookings.ConnectionBooked(transformer=None)
        household = None
        if body.household is not None:
            try:
                household = await booking_repository.create_household(conn, booked.id, body.household)
            except psycopg.errors.UniqueViolation as exc:  # raising rolls the booking back too
                msg = f"a meter with code {body.household.meter_code!r} already exists"
                raise ConflictError(msg, field="household.meter_code") from exc
    if household is not None:
        deps.on_world_changed()
    return bookings.ConnectionBooked(transformer=booked, household=household)


@router.handles(meter_sim.CREATE_TRANSFORMER)
async def create_transformer(body: bookings.TransformerCreateBooked, deps: Deps) -> GridNode:
    """Create a transformer with its already-connected loads, in one transaction."""
    if body.level != "transformer":
        msg = "create_transformer creates transformers only"
        raise InvalidError(msg, field="level")
    node = GridNodeCreate.model_validate(
        body.model_dump(exclude={"connected_consumption_kW", "connected_production_kW"}, exclude_unset=True)
    )
    async with deps.pool.connection() as conn, conn.transaction():
        created = await grid_repository.create_grid_node(conn, node)
        await booking_repository.set_connected_loads(
            conn, created.id, body.connected_consumption_kW, body.connected_production_kW
        )
        result = await grid_repository.get_grid_node(conn, created.id)
    deps.on_world_changed()
    return result
