"""The AsyncAPI document: generated from the models, committed, and accepting the real messages."""

from __future__ import annotations

import functools
import importlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import yaml

from gridsim import asyncapi
from gridsim_shared import channels, commands
from gridsim_shared.channels import Channel
from gridsim_shared.commands import meter_sim
from gridsim_shared.events import OverloadDetails, TransformerOverloadEvent
from gridsim_shared.messages import (
    ClockState,
    Message,
    MeterReading,
    ReadingBatch,
    Reply,
    Request,
    Rollup,
    ServiceStatus,
    Watermark,
)
from gridsim_shared.schemas.homeassistant import HomeAssistantState
from gridsim_shared.schemas.jobs import StepJob

# The modules whose routers each service includes in its __main__.
SERVICE_ROUTERS: dict[str, tuple[str, ...]] = {
    "meter-sim": (
        "handlers",
        "worldengine_commands",
        "control_commands",
        "outage_commands",
        "booking_commands",
    ),
    "aggregator": ("service_levels",),
    "billing": ("handlers",),
    "feasibility": ("handlers",),
    "utility": ("handlers",),
}
DOC_PATH = Path(__file__).resolve().parents[1] / "docs" / "asyncapi.yaml"
T0 = datetime(2025, 6, 20, 12, tzinfo=UTC)

SAMPLES: list[Message] = [
    MeterReading(
        meter_id=1, meter_code="MTR-1", timestamp=T0, consumption_kWh=0.02, avg_current=5.0, avg_voltage=240.0
    ),
    ReadingBatch(
        timestamp=T0,
        meter_id=[1],
        meter_code=["MTR-1"],
        consumption_kWh=[0.02],
        production_kWh=[None],
        consumption_kVAh=[0.021],
        production_kVAh=[None],
        avg_current=[5.0],
        avg_voltage=[240.0],
        reactive_power_kVAR=[0.006],
        power_factor=[0.95],
    ),
    Rollup(
        level="transformer",
        node_id=3,
        node_code="tx-101",
        timestamp=T0,
        consumption_kWh=1.0,
        production_kWh=0.5,
        net_kWh=0.5,
        apparent_kVA=35.0,
        capacity_kVA=50.0,
        loading_pct=70.0,
        meters_expected=10,
        meters_reporting=10,
    ),
    TransformerOverloadEvent(
        type="transformer_overload",
        severity="critical",
        timestamp=T0,
        subject="tx-101",
        message="sustained overload",
        data=OverloadDetails(
            node_id=3, loading_pct=130.0, apparent_kVA=65.0, capacity_kVA=50.0, hot_spot_c=125.0
        ),
    ),
    ClockState(current_datetime=T0, state="running", speed=1440, interval_s=60, tick=720),
    Watermark(committed_until=T0, readings_committed=150),
    ServiceStatus(service="billing", instance="0", state="online", started_at=T0),
    HomeAssistantState(
        meter_code="MTR-1",
        timestamp=T0,
        energy_import_kWh=12.5,
        energy_export_kWh=0.0,
        power_W=420.0,
        voltage_V=240.0,
    ),
    StepJob(id="3f7f8442d3e92b24", state="running", intervals=720, done=120, chunk=60, started_at=T0),
    Request(correlation_id="c1", reply_to="gridsim/v1/reply/gateway", data={"intervals": 5}),
    Reply(correlation_id="c1", status="ok", data={"stepped": 5}),
]


@functools.cache  # parsed once: the document is large and the tests only read it
def _document() -> dict[str, Any]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser, when PyYAML has it
    loaded: dict[str, Any] = yaml.load(DOC_PATH.read_text(), Loader=loader)  # a safe loader
    return loaded


def test_committed_document_is_what_the_models_generate() -> None:
    assert DOC_PATH.read_text() == asyncapi.render(), (
        "regenerate: uv run python -m gridsim.asyncapi > docs/asyncapi.yaml"
    )


