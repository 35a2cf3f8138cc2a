"""The seed's admin API, owned by meter-sim: energy resources, meters, links, grid nodes, appliances.

Each route validates its body with the shared schema and asks meter-sim over MQTT; meter-sim's errors
(404 unknown id, 409 conflict, 422 naming the field) come back unchanged. A meter is referenced by its
integer id or its code wherever one is expected; a grid node by its id or code.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel

from gridsim_gateway.deps import BusDep
from gridsim_shared.commands import meter_sim
from gridsim_shared.schemas.common import MAX_OFFSET
from gridsim_shared.schemas.meters import (
    Appliance,
    Deleted,
    Er,
    ErCreate,
    ErPatch,
    GridNode,
    GridNodeCreate,
    GridNodePatch,
    LinkRequest,
    Meter,
    MeterCreate,
    MeterPatch,
    UnlinkRequest,
)

router = APIRouter(prefix="/admin", tags=["admin"])


ErId = Annotated[int, Path(description="the energy resource's id")]
MeterRefPath = Annotated[str, Path(description="the meter's integer id or its code (meter_id)")]
NodeRefPath = Annotated[str, Path(description="the grid node's integer id or its code")]
Limit = Annotated[int, Query(ge=1, le=10_000)]
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET)]


def _sent(body: BaseModel) -> dict[str, Any]:
    """Only the fields the client sent: a PATCH leaves the others as they are."""
    return body.model_dump(mode="json", exclude_unset=True)


# ---------------------------------------------------------------------------------- appliances


@router.get("/appliances")
async def list_appliances(bus: BusDep) -> list[Appliance]:
    """The appliance catalogue: the seed's twelve with their base kWh per minute, and extras."""
    return await bus.call(meter_sim.APPLIANCES)


# ---------------------------------------------------------------------------- energy resources


@router.post("/er", status_code=201)
async def create_er(body: ErCreate, bus: BusDep) -> Er:
    """Create an energy resource. Unknown appliance names are a 422 listing the known ones."""
    return await bus.call(meter_sim.CREATE_ER, body)


@router.get("/er")
async def list_ers(bus: BusDep, limit: Limit = 1000, offset: Offset = 0) -> list[Er]:
    """Energy resources by id."""
    return await bus.call(meter_sim.LIST_ERS, meter_sim.LIST_ERS.build(limit=limit, offset=offset))


@router.get("/er/{er_id}")
async def get_er(er_id: ErId, bus: BusDep) -> Er:
    """One energy resource with its appliances and linked meter."""
    return await bus.call(meter_sim.GET_ER, meter_sim.GET_ER.build(er_id=er_id))


@router.put("/er/{er_id}")
async def replace_er(er_id: ErId, body: ErCreate, bus: BusDep) -> Er:
    """Replace an energy resource (the seed's UPDATE): the appliance list replaces the old one."""
    data = body.model_dump(mode="json") | {"er_id": er_id}
    return await bus.call(meter_sim.UPDATE_ER, meter_sim.UPDATE_ER.build(**data))


@router.patch("/er/{er_id}")
async def patch_er(er_id: ErId, body: ErPatch, bus: BusDep) -> Er:
    """Change some fields; a sent appliance list (either field) replaces the old one."""
    return await bus.call(meter_sim.UPDATE_ER, meter_sim.UPDATE_ER.build(**_sent(body), er_id=er_id))


@router.delete("/er/{er_id}")
async def delete_er(er_id: ErId, bus: BusDep) -> Deleted:
    """Delete an energy resource; its meter is unlinked and stops generating."""
    return await bus.call(meter_sim.DELETE_ER, meter_sim.DELETE_ER.build(er_id=er_id))


# ---------------------------------------------------------------------------------------- meters


@router.post("/meter", status_code=201)
async def create_meter(body: MeterCreate, bus: BusDep) -> Meter:
    """Create a meter (the seed's body). Without ``transformer_id`` it goes under its parent's
    transformer, else the nearest one to its coordinates, else the "unassigned" transformer."""
    return await bus.call(meter_sim.CREATE_METER, body)


