"""A typed Python client for gridsim: the common HTTP calls, sync (:class:`Client`) and async
(:class:`AsyncClient`), on httpx; readings and rollups as polars DataFrames (``pip install polars``; they
come from the Parquet export, so a month of minutes is one download); live readings over MQTT
(:func:`live_readings`).

    from gridsim.client import Client

    with Client("http://127.0.0.1:8000") as gs:
        gs.pause()
        gs.step(60)
        frame = gs.readings_frame("MTR-0001", resolution="15m")   # a polars DataFrame
        print(gs.bill("MTR-0001", "2025-06").amount_due)

Every call is described once (:class:`Call`: method, path, query, body, reply model); the two clients only
differ in how they send it. Errors are :class:`ApiError` with the server's status, code, field and reason.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

import aiomqtt
import httpx
from pydantic import TypeAdapter

from gridsim_shared import channels
from gridsim_shared.messages import MeterReading
from gridsim_shared.schemas.billing import Bill
from gridsim_shared.schemas.controls import ControlResult
from gridsim_shared.schemas.jobs import StepJob
from gridsim_shared.schemas.meters import GridTree, Meter
from gridsim_shared.schemas.readings import NodeRollupPoint, ReadingPoint
from gridsim_shared.schemas.simulation import SimulationTime, StepResult
from gridsim_shared.settings import MqttSettings
from gridsim_shared.topics import TopicError

if TYPE_CHECKING:
    import polars

__all__ = ["ApiError", "AsyncClient", "Call", "Client", "live_readings"]

T = TypeVar("T")
_LOGGER = logging.getLogger(__name__)
Resolution = Literal["raw", "15m", "1h", "1d"]
PARQUET = "application/vnd.apache.parquet"
FINAL_STATES = frozenset({"succeeded", "cancelled", "failed"})


class ApiError(Exception):
    """An error answer from gridsim: HTTP status, code, the field concerned and the reason."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.field = field


def _raise_for(response: httpx.Response) -> None:
    if response.is_success:
        return
    try:
        error = response.json()["error"]
        raise ApiError(response.status_code, error["code"], error["message"], error.get("field"))
    except (ValueError, KeyError, TypeError):
        raise ApiError(response.status_code, "http_error", response.text[:500]) from None


def _model(model: type[T]) -> Callable[[Any], T]:
    adapter = TypeAdapter(model)
    return adapter.validate_python


def _step(data: Any) -> StepResult | StepJob:
    return StepJob.model_validate(data) if "state" in data else StepResult.model_validate(data)


def _time(value: datetime | str | None) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else value


@dataclass(frozen=True)
class Call(Generic[T]):
    """One HTTP call: what to send and how to read the answer."""

    method: str
    path: str
    parse: Callable[[Any], T]
    params: dict[str, Any] = field(default_factory=dict)
    body: Any = None

    def request(self) -> dict[str, Any]:
        """Keyword arguments for httpx's ``request``."""
        params = {k: v for k, v in self.params.items() if v is not None}
        kwargs: dict[str, Any] = {"params": params}
        if self.method != "GET":
            kwargs["json"] = self.body if self.body is not None else {}
        return kwargs


def _readings_params(
    start: datetime | str | None, end: datetime | str | None, resolution: Resolution, limit: int | None
) -> dict[str, Any]:
    return {"from": _time(start), "to": _time(end), "resolution": resolution, "limit": limit}


