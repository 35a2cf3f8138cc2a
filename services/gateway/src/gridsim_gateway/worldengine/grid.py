"""World Engine utility, appliance, grid-load and meter-dataset routes (§1.1, §1.3), streams included.

The two streams answer newline-delimited JSON arrays of one element (``[row]\\n``), never ending, as the
World Engine's did: the transformer load every ``gateway.we_transformer_stream_s`` seconds (10), the meter
dataset polled every ``gateway.we_dataset_poll_s`` seconds (1) and written when a new reading appears.
``?lines=N`` (a gridsim addition) ends a stream after N lines, for scripts and tests.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse

from gridsim_gateway.deps import BusDep, SettingsDep
from gridsim_gateway.security import ADMIN, StreamSlots
from gridsim_gateway.worldengine import readings
from gridsim_gateway.worldengine.common import call, fetch, parse_id, reading
from gridsim_gateway.worldengine.entities import APPLIANCE, METER, UTILITY
from gridsim_gateway.worldengine.envelope import StrapiNotFound, StrapiValidationError, ok
from gridsim_gateway.worldengine.sqlquery import load
from gridsim_gateway.worldengine.strapi import Populate, nest
from gridsim_shared.commands import meter_sim

__all__ = ["router"]

router = APIRouter(tags=["World Engine: utility, grid loads, meter datasets"])

# The whole tree, as /utility/detailed nests it; its meters carry no parent, children or transformer.
_DETAILED = Populate.parse("substations.transformers.meters.energyResource.ders.appliance")
_STREAM_HEADERS = {"Access-Control-Allow-Origin": "*", "Cache-Control": "no-cache"}


@router.get("/utility/detailed")
async def utility_detailed(request: Request) -> JSONResponse:
    """Every utility → substations → transformers → meters → energyResource → ders → appliance.

    Answers ``{"utilities": [...]}`` with no ``message``/``data`` wrapper; query parameters are ignored.
    """
    async with reading(request) as conn:
        cur = await conn.execute("select id from grid_nodes where level = 'utility' order by id")
        ids = [row[0] for row in await cur.fetchall()]
        utilities = await load(conn, UTILITY, ids, _DETAILED)
    return JSONResponse({"utilities": utilities})


@router.put("/utility/reset", dependencies=[ADMIN])
async def reset_utility(bus: BusDep) -> JSONResponse:
    """Back to the demo world: grid, meters, households, DERs and readings are deleted and the demo world
    is loaded again (new ids). Appliances, P2P trades and bills stay. Needs an admin key when keys are set."""
    result = await call(bus, meter_sim.RESET_WORLD, {})
    return JSONResponse({"message": "Utility reset successfully", "result": [None] * result.utilities})


@router.get("/appliance")
async def appliances(request: Request) -> JSONResponse:
    """The appliance catalogue ``{"appliances": [...]}``; ids 1–12 are the World Engine's seed chart."""
    async with reading(request) as conn:
        cur = await conn.execute("select id from appliances order by id")
        ids = [row[0] for row in await cur.fetchall()]
        found = await load(conn, APPLIANCE, ids, Populate())
    return JSONResponse({"appliances": found})


def _limit(request: Request) -> tuple[int, int]:
    """Rows to return for the unpaginated lists: ``pagination[pageSize]``/``[page]`` when sent (a gridsim
    addition, up to 10 000), otherwise the latest 1 000."""
    pagination = nest(request.query_params.multi_items()).get("pagination")
    if not isinstance(pagination, dict):
        return readings.DEFAULT_ROWS, 0
    try:
        size = int(pagination.get("pageSize", readings.DEFAULT_ROWS))
        page = int(pagination.get("page", 1))
    except ValueError as exc:
        msg = "Invalid pagination parameters: page and pageSize must be integers"
        raise StrapiValidationError(msg, path=["pagination"]) from exc
    if size < 1 or page < 1:
        msg = "Invalid pagination parameters: page and pageSize must be >= 1"
        raise StrapiValidationError(msg, path=["pagination"])
    size = min(size, readings.MAX_ROWS)
    return size, (page - 1) * size


