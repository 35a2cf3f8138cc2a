"""The grid as a tree: utility → feeder → transformer → meter → child meters."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from gridsim_gateway.deps import BusDep
from gridsim_shared.schemas.meters import GridTree

router = APIRouter(tags=["grid"])


@router.get("/grid")
async def grid(
    bus: BusDep,
    meters: Annotated[bool, Query(description="include meters under their transformers")] = True,
) -> GridTree:
    """The whole grid, utilities down to child meters (the "unassigned" branch too, when used)."""
    return GridTree.model_validate(await bus.request("meter-sim", "grid_tree", {"meters": meters}))