class Calls:
    """The calls both clients make: one definition each."""

    @staticmethod
    def health() -> Call[dict[str, Any]]:
        return Call("GET", "/health", _model(dict[str, Any]))

    @staticmethod
    def clock() -> Call[SimulationTime]:
        return Call("GET", "/simulation-time", SimulationTime.model_validate)

    @staticmethod
    def pause() -> Call[SimulationTime]:
        return Call("POST", "/simulation/pause", SimulationTime.model_validate)

    @staticmethod
    def resume() -> Call[SimulationTime]:
        return Call("POST", "/simulation/resume", SimulationTime.model_validate)

    @staticmethod
    def set_speed(speed: float) -> Call[SimulationTime]:
        return Call("PUT", "/simulation/speed", SimulationTime.model_validate, body={"speed": speed})

    @staticmethod
    def jump(to: datetime | str) -> Call[SimulationTime]:
        return Call("POST", "/simulation/jump", SimulationTime.model_validate, body={"to": _time(to)})

    @staticmethod
    def step(intervals: int, *, job: bool = False) -> Call[StepResult | StepJob]:
        params = {"job": "true"} if job else {}
        return Call("POST", "/simulation/step", _step, params=params, body={"intervals": intervals})

    @staticmethod
    def job(job_id: str) -> Call[StepJob]:
        return Call("GET", f"/jobs/{job_id}", StepJob.model_validate)

    @staticmethod
    def cancel_job(job_id: str) -> Call[StepJob]:
        return Call("POST", f"/jobs/{job_id}/cancel", StepJob.model_validate)

    @staticmethod
    def grid(*, meters: bool = True) -> Call[GridTree]:
        return Call("GET", "/grid", GridTree.model_validate, params={"meters": str(meters).lower()})

    @staticmethod
    def meters(*, limit: int = 1000, offset: int = 0, transformer: str | None = None) -> Call[list[Meter]]:
        params = {"limit": limit, "offset": offset, "transformer_id": transformer}
        return Call("GET", "/admin/meter", _model(list[Meter]), params=params)

    @staticmethod
    def readings(
        meter: str | int,
        start: datetime | str | None = None,
        end: datetime | str | None = None,
        *,
        resolution: Resolution = "raw",
        limit: int | None = None,
    ) -> Call[list[ReadingPoint]]:
        params = {"meter_id": str(meter), **_readings_params(start, end, resolution, limit)}
        return Call("GET", "/meter/stream", _model(list[ReadingPoint]), params=params)

    @staticmethod
    def rollups(
        node: str,
        start: datetime | str | None = None,
        end: datetime | str | None = None,
        *,
        resolution: Resolution = "1h",
        limit: int | None = None,
    ) -> Call[list[NodeRollupPoint]]:
        params = _readings_params(start, end, resolution, limit)
        return Call("GET", f"/rollups/{node}", _model(list[NodeRollupPoint]), params=params)

    @staticmethod
    def bill(meter: str | int, month: str) -> Call[Bill]:
        return Call("GET", "/bill", Bill.model_validate, params={"meter_id": str(meter), "month": month})

    @staticmethod
    def control(**body: Any) -> Call[ControlResult]:
        """``POST /meter/control``: e.g. ``meter_id="MTR-0001", load_factor=0``."""
        return Call("POST", "/meter/control", ControlResult.model_validate, body=body)

    @staticmethod
    def export(
        kind: Literal["readings", "rollups", "greenbutton"], **params: Any
    ) -> Call[None]:  # the body is streamed, not parsed
        return Call(
            "GET", f"/export/{kind}", lambda _data: None, params={k: _time(v) for k, v in params.items()}
        )


def _frame(content: bytes) -> polars.DataFrame:
    try:
        import polars as pl
    except ImportError as exc:  # an optional dependency
        msg = "DataFrames need polars: pip install polars (or uv add polars)"
        raise ImportError(msg) from exc
    import io

    return pl.read_parquet(io.BytesIO(content))


def _frame_params(
    meter: str | int | None,
    node: str | None,
    start: datetime | str | None,
    end: datetime | str | None,
    res: str,
) -> dict[str, Any]:
    params = {"meter_id": meter, "node": node, "from": _time(start), "to": _time(end), "resolution": res}
    return {k: str(v) for k, v in params.items() if v is not None} | {"format": "parquet"}


def _sse_states(lines: Iterator[str]) -> Iterator[StepJob]:
    for line in lines:
        if line.startswith("data:"):
            yield StepJob.model_validate(json.loads(line.split(":", 1)[1]))