@router.get("/meter")
async def list_meters(
    *,
    bus: BusDep,
    limit: Limit = 1000,
    offset: Offset = 0,
    transformer_id: Annotated[str | None, Query(description="a transformer's id or code")] = None,
    parent_id: Annotated[str | None, Query(description="a parent meter's id or code")] = None,
    linked: Annotated[bool | None, Query(description="only meters linked (or not) to an ER")] = None,
) -> list[Meter]:
    """Meters by id, optionally under one transformer or parent meter."""
    query: dict[str, Any] = {"limit": limit, "offset": offset, "linked": linked}
    query |= {"transformer_id": transformer_id, "parent_id": parent_id}
    request = meter_sim.LIST_METERS.build(**{k: v for k, v in query.items() if v is not None})
    return await bus.call(meter_sim.LIST_METERS, request)


@router.post("/meter/link")
async def link_meter(body: LinkRequest, bus: BusDep) -> Meter:
    """Link a meter to an energy resource (one ER per meter). K_production defaults to 1 for a prosumer
    and 0 for a consumer; generation starts with the next interval."""
    return await bus.call(meter_sim.LINK, body)


@router.post("/meter/unlink")
async def unlink_meter(body: UnlinkRequest, bus: BusDep) -> Meter:
    """Unlink a meter from its energy resource; generation stops with the next interval."""
    return await bus.call(meter_sim.UNLINK, body)


@router.get("/meter/{meter}")
async def get_meter(meter: MeterRefPath, bus: BusDep) -> Meter:
    """One meter, by id or code."""
    return await bus.call(meter_sim.GET_METER, meter_sim.GET_METER.build(meter=meter))


@router.put("/meter/{meter}")
async def replace_meter(meter: MeterRefPath, body: MeterPatch, bus: BusDep) -> Meter:
    """Update a meter with the fields sent (the same as PATCH: a meter's identity is its code)."""
    return await patch_meter(meter, body, bus)


@router.patch("/meter/{meter}")
async def patch_meter(meter: MeterRefPath, body: MeterPatch, bus: BusDep) -> Meter:
    """Change some fields: code, parent (cycles are refused), transformer, load factors, type, location."""
    return await bus.call(meter_sim.UPDATE_METER, meter_sim.UPDATE_METER.build(**_sent(body), meter=meter))


@router.delete("/meter/{meter}")
async def delete_meter(meter: MeterRefPath, bus: BusDep) -> Deleted:
    """Delete a meter; a meter that still has child meters is a 409."""
    return await bus.call(meter_sim.DELETE_METER, meter_sim.DELETE_METER.build(meter=meter))


# ------------------------------------------------------------------------------------ grid nodes


@router.post("/grid-node", status_code=201)
async def create_grid_node(body: GridNodeCreate, bus: BusDep) -> GridNode:
    """Create a utility, a feeder (or substation) under a utility, or a transformer under a feeder."""
    return await bus.call(meter_sim.CREATE_GRID_NODE, body)


@router.get("/grid-node/{node}")
async def get_grid_node(node: NodeRefPath, bus: BusDep) -> GridNode:
    """One grid node, by id or code."""
    return await bus.call(meter_sim.GET_GRID_NODE, meter_sim.GET_GRID_NODE.build(node=node))


@router.patch("/grid-node/{node}")
async def patch_grid_node(node: NodeRefPath, body: GridNodePatch, bus: BusDep) -> GridNode:
    """Change a grid node: name, rating, location, or parent (moves it and everything below)."""
    data = _sent(body) | {"node": node}
    return await bus.call(meter_sim.UPDATE_GRID_NODE, meter_sim.UPDATE_GRID_NODE.build(**data))


@router.delete("/grid-node/{node}")
async def delete_grid_node(node: NodeRefPath, bus: BusDep) -> Deleted:
    """Delete a grid node; one with nodes or meters below it is a 409."""
    return await bus.call(meter_sim.DELETE_GRID_NODE, meter_sim.DELETE_GRID_NODE.build(node=node))
