"""SQL of the simulation engine: the fleet it simulates and the clock row. Entity CRUD is in repository.py."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from gridsim_meter_sim.domain import DerRow, MeterRow

__all__ = ["ClockRow", "load_clock", "load_fleet_rows", "save_clock"]

# The fleet is read in two linear queries joined here, in Python: the shard's transformers (with their
# feeder and utility) and the leaf meters with the transformer they sit under. One SQL join of the meters to
# the grid chain let the planner estimate the grid side at one row (correlated level/parent filters) and
# loop every transformer over every meter: quadratic in the fleet (128 s at 100k meters).

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
# than online and tampered (offline, fault) send nothing. Location falls back from the meter to its ER, then
# (in Python) to its grid nodes.
_METERS = """
select m.id as meter_id, m.code as meter_code,
       er.type as er_type, er.kind as er_kind, er.profile as er_profile,
       m.load_factor_consumption, m.load_factor_production,
       m.status in ('online', 'tampered') as online,
       coalesce(m.latitude, er.latitude) as latitude,
       coalesce(m.longitude, er.longitude) as longitude,
       coalesce(m.transformer_id, parent.transformer_id) as transformer_id
from meters m
join energy_resources er on er.id = m.er_id
left join meters parent on parent.id = m.parent_id
where coalesce(m.transformer_id, parent.transformer_id) is not null
  and not exists (select 1 from meters child where child.parent_id = m.id)
order by coalesce(m.transformer_id, parent.transformer_id), m.id
"""

_DERS = """
select m.id as er_meter_id, a.profile, a.role, a.base_kwh_per_min, a.power_factor, d.quantity, d.capacity_kw,
       a.name as appliance,
       d.tilt_deg, d.azimuth_deg
from ders d
join appliances a on a.id = d.appliance_id
join meters m on m.er_id = d.er_id
where d.switched_on and d.lifecycle = 'connected' and m.id = any(%(meter_ids)s)
order by m.id, d.id
"""


async def load_fleet_rows(
    pool: AsyncConnectionPool, shard: int, shards: int
) -> tuple[list[MeterRow], list[DerRow]]:
    """The meters this shard simulates and their DERs, read in one transaction (one consistent world):
    leaf meters on the shard's feeders (feeders ordered by id, index % shards == shard), ordered by
    transformer then meter id."""
    async with (
        pool.connection() as conn,
        conn.transaction(),
        conn.cursor(row_factory=dict_row) as cur,
    ):
        await conn.execute("set transaction isolation level repeatable read")
        await cur.execute(_FEEDERS)
        feeders = {row["id"] for row in (await cur.fetchall())[shard::shards]}
        await cur.execute(_TRANSFORMERS)
        transformers = {
            row["transformer_id"]: row for row in await cur.fetchall() if row["feeder_id"] in feeders
        }
        await cur.execute(_METERS)
        meters = []
        for row in await cur.fetchall():
            node = transformers.get(row["transformer_id"])
            if node is None:
                continue  # another shard's, or not under a complete utility → feeder → transformer chain
            meters.append(
                MeterRow(
                    **{
                        **row,
                        "latitude": node["latitude"] if row["latitude"] is None else row["latitude"],
                        "longitude": node["longitude"] if row["longitude"] is None else row["longitude"],
                        "transformer_code": node["transformer_code"],
                        "transformer_kva": node["transformer_kva"],
                        "feeder_code": node["feeder_code"],
                        "utility_code": node["utility_code"],
                    }
                )
            )
        await cur.execute(_DERS, {"meter_ids": [m.meter_id for m in meters]})
        ders = [DerRow(**row) for row in await cur.fetchall()]
    return meters, ders


@dataclass(frozen=True, slots=True)
class ClockRow:
    """The persisted clock."""

    current_datetime: datetime
    tick: int
    speed: float
    interval_s: int
    state: str


async def load_clock(pool: AsyncConnectionPool) -> ClockRow | None:
    """The clock row, or None on a fresh database."""
    async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute("select current_datetime, tick, speed, interval_s, state from simulation_clock")
        row = await cur.fetchone()
    return ClockRow(**row) if row else None


async def save_clock(pool: AsyncConnectionPool, clock: ClockRow) -> None:
    """Write the clock row (insert on first use)."""
    async with pool.connection() as conn:
        await conn.execute(
            """
            insert into simulation_clock (id, current_datetime, tick, speed, interval_s, state, updated_at)
            values (true, %(current_datetime)s, %(tick)s, %(speed)s, %(interval_s)s, %(state)s, now())
            on conflict (id) do update set
                current_datetime = excluded.current_datetime, tick = excluded.tick, speed = excluded.speed,
                interval_s = excluded.interval_s, state = excluded.state, updated_at = now()
            """,
            {
                "current_datetime": clock.current_datetime,
                "tick": clock.tick,
                "speed": clock.speed,
                "interval_s": clock.interval_s,
                "state": clock.state,
            },
        )