# ---------------------------------------------------------------- sync
class Client:
    """gridsim over HTTP, blocking. A context manager; ``close()`` otherwise."""

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        *,
        api_key: str | None = None,
        timeout: float = 660.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"x-api-key": api_key} if api_key else {}
        self.http = httpx.Client(base_url=base_url, headers=headers, timeout=timeout, transport=transport)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self.http.close()

    def call(self, call: Call[T]) -> T:
        """Send ``call`` and parse the answer; :class:`ApiError` on an error status."""
        response = self.http.request(call.method, call.path, **call.request())
        _raise_for(response)
        return call.parse(response.json())

    def health(self) -> dict[str, Any]:
        """``GET /health``."""
        return self.call(Calls.health())

    def clock(self) -> SimulationTime:
        """The simulation clock."""
        return self.call(Calls.clock())

    def pause(self) -> SimulationTime:
        """Pause the clock."""
        return self.call(Calls.pause())

    def resume(self) -> SimulationTime:
        """Run the clock."""
        return self.call(Calls.resume())

    def set_speed(self, speed: float) -> SimulationTime:
        """Simulated seconds per real second."""
        return self.call(Calls.set_speed(speed))

    def jump(self, to: datetime | str) -> SimulationTime:
        """Move the clock (nothing is simulated for the skipped intervals)."""
        return self.call(Calls.jump(to))

    def step(self, intervals: int, *, job: bool = False) -> StepResult | StepJob:
        """Simulate ``intervals`` intervals: the result, or a job when the step is long (or ``job``)."""
        return self.call(Calls.step(intervals, job=job))

    def job(self, job_id: str) -> StepJob:
        """A job's progress."""
        return self.call(Calls.job(job_id))

    def cancel_job(self, job_id: str) -> StepJob:
        """Stop a job after its chunk in flight."""
        return self.call(Calls.cancel_job(job_id))

    def follow_job(self, job_id: str) -> Iterator[StepJob]:
        """The job's progress as it happens (SSE), ending with its final state."""
        with self.http.stream("GET", f"/jobs/{job_id}/events", timeout=None) as response:
            _raise_for(response)
            yield from _sse_states(response.iter_lines())

    def grid(self, *, meters: bool = True) -> GridTree:
        """The grid tree."""
        return self.call(Calls.grid(meters=meters))

    def meters(self, *, limit: int = 1000, offset: int = 0, transformer: str | None = None) -> list[Meter]:
        """Meters, optionally of one transformer."""
        return self.call(Calls.meters(limit=limit, offset=offset, transformer=transformer))

    def readings(
        self,
        meter: str | int,
        start: datetime | str | None = None,
        end: datetime | str | None = None,
        *,
        resolution: Resolution = "raw",
        limit: int | None = None,
    ) -> list[ReadingPoint]:
        """A meter's readings (``GET /meter/stream``; ``end`` inclusive)."""
        return self.call(Calls.readings(meter, start, end, resolution=resolution, limit=limit))

    def rollups(
        self,
        node: str,
        start: datetime | str | None = None,
        end: datetime | str | None = None,
        *,
        resolution: Resolution = "1h",
        limit: int | None = None,
    ) -> list[NodeRollupPoint]:
        """A grid node's series."""
        return self.call(Calls.rollups(node, start, end, resolution=resolution, limit=limit))

    def readings_frame(
        self,
        meter: str | int | None = None,
        start: datetime | str | None = None,
        end: datetime | str | None = None,
        *,
        node: str | None = None,
        resolution: Resolution = "raw",
    ) -> polars.DataFrame:
        """Readings of a meter, a node's subtree or the grid as a polars DataFrame (``end`` exclusive)."""
        response = self.http.get(
            "/export/readings", params=_frame_params(meter, node, start, end, resolution)
        )
        _raise_for(response)
        return _frame(response.content)

    def rollups_frame(
        self,
        node: str | None = None,
        start: datetime | str | None = None,
        end: datetime | str | None = None,
        *,
        resolution: Resolution = "1h",
    ) -> polars.DataFrame:
        """Grid rollups of a node's subtree (or every node) as a polars DataFrame (``end`` exclusive)."""
        response = self.http.get("/export/rollups", params=_frame_params(None, node, start, end, resolution))
        _raise_for(response)
        return _frame(response.content)

    def bill(self, meter: str | int, month: str) -> Bill:
        """A meter's bill for ``month`` (YYYY-MM)."""
        return self.call(Calls.bill(meter, month))

    def control(self, **body: Any) -> ControlResult:
        """``POST /meter/control`` (e.g. ``meter_id="MTR-0001", load_factor=0``)."""
        return self.call(Calls.control(**body))

    def export(
        self,
        kind: Literal["readings", "rollups", "greenbutton"],
        dest: Path | str,
        on_chunk: Callable[[int], None] | None = None,
        **params: Any,
    ) -> int:
        """Stream an export to ``dest``; returns its size. ``on_chunk(bytes)`` follows the download."""
        call = Calls.export(kind, **params)
        size = 0
        with self.http.stream("GET", call.path, **call.request()) as response, Path(dest).open("wb") as out:
            if not response.is_success:
                response.read()
                _raise_for(response)
            for chunk in response.iter_bytes():
                out.write(chunk)
                size += len(chunk)
                if on_chunk is not None:
                    on_chunk(len(chunk))
        return size


