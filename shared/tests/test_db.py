"""Database sessions: the schema on the search path and UTC, whatever the server's defaults."""

from __future__ import annotations

import pytest

from gridsim_shared.db import connect
from gridsim_shared.settings import Settings

pytestmark = pytest.mark.integration


async def test_sessions_use_the_schema_and_utc(settings: Settings) -> None:
    async with await connect(settings.db.url, settings.db.schema_name) as conn:
        cur = await conn.execute(
            "select current_schema(), setting, source from pg_settings where name = 'TimeZone'"
        )
        # source 'client': set by the connection itself, not inherited from the server's configuration
        assert await cur.fetchone() == (settings.db.schema_name, "UTC", "client")
        cur = await conn.execute("select timestamptz '2025-06-20 23:30:00+05:30'")
        row = await cur.fetchone()
        assert row is not None
        assert row[0].isoformat() == "2025-06-20T18:00:00+00:00"  # read back in UTC
