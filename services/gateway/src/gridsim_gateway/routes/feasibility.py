"""The seed's Transformer Feasibility server: checks, connections, and the transformers' feasibility view.

Thin: each route validates with the shared schema and asks the feasibility service over MQTT.
"""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query, status

from gridsim_gateway.deps import BusDep
from gridsim_gateway.routes import json_examples
from gridsim_gateway.security import ADMIN
from gridsim_shared.commands import feasibility
from gridsim_shared.schemas.feasibility import (
    CheckResult,
    Connection,
    ConnectionId,
    ConnectionPage,
    ConnectionQuery,
    ConnectionRequest,
    ConnectionResult,
    FeasibilityRequest,
    Transformer,
    TransformerCreate,
    TransformerGet,
    TransformerPage,
    TransformerQuery,
)

router = APIRouter(tags=["feasibility"])


_APPROVED = {
    "status": "approved",
    "assigned_transformer": "TX-101",
    "transformer_id": 101,
    "message": "Connection successfully created and linked to transformer TX-101",
    "connection_id": "0b5e8f0e-3f0a-4c55-9d2a-1f6a2c1f4e11",
    "distance_meters": 310.5,
}
_REJECTED_CONSUMPTION = {
    "status": "rejected",
    "reason": "Transformer overloaded for consumption",
    "connection_id": "6c1d0e4a-0d7b-4a57-8f3b-2b0f5d9b7a21",
    "limiting": "consumption",
}
_REJECTED_PRODUCTION = {
    "status": "rejected",
    "reason": "Transformer cannot support additional solar injection",
    "connection_id": "9a4c2b7e-5e1f-4d3a-b8c6-3e2d1f0a9b88",
    "limiting": "production",
}
_FEASIBLE = {
    "status": "feasible",
    "nearest_transformer": {
        "id": 101,
        "name": "TX-101",
        "distance_meters": 310.5,
        "spare_consumption_capacity": 215.0,
        "spare_production_capacity": 65.0,
        "code": "tx-101",
        "capacity_kVA": 500.0,
        "connected_consumption_kW": 185.0,
        "connected_production_kW": 85.0,
        "measured_peak_consumption_kW": 142.7,
        "measured_peak_production_kW": 61.3,
        "measured_spare_consumption_capacity": 257.3,
        "measured_spare_production_capacity": 88.7,
        "decided_on": "nameplate",
    },
}
_NOT_FEASIBLE = {
    "status": "not_feasible",
    "reason": "No transformer nearby can support this load safely",
    "limiting": "consumption",
    "radius_m": 2000.0,
    "transformers_in_radius": 3,
}


@router.post(
    "/feasibility-check",
    response_model=CheckResult,
    responses={
        200: {
            "description": "feasible, or not_feasible with the seed's reason",
            "content": json_examples(feasible=_FEASIBLE, not_feasible=_NOT_FEASIBLE),
        }
    },
)
async def feasibility_check(body: FeasibilityRequest, bus: BusDep) -> Any:
    """Check, without side effects, whether a new connection fits a nearby transformer.

    The transformers within the configured radius (`GRIDSIM_FEASIBILITY__RADIUS_M`, default 2,000 m) are
    ranked by Haversine distance; the first whose consumption stays ≤ 80 % and injection ≤ 30 % of its
    kVA with the request added is the answer, with both spare capacities and its measured peak load.
    """
    return await bus.call(feasibility.CHECK, body)


@router.post(
    "/connection",
    status_code=status.HTTP_201_CREATED,
    response_model=ConnectionResult,
    responses={
        201: {
            "description": "the stored connection: approved (linked to a transformer) or rejected (with the reason)",
            "content": json_examples(
                approved=_APPROVED,
                rejected_consumption=_REJECTED_CONSUMPTION,
                rejected_production=_REJECTED_PRODUCTION,
            ),
        }
    },
)
async def create_connection(body: ConnectionRequest, bus: BusDep) -> Any:
    """Request a new connection (consumer or prosumer); when feasible, its load is booked on the transformer.

    The decision, the transformer's `connected_consumption_kW`/`connected_production_kW` growth and the
    stored connection are one transaction: concurrent requests never take a transformer past its limits.
    With `"create_meter": true` an approved connection also gets an energy resource and a smart meter
    under its transformer, and joins the simulation.
    """
    return await bus.call(feasibility.CONNECT, body)


@router.get("/connections")
async def list_connections(query: Annotated[ConnectionQuery, Query()], bus: BusDep) -> ConnectionPage:
    """Stored connection requests, newest first (filter by status or transformer)."""
    return await bus.call(feasibility.LIST_CONNECTIONS, query)


@router.get("/connection/{connection_id}")
async def get_connection(connection_id: UUID, bus: BusDep) -> Connection:
    """One stored connection request."""
    return await bus.call(feasibility.GET_CONNECTION, ConnectionId(id=connection_id))


@router.post("/admin/transformers", status_code=status.HTTP_201_CREATED, tags=["admin"], dependencies=[ADMIN])
async def create_transformer(body: TransformerCreate, bus: BusDep) -> Transformer:
    """Add a transformer (a grid node under a feeder; default: the nearest feeder)."""
    return await bus.call(feasibility.CREATE_TRANSFORMER, body)


@router.get("/admin/transformers", tags=["admin"])
async def list_transformers(query: Annotated[TransformerQuery, Query()], bus: BusDep) -> TransformerPage:
    """Assignable transformers (located, with a capacity) and their spare capacities, by id."""
    return await bus.call(feasibility.LIST_TRANSFORMERS, query)


@router.get("/admin/transformers/{ref}", tags=["admin"])
async def get_transformer(ref: str, bus: BusDep) -> Transformer:
    """One transformer by node id, code or name, with its spare capacities and measured peak load."""
    key: int | str = int(ref) if ref.isdigit() else ref
    return await bus.call(feasibility.GET_TRANSFORMER, TransformerGet(ref=key))
