"""Types every schema module shares: paging bounds that PostgreSQL can hold."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

__all__ = ["MAX_OFFSET", "Offset", "Page"]

# Offsets and pages end up in SQL `offset` (a bigint); anything beyond a 32-bit count is no real page.
MAX_OFFSET = 2**31 - 1

Offset = Annotated[int, Field(ge=0, le=MAX_OFFSET, description="rows to skip")]
Page = Annotated[int, Field(ge=1, le=MAX_OFFSET // 1000, description="1-based page number")]
