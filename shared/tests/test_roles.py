"""Database roles: every table has an owner, and each role may write only what roles.py says."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import sql

from gridsim_shared import roles
from gridsim_shared.settings import Settings

pytestmark = pytest.mark.integration


def _tables(conn: psycopg.Connection, schema: str) -> set[str]:
    rows = conn.execute(
        "select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace"
        " where n.nspname = %s and c.relkind in ('r', 'p')",
        (schema,),
    ).fetchall()
    return {row[0] for row in rows} - {"schema_migrations"}


def test_every_table_has_an_owning_service(settings: Settings) -> None:
    with psycopg.connect(settings.db.url) as conn:
        tables = _tables(conn, settings.db.schema_name)
    assert tables - set(roles.OWNERS) == set()


def test_each_role_writes_exactly_its_tables(settings: Settings) -> None:
    schema = settings.db.schema_name
    with psycopg.connect(settings.db.url) as conn:
        for service, role in roles.ROLES.items():
            for table in _tables(conn, schema):
                qualified = f"{schema}.{table}"
                row = conn.execute(
                    "select has_table_privilege(%s, %s, 'insert'), has_table_privilege(%s, %s, 'select')",
                    (role, qualified, role, qualified),
                ).fetchone()
                assert row == (table in roles.writable(service), True), (role, table)


def test_the_billing_role_cannot_write_meter_sims_tables(settings: Settings) -> None:
    schema = settings.db.schema_name
    with psycopg.connect(settings.db.url, autocommit=True) as conn:
        conn.execute(sql.SQL("set search_path to {}").format(sql.Identifier(schema)))
        conn.execute("set role gridsim_billing")
        assert conn.execute("select count(*) from meters").fetchone() == (0,)  # reading is fine
        for statement in (
            "insert into grid_nodes (code, name, level) values ('u', 'U', 'utility')",
            "update simulation_clock set speed = 1",
            "delete from meters",
            "truncate spikes",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
        # and COPY ... TO PROGRAM (commands as the server's user) needs more than any service role has
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("copy (select 1) to program 'true'")


def test_connected_as_each_role_a_service_writes_its_own_tables_and_no_other(settings: Settings) -> None:
    """Run real statements as each role: an INSERT and a DELETE that touch no row still need the privilege
    (PostgreSQL checks it before executing), so this proves the grants without changing data."""
    schema = settings.db.schema_name
    with psycopg.connect(settings.db.url, autocommit=True) as conn:
        tables = sorted(_tables(conn, schema))
        conn.execute(sql.SQL("set search_path to {}").format(sql.Identifier(schema)))
        for service, role in roles.ROLES.items():
            conn.execute(sql.SQL("set role {}").format(sql.Identifier(role)))
            allowed: set[str] = set()
            for table in tables:
                name = sql.Identifier(table)
                statements = (
                    sql.SQL("insert into {} overriding system value select * from {} where false").format(
                        name, name
                    ),
                    sql.SQL("delete from {} where false").format(name),
                )
                written = 0
                for statement in statements:
                    try:
                        conn.execute(statement)
                        written += 1
                    except psycopg.errors.InsufficientPrivilege:
                        pass
                assert written in {0, 2}, (role, table)
                if written:
                    allowed.add(table)
            assert conn.execute("select count(*) from events").fetchone() is not None  # the published view
            conn.execute("reset role")
            assert allowed == set(roles.writable(service)) & set(tables), service
