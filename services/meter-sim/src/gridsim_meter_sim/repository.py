"""SQL of the meter-sim service: psycopg calls that return domain objects.

This module holds the shared helpers, the appliance catalogue and energy resources (ERs);
``meter_repository`` holds meters and links, ``grid_repository`` the grid nodes. Every function takes a
connection inside the caller's transaction, so a command is all-or-nothing and the demo world loader
reuses exactly what the API runs.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from gridsim_shared.errors import InvalidError, NotFoundError
from gridsim_shared.schemas.meters import (
    Appliance,
    ApplianceCount,
    ApplianceOut,
    Er,
    ErCreate,
    ErListRequest,
    ErUpdate,
)

__all__ = [
    "ApplianceGroup",
    "Conn",
    "catalogue",
    "create_er",
    "delete_er",
    "fetch_all",
    "fetch_by_ref",
    "fetch_one",
    "find_er",
    "get_er",
    "list_ers",
    "resolve_appliances",
    "update_er",
    "valid_id",
]

Conn = psycopg.AsyncConnection[Any]
_MAX_ID = 2**63 - 1


def valid_id(value: int) -> bool:
    """True when ``value`` can be a ``bigserial`` id (a larger integer names nothing, it is not an error)."""
    return 0 < value <= _MAX_ID


# Positional (%s) or named (%(name)s) parameters.
Params = Sequence[Any] | Mapping[str, Any]


async def fetch_one(conn: Conn, query: Any, params: Params = ()) -> dict[str, Any] | None:
    """The first row of a query as a dict, or None."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, params)
        return await cur.fetchone()


async def fetch_all(conn: Conn, query: Any, params: Params = ()) -> list[dict[str, Any]]:
    """Every row of a query as dicts."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, params)
        return await cur.fetchall()


async def fetch_by_ref(conn: Conn, ref: int | str, by_id: str, by_code: str) -> dict[str, Any] | None:
    """The row an id-or-code reference names, or None: ``by_id`` takes the id, ``by_code`` the code.

    A string of digits is tried as an id first, then as a code; an id too large for ``bigserial`` names
    nothing (it is not an error).
    """
    row = None
    if (isinstance(ref, int) or ref.isdigit()) and valid_id(int(ref)):
        row = await fetch_one(conn, by_id, (int(ref),))
    if row is None and isinstance(ref, str):
        row = await fetch_one(conn, by_code, (ref,))
    return row


# ------------------------------------------------------------------------------- appliance catalogue


async def catalogue(conn: Conn) -> list[Appliance]:
    """The appliance catalogue, by id."""
    rows = await fetch_all(
        conn,
        "select id, name, aliases, power_w, base_kwh_per_min, role, profile, power_factor, description"
        " from appliances order by id",
    )
    return [Appliance.model_validate(row) for row in rows]


def _key(name: str) -> str:
    return re.sub(r"\s+", " ", name.strip().lower())


class ApplianceGroup(NamedTuple):
    """Identical appliances of an ER: one ``ders`` row."""

    appliance_id: int
    quantity: int
    switched_on: bool
    tilt_deg: float | None = None  # solar panels: the array's orientation (null: the default)
    azimuth_deg: float | None = None


def resolve_appliances(
    known: Sequence[Appliance], appliance_type: Iterable[str], appliances: Iterable[ApplianceCount]
) -> list[ApplianceGroup]:
    """Groups (one DER row each) for an ER's appliance names (aliases allowed).

    A name repeated in ``appliance_type`` counts once per mention. An unknown name is a 422 naming the
    field and listing the catalogue.
    """
    by_name: dict[str, int] = {}
    for item in known:
        by_name[_key(item.name)] = item.id
        for alias in item.aliases:
            by_name.setdefault(_key(alias), item.id)
    groups: dict[tuple[int, bool, float | None, float | None], int] = defaultdict(int)

    def lookup(name: str, field: str) -> int:
        found = by_name.get(_key(name))
        if found is None:
            names = [item.name for item in known]
            aliases = {alias: item.name for item in known for alias in item.aliases}
            msg = (
                f"{field}: unknown appliance {name!r}; known appliances: {', '.join(names)}"
                f" (aliases such as {', '.join(list(aliases)[:8])} are accepted too; GET /admin/appliances)"
            )
            raise InvalidError(msg, field=field, details={"known": names, "aliases": aliases})
        return found

    for index, name in enumerate(appliance_type):
        groups[(lookup(name, f"appliance_type.{index}"), True, None, None)] += 1
    for index, group in enumerate(appliances):
        key = (
            lookup(group.name, f"appliances.{index}.name"),
            group.switched_on,
            group.tilt_deg,
            group.azimuth_deg,
        )
        groups[key] += group.count
    return [ApplianceGroup(a, count, on, tilt, az) for (a, on, tilt, az), count in groups.items()]


# ---------------------------------------------------------------------------------- energy resources

_ER_SELECT = """
select e.id, e.name, e.type, e.kind, e.profile, e.city, e.state, e.latitude, e.longitude,
       e.created_at, e.updated_at, m.id as meter_id, m.code as meter_code
