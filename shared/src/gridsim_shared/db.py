"""Database access: psycopg 3 async pools bound to one schema, and the migration runner.

Migrations are the numbered ``migrations/NNNN_name.sql`` files of this package, applied in order, each in
its own transaction, recorded in ``schema_migrations``. A file named ``NNNN_name.timescale.sql`` is applied
only where the ``timescaledb`` extension is available (hypertables, compression, continuous aggregates);
everything else is SQL that plain PostgreSQL 15 runs.

A deployment is a set of schemas (:func:`gridsim_shared.roles.schemas`): its own, ``<base>``, and one per
service that owns data. Migrations name relations unqualified: they create them in ``<base>`` (first on
the search path) and find existing ones wherever they are; after the migrations the runner moves each new
relation to its owner's schema and grants the roles (:mod:`gridsim_shared.roles`). So a migration must
not look a relation up by ``current_schema()`` (that is ``<base>``), only by its name.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from gridsim_shared import roles
from gridsim_shared.settings import DbSettings

__all__ = [
    "Migration",
    "apply_grants",
    "apply_migrations",
    "connect",
    "drop_schemas",
    "list_migrations",
    "lock_in_schema",
    "open_pool",
    "place_relations",
    "session_options",
    "timescale_available",
]

_LOGGER = logging.getLogger(__name__)
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+(\.timescale)?\.sql$")
# Any constant: serialises concurrent runners (several services starting at once).
_MIGRATION_LOCK = 0x67726964


class Migration:
    """One numbered SQL file."""

    def __init__(self, name: str, text: str) -> None:
        match = _NAME.match(name)
        if match is None:
            msg = f"migration file {name!r} must be named NNNN_name.sql or NNNN_name.timescale.sql"
            raise ValueError(msg)
        self.name = name
        self.number = int(match.group(1))
        self.timescale_only = match.group(2) is not None
        self.text = text


def list_migrations() -> list[Migration]:
    """Every migration shipped with the library, in order."""
    folder = resources.files("gridsim_shared").joinpath("migrations")
    found = [
        Migration(entry.name, entry.read_text(encoding="utf-8"))
        for entry in folder.iterdir()
        if entry.name.endswith(".sql")
    ]
    found.sort(key=lambda m: (m.number, m.name))
    return found


def session_options(schema: str) -> str:
    """libpq ``options`` of every session of the deployment ``schema`` (sync clients pass it themselves)."""
    # The deployment's schema, then each owner's: unqualified names in queries resolve wherever their owner
    # keeps them, and what a migration creates lands in the deployment's schema (moved by the runner).
    # Sessions run in UTC: simulated time is UTC, and timestamps read back (then floored to hours and days
    # by the aggregator and billing) must not depend on the server's default time zone.
    return f"-c search_path={','.join(roles.search_path(schema))} -c timezone=UTC"


def _connect_kwargs(schema: str) -> dict[str, Any]:
    return {"options": session_options(schema)}


def drop_schemas(schema: str) -> sql.Composed:
    """The statement that drops the deployment ``schema`` with every owner's schema (a test's teardown)."""
    return sql.SQL("drop schema if exists {} cascade").format(
        sql.SQL(", ").join(sql.Identifier(name) for name in roles.schemas(schema))
    )


async def connect(
    url: str, schema: str = "public", *, autocommit: bool = False
) -> psycopg.AsyncConnection[Any]:
    """One connection to ``url`` with the deployment ``schema``'s schemas on the search path."""
    return await psycopg.AsyncConnection.connect(url, autocommit=autocommit, **_connect_kwargs(schema))


@asynccontextmanager
async def open_pool(settings: DbSettings, *, name: str = "gridsim") -> AsyncIterator[AsyncConnectionPool]:
    """An opened async pool for ``settings``, closed on exit."""
    pool = AsyncConnectionPool(
        settings.url,
        min_size=settings.pool_min,
        max_size=settings.pool_max,
        kwargs=_connect_kwargs(settings.schema_name),
        name=name,
        open=False,
    )
    await pool.open(wait=True, timeout=30)
    try:
        yield pool
    finally:
        await pool.close()


async def lock_in_schema(conn: psycopg.AsyncConnection[Any], name: str) -> None:
    """Take the transaction advisory lock ``name`` of this connection's schema (held until commit).

    Advisory locks are database-wide; keyed by the schema too, one deployment's (or one test's) lock never
    waits on another's that shares the database.
    """
    await conn.execute("select pg_advisory_xact_lock(hashtext(%s || '@' || current_schema()))", (name,))


async def timescale_available(conn: psycopg.AsyncConnection[Any]) -> bool:
    """True when the server can use the ``timescaledb`` extension: installed *and* preloaded.

    A PostgreSQL whose folders hold the extension but whose ``shared_preload_libraries`` lacks it (one
    cluster of several sharing an installation) cannot create it: that server is plain PostgreSQL.
    """
    cur = await conn.execute(
        "select 1 from pg_available_extensions where name = 'timescaledb'"
        " and 'timescaledb' = any(string_to_array("
        "   replace(current_setting('shared_preload_libraries'), ' ', ''), ','))"
    )
    return await cur.fetchone() is not None


