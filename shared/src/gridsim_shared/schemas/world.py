"""RPC models of ``world.reset``: meter-sim asks each owner of data derived from its world to empty it.

meter-sim owns the world (grid, meters, energy resources, DERs). Other services keep rows that only mean
something for that world: the aggregator's readings, rollups and thermal state, feasibility's connection
requests. A reset replaces the world, so each of those owners empties its own tables when meter-sim tells
it (the ``world_reset`` command of :data:`DERIVED_OWNERS`), and again at its own start when it missed a
reset (its stored generation is behind meter-sim's ``world_state``). No service deletes another's rows.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["DERIVED_OWNERS", "OPERATION", "WorldReset", "WorldResetDone"]

# The services that keep data derived from meter-sim's world, and the command each answers.
DERIVED_OWNERS: tuple[str, ...] = ("aggregator", "feasibility")
OPERATION = "world_reset"


class WorldReset(BaseModel):
    """``world_reset``: meter-sim's world is now generation ``generation``; empty what the old one left."""

    model_config = ConfigDict(extra="forbid")

    generation: int = Field(ge=1)


class WorldResetDone(BaseModel):
    """What the owner did: the generation it now holds and how many rows it deleted from each table."""

    service: str
    generation: int
    deleted: dict[str, int]
