"""The ``gridsim`` command: ``up``, ``migrate``, ``step``, ``export``, ``status`` and ``realism``."""

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


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if args.command == "up":
        return _up(args)
    if args.command == "migrate":
        return _migrate()
    if args.command == "step":
        return run_step(args)
    if args.command == "export":
        return run_export(args)
    if args.command == "realism":
        return _realism(args)
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
