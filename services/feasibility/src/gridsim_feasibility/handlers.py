"""Every MQTT subscription and command of the feasibility service, in one place."""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

from psycopg_pool import AsyncConnectionPool

from gridsim_feasibility import domain, engine, repository
from gridsim_feasibility.engine import Choice, TransformerIndex
from gridsim_feasibility.households import household_for
from gridsim_feasibility.repository import LoadRow
from gridsim_feasibility.settings import Settings
from gridsim_shared.bus import Bus, Router
from gridsim_shared.commands import feasibility, meter_sim
from gridsim_shared.schemas import world
from gridsim_shared.schemas.bookings import BookConnection, TransformerCreateBooked
from gridsim_shared.schemas.feasibility import (
    Connection,
    ConnectionApproved,
    ConnectionId,
    ConnectionPage,
    ConnectionQuery,
    ConnectionRejected,
    ConnectionRequest,
    FeasibilityRequest,
    Feasible,
    NearestTransformer,
    NotFeasible,
    Transformer,
    TransformerCreate,
    TransformerGet,
    TransformerPage,
    TransformerQuery,
)

__all__ = ["Deps", "router"]

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class Deps:
    """What the handlers need, built once in ``__main__``."""

    settings: Settings
    bus: Bus
    pool: AsyncConnectionPool
    index: TransformerIndex = field(default_factory=TransformerIndex)
    # Background tasks, cancelled when the service stops.
    tasks: set[asyncio.Task[None]] = field(default_factory=set)


router: Router[Deps] = Router()


def _spares(
    capacity_kva: float, consumption_kw: float, production_kw: float, limits: domain.Limits
) -> tuple[float, float]:
    return (
        round(capacity_kva * limits.consumption_share - consumption_kw, 3),
        round(capacity_kva * limits.production_share - production_kw, 3),
    )


def _nearest(
    choice: Choice, peak: tuple[float, float] | None, decided_on: str, limits: domain.Limits
) -> NearestTransformer:
    load = choice.load
    # The spare capacity is the one the decision compared: booked load, or max(booked, measured peak).
    base = (load.consumption_kw, load.production_kw)
    if decided_on == "measured" and peak is not None:
        base = (max(base[0], peak[0]), max(base[1], peak[1]))
    spare_c, spare_p = _spares(load.capacity_kva, *base, limits)
    measured_c, measured_p = _spares(load.capacity_kva, *peak, limits) if peak else (None, None)
    return NearestTransformer(
        id=load.id,
        name=load.name,
        distance_meters=round(choice.distance_m, 1),
        spare_consumption_capacity=spare_c,
        spare_production_capacity=spare_p,
        code=load.code,
        capacity_kVA=load.capacity_kva,
        connected_consumption_kW=load.consumption_kw,
        connected_production_kW=load.production_kw,
        measured_peak_consumption_kW=round(peak[0], 3) if peak else None,
        measured_peak_production_kW=round(peak[1], 3) if peak else None,
        measured_spare_consumption_capacity=measured_c,
        measured_spare_production_capacity=measured_p,
        decided_on="measured" if decided_on == "measured" else "nameplate",
    )


@router.handles(feasibility.CHECK)
async def check(body: FeasibilityRequest, deps: Deps) -> Feasible | NotFeasible:
    """The seed's feasibility check: the nearest transformer that carries the request. No side effects."""
    settings = deps.settings.feasibility
    async with deps.pool.connection() as conn:
        outcome = await engine.evaluate(conn, deps.index, engine.as_request(body), settings, book=None)
        if outcome.choice is None:
            return NotFeasible(
                reason=domain.REASON_NONE_NEARBY,
                limiting=outcome.limiting or "none_in_radius",
                radius_m=settings.radius_m,
                transformers_in_radius=outcome.candidates,
            )
        choice = outcome.choice
        peak = choice.measured
        if peak is None:
            peaks = await repository.measured_peaks(conn, [choice.load.id], settings.measured_window_h)
            peak = peaks.get(choice.load.id)
    return Feasible(
        nearest_transformer=_nearest(choice, peak, outcome.decided_on, engine.limits_of(settings))
    )


