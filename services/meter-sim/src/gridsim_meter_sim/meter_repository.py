"""SQL of meters and their links to energy resources.

A meter is referenced by its integer id or its code (case-insensitive) everywhere; a string of digits is
tried as an id first, then as a code. Parent meters sum their children and generate nothing of their
own, so a meter with children cannot be linked to an ER and a linked meter cannot become a parent.
Child meters hang from their parent's transformer.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from gridsim_meter_sim import grid_repository as grid
from gridsim_meter_sim.repository import (
    Conn,
    fetch_all,
    fetch_by_ref,
    fetch_one,
    find_er,
    link_production_factor,
)
from gridsim_shared.db import lock_in_schema
from gridsim_shared.errors import ConflictError, InvalidError, NotFoundError
from gridsim_shared.schemas.meters import (
    LinkRequest,
    Meter,
    MeterCreate,
    MeterListRequest,
    MeterRef,
    MeterUpdate,
    UnlinkRequest,
)

__all__ = [
    "create_meter",
    "delete_meter",
    "get_meter",
    "link",
    "list_meters",
    "relink",
    "resolve_meter",
    "set_subscription",
    "unlink",
    "unlink_er",
    "update_meter",
]

# Serialises re-parenting, so two concurrent moves cannot each pass the cycle check and close a loop.
_TREE_LOCK = "meter-sim.tree"

_METER_SELECT = """
select m.id, m.code as meter_id, m.parent_id, m.load_factor_consumption, m.load_factor_production,
       m.meter_type, m.city, m.state, m.latitude, m.longitude, m.pincode, m.transformer_id,
       t.code as transformer_code, m.er_id, m.status, m.max_capacity_kw as "max_capacity_kW",
       m.linked_at, m.created_at, m.updated_at,
       coalesce((select array_agg(c.id order by c.id) from meters c where c.parent_id = m.id),
                '{}') as children
from meters m left join grid_nodes t on t.id = m.transformer_id
"""


async def resolve_meter(conn: Conn, ref: MeterRef, *, field: str, lock: bool = False) -> dict[str, Any]:
    """A meter's row (``id, code, parent_id, transformer_id, er_id``) by id or code; 404 naming ``field``."""
    query = "select id, code, parent_id, transformer_id, er_id from meters where "
    suffix = " for update" if lock else ""
    row = await fetch_by_ref(
        conn, ref, query + "id = %s" + suffix, query + "lower(code) = lower(%s)" + suffix
    )
    if row is None:
        msg = f"meter {ref!r} not found"
        raise NotFoundError(msg, field=field)
    return row


async def get_meter(conn: Conn, ref: MeterRef, *, field: str = "meter") -> Meter:
    """One meter."""
    meter_id = (await resolve_meter(conn, ref, field=field))["id"]
    row = await fetch_one(conn, _METER_SELECT + "where m.id = %s", (meter_id,))
    return Meter.model_validate(row)


async def list_meters(conn: Conn, request: MeterListRequest) -> list[Meter]:
    """Meters by id, a page at a time, optionally under one transformer or parent, or (un)linked only."""
    where: list[str] = []
    params: list[Any] = []
    if request.transformer_id is not None:
        where.append("m.transformer_id = %s")
        params.append((await grid.resolve_node(conn, request.transformer_id, field="transformer_id"))["id"])
    if request.parent_id is not None:
        where.append("m.parent_id = %s")
        params.append((await resolve_meter(conn, request.parent_id, field="parent_id"))["id"])
    if request.linked is not None:
        where.append("m.er_id is not null" if request.linked else "m.er_id is null")
    clause = ("where " + " and ".join(where)) if where else ""
    rows = await fetch_all(
        conn,
        _METER_SELECT + clause + " order by m.id limit %s offset %s",
        [*params, request.limit, request.offset],
    )
    return [Meter.model_validate(row) for row in rows]


async def _check_code_free(conn: Conn, code: str, *, except_id: int | None = None) -> None:
    row = await fetch_one(
        conn,
        "select id, code from meters where lower(code) = lower(%s) and id is distinct from %s",
        (code, except_id),
    )
    if row is not None:
        msg = f"a meter with code {row['code']!r} already exists (id {row['id']}); codes are unique ignoring case"
        raise ConflictError(msg, field="meter_id")


async def _check_can_be_parent(parent: dict[str, Any]) -> None:
    if parent["er_id"] is not None:
        msg = (
            f"meter {parent['code']} is linked to energy resource {parent['er_id']}; a parent meter only sums"
            " its children, so unlink it first"
        )
        raise ConflictError(msg, field="parent_id")


async def _transformer(conn: Conn, ref: Any) -> int:
    node = await grid.resolve_node(conn, ref, field="transformer_id")
    if node["level"] != "transformer":
        msg = f"meters hang from transformers; {node['code']} is a {node['level']}"
        raise InvalidError(msg, field="transformer_id")
    node_id: int = node["id"]
    return node_id


def _same_transformer(parent: dict[str, Any], transformer_id: int) -> None:
    if parent["transformer_id"] != transformer_id:
        msg = (
            f"a child meter hangs from its parent's transformer; parent {parent['code']} is under"
            f" transformer id {parent['transformer_id']}"
        )
        raise InvalidError(msg, field="transformer_id")


