"""SQL of the utility service: psycopg calls that return plain records.

It writes only its own tables (migration 0900). It reads the grid and meters (meter-sim's), the hourly
rollups and the aggregator's progress (``grid_rollups_1h``, ``meter_data_1h``, ``aggregator_state``),
and the simulation clock.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row

from gridsim_shared import climate as climate_model
from gridsim_shared.db import lock_in_schema

__all__ = [
    "FLEXIBLE_PROFILES",
    "Conn",
    "Node",
    "clock_row",
    "events_between",
    "flexible_load",
    "insert_forecasts",
    "log",
    "meter_hourly",
    "node_hourly",
    "nodes",
    "rolled_until",
    "world_climate",
]

Conn = AsyncConnection[Any]

# Appliance profiles a utility can curtail or shift: EV charging, water heating, space cooling/heating,
# pumping (domain-facts: the loads DR programmes enrol).
FLEXIBLE_PROFILES = ("ev", "geyser", "ac", "heating", "pump")


@dataclass(frozen=True)
class Node:
    """A grid node the utility forecasts."""

    id: int
    code: str
    level: str
    parent_id: int | None


async def clock_row(conn: Conn) -> datetime | None:
    """The clock's current simulated time."""
    cur = await conn.execute("select current_datetime from simulation_clock")
    row = await cur.fetchone()
    return row[0] if row else None


async def world_climate(conn: Conn) -> climate_model.Climate:
    """The built-in climate (with its IANA time zone) of the place most of the world's meters are, as
    meter-sim picks each meter's: the nearest to its position. San Francisco's when no meter has one."""
    cur = await conn.execute(
        "select round(latitude::numeric, 1)::float8, round(longitude::numeric, 1)::float8 from meters"
        " where latitude is not null and longitude is not null group by 1, 2 order by count(*) desc, 1, 2"
        " limit 1"
    )
    row = await cur.fetchone()
    if row is None:
        return climate_model.climate_for(37.77, -122.42)
    return climate_model.climate_for(float(row[0]), float(row[1]))


async def rolled_until(conn: Conn) -> datetime | None:
    """Up to when the aggregator's time rollups are complete."""
    cur = await conn.execute("select rolled_until from aggregator_state")
    row = await cur.fetchone()
    return row[0] if row else None


async def nodes(conn: Conn) -> list[Node]:
    """Every grid node, utilities first."""
    cur = await conn.execute(
        "select id, code, level, parent_id from grid_nodes"
        " order by case level when 'utility' then 0 when 'feeder' then 1 else 2 end, id"
    )
    return [Node(*row) for row in await cur.fetchall()]


async def node_hourly(
    conn: Conn, node_ids: Sequence[int], start: datetime, end: datetime
) -> list[tuple[int, datetime, float, float]]:
    """(node, hour, consumption kWh, production kWh) of complete hours in [start, end)."""
    cur = await conn.execute(
        "select node_id, bucket, consumption_kwh, production_kwh from grid_rollups_1h"
        " where node_id = any(%s) and bucket >= %s and bucket < %s order by node_id, bucket",
        (list(node_ids), start, end),
    )
    return [(r[0], r[1], float(r[2]), float(r[3])) for r in await cur.fetchall()]


async def meter_hourly(
    conn: Conn, meter_ids: Sequence[int], start: datetime, end: datetime
) -> list[tuple[int, datetime, float]]:
    """(meter, hour, consumption kWh) in [start, end)."""
    cur = await conn.execute(
        "select meter_id, bucket, consumption_kwh from meter_data_1h"
        " where meter_id = any(%s) and bucket >= %s and bucket < %s order by meter_id, bucket",
        (list(meter_ids), start, end),
    )
    return [(r[0], r[1], float(r[2])) for r in await cur.fetchall()]


async def flexible_load(conn: Conn, meter_id: int) -> tuple[float, float]:
    """(flexible kW, rated kW) of the switched-on, connected consumption appliances of the meter's ER."""
    cur = await conn.execute(
        "select coalesce(sum(a.power_w * d.quantity) filter (where a.profile = any(%s)), 0) / 1000.0,"
        " coalesce(sum(a.power_w * d.quantity), 0) / 1000.0"
        " from meters m join ders d on d.er_id = m.er_id join appliances a on a.id = d.appliance_id"
        " where m.id = %s and a.role = 'consumption' and d.lifecycle = 'connected' and d.switched_on",
        (list(FLEXIBLE_PROFILES), meter_id),
    )
    row = await cur.fetchone()
    return (float(row[0]), float(row[1])) if row else (0.0, 0.0)