@router.handles(feasibility.CONNECT)
async def connect(body: ConnectionRequest, deps: Deps) -> ConnectionApproved | ConnectionRejected:
    """The seed's ``POST /connection``: decide, have meter-sim book the load (and create the household) in
    one atomic command, then store the connection."""
    settings = deps.settings.feasibility
    request = engine.as_request(body)
    connection_id = uuid.uuid4()
    limits = engine.limits_of(settings)
    household = None
    async with deps.pool.connection() as conn:
        spec = await household_for(conn, connection_id, body.type, request) if body.create_meter else None

        async def book(transformer_id: int, measured: tuple[float, float]) -> LoadRow | None:
            nonlocal household
            booked = await deps.bus.call(
                meter_sim.BOOK_CONNECTION,
                BookConnection(
                    transformer_id=transformer_id,
                    consumption_kw=request.consumption_kw,
                    production_kw=request.production_kw,
                    measured_consumption_kw=measured[0],
                    measured_production_kw=measured[1],
                    consumption_share=limits.consumption_share,
                    production_share=limits.production_share,
                    household=spec,
                ),
            )
            if booked.transformer is None:
                return None
            household = booked.household
            t = booked.transformer
            return LoadRow(t.id, t.code, t.name, t.capacity_kva, t.consumption_kw, t.production_kw)

        outcome = await engine.reserve(conn, deps.index, request, settings, book)
    choice = outcome.choice
    # meter-sim committed the booking (and household); the connection row is this service's own write.
    # Only a database failure between the two can leave a booking without its row (docs/feasibility.md).
    async with deps.pool.connection() as conn, conn.transaction():
        await repository.insert_connection(
            conn,
            id=connection_id,
            type=body.type,
            requested_consumption_kw=request.consumption_kw,
            requested_production_kw=request.production_kw,
            latitude=request.latitude,
            longitude=request.longitude,
            status="approved" if choice else "rejected",
            reason=None if choice else domain.rejection_reason(outcome.limiting),
            limiting=outcome.limiting,
            transformer_id=choice.load.id if choice else None,
            distance_meters=choice.distance_m if choice else None,
            decided_on=outcome.decided_on,
            meter_id=household.meter_id if household else None,
            er_id=household.er_id if household else None,
        )
    if choice is None:
        return ConnectionRejected(
            reason=domain.rejection_reason(outcome.limiting),
            connection_id=connection_id,
            limiting=outcome.limiting or "none_in_radius",
        )
    name = choice.load.name
    return ConnectionApproved(
        assigned_transformer=name,
        transformer_id=choice.load.id,
        message=f"Connection successfully created and linked to transformer {name}",
        connection_id=connection_id,
        distance_meters=round(choice.distance_m, 1),
        meter_id=household.meter_id if household else None,
        meter_code=household.meter_code if household else None,
        er_id=household.er_id if household else None,
    )


@router.handles(feasibility.LIST_CONNECTIONS)
async def list_connections(query: ConnectionQuery, deps: Deps) -> ConnectionPage:
    """Stored connections, newest first."""
    async with deps.pool.connection() as conn:
        rows, total = await repository.list_connections(
            conn,
            status=query.status,
            transformer_id=query.transformer_id,
            limit=query.limit,
            offset=query.offset,
        )
    return ConnectionPage(
        connections=[Connection.model_validate(r) for r in rows],
        total=total,
        limit=query.limit,
        offset=query.offset,
    )


@router.handles(feasibility.GET_CONNECTION)
async def get_connection(body: ConnectionId, deps: Deps) -> Connection:
    """One stored connection."""
    async with deps.pool.connection() as conn:
        return Connection.model_validate(await repository.get_connection(conn, body.id))


