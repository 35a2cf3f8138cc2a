"""``gridsim step`` and ``gridsim export``: long work from the command line, with a progress bar.

``gridsim step --days 30`` starts a step job on the gateway and follows its progress (SSE); Ctrl-C
cancels the job (the clock stays after its last whole chunk) and exits 130. ``gridsim export`` streams a
CSV, Parquet or Green Button export to a file.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gridsim.client import Client
    from gridsim_shared.schemas.jobs import StepJob

__all__ = ["add_commands", "run_export", "run_step"]

EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for a Ctrl-C


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``step`` and ``export`` to the ``gridsim`` command's subcommands."""
    step = commands.add_parser(
        "step",
        help="simulate days, hours or intervals as a job with a progress bar; Ctrl-C cancels it",
    )
    step.add_argument("--days", type=float, default=0.0, help="simulated days")
    step.add_argument("--hours", type=float, default=0.0, help="simulated hours")
    step.add_argument("--intervals", type=int, default=0, help="intervals (added to days and hours)")
    _common(step)

    export = commands.add_parser("export", help="download readings, rollups or a Green Button feed")
    export.add_argument("kind", choices=["readings", "rollups", "greenbutton"])
    export.add_argument("-o", "--output", type=Path, required=True, help="file to write")
    export.add_argument("--meter", help="a meter's id or code")
    export.add_argument("--node", help="a grid node's code (its subtree)")
    export.add_argument("--from", dest="start", help="simulated time, inclusive (ISO 8601)")
    export.add_argument("--to", dest="end", help="simulated time, exclusive (ISO 8601)")
    export.add_argument("--month", help="YYYY-MM (Green Button: adds the bill)")
    export.add_argument("--resolution", choices=["raw", "15m", "1h", "1d"])
    export.add_argument("--format", choices=["csv", "parquet"], help="default: from the file's suffix")
    _common(export)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", help="base URL of the gateway (default: from GRIDSIM_GATEWAY__HOST/PORT)")
    parser.add_argument("--api-key", help="X-API-Key (default: none)")


def _quiet_http() -> None:
    # httpx logs every request at INFO; the progress bar is the output here.
    logging.getLogger("httpx").setLevel(logging.WARNING)


def _base_url(args: argparse.Namespace) -> str:
    if args.url:
        return str(args.url).rstrip("/")
    from gridsim.launcher import client_host
    from gridsim_shared.settings import Settings

    gateway = Settings().gateway
    return f"http://{client_host(gateway.host)}:{gateway.port}"


def run_step(args: argparse.Namespace) -> int:
    """Start a step job and follow it; Ctrl-C cancels it and returns 130."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from gridsim.client import ApiError, Client
    from gridsim_shared.schemas.jobs import StepJob

    _quiet_http()
    console = Console(stderr=True)
    with Client(_base_url(args), api_key=args.api_key) as client:
        try:
            clock = client.clock()
            seconds = args.days * 86400 + args.hours * 3600
            intervals = int(seconds // clock.interval_s) + args.intervals
            if intervals < 1:
                console.print("nothing to step: give --days, --hours or --intervals")
                return 2
            started = client.step(intervals, job=True)
        except ApiError as exc:
            console.print(f"[red]refused:[/red] {exc}")
            return 1
        assert isinstance(started, StepJob)
        console.print(f"job {started.id}: {intervals} intervals from {clock.current_datetime.isoformat()}")
        final = started
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=console) as progress:
            task = progress.add_task("stepping", total=intervals, rate="")
            try:
                for state in client.follow_job(started.id):
                    final = state
                    rate = f"{state.rate:,.1f} intervals/s" if state.rate else ""
                    progress.update(task, completed=state.done, rate=rate)
            except KeyboardInterrupt:
                progress.update(task, description="cancelling")
                client.cancel_job(started.id)
                final = _until_final(client, started.id)
                progress.update(task, completed=final.done)
                console.print(
                    f"cancelled after {final.done} of {intervals} intervals; clock at {_clock_of(final)}"
                )
                return EXIT_INTERRUPTED
        if final.state != "succeeded":
            console.print(f"[red]job {final.state}[/red]: {final.error.message if final.error else ''}")
            return 1
        console.print(f"done: {final.done} intervals, {final.readings} readings; clock at {_clock_of(final)}")
        return 0


def _clock_of(job: StepJob) -> str:
    return job.current_datetime.isoformat() if job.current_datetime is not None else "(unchanged)"


def _until_final(client: Client, job_id: str) -> StepJob:
    import time

    from gridsim.client import FINAL_STATES

    while True:
        job = client.job(job_id)
        if job.state in FINAL_STATES:
            return job
        time.sleep(0.2)


def run_export(args: argparse.Namespace) -> int:
    """Stream an export to a file with a byte counter."""
    from rich.console import Console
    from rich.progress import DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    from gridsim.client import ApiError, Client

    _quiet_http()
    console = Console(stderr=True)
    fmt = args.format or ("parquet" if args.output.suffix == ".parquet" else "csv")
    params = {
        "meter_id": args.meter,
        "node": args.node,
        "from": args.start,
        "to": args.end,
        "month": args.month,
        "resolution": args.resolution,
        "format": None if args.kind == "greenbutton" else fmt,
    }
    params = {k: v for k, v in params.items() if v is not None}
    columns = (TextColumn(f"{args.kind} → {args.output}"), DownloadColumn(), TransferSpeedColumn())
    with Client(_base_url(args), api_key=args.api_key) as client, Progress(*columns, console=console) as bar:
        task = bar.add_task("export", total=None)
        try:
            size = client.export(args.kind, args.output, on_chunk=lambda n: bar.advance(task, n), **params)
        except ApiError as exc:
            console.print(f"[red]refused:[/red] {exc}")
            args.output.unlink(missing_ok=True)
            return 1
        except KeyboardInterrupt:
            args.output.unlink(missing_ok=True)
            return EXIT_INTERRUPTED
    console.print(f"wrote {size:,} bytes to {args.output}")
    return 0
