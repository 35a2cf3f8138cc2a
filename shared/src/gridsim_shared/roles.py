"""Which service owns which relation, as database schemas and roles (docs/security.md).

Each service with data has a schema of its own in the deployment, ``<base>_<service>`` beside the
deployment's schema ``<base>`` (``settings.db.schema_name``), and connects as its own role
(``gridsim_meter_sim``, ...). A role may write only the tables of its own schema, and read only its own
relations and what the other owners publish (:data:`PUBLISHED`). ``<base>`` itself keeps the migration
record and what several owners share (:data:`SHARED_VIEWS`, :data:`SHARED_SEQUENCES`). A write that
belongs to another service is a command to it or an event it handles (docs/architecture.md).

Migrations create relations unqualified in ``<base>``; the runner then moves each to its owner's schema
(:func:`placement_statements`) and grants what this module says (:func:`grant_statements`), so a new
relation gets its schema and its grants from the line added here.
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
    "SHARED_SEQUENCES",
    "SHARED_VIEWS",
    "SchemaRelations",
    "enable_logins",
    "grant_statements",
    "owning_services",
    "placement_statements",
    "read_env_file",
    "role_of",
    "schema_of",
    "schemas",
    "search_path",
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

# relation (table, view, continuous aggregate) -> the service that owns it: it lives in that service's
# schema, which only its role writes
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
    # TimescaleDB: the continuous aggregates behind those views (0201), refreshed by the aggregator only
    "meter_data_15m_agg": "aggregator",
    "meter_data_1h_agg": "aggregator",
    "meter_data_1d_agg": "aggregator",
    "grid_rollups_15m_agg": "aggregator",
    "grid_rollups_1h_agg": "aggregator",
    "grid_rollups_1d_agg": "aggregator",
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

# function (its identity signature) -> the service that owns it: it lives in that service's schema, and
# that service's role is granted execute. The security-definer ones (run as the migrations' user for what
# PostgreSQL lets only a relation's owner do, migrations 1040 and 1050) revoke execute from public, so
# their owner's role alone may call them.
FUNCTIONS: dict[str, str] = {
    "meter_data_brin_summarize()": "aggregator",
    "meter_data_brin_desummarize(block bigint)": "aggregator",
    "bump_grid_version()": "meter-sim",  # grid_nodes' trigger (1010)
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
# They live in the deployment's schema, and every role reads them.
SHARED_VIEWS: dict[str, tuple[str, ...]] = {"events": ("aggregator_events", "meter_sim_events")}

# Sequences in the deployment's schema -> the services that draw ids from them: one id space for the tables
# of a shared view, each writer using it for its own table (1020, 1050).
SHARED_SEQUENCES: dict[str, tuple[str, ...]] = {"event_ids": ("aggregator", "meter-sim")}


def owning_services() -> list[str]:
    """The services that own relations, hence have a schema (the gateway has none), in :data:`ROLES`'s order."""
    owners = set(OWNERS.values())
    return [service for service in ROLES if service in owners]


def schema_of(base: str, service: str) -> str:
    """The schema of ``service``'s relations in the deployment whose schema is ``base``."""
    return f"{base}_{service.replace('-', '_')}"


def schemas(base: str) -> list[str]:
    """Every schema of the deployment ``base``: its own, then each owner's (what a test creates and drops)."""
    return [base, *(schema_of(base, service) for service in owning_services())]


def search_path(base: str) -> list[str]:
    """Every connection's search path: unqualified names resolve in whichever schema owns them (relation
    names are unique across owners), ``current_schema()`` is the deployment's, and a schema the connected
    role may not use is skipped by PostgreSQL."""
    return [*schemas(base), "public"]


def role_of(service: str) -> str:
    """The database role of ``service``."""
    return ROLES[service]


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


