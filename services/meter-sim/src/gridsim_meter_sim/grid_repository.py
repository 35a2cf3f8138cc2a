"""SQL of the grid: utility → feeder (or substation) → transformer, the tree, nearest transformer.

A meter always hangs from a transformer (its topic path is utility/feeder/transformer/meter). A meter
whose transformer cannot be found — no coordinates, or a grid without located transformers — goes under
the reserved **unassigned** branch: utility ``unassigned`` → feeder ``unassigned-feeder`` → transformer
``unassigned-transformer`` (no capacity, so no overload events). The branch is created on first use;
move a meter out of it with ``PATCH /admin/meter/{meter}`` and a ``transformer_id``.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import psycopg
from psycopg import sql

from gridsim_meter_sim import geo
from gridsim_meter_sim.repository import Conn, fetch_all, fetch_by_ref, fetch_one
from gridsim_shared.errors import ConflictError, InvalidError, NotFoundError
from gridsim_shared.ids import slug
from gridsim_shared.schemas.meters import (
    GridNode,
    GridNodeCreate,
    GridNodeUpdate,
    GridRef,
    GridTree,
    GridTreeNode,
    MeterTreeNode,
)

__all__ = [
    "UNASSIGNED",
    "create_grid_node",
    "delete_grid_node",
    "get_grid_node",
    "grid_tree",
    "nearest_transformer",
    "resolve_node",
    "unassigned_transformer",
    "update_grid_node",
]

# (code, name, level) of the reserved branch, top down.
UNASSIGNED = (
    ("unassigned", "Unassigned", "utility"),
    ("unassigned-feeder", "Unassigned feeder", "feeder"),
    ("unassigned-transformer", "Unassigned transformer", "transformer"),
)
_PARENT_LEVEL = {"feeder": "utility", "transformer": "feeder"}

_NODE_SELECT = """
select id, code, name, level, parent_id, capacity_kva as "capacity_kVA", city, state, latitude, longitude,
       pincode, emergency_service, connected_consumption_kw as "connected_consumption_kW",
       connected_production_kw as "connected_production_kW", created_at
