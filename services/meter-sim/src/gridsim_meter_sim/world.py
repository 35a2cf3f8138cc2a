"""World files: a grid, its meters and their energy resources as one JSON document, and the demo world.

A world file is loaded through the same repository functions the HTTP API runs (``create_grid_node``,
``create_meter``, ``create_er``, ``link``), in one transaction, so it obeys every rule the API does. The
demo world (``data/demo_world.json``, made by ``scripts/make_demo_world.py``) is loaded at start when
``GRIDSIM_SIM__DEMO_WORLD`` is true (the default) and the database has no grid nodes yet;
``GRIDSIM_SIM__DEMO_WORLD_FILE`` points at a user's copy instead. Format: ``docs/entities.md``.
"""

from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path
from typing import Literal

from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gridsim_meter_sim import grid_repository, meter_repository, repository
from gridsim_meter_sim.settings import Settings
from gridsim_shared.db import lock_in_schema
from gridsim_shared.errors import GridsimError
from gridsim_shared.schemas.meters import ErCreate, GridNodeCreate, LinkRequest, MeterCreate

__all__ = [
    "WorldFile",
    "WorldMeter",
    "WorldSummary",
    "load_demo_world",
    "load_world",
    "read_world",
    "world_path",
]

_LOGGER = logging.getLogger(__name__)

# Serialises the first-start check across meter-sim instances (shards) starting together.
_WORLD_LOCK = "meter-sim.world"


class WorldMeter(MeterCreate):
    """A meter of a world file: the ``POST /admin/meter`` body plus, optionally, the ER linked to it
    (the ``POST /admin/er`` body) and the link's factors."""

    er: ErCreate | None = None
    link_load_factor_consumption: float | None = Field(default=None, ge=0, le=100)
    link_load_factor_production: float | None = Field(default=None, ge=0, le=100)


class WorldFile(BaseModel):
    """A whole world: grid nodes top-down (parents first), then meters (parent meters first)."""

    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = 1
    name: str
    description: str = ""
    grid: list[GridNodeCreate]
    meters: list[WorldMeter]


class WorldSummary(BaseModel):
    """What a load created."""

    name: str
    grid_nodes: int
    transformers: int
    meters: int
    energy_resources: int
    prosumers: int


def default_world_path() -> Path:
    """The demo world shipped with meter-sim."""
    return Path(str(resources.files("gridsim_meter_sim").joinpath("data", "demo_world.json")))


def world_path(settings: Settings) -> Path:
    """The world file meter-sim loads: the configured one, else the shipped demo world."""
    configured = settings.sim.demo_world_file
    return Path(configured) if configured else default_world_path()


def read_world(path: Path) -> WorldFile:
    """Read and validate a world file; a bad file is a ``ValueError`` naming the file and the field."""
    try:
        return WorldFile.model_validate_json(path.read_bytes())
    except OSError as exc:
        msg = f"cannot read world file {path}: {exc}"
        raise ValueError(msg) from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        msg = f"world file {path}: {where}: {first['msg']} ({exc.error_count()} problem(s) in all)"
        raise ValueError(msg) from exc


async def load_world(conn: repository.Conn, world: WorldFile) -> WorldSummary:
    """Create every node, meter and ER of ``world`` inside the caller's transaction."""
    for index, node in enumerate(world.grid):
        try:
            await grid_repository.create_grid_node(conn, node)
        except GridsimError as exc:
            _locate(exc, f"grid[{index}] ({node.code or node.name})")
            raise
    ers = prosumers = 0
    for index, item in enumerate(world.meters):
        try:
            meter = await meter_repository.create_meter(conn, _meter_body(item))
            if item.er is not None:
                er = await repository.create_er(conn, item.er)
                await meter_repository.link(
                    conn,
                    LinkRequest(
                        meter_id=meter.id,
                        er_id=er.id,
                        load_factor_consumption=item.link_load_factor_consumption,
                        load_factor_production=item.link_load_factor_production,
                    ),
                )
                ers += 1
                prosumers += er.type == "prosumer"
        except GridsimError as exc:
            _locate(exc, f"meters[{index}] ({item.meter_id})")
            raise
    return WorldSummary(
        name=world.name,
        grid_nodes=len(world.grid),
        transformers=sum(1 for node in world.grid if node.level == "transformer"),
        meters=len(world.meters),
        energy_resources=ers,
        prosumers=prosumers,
    )


def _locate(exc: GridsimError, where: str) -> None:
    """Prefix an error with the world file entry that caused it."""
    exc.message = f"{where}: {exc.message}"
    exc.args = (exc.message,)


def _meter_body(item: WorldMeter) -> MeterCreate:
    """The ``POST /admin/meter`` part of a world meter."""
    fields = {name: getattr(item, name) for name in item.model_fields_set if name in MeterCreate.model_fields}
    return MeterCreate.model_validate(fields)


async def load_demo_world(pool: AsyncConnectionPool, settings: Settings) -> WorldSummary | None:
    """Load the demo world (or the user's world file) on first start; None when switched off or not empty."""
    if not settings.sim.demo_world:
        return None
    from gridsim_meter_sim.world_bulk import load_any_world  # it builds on this module

    path = world_path(settings)
    async with pool.connection() as conn, conn.transaction():
        await lock_in_schema(conn, _WORLD_LOCK)
        if await repository.fetch_one(conn, "select 1 from grid_nodes limit 1") is not None:
            _LOGGER.info("the database already has a grid; the demo world is not loaded")
            return None
        # A utility-sized world file (gridsim world generate) goes in with COPY: see world_bulk.py.
        summary = await load_any_world(conn, path)
    _LOGGER.info(
        "loaded world %r from %s: %d transformers, %d meters, %d energy resources (%d prosumers)",
        summary.name,
        path,
        summary.transformers,
        summary.meters,
        summary.energy_resources,
        summary.prosumers,
    )
    return summary