async def resolve_meter(conn: Conn, ref: int | str) -> tuple[int, str] | None:
    """(id, code) of the meter named by a numeric id or a code (case-insensitive)."""
    if isinstance(ref, int) or ref.isdigit():
        cur = await conn.execute("select id, code from meters where id = %s", (int(ref),))
        row = await cur.fetchone()
        if row is not None:
            return row[0], row[1]
    if isinstance(ref, str):
        cur = await conn.execute("select id, code from meters where lower(code) = lower(%s)", (ref,))
        row = await cur.fetchone()
        if row is not None:
            return row[0], row[1]
    return None


async def feeder_of(conn: Conn, meter_id: int) -> Node | None:
    """The feeder above the meter's transformer (None for a meter not under a transformer)."""
    cur = await conn.execute(
        "select f.id, f.code, f.level, f.parent_id from meters m join grid_nodes t on t.id = m.transformer_id"
        " join grid_nodes f on f.id = t.parent_id where m.id = %s and f.level = 'feeder'",
        (meter_id,),
    )
    row = await cur.fetchone()
    return None if row is None else Node(*row)


async def meters_under(conn: Conn, transformer_code: str) -> set[int]:
    """Meters under a transformer (by its code)."""
    cur = await conn.execute(
        "select m.id from meters m join grid_nodes t on t.id = m.transformer_id where t.code = %s",
        (transformer_code,),
    )
    return {r[0] for r in await cur.fetchall()}


async def meter_codes(conn: Conn, meter_ids: Sequence[int]) -> dict[int, str]:
    """Codes of the meters."""
    cur = await conn.execute("select id, code from meters where id = any(%s)", (list(meter_ids),))
    return {r[0]: r[1] for r in await cur.fetchall()}


# ------------------------------------------------------------------------------------ forecasts
async def insert_forecasts(
    conn: Conn, rows: Sequence[tuple[int, str, str, datetime, datetime, float, float]]
) -> None:
    """Store forecasts (node, horizon, model, target, issued, load, net); a re-issue replaces the row."""
    if not rows:
        return
    async with conn.cursor() as cur:
        await cur.executemany(
            "insert into utility_forecasts (node_id, horizon, model, target, issued_at, load_kwh, net_load_kwh)"
            " values (%s, %s, %s, %s, %s, %s, %s) on conflict (node_id, horizon, model, target) do update"
            " set issued_at = excluded.issued_at, load_kwh = excluded.load_kwh,"
            " net_load_kwh = excluded.net_load_kwh",
            rows,
        )


async def forecast_targets(conn: Conn, start: datetime, end: datetime) -> set[tuple[int, str, str, datetime]]:
    """(node, horizon, model, target) already forecast for targets in [start, end)."""
    cur = await conn.execute(
        "select node_id, horizon, model, target from utility_forecasts where target >= %s and target < %s",
        (start, end),
    )
    return {(r[0], r[1], r[2], r[3]) for r in await cur.fetchall()}


async def latest_target(conn: Conn, node_id: int, horizon: str) -> datetime | None:
    """The latest hour forecast for a node at a horizon."""
    cur = await conn.execute(
        "select max(target) from utility_forecasts where node_id = %s and horizon = %s", (node_id, horizon)
    )
    row = await cur.fetchone()
    return row[0] if row else None


async def forecasts(
    conn: Conn, node_ids: Sequence[int], horizon: str | None, start: datetime, end: datetime
) -> list[dict[str, Any]]:
    """Stored forecasts of the nodes for targets in [start, end), oldest first."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "select node_id, horizon, model, target, issued_at, load_kwh, net_load_kwh from utility_forecasts"
            " where node_id = any(%s) and (%s::text is null or horizon = %s) and target >= %s and target < %s"
            " order by target",
            (list(node_ids), horizon, horizon, start, end),
        )
        return list(await cur.fetchall())


# ------------------------------------------------------------------------------------ programmes
async def log(conn: Conn, sim_time: datetime, action: str, data: dict[str, Any]) -> None:
    """One line of the DR log."""
    await conn.execute(
        "insert into dr_log (sim_time, action, data) values (%s, %s, %s)",
        (sim_time, action, json.dumps(data, default=str)),
    )


async def dr_log(conn: Conn, limit: int) -> list[dict[str, Any]]:
    """The latest DR log entries, newest first."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute("select id, sim_time, action, data from dr_log order by id desc limit %s", (limit,))
        return list(await cur.fetchall())