# ---------------------------------------------------------------- async
class AsyncClient:
    """gridsim over HTTP, for asyncio. An async context manager; ``aclose()`` otherwise."""

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        *,
        api_key: str | None = None,
        timeout: float = 660.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        headers = {"x-api-key": api_key} if api_key else {}
        self.http = httpx.AsyncClient(
            base_url=base_url, headers=headers, timeout=timeout, transport=transport
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self.http.aclose()

    async def call(self, call: Call[T]) -> T:
        """Send ``call`` and parse the answer; :class:`ApiError` on an error status."""
        response = await self.http.request(call.method, call.path, **call.request())
        _raise_for(response)
        return call.parse(response.json())

    async def health(self) -> dict[str, Any]:
        """``GET /health``."""
        return await self.call(Calls.health())

    async def clock(self) -> SimulationTime:
        """The simulation clock."""
        return await self.call(Calls.clock())

    async def pause(self) -> SimulationTime:
        """Pause the clock."""
        return await self.call(Calls.pause())

    async def resume(self) -> SimulationTime:
        """Run the clock."""
        return await self.call(Calls.resume())

    async def set_speed(self, speed: float) -> SimulationTime:
        """Simulated seconds per real second."""
        return await self.call(Calls.set_speed(speed))

    async def jump(self, to: datetime | str) -> SimulationTime:
        """Move the clock."""
        return await self.call(Calls.jump(to))

    async def step(self, intervals: int, *, job: bool = False) -> StepResult | StepJob:
        """Simulate ``intervals`` intervals: the result, or a job when the step is long (or ``job``)."""
        return await self.call(Calls.step(intervals, job=job))

    async def job(self, job_id: str) -> StepJob:
        """A job's progress."""
        return await self.call(Calls.job(job_id))

    async def cancel_job(self, job_id: str) -> StepJob:
        """Stop a job after its chunk in flight."""
        return await self.call(Calls.cancel_job(job_id))

    async def follow_job(self, job_id: str) -> AsyncIterator[StepJob]:
        """The job's progress as it happens (SSE), ending with its final state."""
        async with self.http.stream("GET", f"/jobs/{job_id}/events", timeout=None) as response:
            _raise_for(response)
            async for line in response.aiter_lines():
                for state in _sse_states(iter([line])):
                    yield state

    async def grid(self, *, meters: bool = True) -> GridTree:
        """The grid tree."""
        return await self.call(Calls.grid(meters=meters))

    async def meters(
        self, *, limit: int = 1000, offset: int = 0, transformer: str | None = None
    ) -> list[Meter]:
        """Meters, optionally of one transformer."""
        return await self.call(Calls.meters(limit=limit, offset=offset, transformer=transformer))

    async def readings(
        self,
        meter: str | int,
        start: datetime | str | None = None,
        end: datetime | str | None = None,
        *,
        resolution: Resolution = "raw",
        limit: int | None = None,
    ) -> list[ReadingPoint]:
        """A meter's readings (``GET /meter/stream``; ``end`` inclusive)."""
        return await self.call(Calls.readings(meter, start, end, resolution=resolution, limit=limit))

    async def rollups(
        self,
        node: str,
        start: datetime | str | None = None,
        end: datetime | str | None = None,
        *,
        resolution: Resolution = "1h",
        limit: int | None = None,
    ) -> list[NodeRollupPoint]:
        """A grid node's series."""
        return await self.call(Calls.rollups(node, start, end, resolution=resolution, limit=limit))

    async def readings_frame(
        self,
        meter: str | int | None = None,
        start: datetime | str | None = None,
        end: datetime | str | None = None,
        *,
        node: str | None = None,
        resolution: Resolution = "raw",
    ) -> polars.DataFrame:
        """Readings of a meter, a node's subtree or the grid as a polars DataFrame (``end`` exclusive)."""
        params = _frame_params(meter, node, start, end, resolution)
        response = await self.http.get("/export/readings", params=params)
        _raise_for(response)
        return _frame(response.content)

    async def rollups_frame(
        self,
        node: str | None = None,
        start: datetime | str | None = None,
        end: datetime | str | None = None,
        *,
        resolution: Resolution = "1h",
    ) -> polars.DataFrame:
        """Grid rollups of a node's subtree (or every node) as a polars DataFrame (``end`` exclusive)."""
        params = _frame_params(None, node, start, end, resolution)
        response = await self.http.get("/export/rollups", params=params)
        _raise_for(response)
        return _frame(response.content)

    async def bill(self, meter: str | int, month: str) -> Bill:
        """A meter's bill for ``month`` (YYYY-MM)."""
        return await self.call(Calls.bill(meter, month))

    async def control(self, **body: Any) -> ControlResult:
        """``POST /meter/control`` (e.g. ``meter_id="MTR-0001", load_factor=0``)."""
        return await self.call(Calls.control(**body))


# ---------------------------------------------------------------- MQTT
async def live_readings(
    mqtt_url: str = "mqtt://127.0.0.1:1883",
    *,
    meter: str | None = None,
    base_topic: str = "gridsim",
    username: str | None = None,
    password: str | None = None,
    ready: asyncio.Event | None = None,
) -> AsyncIterator[MeterReading]:
    """Readings as meter-sim publishes them (``{base}/v1/reading/...``), one meter's or every meter's.

    A plain MQTT subscriber (it announces no service status). Needs ``GRIDSIM_SIM__PUBLISH=both`` (the
    default). Malformed messages are logged and skipped. ``ready`` is set once subscribed.
    """
    settings = MqttSettings(url=mqtt_url, base_topic=base_topic, username=username, password=password)
    fixed = {"meter": meter.lower()} if meter else {}
    topic = channels.READING.template.filter(base_topic, **fixed)
    async with aiomqtt.Client(
        settings.host, settings.port, username=username, password=password, keepalive=settings.keepalive_s
    ) as mqtt:
        await mqtt.subscribe(topic, qos=1)
        if ready is not None:
            ready.set()
        async for message in mqtt.messages:
            try:
                reading, _path = channels.READING.decode(
                    base_topic, str(message.topic), bytes(message.payload)
                )
            except (ValueError, TopicError):
                _LOGGER.warning("skipped a malformed reading on %s", message.topic)
                continue
            yield reading
