"""A World Engine client's flow on the whole pipeline: meter-sim → broker → aggregator → gateway.

Through the ``/meter-data-simulator`` routes only, as a World Engine client would: create a meter, a
household (ER) on it and a DER (switched off, as new DERs are), switch the DER on, step the clock, and
read the new readings from ``/meter-datasets/{meterId}`` and on the meter's MQTT reading topic. Then the
same grid through gridsim's own API: a World Engine write shows in ``/admin``, and an ``/admin`` write
shows in the World Engine routes. Step mode: no wall-clock waits.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from gridsim_aggregator.__main__ import serve as serve_aggregator
from gridsim_gateway.main import create_app
from gridsim_meter_sim.__main__ import serve as serve_meter_sim
from gridsim_shared import channels
from gridsim_shared.bus import Bus
from gridsim_shared.commands import meter_sim
from gridsim_shared.errors import RemoteError, RpcTimeout
from gridsim_shared.settings import Settings
from gridsim_shared.testing import Collector, gateway_client, running

pytestmark = pytest.mark.integration

WE = "/meter-data-simulator"


@contextlib.asynccontextmanager
async def _system(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        running(serve_meter_sim, serve_aggregator, settings=settings),
        gateway_client(create_app(settings)) as client,
    ):
        async with Bus(settings.mqtt, "probe", "0") as bus, asyncio.timeout(30):
            while True:  # meter-sim answers commands once it has started
                with contextlib.suppress(RpcTimeout):
                    with contextlib.suppress(RemoteError):
                        await bus.call(meter_sim.APPLIANCES, timeout=0.5)
                    break
        yield client


async def _ok(response: Any, status: int = 200) -> Any:
    result: httpx.Response = await response
    assert result.status_code == status, result.text
    return result.json()


async def _step(client: httpx.AsyncClient, intervals: int) -> None:
    result = await _ok(client.post("/simulation/step", json={"intervals": intervals}))
    assert result["stored"] is True, result


async def test_a_world_engine_client_switches_a_der_on_and_reads_the_new_readings(settings: Settings) -> None:
    async with _system(settings) as client:
        for node in (
            {"code": "pge", "name": "Pacific Gas and Electric Company", "level": "utility"},
            {"code": "sf-mission", "name": "SF Mission", "level": "substation", "parent_id": "pge"},
            {
                "code": "tx-0",
                "name": "Transformer_0",
                "level": "transformer",
                "parent_id": "sf-mission",
                "capacity_kVA": 120,
                "latitude": 37.76,
                "longitude": -122.42,
            },
        ):
            await _ok(client.post("/admin/grid-node", json=node), 201)
        utility = (await _ok(client.get(f"{WE}/utility/detailed")))["utilities"][0]
        transformer = utility["substations"][0]["transformers"][0]

        meter = (
            await _ok(
                client.post(
                    f"{WE}/meters",
                    json={
                        "data": {
                            "code": "MTR-0000",
                            "type": "SMART",
                            "consumptionLoadFactor": 1,
                            "latitude": 37.7601,
                            "longitude": -122.4201,
                            "pincode": "94103",
                            "transformer": transformer["id"],
                        }
                    },
                ),
                201,
            )
        )["data"]
        er = (
            await _ok(
                client.post(
                    f"{WE}/energy-resources",
                    json={"data": {"name": "William Flores", "type": "CONSUMER", "meter": str(meter["id"])}},
                ),
                201,
            )
        )["data"]
        der = await _ok(client.post(f"{WE}/der", json={"energy_resource": er["id"], "appliance": 4}))
        assert der["switched_on"] is False

        async with Bus(settings.mqtt, "we-e2e-readings") as bus:
            readings = await Collector(bus, channels.READING).start()

            # Switched off: the household draws nothing.
            await _step(client, 30)
            before = (await _ok(client.get(f"{WE}/meter-datasets/{meter['id']}")))["data"]
            assert len(before) == 30
            assert sum(row["consumptionKWh"] for row in before) == 0

            toggled = await _ok(
                client.post(f"{WE}/toggle-der/{er['id']}", json={"der_id": der["id"], "switched_on": True})
            )
            assert toggled["message"] == "DER switched on successfully"
            await _step(client, 30)

            rows = (await _ok(client.get(f"{WE}/meter-datasets/{meter['id']}")))["data"]
            assert len(rows) == 60
            after = rows[30:]
            assert [r["timestamp"] for r in rows] == sorted(r["timestamp"] for r in rows)
            assert sum(row["consumptionKWh"] for row in after) > 0  # the refrigerator now runs
            # No more than a 200 W fridge can draw in 30 minutes.
            assert sum(row["consumptionKWh"] for row in after) <= 0.2 * 0.5 + 1e-9
            assert all(0.8 <= row["powerFactor"] <= 1 for row in after if row["consumptionKWh"] > 0)

            on_topic = await readings.wait_for(60)
            mine = [msg for msg, _path in on_topic if msg.meter_id == meter["id"]]
            assert len(mine) == 60
            by_time = {
                msg.timestamp.isoformat(timespec="milliseconds").replace("+00:00", "Z"): msg for msg in mine
            }
            for row in after:
                assert by_time[row["timestamp"]].consumption_kWh == pytest.approx(row["consumptionKWh"])
            assert {path.meter for _msg, path in on_topic} == {"mtr-0000"}

        # The grid load of the transformer reflects the interval's rollup.
        loads = (await _ok(client.get(f"{WE}/grid-loads")))["data"]
        assert loads[0]["transformer"]["id"] == transformer["id"]
        assert loads[0]["timestamp"] == rows[-1]["timestamp"]

        # One grid, two APIs: the World Engine's writes in gridsim's own API ...
        admin_meter = await _ok(client.get(f"/admin/meter/{meter['id']}"))
        assert (admin_meter["meter_id"], admin_meter["er_id"]) == ("MTR-0000", er["id"])
        admin_er = await _ok(client.get(f"/admin/er/{er['id']}"))
        assert [(a["der_id"], a["switched_on"]) for a in admin_er["appliances"]] == [(der["id"], True)]
        # ... and gridsim's own writes in the World Engine's routes.
        await _ok(client.patch(f"/admin/meter/{meter['id']}", json={"load_factor": 0.5}))
        seen = (await _ok(client.get(f"{WE}/meters/{meter['id']}?populate[0]=energyResource")))["data"]
        assert seen["consumptionLoadFactor"] == 0.5
        assert seen["energyResource"]["name"] == "William Flores"
        own = await _ok(
            client.post("/admin/meter", json={"meter_id": "MTR-0001", "transformer_id": "tx-0"}), 201
        )
        found = (await _ok(client.get(f"{WE}/meters?filters[code][$eq]=MTR-0001")))["data"]["results"]
        assert [(m["id"], m["type"]) for m in found] == [(own["id"], "SMART")]
