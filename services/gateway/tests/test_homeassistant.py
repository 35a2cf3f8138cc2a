"""Home Assistant MQTT discovery: the configs match Home Assistant's documented MQTT sensor schema, the
registers only grow, and against the real meter-sim a meter appears with its kWh registers."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import jsonschema
import pytest

from gridsim.testing import IsolatedSettings
from gridsim_aggregator.__main__ import serve as serve_aggregator
from gridsim_gateway.homeassistant import SENSORS, Register, discovery_configs
from gridsim_gateway.main import create_app
from gridsim_meter_sim.__main__ import serve as serve_meter_sim
from gridsim_shared import channels
from gridsim_shared.bus import Ack, Bus
from gridsim_shared.messages import MeterReading
from gridsim_shared.settings import HomeAssistantSettings, Settings
from gridsim_shared.testing import Collector, gateway_client, running

T0 = datetime(2025, 6, 20, tzinfo=UTC)

# Home Assistant's MQTT sensor discovery payload, as documented (integrations/sensor.mqtt and
# integrations/mqtt#mqtt-discovery; device classes and their units from integrations/sensor#device-class).
_UNITS = {"energy": ["Wh", "kWh", "MWh", "GJ"], "power": ["W", "kW"], "voltage": ["V", "mV"]}
HA_SENSOR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["state_topic", "unique_id", "name", "device"],
    "properties": {
        "name": {"type": "string"},
        "unique_id": {"type": "string", "minLength": 1},
        "object_id": {"type": "string", "pattern": "^[a-z0-9_]+$"},
        "state_topic": {"type": "string", "pattern": "^[^#+]+$"},
        "value_template": {"type": "string", "pattern": r"^\{\{.*\}\}$"},
        "device_class": {"enum": sorted(_UNITS)},
        "state_class": {"enum": ["measurement", "total", "total_increasing"]},
        "unit_of_measurement": {"type": "string"},
        "availability_topic": {"type": "string"},
        "availability_template": {"type": "string"},
        "payload_available": {"type": "string"},
        "payload_not_available": {"type": "string"},
        "device": {
            "type": "object",
            "required": ["identifiers"],
            "properties": {
                "identifiers": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                "name": {"type": "string"},
                "manufacturer": {"type": "string"},
                "model": {"type": "string"},
            },
        },
    },
    # The energy dashboard takes energy sensors with state_class total or total_increasing only.
    "allOf": [
        {
            "if": {"properties": {"device_class": {"const": cls}}},
            "then": {"properties": {"unit_of_measurement": {"enum": units}}},
        }
        for cls, units in _UNITS.items()
    ]
    + [
        {
            "if": {"properties": {"device_class": {"const": "energy"}}},
            "then": {"properties": {"state_class": {"enum": ["total", "total_increasing"]}}},
        }
    ],
}


def test_discovery_configs_follow_home_assistants_schema() -> None:
    settings = IsolatedSettings(homeassistant=HomeAssistantSettings(enabled=True, meters=["MTR-0001"]))
    configs = discovery_configs(settings, "MTR-0001", "0")
    assert len(configs) == len(SENSORS)
    for topic, payload in configs:
        jsonschema.validate(payload, HA_SENSOR_SCHEMA)
        assert topic.startswith("homeassistant/sensor/gridsim_mtr_0001/")
        assert topic.endswith("/config")
        assert payload["state_topic"] == "gridsim/v1/ha/mtr-0001"
    energy = [p for _, p in configs if p["device_class"] == "energy"]
    assert {p["state_class"] for p in energy} == {"total_increasing"}
    assert len({p["unique_id"] for _, p in configs}) == len(configs)
    broken = {**configs[0][1], "device_class": "energy", "unit_of_measurement": "W"}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, HA_SENSOR_SCHEMA)


def _reading(minute: int, kwh: float, export: float | None = None) -> MeterReading:
    return MeterReading(
        meter_id=1,
        meter_code="M",
        timestamp=T0 + timedelta(minutes=minute),
        consumption_kWh=kwh,
        production_kWh=export,
        avg_current=1.0,
        avg_voltage=240.0,
    )


def test_registers_count_each_interval_once_and_never_decrease() -> None:
    register = Register("M", 10.0, 2.0, T0)
    assert register.add(_reading(0, 5.0)) is None  # already in the stored totals
    state = register.add(_reading(1, 0.06, 0.01))
    assert state is not None
    assert (state.energy_import_kWh, state.energy_export_kWh) == (10.06, 2.01)
    assert state.power_W == pytest.approx(3000.0)  # 0.05 kWh net in a minute
    assert register.add(_reading(1, 9.0)) is None  # a redelivery
    later = register.add(_reading(2, 0.0))
    assert later is not None
    assert later.energy_import_kWh == 10.06


@pytest.mark.integration
async def test_a_simulated_home_appears_in_home_assistant(settings: Settings) -> None:
    prefix = f"ha-{settings.mqtt.base_topic}"
    settings = settings.model_copy(
        update={
            "sim": settings.sim.model_copy(update={"start": T0}),
            "homeassistant": HomeAssistantSettings(enabled=True, meters=["ha-1"], discovery_prefix=prefix),
        }
    )
    place = {"city": "San Francisco", "latitude": 37.77, "longitude": -122.42}
    configs: dict[str, dict[str, Any]] = {}

    async def on_config(topic: str, payload: bytes, ack: Ack) -> None:
        configs[topic] = json.loads(payload)
        ack()

    async with (
        running(serve_meter_sim, serve_aggregator, settings=settings),
        gateway_client(create_app(settings)) as client,
        Bus(settings.mqtt, "probe", "1") as bus,
    ):
        await bus.subscribe_raw(f"{prefix}/sensor/#", on_config)
        states = await Collector(bus, channels.HOME_ASSISTANT).start()
        er = await client.post(
            "/admin/er", json={"name": "H", "type": "consumer", "appliance_type": ["Refrigerator"], **place}
        )
        meter = await client.post("/admin/meter", json={"meter_id": "HA-1", **place})
        await client.post(
            "/admin/meter/link", json={"meter_id": meter.json()["id"], "er_id": er.json()["id"]}
        )
        step = await client.post("/simulation/step", json={"intervals": 5})
        assert step.status_code == 200, step.text
        await states.wait_for(5, timeout=60)
        async with asyncio.timeout(30):
            while len(configs) < len(SENSORS):
                await asyncio.sleep(0.05)
        stored = (await client.get("/meter/stream", params={"meter_id": "HA-1", "limit": 100})).json()

    for topic, payload in configs.items():
        jsonschema.validate(payload, HA_SENSOR_SCHEMA)
        assert payload["state_topic"] == f"{settings.mqtt.base_topic}/v1/ha/ha-1", topic
    imports = [msg.energy_import_kWh for msg, _path in states.messages]
    assert imports == sorted(imports)
    assert imports[-1] == pytest.approx(sum(p["consumption_kWh"] for p in stored), abs=1e-6)
    assert states.messages[-1][0].timestamp == T0 + timedelta(minutes=4)
