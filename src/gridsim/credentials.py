"""The credentials ``gridsim up`` generates into the data folder, and ``gridsim credentials``.

``{data_dir}/credentials.json`` (mode 0600) holds one broker password per user of
:data:`gridsim_shared.access.RIGHTS` (each service, ``dashboard``, ``operator``) and one database password
per service role plus the embedded PostgreSQL's superuser (:mod:`gridsim_shared.roles`). Made on first
use; ``rotate`` replaces them (the next ``gridsim up`` hands the new ones out); ``export`` writes the
files a Mosquitto of your own needs (``passwd``, ``acl``) and an env file per service.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gridsim_shared import access, roles

__all__ = ["FILE_NAME", "Credentials", "export", "load_or_create", "rotate", "write_private"]

FILE_NAME = "credentials.json"
DB_SUPERUSER = "postgres"


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path``, readable by its owner only (0600) from the first byte on."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(text)
    path.chmod(0o600)  # an older file keeps its mode through O_CREAT


@dataclass
class Credentials:
    """Broker passwords by user, database passwords by role."""

    mqtt: dict[str, str] = field(default_factory=dict)
    db: dict[str, str] = field(default_factory=dict)

    @classmethod
    def generate(cls) -> Credentials:
        return cls(
            mqtt={user: access.generate_password() for user in access.USERS},
            db={role: access.generate_password() for role in (DB_SUPERUSER, *roles.ROLES.values())},
        )

    def complete(self) -> bool:
        """Add what a newer gridsim expects (a user or role added since); True when something was added."""
        fresh = Credentials.generate()
        missing = {u: p for u, p in fresh.mqtt.items() if u not in self.mqtt}
        missing_db = {r: p for r, p in fresh.db.items() if r not in self.db}
        self.mqtt |= missing
        self.db |= missing_db
        return bool(missing or missing_db)

    def to_json(self) -> str:
        body: dict[str, Any] = {"mqtt": self.mqtt, "db": self.db}
        return json.dumps(body, indent=2) + "\n"

    def save(self, data_dir: Path) -> Path:
        path = data_dir / FILE_NAME
        write_private(path, self.to_json())
        return path


def load_or_create(data_dir: Path) -> Credentials:
    """The data folder's credentials, generated (and saved 0600) when missing or incomplete."""
    path = data_dir / FILE_NAME
    if path.is_file():
        raw = json.loads(path.read_text())
        credentials = Credentials(mqtt=dict(raw.get("mqtt", {})), db=dict(raw.get("db", {})))
        if credentials.complete():
            credentials.save(data_dir)
        elif path.stat().st_mode & 0o077:
            path.chmod(0o600)
        return credentials
    credentials = Credentials.generate()
    credentials.save(data_dir)
    return credentials


def rotate(data_dir: Path, *, mqtt_users: list[str] | None = None) -> Credentials:
    """New broker passwords for ``mqtt_users`` (all when None); database passwords are kept.

    Database passwords live in the cluster too; the embedded server is given the stored ones at every start.
    """
    credentials = load_or_create(data_dir)
    for user in mqtt_users if mqtt_users is not None else list(credentials.mqtt):
        if user not in access.RIGHTS:
            msg = f"no broker user {user!r} (users: {', '.join(access.USERS)})"
            raise ValueError(msg)
        credentials.mqtt[user] = access.generate_password()
    credentials.save(data_dir)
    return credentials


def export(
    credentials: Credentials, target: Path, base_topic: str, discovery: str = "homeassistant"
) -> list[Path]:
    """Write Mosquitto's ``passwd`` and ``acl`` and one ``{user}.env`` per broker user into ``target`` (0600)."""
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in (
        ("passwd", access.mosquitto_passwords(credentials.mqtt)),
        ("acl", access.mosquitto_acl(base_topic, discovery=discovery)),
    ):
        write_private(target / name, text)
        written.append(target / name)
    for user, password in credentials.mqtt.items():
        path = target / f"{user}.env"
        write_private(path, f"GRIDSIM_MQTT__USERNAME={user}\nGRIDSIM_MQTT__PASSWORD={password}\n")
        written.append(path)
    return written


def export_db(credentials: Credentials, target: Path) -> list[Path]:
    """Write the database logins for docker compose into ``target`` (0600): ``{service}.env`` with each
    service's role and password (libpq's ``PGUSER``/``PGPASSWORD``), ``owner.env`` with the superuser's
    (the migrations, and the aggregator on TimescaleDB: refreshing a continuous aggregate needs its owner),
    and ``postgres.env`` with ``POSTGRES_PASSWORD`` for the database container's first start."""
    target.mkdir(parents=True, exist_ok=True)
    superuser = credentials.db[DB_SUPERUSER]
    files = {
        f"{service}.env": f"PGUSER={role}\nPGPASSWORD={credentials.db[role]}\n"
        for service, role in roles.ROLES.items()
    }
    files["owner.env"] = f"PGUSER={DB_SUPERUSER}\nPGPASSWORD={superuser}\n"
    files["postgres.env"] = f"POSTGRES_PASSWORD={superuser}\n"
    written = []
    for name, text in files.items():
        write_private(target / name, text)
        written.append(target / name)
    return written
