"""The grid as a tree: utility → feeder → transformer → meter → child meters.

``GET /grid`` is the whole tree (for small worlds: it is refused above
``GRIDSIM_GATEWAY__GRID_TREE_MAX_METERS`` or ``GRIDSIM_GATEWAY__GRID_TREE_MAX_NODES``);
``GET /grid/children`` pages one node's or meter's children and ``GET /grid/search`` finds nodes and
meters by prefix, each a few indexed rows whatever the grid's size.
They read meter-sim's tables (read-only), as ``/meter/stream`` resolves a meter.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from psycopg import sql
from psycopg.rows import dict_row

from gridsim_gateway.deps import BusDep, PoolDep, SettingsDep
from gridsim_shared.commands import meter_sim
from gridsim_shared.errors import InvalidError, NotFoundError
from gridsim_shared.schemas.grid_pages import GridItem, GridPage, GridSearch
from gridsim_shared.schemas.meters import GridTree

router = APIRouter(tags=["grid"])

LimitParam = Annotated[int, Query(ge=1, le=1000, description="at most this many items")]
AfterParam = Annotated[
    str | None, Query(description="the last code of the previous page (its `next_after`)", max_length=64)
]

_NODE_ITEMS = """
select 'node' as kind, n.id, n.code, n.name, n.level, n.capacity_kva,
       null::text as er_type,
       case when n.level = 'transformer'
            then (select count(*) from meters m where m.transformer_id = n.id and m.parent_id is null)
            else (select count(*) from grid_nodes c where c.parent_id = n.id) end as children
from grid_nodes n
"""
_METER_ITEMS = """
select 'meter' as kind, m.id, m.code, m.code as name, 'meter' as level, null::float8 as capacity_kva,
       e.type as er_type, (select count(*) from meters c where c.parent_id = m.id) as children
from meters m left join energy_resources e on e.id = m.er_id
"""


@router.get("/grid")
async def grid(
    bus: BusDep,
    pool: PoolDep,
    settings: SettingsDep,
    meters: Annotated[bool, Query(description="include meters under their transformers")] = True,
) -> GridTree:
    """The whole grid, utilities down to child meters (the "unassigned" branch too, when used).

    With more meters than ``GRIDSIM_GATEWAY__GRID_TREE_MAX_METERS`` (default 20,000; about 3 MB of JSON)
    and ``meters=true``, or more grid nodes than ``GRIDSIM_GATEWAY__GRID_TREE_MAX_NODES`` (default 20,000;
    a million meters have ~10,000), it answers 422 naming ``meters``: page the tree with
    ``GET /grid/children`` and find meters with ``GET /grid/search`` instead (a 100,000-meter tree was
    16.8 MB in 3.2 s; the 51,000 nodes of five million meters are 18 MB).
    """
    gateway = settings.gateway
    async with pool.connection() as conn:
        # The nodes first: above their limit meters=false is refused too, so the meters' answer (which
        # suggests it) would send the caller to a second refusal.
        if await _more_than(conn, "grid_nodes", gateway.grid_tree_max_nodes):
            msg = (
                f"meters: the grid has more than {gateway.grid_tree_max_nodes:,} grid nodes "
                "(GRIDSIM_GATEWAY__GRID_TREE_MAX_NODES), too many for one tree even without meters; page it "
                "with GET /grid/children and find nodes and meters with GET /grid/search"
            )
            raise InvalidError(msg, field="meters")
        if meters and await _more_than(conn, "meters", gateway.grid_tree_max_meters):
            msg = (
                f"meters: the grid has more than {gateway.grid_tree_max_meters:,} meters "
                "(GRIDSIM_GATEWAY__GRID_TREE_MAX_METERS), too many for one tree; page it with GET /grid/children, "
                "find meters with GET /grid/search, or ask meters=false"
            )
            raise InvalidError(msg, field="meters")
    return await bus.call(meter_sim.GRID_TREE, meter_sim.GRID_TREE.build(meters=meters))


@router.get("/grid/children")
async def grid_children(
    *,
    pool: PoolDep,
    node: Annotated[
        str | None, Query(description="a grid node's code: its feeders, transformers or meters")
    ] = None,
    meter: Annotated[str | None, Query(description="a parent meter's code: its child meters")] = None,
    after: AfterParam = None,
    limit: LimitParam = 100,
) -> GridPage:
    """One page of children, ordered by code: the utilities (neither ``node`` nor ``meter``), a utility's
    feeders, a feeder's transformers, a transformer's meters (those without a parent meter), or a parent
    meter's children. Each item says how many children it has in turn. Unknown node or meter: 404."""
    if node is not None and meter is not None:
        msg = "meter: give node or meter, not both"
        raise InvalidError(msg, field="meter")
    _printable(node=node, meter=meter, after=after)
    args: list[Any] = []
    async with pool.connection() as conn:
        if meter is not None:
            parent = await _one(conn, "select id from meters where lower(code) = lower(%s)", meter)
            if parent is None:
                msg = f"meter: no meter {meter!r}"
                raise NotFoundError(msg, field="meter")
            sql, args = _METER_ITEMS + " where m.parent_id = %s", [parent["id"]]
        elif node is not None:
            parent = await _one(conn, "select id, level from grid_nodes where code = lower(%s)", node)
            if parent is None:
                msg = f"node: no grid node {node!r}"
                raise NotFoundError(msg, field="node")
            if parent["level"] == "transformer":
                sql = _METER_ITEMS + " where m.transformer_id = %s and m.parent_id is null"
            else:
                sql = _NODE_ITEMS + " where n.parent_id = %s"
            args = [parent["id"]]
        else:
            sql = _NODE_ITEMS + " where n.parent_id is null"
        code = "lower(m.code)" if sql.startswith(_METER_ITEMS) else "n.code"
        if after is not None:
            sql += f" and {code} > lower(%s)"
            args.append(after)
        sql += f" order by {code} limit %s"
        args.append(limit + 1)
        rows = await _rows(conn, sql, args)
    items = [_item(row) for row in rows[:limit]]
    more = len(rows) > limit
    return GridPage(
        parent=node or meter, items=items, next_after=items[-1].code.lower() if more and items else None
    )


