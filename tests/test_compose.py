"""docker-compose.yml and deploy/Dockerfile agree with the code: entry points, settings, lock file.

Docker is not needed: the files are read as data.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from gridsim.launcher import SERVICES
from gridsim_shared import roles
from gridsim_shared.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
DOCKERFILE = (ROOT / "deploy" / "Dockerfile").read_text()


def _built_services() -> dict[str, str]:
    """Compose service name -> the SERVICE build argument it builds with."""
    return {
        name: spec["build"]["args"]["SERVICE"]
        for name, spec in COMPOSE["services"].items()
        if "build" in spec
    }


def _environment(spec: dict[str, Any]) -> dict[str, str]:
    env = spec.get("environment") or {}
    if isinstance(env, list):  # the KEY=value list form
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def _env_files(spec: dict[str, Any]) -> list[str]:
    files = spec.get("env_file") or []
    return [files] if isinstance(files, str) else list(files)


def settings_field_exists(variable: str, model: type[BaseModel] = Settings) -> bool:
    """Whether ``GRIDSIM_A__B`` names a field of ``Settings`` (``a.b``), walking nested models."""
    prefix = "GRIDSIM_"
    if not variable.upper().startswith(prefix):
        return False
    current: Any = model
    for part in variable[len(prefix) :].lower().split("__"):
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return False  # a path that goes deeper than the settings do
        field = current.model_fields.get(part)
        if field is None:
            return False
        current = field.annotation
    return True


def test_every_service_is_in_compose_and_built_from_the_one_dockerfile() -> None:
    built = _built_services()
    assert set(SERVICES) <= set(built)
    assert set(built.values()) <= set(SERVICES)
    for name, spec in COMPOSE["services"].items():
        if name in SERVICES:
            assert built[name] == name
            assert Path(spec["build"]["dockerfile"]) == Path("deploy/Dockerfile")
            assert spec["build"]["context"] == "."


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_service_declares_its_console_script(service: str) -> None:
    package_dir = ROOT / "services" / service
    project = tomllib.loads((package_dir / "pyproject.toml").read_text())
    target = project["project"]["scripts"][f"gridsim-{service}"]
    module, _, function = target.partition(":")
    assert module == f"{SERVICES[service]}.__main__"
    source = package_dir / "src" / Path(*module.split(".")).with_suffix(".py")
    assert re.search(rf"^def {function}\(", source.read_text(), re.MULTILINE), f"{source} has no {function}()"


def test_every_gridsim_variable_in_compose_is_a_setting() -> None:
    variables = {
        key
        for spec in COMPOSE["services"].values()
        for key in _environment(spec)
        if key.upper().startswith("GRIDSIM_")
    }
    assert {"GRIDSIM_MQTT__URL", "GRIDSIM_DB__URL"} <= variables
    assert sorted(v for v in variables if not settings_field_exists(v)) == []


def test_the_settings_walker_rejects_what_is_not_a_field() -> None:
    assert settings_field_exists("GRIDSIM_GATEWAY__PORT")
    assert not settings_field_exists("GRIDSIM_GATEWAY__PROT")
    assert not settings_field_exists("GRIDSIM_MQTT__URL__HOST")
    assert not settings_field_exists("GRIDSIM_NOPE")
    assert not settings_field_exists("MQTT__URL")


def test_dockerfile_installs_one_service_from_the_lock_file() -> None:
    assert re.search(r"^FROM python:3\.11-slim", DOCKERFILE, re.MULTILINE)
    sync = re.search(r"uv sync[^\n]*", DOCKERFILE)
    assert sync is not None
    assert "--frozen" in sync.group()
    assert "--no-dev" in sync.group()
    assert '--package "gridsim-${SERVICE}"' in sync.group()
    assert re.search(r"^CMD .*gridsim-\$\{SERVICE\}", DOCKERFILE, re.MULTILINE)


def test_gateway_is_published_on_8000_and_listens_on_all_interfaces() -> None:
    gateway = COMPOSE["services"]["gateway"]
    assert any(str(port).endswith("8000:8000") for port in gateway["ports"])
    env = _environment(gateway)
    assert env["GRIDSIM_GATEWAY__HOST"] == "0.0.0.0"
    assert env["GRIDSIM_GATEWAY__PORT"] == "8000"


def test_compose_points_at_files_that_exist() -> None:
    mounts = [m for spec in COMPOSE["services"].values() for m in spec.get("volumes", [])]
    for mount in mounts:
        source = mount.split(":", 1)[0]
        # deploy/secrets/ is made by `make secrets` (certificates, broker logins), never committed
        if source.startswith("./") and not source.startswith("./deploy/secrets"):
            assert (ROOT / source).exists(), source  # a file, or a folder (Grafana's provisioning)
    assert "timescale/timescaledb:latest-pg16" in {spec.get("image") for spec in COMPOSE["services"].values()}


def test_the_broker_needs_tls_and_a_login_and_each_service_has_its_own() -> None:
    conf = (ROOT / "mosquitto.conf").read_text()
    assert "allow_anonymous false" in conf
    assert "allow_anonymous true" not in conf
    assert re.search(r"^listener 8883$", conf, re.MULTILINE)
    assert not re.search(r"^listener 1883", conf, re.MULTILINE)
    for name in SERVICES:
        spec = COMPOSE["services"][name]
        assert f"deploy/secrets/mqtt/{name}.env" in _env_files(spec)
        assert _environment(spec)["GRIDSIM_MQTT__URL"].startswith("mqtts://")
    makefile = (ROOT / "Makefile").read_text()
    assert "gridsim certs deploy/secrets/certs" in makefile
    assert "gridsim credentials export deploy/secrets/mqtt" in makefile


def test_prometheus_scrapes_every_service_and_grafana_is_provisioned() -> None:
    import json

    scrape = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    targets = {
        t.split(":")[0]
        for job in scrape["scrape_configs"]
        for c in job["static_configs"]
        for t in c["targets"]
    }
    assert targets == set(SERVICES)
    assert {"prometheus", "grafana"} <= set(COMPOSE["services"])
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "dashboards" / "gridsim.json").read_text())
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    for metric in ("gridsim_flush_seconds", "gridsim_rpc_seconds", "gridsim_bus_reconnects", "dead_letters"):
        assert metric in exprs


def test_each_service_has_its_own_database_login() -> None:
    """Like the embedded PostgreSQL: every service but the aggregator connects as its role (its own
    db/SERVICE.env), the aggregator and the migrations as the owner (continuous aggregates need it), and
    no password sits in the compose file."""
    url = _environment(COMPOSE["services"]["billing"])["GRIDSIM_DB__URL"]
    assert "@" not in url  # user and password come from PGUSER / PGPASSWORD in the env files
    for name in SERVICES:
        db_files = [f for f in _env_files(COMPOSE["services"][name]) if f.startswith("deploy/secrets/db/")]
        expected = "owner" if name == "aggregator" else name
        assert db_files == [f"deploy/secrets/db/{expected}.env"], (name, db_files)
        assert name in roles.ROLES
    migrate = COMPOSE["services"]["migrate"]
    assert _env_files(migrate) == ["deploy/secrets/db/owner.env"]
    assert "./deploy/secrets/db:/run/gridsim/db:ro" in migrate["volumes"]
    assert "enable_logins(" in " ".join(migrate["command"])
    assert _env_files(COMPOSE["services"]["timescaledb"]) == ["deploy/secrets/db/postgres.env"]
    assert "POSTGRES_PASSWORD" not in _environment(COMPOSE["services"]["timescaledb"])
    assert "${POSTGRES_PASSWORD" not in (ROOT / "docker-compose.yml").read_text()
    assert "gridsim credentials export-db deploy/secrets/db" in (ROOT / "Makefile").read_text()
