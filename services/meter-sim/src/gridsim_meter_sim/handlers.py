"""Every MQTT subscription and command of the meter-sim service, in one place."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

from psycopg_pool import AsyncConnectionPool

from gridsim_meter_sim import grid_repository, meter_repository, repository
from gridsim_meter_sim.engine import Engine
from gridsim_meter_sim.settings import Settings
from gridsim_meter_sim.world_reset import Presence
from gridsim_shared.bus import Bus, Router
from gridsim_shared.commands import meter_sim
from gridsim_shared.errors import GridsimError
from gridsim_shared.schemas import meters as schemas
from gridsim_shared.schemas import simulation as clock_schemas

__all__ = ["Deps", "router", "running_engine"]


@dataclass(frozen=True)
class Deps:
    """What the handlers need, built once in ``__main__``."""

    settings: Settings
    bus: Bus
    pool: AsyncConnectionPool
    # Called after any change to meters, links, ERs, DERs or the grid: the engine reloads its arrays
    # before the next interval ("generation starts with the next interval").
    on_world_changed: Callable[[], None]
    # The clock and physics (None only where a test builds Deps without an engine).
    engine: Engine | None = None
    # Which other services run (their status messages): a world reset waits for the running owners only.
    presence: Presence = field(default_factory=Presence)


async def sim_now(deps: Deps, conn: repository.Conn) -> datetime:
    """The simulated time a change takes effect: the start of the next interval to simulate.

    The engine's clock when it has one (the stored row lags by up to a second of ticks), else the stored
    row, else the wall clock before the clock's first tick.
    """
    if deps.engine is not None and deps.engine.clock is not None:
        return deps.engine.clock.current
    row = await repository.fetch_one(conn, "select current_datetime from simulation_clock")
    return row["current_datetime"] if row else datetime.now(UTC)


router: Router[Deps] = Router()


# ------------------------------------------------------------------------------------------ entities
# Energy resources, meters, links, grid nodes and the appliance catalogue (issue 3). Each command runs
# in one transaction; commands that change what is generated call ``on_world_changed`` after commit.


@asynccontextmanager
async def _transaction(deps: Deps) -> AsyncIterator[repository.Conn]:
    async with deps.pool.connection() as conn, conn.transaction():
        yield conn


@router.handles(meter_sim.APPLIANCES)
async def appliances(_body: object, deps: Deps) -> list[schemas.Appliance]:
    """The appliance catalogue."""
    async with _transaction(deps) as conn:
        return await repository.catalogue(conn)


@router.handles(meter_sim.CREATE_ER)
async def create_er(body: schemas.ErCreate, deps: Deps) -> schemas.Er:
    """Create an energy resource with its appliances."""
    async with _transaction(deps) as conn:
        er = await repository.create_er(conn, body)
    deps.on_world_changed()
    return er


@router.handles(meter_sim.UPDATE_ER)
async def update_er(body: schemas.ErUpdate, deps: Deps) -> schemas.Er:
    """Change an energy resource; a sent appliance list replaces the old one."""
    async with _transaction(deps) as conn:
        er = await repository.update_er(conn, body)
    deps.on_world_changed()
    return er


@router.handles(meter_sim.GET_ER)
async def get_er(body: schemas.ErRef, deps: Deps) -> schemas.Er:
    """One energy resource."""
    async with _transaction(deps) as conn:
        return await repository.get_er(conn, body.er_id)


@router.handles(meter_sim.LIST_ERS)
async def list_ers(body: schemas.ErListRequest, deps: Deps) -> list[schemas.Er]:
    """Energy resources, a page at a time."""
    async with _transaction(deps) as conn:
        return await repository.list_ers(conn, body)


@router.handles(meter_sim.DELETE_ER)
async def delete_er(body: schemas.ErRef, deps: Deps) -> schemas.Deleted:
    """Delete an energy resource (its meter is unlinked)."""
    async with _transaction(deps) as conn:
        er_id = await repository.delete_er(conn, body.er_id)
    deps.on_world_changed()
    return schemas.Deleted(message=f"energy resource {er_id} deleted", id=er_id)


@router.handles(meter_sim.CREATE_METER)
async def create_meter(body: schemas.MeterCreate, deps: Deps) -> schemas.Meter:
    """Create a meter under a transformer (given, its parent's, nearest, or unassigned)."""
    async with _transaction(deps) as conn:
        meter = await meter_repository.create_meter(conn, body)
    deps.on_world_changed()
    return meter


@router.handles(meter_sim.UPDATE_METER)
async def update_meter(body: schemas.MeterUpdate, deps: Deps) -> schemas.Meter:
    """Change a meter (code, parent, transformer, load factors, type, location)."""
    async with _transaction(deps) as conn:
        meter = await meter_repository.update_meter(conn, body)
    deps.on_world_changed()
    return meter


@router.handles(meter_sim.GET_METER)
async def get_meter(body: schemas.MeterRefRequest, deps: Deps) -> schemas.Meter:
    """One meter, by id or code."""
    async with _transaction(deps) as conn:
        return await meter_repository.get_meter(conn, body.meter)


@router.handles(meter_sim.LIST_METERS)
async def list_meters(body: schemas.MeterListRequest, deps: Deps) -> list[schemas.Meter]:
    """Meters, a page at a time, optionally filtered."""
    async with _transaction(deps) as conn:
        return await meter_repository.list_meters(conn, body)


@router.handles(meter_sim.DELETE_METER)
async def delete_meter(body: schemas.MeterRefRequest, deps: Deps) -> schemas.Deleted:
    """Delete a meter that has no child meters."""
    async with _transaction(deps) as conn:
        meter_id = await meter_repository.delete_meter(conn, body.meter)
    deps.on_world_changed()
    return schemas.Deleted(message=f"meter {body.meter} deleted", id=meter_id)


@router.handles(meter_sim.LINK)
async def link(body: schemas.LinkRequest, deps: Deps) -> schemas.Meter:
    """Link a meter to an energy resource; generation starts with the next interval."""
    async with _transaction(deps) as conn:
        meter = await meter_repository.link(conn, body)
    deps.on_world_changed()
    return meter


@router.handles(meter_sim.UNLINK)
async def unlink(body: schemas.UnlinkRequest, deps: Deps) -> schemas.Meter:
    """Unlink a meter from its energy resource; generation stops with the next interval."""
    async with _transaction(deps) as conn:
        meter = await meter_repository.unlink(conn, body)
    deps.on_world_changed()
    return meter


@router.handles(meter_sim.CREATE_GRID_NODE)
async def create_grid_node(body: schemas.GridNodeCreate, deps: Deps) -> schemas.GridNode:
    """Create a utility, feeder or transformer."""
    async with _transaction(deps) as conn:
        node = await grid_repository.create_grid_node(conn, body)
    deps.on_world_changed()
    return node


@router.handles(meter_sim.UPDATE_GRID_NODE)
async def update_grid_node(body: schemas.GridNodeUpdate, deps: Deps) -> schemas.GridNode:
    """Change a grid node (name, rating, location, parent)."""
    async with _transaction(deps) as conn:
        node = await grid_repository.update_grid_node(conn, body)
    deps.on_world_changed()
    return node


@router.handles(meter_sim.GET_GRID_NODE)
async def get_grid_node(body: schemas.NodeRefRequest, deps: Deps) -> schemas.GridNode:
    """One grid node, by id or code."""
    async with _transaction(deps) as conn:
        return await grid_repository.get_grid_node(conn, body.node)


@router.handles(meter_sim.DELETE_GRID_NODE)
async def delete_grid_node(body: schemas.NodeRefRequest, deps: Deps) -> schemas.Deleted:
    """Delete a grid node with nothing below it."""
    async with _transaction(deps) as conn:
        node_id = await grid_repository.delete_grid_node(conn, body.node)
    deps.on_world_changed()
    return schemas.Deleted(message=f"grid node {body.node} deleted", id=node_id)


@router.handles(meter_sim.GRID_TREE)
async def grid_tree(body: schemas.GridTreeRequest, deps: Deps) -> schemas.GridTree:
    """The grid as a tree, utilities down to child meters."""
    async with _transaction(deps) as conn:
        return await grid_repository.grid_tree(conn, with_meters=body.meters)


# ------------------------------------------------------------------------------------------ the clock
# Answered by the instance that owns the clock (shard 0); see engine.py and docs/physics.md.


class _EngineNotRunning(GridsimError):
    status = 503
    code = "engine_not_ready"


def running_engine(deps: Deps) -> Engine:
    """This instance's simulation engine (503 engine_not_ready when it has none)."""
    if deps.engine is None:
        msg = "the simulation engine is not running in this meter-sim instance"
        raise _EngineNotRunning(msg)
    return deps.engine


@router.handles(meter_sim.CLOCK)
async def clock(_body: object, deps: Deps) -> clock_schemas.SimulationTime:
    """The simulation clock."""
    return running_engine(deps).simulation_time()


@router.handles(meter_sim.PAUSE)
async def pause(_body: object, deps: Deps) -> clock_schemas.SimulationTime:
    """Pause the clock (idempotent)."""
    return await running_engine(deps).pause()


@router.handles(meter_sim.RESUME)
async def resume(_body: object, deps: Deps) -> clock_schemas.SimulationTime:
    """Run the clock on the wall-clock schedule (idempotent)."""
    return await running_engine(deps).resume()


@router.handles(meter_sim.SET_SPEED)
async def set_speed(body: clock_schemas.SpeedRequest, deps: Deps) -> clock_schemas.SimulationTime:
    """Simulated seconds per real second."""
    return await running_engine(deps).set_speed(body.speed)


@router.handles(meter_sim.JUMP)
async def jump(body: clock_schemas.JumpRequest, deps: Deps) -> clock_schemas.SimulationTime:
    """Move the clock to a time (no readings for the intervals jumped over)."""
    return await running_engine(deps).jump(body.to)


@router.handles(meter_sim.STEP)
async def step(body: clock_schemas.StepRequest, deps: Deps) -> clock_schemas.StepResult:
    """Simulate and publish N intervals as fast as possible; answer once published (and stored)."""
    return await running_engine(deps).step(body.intervals)
