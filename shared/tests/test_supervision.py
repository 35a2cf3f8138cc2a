"""Supervised tasks: a crash is logged, counted and restarted; too many end the service; stalls restart."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from gridsim_shared.service import run_main
from gridsim_shared.settings import Settings, SupervisionSettings
from gridsim_shared.supervision import Supervisor, TaskFailed

FAST = SupervisionSettings(restart_backoff_s=0.01, max_backoff_s=0.01, heartbeat_s=0.05)


async def _until(predicate: Any, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


async def test_a_crashing_task_is_logged_counted_and_restarted(caplog: pytest.LogCaptureFixture) -> None:
    supervisor = Supervisor("svc", FAST)
    runs: list[int] = []
    done = asyncio.Event()

    async def work() -> None:
        runs.append(1)
        if len(runs) < 3:
            msg = f"boom {len(runs)}"
            raise ValueError(msg)
        await done.wait()

    stop = asyncio.Event()
    supervisor.spawn("work", work)
    waiting = asyncio.create_task(supervisor.wait(stop))
    await _until(lambda: len(runs) == 3)
    task = supervisor.detail()["tasks"]["work"]
    assert task["crashes"] == 2
    assert task["restarts"] == 2
    assert task["last_error"] == "ValueError: boom 2"
    assert "task work crashed" in caplog.text
    assert supervisor.problems() == []
    stop.set()
    await waiting  # a clean stop: no TaskFailed
    await supervisor.close()


async def test_a_task_crashing_beyond_its_budget_fails_the_service() -> None:
    supervisor = Supervisor("svc", FAST.model_copy(update={"max_restarts": 2}))

    async def work() -> None:
        msg = "always"
        raise RuntimeError(msg)

    supervisor.spawn("work", work)
    with pytest.raises(TaskFailed, match="work crashed 3 times"):
        await asyncio.wait_for(supervisor.wait(asyncio.Event()), 10)
    assert supervisor.failed
    assert any("work crashed" in p for p in supervisor.problems())
    await supervisor.close()


async def test_a_task_that_returns_while_the_service_runs_is_a_crash() -> None:
    supervisor = Supervisor("svc", FAST)
    runs: list[int] = []

    async def work() -> None:
        runs.append(1)
        if len(runs) > 1:
            await asyncio.Event().wait()

    supervisor.spawn("work", work)
    await _until(lambda: len(runs) == 2)
    assert "returned while the service runs" in supervisor.detail()["tasks"]["work"]["last_error"]
    await supervisor.close()


async def test_a_task_that_returns_after_stop_is_not_restarted() -> None:
    supervisor = Supervisor("svc", FAST)
    stop = asyncio.Event()
    runs: list[int] = []

    async def work() -> None:
        runs.append(1)
        await stop.wait()

    supervisor.spawn("work", work)
    waiting = asyncio.create_task(supervisor.wait(stop))
    await _until(lambda: runs)
    stop.set()
    await waiting
    await asyncio.sleep(0)  # let the task see the stop
    await supervisor.close()
    assert runs == [1]
    assert supervisor.detail()["tasks"]["work"]["crashes"] == 0


async def test_a_stalled_task_is_reported_and_restarted() -> None:
    supervisor = Supervisor("svc", FAST)
    runs: list[int] = []

    async def work() -> None:
        runs.append(1)
        if len(runs) == 1:
            await asyncio.Event().wait()  # hangs without beating
        while True:
            supervisor.beat("work")
            await asyncio.sleep(0.01)

    supervisor.spawn("work", work, stall_after_s=0.2)
    await _until(lambda: len(runs) == 2)
    task = supervisor.detail()["tasks"]["work"]
    assert task["stalls"] == 1
    assert task["restarts"] == 1
    assert task["crashes"] == 0
    await _until(lambda: supervisor.problems() == [])
    await supervisor.close()


async def test_recorded_failures_of_short_work_are_counted(caplog: pytest.LogCaptureFixture) -> None:
    supervisor = Supervisor("svc", FAST)
    supervisor.crashed("flush", ValueError("bad"))
    assert supervisor.detail()["tasks"]["flush"]["crashes"] == 1
    assert "flush failed" in caplog.text


class _FakeBus:
    def __init__(self) -> None:
        self.health: Any = None
        self.heartbeat_s: float | None = None
        self.published = 0

    async def publish_status(self) -> None:
        self.published += 1

    def status_report(self) -> dict[str, Any]:
        detail, problems = self.health()
        return {"service": "svc", "instance": "0", "detail": detail, "problems": problems}


async def test_the_heartbeat_republishes_the_status_with_the_supervisor_report() -> None:
    supervisor = Supervisor("svc", FAST)
    bus = _FakeBus()
    supervisor.attach(bus)
    await _until(lambda: bus.published >= 3)
    assert bus.heartbeat_s == FAST.heartbeat_s
    detail, problems = bus.health()
    assert "heartbeat" in detail["tasks"]
    assert problems == []
    from prometheus_client import REGISTRY, generate_latest

    assert (
        'gridsim_task_crashes{instance="0",service="svc",task="heartbeat"} 0.0'
        in generate_latest(REGISTRY).decode()
    )
    await supervisor.close()
    assert 'service="svc"' not in generate_latest(REGISTRY).decode()  # no longer exported


def test_run_main_exits_non_zero_when_the_service_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("gridsim_shared.service.configure_logging", lambda *_a: None)

    async def serve(_settings: Settings, _stop: asyncio.Event) -> None:
        msg = "clock crashed 6 times"
        raise TaskFailed(msg)

    with pytest.raises(SystemExit) as exit_info:
        run_main("svc", serve)
    assert exit_info.value.code == 1


def test_run_main_exits_non_zero_when_serve_returns_unasked(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr("gridsim_shared.service.configure_logging", lambda *_a: None)

    async def serve(_settings: Settings, _stop: asyncio.Event) -> None:
        return None

    with caplog.at_level(logging.CRITICAL), pytest.raises(SystemExit) as exit_info:
        run_main("svc", serve)
    assert exit_info.value.code == 1
    assert "stopped serving without being asked" in caplog.text
