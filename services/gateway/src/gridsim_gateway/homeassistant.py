"""Home Assistant MQTT discovery: chosen meters appear as devices with energy sensors.

For each meter in ``homeassistant.meters`` the gateway publishes (retained) one discovery config per
sensor on ``{prefix}/sensor/gridsim_{meter}/{sensor}/config`` — cumulative kWh imported and exported
(``device_class: energy``, ``state_class: total_increasing``, what Home Assistant's energy dashboard takes),
power (W) and voltage (V) — and, after every reading, the meter's state on ``{base}/v1/ha/{meter}``
(retained), which every sensor reads through its ``value_template``. Availability follows the gateway's
retained status. Documented schema: https://www.home-assistant.io/integrations/sensor.mqtt/ and
https://www.home-assistant.io/integrations/mqtt/#mqtt-discovery.

The registers start from what is stored (daily rollups of finished days plus the raw readings since) and
add each newer reading once, so they never decrease and survive a gateway restart. A configured meter that
does not exist yet is announced at its first reading.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg_pool import AsyncConnectionPool

from gridsim_shared import channels
from gridsim_shared.bus import Bus
from gridsim_shared.ids import MeterPath
from gridsim_shared.messages import MeterReading
from gridsim_shared.schemas.homeassistant import HomeAssistantState
from gridsim_shared.settings import Settings
from gridsim_shared.topics import STATUS, HomeAssistantPath, ServicePath

__all__ = ["SENSORS", "HomeAssistant", "Register", "discovery_configs"]

_LOGGER = logging.getLogger(__name__)

# sensor key -> (name, state field, device_class, state_class, unit)
SENSORS: dict[str, tuple[str, str, str, str, str]] = {
    "energy_import": ("Energy imported", "energy_import_kWh", "energy", "total_increasing", "kWh"),
    "energy_export": ("Energy exported", "energy_export_kWh", "energy", "total_increasing", "kWh"),
    "power": ("Power", "power_W", "power", "measurement", "W"),
    "voltage": ("Voltage", "voltage_V", "voltage", "measurement", "V"),
}


def discovery_configs(
    settings: Settings, meter_code: str, gateway_instance: str
) -> list[tuple[str, dict[str, Any]]]:
    """(topic, payload) of each sensor's discovery config for one meter."""
    base = settings.mqtt.base_topic
    slug = meter_code.lower()
    node = f"gridsim_{slug.replace('-', '_')}"
    state_topic = channels.HOME_ASSISTANT.topic(base, HomeAssistantPath(slug))
    availability = STATUS.build(base, ServicePath("gateway", gateway_instance))
    device = {
        "identifiers": [f"gridsim_{base}_{slug}"],
        "name": f"gridsim meter {meter_code}",
        "manufacturer": "gridsim",
        "model": "simulated smart meter",
    }
    configs = []
    for key, (name, field, device_class, state_class, unit) in SENSORS.items():
        payload = {
            "name": name,
            "unique_id": f"gridsim_{base}_{slug}_{key}",
            "object_id": f"{node}_{key}",
            "state_topic": state_topic,
            "value_template": f"{{{{ value_json.{field} }}}}",
            "device_class": device_class,
            "state_class": state_class,
            "unit_of_measurement": unit,
            "availability_topic": availability,
            "availability_template": "{{ value_json.state }}",
            "payload_available": "online",
            "payload_not_available": "offline",
            "device": device,
        }
        configs.append((f"{settings.homeassistant.discovery_prefix}/sensor/{node}/{key}/config", payload))
    return configs


@dataclass
class Register:
    """A meter's cumulative registers and the latest interval counted in them."""

    meter_code: str
    import_kwh: float
    export_kwh: float
    last: datetime | None

    def add(self, reading: MeterReading) -> HomeAssistantState | None:
        """Count a reading newer than the last one; None for one already counted (or older)."""
        if self.last is not None and reading.timestamp <= self.last:
            return None
        self.import_kwh += reading.consumption_kWh or 0.0
        self.export_kwh += reading.production_kWh or 0.0
        self.last = reading.timestamp
        hours = reading.interval_s / 3600
        net_kwh = (reading.consumption_kWh or 0.0) - (reading.production_kWh or 0.0)
        return HomeAssistantState(
            meter_code=self.meter_code,
            timestamp=reading.timestamp,
            energy_import_kWh=round(self.import_kwh, 6),
            energy_export_kWh=round(self.export_kwh, 6),
            power_W=round(net_kwh / hours * 1000, 3),
            voltage_V=reading.avg_voltage,
        )


_STORED = """
    with latest as (select date_trunc('day', max(ts)) as day from meter_data where meter_id = %(id)s)
    select coalesce((select sum(consumption_kwh) from meter_data_1d, latest
                     where meter_id = %(id)s and bucket < latest.day), 0)
         + coalesce((select sum(consumption_kwh) from meter_data, latest
                     where meter_id = %(id)s and ts >= latest.day), 0),
           coalesce((select sum(production_kwh) from meter_data_1d, latest
                     where meter_id = %(id)s and bucket < latest.day), 0)
         + coalesce((select sum(production_kwh) from meter_data, latest
                     where meter_id = %(id)s and ts >= latest.day), 0),
           (select max(ts) from meter_data where meter_id = %(id)s)
"""


class HomeAssistant:
    """Announces the configured meters and keeps their state topics current."""

    def __init__(self, bus: Bus, pool: AsyncConnectionPool, settings: Settings) -> None:
        self.bus = bus
        self.pool = pool
        self.settings = settings
        self.registers: dict[str, Register] = {}

    async def start(self) -> None:
        """Announce the configured meters that exist and follow the readings of all of them.

        A meter created later is announced at its first reading.
        """
        for wanted in self.settings.homeassistant.meters:
            await self.bus.subscribe(channels.READING, self.on_reading, meter=wanted.lower())
            await self._announce(wanted.lower())

    async def _announce(self, slug: str) -> Register | None:
        async with self.pool.connection() as conn:
            cur = await conn.execute("select id, code from meters where lower(code) = %s", (slug,))
            row = await cur.fetchone()
            if row is None:
                return None
            cur = await conn.execute(_STORED, {"id": int(row[0])})
            totals = await cur.fetchone()
        assert totals is not None
        register = Register(str(row[1]), float(totals[0]), float(totals[1]), totals[2])
        self.registers[slug] = register
        for topic, payload in discovery_configs(self.settings, register.meter_code, self.settings.instance):
            await self.bus.publish_raw(topic, json.dumps(payload).encode(), retain=True)
        return register

    async def on_reading(self, reading: MeterReading, path: MeterPath) -> None:
        """Count a reading (announcing its meter first if needed) and publish the meter's state."""
        register = self.registers.get(path.meter) or await self._announce(path.meter)
        if register is None:
            return
        state = register.add(reading)  # a reading the stored totals already hold is not counted twice
        if state is not None:
            await self.bus.publish(channels.HOME_ASSISTANT, state, HomeAssistantPath(path.meter))