from energy_resources e left join meters m on m.er_id = e.id
"""
_ER_SCALARS = ("name", "type", "kind", "profile", "city", "state", "latitude", "longitude")


async def _ers(conn: Conn, where: str, params: Sequence[Any]) -> list[Er]:
    rows = await fetch_all(conn, _ER_SELECT + where, params)
    ders = await fetch_all(
        conn,
        "select d.id as der_id, d.er_id, d.appliance_id, a.name, d.quantity as count, d.switched_on,"
        " d.lifecycle, a.power_w, a.base_kwh_per_min, a.role"
        " from ders d join appliances a on a.id = d.appliance_id"
        " where d.er_id = any(%s) order by d.er_id, d.appliance_id, d.id",
        ([row["id"] for row in rows],),
    )
    by_er: dict[int, list[ApplianceOut]] = defaultdict(list)
    for der in ders:
        by_er[der["er_id"]].append(ApplianceOut.model_validate(der))
    result = []
    for row in rows:
        items = by_er[row["id"]]
        # Only what is switched on and connected draws or produces (DERs go purchased -> installed ->
        # connected).
        active = [a for a in items if a.switched_on and a.lifecycle == "connected"]
        result.append(
            Er(
                **row,
                appliance_type=list(dict.fromkeys(a.name for a in items)),
                appliances=items,
                base_kwh_per_min=sum(a.base_kwh_per_min * a.count for a in active if a.role == "consumption"),
                production_kwh_per_min=sum(
                    a.base_kwh_per_min * a.count for a in active if a.role == "production"
                ),
            )
        )
    return result


async def find_er(conn: Conn, er_id: int, *, lock: bool = False) -> dict[str, Any]:
    """An ER's ``id`` and ``type`` (locked for update when asked); 404 naming ``er_id`` when unknown."""
    suffix = " for update" if lock else ""
    query = "select id, type from energy_resources where id = %s" + suffix
    row = await fetch_one(conn, query, (er_id,)) if valid_id(er_id) else None
    if row is None:
        msg = f"energy resource {er_id} not found"
        raise NotFoundError(msg, field="er_id")
    return row


async def get_er(conn: Conn, er_id: int) -> Er:
    """One ER with its appliances and linked meter; 404 when unknown."""
    found = await _ers(conn, "where e.id = %s", (er_id,)) if valid_id(er_id) else []
    if not found:
        msg = f"energy resource {er_id} not found"
        raise NotFoundError(msg, field="er_id")
    return found[0]


async def list_ers(conn: Conn, request: ErListRequest) -> list[Er]:
    """ERs by id, a page at a time."""
    return await _ers(conn, "order by e.id limit %s offset %s", (request.limit, request.offset))


async def _replace_appliances(conn: Conn, er_id: int, groups: list[ApplianceGroup]) -> None:
    await conn.execute("delete from ders where er_id = %s", (er_id,))
    if groups:
        async with conn.cursor() as cur:
            await cur.executemany(
                "insert into ders (er_id, appliance_id, quantity, switched_on, tilt_deg, azimuth_deg)"
                " values (%s, %s, %s, %s, %s, %s)",
                [
                    (er_id, g.appliance_id, g.quantity, g.switched_on, g.tilt_deg, g.azimuth_deg)
                    for g in groups
                ],
            )


async def create_er(conn: Conn, body: ErCreate) -> Er:
    """Insert an ER and its appliances."""
    groups = resolve_appliances(await catalogue(conn), body.appliance_type, body.appliances)
    row = await fetch_one(
        conn,
        "insert into energy_resources (name, type, kind, profile, city, state, latitude, longitude)"
        " values (%s, %s, %s, %s, %s, %s, %s, %s) returning id",
        (body.name, body.type, body.kind, body.profile, body.city, body.state, body.latitude, body.longitude),
    )
    assert row is not None
    await _replace_appliances(conn, row["id"], groups)
    return await get_er(conn, row["id"])


def link_production_factor(er_type: str) -> float:
    """K_production a link gives by default: 1 for a prosumer, 0 for a consumer (seed)."""
    return 1.0 if er_type == "prosumer" else 0.0


async def update_er(conn: Conn, body: ErUpdate) -> Er:
    """Change the fields that were sent; a sent appliance list replaces the old one (seed).

    When a linked ER changes type, its meter's K_production takes the link default of the new type, so
    a consumer that becomes a prosumer with a solar panel starts producing at once.
    """
    current = await find_er(conn, body.er_id, lock=True)
    sent = body.model_fields_set
    if "appliance_type" in sent or "appliances" in sent:
        groups = resolve_appliances(await catalogue(conn), body.appliance_type or [], body.appliances or [])
        await _replace_appliances(conn, body.er_id, groups)
    changes = {name: getattr(body, name) for name in _ER_SCALARS if name in sent}
    assignments: list[sql.Composable] = [
        sql.SQL("{} = {}").format(sql.Identifier(k), sql.Placeholder()) for k in changes
    ]
    assignments.append(sql.SQL("updated_at = now()"))
    await conn.execute(
        sql.SQL("update energy_resources set {} where id = {}").format(
            sql.SQL(", ").join(assignments), sql.Placeholder()
        ),
        [*changes.values(), body.er_id],
    )
    if "type" in changes and changes["type"] != current["type"]:
        await conn.execute(
            "update meters set load_factor_production = %s, updated_at = now() where er_id = %s",
            (link_production_factor(changes["type"]), body.er_id),
        )
    return await get_er(conn, body.er_id)


async def delete_er(conn: Conn, er_id: int) -> int:
    """Delete an ER and its appliances; its meter (if linked) is unlinked and stops generating."""
    if valid_id(er_id):
        await conn.execute(
            "update meters set er_id = null, linked_at = null, updated_at = now() where er_id = %s", (er_id,)
        )
        row = await fetch_one(conn, "delete from energy_resources where id = %s returning id", (er_id,))
        if row is not None:
            return er_id
    msg = f"energy resource {er_id} not found"
    raise NotFoundError(msg, field="er_id")