_PROGRAM_COLUMNS = (
    "p.id, p.name, p.kind, p.rebate_per_kwh, p.event_credit, p.cpp_rate, p.compliance, p.shed_share,"
    " p.rebound_share, p.auto_peak_share, p.auto_overload, p.created_at,"
    " (select count(*) from dr_enrolments e where e.program_id = p.id) as participants"
)


async def insert_program(conn: Conn, values: dict[str, Any]) -> dict[str, Any] | None:
    """A new programme; None when its name is taken."""
    cur = await conn.execute(
        "insert into dr_programs (name, kind, rebate_per_kwh, event_credit, cpp_rate, compliance, shed_share,"
        " rebound_share, auto_peak_share, auto_overload) values (%(name)s, %(kind)s, %(rebate_per_kwh)s,"
        " %(event_credit)s, %(cpp_rate)s, %(compliance)s, %(shed_share)s, %(rebound_share)s,"
        " %(auto_peak_share)s, %(auto_overload)s)"
        " on conflict (name) do nothing returning id",
        values,
    )
    row = await cur.fetchone()
    return None if row is None else await program(conn, row[0])


async def program(conn: Conn, program_id: int) -> dict[str, Any] | None:
    """One programme."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(f"select {_PROGRAM_COLUMNS} from dr_programs p where p.id = %s", (program_id,))
        return await cur.fetchone()


async def programs(conn: Conn) -> list[dict[str, Any]]:
    """Every programme, oldest first."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(f"select {_PROGRAM_COLUMNS} from dr_programs p order by p.id")
        return list(await cur.fetchall())


async def enrol(
    conn: Conn, program_id: int, meter_id: int, *, flexible_kw: float, rated_kw: float, now: datetime
) -> bool:
    """Enrol a meter; False when it already is."""
    cur = await conn.execute(
        "insert into dr_enrolments (program_id, meter_id, flexible_kw, rated_kw, enrolled_at)"
        " values (%s, %s, %s, %s, %s) on conflict do nothing",
        (program_id, meter_id, flexible_kw, rated_kw, now),
    )
    return cur.rowcount == 1


