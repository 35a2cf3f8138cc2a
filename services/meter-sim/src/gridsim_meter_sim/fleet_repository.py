"""SQL of the simulation engine: the fleet it simulates and the clock row. Entity CRUD is in repository.py."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from gridsim_meter_sim.domain import DerRow, MeterRow

__all__ = ["ClockRow", "load_clock", "load_fleet_rows", "save_clock"]

# Leaf meters linked to an ER, placed under a transformer (their own, or their parent meter's), on the
# feeders of this shard: feeders ordered by id, index % shards == shard. Statuses other than online and
# tampered (offline, fault) send nothing. Location falls back from the meter to its ER and grid nodes.
_METERS = """
with feeders as (
    select id, (row_number() over (order by id) - 1) as position
    from grid_nodes where level = 'feeder'
)
select m.id as meter_id, m.code as meter_code,
       er.type as er_type, er.kind as er_kind, er.profile as er_profile,
       m.load_factor_consumption, m.load_factor_production,
       m.status in ('online', 'tampered') as online,
       coalesce(m.latitude, er.latitude, t.latitude, f.latitude, u.latitude, 0) as latitude,
       coalesce(m.longitude, er.longitude, t.longitude, f.longitude, u.longitude, 0) as longitude,
       t.id as transformer_id, t.code as transformer_code, t.capacity_kva as transformer_kva,
       f.code as feeder_code, u.code as utility_code
from meters m
join energy_resources er on er.id = m.er_id
left join meters parent on parent.id = m.parent_id
join grid_nodes t on t.id = coalesce(m.transformer_id, parent.transformer_id) and t.level = 'transformer'
join grid_nodes f on f.id = t.parent_id and f.level = 'feeder'
join grid_nodes u on u.id = f.parent_id and u.level = 'utility'
join feeders on feeders.id = f.id
where feeders.position %% %(shards)s = %(shard)s
  and not exists (select 1 from meters child where child.parent_id = m.id)
order by t.id, m.id
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
    """The meters this shard simulates and their DERs, read in one transaction (one consistent world)."""
    async with pool.connection() as conn, conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_METERS, {"shard": shard, "shards": shards})
        meters = [MeterRow(**row) for row in await cur.fetchall()]
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
