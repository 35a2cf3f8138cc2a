"""The AsyncAPI document of every gridsim topic, generated from the channels and message models.

``python -m gridsim.asyncapi > docs/asyncapi.yaml`` writes it; a test checks that the committed file is
what the code generates, so the document cannot drift from the messages on the wire.
"""

from __future__ import annotations

import sys
from typing import Any

import yaml
from pydantic import BaseModel

from gridsim_shared import channels, commands, messages, topics
from gridsim_shared.bus import COMMAND_QOS
from gridsim_shared.channels import Channel, Command, NoArgs

__all__ = ["CHANNEL_DOCS", "SERVICES", "build_document", "render"]

SERVICES = tuple(commands.BY_SERVICE)
_REF = "#/components/schemas/{model}"

# What each channel carries, who publishes it and who listens — the prose of the document.
CHANNEL_DOCS: dict[str, tuple[Channel[Any, Any], str]] = {
    "reading": (
        channels.READING,
        "One meter's reading for one interval (the seed's MeterData fields plus meter_code and the simulated "
        "timestamp). Leaves are published by meter-sim when `GRIDSIM_SIM__PUBLISH=both` (the default); parent "
        "meters by the aggregator, flagged `is_parent`.",
    ),
    "batch": (
        channels.BATCH,
        "All readings of one transformer's meters for one interval, as columns (one list per field, one entry "
        "per meter; null where a consumer has no production). meter-sim publishes one per transformer per "
        "interval at QoS 1; this is what the aggregator stores. Meters with K = 0 are absent.",
    ),
    "rollup-transformer": (
        channels.ROLLUP_TRANSFORMER,
        "A transformer's aggregate for one interval (published by the aggregator when the interval closes): "
        "energies, mean apparent kVA, its loading as a share of its kVA rating, meters expected/reporting, "
        "`partial`, and the day's coincident peak (retained: the latest value).",
    ),
    "rollup-feeder": (
        channels.ROLLUP_FEEDER,
        "A feeder's aggregate for one interval: the sum of its transformers, with its coincident peak (retained).",
    ),
    "rollup-utility": (
        channels.ROLLUP_UTILITY,
        "The utility's aggregate for one interval: the sum of its feeders, with its coincident peak (retained).",
    ),
    "event": (
        channels.EVENT,
        "Grid events, one schema per kind (`GridEvent` is a union discriminated by `type`, each kind with "
        "its own `data`; gridsim_shared.events). From the aggregator: `transformer_overload` / `transformer_overload_cleared` (an IEEE "
        "C57.91 hot-spot criterion: above 120 °C, cleared below 110 °C), `voltage_low` / `voltage_high` / "
        "`voltage_restored` (a meter leaving or re-entering its voltage band, once per transition), "
        "`transformer_trip` (hot spot past the trip limit: meter-sim takes the transformer off supply), "
        "`sla_breach` (a feeder missed a monthly service level; docs/grid-health.md). Others: "
        "`spike`, `control`, `p2p-trade`, `dr-event` (utility: a demand-response event created, modified or "
        "cancelled; subject `dr-{id}`), ... The subject level is the node or meter code.",
    ),
    "meter-event": (
        channels.METER_EVENT,
        "A meter's own events under its place in the grid: `status` (online/offline), `tamper`, `fault`; "
        "supply (docs/grid-health.md): `last_gasp` (an outage took it off supply), `power_restored`, "
        "`disconnected` / `reconnected` (its service switch, operated remotely).",
    ),
    "forecast": (
        channels.FORECAST,
        "The utility service's load and net-load forecast of one grid node (utility, feeder, transformer) from "
        "one model (`seasonal-naive`, `regression`) for one horizon (`hour-ahead`: the hour starting 1 h after "
        "`issued_at`; `day-ahead`: the next 24 hours, each issued 24 h before it), republished every simulated "
        "hour once the aggregator has rolled it up (retained).",
    ),
    "price": (
        channels.PRICE,
        "The utility's dynamic price at the utility or a feeder (retained): the current hour and the next 24, "
        "each with its time-of-use rate, the real-time price (the rate moved by the forecast load against the "
        "node's mean) or a critical-peak event's price. Republished every simulated hour.",
    ),
    "clock": (
        channels.CLOCK,
        "The simulation clock (retained), published by the meter-sim instance that owns it at every tick: "
        "simulated time, running/paused, speed, lag, dropped intervals, world_version.",
    ),
    "watermark": (
        channels.WATERMARK,
        "The latest interval the aggregator has committed to the database (retained). `POST /simulation/step` "
        "waits for it so a script can step and then read.",
    ),
    "job": (
        channels.JOB,
        "A long job's progress (retained: its latest state), published by the gateway that runs it after "
        "every chunk and when it ends: `POST /simulation/step` beyond `GRIDSIM_GATEWAY__STEP_JOB_INTERVALS` (or "
        "with `?job=true`) answers 202 with the job; `GET /jobs/{id}` and `GET /jobs/{id}/events` (SSE) show the "
        "same message.",
    ),
    "home-assistant": (
        channels.HOME_ASSISTANT,
        "A meter's cumulative kWh registers and latest power and voltage, for Home Assistant (retained), "
        "published by the gateway for each meter in `GRIDSIM_HOMEASSISTANT__METERS` when "
        "`GRIDSIM_HOMEASSISTANT__ENABLED` is true. The gateway also publishes Home Assistant's MQTT discovery "
        "configs (retained) on `{discovery_prefix}/sensor/gridsim_{meter}/{sensor}/config` (outside the base "
        "topic: Home Assistant's own convention), whose `state_topic` is this channel.",
    ),
    "status": (
        channels.STATUS,
        "A service instance's liveness (retained): `online` on connect, `offline` on shutdown and as the MQTT "
        "last will.",
    ),
}