from grid_nodes
"""


async def resolve_node(conn: Conn, ref: GridRef, *, field: str, lock: bool = False) -> dict[str, Any]:
    """A grid node by id or code (a string of digits is tried as an id first); 404 naming ``field``."""
    suffix = " for update" if lock else ""
    row = await fetch_by_ref(
        conn, ref, _NODE_SELECT + "where id = %s" + suffix, _NODE_SELECT + "where code = lower(%s)" + suffix
    )
    if row is None:
        msg = f"grid node {ref!r} not found"
        raise NotFoundError(msg, field=field)
    return row


async def get_grid_node(conn: Conn, ref: GridRef) -> GridNode:
    """One grid node."""
    return GridNode.model_validate(await resolve_node(conn, ref, field="node"))


async def _check_parent(conn: Conn, level: str, parent_ref: GridRef | None) -> int | None:
    if level == "utility":
        if parent_ref is not None:
            msg = "a utility is the top of the grid and has no parent"
            raise InvalidError(msg, field="parent_id")
        return None
    if parent_ref is None:
        msg = f"a {level} needs a parent_id (a {_PARENT_LEVEL[level]})"
        raise InvalidError(msg, field="parent_id")
    parent = await resolve_node(conn, parent_ref, field="parent_id")
    if parent["level"] != _PARENT_LEVEL[level]:
        msg = f"a {level}'s parent must be a {_PARENT_LEVEL[level]}; {parent['code']} is a {parent['level']}"
        raise InvalidError(msg, field="parent_id")
    pid: int = parent["id"]
    return pid


async def create_grid_node(conn: Conn, body: GridNodeCreate) -> GridNode:
    """Insert a utility, feeder or transformer under the right kind of parent."""
    if body.code is not None:
        code, field = body.code, "code"
    else:
        try:
            code, field = slug(body.name), "name"
        except ValueError as exc:
            msg = f"cannot make a code from the name {body.name!r}; give a code"
            raise InvalidError(msg, field="name") from exc
    if code.startswith("unassigned"):
        msg = f"codes starting with 'unassigned' are reserved for the unassigned branch ({code!r})"
        raise InvalidError(msg, field=field)
    if body.level == "transformer" and body.capacity_kVA is None:
        msg = "a transformer needs its rating, capacity_kVA"
        raise InvalidError(msg, field="capacity_kVA")
    parent_id = await _check_parent(conn, body.level, body.parent_id)
    if await fetch_one(conn, "select 1 from grid_nodes where code = %s", (code,)):
        msg = f"a grid node with code {code!r} already exists"
        raise ConflictError(msg, field=field)
    try:
        row = await fetch_one(
            conn,
            "insert into grid_nodes (code, name, level, parent_id, capacity_kva, city, state, latitude,"
            " longitude, pincode, emergency_service) values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " returning id",
            (
                code,
                body.name,
                body.level,
                parent_id,
                body.capacity_kVA,
                body.city,
                body.state,
                body.latitude,
                body.longitude,
                body.pincode,
                body.emergency_service,
            ),
        )
    except psycopg.errors.UniqueViolation as exc:  # a concurrent create won the race
        msg = f"a grid node with code {code!r} already exists"
        raise ConflictError(msg, field=field) from exc
    assert row is not None
    return await get_grid_node(conn, row["id"])


_NODE_COLUMNS = {
    "name": "name",
    "capacity_kVA": "capacity_kva",
    "city": "city",
    "state": "state",
    "latitude": "latitude",
    "longitude": "longitude",
    "pincode": "pincode",
    "emergency_service": "emergency_service",
}


async def update_grid_node(conn: Conn, body: GridNodeUpdate) -> GridNode:
    """Change the fields that were sent; ``parent_id`` moves a feeder or transformer."""
    node = await resolve_node(conn, body.node, field="node", lock=True)
    sent = body.model_fields_set
    changes = {column: getattr(body, name) for name, column in _NODE_COLUMNS.items() if name in sent}
    if node["level"] == "transformer" and "capacity_kVA" in changes and changes["capacity_kVA"] is None:
        msg = "a transformer needs its rating, capacity_kVA"
        raise InvalidError(msg, field="capacity_kVA")
    if "parent_id" in sent:
        changes["parent_id"] = await _check_parent(conn, node["level"], body.parent_id)
    if changes:
        await conn.execute(
            sql.SQL("update grid_nodes set {} where id = {}").format(
                sql.SQL(", ").join(
                    sql.SQL("{} = {}").format(sql.Identifier(k), sql.Placeholder()) for k in changes
                ),
                sql.Placeholder(),
            ),
            [*changes.values(), node["id"]],
        )
    return await get_grid_node(conn, node["id"])


async def delete_grid_node(conn: Conn, ref: GridRef) -> int:
    """Delete a node that has nothing below it (409 otherwise)."""
    node = await resolve_node(conn, ref, field="node", lock=True)
    children = await fetch_all(conn, "select code from grid_nodes where parent_id = %s", (node["id"],))
    meters = await fetch_all(conn, "select code from meters where transformer_id = %s", (node["id"],))
    if children or meters:
        below = [r["code"] for r in children] or [r["code"] for r in meters]
        what = "grid nodes" if children else "meters"
        msg = f"grid node {node['code']} still has {len(below)} {what} below it (e.g. {below[0]}); move or delete them first"
        raise ConflictError(msg, field="node", details={what.replace(" ", "_"): below})
    await conn.execute("delete from grid_nodes where id = %s", (node["id"],))
    node_id: int = node["id"]
    return node_id


async def nearest_transformer(conn: Conn, latitude: float, longitude: float) -> int | None:
    """The located transformer nearest to the point by Haversine distance, or None if there is none."""
    rows = await fetch_all(
        conn,
        "select id, latitude, longitude from grid_nodes where level = 'transformer'"
        " and latitude is not null and longitude is not null and code <> %s",
        (UNASSIGNED[-1][0],),
    )
    found = geo.nearest(latitude, longitude, ((r["id"], r["latitude"], r["longitude"]) for r in rows))
    return None if found is None else found[0]


async def unassigned_transformer(conn: Conn) -> int:
    """The id of the reserved ``unassigned-transformer``, creating its branch on first use."""
    parent_id: int | None = None
    for code, name, level in UNASSIGNED:
        await conn.execute(
            "insert into grid_nodes (code, name, level, parent_id) values (%s, %s, %s, %s)"
            " on conflict (code) do nothing",
            (code, name, level, parent_id),
        )
        row = await fetch_one(conn, "select id from grid_nodes where code = %s", (code,))
        assert row is not None
        parent_id = row["id"]
    assert parent_id is not None
    return parent_id


async def grid_tree(conn: Conn, *, with_meters: bool = True) -> GridTree:
    """Every utility with its feeders, transformers and (optionally) meters and child meters."""
    nodes = [GridTreeNode.model_validate(row) for row in await fetch_all(conn, _NODE_SELECT + "order by id")]
    by_id = {node.id: node for node in nodes}
    roots: list[GridTreeNode] = []
    for node in nodes:
        parent = by_id.get(node.parent_id) if node.parent_id is not None else None
        (parent.children if parent is not None else roots).append(node)
    if not with_meters:
        # Only the count: the nodes alone stay small at a utility's size (a million meters, ~10k nodes).
        counted = await fetch_one(conn, "select count(*) as n from meters")
        return GridTree(
            utilities=roots,
            transformers=sum(1 for node in nodes if node.level == "transformer"),
            meters=int(counted["n"]) if counted else 0,
        )
    meter_rows = await fetch_all(
        conn,
        "select m.id, m.code as meter_id, m.meter_type, m.er_id, e.type as er_type, m.parent_id,"
        " m.transformer_id, m.load_factor_consumption, m.load_factor_production"
        " from meters m left join energy_resources e on e.id = m.er_id order by m.id",
    )
    meters = {row["id"]: MeterTreeNode.model_validate(row) for row in meter_rows}
    children: dict[int, list[MeterTreeNode]] = defaultdict(list)
    for row in meter_rows:
        if row["parent_id"] is not None and row["parent_id"] in meters:
            children[row["parent_id"]].append(meters[row["id"]])
        elif row["transformer_id"] in by_id:
            by_id[row["transformer_id"]].meters.append(meters[row["id"]])
    for meter_id, kids in children.items():
        meters[meter_id].children = kids
    return GridTree(
        utilities=roots,
        transformers=sum(1 for node in nodes if node.level == "transformer"),
        meters=len(meter_rows),
    )
