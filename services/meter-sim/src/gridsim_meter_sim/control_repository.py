"""SQL of the operator's controls: meters by scope and their load factors, the control log, spikes and
generators, meter events. DER lifecycle SQL is in der_repository.py.

Every function takes a connection inside the caller's transaction (all or nothing), except
:func:`load_spikes`, which the engine calls with its pool.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from gridsim_meter_sim import grid_repository, meter_repository
from gridsim_meter_sim.controls import SpikeRow
from gridsim_meter_sim.repository import Conn, fetch_all, fetch_one
from gridsim_shared.errors import ConflictError, InvalidError, NotFoundError
from gridsim_shared.events import GridEvent
from gridsim_shared.schemas.controls import (
    ControlLogEntry,
    ControlLogRequest,
    EventListRequest,
    EventOut,
    Spike,
    SpikeCreate,
)

__all__ = [
    "SOLAR_APPLIANCE_ID",
    "insert_event",
    "list_control_log",
    "list_events",
    "load_spikes",
    "log",
    "meter_places",
    "reporting",
    "select_meters",
    "set_load_factors",
]

SOLAR_APPLIANCE_ID = 12  # 'Solar Panel (production)' in the catalogue (0001_core.sql)


def reporting(status: str, er_type: str | None, k_consumption: float, k_production: float) -> bool:
    """Whether meter-sim sends readings for a meter (the rule of the fleet query and ``simulate``)."""
    if er_type is None or status not in ("online", "tampered"):
        return False
    return not (k_consumption == 0 and (k_production == 0 or er_type != "prosumer"))


async def log(  # noqa: PLR0917 (the control_log row's columns, in order)
    conn: Conn,
    sim_time: datetime,
    action: str,
    target: dict[str, Any],
    params: dict[str, Any],
    meter_ids: list[int],
) -> int:
    """Record a control change at the simulated time it takes effect; return its log id."""
    row = await fetch_one(
        conn,
        "insert into control_log (sim_time, action, target, params, meter_ids)"
        " values (%s, %s, %s, %s, %s) returning id",
        (sim_time, action, Jsonb(target), Jsonb(params), meter_ids),
    )
    assert row is not None
    return int(row["id"])


# ------------------------------------------------------------------------------ meters by scope

_SELECT_METERS = """
with recursive descendants as (
    select id from meters where parent_id = %(parent)s
    union
    select m.id from meters m join descendants d on m.parent_id = d.id
)
select m.id, m.code, m.status, m.load_factor_consumption, m.load_factor_production, er.type as er_type
from meters m
left join meters p on p.id = m.parent_id
left join grid_nodes t on t.id = coalesce(m.transformer_id, p.transformer_id)
left join energy_resources er on er.id = m.er_id
where (%(meter)s::bigint is null or m.id = %(meter)s)
  and (%(parent)s::bigint is null or m.id in (select id from descendants))
  and (%(appliance)s::integer is null
       or exists (select 1 from ders d where d.er_id = m.er_id and d.appliance_id = %(appliance)s))
  and (%(pincode)s::text is null or lower(coalesce(m.pincode, t.pincode)) = lower(%(pincode)s))
order by m.id
for update of m
"""


async def select_meters(
    conn: Conn, *, meter: int | None, parent: int | None, appliance: int | None, pincode: str | None
) -> list[dict[str, Any]]:
    """Meters matching every given filter (an AND), locked for the update that follows."""
    params = {"meter": meter, "parent": parent, "appliance": appliance, "pincode": pincode}
    return await fetch_all(conn, _SELECT_METERS, params)


async def set_load_factors(
    conn: Conn, k_c: float | None, k_p: float | None, meter_ids: list[int]
) -> list[int]:
    """Set K_consumption and/or K_production (None keeps a factor) of the given meters; the ids updated."""
    rows = await fetch_all(
        conn,
        "update meters set load_factor_consumption = coalesce(%s, load_factor_consumption),"
        " load_factor_production = coalesce(%s, load_factor_production), updated_at = now()"
        " where id = any(%s) returning id",
        (k_c, k_p, meter_ids),
    )
    return [row["id"] for row in rows]


_PLACES = """
select m.id, m.code, u.code as utility, f.code as feeder, t.code as transformer
from meters m
left join meters p on p.id = m.parent_id
left join grid_nodes t on t.id = coalesce(m.transformer_id, p.transformer_id) and t.level = 'transformer'
left join grid_nodes f on f.id = t.parent_id
left join grid_nodes u on u.id = f.parent_id
where m.id = any(%s)
"""


async def meter_places(conn: Conn, meter_ids: list[int]) -> dict[int, dict[str, Any]]:
    """Each meter's code and its utility, feeder and transformer codes (None where it hangs nowhere)."""
    return {row["id"]: row for row in await fetch_all(conn, _PLACES, (meter_ids,))}