def test_every_channel_of_the_library_is_documented() -> None:
    documented = {spec[0] for spec in asyncapi.CHANNEL_DOCS.values()}
    defined = {value for value in vars(channels).values() if isinstance(value, Channel)}
    assert defined == documented
    doc = _document()
    for name, (channel, _description) in asyncapi.CHANNEL_DOCS.items():
        entry = doc["channels"][name]
        assert entry["bindings"]["mqtt"] == {"qos": channel.qos, "retain": channel.retain}
        assert entry["address"].startswith("{base}/v1/" + channel.template.kind)


def test_schemas_accept_the_real_messages_and_refuse_broken_ones() -> None:
    doc = _document()
    schemas = doc["components"]["schemas"]
    registry_root = {"components": {"schemas": schemas}}
    for sample in SAMPLES:
        schema = {**schemas[type(sample).__name__], "components": registry_root["components"]}
        instance = orjson.loads(sample.model_dump_json())
        jsonschema.validate(instance, schema)
        required = schema.get("required", [])
        if required:
            broken = {k: v for k, v in instance.items() if k != required[0]}
            try:
                jsonschema.validate(broken, schema)
            except jsonschema.ValidationError:
                continue
            msg = f"{type(sample).__name__} schema accepted a message without {required[0]}"
            raise AssertionError(msg)


def test_every_command_is_documented_with_its_request_and_reply() -> None:
    doc = _document()
    defined = commands.all_commands()
    assert len(defined) > 50  # the package is scanned, not an empty list
    for command in defined:
        entry = doc["channels"][f"cmd-{command.service}-{command.operation}"]
        assert entry["address"] == f"{{base}}/v1/cmd/{command.service}/{command.operation}"
        request, reply = entry["messages"]["Request"], entry["messages"]["Reply"]
        assert request["payload"]["allOf"][0] == {"$ref": "#/components/schemas/Request"}
        assert reply["payload"]["allOf"][0] == {"$ref": "#/components/schemas/Reply"}
        assert reply["payload"]["allOf"][1]["properties"]["data"], command.name
    documented = {name for name in doc["channels"] if name.startswith("cmd-")}
    assert documented == {f"cmd-{c.service}-{c.operation}" for c in defined}


def test_every_command_a_service_answers_is_a_defined_command() -> None:
    """A handler must be declared against a command of ``gridsim_shared.commands`` (so it is documented)."""
    defined = set(commands.all_commands())
    for service, modules in SERVICE_ROUTERS.items():
        served = [
            command
            for module in modules
            for command in importlib.import_module(
                f"gridsim_{service.replace('-', '_')}.{module}"
            ).router.commands
        ]
        assert served, service
        assert all(command in defined and command.service == service for command in served)
    assert {c.service for c in defined} == set(SERVICE_ROUTERS)


def test_a_reply_schema_accepts_the_real_reply_and_refuses_a_broken_one() -> None:
    doc = _document()
    root = {"components": doc["components"]}
    entry = doc["channels"]["cmd-meter-sim-delete_er"]
    schema = {**entry["messages"]["Reply"]["payload"]["allOf"][1]["properties"]["data"], **root}
    jsonschema.validate(
        meter_sim.DELETE_ER.reply(message="ER 3 deleted", id=3).model_dump(mode="json"), schema
    )
    try:
        jsonschema.validate({"message": "ER 3 deleted"}, schema)
    except jsonschema.ValidationError:
        return
    msg = "the reply schema of delete_er accepted a reply without its fields"
    raise AssertionError(msg)


def test_the_event_channel_documents_each_kind_of_event() -> None:
    doc = _document()
    schemas = doc["components"]["schemas"]
    kinds = {ref["$ref"].rsplit("/", 1)[-1] for ref in schemas["GridEvent"]["oneOf"]}
    assert {"TransformerTripEvent", "SpikeEvent", "P2PTradeEvent", "DrEventEvent"} <= kinds
    assert schemas["GridEvent"]["discriminator"]["propertyName"] == "type"
    trip = schemas["TransformerTripEvent"]
    assert trip["properties"]["data"] == {"$ref": "#/components/schemas/TripDetails"}
