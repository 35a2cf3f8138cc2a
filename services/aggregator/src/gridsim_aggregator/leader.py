"""The closer's leader lease: one instance per schema closes intervals, the others ingest only.

The lease is a PostgreSQL advisory lock held on a dedicated connection: it lasts exactly as long as that
connection, so an instance that dies (or loses the database) lets another take over at its next try,
with no expiry to tune and no split brain while the connection lives.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection

from gridsim_shared.db import connect

__all__ = ["LEADER_LOCK", "LeaderLease"]

LEADER_LOCK = 0x61676772  # "aggr"


@dataclass(frozen=True)
class Lease:
    """A held lease; :meth:`renew` proves the connection (and so the lock) is still there."""

    conn: AsyncConnection[Any]

    async def renew(self) -> None:
        """Touch the connection: a lost one raises ``psycopg.OperationalError`` and the lease is gone."""
        await self.conn.execute("select 1")


@dataclass(frozen=True)
class LeaderLease:
    """Tries to take the closer's lock for ``schema`` (tests and deployments may share a database)."""

    database_url: str
    schema: str

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[Lease | None]:
        """The lease while the block runs, or None when another instance holds it. Leaving the block
        closes the connection, which releases the lock."""
        async with await connect(self.database_url, self.schema, autocommit=True) as conn:
            cur = await conn.execute(
                "select pg_try_advisory_lock(%s, hashtext(%s))", (LEADER_LOCK, self.schema)
            )
            row = await cur.fetchone()
            yield Lease(conn) if row is not None and row[0] else None