def placement_statements(
    base: str, relations: Iterable[tuple[str, str]], functions: Iterable[str] = ()
) -> list[sql.Composed]:
    """Move what migrations created in ``base`` to its owner's schema: the ``(relname, relkind)`` rows and
    function signatures found in ``base`` that :data:`OWNERS` and :data:`FUNCTIONS` name.

    A table takes its indexes, constraints, triggers and owned (serial) sequences along; views and
    foreign keys refer to relations by oid, so they follow. ``alter table`` moves every kind of relation
    (PostgreSQL accepts it for views too), and TimescaleDB 2.25 updates its catalogue for a hypertable or a
    continuous aggregate moved so, where ``alter view`` refuses a continuous aggregate (its chunks and
    materialization stay in TimescaleDB's own schemas).
    """
    statements = []
    for name, kind in sorted(relations):
        if name in OWNERS and kind in {"r", "p", "v", "m", "f"}:
            statements.append(
                sql.SQL("alter table {} set schema {}").format(
                    sql.Identifier(base, name),
                    sql.Identifier(schema_of(base, OWNERS[name])),
                )
            )
    for signature in sorted(functions):
        if signature in FUNCTIONS:
            # The signature is this module's own text, not input: it is spliced as SQL.
            statements.append(
                sql.SQL("alter function {}.{} set schema {}").format(
                    sql.Identifier(base),
                    sql.SQL(signature),
                    sql.Identifier(schema_of(base, FUNCTIONS[signature])),
                )
            )
    return statements


def grant_statements(base: str, found: dict[str, SchemaRelations]) -> list[sql.Composed]:
    """The grants of every role on the deployment ``base``, from what ``found`` in each of its schemas.

    Each owner's role uses and reads everything of its schema and writes its plain tables (a TimescaleDB
    continuous aggregate is a view that only its refresh writes); the other roles read only what the owner
    publishes. Every role reads the shared views of ``base``, and the writers of their tables draw ids from
    the shared sequences. Whatever a role held before is revoked first (a schema migrated by an older
    gridsim granted every role every table). Every relation is named rather than "all tables in schema",
    which PostgreSQL resolves with a scan of the whole catalog per statement.
    """

    def listed(schema: str, names: Iterable[str]) -> sql.Composed:
        return sql.SQL(", ").join(sql.Identifier(schema, name) for name in sorted(names))

    def to(*services: str) -> sql.Composed:
        return sql.SQL(", ").join(sql.Identifier(ROLES[service]) for service in services)

    everyone = list(ROLES)
    nothing = SchemaRelations(frozenset(), frozenset(), frozenset())
    statements = []
    for schema in schemas(base):
        statements.append(
            sql.SQL("grant usage on schema {} to {}").format(sql.Identifier(schema), to(*everyone))
        )
        relations = found.get(schema, nothing)
        if relations.readable:
            statements.append(
                sql.SQL("revoke all on {} from {}").format(listed(schema, relations.readable), to(*everyone))
            )
        if relations.sequences:
            statements.append(
                sql.SQL("revoke all on sequence {} from {}").format(
                    listed(schema, relations.sequences), to(*everyone)
                )
            )
    shared = found.get(base, nothing)
    views = shared.readable & set(SHARED_VIEWS)
    if views:
        statements.append(sql.SQL("grant select on {} to {}").format(listed(base, views), to(*everyone)))
    for sequence in sorted(shared.sequences & set(SHARED_SEQUENCES)):
        statements.append(
            sql.SQL("grant usage, select on sequence {} to {}").format(
                sql.Identifier(base, sequence), to(*SHARED_SEQUENCES[sequence])
            )
        )
    for service in owning_services():
        schema = schema_of(base, service)
        relations = found.get(schema, nothing)
        if relations.readable:
            statements.append(
                sql.SQL("grant select on {} to {}").format(listed(schema, relations.readable), to(service))
            )
        published = relations.readable & PUBLISHED[service]
        others = [other for other in everyone if other != service]
        if published:
            statements.append(
                sql.SQL("grant select on {} to {}").format(listed(schema, published), to(*others))
            )
        if relations.tables:
            statements.append(
                sql.SQL("grant insert, update, delete, truncate on {} to {}").format(
                    listed(schema, relations.tables), to(service)
                )
            )
        if relations.sequences:
            statements.append(
                sql.SQL("grant usage, select on sequence {} to {}").format(
                    listed(schema, relations.sequences), to(service)
                )
            )
        for signature in sorted(relations.functions):
            if FUNCTIONS.get(signature) == service:
                # The signature is this module's own text, not input: it is spliced as SQL.
                statements.append(
                    sql.SQL("grant execute on function {}.{} to {}").format(
                        sql.Identifier(schema), sql.SQL(signature), to(service)
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