async def create_meter(conn: Conn, body: MeterCreate) -> Meter:
    """Insert a meter under its transformer: given, else its parent's, else nearest, else unassigned."""
    await _check_code_free(conn, body.meter_id)
    parent = None
    if body.parent_id is not None:
        # Locked so that a concurrent link of the parent cannot slip in between check and insert.
        parent = await resolve_meter(conn, body.parent_id, field="parent_id", lock=True)
        await _check_can_be_parent(parent)
    if body.transformer_id is not None:
        transformer_id = await _transformer(conn, body.transformer_id)
        if parent is not None:
            _same_transformer(parent, transformer_id)
    elif parent is not None:
        transformer_id = parent["transformer_id"]
    else:
        nearest = None
        if body.latitude is not None and body.longitude is not None:
            nearest = await grid.nearest_transformer(conn, body.latitude, body.longitude)
        transformer_id = nearest if nearest is not None else await grid.unassigned_transformer(conn)
    try:
        row = await fetch_one(
            conn,
            "insert into meters (code, parent_id, transformer_id, load_factor_consumption,"
            " load_factor_production, meter_type, city, state, latitude, longitude, pincode, max_capacity_kw)"
            " values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) returning id",
            (
                body.meter_id,
                None if parent is None else parent["id"],
                transformer_id,
                body.consumption_factor,
                body.load_factor_production or 0.0,
                body.meter_type,
                body.city,
                body.state,
                body.latitude,
                body.longitude,
                body.pincode,
                body.max_capacity_kW,
            ),
        )
    except psycopg.errors.UniqueViolation as exc:  # a concurrent create won the race
        msg = f"a meter with code {body.meter_id!r} already exists"
        raise ConflictError(msg, field="meter_id") from exc
    assert row is not None
    return await get_meter(conn, row["id"])


_METER_COLUMNS = {
    "meter_id": "code",
    "load_factor": "load_factor_consumption",
    "load_factor_consumption": "load_factor_consumption",
    "load_factor_production": "load_factor_production",
    "meter_type": "meter_type",
    "city": "city",
    "state": "state",
    "latitude": "latitude",
    "longitude": "longitude",
    "pincode": "pincode",
    "max_capacity_kW": "max_capacity_kw",
}


async def _new_parent(conn: Conn, meter: dict[str, Any], ref: MeterRef) -> dict[str, Any]:
    parent = await resolve_meter(conn, ref, field="parent_id", lock=True)
    if parent["id"] == meter["id"]:
        msg = f"meter {meter['code']} cannot be its own parent"
        raise InvalidError(msg, field="parent_id")
    await lock_in_schema(conn, _TREE_LOCK)
    below = await fetch_one(
        conn,
        "with recursive below(id) as (select id from meters where parent_id = %s"
        " union select m.id from meters m join below b on m.parent_id = b.id)"
        " select 1 as found from below where id = %s",
        (meter["id"], parent["id"]),
    )
    if below is not None:
        msg = (
            f"meter {parent['code']} is below meter {meter['code']} in the parent tree;"
            " making it the parent would create a cycle"
        )
        raise InvalidError(msg, field="parent_id")
    await _check_can_be_parent(parent)
    return parent


async def update_meter(conn: Conn, body: MeterUpdate) -> Meter:
    """Change the fields that were sent. A new parent or transformer moves the meter's whole subtree."""
    meter = await resolve_meter(conn, body.meter, field="meter", lock=True)
    sent = body.model_fields_set - {"meter"}
    changes = {column: getattr(body, name) for name, column in _METER_COLUMNS.items() if name in sent}
    if "code" in changes:
        await _check_code_free(conn, changes["code"], except_id=meter["id"])
    parent = None
    if "parent_id" in sent:
        parent = None if body.parent_id is None else await _new_parent(conn, meter, body.parent_id)
        changes["parent_id"] = None if parent is None else parent["id"]
    elif meter["parent_id"] is not None:
        parent = await resolve_meter(conn, meter["parent_id"], field="parent_id")
    target = parent["transformer_id"] if parent is not None and "parent_id" in sent else None
    if "transformer_id" in sent:
        target = await _transformer(conn, body.transformer_id)
        if parent is not None:
            _same_transformer(parent, target)
    if changes:
        await conn.execute(
            sql.SQL("update meters set {}, updated_at = now() where id = {}").format(
                sql.SQL(", ").join(
                    sql.SQL("{} = {}").format(sql.Identifier(k), sql.Placeholder()) for k in changes
                ),
                sql.Placeholder(),
            ),
            [*changes.values(), meter["id"]],
        )
    if target is not None and target != meter["transformer_id"]:
        await conn.execute(
            "with recursive subtree(id) as (select %s::bigint"
            " union select m.id from meters m join subtree s on m.parent_id = s.id)"
            " update meters set transformer_id = %s, updated_at = now() where id in (select id from subtree)",
            (meter["id"], target),
        )
    return await get_meter(conn, meter["id"])


