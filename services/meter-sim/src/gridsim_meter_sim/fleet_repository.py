"""SQL of the simulation engine: the fleet it simulates and the clock row. Entity CRUD is in repository.py."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt
from psycopg import sql
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from gridsim_meter_sim import shapes
from gridsim_meter_sim.domain import ApplianceRow, FleetColumns

__all__ = ["ClockRow", "load_clock", "load_fleet", "save_clock"]

# The fleet is read in linear queries joined here, in numpy: the shard's transformers (with their feeder and
# utility), the leaf meters with the transformer they sit under, and every connected DER. One SQL join of
# the meters to the grid chain let the planner estimate the grid side at one row (correlated level/parent
# filters) and loop every transformer over every meter: quadratic in the fleet (128 s at 100k meters).
#
# Meters and DERs come back as rows of columns, each column one bytea of the values' binary forms
# (``int8send`` and the like, concatenated by ``string_agg``) that numpy reads as it is: no Python object
# per meter or per DER (a row per meter through psycopg was 85 s of a million-meter fleet's start). A row
# holds a block of ids (_BLOCK): PostgreSQL's 1 GB limit on a value and a row was reached by the DERs of
# 5M meters (20.5M DERs, 7 columns of 164 MB) in one row.
_BLOCK = 1 << 20

# Transformers under a feeder under a utility, with the location a meter falls back to, ordered by feeder
# id so the shard's feeders (index % shards == shard) are picked in Python.
_TRANSFORMERS = """
select t.id as transformer_id, t.code as transformer_code, t.capacity_kva as transformer_kva,
       f.id as feeder_id, f.code as feeder_code, u.code as utility_code,
       coalesce(t.latitude, f.latitude, u.latitude, 0) as latitude,
       coalesce(t.longitude, f.longitude, u.longitude, 0) as longitude
from grid_nodes t
join grid_nodes f on f.id = t.parent_id and f.level = 'feeder'
join grid_nodes u on u.id = f.parent_id and u.level = 'utility'
where t.level = 'transformer'
"""
_FEEDERS = "select id from grid_nodes where level = 'feeder' order by id"

# Leaf meters linked to an ER, under a transformer (their own, or their parent meter's). Statuses other
# than online and tampered (offline, fault) send nothing. Location falls back from the meter to its ER,
# then (here, NaN until then) to its grid nodes. Kinds are positions in shapes.KINDS (unknown: 0).
_METERS = """
select count(*) as n,
       string_agg(int8send(m.id), '') as meter_id,
       string_agg(int8send(m.er_id), '') as er_id,
       string_agg(int8send(m.under), '') as transformer_id,
       string_agg(int4send(coalesce(array_position({kinds}::text[], er.kind), 1) - 1), '') as kind,
       string_agg(boolsend(er.type = 'prosumer'), '') as prosumer,
       string_agg(boolsend(er.profile = 'flat'), '') as flat,
       string_agg(boolsend(m.status in ('online', 'tampered')), '') as online,
       string_agg(float8send(m.load_factor_consumption), '') as k_consumption,
       string_agg(float8send(m.load_factor_production), '') as k_production,
       string_agg(float8send(coalesce(m.latitude, er.latitude, 'NaN')), '') as latitude,
       string_agg(float8send(coalesce(m.longitude, er.longitude, 'NaN')), '') as longitude,
       string_agg(m.code, ' ') as meter_code
from (
    -- A child meter's transformer is its parent's: looked up for child meters only (a join of every meter
    -- to its parent hashed the whole table a second time).
    select m.*, coalesce(m.transformer_id, (select p.transformer_id from meters p where p.id = m.parent_id))
           as under
    from meters m
) m
join energy_resources er on er.id = m.er_id
where m.under is not null
  and not exists (select 1 from meters child where child.parent_id = m.id)
