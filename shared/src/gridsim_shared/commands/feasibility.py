"""The commands the feasibility service answers: each one's request and reply, the one definition both ends use."""

from __future__ import annotations

from gridsim_shared.channels import Command
from gridsim_shared.schemas import feasibility, world

SERVICE = "feasibility"

# handlers

CHECK: Command[feasibility.FeasibilityRequest, feasibility.Feasible | feasibility.NotFeasible] = Command(
    SERVICE,
    "check",
    feasibility.FeasibilityRequest,
    feasibility.CheckResult,  # discriminated by `status`
    "The seed's feasibility check: the nearest transformer that carries the request. No side effects.",
)
CONNECT: Command[
    feasibility.ConnectionRequest, feasibility.ConnectionApproved | feasibility.ConnectionRejected
] = Command(
    SERVICE,
    "connect",
    feasibility.ConnectionRequest,
    feasibility.ConnectionResult,  # discriminated by `status`
    "The seed's ``POST /connection``: decide, book the load and store the connection in one transaction.",
)
LIST_CONNECTIONS: Command[feasibility.ConnectionQuery, feasibility.ConnectionPage] = Command(
    SERVICE,
    "list_connections",
    feasibility.ConnectionQuery,
    feasibility.ConnectionPage,
    "Stored connections, newest first.",
)
GET_CONNECTION: Command[feasibility.ConnectionId, feasibility.Connection] = Command(
    SERVICE, "get_connection", feasibility.ConnectionId, feasibility.Connection, "One stored connection."
)
CREATE_TRANSFORMER: Command[feasibility.TransformerCreate, feasibility.Transformer] = Command(
    SERVICE,
    "create_transformer",
    feasibility.TransformerCreate,
    feasibility.Transformer,
    "A new transformer (a grid node under a feeder) in the feasibility view.",
)
LIST_TRANSFORMERS: Command[feasibility.TransformerQuery, feasibility.TransformerPage] = Command(
    SERVICE,
    "list_transformers",
    feasibility.TransformerQuery,
    feasibility.TransformerPage,
    "Assignable transformers (located, with a capacity), by id.",
)
GET_TRANSFORMER: Command[feasibility.TransformerGet, feasibility.Transformer] = Command(
    SERVICE,
    "get_transformer",
    feasibility.TransformerGet,
    feasibility.Transformer,
    "One transformer with its spare capacities and its measured peak load.",
)

# world reset (sent by meter-sim to every owner of data derived from its world: gridsim_shared.schemas.world)
WORLD_RESET: Command[world.WorldReset, world.WorldResetDone] = Command(
    SERVICE,
    world.OPERATION,
    world.WorldReset,
    world.WorldResetDone,
    "meter-sim replaced its world: empty this service's own tables of the old one.",
)
