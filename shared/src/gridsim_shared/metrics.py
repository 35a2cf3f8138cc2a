"""Prometheus metrics (prometheus-client) for every service: docs/operations.md, "Metrics".

Two kinds:

- **Histograms** observed where the work happens: ``gridsim_rpc_seconds`` (commands a service answers,
  by service and operation), ``gridsim_flush_seconds`` (the aggregator's ingest transactions).
- **Everything the retained status says**, read at scrape time by :class:`StatusCollector` so the
  numbers cannot drift from the status: the bus counters (``gridsim_bus_received``, ``…_dropped``,
  ``…_handler_errors``, ``…_reconnects``, ``…_publish_retries``), each supervised task's crashes, stalls
  and restarts (``gridsim_task_crashes{task}``…), and every numeric progress field of the service
  (``gridsim_detail{key="lag_s"}``, ``key="readings"``, ``key="dead_letters"``, ``key="buffered_rows"``…).

The gateway serves them on ``GET /metrics``; the other services on ``GRIDSIM_METRICS__PORT`` when set.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import REGISTRY, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = ["FLUSH_SECONDS", "RPC_SECONDS", "STATUS", "StatusCollector", "serve_metrics"]

_LOGGER = logging.getLogger(__name__)

RPC_SECONDS = Histogram(
    "gridsim_rpc_seconds",
    "Time to answer a command received over MQTT, by service and operation.",
    ["service", "operation"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
FLUSH_SECONDS = Histogram(
    "gridsim_flush_seconds",
    "Duration of one aggregator ingest transaction (COPY, receipts, watermark check, commit).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

_BUS_COUNTERS = ("received", "dropped", "handler_errors", "reconnects", "publish_retries")
_TASK_COUNTERS = ("crashes", "stalls", "restarts")


class StatusCollector(Collector):
    """Exports the status of every source (``ServiceStatus``-shaped dicts: service, instance, detail).

    One collector per process, whatever the number of services in it (tests run several in one).
    """

    def __init__(self) -> None:
        self._sources: list[Callable[[], dict[str, Any]]] = []

    def add(self, status: Callable[[], dict[str, Any]]) -> Callable[[], None]:
        """Export ``status()`` from now on; returns the function that stops it."""
        self._sources.append(status)
        return lambda: self._sources.remove(status)

    def _statuses(self) -> list[dict[str, Any]]:
        found = []
        for source in list(self._sources):
            try:
                found.append(source())
            except Exception:  # a scrape must never fail the service; it shows what it can
                _LOGGER.exception("metrics: a status could not be read")
        return found

    def collect(self) -> Iterator[GaugeMetricFamily]:
        statuses = self._statuses()
        bus = {
            name: GaugeMetricFamily(
                f"gridsim_bus_{name}", f"Bus counter {name} since start.", labels=["service", "instance"]
            )
            for name in _BUS_COUNTERS
        }
        tasks = {
            name: GaugeMetricFamily(
                f"gridsim_task_{name}",
                f"Supervised task {name} since start.",
                labels=["service", "instance", "task"],
            )
            for name in _TASK_COUNTERS
        }
        detail_family = GaugeMetricFamily(
            "gridsim_detail",
            "Every numeric field of the service's retained status (progress, lag, counters).",
            labels=["service", "instance", "key"],
        )
        problems = GaugeMetricFamily(
            "gridsim_problems",
            "Problems the service reports (0 when healthy).",
            labels=["service", "instance"],
        )
        for status in statuses:
            labels = [status["service"], status["instance"]]
            detail: dict[str, Any] = status.get("detail", {})
            for key, value in detail.items():
                if isinstance(value, bool) or not isinstance(value, int | float):
                    continue
                if key in bus:
                    bus[key].add_metric(labels, float(value))
                else:
                    detail_family.add_metric([*labels, key], float(value))
            for task, values in detail.get("tasks", {}).items():
                for name, family in tasks.items():
                    family.add_metric([*labels, task], float(values.get(name, 0)))
            problems.add_metric(labels, float(len(status.get("problems", []))))
        yield from bus.values()
        yield from tasks.values()
        yield detail_family
        yield problems


STATUS = StatusCollector()
REGISTRY.register(STATUS)
_served: list[int] = []


def serve_metrics(port: int) -> None:
    """Serve the default registry on ``http://0.0.0.0:port/metrics`` (once per process; 0 = not at all)."""
    if port and not _served:
        _served.append(port)
        try:
            start_http_server(port)
        except OSError as exc:  # metrics are an aid: a taken port is reported, the service goes on
            _LOGGER.error("metrics: cannot listen on port %d (%s)", port, exc)
            return
        _LOGGER.info("metrics on port %d", port)
