"""Which service owns which table, as database roles (docs/security.md).

Each service connects as its own role (``gridsim_meter_sim``, ...). Every role may read every table of
the schema (the gateway answers from all of them); a role may write only the tables its service owns.
A write that belongs to another service is a command to it or an event it handles (docs/architecture.md). :func:`grant_statements` turns this module into SQL; the migration runner applies it
after the migrations, so a new table gets its grants from the line added here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from psycopg import sql

__all__ = [
    "FUNCTIONS",
    "OWNERS",
    "PUBLISHED",
    "ROLES",
    "SHARED_VIEWS",
    "SchemaRelations",
    "enable_logins",
    "grant_statements",
    "read_env_file",
    "role_of",
    "writable",
]

# service -> its database role
ROLES: dict[str, str] = {
    "meter-sim": "gridsim_meter_sim",
    "aggregator": "gridsim_aggregator",
    "billing": "gridsim_billing",
    "feasibility": "gridsim_feasibility",
    "utility": "gridsim_utility",
    "gateway": "gridsim_gateway",
}

# table -> the service that owns it (writes it; the others read it)
OWNERS: dict[str, str] = {
    "grid_nodes": "meter-sim",
    "appliances": "meter-sim",
    "energy_resources": "meter-sim",
    "ders": "meter-sim",
    "meters": "meter-sim",
    "simulation_clock": "meter-sim",
    "control_log": "meter-sim",
    "spikes": "meter-sim",
    "flex_events": "meter-sim",
    "outages": "meter-sim",
    "outage_meters": "meter-sim",
    "meter_registers": "meter-sim",
    "world_state": "meter-sim",
    "meter_sim_events": "meter-sim",
    "grid_version": "meter-sim",
    "meter_data": "aggregator",
    "meter_data_15m": "aggregator",
    "meter_data_1h": "aggregator",
    "meter_data_1d": "aggregator",
    "grid_rollups": "aggregator",
    "grid_rollups_15m": "aggregator",
    "grid_rollups_1h": "aggregator",
    "grid_rollups_1d": "aggregator",
    # views: a meter's bucket as a reading (mean voltage, current, power factor), migration 0230
    "meter_readings_15m": "aggregator",
    "meter_readings_1h": "aggregator",
    "meter_readings_1d": "aggregator",
    # TimescaleDB: the plain rollup tables kept under these names beside the continuous aggregates (0201)
    "meter_data_15m_history": "aggregator",
    "meter_data_1h_history": "aggregator",
    "meter_data_1d_history": "aggregator",
    "grid_rollups_15m_history": "aggregator",
    "grid_rollups_1h_history": "aggregator",
    "grid_rollups_1d_history": "aggregator",
    "ingest_batches": "aggregator",
    "ingest_expected": "aggregator",
    "ingest_gaps": "aggregator",
    "aggregator_state": "aggregator",
    "late_intervals": "aggregator",
    "aggregator_instances": "aggregator",
    "transformer_thermal": "aggregator",
    "aggregator_events": "aggregator",
    "dead_letters": "aggregator",
    "p2p_trades": "billing",
    "p2p_settlements": "billing",
    "bills": "billing",
    "billing_months": "billing",
    "connections": "feasibility",
    "feasibility_state": "feasibility",
    "utility_forecasts": "utility",
    "dr_programs": "utility",
    "dr_enrolments": "utility",
    "dr_events": "utility",
    "dr_participation": "utility",
    "dr_log": "utility",
    "openadr_vens": "utility",
    "dynamic_bills": "utility",
    "utility_bill_months": "utility",
}

# function (its identity signature) -> the only service whose role may execute it: functions that run as
# their owner for what PostgreSQL lets only a relation's owner do (migration 1040). Revoked from public.
FUNCTIONS: dict[str, str] = {
    "meter_data_brin_summarize()": "aggregator",
    "meter_data_brin_desummarize(block bigint)": "aggregator",
}

# owner -> what it publishes for the other services to read: its read model, a contract it versions in
# migrations like any other (a column renamed there is a change for its readers). Everything else of the
# owner is private: tests/test_ownership.py fails on SQL in another service that names it.
PUBLISHED: dict[str, frozenset[str]] = {
    "meter-sim": frozenset(
        {
            "grid_nodes",
            "meters",
            "energy_resources",
            "ders",
            "appliances",
            "simulation_clock",
            "world_state",  # the world's generation: owners of derived data compare theirs with it
            "grid_version",  # the transformer set's version: feasibility's cache key
        }
    ),
    "aggregator": frozenset(
        {
            "meter_data",
            "meter_data_15m",
            "meter_data_1h",
            "meter_data_1d",
            "meter_readings_15m",  # a bucket as a reading: the bucket physics, written once (0230)
            "meter_readings_1h",
            "meter_readings_1d",
            "grid_rollups",
            "grid_rollups_15m",
            "grid_rollups_1h",
            "grid_rollups_1d",
            "aggregator_state",  # the watermark (committed_until)
        }
    ),
    "billing": frozenset({"p2p_trades"}),
    "feasibility": frozenset(),
    "utility": frozenset(),
}

# Views over the rows of several owners, each owner writing only its own table below (migration 1020).
SHARED_VIEWS: dict[str, tuple[str, ...]] = {"events": ("aggregator_events", "meter_sim_events")}


def role_of(service: str) -> str:
    """The database role of ``service``."""
    return ROLES[service]


def writable(service: str) -> list[str]:
    """Tables ``service`` may write: the ones it owns, and no other (issue 13: no cross-writes)."""
    return [table for table, owner in OWNERS.items() if owner == service]


@dataclass(frozen=True)
class SchemaRelations:
    """What exists in a schema, by what the grants need: plain tables (writable by their owner),
    everything readable (tables, views, materialized and foreign tables), sequences and the functions
    (by identity signature) that :data:`FUNCTIONS` grants."""

    tables: frozenset[str]
    readable: frozenset[str]
    sequences: frozenset[str]
    functions: frozenset[str] = frozenset()

    @classmethod
    def of(cls, relations: Iterable[tuple[str, str]], functions: Iterable[str] = ()) -> SchemaRelations:
        """From ``(relname, relkind)`` rows of ``pg_class`` and the schema's function signatures."""
        by_kind: dict[str, set[str]] = {}
        for name, kind in relations:
            by_kind.setdefault(kind, set()).add(name)
        tables = by_kind.get("r", set()) | by_kind.get("p", set())
        views = by_kind.get("v", set()) | by_kind.get("m", set()) | by_kind.get("f", set())
        return cls(
            frozenset(tables),
            frozenset(tables | views),
            frozenset(by_kind.get("S", set())),
            frozenset(functions),
        )


