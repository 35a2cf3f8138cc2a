"""Channels and commands: the two kinds of contract between services, each defined once.

A :class:`Channel` is a topic template bound to its payload model, QoS and retain flag. Producers call
``bus.publish(channels.READING, reading, path)``; consumers subscribe to the same object and receive
``(MeterReading, MeterPath)``.

A :class:`Command` is one operation of one service: its request model and its reply type. Callers
``await bus.call(commands.meter_sim.CREATE_ER, ErCreate(...))`` and get an ``Er``; the service declares its
handler with ``@router.handles(commands.meter_sim.CREATE_ER)``. The definitions live in
:mod:`gridsim_shared.commands` (one module per service). One definition, so the two ends cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from gridsim_shared import events, messages, topics
from gridsim_shared.errors import validation_error
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
    "Command",
    "NoArgs",
]

M = TypeVar("M", bound=messages.Message)
P = TypeVar("P")
Q = TypeVar("Q", bound=BaseModel)
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Channel(Generic[M, P]):
    """A topic template, the model of its payload, and how it is published."""

    template: topics.TopicTemplate[P]
    # A message model, or a discriminated union of them (``events.GridEvent``): validated through a
    # TypeAdapter either way; the constant's annotation (``Channel[Msg, Path]``) is what type checkers use.
    model: Any
    qos: Literal[0, 1, 2] = 1
    retain: bool = False
    name: str = ""  # the payload's name in AsyncAPI (default: the model's class name)
    _adapter: TypeAdapter[Any] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_adapter", TypeAdapter(self.model))
        if not self.name:
            object.__setattr__(self, "name", self.model.__name__)

    def topic(self, base: str, path: P) -> str:
        """The topic of ``path`` under ``base``."""
        return self.template.build(base, path)

    def encode(self, msg: M) -> bytes:
        """Payload bytes of ``msg``."""
        return msg.model_dump_json().encode()

    def decode(self, base: str, topic: str, payload: bytes) -> tuple[M, P]:
        """Validated message and path; raises ``pydantic.ValidationError`` or ``TopicError``."""
        msg: M = self._adapter.validate_json(payload)
        return msg, self.template.parse(base, topic)

    def json_schema(self, ref_template: str) -> dict[str, Any]:
        """The JSON schema of the payload."""
        schema: dict[str, Any] = self._adapter.json_schema(ref_template=ref_template)
        return schema


class NoArgs(BaseModel):
    """The request of a command that takes no arguments (anything sent is ignored, as before)."""

    model_config = ConfigDict(extra="ignore")


@dataclass(frozen=True, slots=True)
class Command(Generic[Q, R]):
    """One operation of one service: the model of its request and the type of its reply's ``data``.

    The reply is a type expression (a model, ``list[Model]``, a union of models, ``dict[str, int]``), so it is
    validated through a pydantic ``TypeAdapter``; the constant's annotation (``Command[Req, Rep]``) is what
    the type checker uses on both ends.
    """

    service: str
    operation: str
    request: type[Q]
    reply: Any
    description: str = ""
    _adapter: TypeAdapter[Any] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # A frozen dataclass: the adapter is built once per command, not per reply.
        object.__setattr__(self, "_adapter", TypeAdapter(self.reply))

    @property
    def name(self) -> str:
        """``service.operation``, for messages and logs."""
        return f"{self.service}.{self.operation}"

    def build(self, **fields: Any) -> Q:
        """The request from plain fields (a route's path and query parameters), validated as the service
        would validate it: a bad value raises the same 422 naming the field (``InvalidError``)."""
        try:
            return self.request.model_validate(fields)
        except ValidationError as exc:
            raise validation_error(exc) from exc

    def encode_request(self, req: Q) -> dict[str, Any]:
        """The request's ``data``: only the fields the caller set, so a partial update stays partial."""
        return req.model_dump(mode="json", exclude_unset=True)

    def decode_request(self, data: Any) -> Q:
        """The validated request; raises ``pydantic.ValidationError``."""
        return self.request.model_validate(data if data is not None else {})

    def decode_reply(self, data: Any) -> R:
        """The validated reply; raises ``pydantic.ValidationError``."""
        result: R = self._adapter.validate_python(data)
        return result

    def reply_schema(self, ref_template: str) -> dict[str, Any]:
        """The JSON schema of the reply's ``data``."""
        schema: dict[str, Any] = self._adapter.json_schema(ref_template=ref_template)
        return schema


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
EVENT: Channel[events.GridEvent, topics.EventPath] = Channel(topics.EVENT, events.GridEvent, name="GridEvent")
METER_EVENT: Channel[events.GridEvent, topics.MeterEventPath] = Channel(
    topics.METER_EVENT, events.GridEvent, name="GridEvent"
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
