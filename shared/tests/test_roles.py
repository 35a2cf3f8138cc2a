"""Database roles and schemas: every relation lives in its owner's schema, and each role writes only its own
schema and reads only its own relations and what the other owners publish (roles.py)."""

from __future__ import annotations

import asyncio

import psycopg
import pytest
from psycopg import sql

from gridsim_shared import roles
from gridsim_shared.db import apply_migrations, drop_schemas, list_migrations, session_options
from gridsim_shared.settings import Settings

pytestmark = pytest.mark.integration


def _relations(conn: psycopg.Connection, base: str, kinds: tuple[str, ...]) -> dict[str, set[str]]:
    """Schema of the deployment ``base`` -> its relations of ``kinds``."""
    rows = conn.execute(
        "select n.nspname, c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace"
        " where n.nspname = any(%s) and c.relkind::text = any(%s)",
        (roles.schemas(base), list(kinds)),
    ).fetchall()
    found: dict[str, set[str]] = {schema: set() for schema in roles.schemas(base)}
    for schema, name in rows:
        found[schema].add(name)
    return found


def _owner_of(base: str, schema: str) -> str | None:
    """The service whose schema ``schema`` is (None for the deployment's own)."""
    return next((s for s in roles.owning_services() if roles.schema_of(base, s) == schema), None)


def test_every_relation_and_function_lives_in_its_owners_schema(settings: Settings) -> None:
    base = settings.db.schema_name
    with psycopg.connect(settings.db.url) as conn:
        relations = _relations(conn, base, ("r", "p", "v", "m", "f"))
        sequences = _relations(conn, base, ("S",))
        functions = conn.execute(
            "select n.nspname, p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')'"
            " from pg_proc p join pg_namespace n on n.oid = p.pronamespace where n.nspname = any(%s)",
            (roles.schemas(base),),
        ).fetchall()
    assert relations[base] == {"schema_migrations", *roles.SHARED_VIEWS}
    assert sequences[base] == set(roles.SHARED_SEQUENCES)
    for service in roles.owning_services():
        found = relations[roles.schema_of(base, service)]
        assert found, service
        assert {name for name in found if roles.OWNERS.get(name) != service} == set(), service
    assert {(schema, roles.FUNCTIONS.get(f)) for schema, f in functions} <= {
        (roles.schema_of(base, service), service) for service in roles.owning_services()
    }


def test_each_roles_privileges_are_its_schema_and_what_others_publish(settings: Settings) -> None:
    base = settings.db.schema_name
    with psycopg.connect(settings.db.url) as conn:
        tables = _relations(conn, base, ("r", "p"))
        readable = _relations(conn, base, ("r", "p", "v", "m", "f"))
        for service, role in roles.ROLES.items():
            for schema, names in readable.items():
                owner = _owner_of(base, schema)
                for name in sorted(names - {"schema_migrations"}):
                    qualified = f"{schema}.{name}"
                    row = conn.execute(
                        "select has_table_privilege(%s, %s, 'insert'), has_table_privilege(%s, %s, 'select')",
                        (role, qualified, role, qualified),
                    ).fetchone()
                    may_read = (
                        owner == service or owner is None or name in roles.PUBLISHED.get(owner or "", ())
                    )
                    assert row == (owner == service and name in tables[schema], may_read), (role, qualified)
            for sequence, users in roles.SHARED_SEQUENCES.items():
                row = conn.execute(
                    "select has_sequence_privilege(%s, %s, 'usage')", (role, f"{base}.{sequence}")
                ).fetchone()
                assert row == (service in users,), (role, sequence)