async def list_control_log(conn: Conn, request: ControlLogRequest) -> list[ControlLogEntry]:
    """Control changes oldest first, filtered."""
    meter_id = None
    if request.meter is not None:
        meter_id = (await meter_repository.resolve_meter(conn, request.meter, field="meter"))["id"]
    action = request.action
    rows = await fetch_all(
        conn,
        "select id, sim_time, action, target, params, meter_ids, created_at from control_log"
        " where (%(meter)s::bigint is null or %(meter)s = any(meter_ids))"
        "   and (%(action)s::text is null or action = %(action)s"
        "        or (right(%(action)s, 1) = '.' and starts_with(action, %(action)s)))"
        "   and (%(since)s::timestamptz is null or sim_time >= %(since)s)"
        "   and (%(until)s::timestamptz is null or sim_time < %(until)s)"
        " order by sim_time, id limit %(limit)s offset %(offset)s",
        {
            "meter": meter_id,
            "action": action,
            "since": request.since,
            "until": request.until,
            "limit": request.limit,
            "offset": request.offset,
        },
    )
    return [ControlLogEntry.model_validate(row) for row in rows]


# -------------------------------------------------------------------------------------- events


async def insert_event(conn: Conn, event: GridEvent) -> EventOut:
    """Store an event."""
    row = await fetch_one(
        conn,
        "insert into meter_sim_events (type, severity, sim_time, subject, message, data) values (%s, %s, %s, %s, %s, %s)"
        " returning id, type, severity, sim_time, subject, message, data",
        (event.type, event.severity, event.timestamp, event.subject, event.message, Jsonb(event.details())),
    )
    return EventOut.model_validate(row)


async def list_events(conn: Conn, request: EventListRequest) -> list[EventOut]:
    """Stored events, newest first."""
    rows = await fetch_all(
        conn,
        "select id, type, severity, sim_time, subject, message, data from events"
        " where (%(type)s::text is null or type = %(type)s)"
        "   and (%(subject)s::text is null or lower(subject) = lower(%(subject)s))"
        "   and (%(since)s::timestamptz is null or sim_time >= %(since)s)"
        "   and (%(until)s::timestamptz is null or sim_time < %(until)s)"
        " order by sim_time desc, id desc limit %(limit)s",
        request.model_dump(),
    )
    return [EventOut.model_validate(row) for row in rows]


# -------------------------------------------------------------------------------------- spikes

# The meters a spike covers now (new meters in its scope join it at the next fleet reload). A meter
# spike covers the meter and, for a parent meter, every descendant; generators' own meters are left out
# of the other scopes, so a load or source spike at a transformer does not touch a solar farm there.
_SPIKE_SELECT = """
select s.id, s.kind, s.scope, s.multiplier, s.kw, s.start_time, s.duration_s, s.shape, s.generator, s.name,
       s.generator_meter_id, gm.code as generator_meter_code, s.cancelled_at, s.created_at,
       coalesce(tm.code, n.code, s.pincode) as target,
       case s.kind when 'generator' then array[s.generator_meter_id]
       else array(
           select m.id from meters m
           left join meters p on p.id = m.parent_id
           left join grid_nodes t on t.id = coalesce(m.transformer_id, p.transformer_id)
           where not exists (select 1 from spikes g where g.generator_meter_id = m.id)
             and case s.scope
                 when 'meter' then m.id in (
                     with recursive d as (
                         select s.meter_id as id
                         union select c.id from meters c join d on c.parent_id = d.id
                     ) select id from d)
                 when 'transformer' then t.id = s.node_id
                 when 'feeder' then t.parent_id = s.node_id
                 else lower(coalesce(m.pincode, t.pincode)) = lower(s.pincode)
             end
           order by m.id)
       end as meter_ids
from spikes s
left join meters tm on tm.id = s.meter_id
left join grid_nodes n on n.id = s.node_id
left join meters gm on gm.id = s.generator_meter_id
"""


