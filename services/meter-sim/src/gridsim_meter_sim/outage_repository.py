"""SQL of grid health in meter-sim: outages and the meters they interrupt, remote disconnects, the energy
registers, feeder switching, and the outage records the reliability indices are computed from.

Functions taking a ``conn`` run inside the caller's transaction; those taking the pool are the engine's.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from gridsim_meter_sim import grid_repository, supply
from gridsim_meter_sim.registers import Registers
from gridsim_meter_sim.repository import Conn, fetch_all, fetch_one
from gridsim_meter_sim.supply import OutageRow, RepairTime
from gridsim_shared.copy_binary import decode_rows, encode_rows
from gridsim_shared.errors import ConflictError, InvalidError, NotFoundError
from gridsim_shared.events import GridEvent
from gridsim_shared.schemas.health import Outage, OutageListRequest

__all__ = [
    "create_outage",
    "feeder_outages",
    "get_outage",
    "insert_events",
    "list_outages",
    "load_registers",
    "load_supply",
    "mark_announced",
    "mark_restored",
    "open_outage_of",
    "restore_outage",
    "save_registers",
    "set_disconnected",
    "switch_transformer",
]

_OUTAGE_SELECT = """
select o.id, o.scope, o.cause, o.node_id, n.code as node_code, f.code as feeder_code,
       coalesce((select array_agg(t.code order by t.code) from grid_nodes t where t.id = any(o.transformer_ids)),
                '{}') as transformer_codes,
       o.start_time as start, o.planned_end, o.restored_at, o.restored_by, o.customers, o.message
from outages o join grid_nodes n on n.id = o.node_id join grid_nodes f on f.id = o.feeder_id
"""

# Leaf meters reporting under the given transformers (their own, or their parent meter's), as the fleet
# query places them: the customers an outage of those transformers interrupts.
_LEAF_METERS = """
select m.id from meters m
left join meters parent on parent.id = m.parent_id
where coalesce(m.transformer_id, parent.transformer_id) = any(%s::bigint[])
  and m.er_id is not null
  and not exists (select 1 from meters child where child.parent_id = m.id)
