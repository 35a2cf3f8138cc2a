"""Static check of data ownership (issue 13): no service's SQL writes another service's table, and what a
service reads of another is only what that owner publishes (``roles.PUBLISHED``, ``roles.SHARED_VIEWS``).

It scans every service's source for table names after SQL keywords (``from``, ``join``, ``into``,
``update``, ``delete from``, ``truncate``) and in the World Engine adapter's ``source="…"`` mappings.
The database enforces the write half at run time too (shared/tests/test_roles.py).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from gridsim_shared import roles
from gridsim_shared.settings import DbSettings

ROOT = Path(__file__).resolve().parents[1]
SERVICES = ("meter-sim", "aggregator", "billing", "feasibility", "utility", "gateway")

_READ = re.compile(r"\b(?:from|join)\s+([a-z_][a-z0-9_]*)", re.IGNORECASE)
_WRITE = re.compile(
    r"\b(?:insert\s+into|update|delete\s+from|truncate(?:\s+table)?|copy)\s+([a-z_][a-z0-9_]*)", re.IGNORECASE
)
_SOURCE = re.compile(r"\bsource\s*=\s*\"([a-z_][a-z0-9_]*)\"")


def _known() -> set[str]:
    return set(roles.OWNERS) | set(roles.SHARED_VIEWS)


def _references(service: str, pattern: re.Pattern[str]) -> dict[str, set[str]]:
    """Table name -> the files of ``service`` that name it after ``pattern``."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / "services" / service / "src").rglob("*.py")):
        for match in pattern.finditer(path.read_text(encoding="utf-8")):
            name = match.group(1)
            if name in _known():
                found.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    return found


def test_no_service_writes_another_services_tables() -> None:
    crossing = {
        (service, table, owner, tuple(sorted(files)))
        for service in SERVICES
        for table, files in _references(service, _WRITE).items()
        if (owner := roles.OWNERS.get(table, "several")) != service
    }
    assert crossing == set()


def test_a_service_reads_of_another_only_what_it_publishes() -> None:
    unpublished = set()
    for service in SERVICES:
        reads = _references(service, _READ)
        for table, files in _references(service, _SOURCE).items():
            reads.setdefault(table, set()).update(files)
        for table, files in reads.items():
            if table in roles.SHARED_VIEWS:
                continue
            owner = roles.OWNERS[table]
            if owner != service and table not in roles.PUBLISHED[owner]:
                unpublished.add((service, table, owner, tuple(sorted(files))))
    assert unpublished == set()


def test_published_tables_and_shared_views_name_real_owned_tables() -> None:
    for owner, tables in roles.PUBLISHED.items():
        assert owner in roles.ROLES
        assert {t for t in tables if roles.OWNERS.get(t) != owner} == set(), owner
    for view, parts in roles.SHARED_VIEWS.items():
        assert view not in roles.OWNERS
        assert all(part in roles.OWNERS for part in parts), view
    for sequence, users in roles.SHARED_SEQUENCES.items():
        assert sequence not in roles.OWNERS
        assert set(users) <= set(roles.owning_services()), sequence


def test_every_owners_schema_fits_beside_the_longest_deployment_schema() -> None:
    """PostgreSQL cuts names at 63 bytes: settings allow a deployment schema of 51 characters, which leaves
    room for every owner's suffix, and no two services' schemas are the same."""
    base = "x" * 51
    assert DbSettings(schema_name=base).schema_name == base
    with pytest.raises(ValidationError):
        DbSettings(schema_name=base + "x")
    assert max(len(name) for name in roles.schemas(base)) <= 63
    assert len(set(roles.schemas(base))) == 1 + len(roles.owning_services())


def test_the_scan_sees_sql_it_must_catch() -> None:
    """The patterns are what the test relies on: a write and a read of each shape is found."""
    sample = (
        '"insert into meters (code) values (%s)"  "UPDATE grid_nodes set x = 1"  "delete from connections"\n'
        '"truncate table bills"  "select * from spikes s join outages o"  source="dr_log"'
    )
    assert [m.group(1) for m in _WRITE.finditer(sample)] == ["meters", "grid_nodes", "connections", "bills"]
    assert [m.group(1) for m in _READ.finditer(sample)] == ["connections", "spikes", "outages"]
    assert [m.group(1) for m in _SOURCE.finditer(sample)] == ["dr_log"]