def _end(row: dict[str, Any]) -> datetime | None:
    end: datetime | None = (
        row["start_time"] + timedelta(seconds=row["duration_s"]) if row["duration_s"] is not None else None
    )
    cancelled: datetime | None = row["cancelled_at"]
    start: datetime = row["start_time"]
    if cancelled is not None and (end is None or cancelled < end):
        return max(cancelled, start)
    return end


def _spike(row: dict[str, Any]) -> Spike:
    return Spike(
        id=row["id"],
        kind=row["kind"],
        scope=row["scope"],
        target=row["target"] or "",
        multiplier=row["multiplier"],
        kw=row["kw"],
        start=row["start_time"],
        duration_s=row["duration_s"],
        end=_end(row),
        shape=row["shape"],
        generator=row["generator"],
        name=row["name"],
        generator_meter_id=row["generator_meter_id"],
        generator_meter_code=row["generator_meter_code"],
        cancelled_at=row["cancelled_at"],
        meter_ids=list(row["meter_ids"]),
        created_at=row["created_at"],
    )


async def get_spike(conn: Conn, spike_id: int, *, lock: bool = False) -> Spike:
    """One spike; 404 naming ``spike_id``."""
    row = await fetch_one(conn, _SPIKE_SELECT + " where s.id = %s", (spike_id,))
    if row is None:
        msg = f"spike {spike_id} not found"
        raise NotFoundError(msg, field="spike_id")
    if lock:
        await conn.execute("select 1 from spikes where id = %s for update", (spike_id,))
    return _spike(row)


async def list_spikes(conn: Conn, limit: int) -> list[Spike]:
    """Spikes, newest first."""
    rows = await fetch_all(conn, _SPIKE_SELECT + " order by s.id desc limit %s", (limit,))
    return [_spike(row) for row in rows]


async def load_spikes(pool: AsyncConnectionPool) -> list[SpikeRow]:
    """Every spike with the meters it covers, for the engine (cancelled ones keep their earlier window)."""
    async with pool.connection() as conn:
        rows = await fetch_all(conn, _SPIKE_SELECT + " order by s.id")
    return [
        SpikeRow(
            id=row["id"],
            kind=row["kind"],
            shape=row["shape"],
            start=row["start_time"],
            duration_s=row["duration_s"],
            end=_end(row),
            multiplier=row["multiplier"],
            kw=row["kw"],
            generator=row["generator"],
            meter_ids=tuple(row["meter_ids"]),
        )
        for row in rows
    ]


async def _node(conn: Conn, ref: int | str, level: str) -> dict[str, Any]:
    node = await grid_repository.resolve_node(conn, ref, field="target")
    if node["level"] != level:
        msg = f"target: grid node {ref!r} is a {node['level']}, not a {level}"
        raise InvalidError(msg, field="target")
    return node