@router.get("/grid-loads")
async def grid_loads(request: Request) -> JSONResponse:
    """Transformer loads per interval, newest first, each with its transformer and substation."""
    limit, offset = _limit(request)
    async with reading(request) as conn:
        rows = await readings.grid_load_rows(conn, limit=limit, offset=offset)
    return ok("Grid Loads fetched successfully", rows)


def _lines(request: Request) -> int | None:
    value = request.query_params.get("lines")
    if value is None:
        return None
    if not value.isdigit() or int(value) < 1:
        msg = "lines must be a positive integer"
        raise StrapiValidationError(msg, path=["lines"])
    return int(value)


def _stream(
    request: Request,
    produce: Callable[[], Awaitable[dict[str, Any] | None]],
    period: float,
    lines: int | None,
    *,
    only_new: bool,
) -> StreamingResponse:
    """Write ``[row]\\n`` every ``period`` seconds (``only_new``: only when the row changed)."""

    async def body() -> AsyncIterator[bytes]:
        written = 0
        last_key: Any = None
        last_row: dict[str, Any] | None = None
        while lines is None or written < lines:
            row = await produce()
            if row is not None:
                last_row = row
            if last_row is not None and not (only_new and last_row["id"] == last_key):
                last_key = last_row["id"]
                written += 1
                yield (json.dumps([last_row]) + "\n").encode()
                if lines is not None and written >= lines:
                    return
            await asyncio.sleep(period)

    streams: StreamSlots = request.state.streams
    stream = streams.guard(request, body())
    return StreamingResponse(stream, media_type="application/json", headers=_STREAM_HEADERS)


@router.get("/transformer-load-streamed/{transformer_id}")
async def transformer_load_stream(
    transformer_id: str, request: Request, settings: SettingsDep
) -> StreamingResponse:
    """Every 10 s, the transformer's latest grid-load row with ``health_status``, ``load_percentage`` and
    ``margin_percentage`` (the last one again when no new interval was rolled up)."""
    key = parse_id(transformer_id, "Transformer not found")
    lines = _lines(request)

    async def latest() -> dict[str, Any] | None:
        async with reading(request) as conn:
            rows = await readings.grid_load_rows(conn, transformer_id=key, limit=1)
        if not rows:
            return None
        row = rows[0]
        return row | readings.health(row["loading_pct"])

    return _stream(request, latest, settings.gateway.we_transformer_stream_s, lines, only_new=False)


@router.get("/meter-datasets/{meter_id}")
async def meter_datasets(meter_id: str, request: Request) -> JSONResponse:
    """A meter's readings, oldest first (``:id`` is the METER id); the latest 1 000 unless paginated."""
    key = parse_id(meter_id, "Meter Dataset not found")
    limit, offset = _limit(request)
    async with reading(request) as conn:
        rows = await readings.meter_datasets(conn, key, limit, offset)
    for row in rows:
        row.pop("meter_id")
    return ok("Meter Dataset fetched successfully", rows)


@router.get("/meter-datasets")
async def all_meter_datasets(request: Request) -> JSONResponse:
    """Readings of every meter, oldest first, each with its meter; the latest 1 000 unless paginated."""
    limit, offset = _limit(request)
    async with reading(request) as conn:
        rows = await readings.meter_datasets(conn, None, limit, offset)
        meters = {
            m["id"]: m
            for m in await load(conn, METER, list(dict.fromkeys(r["meter_id"] for r in rows)), Populate())
        }
    for row in rows:
        row["meter"] = meters.get(row.pop("meter_id"))
    return ok("Meter Datasets fetched successfully", rows)


@router.get("/meter-dataset-streamed/{meter_id}")
async def meter_dataset_stream(meter_id: str, request: Request, settings: SettingsDep) -> StreamingResponse:
    """The meter's latest reading at once, then each new one as it is stored (polled every second)."""
    key = parse_id(meter_id, "Meter not found")
    lines = _lines(request)
    await fetch(request, METER, key, StrapiNotFound("Meter not found"))

    async def latest() -> dict[str, Any] | None:
        async with reading(request) as conn:
            row = await readings.latest_dataset(conn, key)
        if row is not None:
            row.pop("meter_id")
        return row

    return _stream(request, latest, settings.gateway.we_dataset_poll_s, lines, only_new=True)
