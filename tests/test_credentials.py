"""``gridsim credentials`` and ``gridsim certs``: generated once, private (0600), rotated, exported."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest
from cryptography import x509

from gridsim import credentials
from gridsim.certs import generate_certificates
from gridsim.cli import main
from gridsim_shared import access, roles
from gridsim_shared.settings import Settings


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_credentials_are_made_once_and_private(tmp_path: Path) -> None:
    first = credentials.load_or_create(tmp_path)
    path = tmp_path / credentials.FILE_NAME
    assert _mode(path) == 0o600
    assert set(first.mqtt) == set(access.USERS)
    assert set(first.db) == {"postgres", *roles.ROLES.values()}
    assert len(set(first.mqtt.values())) == len(first.mqtt)  # all different
    assert credentials.load_or_create(tmp_path) == first  # read back, not made again
    path.chmod(0o644)
    credentials.load_or_create(tmp_path)
    assert _mode(path) == 0o600  # a file someone opened up is closed again


def test_rotate_replaces_broker_passwords_only(tmp_path: Path) -> None:
    before = credentials.load_or_create(tmp_path)
    after = credentials.rotate(tmp_path, mqtt_users=["dashboard"])
    assert after.mqtt["dashboard"] != before.mqtt["dashboard"]
    assert {u: p for u, p in after.mqtt.items() if u != "dashboard"} == {
        u: p for u, p in before.mqtt.items() if u != "dashboard"
    }
    assert after.db == before.db
    assert json.loads((tmp_path / credentials.FILE_NAME).read_text())["mqtt"] == after.mqtt
    everyone = credentials.rotate(tmp_path)
    assert all(everyone.mqtt[u] != after.mqtt[u] for u in access.USERS)
    with pytest.raises(ValueError, match="no broker user"):
        credentials.rotate(tmp_path, mqtt_users=["root"])


def test_export_writes_the_brokers_files(tmp_path: Path) -> None:
    found = credentials.load_or_create(tmp_path / "data")
    written = credentials.export(found, tmp_path / "out", "gridsim")
    assert all(_mode(path) == 0o600 for path in written)
    passwd = (tmp_path / "out" / "passwd").read_text().splitlines()
    assert sorted(line.split(":", 1)[0] for line in passwd) == sorted(access.USERS)
    assert "user dashboard" in (tmp_path / "out" / "acl").read_text()
    env = (tmp_path / "out" / "operator.env").read_text()
    assert f"GRIDSIM_MQTT__PASSWORD={found.mqtt['operator']}" in env


def test_the_cli_shows_and_rotates(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["credentials", "--data-dir", str(tmp_path)]) == 0
    shown = capsys.readouterr().out
    found = credentials.load_or_create(tmp_path)
    assert f"dashboard    {found.mqtt['dashboard']}  (dashboards: read-only)" in shown
    assert main(["credentials", "rotate", "--data-dir", str(tmp_path), "--user", "operator"]) == 0
    assert credentials.load_or_create(tmp_path).mqtt["operator"] != found.mqtt["operator"]
    assert main(["credentials", "rotate", "--data-dir", str(tmp_path), "--user", "nobody"]) == 2


def test_certs_make_a_ca_and_certificates_it_signed(tmp_path: Path) -> None:
    assert main(["certs", str(tmp_path), "--host", "broker.example", "--host", "192.0.2.7"]) == 0
    ca = x509.load_pem_x509_certificate((tmp_path / "ca.crt").read_bytes())
    server = x509.load_pem_x509_certificate((tmp_path / "server.crt").read_bytes())
    server.verify_directly_issued_by(ca)
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "broker.example" in names.get_values_for_type(x509.DNSName)
    assert {str(a) for a in names.get_values_for_type(x509.IPAddress)} == {"192.0.2.7", "127.0.0.1"}
    assert all(_mode(tmp_path / f"{name}.key") == 0o600 for name in ("ca", "server", "client"))
    assert generate_certificates(tmp_path / "again")  # a second folder, independent of the first


def test_export_db_writes_each_services_login(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """What docker compose gives each container: its role and password (libpq's PGUSER/PGPASSWORD)."""
    data = tmp_path / "data"
    assert main(["credentials", "export-db", str(tmp_path / "db"), "--data-dir", str(data)]) == 0
    made = credentials.load_or_create(data)
    for service, role in roles.ROLES.items():
        path = tmp_path / "db" / f"{service}.env"
        assert _mode(path) == 0o600
        assert roles.read_env_file(path) == {"PGUSER": role, "PGPASSWORD": made.db[role]}
    owner = roles.read_env_file(tmp_path / "db" / "owner.env")
    assert owner == {"PGUSER": credentials.DB_SUPERUSER, "PGPASSWORD": made.db[credentials.DB_SUPERUSER]}
    assert roles.read_env_file(tmp_path / "db" / "postgres.env") == {"POSTGRES_PASSWORD": owner["PGPASSWORD"]}
    assert str(tmp_path / "db" / "billing.env") in capsys.readouterr().out


@pytest.mark.integration
def test_enable_logins_lets_each_role_log_in_with_its_password(settings: Settings, tmp_path: Path) -> None:
    """compose's migrate step: the roles the migrations made (nologin) get LOGIN and a SCRAM password."""
    made = credentials.Credentials.generate()
    credentials.export_db(made, tmp_path)
    enabled = roles.enable_logins(settings.db.url, tmp_path)
    assert enabled == sorted(roles.ROLES.values())  # owner.env (the superuser) is left alone
    with psycopg.connect(settings.db.url, autocommit=True) as conn:
        rows = conn.execute(
            "select rolname, rolcanlogin, rolpassword like 'SCRAM-SHA-256$%%' from pg_authid"
            " where rolname = any(%s) order by 1",
            (list(roles.ROLES.values()),),
        ).fetchall()
    assert rows == [(role, True, True) for role in sorted(roles.ROLES.values())]