def _transformer(row: dict[str, Any], limits: domain.Limits) -> Transformer:
    spare_c: float | None = None
    spare_p: float | None = None
    if row["capacity_kVA"] is not None:
        spare_c, spare_p = _spares(
            row["capacity_kVA"], row["connected_consumption_kW"], row["connected_production_kW"], limits
        )
    return Transformer.model_validate(
        {**row, "spare_consumption_capacity": spare_c, "spare_production_capacity": spare_p}
    )


@router.handles(feasibility.CREATE_TRANSFORMER)
async def create_transformer(body: TransformerCreate, deps: Deps) -> Transformer:
    """A new transformer (a grid node under a feeder) in the feasibility view.

    meter-sim owns the grid and the transformers' booked loads, so it creates the node with its initial
    connected loads in one command (its checks, its world reload, the dashboard's tree).
    """
    async with deps.pool.connection() as conn:
        parent_id = body.parent_id
        if parent_id is None:
            parent_id = await repository.nearest_feeder(conn, body.latitude, body.longitude)
    node = TransformerCreateBooked(
        code=body.code,
        name=body.name,
        level="transformer",
        parent_id=parent_id,
        capacity_kVA=body.capacity_kVA,
        city=body.city,
        latitude=body.latitude,
        longitude=body.longitude,
        connected_consumption_kW=body.connected_consumption_kW,
        connected_production_kW=body.connected_production_kW,
    )
    created = await deps.bus.call(meter_sim.CREATE_TRANSFORMER, node)
    async with deps.pool.connection() as conn:
        row = await repository.get_transformer(conn, created.id)
    return _transformer(row, engine.limits_of(deps.settings.feasibility))


@router.handles(feasibility.LIST_TRANSFORMERS)
async def list_transformers(query: TransformerQuery, deps: Deps) -> TransformerPage:
    """Assignable transformers (located, with a capacity), by id."""
    async with deps.pool.connection() as conn:
        rows, total = await repository.list_transformers(
            conn, city=query.city, limit=query.limit, offset=query.offset
        )
    limits = engine.limits_of(deps.settings.feasibility)
    return TransformerPage(
        transformers=[_transformer(r, limits) for r in rows],
        total=total,
        limit=query.limit,
        offset=query.offset,
    )


@router.handles(feasibility.GET_TRANSFORMER)
async def get_transformer(body: TransformerGet, deps: Deps) -> Transformer:
    """One transformer with its spare capacities and its measured peak load."""
    settings = deps.settings.feasibility
    async with deps.pool.connection() as conn:
        row = await repository.get_transformer(conn, body.ref)
        peaks = await repository.measured_peaks(conn, [row["id"]], settings.measured_window_h)
    transformer = _transformer(row, engine.limits_of(settings))
    peak = peaks.get(row["id"])
    if peak is None:
        return transformer
    return transformer.model_copy(
        update={
            "measured_peak_consumption_kW": round(peak[0], 3),
            "measured_peak_production_kW": round(peak[1], 3),
        }
    )


@router.handles(feasibility.WORLD_RESET)
async def world_reset(body: world.WorldReset, deps: Deps) -> world.WorldResetDone:
    """``world.reset``: meter-sim replaced its world; delete the connection requests of the old one."""
    return await forget_world(deps, body.generation)


async def forget_world(deps: Deps, generation: int) -> world.WorldResetDone:
    """Empty what the worlds before ``generation`` left (idempotent: a generation handled is skipped)."""
    async with deps.pool.connection() as conn, conn.transaction():
        deleted = await repository.forget_world(conn, generation)
    if deleted is not None:
        _LOGGER.info("world reset to generation %d: deleted %d connections", generation, deleted)
    return world.WorldResetDone(
        service="feasibility",
        generation=generation,
        deleted={} if deleted is None else {"connections": deleted},
    )


async def catch_up_world(deps: Deps) -> None:
    """At start: handle a reset made while this service was not running (its generation is behind)."""
    async with deps.pool.connection() as conn:
        generation = await repository.meter_sim_world_generation(conn)
    if generation > 0:
        await forget_world(deps, generation)
