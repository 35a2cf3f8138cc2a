"""SQL of the feasibility service: psycopg calls that return domain objects or rows.

Transformers are the ``grid_nodes`` rows with ``level = 'transformer'``; meter-sim owns them (and their
booked ``connected_*`` loads), so this service only reads them and asks meter-sim to book
(``book_connection``). It writes its own tables only: ``connections`` and ``feasibility_state``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

import numpy as np
from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row

from gridsim_feasibility import domain
from gridsim_shared.errors import InvalidError, NotFoundError
from gridsim_shared.geo import haversine_m

__all__ = [
    "LoadRow",
    "get_connection",
    "get_transformer",
    "index_version",
    "insert_connection",
    "list_connections",
    "list_transformers",
    "load_positions",
    "loads",
    "measured_peaks",
]

Conn = AsyncConnection[Any]

# An assignable transformer has a location and a capacity.
_ASSIGNABLE = (
    "level = 'transformer' and latitude is not null and longitude is not null and capacity_kva is not null"
)


@dataclass(frozen=True)
class LoadRow:
    """A transformer's identity, capacity and booked loads, read fresh."""

    id: int
    code: str
    name: str
    capacity_kva: float
    consumption_kw: float
    production_kw: float

    @classmethod
    def of(cls, row: tuple[Any, ...]) -> LoadRow:
        """A row selected (or returned) as ``_LOAD_COLUMNS``."""
        return cls(int(row[0]), row[1], row[2], row[3], row[4], row[5])


_LOAD_COLUMNS = "id, code, name, capacity_kva, connected_consumption_kw, connected_production_kw"


# ------------------------------------------------------------------ transformer positions and loads
async def index_version(conn: Conn) -> int:
    """The version of the transformer set (meter-sim's ``grid_version``, bumped by its trigger on grid_nodes)."""
    cur = await conn.execute("select version from grid_version")
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def load_positions(conn: Conn) -> tuple[int, domain.Positions]:
    """Every assignable transformer's id and location, and the version they were read at."""
    # Version first: a change between the two reads makes the next request reload again (never stale).
    version = await index_version(conn)
    cur = await conn.execute(
        f"select id, latitude, longitude from grid_nodes where {_ASSIGNABLE} order by id"
    )
    rows = await cur.fetchall()
    ids = [int(r[0]) for r in rows]
    return version, domain.Positions.build(ids, [r[1] for r in rows], [r[2] for r in rows])


async def loads(conn: Conn, ids: list[int]) -> dict[int, LoadRow]:
    """Fresh capacity and booked loads of these transformers (missing ids: no longer assignable)."""
    cur = await conn.execute(
        f"select {_LOAD_COLUMNS} from grid_nodes where id = any(%s) and {_ASSIGNABLE}", (ids,)
    )
    return {int(r[0]): LoadRow.of(r) for r in await cur.fetchall()}


async def measured_peaks(conn: Conn, ids: list[int], window_h: int) -> dict[int, tuple[float, float]]:
    """Each transformer's highest hourly mean consumption and production (kW) over the last ``window_h``.

    One hour's kWh is that hour's mean kW. The aggregator's hourly grid rollups (migration 0200) give it
    per transformer; where a transformer has none in the window (no aggregator, or older data), the sum of
    its leaf meters' hourly rollups does (parent meters are sums of leaves and would count twice). The
    window ends at the simulation clock's now (the data is in simulated time), or the wall clock's.
    """
    if not ids:
        return {}
    params = {"ids": ids, "window": window_h}
    peaks: dict[int, tuple[float, float]] = {}
    cur = await conn.execute("select to_regclass('grid_rollups_1h') is not null")
    row = await cur.fetchone()
    if row and row[0]:
        cur = await conn.execute(_NODE_PEAKS, params)
        peaks = {int(r[0]): (float(r[1]), float(r[2])) for r in await cur.fetchall()}
    rest = [i for i in ids if i not in peaks]
    if rest:
        cur = await conn.execute(_METER_PEAKS, {**params, "ids": rest})
        peaks |= {int(r[0]): (float(r[1]), float(r[2])) for r in await cur.fetchall()}
    return peaks


_WINDOW_END = (
    "with window_end as (select coalesce((select current_datetime from simulation_clock), now()) as t)"
)
_NODE_PEAKS = f"""
{_WINDOW_END}
select h.node_id, max(h.consumption_kwh), max(h.production_kwh)
from grid_rollups_1h h, window_end w
where h.node_id = any(%(ids)s) and h.bucket > w.t - make_interval(hours => %(window)s) and h.bucket <= w.t
group by h.node_id
"""
_METER_PEAKS = f"""
{_WINDOW_END}, leaf as (
    select m.id, m.transformer_id from meters m
    where m.transformer_id = any(%(ids)s)
      and not exists (select 1 from meters c where c.parent_id = m.id)
), hourly as (
    select l.transformer_id, h.bucket,
           sum(h.consumption_kwh) as consumption_kw, sum(h.production_kwh) as production_kw
    from meter_data_1h h join leaf l on l.id = h.meter_id, window_end w
    where h.bucket > w.t - make_interval(hours => %(window)s) and h.bucket <= w.t
    group by l.transformer_id, h.bucket
)
select transformer_id, max(consumption_kw), max(production_kw) from hourly group by transformer_id
"""


