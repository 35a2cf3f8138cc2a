"""``gridsim up --embedded`` as a user runs it: healthy within a minute, nothing left behind after it."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from gridsim.embedded import free_port
from gridsim.launcher import SERVICES

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.timeout(420)]

# Generous: on a loaded two-core machine the five services' imports alone took over 40 s.
HEALTHY_WITHIN_S = 180.0


@dataclass
class Launcher:
    process: subprocess.Popen[bytes]
    http_port: int
    log_path: Path

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def descendants(self) -> list[psutil.Process]:
        return psutil.Process(self.process.pid).children(recursive=True)


def _cmdline(process: psutil.Process) -> str:
    try:
        return " ".join(process.cmdline())
    except psutil.Error:  # exited meanwhile (or a zombie)
        return ""


def _fully_healthy(report: dict[str, Any]) -> bool:
    services = report.get("services") or {}
    return (
        report.get("status") == "ok"
        and report.get("broker", {}).get("ok") is True
        and report.get("database", {}).get("ok") is True
        and all(services.get(name) == "online" for name in SERVICES)
    )


def _wait_healthy(launcher: Launcher) -> dict[str, Any]:
    url = f"http://127.0.0.1:{launcher.http_port}/health"
    deadline = time.monotonic() + HEALTHY_WITHIN_S
    last: Any = None
    while time.monotonic() < deadline:
        assert launcher.process.poll() is None, f"gridsim up exited early:\n{launcher.log_tail()}"
        try:
            last = httpx.get(url, timeout=2).json()
        except (httpx.HTTPError, ValueError):
            last = None
        # The launcher announces itself once it saw the same report; wait for that too.
        announced = "gridsim is up" in launcher.log_path.read_text(errors="replace")
        if isinstance(last, dict) and _fully_healthy(last) and announced:
            return last
        time.sleep(0.5)
    pytest.fail(f"not healthy within {HEALTHY_WITHIN_S:.0f} s; last /health: {last}\n{launcher.log_tail()}")


def _still_healthy_after_rolls(launcher: Launcher, simulated: timedelta = timedelta(minutes=35)) -> None:
    """Run until the clock has passed ``simulated`` (two 15-minute windows rolled by the aggregator),
    then the system must still be fully healthy, report no problem, and have logged no error: a task
    that fails only at its first roll (the aggregator's BRIN summarize, once) shows only here."""
    base = f"http://127.0.0.1:{launcher.http_port}"
    start = datetime.fromisoformat(httpx.get(f"{base}/simulation-time", timeout=5).json()["current_datetime"])
    deadline = time.monotonic() + HEALTHY_WITHIN_S
    while True:
        assert launcher.process.poll() is None, f"gridsim up exited:\n{launcher.log_tail()}"
        now = datetime.fromisoformat(
            httpx.get(f"{base}/simulation-time", timeout=5).json()["current_datetime"]
        )
        if now - start >= simulated:
            break
        assert time.monotonic() < deadline, f"the clock went only from {start} to {now}"
        time.sleep(1)
    time.sleep(3)  # the last roll's heartbeat
    report = httpx.get(f"{base}/health", timeout=5).json()
    assert _fully_healthy(report), report
    assert report.get("problems", []) == [], report
    errors = [
        line
        for line in launcher.log_path.read_text(errors="replace").splitlines()
        if '"level":"error"' in line.replace(" ", "") or " ERROR " in line
    ]
    assert errors == [], "\n".join(errors[:10])


def _assert_all_gone(processes: list[psutil.Process], timeout: float) -> None:
    _, alive = psutil.wait_procs(processes, timeout=timeout)
    orphans = [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]
    described = [f"{p.pid} {_cmdline(p)[:80]}" for p in orphans]
    for orphan in orphans:  # don't leave them running when the assertion fails
        orphan.kill()
    assert described == []


@pytest.fixture
def launcher() -> Iterator[Launcher]:
    """``gridsim up --embedded`` in a fresh data dir, with an environment free of GRIDSIM_* settings but
    a free OpenADR port."""
    work = Path(tempfile.mkdtemp(prefix="gridsim-e2e-"))
    work.chmod(0o755)  # the embedded PostgreSQL runs as nobody when the tests run as root
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("GRIDSIM_")}
    # The OpenADR VTN's port (8181 by default) may be held by another gridsim on this machine.
    env["GRIDSIM_UTILITY__OPENADR_PORT"] = str(free_port())
    port = free_port()
    log_path = work / "gridsim-up.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "gridsim.cli", "up", "--embedded", "--data-dir", str(work / "data"),
             "--http-port", str(port)],
            cwd=work,  # no .env from the checkout
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    started = Launcher(process, port, log_path)
    try:
        yield started
    finally:
        if process.poll() is None:  # the test left it running: stop it as a user would
            leftovers = started.descendants()
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            _, alive = psutil.wait_procs(leftovers, timeout=10)
            for child in alive:
                with contextlib.suppress(psutil.Error):
                    child.kill()
        shutil.rmtree(work, ignore_errors=True)


def test_up_is_healthy_and_sigterm_stops_everything(launcher: Launcher) -> None:
    started = time.monotonic()
    report = _wait_healthy(launcher)
    print(f"healthy after {time.monotonic() - started:.1f} s: {report}")
    _still_healthy_after_rolls(launcher)
    children = launcher.descendants()
    # six services, the broker and the postmaster at least
    assert len(children) >= len(SERVICES) + 2

    launcher.process.send_signal(signal.SIGTERM)
    assert launcher.process.wait(timeout=30) == 0, launcher.log_tail()
    _assert_all_gone(children, timeout=5)


def test_a_crashed_service_is_restarted(launcher: Launcher) -> None:
    _wait_healthy(launcher)
    # "-m": the database backends of the aggregator's role (gridsim_aggregator) show that name too
    [aggregator] = [p for p in launcher.descendants() if "-m gridsim_aggregator" in _cmdline(p)]
    aggregator.kill()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        replacements = [
            p
            for p in launcher.descendants()
            if "-m gridsim_aggregator" in _cmdline(p) and p.pid != aggregator.pid
        ]
        if replacements:
            break
        time.sleep(0.2)
    assert replacements, launcher.log_tail()
    assert "aggregator exited with code -9; restarting" in launcher.log_path.read_text()
    _wait_healthy(launcher)


def test_kill_9_of_the_launcher_leaves_no_orphan(launcher: Launcher) -> None:
    _wait_healthy(launcher)
    children = launcher.descendants()
    assert len(children) >= len(SERVICES) + 2

    launcher.process.kill()
    launcher.process.wait()
    # Each child got SIGTERM from the kernel and shuts down gracefully, while the embedded broker and
    # database vanish at the same moment; closing an MQTT client whose broker is gone can take up to
    # the client's 30 s timeout. Nobody is left to send SIGKILL, so allow for that.
    _assert_all_gone(children, timeout=40)
