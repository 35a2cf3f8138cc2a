"""Supervised long-lived tasks and the heartbeat that reports them: nothing stops in silence.

Every task a service runs for its whole life (meter-sim's clock, the aggregator's closer and reporter,
the heartbeat itself) is started with :meth:`Supervisor.spawn`. When one raises, the exception is logged
with its traceback, counted, and the task restarted after a capped backoff. A task that crashes more than
``max_restarts`` times within ``restart_window_s`` makes the supervisor *fail*: :meth:`Supervisor.wait`
raises :class:`TaskFailed`, ``run_main`` exits non-zero and the launcher (or compose) restarts the process.

A task declared with ``stall_after_s`` must call :meth:`Supervisor.beat` at least that often (on progress
and while it idles on purpose); one that does not is reported as stalled, cancelled and restarted.

The heartbeat republishes the service's retained status every ``heartbeat_s`` with ``heartbeat_at``, the
problems (stalled or failed tasks) and the counters, so a reader (the gateway's ``/readyz``, the launcher)
tells a live service from one whose process hangs, and a working one from one that only seems online.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol

from gridsim_shared import metrics
from gridsim_shared.settings import SupervisionSettings

__all__ = ["Supervisor", "TaskFailed"]

_LOGGER = logging.getLogger(__name__)

Factory = Callable[[], Coroutine[Any, Any, None]]


class TaskFailed(RuntimeError):
    """A supervised task crashed too often: the service must stop and be restarted from outside."""


class _StatusBus(Protocol):
    health: Callable[[], tuple[dict[str, Any], list[str]]] | None
    heartbeat_s: float | None

    async def publish_status(self) -> None: ...

    def status_report(self) -> dict[str, Any]: ...


@dataclass
class _Watched:
    name: str
    factory: Factory
    stall_after_s: float | None
    crashes: int = 0
    stalls: int = 0
    restarts: int = 0
    last_error: str | None = None
    last_beat: float = field(default_factory=time.monotonic)
    recent: deque[float] = field(default_factory=deque)  # monotonic times of recent crashes
    task: asyncio.Task[None] | None = None
    stalled: bool = False


class Supervisor:
    """The long-lived tasks of one service process."""

    def __init__(self, service: str, settings: SupervisionSettings | None = None) -> None:
        self.service = service
        self.settings = settings or SupervisionSettings()
        self._watched: dict[str, _Watched] = {}
        self._failed = asyncio.Event()
        self.failure: str | None = None
        self._closing = False
        self._stop: asyncio.Event | None = None  # the service's stop, once wait() is called
        self._watchdog: asyncio.Task[None] | None = None
        self._unexport: Callable[[], None] | None = None

    # ------------------------------------------------------------------ tasks
    def spawn(self, name: str, factory: Factory, *, stall_after_s: float | None = None) -> None:
        """Run ``factory()`` for the life of the service, restarted whenever it crashes or returns."""
        if name in self._watched:
            msg = f"{self.service} already supervises a task named {name!r}"
            raise ValueError(msg)
        watched = _Watched(name, factory, stall_after_s)
        self._watched[name] = watched
        watched.task = asyncio.create_task(self._keep(watched), name=f"{self.service}:{name}")
        watched.task.add_done_callback(self._ended)
        if stall_after_s is not None and self._watchdog is None:
            self._watchdog = asyncio.create_task(self._watch(), name=f"{self.service}:watchdog")

    def beat(self, name: str) -> None:
        """``name`` made progress (or is idle on purpose): it is not stalled."""
        watched = self._watched.get(name)
        if watched is not None:
            watched.last_beat = time.monotonic()
            watched.stalled = False

    def crashed(self, name: str, exc: BaseException) -> None:
        """Count and log a failure of short-lived work the service started (a flush, a background job)."""
        watched = self._watched.setdefault(name, _Watched(name, _never, None))
        watched.crashes += 1
        watched.last_error = f"{type(exc).__name__}: {exc}"
        _LOGGER.error(
            "%s: %s failed (%d so far)", self.service, name, watched.crashes, exc_info=(type(exc), exc, None)
        )

    async def _keep(self, watched: _Watched) -> None:
        backoff = self.settings.restart_backoff_s
        while not self._stopping:
            watched.last_beat = time.monotonic()
            try:
                await watched.factory()
                if self._stopping:
                    return
                msg = "returned while the service runs"
                raise RuntimeError(msg)
            except asyncio.CancelledError:
                if self._stopping or not watched.stalled:
                    raise
                # Cancelled by the watchdog: start it again (the stall is counted in ``stalls``).
                current = asyncio.current_task()
                if current is not None:
                    current.uncancel()
                watched.stalled = False
                watched.restarts += 1
                continue
            except Exception as exc:
                now = time.monotonic()
                watched.crashes += 1
                watched.last_error = f"{type(exc).__name__}: {exc}"
                watched.recent.append(now)
                while watched.recent and now - watched.recent[0] > self.settings.restart_window_s:
                    watched.recent.popleft()
                if len(watched.recent) > self.settings.max_restarts:
                    self.failure = (
                        f"{watched.name} crashed {len(watched.recent)} times in "
                        f"{self.settings.restart_window_s:.0f} s; last: {watched.last_error}"
                    )
                    _LOGGER.critical("%s: %s", self.service, self.failure, exc_info=exc)
                    self._failed.set()
                    return
                _LOGGER.error(
                    "%s: task %s crashed (%d so far); restarting in %.1f s",
                    self.service,
                    watched.name,
                    watched.crashes,
                    backoff,
                    exc_info=exc,
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.settings.max_backoff_s)
                watched.restarts += 1

    @property
    def _stopping(self) -> bool:
        return self._closing or (self._stop is not None and self._stop.is_set())

    def _ended(self, task: asyncio.Task[None]) -> None:
        # _keep returns only when stopping or failed; anything else is a supervisor bug, made loud.
        if self._stopping or self._failed.is_set():
            return
        reason = "was cancelled" if task.cancelled() else f"ended ({task.exception()!r})"
        self.failure = f"supervised task {task.get_name()} {reason}"
        _LOGGER.critical("%s: %s", self.service, self.failure)
        self._failed.set()

    async def _watch(self) -> None:
        """Cancel (so restart) every task that has not beaten within its ``stall_after_s``."""
        while not self._closing:
            await asyncio.sleep(min(1.0, self.settings.heartbeat_s))
            now = time.monotonic()
            for watched in self._watched.values():
                limit = watched.stall_after_s
                if limit is None or watched.stalled or now - watched.last_beat <= limit:
                    continue
                watched.stalled = True
                watched.stalls += 1
                _LOGGER.error(
                    "%s: task %s made no progress for %.0f s; restarting it",
                    self.service,
                    watched.name,
                    now - watched.last_beat,
                )
                if watched.task is not None:
                    watched.task.cancel()

    # ------------------------------------------------------------------ lifetime
    async def wait(self, stop: asyncio.Event) -> None:
        """Return when ``stop`` is set; raise :class:`TaskFailed` when a task crashed too often first.

        Tasks that return once ``stop`` is set (they watch it too) are not restarted.
        """
        self._stop = stop
        stopping = asyncio.create_task(stop.wait())
        failing = asyncio.create_task(self._failed.wait())
        try:
            await asyncio.wait({stopping, failing}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            failing.cancel()
        if self._failed.is_set():
            raise TaskFailed(self.failure or "a supervised task failed")

    @property
    def failed(self) -> bool:
        """True once a task crashed beyond its restart budget."""
        return self._failed.is_set()

    async def close(self) -> None:
        """Cancel every task (the service is stopping)."""
        self._closing = True
        if self._unexport is not None:
            self._unexport()
            self._unexport = None
        tasks = [w.task for w in self._watched.values() if w.task is not None]
        if self._watchdog is not None:
            tasks.append(self._watchdog)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)

    # ------------------------------------------------------------------ reporting
    def problems(self) -> list[str]:
        """What makes this service unhealthy now (empty when all is well)."""
        found = [f"{w.name} stalled" for w in self._watched.values() if w.stalled]
        if self.failure is not None:
            found.append(self.failure)
        return found

    def detail(self) -> dict[str, Any]:
        """Per task: crashes, stalls, restarts, the last error, seconds since its last beat."""
        now = time.monotonic()
        tasks: dict[str, Any] = {}
        for w in self._watched.values():
            tasks[w.name] = {
                "crashes": w.crashes,
                "stalls": w.stalls,
                "restarts": w.restarts,
                "last_error": w.last_error,
            }
            if w.stall_after_s is not None:
                tasks[w.name]["beat_age_s"] = round(now - w.last_beat, 1)
        return {"tasks": tasks}

    def attach(self, bus: _StatusBus) -> None:
        """Put this supervisor's problems and counters in ``bus``'s status; start the heartbeat."""
        bus.health = lambda: (self.detail(), self.problems())
        bus.heartbeat_s = self.settings.heartbeat_s
        self.spawn("heartbeat", lambda: self._heartbeat(bus))
        # The same status, scraped by Prometheus (docs/operations.md, "Metrics").
        self._unexport = metrics.STATUS.add(bus.status_report)
        metrics.serve_metrics(self.settings.metrics_port)

    async def _heartbeat(self, bus: _StatusBus) -> None:
        while True:
            await bus.publish_status()
            await asyncio.sleep(self.settings.heartbeat_s)


async def _never() -> None:
    return None
