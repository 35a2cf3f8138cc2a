"""Types every schema module shares: paging bounds that PostgreSQL can hold."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

__all__ = ["MAX_OFFSET", "Offset", "Page"]

# Offsets and pages end up in SQL `offset`, which reads and throws away every skipped row: a caller could
# make each request scan a whole table. A million rows is more than any page a client walks to; past that,
# narrow the query (a time range, a filter) instead (docs/security.md).
MAX_OFFSET = 1_000_000

Offset = Annotated[int, Field(ge=0, le=MAX_OFFSET, description="rows to skip")]
Page = Annotated[int, Field(ge=1, le=MAX_OFFSET // 1000, description="1-based page number")]