def test_the_billing_role_cannot_write_meter_sims_tables_nor_read_feasibilitys(settings: Settings) -> None:
    with psycopg.connect(
        settings.db.url, autocommit=True, options=session_options(settings.db.schema_name)
    ) as conn:
        conn.execute("set role gridsim_billing")
        assert conn.execute("select count(*) from meters").fetchone() == (0,)  # published: reading is fine
        for statement in (
            "insert into grid_nodes (code, name, level) values ('u', 'U', 'utility')",
            "update simulation_clock set speed = 1",
            "delete from meters",
            "truncate spikes",
            "select count(*) from control_log",  # meter-sim's, unpublished
            "select count(*) from connections",  # feasibility's, unpublished
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
        # and COPY ... TO PROGRAM (commands as the server's user) needs more than any service role has
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("copy (select 1) to program 'true'")


def test_connected_as_each_role_a_service_writes_its_own_schema_and_reads_only_what_is_published(
    settings: Settings,
) -> None:
    """Run real statements as each role: an INSERT, a DELETE and a SELECT that touch no row still need the
    privilege (PostgreSQL checks it before executing), so this proves the grants without changing data."""
    base = settings.db.schema_name
    with psycopg.connect(settings.db.url, autocommit=True, options=session_options(base)) as conn:
        tables = _relations(conn, base, ("r", "p"))
        readable = _relations(conn, base, ("r", "p", "v", "m", "f"))
        for service, role in roles.ROLES.items():
            conn.execute(sql.SQL("set role {}").format(sql.Identifier(role)))
            written: set[str] = set()
            read: set[str] = set()
            for schema in roles.schemas(base)[1:]:
                for name in sorted(readable[schema]):
                    relation = sql.Identifier(schema, name)
                    try:
                        conn.execute(sql.SQL("select from {} where false").format(relation))
                        read.add(f"{schema}.{name}")
                    except psycopg.errors.InsufficientPrivilege:
                        pass
                    if name not in tables[schema]:
                        continue
                    statements = (
                        sql.SQL("insert into {} overriding system value select * from {} where false").format(
                            relation, relation
                        ),
                        sql.SQL("delete from {} where false").format(relation),
                    )
                    done = 0
                    for statement in statements:
                        try:
                            conn.execute(statement)
                            done += 1
                        except psycopg.errors.InsufficientPrivilege:
                            pass
                    assert done in {0, 2}, (role, schema, name)
                    if done:
                        written.add(f"{schema}.{name}")
            own = roles.schema_of(base, service)
            assert written == {f"{own}.{name}" for name in tables.get(own, set())}, service
            published = {
                f"{schema}.{name}"
                for schema in roles.schemas(base)[1:]
                for name in readable[schema] & roles.PUBLISHED[_owner_of(base, schema) or ""]
            }
            assert read == {f"{own}.{name}" for name in readable.get(own, set())} | published, service
            assert conn.execute("select count(*) from events").fetchone() is not None  # the shared view
            conn.execute("reset role")


def test_a_deployment_migrated_in_one_schema_moves_to_one_per_owner_with_its_rows(settings: Settings) -> None:
    """A schema an older gridsim migrated (every relation in it, every role granted every table) upgrades:
    its relations move to their owners' schemas with their rows, and the old blanket grants go."""
    base = f"{settings.db.schema_name}_old"
    everyone = sql.SQL(", ").join(sql.Identifier(role) for role in roles.ROLES.values())
    try:
        with psycopg.connect(settings.db.url, autocommit=True, options=f"-c search_path={base}") as conn:
            conn.execute(sql.SQL("create schema {}").format(sql.Identifier(base)))
            conn.execute("create table schema_migrations (name text primary key, applied_at timestamptz)")
            for migration in list_migrations():
                if migration.number < 1050 and not migration.timescale_only:
                    with conn.transaction():
                        conn.execute(migration.text.encode())
                        conn.execute("insert into schema_migrations values (%s, now())", (migration.name,))
            conn.execute(sql.SQL("grant usage on schema {} to {}").format(sql.Identifier(base), everyone))
            conn.execute(
                sql.SQL("grant select on all tables in schema {} to {}").format(
                    sql.Identifier(base), everyone
                )
            )
            conn.execute("insert into grid_nodes (code, name, level) values ('u', 'U', 'utility')")
            conn.execute(
                "insert into meter_sim_events (type, severity, sim_time, subject, message) values ('x', 'info', now(), 'u', 'm')"
            )
        assert asyncio.run(apply_migrations(settings.db.url, base, timescale=False)) == [
            m.name for m in list_migrations() if m.number >= 1050 and not m.timescale_only
        ]
        with psycopg.connect(settings.db.url, autocommit=True, options=session_options(base)) as conn:
            meter_sim = roles.schema_of(base, "meter-sim")
            assert conn.execute(
                sql.SQL("select code from {}").format(sql.Identifier(meter_sim, "grid_nodes"))
            ).fetchall() == [("u",)]
            assert conn.execute("select count(*) from events").fetchone() == (1,)
            assert conn.execute("select version from grid_version").fetchone() == (
                1,
            )  # the trigger moved along
            row = conn.execute(
                "select has_table_privilege('gridsim_billing', %s, 'select')", (f"{meter_sim}.control_log",)
            ).fetchone()
            assert row == (False,)
            conn.execute("set role gridsim_meter_sim")
            conn.execute("insert into grid_nodes (code, name, level) values ('v', 'V', 'utility')")
            conn.execute(
                "insert into meter_sim_events (type, severity, sim_time, subject, message) values ('x', 'info', now(), 'v', 'm')"
            )
            assert conn.execute("select version from grid_version").fetchone() == (2,)
            assert conn.execute("select count(distinct id) from events").fetchone() == (2,)
    finally:
        with psycopg.connect(settings.db.url, autocommit=True) as conn:
            conn.execute(drop_schemas(base))