@router.get("/grid/search")
async def grid_search(
    *,
    pool: PoolDep,
    q: Annotated[str, Query(min_length=1, max_length=64, description="a prefix of a code or a node's name")],
    limit: Annotated[int, Query(ge=1, le=200, description="at most this many items")] = 20,
) -> GridSearch:
    """Grid nodes whose code or name starts with ``q`` and meters whose code does (case-insensitive),
    nodes first, each with the codes of its ancestors (``path``) to open the tree at it."""
    _printable(q=q)
    prefix = q.lower()
    like = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    async with pool.connection() as conn:
        rows = await _rows(
            conn,
            _NODE_ITEMS.replace(
                "from grid_nodes n",
                ", array(with recursive up(id, parent_id, code, depth) as ("
                " select p.id, p.parent_id, p.code, 1 from grid_nodes p where p.id = n.parent_id"
                " union all select g.id, g.parent_id, g.code, up.depth + 1 from grid_nodes g join up on g.id = up.parent_id)"
                " select code from up order by depth desc) as path from grid_nodes n",
            )
            + " where n.code like %s or lower(n.name) like %s order by n.code limit %s",
            (like, like, limit + 1),
        )
        if len(rows) <= limit:
            # The index on lower(code) serves the range; LIKE keeps exactly the prefix's matches.
            rows += await _rows(
                conn,
                _METER_ITEMS.replace(
                    "from meters m",
                    ", array_remove(array[u.code, f.code, t.code, pm.code], null) as path from meters m"
                    " left join meters pm on pm.id = m.parent_id"
                    " left join grid_nodes t on t.id = m.transformer_id"
                    " left join grid_nodes f on f.id = t.parent_id"
                    " left join grid_nodes u on u.id = f.parent_id",
                )
                + " where lower(m.code) >= %s and lower(m.code) < %s and lower(m.code) like %s"
                " order by lower(m.code) limit %s",
                (prefix, prefix + "\U0010ffff", like, limit + 1 - len(rows)),
            )
    return GridSearch(query=q, items=[_item(row) for row in rows[:limit]], truncated=len(rows) > limit)


async def _more_than(conn: Any, table: str, limit: int) -> bool:
    """Whether ``table`` has more than ``limit`` rows, reading no more than ``limit + 1`` of them."""
    query = sql.SQL("select count(*) from (select 1 from {} limit %s) t").format(sql.Identifier(table))
    cur = await conn.execute(query, (limit + 1,))
    row = await cur.fetchone()
    return row is not None and int(row[0]) > limit


def _printable(**values: str | None) -> None:
    """A NUL cannot be in a code nor reach PostgreSQL (it would refuse the query): 422 naming the field."""
    for name, value in values.items():
        if value is not None and "\x00" in value:
            msg = f"{name}: must not contain NUL characters"
            raise InvalidError(msg, field=name)


async def _one(conn: Any, sql: str, value: str) -> dict[str, Any] | None:
    rows = await _rows(conn, sql, (value,))
    return rows[0] if rows else None


async def _rows(conn: Any, sql: str, args: Any) -> list[dict[str, Any]]:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(sql, args)
    rows: list[dict[str, Any]] = await cur.fetchall()
    return rows


def _item(row: dict[str, Any]) -> GridItem:
    return GridItem(
        kind=row["kind"],
        id=row["id"],
        code=row["code"],
        name=row["name"],
        level=row["level"],
        capacity_kVA=row["capacity_kva"],
        er_type=row["er_type"],
        children=row["children"],
        path=[p for p in row.get("path") or [] if p],
    )