async def create_spike(conn: Conn, body: SpikeCreate, now: datetime) -> tuple[Spike, dict[str, Any]]:
    """Store a spike (a generator gets its ER, DER, meter and, at a feeder, its transformer); return it
    and the log target."""
    spike_id = await fetch_one(conn, "select nextval(pg_get_serial_sequence('spikes', 'id')) as id")
    assert spike_id is not None
    sid = int(spike_id["id"])
    meter_id = node_id = None
    pincode: str | None = None
    if body.scope == "meter":
        meter_id = (await meter_repository.resolve_meter(conn, body.target, field="target"))["id"]
    elif body.scope in ("transformer", "feeder"):
        node_id = (await _node(conn, body.target, body.scope))["id"]
    else:
        pincode = str(body.target).strip()
    start = body.start or now
    generator_meter = generator_node = None
    if body.kind == "generator":
        assert node_id is not None
        generator_meter, generator_node = await _add_generator(conn, sid, body, node_id)
    await conn.execute(
        "insert into spikes (id, kind, scope, meter_id, node_id, pincode, multiplier, kw, start_time,"
        " duration_s, shape, generator, name, generator_meter_id, generator_node_id)"
        " values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            sid,
            body.kind,
            body.scope,
            meter_id,
            node_id,
            pincode,
            body.multiplier,
            body.kw,
            start,
            body.duration_s,
            body.shape,
            body.generator if body.kind == "generator" else None,
            body.name,
            generator_meter,
            generator_node,
        ),
    )
    target = {"spike_id": sid, "scope": body.scope, "target": body.target}
    return await get_spike(conn, sid), target


async def _add_generator(conn: Conn, sid: int, body: SpikeCreate, node_id: int) -> tuple[int, int | None]:
    """A generator's own meter (code GEN-<id>) on a prosumer ER with its rated solar DER; at a feeder it
    connects through a step-up transformer of its own (gen-<id>), as a utility-scale farm does."""
    code = f"GEN-{sid}"
    if await fetch_one(conn, "select 1 from meters where lower(code) = lower(%s)", (code,)):
        msg = f"a meter with the generator's code {code} already exists"
        raise ConflictError(msg, field="target")
    transformer_id, own_node = node_id, None
    assert body.kw is not None
    if body.scope == "feeder":
        node = await fetch_one(
            conn,
            "insert into grid_nodes (code, name, level, parent_id, capacity_kva, latitude, longitude,"
            " pincode) select %s, %s, 'transformer', id, %s, latitude, longitude, pincode from grid_nodes"
            " where id = %s on conflict (code) do nothing returning id",
            (f"gen-{sid}", f"Step-up transformer of {body.name or code}", max(25.0, body.kw * 1.1), node_id),
        )
        if node is None:
            msg = f"a grid node with the generator's code gen-{sid} already exists"
            raise ConflictError(msg, field="target")
        transformer_id = own_node = int(node["id"])
    er = await fetch_one(
        conn,
        "insert into energy_resources (name, type, kind, profile) values (%s, 'prosumer', 'industrial',"
        " 'realistic') returning id",
        (body.name or f"Generator {sid} ({body.generator}, {body.kw:g} kW)",),
    )
    assert er is not None
    if body.generator == "solar":
        await conn.execute(
            "insert into ders (er_id, appliance_id, quantity, switched_on, lifecycle, capacity_kw)"
            " values (%s, %s, 1, true, 'connected', %s)",
            (er["id"], SOLAR_APPLIANCE_ID, body.kw),
        )
    meter = await fetch_one(
        conn,
        "insert into meters (code, transformer_id, er_id, load_factor_consumption, load_factor_production,"
        " meter_type, max_capacity_kw, linked_at) values (%s, %s, %s, 1, 1, 'net-meter', %s, now())"
        " returning id",
        (code, transformer_id, er["id"], body.kw),
    )
    assert meter is not None
    return int(meter["id"]), own_node


async def cancel_spike(conn: Conn, spike_id: int, now: datetime) -> Spike:
    """End a spike at ``now`` (idempotent); a generator's meter goes offline (decommissioned)."""
    spike = await get_spike(conn, spike_id, lock=True)
    if spike.cancelled_at is None:
        await conn.execute("update spikes set cancelled_at = %s where id = %s", (now, spike_id))
        if spike.generator_meter_id is not None:
            await conn.execute(
                "update meters set status = 'offline', updated_at = now() where id = %s",
                (spike.generator_meter_id,),
            )
    return await get_spike(conn, spike_id)
