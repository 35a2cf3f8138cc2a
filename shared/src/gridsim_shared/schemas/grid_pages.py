"""The grid a page at a time (``GET /grid/children``) and found by prefix (``GET /grid/search``).

``GET /grid`` returns the whole tree, which at a utility's size (a million meters) is hundreds of
megabytes; these answer in a few rows whatever the size of the grid.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

__all__ = ["GridItem", "GridPage", "GridSearch"]


class GridItem(BaseModel):
    """A grid node or a meter, with how many direct children it has (to page them in turn)."""

    kind: Literal["node", "meter"]
    id: int
    code: str = Field(description="the node's code or the meter's code (meter_id)")
    name: str = Field(description="the node's name; a meter's code")
    level: Literal["utility", "feeder", "transformer", "meter"]
    capacity_kVA: float | None = None
    er_type: Literal["consumer", "prosumer"] | None = Field(
        default=None, description="a meter's linked energy resource type (None when unlinked)"
    )
    children: int = Field(
        description="direct children: feeders or transformers of a node, the meters of a transformer "
        "(those without a parent meter), the child meters of a meter"
    )
    path: list[str] = Field(
        default_factory=list,
        description="codes from the utility down to the item's parent (search results only)",
    )


class GridPage(BaseModel):
    """One page of a node's or a meter's children, ordered by code (case-insensitive)."""

    parent: str | None = Field(description="the node or meter paged; None for the utilities")
    items: list[GridItem]
    next_after: str | None = Field(description="pass as ``after`` for the next page; None on the last page")


class GridSearch(BaseModel):
    """Grid nodes (code or name) and meters (code) starting with the query, ordered by code."""

    query: str
    items: list[GridItem]
    truncated: bool = Field(description="more matched than ``limit``")