def _topic_address(template: topics.TopicTemplate[Any]) -> str:
    levels = "/".join("{" + name + "}" for name in template.fields)
    return "/".join(part for part in ("{base}", topics.VERSION, template.kind, levels) if part)


def _schema(model: type[messages.Message]) -> dict[str, Any]:
    return model.model_json_schema(ref_template="#/components/schemas/{model}")


def build_document() -> dict[str, Any]:
    """The AsyncAPI 3.0 document as a dict."""
    doc_channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    for name, (channel, description) in CHANNEL_DOCS.items():
        model_name = channel.name
        schema = channel.json_schema(ref_template=_REF)
        schemas.update(schema.pop("$defs", {}))
        schemas[model_name] = schema
        doc_channels[name] = {
            "address": _topic_address(channel.template),
            "description": description,
            "parameters": {
                field: {"description": f"{field} id ({'[a-z0-9][a-z0-9_-]{0,31}'})"}
                for field in ["base", *channel.template.fields]
            },
            "messages": {model_name: {"$ref": f"#/components/messages/{model_name}"}},
            "bindings": {"mqtt": {"qos": channel.qos, "retain": channel.retain}},
        }
        operations[f"receive-{name}"] = {"action": "receive", "channel": {"$ref": f"#/channels/{name}"}}
    for model in (messages.Request, messages.Reply, messages.ErrorBody):
        schema = _schema(model)
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    doc_channels["command"] = {
        "address": _topic_address(topics.COMMAND),
        "description": "A request to one operation of one service (the gateway's HTTP routes use these; agents "
        "can too). The envelope carries `correlation_id` and `reply_to`, so request/reply works on MQTT 3.1.1; "
        "`data` is the operation's body (the same JSON as the HTTP route's body). Each command has its own "
        "channel below (`cmd-{service}-{operation}`) with the schemas of its request's and its reply's `data`, "
        "generated from its `Command` definition in `gridsim_shared.commands`.",
        "parameters": {"base": {}, "service": {}, "operation": {}},
        "messages": {"Request": {"$ref": "#/components/messages/Request"}},
        "bindings": {"mqtt": {"qos": COMMAND_QOS, "retain": False}},
    }
    doc_channels["reply"] = {
        "address": _topic_address(topics.REPLY),
        "description": "Replies for one client of one broker user (only that user may read them, only services "
        "may publish them; a service ignores a `reply_to` outside this namespace): `{correlation_id, status: "
        "ok|error, data | error}`; errors carry an HTTP-like status, a code, the field and the reason.",
        "parameters": {"base": {}, "user": {}, "client": {}},
        "messages": {"Reply": {"$ref": "#/components/messages/Reply"}},
        "bindings": {"mqtt": {"qos": COMMAND_QOS, "retain": False}},
    }
    operations["send-command"] = {"action": "send", "channel": {"$ref": "#/channels/command"}}
    for service in SERVICES:
        _add_service_commands(service, doc_channels, operations, schemas)
    operations["receive-reply"] = {"action": "receive", "channel": {"$ref": "#/channels/reply"}}
    component_messages = {
        name: {
            "name": name,
            "contentType": "application/json",
            "payload": {"$ref": f"#/components/schemas/{name}"},
        }
        for name in sorted({spec[0].name for spec in CHANNEL_DOCS.values()} | {"Request", "Reply"})
    }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "gridsim topics",
            "version": "1.0.0",
            "description": "Every MQTT topic of gridsim. Topics are `{base}/v1/{kind}/{path...}`: the base is "
            "`GRIDSIM_MQTT__BASE_TOPIC` (default `gridsim`), the kind comes before the grid path so that `#` "
            "selects a whole subtree (e.g. `gridsim/v1/reading/pge/sf-mission/#`). Every level is an id "
            "matching `[a-z0-9][a-z0-9_-]{0,31}`. QoS 1 is at-least-once: consumers are idempotent. This file "
            "is generated from the message models (`python -m gridsim.asyncapi`).",
        },
        "defaultContentType": "application/json",
        "servers": {"local": {"host": "127.0.0.1:1883", "protocol": "mqtt", "description": "`gridsim up`"}},
        "channels": doc_channels,
        "operations": operations,
        "components": {"messages": component_messages, "schemas": dict(sorted(schemas.items()))},
    }