order by m.id
"""


def _outage(row: dict[str, Any]) -> Outage:
    momentary = None
    if row["restored_at"] is not None:
        momentary = (row["restored_at"] - row["start"]).total_seconds() <= supply.MOMENTARY_S
    return Outage.model_validate({**row, "momentary": momentary})


async def _node(conn: Conn, ref: Any, level: str, field: str) -> dict[str, Any]:
    node = await grid_repository.resolve_node(conn, ref, field=field)
    if node["level"] != level:
        msg = f"{field}: {node['code']} is a {node['level']}, not a {level}"
        raise InvalidError(msg, field=field)
    return node


async def create_outage(  # noqa: PLR0917 (an outage's definition, as the schema gives it)
    conn: Conn,
    scope: str,
    target: Any,
    transformers: Sequence[Any] | None,
    cause: str,
    start: datetime,
    duration_s: int | None,
    message: str | None,
    *,
    seed: int,
    repair: RepairTime,
) -> Outage:
    """Record an outage and the meters it interrupts; its end is ``duration_s`` on, else a drawn repair time."""
    if scope == "transformer":
        node = await _node(conn, target, "transformer", "target")
        feeder_id, transformer_ids = node["parent_id"], [node["id"]]
    else:
        node = await _node(conn, target, "feeder", "target")
        feeder_id = node["id"]
        children = await fetch_all(
            conn, "select id, code from grid_nodes where parent_id = %s order by id", (node["id"],)
        )
        if scope == "feeder":
            transformer_ids = [c["id"] for c in children]
        else:
            transformer_ids = []
            own = {c["id"] for c in children}
            for ref in transformers or []:
                t = await _node(conn, ref, "transformer", "transformers")
                if t["id"] not in own:
                    msg = f"transformers: {t['code']} is not on feeder {node['code']}"
                    raise InvalidError(msg, field="transformers")
                transformer_ids.append(t["id"])
    busy = await fetch_one(
        conn,
        "select id from outages where transformer_ids && %s::bigint[] and restored_at is null"
        " and start_time <= %s and (planned_end is null or planned_end > %s) limit 1",
        (transformer_ids, start, start),
    )
    if busy is not None:
        msg = f"target: already out of supply (outage {busy['id']}); restore it first"
        raise ConflictError(msg, field="target", details={"outage_id": busy["id"]})
    meters = [r["id"] for r in await fetch_all(conn, _LEAF_METERS, (transformer_ids,))]
    row = await fetch_one(
        conn,
        "insert into outages (scope, cause, node_id, feeder_id, transformer_ids, start_time, customers, message)"
        " values (%s, %s, %s, %s, %s::bigint[], %s, %s, %s) returning id",
        (scope, cause, node["id"], feeder_id, transformer_ids, start, len(meters), message),
    )
    assert row is not None
    outage_id = int(row["id"])
    seconds = duration_s if duration_s is not None else supply.repair_seconds(seed, outage_id, repair)
    await conn.execute(
        "update outages set planned_end = %s where id = %s", (start + timedelta(seconds=seconds), outage_id)
    )
    await conn.execute(
        "insert into outage_meters (outage_id, meter_id) select %s, unnest(%s::bigint[])", (outage_id, meters)
    )
    return await get_outage(conn, outage_id)


async def get_outage(conn: Conn, outage_id: int, *, lock: bool = False) -> Outage:
    """One outage; 404 naming ``outage_id``."""
    row = await fetch_one(
        conn, _OUTAGE_SELECT + "where o.id = %s" + (" for update of o" if lock else ""), (outage_id,)
    )
    if row is None:
        msg = f"outage {outage_id} not found"
        raise NotFoundError(msg, field="outage_id")
    return _outage(row)


async def list_outages(conn: Conn, request: OutageListRequest, now: datetime) -> list[Outage]:
    """Outages, newest first; ``open``: in effect or ahead (not restored, end not passed)."""
    feeder = None
    if request.feeder is not None:
        feeder = (await _node(conn, request.feeder, "feeder", "feeder"))["id"]
    rows = await fetch_all(
        conn,
        _OUTAGE_SELECT + "where (%(feeder)s::bigint is null or o.feeder_id = %(feeder)s)"
        " and (%(open)s::boolean is null or (o.restored_at is null) = %(open)s)"
        " order by o.start_time desc, o.id desc limit %(limit)s",
        {"feeder": feeder, "open": request.open, "limit": request.limit},
    )
    return [_outage(r) for r in rows]


async def restore_outage(conn: Conn, outage_id: int, now: datetime) -> Outage:
    """An operator restores supply now; 409 when the outage is not in effect (restored, or not started)."""
    outage = await get_outage(conn, outage_id, lock=True)
    if outage.restored_at is not None:
        msg = f"outage {outage_id} was already restored at {outage.restored_at.isoformat()}"
        raise ConflictError(msg, field="outage_id")
    if outage.start > now:
        msg = f"outage {outage_id} has not started (it starts at {outage.start.isoformat()}); nothing to restore"
        raise ConflictError(msg, field="outage_id")
    await conn.execute(
        "update outages set restored_at = %s, restored_by = 'operator' where id = %s", (now, outage_id)
    )
    return await get_outage(conn, outage_id)


async def open_outage_of(conn: Conn, transformer_id: int) -> int | None:
    """An unrestored outage covering ``transformer_id``, if any."""
    row = await fetch_one(
        conn,
        "select id from outages where %s = any(transformer_ids) and restored_at is null limit 1",
        (transformer_id,),
    )
    return int(row["id"]) if row else None


async def load_supply(pool: AsyncConnectionPool) -> tuple[list[OutageRow], list[int]]:
    """Unrestored outages with their meters, and the disconnected meters (for the engine's plan)."""
    async with pool.connection() as conn:
        rows = await fetch_all(
            conn,
            "select o.id, o.cause, o.start_time, coalesce(o.restored_at, o.planned_end) as ends, o.announced,"
            " coalesce((select array_agg(meter_id) from outage_meters om where om.outage_id = o.id), '{}') as meters"
            " from outages o where not o.closed order by o.start_time, o.id",
        )
        disconnected = await fetch_all(conn, "select id from meters where disconnected order by id")
    outages = [
        OutageRow(r["id"], r["cause"], r["start_time"], r["ends"], r["announced"], tuple(r["meters"]))
        for r in rows
    ]
    return outages, [r["id"] for r in disconnected]


async def mark_announced(conn: Conn, outage_ids: Sequence[int]) -> None:
    """The outages' last-gasp events are sent."""
    await conn.execute("update outages set announced = true where id = any(%s)", (list(outage_ids),))


async def mark_restored(conn: Conn, ended: Sequence[tuple[int, datetime, str]]) -> None:
    """Outages whose supply is back: ``(id, when, by)``. Those an operator restored keep their time."""
    for outage_id, when, by in ended:
        await conn.execute(
            "update outages set restored_at = coalesce(restored_at, %s),"
            " restored_by = coalesce(restored_by, %s), closed = true where id = %s",
            (when, by, outage_id),
        )


async def insert_events(conn: Conn, events: Sequence[GridEvent]) -> None:
    """Store many events in one round trip."""
    if events:
        await conn.cursor().executemany(
            "insert into meter_sim_events (type, severity, sim_time, subject, message, data) values (%s, %s, %s, %s, %s, %s)",
            [(e.type, e.severity, e.timestamp, e.subject, e.message, Jsonb(e.details())) for e in events],
        )


async def set_disconnected(conn: Conn, meter_id: int, disconnected: bool) -> None:
    """Open or close a meter's service switch."""
    await conn.execute(
        "update meters set disconnected = %s, updated_at = now() where id = %s", (disconnected, meter_id)
    )


async def switch_transformer(conn: Conn, transformer: Any, feeder: Any) -> tuple[dict[str, Any], str, str]:
    """Move a transformer under ``feeder`` of the same utility; ``(transformer row, old feeder, new feeder)``."""
    t = await _node(conn, transformer, "transformer", "transformer")
    to = await _node(conn, feeder, "feeder", "feeder")
    row = await fetch_one(
        conn,
        "select f.code, f.parent_id from grid_nodes f where f.id = %s for update",
        (t["parent_id"],),
    )
    assert row is not None
    if to["id"] == t["parent_id"]:
        msg = f"feeder: transformer {t['code']} is already on feeder {to['code']}"
        raise ConflictError(msg, field="feeder")
    if to["parent_id"] != row["parent_id"]:
        msg = f"feeder: {to['code']} belongs to another utility than transformer {t['code']}'s feeder {row['code']}"
        raise InvalidError(msg, field="feeder")
    await conn.execute("update grid_nodes set parent_id = %s where id = %s", (to["id"], t["id"]))
    return t, str(row["code"]), str(to["code"])


async def count_meters(conn: Conn, transformer_id: int) -> int:
    """Leaf meters under a transformer."""
    return len(await fetch_all(conn, _LEAF_METERS, ([transformer_id],)))


async def feeder_outages(
    conn: Conn, feeder: Any, since: datetime, until: datetime, now: datetime
) -> list[tuple[str, int, list[tuple[float, int]]]]:
    """Per feeder (one, or all): its code, customers served now, and ``(minutes, customers)`` of each
    interruption that started in ``[since, until)`` and had started by ``now`` (open ones run to now)."""
    feeder_id = None
    if feeder is not None:
        feeder_id = (await _node(conn, feeder, "feeder", "feeder"))["id"]
    feeders = await fetch_all(
        conn,
        "select f.id, f.code, (select count(*) from meters m left join meters p on p.id = m.parent_id"
        "   join grid_nodes t on t.id = coalesce(m.transformer_id, p.transformer_id) and t.parent_id = f.id"
        "   where m.er_id is not null and not exists (select 1 from meters c where c.parent_id = m.id))"
        "   as customers"
        " from grid_nodes f where f.level = 'feeder' and (%s::bigint is null or f.id = %s) order by f.code",
        (feeder_id, feeder_id),
    )
    outages = await fetch_all(
        conn,
        "select feeder_id, start_time, least(coalesce(restored_at, %s), %s) as ended, customers from outages"
        " where start_time >= %s and start_time < %s and start_time < %s",
        (now, now, since, until, now),
    )
    out = []
    for f in feeders:
        mine = [
            ((o["ended"] - o["start_time"]).total_seconds() / 60.0, int(o["customers"]))
            for o in outages
            if o["feeder_id"] == f["id"]
        ]
        out.append((str(f["code"]), int(f["customers"]), mine))
    return out


async def load_registers(pool: AsyncConnectionPool, meter_ids: npt.NDArray[np.int64] | None) -> Registers:
    """Saved registers of these meters (None: of every meter), read as one binary COPY."""
    query = "select meter_id, import_kwh, export_kwh, import_kvarh from meter_registers"
    if meter_ids is not None:  # integers from an int64 array: a literal is safe (COPY takes no parameters)
        query += " where meter_id = any('" + "{" + ",".join(map(str, meter_ids.tolist())) + "}'::bigint[])"
    payload = bytearray()
    async with (
        pool.connection() as conn,
        conn.cursor().copy(f"copy ({query}) to stdout (format binary)") as cp,
    ):
        async for chunk in cp:
            payload += chunk
    (ids,), values = decode_rows(bytes(payload), keys=1, values=3)
    return Registers(ids, values[:, 0].copy(), values[:, 1].copy(), values[:, 2].copy())


async def save_registers(pool: AsyncConnectionPool, registers: Registers, as_of: datetime) -> None:
    """Save every row's registers (meters deleted meanwhile are skipped).

    A binary COPY of the arrays into a staging table, then one upsert: at a million meters the same
    statement with four array parameters spent ~7 % of a core dumping 4M Python floats (py-spy, 1x).
    """
    values = np.column_stack([registers.import_kwh, registers.export_kwh, registers.import_kvarh])
    payload = encode_rows([registers.meter_id.astype(np.int64)], values.astype(np.float64))
    async with pool.connection() as conn, conn.transaction():
        await conn.execute(
            "create temp table if not exists meter_registers_stage"
            " (meter_id bigint, import_kwh float8, export_kwh float8, import_kvarh float8) on commit delete rows"
        )
        async with conn.cursor().copy("copy meter_registers_stage from stdin (format binary)") as copy:
            await copy.write(payload)
        await conn.execute(
            "insert into meter_registers (meter_id, import_kwh, export_kwh, import_kvarh, as_of)"
            " select s.meter_id, s.import_kwh, s.export_kwh, s.import_kvarh, %s"
            " from meter_registers_stage s join meters on meters.id = s.meter_id"
            " on conflict (meter_id) do update set import_kwh = excluded.import_kwh,"
            " export_kwh = excluded.export_kwh, import_kvarh = excluded.import_kvarh, as_of = excluded.as_of",
            (as_of,),
        )