# ------------------------------------------------------------------ connections
_CONNECTION_COLUMNS = """
    c.id, c.type, c.requested_consumption_kw as "requested_consumption_kW",
    c.requested_production_kw as "requested_production_kW", c.latitude, c.longitude, c.status, c.reason,
    c.limiting, c.transformer_id, g.name as transformer_name, c.distance_meters, c.decided_on, c.meter_id,
    c.er_id, c.created_at
"""


async def insert_connection(conn: Conn, **values: Any) -> dict[str, Any]:
    """Store a decided connection; returns its row."""
    columns = list(values)
    query = sql.SQL("insert into connections ({}) values ({}) returning id").format(
        sql.SQL(", ").join(sql.Identifier(c) for c in columns),
        sql.SQL(", ").join(sql.Placeholder(c) for c in columns),
    )
    cur = await conn.execute(query, values)
    row = await cur.fetchone()
    assert row is not None
    return await get_connection(conn, row[0])


async def get_connection(conn: Conn, connection_id: UUID) -> dict[str, Any]:
    """One connection, or 404."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        f"select {_CONNECTION_COLUMNS} from connections c left join grid_nodes g on g.id = c.transformer_id"
        " where c.id = %s",
        (connection_id,),
    )
    row = await cur.fetchone()
    if row is None:
        msg = f"no connection {connection_id}"
        raise NotFoundError(msg, field="id")
    return row


async def list_connections(
    conn: Conn, *, status: str | None, transformer_id: int | None, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    """A page of connections, newest first, and how many match."""
    where = "(%(status)s::text is null or c.status = %(status)s) and (%(tx)s::bigint is null or c.transformer_id = %(tx)s)"
    return await _page(
        conn,
        f"select {_CONNECTION_COLUMNS} from connections c left join grid_nodes g on g.id = c.transformer_id"
        f" where {where} order by c.created_at desc, c.id limit %(limit)s offset %(offset)s",
        f"select count(*) from connections c where {where}",
        {"status": status, "tx": transformer_id, "limit": limit, "offset": offset},
    )


async def _page(
    conn: Conn, select: str, count: str, params: dict[str, Any]
) -> tuple[list[dict[str, Any]], int]:
    """The rows of ``select`` (one page) and the number ``count`` finds, both with ``params``."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(select, params)
    rows = await cur.fetchall()
    counted = await conn.execute(count, params)
    total = await counted.fetchone()
    return rows, int(total[0]) if total else 0


# ------------------------------------------------------------------ transformers (admin view)
_TRANSFORMER_COLUMNS = """
    id, code, name, capacity_kva as "capacity_kVA", city, latitude, longitude,
    connected_consumption_kw as "connected_consumption_kW", connected_production_kw as "connected_production_kW",
    parent_id, created_at
"""


async def get_transformer(conn: Conn, ref: int | str) -> dict[str, Any]:
    """One transformer by node id, code or name (case-insensitive), or 404."""
    cur = conn.cursor(row_factory=dict_row)
    if isinstance(ref, int) or ref.isdigit():
        await cur.execute(
            f"select {_TRANSFORMER_COLUMNS} from grid_nodes where level = 'transformer' and id = %s",
            (int(ref),),
        )
    else:
        await cur.execute(
            f"select {_TRANSFORMER_COLUMNS} from grid_nodes where level = 'transformer'"
            " and (lower(code) = lower(%s) or lower(name) = lower(%s)) order by id limit 1",
            (ref, ref),
        )
    row = await cur.fetchone()
    if row is None:
        msg = f"no transformer {ref!r}"
        raise NotFoundError(msg, field="id")
    return row


async def list_transformers(
    conn: Conn, *, city: str | None, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    """A page of assignable transformers by id, and how many match."""
    where = f"{_ASSIGNABLE} and (%(city)s::text is null or lower(city) = lower(%(city)s))"
    return await _page(
        conn,
        f"select {_TRANSFORMER_COLUMNS} from grid_nodes where {where} order by id limit %(limit)s offset %(offset)s",
        f"select count(*) from grid_nodes where {where}",
        {"city": city, "limit": limit, "offset": offset},
    )


async def nearest_feeder(conn: Conn, latitude: float, longitude: float) -> int:
    """The feeder a new transformer hangs from by default: the nearest located one, else the first."""
    cur = await conn.execute(
        "select id, latitude, longitude from grid_nodes where level = 'feeder' order by id"
    )
    rows = await cur.fetchall()
    if not rows:
        msg = "parent_id: there is no feeder to hang the transformer from; create the grid first"
        raise InvalidError(msg, field="parent_id")
    located = [r for r in rows if r[1] is not None and r[2] is not None]
    if not located:
        return int(rows[0][0])
    distance = haversine_m(
        latitude, longitude, np.array([r[1] for r in located]), np.array([r[2] for r in located])
    )
    return int(located[int(np.argmin(distance))][0])


# ------------------------------------------------------------------ world reset (issue 13)
async def meter_sim_world_generation(conn: Conn) -> int:
    """meter-sim's world generation (its published ``world_state``; 0 before any reset)."""
    cur = await conn.execute("select generation from world_state")
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def forget_world(conn: Conn, generation: int) -> int | None:
    """Delete every connection request (they name the old world's transformers, meters and ERs) for world
    ``generation``, in the caller's transaction; how many, or None when that generation was handled."""
    cur = await conn.execute("select world_generation from feasibility_state for update")
    row = await cur.fetchone()
    if row is not None and int(row[0]) >= generation:
        return None
    cur = await conn.execute("delete from connections")
    await conn.execute("update feasibility_state set world_generation = %s", (generation,))
    return cur.rowcount