def _add_service_commands(
    service: str, doc_channels: dict[str, Any], operations: dict[str, Any], schemas: dict[str, Any]
) -> None:
    """One channel per command a service answers, with the schemas of its request's and reply's ``data``.

    Generated from the :class:`~gridsim_shared.channels.Command` definitions (``gridsim_shared.commands``),
    the objects both the caller and the handler use, so the document cannot drift from either.
    """
    module = commands.BY_SERVICE[service]
    for command in sorted(
        (value for value in vars(module).values() if isinstance(value, Command)), key=lambda c: c.operation
    ):
        name = f"cmd-{service}-{command.operation}"
        request_schema: dict[str, Any] = {"type": "object"}
        if command.request is not NoArgs:
            request_schema = _component(command.request, schemas)
        if isinstance(command.reply, type) and issubclass(command.reply, BaseModel):
            reply_schema = _component(command.reply, schemas)
        else:  # a list, a union, a mapping: its own schema, referring to the models' components
            reply_schema = command.reply_schema(ref_template=_REF)
            schemas.update(reply_schema.pop("$defs", {}))
        doc_channels[name] = {
            "address": f"{{base}}/{topics.VERSION}/{topics.COMMAND.kind}/{service}/{command.operation}",
            "description": command.description or command.operation,
            "messages": {
                "Request": {
                    "name": f"{name}-request",
                    "payload": {
                        "allOf": [
                            {"$ref": "#/components/schemas/Request"},
                            {"type": "object", "properties": {"data": request_schema}},
                        ]
                    },
                },
                "Reply": {
                    "name": f"{name}-reply",
                    "payload": {
                        "allOf": [
                            {"$ref": "#/components/schemas/Reply"},
                            {"type": "object", "properties": {"data": reply_schema}},
                        ]
                    },
                },
            },
            "bindings": {"mqtt": {"qos": COMMAND_QOS, "retain": False}},
        }
        operations[f"send-{name}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{name}"},
            "messages": [{"$ref": f"#/channels/{name}/messages/Request"}],
            "reply": {
                "channel": {"$ref": "#/channels/reply"},
                "messages": [{"$ref": f"#/channels/{name}/messages/Reply"}],
            },
        }


def _component(model: type[BaseModel], schemas: dict[str, Any]) -> dict[str, Any]:
    """``model``'s schema added to the components; a reference to it."""
    schema = model.model_json_schema(ref_template=_REF)
    schemas.update(schema.pop("$defs", {}))
    schemas[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def render() -> str:
    """The document as YAML text."""
    return yaml.safe_dump(build_document(), sort_keys=False, allow_unicode=True, width=110)


if __name__ == "__main__":
    sys.stdout.write(render())