def grant_statements(schema: str, relations: SchemaRelations) -> list[sql.Composed]:
    """The grants of every role on ``schema``: read everything, write what it owns.

    Only the plain tables that exist there are granted writes (a TimescaleDB continuous aggregate is a
    view that only its refresh writes; a table of a later migration not applied yet is skipped). Every
    relation is named rather than "all tables in schema", which PostgreSQL resolves with a scan of the
    whole catalog per statement.
    """

    def listed(names: Iterable[str]) -> sql.Composed:
        return sql.SQL(", ").join(sql.Identifier(schema, name) for name in sorted(names))

    every_role = sql.SQL(", ").join(sql.Identifier(role) for role in ROLES.values())
    statements = [sql.SQL("grant usage on schema {} to {}").format(sql.Identifier(schema), every_role)]
    if relations.readable:
        readable = listed(relations.readable)
        statements += [
            # Revoked first: a schema migrated by an older gridsim granted cross-writes since removed.
            sql.SQL("revoke insert, update, delete, truncate on {} from {}").format(readable, every_role),
            sql.SQL("grant select on {} to {}").format(readable, every_role),
        ]
    if relations.sequences:
        statements.append(
            sql.SQL("grant usage, select on sequence {} to {}").format(
                listed(relations.sequences), every_role
            )
        )
    for service, role in ROLES.items():
        owned = [table for table in writable(service) if table in relations.tables]
        if owned:
            statements.append(
                sql.SQL("grant insert, update, delete, truncate on {} to {}").format(
                    listed(owned), sql.Identifier(role)
                )
            )
    for signature, service in FUNCTIONS.items():
        if signature in relations.functions:
            # The signature is this module's own text, not input: it is spliced as SQL.
            statements.append(
                sql.SQL("grant execute on function {}.{} to {}").format(
                    sql.Identifier(schema), sql.SQL(signature), sql.Identifier(ROLES[service])
                )
            )
    return statements


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=value`` lines of an env file (what ``gridsim credentials export-db`` writes)."""
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {key.strip(): value.strip() for key, value in pairs if not key.lstrip().startswith("#")}


def enable_logins(conninfo: str, folder: Path) -> list[str]:
    """Let each service role named in ``folder``'s ``*.env`` files (``PGUSER``/``PGPASSWORD``) log in
    with its password; returns the roles enabled.

    docker compose's one-shot ``migrate`` runs it after the migrations (which create the roles ``nologin``),
    so each service then connects as its own role, as ``gridsim up`` does with the embedded PostgreSQL.
    Files naming another user (the superuser's ``owner.env``) are left alone.
    """
    import psycopg

    logins = {}
    for path in sorted(folder.glob("*.env")):
        env = read_env_file(path)
        if env.get("PGUSER") in ROLES.values() and env.get("PGPASSWORD"):
            logins[env["PGUSER"]] = env["PGPASSWORD"]
    with psycopg.connect(conninfo, autocommit=True, connect_timeout=10) as conn:
        for role, password in logins.items():
            conn.execute(
                sql.SQL("alter role {} with login password {}").format(
                    sql.Identifier(role), sql.Literal(password)
                )
            )
    return sorted(logins)