async def enrolments(conn: Conn, program_id: int) -> list[dict[str, Any]]:
    """A programme's participants with their meter codes."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "select e.program_id, e.meter_id, m.code as meter_code, e.flexible_kw, e.rated_kw, e.enrolled_at"
            " from dr_enrolments e join meters m on m.id = e.meter_id where e.program_id = %s"
            " order by e.meter_id",
            (program_id,),
        )
        return list(await cur.fetchall())


# ------------------------------------------------------------------------------------ events
async def lock_events(conn: Conn) -> None:
    """Serialise event creation and changes (overlap checks must see each other's rows)."""
    await lock_in_schema(conn, "utility.events")


async def overlapping(
    conn: Conn, meter_ids: Sequence[int], start: datetime, end: datetime, exclude_event: int | None
) -> list[tuple[int, int]]:
    """(meter, event) pairs where a meter already takes part in a scheduled event overlapping the window."""
    cur = await conn.execute(
        "select p.meter_id, e.id from dr_participation p join dr_events e on e.id = p.event_id"
        ' where e.status = %s and p.meter_id = any(%s) and e.start < %s and e."end" > %s'
        " and e.id is distinct from %s order by p.meter_id limit 5",
        ("scheduled", list(meter_ids), end, start, exclude_event),
    )
    return [(r[0], r[1]) for r in await cur.fetchall()]


async def insert_event(conn: Conn, values: dict[str, Any]) -> int:
    """A new scheduled event's id."""
    cur = await conn.execute(
        'insert into dr_events (program_id, start, "end", level, trigger, reason, status, created_sim)'
        " values (%(program_id)s, %(start)s, %(end)s, %(level)s, %(trigger)s, %(reason)s, 'scheduled',"
        " %(created_sim)s) returning id",
        values,
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def insert_participation(
    conn: Conn, event_id: int, rows: Sequence[tuple[int, bool, float, int | None]]
) -> None:
    """Each participant's draw and the flexible-load window carrying its response."""
    async with conn.cursor() as cur:
        await cur.executemany(
            "insert into dr_participation (event_id, meter_id, complied, shed_factor, flex_id)"
            " values (%s, %s, %s, %s, %s)",
            [(event_id, *r) for r in rows],
        )


async def update_participation(
    conn: Conn, event_id: int, meter_id: int, *, flex_id: int | None, factor: float
) -> None:
    """Replace a participant's flexible-load window (an event changed)."""
    await conn.execute(
        "update dr_participation set flex_id = %s, shed_factor = %s where event_id = %s and meter_id = %s",
        (flex_id, factor, event_id, meter_id),
    )


async def event(conn: Conn, event_id: int, *, lock: bool = False) -> dict[str, Any] | None:
    """One event with its programme's kind."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            'select e.id, e.program_id, p.kind as program_kind, e.start, e."end", e.level, e.trigger, e.reason,'
            " e.status, e.created_sim, e.rebound_kwh from dr_events e join dr_programs p on p.id = e.program_id"
            " where e.id = %s" + (" for update of e" if lock else ""),
            (event_id,),
        )
        return await cur.fetchone()


async def events(conn: Conn, limit: int) -> list[dict[str, Any]]:
    """Events, newest first."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            'select e.id, e.program_id, p.kind as program_kind, e.start, e."end", e.level, e.trigger, e.reason,'
            " e.status, e.created_sim, e.rebound_kwh from dr_events e join dr_programs p on p.id = e.program_id"
            " order by e.start desc, e.id desc limit %s",
            (limit,),
        )
        return list(await cur.fetchall())


async def events_between(conn: Conn, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """Scheduled events overlapping [start, end), with programme kind and CPP rate."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            'select e.id, e.program_id, p.kind as program_kind, p.cpp_rate, e.start, e."end", e.level'
            " from dr_events e join dr_programs p on p.id = e.program_id"
            ' where e.status = %s and e.start < %s and e."end" > %s order by e.start',
            ("scheduled", end, start),
        )
        return list(await cur.fetchall())


async def set_event(conn: Conn, event_id: int, **changes: Any) -> None:
    """Change an event's level, end or status."""
    columns = {
        "level": "level",
        "end": '"end"',
        "status": "status",
        "cancelled_sim": "cancelled_sim",
        "evaluated_sim": "evaluated_sim",
        "rebound_kwh": "rebound_kwh",
    }
    assignments = ", ".join(f"{columns[k]} = %({k})s" for k in changes)
    await conn.execute(
        f"update dr_events set {assignments} where id = %(id)s",
        {**changes, "id": event_id},
    )


async def participation(conn: Conn, event_ids: Sequence[int]) -> list[dict[str, Any]]:
    """Participants of the events."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "select event_id, meter_id, complied, shed_factor, flex_id, baseline_kwh,"
            " metered_kwh, credit from dr_participation where event_id = any(%s) order by event_id, meter_id",
            (list(event_ids),),
        )
        return list(await cur.fetchall())


async def unevaluated(conn: Conn, metered_until: datetime) -> list[int]:
    """Scheduled events whose window and as long again after it are metered, not yet evaluated."""
    cur = await conn.execute(
        'select id from dr_events where status = %s and evaluated_sim is null and "end" + ("end" - start) <= %s'
        " order by id",
        ("scheduled", metered_until),
    )
    return [r[0] for r in await cur.fetchall()]


async def set_performance(
    conn: Conn, event_id: int, rows: Sequence[tuple[int, float | None, float | None, float | None]]
) -> None:
    """Store (meter, baseline, metered, credit) of an event's participants once it is metered."""
    async with conn.cursor() as cur:
        await cur.executemany(
            "update dr_participation set baseline_kwh = %s, metered_kwh = %s, credit = %s"
            " where event_id = %s and meter_id = %s",
            [(b, m, c, event_id, meter) for meter, b, m, c in rows],
        )


async def event_days(conn: Conn, meter_id: int, start: datetime, end: datetime) -> list[datetime]:
    """Starts of the scheduled events the meter took part in within [start, end)."""
    cur = await conn.execute(
        "select e.start from dr_events e join dr_participation p on p.event_id = e.id"
        " where p.meter_id = %s and e.status = 'scheduled' and e.start >= %s and e.start < %s",
        (meter_id, start, end),
    )
    return [r[0] for r in await cur.fetchall()]


async def credits(conn: Conn, meter_id: int, start: datetime, end: datetime) -> tuple[float, int]:
    """Σ credits and number of events of the meter with events starting in [start, end)."""
    cur = await conn.execute(
        "select coalesce(sum(p.credit), 0), count(*) filter (where p.credit is not null)"
        " from dr_participation p join dr_events e on e.id = p.event_id"
        " where p.meter_id = %s and e.status = 'scheduled' and e.start >= %s and e.start < %s",
        (meter_id, start, end),
    )
    row = await cur.fetchone()
    return (float(row[0]), int(row[1])) if row else (0.0, 0)


# ------------------------------------------------------------------------------------ OpenADR, bills
async def register_ven(conn: Conn, ven_id: str, ven_name: str, registration_id: str) -> tuple[str, str]:
    """Register a VEN by name (idempotent: a known name keeps its ids)."""
    cur = await conn.execute(
        "insert into openadr_vens (ven_id, ven_name, registration_id) values (%s, %s, %s)"
        " on conflict (ven_name) do update set ven_name = excluded.ven_name returning ven_id, registration_id",
        (ven_id, ven_name, registration_id),
    )
    row = await cur.fetchone()
    assert row is not None
    return row[0], row[1]


async def ven(conn: Conn, ven_id: str) -> dict[str, Any] | None:
    """One registered VEN (ven_id, ven_name, registration_id)."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "select ven_id, ven_name, registration_id from openadr_vens where ven_id = %s", (ven_id,)
        )
        return await cur.fetchone()


async def vens(conn: Conn) -> list[tuple[str, str]]:
    """(ven_id, ven_name) of every registered VEN."""
    cur = await conn.execute("select ven_id, ven_name from openadr_vens order by registered_at")
    return [(r[0], r[1]) for r in await cur.fetchall()]


async def stored_bill(conn: Conn, meter_id: int, month: str) -> dict[str, Any] | None:
    """A final dynamic bill, when stored."""
    cur = await conn.execute(
        "select body from dynamic_bills where meter_id = %s and month = %s", (meter_id, month)
    )
    row = await cur.fetchone()
    return None if row is None else dict(row[0])


async def store_bill(conn: Conn, meter_id: int, month: str, body: dict[str, Any]) -> dict[str, Any]:
    """Store a final dynamic bill once; a concurrent first writer wins and its bill is returned."""
    await conn.execute(
        "insert into dynamic_bills (meter_id, month, body) values (%s, %s, %s) on conflict do nothing",
        (meter_id, month, json.dumps(body, default=str)),
    )
    stored = await stored_bill(conn, meter_id, month)
    assert stored is not None
    return stored


# ------------------------------------------------------------------------------------ closing months
async def last_closed_month(conn: Conn) -> str | None:
    """The latest month whose dynamic bills are all stored."""
    cur = await conn.execute("select max(month) from utility_bill_months")
    row = await cur.fetchone()
    return None if row is None else row[0]


async def billable_meters(conn: Conn) -> list[tuple[int, str]]:
    """(id, code) of every meter linked to an energy resource, by id."""
    cur = await conn.execute("select id, code from meters where er_id is not null order by id")
    return [(r[0], r[1]) for r in await cur.fetchall()]


async def stored_bill_meters(conn: Conn, month: str) -> set[int]:
    """Meters with a stored dynamic bill for ``month``."""
    cur = await conn.execute("select meter_id from dynamic_bills where month = %s", (month,))
    return {r[0] for r in await cur.fetchall()}


async def complete_month(conn: Conn, month: str, sim_now: datetime) -> int:
    """Record ``month`` as closed; returns how many dynamic bills it has."""
    cur = await conn.execute(
        "insert into utility_bill_months (month, closed_at, bills)"
        " values (%(m)s, %(t)s, (select count(*) from dynamic_bills where month = %(m)s))"
        " on conflict (month) do nothing returning bills",
        {"m": month, "t": sim_now},
    )
    row = await cur.fetchone()
    return int(row[0]) if row else 0
