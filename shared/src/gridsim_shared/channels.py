"""Channels: a topic template bound to its payload model, QoS and retain flag.

Producers call ``bus.publish(channels.READING, reading, path)``; consumers subscribe to the same object and
receive ``(MeterReading, MeterPath)``. One definition, so the two ends cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

from gridsim_shared import messages, topics
from gridsim_shared.ids import FeederPath, MeterPath, TransformerPath, UtilityPath
from gridsim_shared.schemas.homeassistant import HomeAssistantState
from gridsim_shared.schemas.jobs import StepJob

__all__ = [
    "BATCH",
    "CLOCK",
    "EVENT",
    "FORECAST",
    "HOME_ASSISTANT",
    "JOB",
    "METER_EVENT",
    "PRICE",
    "READING",
    "ROLLUP_FEEDER",
    "ROLLUP_TRANSFORMER",
    "ROLLUP_UTILITY",
    "STATUS",
    "WATERMARK",
    "Channel",
]

M = TypeVar("M", bound=messages.Message)
P = TypeVar("P")


@dataclass(frozen=True, slots=True)
class Channel(Generic[M, P]):
    """A topic template, the model of its payload, and how it is published."""

    template: topics.TopicTemplate[P]
    model: type[M]
    qos: Literal[0, 1, 2] = 1
    retain: bool = False

    def topic(self, base: str, path: P) -> str:
        """The topic of ``path`` under ``base``."""
        return self.template.build(base, path)

    def encode(self, msg: M) -> bytes:
        """Payload bytes of ``msg``."""
        return msg.model_dump_json().encode()

    def decode(self, base: str, topic: str, payload: bytes) -> tuple[M, P]:
        """Validated message and path; raises ``pydantic.ValidationError`` or ``TopicError``."""
        return self.model.model_validate_json(payload), self.template.parse(base, topic)


READING: Channel[messages.MeterReading, MeterPath] = Channel(topics.READING, messages.MeterReading)
BATCH: Channel[messages.ReadingBatch, TransformerPath] = Channel(topics.BATCH, messages.ReadingBatch)
ROLLUP_TRANSFORMER: Channel[messages.Rollup, TransformerPath] = Channel(
    topics.ROLLUP_TRANSFORMER, messages.Rollup, retain=True
)
ROLLUP_FEEDER: Channel[messages.Rollup, FeederPath] = Channel(
    topics.ROLLUP_FEEDER, messages.Rollup, retain=True
)
ROLLUP_UTILITY: Channel[messages.Rollup, UtilityPath] = Channel(
    topics.ROLLUP_UTILITY, messages.Rollup, retain=True
)
EVENT: Channel[messages.GridEvent, topics.EventPath] = Channel(topics.EVENT, messages.GridEvent)
METER_EVENT: Channel[messages.GridEvent, topics.MeterEventPath] = Channel(
    topics.METER_EVENT, messages.GridEvent
)
FORECAST: Channel[messages.Forecast, topics.ForecastPath] = Channel(
    topics.FORECAST, messages.Forecast, retain=True
)
PRICE: Channel[messages.PriceSignal, topics.NodePath] = Channel(
    topics.PRICE, messages.PriceSignal, retain=True
)
CLOCK: Channel[messages.ClockState, topics.NoPath] = Channel(topics.CLOCK, messages.ClockState, retain=True)
WATERMARK: Channel[messages.Watermark, topics.NoPath] = Channel(
    topics.WATERMARK, messages.Watermark, retain=True
)
STATUS: Channel[messages.ServiceStatus, topics.ServicePath] = Channel(
    topics.STATUS, messages.ServiceStatus, retain=True
)
JOB: Channel[StepJob, topics.JobPath] = Channel(topics.JOB, StepJob, retain=True)
HOME_ASSISTANT: Channel[HomeAssistantState, topics.HomeAssistantPath] = Channel(
    topics.HOME_ASSISTANT, HomeAssistantState, retain=True
)
