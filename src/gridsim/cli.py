"""The ``gridsim`` command: ``up``, ``migrate``, ``step``, ``export``, ``status``, ``realism``, ``credentials``
and ``certs``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from gridsim.cli_data import add_commands as add_data_commands
from gridsim.cli_data import run_export, run_step

__all__ = ["build_parser", "main"]


def _port(text: str) -> int:
    value = int(text)
    if not 0 < value < 65536:
        msg = f"not a TCP port: {text}"
        raise argparse.ArgumentTypeError(msg)
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gridsim", description="gridsim: a simulated smart-meter data server."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging from the launcher")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = commands.add_parser(
        "up",
        help="start broker, database and the six services; Ctrl-C stops everything",
        description=(
            "Uses the broker and database set by GRIDSIM_MQTT__URL / GRIDSIM_DB__URL (environment or .env) "
            "when they are set and answer; otherwise starts private ones on 127.0.0.1."
        ),
    )
    up.add_argument("--embedded", action="store_true", help="always start a private broker and PostgreSQL")
    up.add_argument(
        "--data-dir",
        type=Path,
        default=Path(".gridsim"),
        help="where embedded servers keep their data and logs (default: .gridsim)",
    )
    up.add_argument(
        "--http-port", type=_port, help="gateway HTTP port (default: GRIDSIM_GATEWAY__PORT or 8000)"
    )
    up.add_argument("--mqtt-port", type=_port, help="port of the embedded broker (default: a free one)")
    up.add_argument("--pg-port", type=_port, help="port of the embedded PostgreSQL (default: a free one)")
    up.add_argument(
        "--no-demo", action="store_true", help="start with an empty world instead of the demo grid"
    )
    up.add_argument(
        "--timescale",
        action="store_true",
        help=(
            "store on TimescaleDB: the configured database must have it, else an embedded PostgreSQL "
            "that has it installed (make timescaledb) is started with it preloaded"
        ),
    )

    commands.add_parser("migrate", help="apply database migrations to GRIDSIM_DB__URL")

    world = commands.add_parser("world", help="world files: generate a utility-sized one")
    world_commands = world.add_subparsers(dest="world_command", required=True)
    generate = world_commands.add_parser(
        "generate",
        help="write a world file of N meters (load it with GRIDSIM_SIM__DEMO_WORLD_FILE)",
        description=(
            "Writes a deterministic world file: one utility, feeders of --transformers-per-feeder "
            "transformers, --per-transformer meters under each, every meter linked to a home (one in "
            "--prosumer-every a prosumer with solar). meter-sim loads a file this big with COPY "
            "(docs/entities.md, world files)."
        ),
    )
    generate.add_argument("--meters", type=int, required=True, help="how many meters")
    generate.add_argument("--out", type=Path, default=Path("world.json"), help="default: world.json")
    generate.add_argument("--per-transformer", type=int, default=100, help="meters per transformer (100)")
    generate.add_argument("--transformers-per-feeder", type=int, default=50, help="(default 50)")
    generate.add_argument("--prosumer-every", type=int, default=10, help="one prosumer in N meters (10)")
    generate.add_argument("--seed", type=int, default=1)

    add_data_commands(commands)

    status = commands.add_parser("status", help="print the gateway's /health")
    status.add_argument("--url", help="base URL of the gateway (default: from GRIDSIM_GATEWAY__HOST/PORT)")

    realism = commands.add_parser(
        "realism",
        help="simulate a summer and a winter week in-process and write the realism report (Markdown + PNG)",
        description=(
            "Simulates the demo world (or --world) minute by minute over the weeks from 16 June and "
            "15 December 2025 without broker or database, and compares its figures with published "
            "ranges (docs/realism.md)."
        ),
    )
    realism.add_argument("--seed", type=int, default=42, help="simulation seed (default: 42)")
    realism.add_argument("--world", type=Path, help="a world file (default: the demo world)")
    realism.add_argument(
        "--out", type=Path, default=Path("realism-report"), help="output folder (default: realism-report)"
    )

    creds = commands.add_parser(
        "credentials",
        help="show, rotate or export the broker and database credentials `gridsim up` generated",
        description=(
            "The credentials live in DATA_DIR/credentials.json (mode 0600), made by the first `gridsim up`. "
            "`rotate` gives broker users new passwords (restart gridsim to use them); `export DIR` writes "
            "Mosquitto's passwd and acl files and one USER.env per broker user, for a broker of your own; "
            "`export-db DIR` writes each service's database login (SERVICE.env: PGUSER, PGPASSWORD), the "
            "superuser's (owner.env) and postgres.env (POSTGRES_PASSWORD), for docker compose."
        ),
    )
    creds.add_argument("action", choices=["show", "rotate", "export", "export-db"], nargs="?", default="show")
    creds.add_argument("target", nargs="?", type=Path, help="export, export-db: the folder to write into")
    creds.add_argument("--data-dir", type=Path, default=Path(".gridsim"), help="default: .gridsim")
    creds.add_argument("--user", action="append", help="rotate: only this broker user (repeatable)")

    certs = commands.add_parser(
        "certs",
        help="generate a CA, a broker certificate and a client certificate for mqtts://",
        description="Writes ca.crt/key, server.crt/key and client.crt/key (keys 0600) into DIR.",
    )
    certs.add_argument("target", type=Path, help="the folder to write into (e.g. deploy/certs)")
    certs.add_argument(
        "--host",
        action="append",
        help="a name or address clients use to reach the broker (repeatable; localhost and 127.0.0.1 "
        "are always included; default: mosquitto, the compose service)",
    )
    return parser


def _up(args: argparse.Namespace) -> int:
    from gridsim.launcher import UpOptions, run_up

    options = UpOptions(
        data_dir=args.data_dir.resolve(),
        embedded=args.embedded,
        http_port=args.http_port,
        mqtt_port=args.mqtt_port,
        pg_port=args.pg_port,
        demo=not args.no_demo,
        timescale=args.timescale,
    )
    return run_up(options)


def _migrate() -> int:
    from gridsim.launcher import apply_migrations_sync, ensure_database
    from gridsim_shared.settings import Settings

    settings = Settings()
    ensure_database(settings.db.url)
    applied = apply_migrations_sync(settings.db.url, settings.db.schema_name)
    print(f"applied {len(applied)} migration(s) to schema {settings.db.schema_name}")
    for name in applied:
        print(f"  {name}")
    return 0


def _status(args: argparse.Namespace) -> int:
    from gridsim.launcher import fetch_health, health_url

    if args.url:
        url = args.url.rstrip("/") + "/health"
    else:
        from gridsim_shared.settings import Settings

        gateway = Settings().gateway
        url = health_url(gateway.host, gateway.port)
    report = fetch_health(url)
    if report is None:
        print(f"no answer from {url}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2))
    return 0 if report.get("status") == "ok" else 1


def _credentials(args: argparse.Namespace) -> int:
    from gridsim import credentials
    from gridsim_shared.access import describe
    from gridsim_shared.settings import Settings

    data_dir: Path = args.data_dir.resolve()
    if args.action == "rotate":
        try:
            found = credentials.rotate(data_dir, mqtt_users=args.user)
        except ValueError as error:
            print(error, file=sys.stderr)
            return 2
        print(f"new broker passwords in {data_dir / credentials.FILE_NAME}; restart gridsim to use them")
    elif args.action in {"export", "export-db"}:
        if args.target is None:
            print(
                f"{args.action} needs a target folder: gridsim credentials {args.action} DIR", file=sys.stderr
            )
            return 2
        found = credentials.load_or_create(data_dir)
        settings = Settings()
        exported = (
            credentials.export(
                found, args.target, settings.mqtt.base_topic, settings.homeassistant.discovery_prefix
            )
            if args.action == "export"
            else credentials.export_db(found, args.target)
        )
        for path in exported:
            print(path)
        return 0
    else:
        found = credentials.load_or_create(data_dir)
    print(f"credentials file (0600): {data_dir / credentials.FILE_NAME}")
    print("broker users (MQTT):")
    for user, password in found.mqtt.items():
        print(f"  {user:<12} {password}  ({describe(user)})")
    print("database roles (embedded PostgreSQL):")
    for role, password in found.db.items():
        print(f"  {role:<20} {password}")
    return 0


def _certs(args: argparse.Namespace) -> int:
    from gridsim.certs import generate_certificates

    for path in generate_certificates(args.target, args.host or ["mosquitto"]):
        print(path)
    return 0


def _world_generate(args: argparse.Namespace) -> int:
    from gridsim_meter_sim.world_bulk import generate_world

    if args.meters < 1 or args.per_transformer < 1 or args.transformers_per_feeder < 1:
        print("--meters, --per-transformer and --transformers-per-feeder must be at least 1", file=sys.stderr)
        return 2
    counts = generate_world(
        args.out,
        args.meters,
        meters_per_transformer=args.per_transformer,
        transformers_per_feeder=args.transformers_per_feeder,
        prosumer_every=args.prosumer_every,
        seed=args.seed,
    )
    size = args.out.stat().st_size / 1e6
    print(
        f"wrote {args.out}: {counts['meters']:,} meters, {counts['transformers']:,} transformers, "
        f"{counts['feeders']:,} feeders ({size:,.1f} MB); load it with GRIDSIM_SIM__DEMO_WORLD_FILE={args.out}"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if args.command == "up":
        return _up(args)
    if args.command == "world":
        return _world_generate(args)
    if args.command == "migrate":
        return _migrate()
    if args.command == "step":
        return run_step(args)
    if args.command == "export":
        return run_export(args)
    if args.command == "realism":
        return _realism(args)
    if args.command == "credentials":
        return _credentials(args)
    if args.command == "certs":
        return _certs(args)
    return _status(args)


def _realism(args: argparse.Namespace) -> int:
    from gridsim_meter_sim.realism import write_report

    try:
        figures = write_report(args.out, seed=args.seed, world_file=args.world)
    except ValueError as exc:  # a bad world file names the file and the field
        print(exc, file=sys.stderr)
        return 2
    return 0 if all(f.ok for f in figures) else 1


if __name__ == "__main__":
    sys.exit(main())