group by m.id / {block}
"""

# Every switched-on, connected DER (by its ER; the meters read above say which are this fleet's).
_DERS = """
select count(*) as n,
       string_agg(int8send(d.id), '') as der_id,
       string_agg(int8send(d.er_id), '') as er_id,
       string_agg(int8send(d.appliance_id), '') as appliance_id,
       string_agg(int8send(d.quantity), '') as quantity,
       string_agg(float8send(coalesce(d.capacity_kw, 'NaN')), '') as capacity_kw,
       string_agg(float8send(coalesce(d.tilt_deg, 'NaN')), '') as tilt_deg,
       string_agg(float8send(coalesce(d.azimuth_deg, 'NaN')), '') as azimuth_deg
from ders d
where d.switched_on and d.lifecycle = 'connected'
group by d.id / {block}
"""
_APPLIANCES = "select id, name, profile, role, base_kwh_per_min, power_factor from appliances order by id"

_DTYPES: dict[str, str] = {
    "meter_id": ">i8",
    "er_id": ">i8",
    "transformer_id": ">i8",
    "kind": ">i4",
    "prosumer": "?",
    "flat": "?",
    "online": "?",
    "k_consumption": ">f8",
    "k_production": ">f8",
    "latitude": ">f8",
    "longitude": ">f8",
    "der_id": ">i8",
    "appliance_id": ">i8",
    "quantity": ">i8",
    "capacity_kw": ">f8",
    "tilt_deg": ">f8",
    "azimuth_deg": ">f8",
}


def _columns(rows: list[dict[str, Any]], names: list[str]) -> dict[str, npt.NDArray[Any]]:
    """The rows' bytea columns ``names`` as native numpy arrays, the blocks one after the other (no row:
    nothing matched)."""
    n = sum(int(row["n"]) for row in rows)
    out: dict[str, npt.NDArray[Any]] = {}
    for name in names:
        if name not in _DTYPES:
            continue
        dtype = np.dtype(_DTYPES[name])
        values = np.frombuffer(b"".join(row[name] or b"" for row in rows), dtype=dtype)
        if len(values) != n:  # a NULL in a column would shift every value after it
            msg = f"fleet read: column {name} has {len(values)} values for {n} rows"
            raise RuntimeError(msg)
        out[name] = values.astype(dtype.newbyteorder("="))
    return out


async def load_fleet(pool: AsyncConnectionPool, shard: int, shards: int) -> FleetColumns:
    """The meters this shard simulates and their DERs, read in one transaction (one consistent world):
    leaf meters on the shard's feeders (feeders ordered by id, index % shards == shard), ordered by
    transformer then meter id, and their DERs ordered by meter then DER id."""
    async with (
        pool.connection() as conn,
        conn.transaction(),
        conn.cursor(row_factory=dict_row, binary=True) as cur,
    ):
        await conn.execute("set transaction isolation level repeatable read")
        # The meter query hashes every meter and ER once: let it do so in memory, for this transaction.
        await conn.execute("set local work_mem = '256MB'")
        await cur.execute(_FEEDERS)
        feeders = {row["id"] for row in (await cur.fetchall())[shard::shards]}
        await cur.execute(_TRANSFORMERS)
        nodes = [row for row in await cur.fetchall() if row["feeder_id"] in feeders]
        kinds = sql.Literal(list(shapes.KINDS))
        block = sql.Literal(_BLOCK)
        await cur.execute(sql.SQL(_METERS).format(kinds=kinds, block=block))
        meter_rows = await cur.fetchall()
        meter_names = [c.name for c in cur.description or []]
        await cur.execute(sql.SQL(_DERS).format(block=block))
        der_rows = await cur.fetchall()
        der_names = [c.name for c in cur.description or []]
        await cur.execute(_APPLIANCES)
        appliance_rows = await cur.fetchall()
    meters = _columns(meter_rows, meter_names)
    codes = " ".join(row["meter_code"] for row in meter_rows).split(" ") if meter_rows else []

    # The shard's meters (under a complete utility → feeder → transformer chain), by transformer then id.
    node_ids = np.array([row["transformer_id"] for row in nodes], dtype=np.int64)
    mine = np.flatnonzero(np.isin(meters["transformer_id"], node_ids))
    mine = mine[np.lexsort((meters["meter_id"][mine], meters["transformer_id"][mine]))]
    m = {name: values[mine] for name, values in meters.items()}
    by_node = np.argsort(node_ids, kind="stable")
    node_of = by_node[np.searchsorted(node_ids, m["transformer_id"], sorter=by_node)]
    for axis in ("latitude", "longitude"):  # the meter's, else its ER's, else its grid nodes'
        fallback = np.array([row[axis] for row in nodes], dtype=np.float64)[node_of]
        m[axis] = np.where(np.isnan(m[axis]), fallback, m[axis])

    # Their DERs, ordered by meter then DER id (what a loop over the fleet's DERs would meet).
    ders = _columns(der_rows, der_names)
    by_er = np.argsort(m["er_id"], kind="stable")
    at = np.minimum(np.searchsorted(m["er_id"], ders["er_id"], sorter=by_er), max(len(mine) - 1, 0))
    linked = m["er_id"][by_er[at]] == ders["er_id"] if len(mine) else np.zeros(len(ders["er_id"]), bool)
    d = {name: values[linked] for name, values in ders.items()}
    der_meter = m["meter_id"][by_er[at[linked]]]
    der_order = np.lexsort((d["der_id"], der_meter))
    catalogue = np.array([row["id"] for row in appliance_rows], dtype=np.int64)  # ascending
    appliance_of = np.searchsorted(catalogue, d["appliance_id"])  # a DER's appliance exists (foreign key)
    return FleetColumns(
        meter_id=m["meter_id"],
        meter_code=[codes[int(i)] for i in mine],
        transformer_id=m["transformer_id"],
        kind=m["kind"].astype(np.intp),
        prosumer=m["prosumer"],
        flat=m["flat"],
        online=m["online"],
        k_consumption=m["k_consumption"],
        k_production=m["k_production"],
        latitude=m["latitude"],
        longitude=m["longitude"],
        transformer_ids=node_ids,
        transformer_codes=[
            (row["utility_code"], row["feeder_code"], row["transformer_code"]) for row in nodes
        ],
        transformer_kva=np.array(
            [np.nan if row["transformer_kva"] is None else row["transformer_kva"] for row in nodes],
            np.float64,
        ),
        der_meter_id=der_meter[der_order],
        der_appliance=appliance_of[der_order].astype(np.intp),
        der_quantity=d["quantity"][der_order],
        der_capacity_kw=d["capacity_kw"][der_order],
        der_tilt_deg=d["tilt_deg"][der_order],
        der_azimuth_deg=d["azimuth_deg"][der_order],
        appliances=[
            ApplianceRow(
                row["name"], row["profile"], row["role"], row["base_kwh_per_min"], row["power_factor"]
            )
            for row in appliance_rows
        ],
    )


@dataclass(frozen=True, slots=True)
class ClockRow:
    """The persisted clock."""

    current_datetime: datetime
    tick: int
    speed: float
    interval_s: int
    state: str
    # The last interval whose readings were all published: a restart resumes it with the clock.
    last_published: datetime | None = None


async def load_clock(pool: AsyncConnectionPool) -> ClockRow | None:
    """The clock row, or None on a fresh database."""
    async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "select current_datetime, tick, speed, interval_s, state, last_published from simulation_clock"
        )
        row = await cur.fetchone()
    return ClockRow(**row) if row else None


async def save_clock(pool: AsyncConnectionPool, clock: ClockRow) -> None:
    """Write the clock row (insert on first use)."""
    async with pool.connection() as conn:
        await conn.execute(
            """
            insert into simulation_clock
                (id, current_datetime, tick, speed, interval_s, state, last_published, updated_at)
            values (
                true, %(current_datetime)s, %(tick)s, %(speed)s, %(interval_s)s, %(state)s, %(last_published)s,
                now()
            )
            on conflict (id) do update set
                current_datetime = excluded.current_datetime, tick = excluded.tick, speed = excluded.speed,
                interval_s = excluded.interval_s, state = excluded.state,
                last_published = excluded.last_published, updated_at = now()
            """,
            {
                "current_datetime": clock.current_datetime,
                "tick": clock.tick,
                "speed": clock.speed,
                "interval_s": clock.interval_s,
                "state": clock.state,
                "last_published": clock.last_published,
            },
        )
