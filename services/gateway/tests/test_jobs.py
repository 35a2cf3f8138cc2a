"""Step jobs against the real meter-sim and aggregator: a 30-day step (hourly intervals) answers 202,
reports progress over HTTP, SSE and MQTT, is cancelled, and leaves the clock after its last whole chunk."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from gridsim_aggregator.__main__ import serve as serve_aggregator
from gridsim_gateway.jobs import next_chunk
from gridsim_gateway.main import create_app
from gridsim_meter_sim.__main__ import serve as serve_meter_sim
from gridsim_shared import channels
from gridsim_shared.bus import Bus
from gridsim_shared.schemas.jobs import StepJob
from gridsim_shared.settings import Settings
from gridsim_shared.testing import Collector, gateway_client, running

START = datetime(2025, 6, 1, tzinfo=UTC)
MONTH = 30 * 24


def test_chunks_aim_at_the_target_time() -> None:
    assert next_chunk(None, 1.0, 500) == 10
    assert next_chunk(None, 1.0, 3) == 3
    assert next_chunk(50.0, 1.0, 500) == 50
    assert next_chunk(50.0, 1.0, 20) == 20
    assert next_chunk(0.2, 1.0, 500) == 1
    assert next_chunk(1e6, 1.0, 100_000) == 1440


async def _post(client: httpx.AsyncClient, path: str, body: dict[str, Any], status: int) -> Any:
    response = await client.post(path, json=body)
    assert response.status_code == status, response.text
    return response.json()


async def _until_final(client: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    async with asyncio.timeout(180):
        while True:
            job: dict[str, Any] = (await client.get(f"/jobs/{job_id}")).json()
            if job["state"] in {"succeeded", "cancelled", "failed"}:
                return job
            await asyncio.sleep(0.1)


async def _first_progress(client: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    """The job once it has done some work (polled: the in-process transport buffers SSE responses)."""
    async with asyncio.timeout(120):
        while True:
            job: dict[str, Any] = (await client.get(f"/jobs/{job_id}")).json()
            if job["done"] > 0:
                return job
            await asyncio.sleep(0.05)


async def _sse(client: httpx.AsyncClient, job_id: str) -> list[tuple[str, dict[str, Any]]]:
    """The events of a job's SSE stream (read to its end: use on a finished job)."""
    events: list[tuple[str, dict[str, Any]]] = []
    async with asyncio.timeout(30), client.stream("GET", f"/jobs/{job_id}/events") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        event = ""
        async for line in response.aiter_lines():
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                events.append((event, json.loads(line.split(":", 1)[1])))
    return events


@pytest.mark.integration
@pytest.mark.timeout(240)
async def test_a_month_step_job_reports_progress_cancels_and_keeps_the_clock(settings: Settings) -> None:
    settings = settings.model_copy(
        update={
            "sim": settings.sim.model_copy(update={"start": START, "interval_s": 3600}),
            "gateway": settings.gateway.model_copy(
                update={"step_job_intervals": 24, "step_job_chunk_s": 0.3}
            ),
        }
    )
    place = {"city": "San Francisco", "latitude": 37.77, "longitude": -122.42}
    async with (
        running(serve_meter_sim, serve_aggregator, settings=settings),
        gateway_client(create_app(settings)) as client,
        Bus(settings.mqtt, "probe", "1") as bus,
    ):
        er = await _post(
            client,
            "/admin/er",
            {"name": "J", "type": "consumer", "appliance_type": ["Refrigerator"], **place},
            201,
        )
        meter = await _post(client, "/admin/meter", {"meter_id": "JOB-1", **place}, 201)
        await _post(client, "/admin/meter/link", {"meter_id": meter["id"], "er_id": er["id"]}, 200)
        progress = await Collector(bus, channels.JOB).start()

        small = await _post(client, "/simulation/step", {"intervals": 2}, 200)  # under the bound: as before
        assert small["intervals"] == 2

        response = await client.post("/simulation/step", json={"intervals": MONTH})
        assert response.status_code == 202, response.text
        job = response.json()
        assert response.headers["location"] == f"/jobs/{job['id']}"
        assert (job["state"], job["intervals"], job["done"]) == ("running", MONTH, 0)

        busy = await client.post("/simulation/step", params={"job": "true"}, json={"intervals": 5})
        assert busy.status_code == 409, busy.text
        assert busy.json()["error"]["field"] == "intervals"

        first = await _first_progress(client, job["id"])
        assert first["rate"] > 0
        assert first["eta_s"] is not None
        cancelling = await _post(client, f"/jobs/{job['id']}/cancel", {}, 200)
        assert cancelling["state"] in {"cancelling", "cancelled"}
        final = await _until_final(client, job["id"])
        assert final["state"] == "cancelled", final
        assert 0 < final["done"] < MONTH
        assert final["stored"] is True
        expected_clock = START + timedelta(hours=2 + final["done"])
        clock = (await client.get("/simulation-time")).json()
        assert datetime.fromisoformat(clock["current_datetime"]) == expected_clock
        assert datetime.fromisoformat(final["current_datetime"]) == expected_clock
        stored = (
            await client.get(
                "/meter/stream", params={"meter_id": "JOB-1", "limit": 100_000, "from": START.isoformat()}
            )
        ).json()
        assert len(stored) == 2 + final["done"]  # every interval before the clock is stored, none after

        # MQTT: the same progress, retained per job, ending in the cancelled state.
        await progress.wait_for(3, timeout=30)
        async with asyncio.timeout(30):
            while progress.messages[-1][0].state != "cancelled":
                await asyncio.sleep(0.05)
        states: list[StepJob] = [msg for msg, path in progress.messages if path.job == job["id"]]
        dones = [s.done for s in states]
        assert dones == sorted(dones)
        assert states[-1].done == final["done"]
        assert await _sse(client, job["id"]) == [("done", final)]

        # A job run to the end; the finished jobs are listed, newest first.
        done_job = await _post(client, "/simulation/step?job=true", {"intervals": 6}, 202)
        finished = await _until_final(client, done_job["id"])
        assert (finished["state"], finished["done"], finished["eta_s"]) == ("succeeded", 6, 0.0)
        listed = (await client.get("/jobs")).json()
        assert [j["id"] for j in listed] == [done_job["id"], job["id"]]
        missing = await client.get("/jobs/nope")
        assert missing.status_code == 404
        assert missing.json()["error"]["field"] == "job_id"
