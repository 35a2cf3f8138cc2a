"""gridsim.client and the data CLI against the real system: meter-sim, aggregator and billing in-process,
the gateway served by uvicorn on a real port (SSE streams for real), the sync client, the async client,
polars frames, the MQTT live iterator, ``gridsim step --days 30`` cancelled by Ctrl-C (exit 130) and
``gridsim export``."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import uvicorn

from gridsim.client import ApiError, AsyncClient, Client, live_readings
from gridsim.embedded import free_port
from gridsim_aggregator.__main__ import serve as serve_aggregator
from gridsim_billing.__main__ import serve as serve_billing
from gridsim_gateway.main import create_app
from gridsim_meter_sim.__main__ import serve as serve_meter_sim
from gridsim_shared.schemas.jobs import StepJob
from gridsim_shared.schemas.simulation import StepResult
from gridsim_shared.settings import Settings
from gridsim_shared.testing import running

pytestmark = pytest.mark.integration

START = datetime(2025, 6, 1, tzinfo=UTC)
PLACE = {"city": "San Francisco", "latitude": 37.77, "longitude": -122.42}


@contextlib.contextmanager
def _gateway(settings: Settings) -> Iterator[str]:
    """The gateway on a free port in a thread of its own (its own loop, bus and pool)."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, name="gateway", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            msg = "the gateway did not start"
            raise RuntimeError(msg)
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


async def _home(client: AsyncClient, code: str) -> None:
    er = await client.http.post(
        "/admin/er",
        json={"name": code, "type": "prosumer", "appliance_type": ["Refrigerator", "Solar Panel"], **PLACE},
    )
    meter = await client.http.post("/admin/meter", json={"meter_id": code, **PLACE})
    assert er.status_code == meter.status_code == 201, (er.text, meter.text)
    link = await client.http.post(
        "/admin/meter/link", json={"meter_id": meter.json()["id"], "er_id": er.json()["id"]}
    )
    assert link.status_code == 200, link.text


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "gridsim.cli", *args]


@pytest.mark.timeout(300)
async def test_client_cli_and_live_readings_against_the_real_system(
    settings: Settings, tmp_path: Path
) -> None:
    settings = settings.model_copy(
        update={"sim": settings.sim.model_copy(update={"start": START, "interval_s": 3600})}
    )
    async with running(serve_meter_sim, serve_aggregator, serve_billing, settings=settings):
        with _gateway(settings) as url:
            async with AsyncClient(url) as client:
                await _home(client, "CL-1")
                tree = await client.grid()
                assert tree.meters == 1
                transformer = tree.utilities[0].children[0].children[0].code
                await client.pause()

                # Live readings over MQTT while a step publishes them.
                ready = asyncio.Event()
                live = live_readings(
                    settings.mqtt.url, meter="CL-1", base_topic=settings.mqtt.base_topic, ready=ready
                )
                first_live = asyncio.ensure_future(anext(live))
                async with asyncio.timeout(30):
                    await ready.wait()
                result = await client.step(24)
                assert isinstance(result, StepResult)
                assert result.stored is True
                async with asyncio.timeout(30):
                    reading = await first_live
                assert (reading.meter_code, reading.timestamp) == ("CL-1", START)
                await live.aclose()

                # Readings as models and as a polars frame: the same values.
                points = await client.readings("CL-1", START, START + timedelta(hours=23))
                assert len(points) == 24
                frame = await client.readings_frame("CL-1", START, START + timedelta(days=1))
                assert frame.height == 24
                assert frame["consumption_kWh"].to_list() == [p.consumption_kWh for p in points]
                rollups = await client.rollups_frame(transformer, START, START + timedelta(days=1))
                assert rollups.height == 24
                assert rollups["consumption_kWh"].sum() == pytest.approx(
                    sum(p.consumption_kWh or 0 for p in points)
                )
                bill = await client.bill("CL-1", "2025-06")
                assert bill.status == "provisional"
                assert bill.total_consumed_kWh == pytest.approx(frame["consumption_kWh"].sum(), abs=0.001)
                control = await client.control(meter_id="CL-1", load_factor=0.5)
                assert control.meter_codes == ["CL-1"]
                with pytest.raises(ApiError) as refused:
                    await client.bill("CL-1", "2025-13")
                assert (refused.value.status, refused.value.field) == (422, "month")

                # A job followed over SSE and cancelled.
                job = await client.step(200, job=True)
                assert isinstance(job, StepJob)
                states: list[StepJob] = []
                async with asyncio.timeout(120):
                    async for state in client.follow_job(job.id):
                        states.append(state)
                        if state.done > 0 and state.state == "running":
                            await client.cancel_job(job.id)
                assert states[-1].state == "cancelled"
                assert 0 < states[-1].done < 200
                clock = await client.clock()
                assert clock.current_datetime == START + timedelta(hours=24 + states[-1].done)

            # The sync client (in a thread: the services share this test's event loop).
            def sync_calls() -> tuple[Any, ...]:
                with Client(url) as sync:
                    return (
                        sync.clock(),
                        sync.readings("CL-1", limit=5),
                        sync.readings_frame("CL-1", resolution="1h"),
                    )

            sync_clock, latest, hourly = await asyncio.to_thread(sync_calls)
            assert sync_clock.current_datetime == clock.current_datetime
            assert len(latest) == 5
            assert isinstance(hourly, pl.DataFrame)
            assert hourly.height == 24 + states[-1].done

            # gridsim export: a Parquet file of the transformer's subtree.
            out = tmp_path / "day.parquet"
            export = await asyncio.create_subprocess_exec(
                *_cli(
                    "export",
                    "readings",
                    "--node",
                    transformer,
                    "--to",
                    "2025-06-02T00:00:00Z",
                    "-o",
                    str(out),
                    "--url",
                    url,
                ),
                stderr=subprocess.PIPE,
            )
            _, err = await export.communicate()
            assert export.returncode == 0, err.decode()
            assert pl.read_parquet(out).height == 24

            # gridsim step --days 30: a progress bar, then Ctrl-C cancels the job and exits 130.
            before = (await asyncio.to_thread(_sync, url, "clock")).current_datetime
            step = await asyncio.create_subprocess_exec(
                *_cli("step", "--days", "30", "--url", url),
                stderr=subprocess.PIPE,
                env={**os.environ, "COLUMNS": "100"},
            )
            running_job = await _running_job(url)
            step.send_signal(signal.SIGINT)
            async with asyncio.timeout(120):
                _, err = await step.communicate()
            assert step.returncode == 130, err.decode()
            ended = await asyncio.to_thread(_sync, url, "job", running_job.id)
            assert ended.state == "cancelled"
            assert ended.intervals == 30 * 24
            assert 0 < ended.done < ended.intervals
            after = (await asyncio.to_thread(_sync, url, "clock")).current_datetime
            assert after == before + timedelta(hours=ended.done)
            assert "cancelled after" in err.decode()


async def _running_job(url: str) -> StepJob:
    """The step job the CLI started, once it has done some work."""
    async with AsyncClient(url) as client, asyncio.timeout(120):
        while True:
            jobs = (await client.http.get("/jobs")).json()
            mine = [StepJob.model_validate(j) for j in jobs if j["intervals"] == 30 * 24]
            if mine and mine[0].done > 0 and mine[0].state == "running":
                return mine[0]
            await asyncio.sleep(0.05)


def _sync(url: str, method: str, *args: Any) -> Any:
    """One call of the sync client (run it in a thread)."""
    with Client(url) as client:
        return getattr(client, method)(*args)
