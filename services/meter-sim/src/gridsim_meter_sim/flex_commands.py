"""meter-sim commands of flexible-load windows (issue 17): the utility's demand-response programmes ask
meter-sim to curtail enrolled loads through the loads model's ``Flex`` hook (docs/utility.md).

``create_flex``, ``get_flex`` and ``cancel_flex`` over ``{base}/v1/cmd/meter-sim/<operation>``. Each
change is in ``control_log`` at its simulated time and reloads the fleet before the next interval
(``on_world_changed``), as spikes do.
"""

from __future__ import annotations

from gridsim_meter_sim import control_repository, flex_repository
from gridsim_meter_sim.handlers import Deps, sim_now
from gridsim_shared.bus import Router
from gridsim_shared.commands import meter_sim
from gridsim_shared.schemas import controls as schemas

__all__ = ["router"]

router: Router[Deps] = Router()


@router.handles(meter_sim.CREATE_FLEX)
async def create_flex(body: schemas.FlexCreate, deps: Deps) -> schemas.FlexEvent:
    """Curtail the flexible loads of meters over a window (thermostat setback, water and EV deferral)."""
    async with deps.pool.connection() as conn, conn.transaction():
        now = await sim_now(deps, conn)
        event = await flex_repository.create_flex(conn, body)
        params = body.model_dump(mode="json", exclude={"meter_ids"})
        await control_repository.log(conn, now, "flex.create", {"flex_id": event.id}, params, event.meter_ids)
    deps.on_world_changed()
    return event


@router.handles(meter_sim.GET_FLEX)
async def get_flex(body: schemas.FlexRefRequest, deps: Deps) -> schemas.FlexEvent:
    """One window."""
    async with deps.pool.connection() as conn:
        return await flex_repository.get_flex(conn, body.flex_id)


@router.handles(meter_sim.CANCEL_FLEX)
async def cancel_flex(body: schemas.FlexRefRequest, deps: Deps) -> schemas.FlexEvent:
    """End a window now (the loads rebound from now); idempotent."""
    async with deps.pool.connection() as conn, conn.transaction():
        now = await sim_now(deps, conn)
        event = await flex_repository.cancel_flex(conn, body.flex_id, now)
        await control_repository.log(conn, now, "flex.cancel", {"flex_id": event.id}, {}, event.meter_ids)
    deps.on_world_changed()
    return event