async def _relations(
    conn: psycopg.AsyncConnection[Any], schemas: list[str]
) -> dict[str, tuple[list[tuple[str, str]], list[str]]]:
    """Schema -> its ``(relname, relkind)`` rows and function signatures, read once for all ``schemas``:
    the statements then name them, since PostgreSQL resolves "on all tables in schema" by scanning all of
    pg_class for each statement (seconds per migration where the catalog is large or bloated, as on a
    test server that creates and drops schemas all day)."""
    found: dict[str, tuple[list[tuple[str, str]], list[str]]] = {schema: ([], []) for schema in schemas}
    cur = await conn.execute(
        "select n.nspname, c.relname, c.relkind from pg_class c join pg_namespace n on n.oid = c.relnamespace"
        " where n.nspname = any(%s) and c.relkind in ('r', 'p', 'v', 'm', 'f', 'S')",
        (schemas,),
    )
    for schema, name, kind in await cur.fetchall():
        found[schema][0].append((name, str(kind)))
    cur = await conn.execute(
        "select n.nspname, p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')'"
        " from pg_proc p join pg_namespace n on n.oid = p.pronamespace where n.nspname = any(%s)",
        (schemas,),
    )
    for schema, signature in await cur.fetchall():
        found[schema][1].append(str(signature))
    return found


async def place_relations(conn: psycopg.AsyncConnection[Any], schema: str) -> int:
    """Move what the migrations created in the deployment ``schema`` to its owners' schemas; the number of
    relations and functions moved (none once a deployment is placed, until a migration adds some)."""
    relations, functions = (await _relations(conn, [schema]))[schema]
    statements = roles.placement_statements(schema, relations, functions)
    async with conn.transaction():
        for statement in statements:
            await conn.execute(statement)
    return len(statements)


async def apply_grants(conn: psycopg.AsyncConnection[Any], schema: str) -> bool:
    """Create the services' roles (no login) and grant them the deployment ``schema`` as :mod:`roles` says.

    False (and nothing changed) when the connected user may not create roles: a configured database whose
    owner is not a superuser keeps one login for every service (docs/security.md).
    """
    cur = await conn.execute("select rolsuper or rolcreaterole from pg_roles where rolname = current_user")
    row = await cur.fetchone()
    if row is None or not row[0]:
        _LOGGER.warning("%s may not create roles: services share its login (no per-service roles)", schema)
        return False
    for role in roles.ROLES.values():
        exists = await conn.execute("select 1 from pg_roles where rolname = %s", (role,))
        if await exists.fetchone() is None:
            try:
                async with conn.transaction():
                    await conn.execute(sql.SQL("create role {} nologin").format(sql.Identifier(role)))
            except (psycopg.errors.DuplicateObject, psycopg.errors.UniqueViolation):
                pass  # another runner (another database on this server) made it meanwhile
    found = {
        name: roles.SchemaRelations.of(relations, functions)
        for name, (relations, functions) in (await _relations(conn, roles.schemas(schema))).items()
    }
    async with conn.transaction():
        for statement in roles.grant_statements(schema, found):
            await conn.execute(statement)
    return True


async def apply_migrations(url: str, schema: str = "public", *, timescale: bool | None = None) -> list[str]:
    """Bring ``schema`` up to date; return the names of the files applied now.

    ``timescale`` False skips the TimescaleDB migrations even where the server has the extension (a plain
    schema beside TimescaleDB ones, as the engine-parity test compares); None applies them where it can.
    """
    applied: list[str] = []
    async with await connect(url, schema, autocommit=True) as conn:
        # Per schema: services starting together migrate one schema once, while schemas of other runs
        # (parallel test workers, a second deployment) migrate side by side instead of in a queue.
        await conn.execute("select pg_advisory_lock(%s, hashtext(%s))", (_MIGRATION_LOCK, schema))
        try:
            for name in roles.schemas(schema):
                await conn.execute(sql.SQL("create schema if not exists {}").format(sql.Identifier(name)))
            await conn.execute(
                "create table if not exists schema_migrations ("
                " name text primary key, applied_at timestamptz not null default now())"
            )
            cur = await conn.execute("select name from schema_migrations")
            done = {row[0] for row in await cur.fetchall()}
            if timescale is None or timescale:
                timescale = await timescale_available(conn)
            if timescale:
                # In public, whatever schema this run migrates: the extension is one per database, and a
                # test schema dropped with cascade would take it (and every other schema's hypertables) along.
                # The extension is database-wide: created under the database-wide lock.
                await conn.execute("select pg_advisory_lock(%s)", (_MIGRATION_LOCK,))
                try:
                    await conn.execute("create extension if not exists timescaledb with schema public")
                finally:
                    await conn.execute("select pg_advisory_unlock(%s)", (_MIGRATION_LOCK,))
            for migration in list_migrations():
                if migration.name in done or (migration.timescale_only and not timescale):
                    continue
                async with conn.transaction():
                    await conn.execute(migration.text.encode())
                    await conn.execute("insert into schema_migrations (name) values (%s)", (migration.name,))
                applied.append(migration.name)
                _LOGGER.info("applied migration %s to schema %s", migration.name, schema)
            moved = await place_relations(conn, schema)
            if moved:
                _LOGGER.info("moved %d relations and functions of schema %s to their owners'", moved, schema)
            await apply_grants(conn, schema)
        finally:
            await conn.execute("select pg_advisory_unlock(%s, hashtext(%s))", (_MIGRATION_LOCK, schema))
    return applied