async def delete_meter(conn: Conn, ref: MeterRef) -> int:
    """Delete a meter without children (409 otherwise); a linked ER is simply left unlinked."""
    meter = await resolve_meter(conn, ref, field="meter", lock=True)
    children = await fetch_all(
        conn, "select code from meters where parent_id = %s order by id", (meter["id"],)
    )
    if children:
        codes = [row["code"] for row in children]
        msg = (
            f"meter {meter['code']} still has {len(codes)} child meters ({', '.join(codes[:5])}); delete or move"
            " them first"
        )
        raise ConflictError(msg, field="meter", details={"children": codes})
    await conn.execute("delete from meters where id = %s", (meter["id"],))
    meter_id: int = meter["id"]
    return meter_id


async def link(conn: Conn, body: LinkRequest) -> Meter:
    """Link a meter to an ER (one ER per meter). Generation starts with the next interval.

    K_consumption keeps the meter's value (1 unless it was created or controlled otherwise); K_production
    becomes 1 for a prosumer and 0 for a consumer. Either can be given in the request instead.
    """
    meter = await resolve_meter(conn, body.meter_id, field="meter_id", lock=True)
    er = await find_er(conn, body.er_id, lock=True)
    if meter["er_id"] is not None and meter["er_id"] != er["id"]:
        msg = f"meter {meter['code']} is already linked to energy resource {meter['er_id']}; unlink it first"
        raise ConflictError(msg, field="meter_id")
    if meter["er_id"] is None:
        if await fetch_one(conn, "select 1 from meters where parent_id = %s limit 1", (meter["id"],)):
            msg = f"meter {meter['code']} has child meters and only sums them; link the ER to a child meter"
            raise ConflictError(msg, field="meter_id")
        other = await fetch_one(conn, "select code from meters where er_id = %s", (er["id"],))
        if other is not None:
            msg = f"energy resource {er['id']} is already linked to meter {other['code']}"
            raise ConflictError(msg, field="er_id")
    elif body.load_factor_consumption is None and body.load_factor_production is None:
        return await get_meter(conn, meter["id"])  # linking again changes nothing
    production = (
        body.load_factor_production
        if body.load_factor_production is not None
        else link_production_factor(er["type"])
    )
    await conn.execute(
        "update meters set er_id = %s, load_factor_consumption = coalesce(%s, load_factor_consumption),"
        " load_factor_production = %s, linked_at = coalesce(linked_at, now()), updated_at = now()"
        " where id = %s",
        (er["id"], body.load_factor_consumption, production, meter["id"]),
    )
    return await get_meter(conn, meter["id"])


async def unlink(conn: Conn, body: UnlinkRequest) -> Meter:
    """Unlink a meter from its ER: it stops generating from the next interval."""
    meter = await resolve_meter(conn, body.meter_id, field="meter_id", lock=True)
    if meter["er_id"] is None:
        msg = f"meter {meter['code']} is not linked to an energy resource"
        raise ConflictError(msg, field="meter_id")
    if body.er_id is not None and body.er_id != meter["er_id"]:
        msg = f"meter {meter['code']} is linked to energy resource {meter['er_id']}, not {body.er_id}"
        raise ConflictError(msg, field="er_id")
    await conn.execute(
        "update meters set er_id = null, linked_at = null, updated_at = now() where id = %s", (meter["id"],)
    )
    return await get_meter(conn, meter["id"])


async def relink(conn: Conn, body: LinkRequest) -> Meter:
    """Link a meter to an ER with Strapi's one-to-one semantics: either side's other partner is let go first.

    ``link`` refuses an ER or a meter that is already linked elsewhere (gridsim's own API asks for an
    explicit unlink); the World Engine moved the household instead. Run in the caller's transaction, the
    releases and the new link commit together or not at all.
    """
    meter = await resolve_meter(conn, body.meter_id, field="meter_id", lock=True)
    er = await find_er(conn, body.er_id, lock=True)
    if meter["er_id"] is not None and meter["er_id"] != er["id"]:
        await unlink(conn, UnlinkRequest(meter_id=meter["id"]))
    other = await fetch_one(
        conn, "select id from meters where er_id = %s and id <> %s", (er["id"], meter["id"])
    )
    if other is not None:
        await unlink(conn, UnlinkRequest(meter_id=other["id"]))
    return await link(conn, body)


async def unlink_er(conn: Conn, er_id: int) -> None:
    """Unlink an ER from its meter, if it has one (404 when the ER does not exist)."""
    er = await find_er(conn, er_id, lock=True)
    meter = await fetch_one(conn, "select id from meters where er_id = %s", (er["id"],))
    if meter is not None:
        await unlink(conn, UnlinkRequest(meter_id=meter["id"]))


async def set_subscription(conn: Conn, ref: MeterRef, subscription_id: str | None) -> int:
    """Record a meter's demand-flexibility subscription order id (null clears it); the meter's id."""
    meter = await resolve_meter(conn, ref, field="meter", lock=True)
    await conn.execute(
        "update meters set dfp_subscription_id = %s, updated_at = now() where id = %s",
        (subscription_id, meter["id"]),
    )
    return int(meter["id"])
