"""Topic templates: the only module in gridsim that holds topic strings.

Form: ``{base}/v1/{kind}/{path...}`` (DESIGN §5). The kind comes before the grid path so that ``#`` selects
a whole subtree; the depth of each kind is fixed, so a level's meaning is its position.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from gridsim_shared.ids import (
    FeederPath,
    MeterPath,
    TransformerPath,
    UtilityPath,
    is_segment,
)

__all__ = [
    "BATCH",
    "CLOCK",
    "COMMAND",
    "EVENT",
    "FORECAST",
    "HOME_ASSISTANT",
    "JOB",
    "METER_EVENT",
    "PRICE",
    "READING",
    "REPLY",
    "ROLLUP_FEEDER",
    "ROLLUP_TRANSFORMER",
    "ROLLUP_UTILITY",
    "STATUS",
    "VERSION",
    "WATERMARK",
    "ClientPath",
    "CommandPath",
    "EventPath",
    "ForecastPath",
    "HomeAssistantPath",
    "JobPath",
    "MeterEventPath",
    "NoPath",
    "NodePath",
    "ServicePath",
    "TopicError",
    "TopicTemplate",
]

VERSION = "v1"

P = TypeVar("P")


class TopicError(ValueError):
    """A topic that does not fit its template."""


@dataclass(frozen=True, slots=True)
class NoPath:
    """Path of a topic with no variable levels (the clock, the watermark)."""


@dataclass(frozen=True, slots=True)
class ServicePath:
    """A service instance, for status topics."""

    service: str
    instance: str


@dataclass(frozen=True, slots=True)
class CommandPath:
    """A request to one operation of one service."""

    service: str
    operation: str


@dataclass(frozen=True, slots=True)
class ClientPath:
    """Where replies for one requesting client go: under its broker user, which alone may read them."""

    user: str
    client: str


@dataclass(frozen=True, slots=True)
class EventPath:
    """A grid event: its type and the grid node (or meter) it concerns."""

    type: str
    subject: str


@dataclass(frozen=True, slots=True)
class HomeAssistantPath:
    """A meter announced to Home Assistant (its lower-cased code)."""

    meter: str


@dataclass(frozen=True, slots=True)
class JobPath:
    """A long-running job (a step of many intervals)."""

    job: str


@dataclass(frozen=True, slots=True)
class ForecastPath:
    """One model's forecast for one horizon of one grid node."""

    model: str
    horizon: str
    level: str
    node: str


@dataclass(frozen=True, slots=True)
class NodePath:
    """A grid node by its level (utility, feeder) and code: its dynamic price."""

    level: str
    node: str


@dataclass(frozen=True, slots=True)
class MeterEventPath:
    """A meter's own event (status, tamper, fault), under its place in the grid."""

    type: str
    utility: str
    feeder: str
    transformer: str
    meter: str


@dataclass(frozen=True, slots=True)
class TopicTemplate(Generic[P]):
    """A topic's kind and the path dataclass whose fields fill its variable levels, in order."""

    kind: str
    path_type: type[P]

    @property
    def fields(self) -> tuple[str, ...]:
        """Names of the variable levels, in topic order."""
        return tuple(f.name for f in dataclasses.fields(self.path_type))  # type: ignore[arg-type]

    def build(self, base: str, path: P) -> str:
        """The full topic for ``path`` under ``base``."""
        values = [getattr(path, name) for name in self.fields]
        for name, value in zip(self.fields, values, strict=True):
            if not is_segment(value):
                msg = f"topic level {name}={value!r} is not a valid id"
                raise TopicError(msg)
        return "/".join([base, VERSION, self.kind, *values])

    def filter(self, base: str, **fixed: str) -> str:
        """A subscription filter for exactly this template's depth: given levels fixed, the others ``+``.

        Never ``#``: kinds can share a prefix at several depths (transformer, feeder and utility rollups),
        and a channel must receive only the topics its model describes.
        """
        unknown = set(fixed) - set(self.fields)
        if unknown:
            msg = f"{self.kind} topics have no level {sorted(unknown)}"
            raise TopicError(msg)
        levels = [fixed.get(name, "+") for name in self.fields]
        return "/".join([base, VERSION, self.kind, *levels])

    def parse(self, base: str, topic: str) -> P:
        """Split ``topic`` into this template's path; raise :class:`TopicError` when it does not fit."""
        parts = topic.split("/")
        head = [base, VERSION, self.kind]
        if parts[:3] != head or len(parts) != 3 + len(self.fields):
            msg = f"topic {topic!r} is not a {self.kind} topic under {base!r}"
            raise TopicError(msg)
        values: dict[str, Any] = dict(zip(self.fields, parts[3:], strict=True))
        bad = [f"{name}={value!r}" for name, value in values.items() if not is_segment(value)]
        if bad:
            msg = f"topic {topic!r} has invalid levels: {', '.join(bad)}"
            raise TopicError(msg)
        return self.path_type(**values)

    def matches(self, base: str, topic: str) -> bool:
        """True when ``topic`` is one of this template's topics."""
        parts = topic.split("/")
        return parts[:3] == [base, VERSION, self.kind] and len(parts) == 3 + len(self.fields)


# One meter's reading (seed's MeterData fields), per meter.
READING = TopicTemplate("reading", MeterPath)
# All of one transformer's meter readings for one interval, columnar (the throughput path).
BATCH = TopicTemplate("batch", TransformerPath)
# Grid aggregates published by the aggregator.
ROLLUP_TRANSFORMER = TopicTemplate("rollup", TransformerPath)
ROLLUP_FEEDER = TopicTemplate("rollup", FeederPath)
ROLLUP_UTILITY = TopicTemplate("rollup", UtilityPath)
# Grid events (overload, voltage, spike, control) and meter events (status, tamper, fault).
EVENT = TopicTemplate("event", EventPath)
METER_EVENT = TopicTemplate("meter-event", MeterEventPath)
# The utility's forecasts (per node and horizon) and dynamic prices (per node), both retained.
FORECAST = TopicTemplate("forecast", ForecastPath)
PRICE = TopicTemplate("price", NodePath)
# The simulation clock (retained) and the aggregator's committed watermark (retained).
CLOCK = TopicTemplate("clock", NoPath)
WATERMARK = TopicTemplate("watermark", NoPath)
# Liveness: retained `online`, last will `offline`.
STATUS = TopicTemplate("status", ServicePath)
# A meter's registers for Home Assistant (retained; the gateway publishes them when discovery is on).
HOME_ASSISTANT = TopicTemplate("ha", HomeAssistantPath)
# Progress of a long job (retained: the latest state of each job).
JOB = TopicTemplate("job", JobPath)
# Request/reply: the reply topic and correlation id travel in the request envelope. Replies go to the
# requester's own namespace, reply/{user}/{client}, which the broker lets only that user read.
COMMAND = TopicTemplate("cmd", CommandPath)
REPLY = TopicTemplate("reply", ClientPath)
