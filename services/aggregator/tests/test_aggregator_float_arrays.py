"""Receipts and grid rollups reach PostgreSQL as float8[] literals: every double arrives bit for bit."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from gridsim_aggregator.repository import float_array
from gridsim_shared.db import connect
from gridsim_shared.settings import Settings

pytestmark = pytest.mark.integration


async def test_float_array_literals_keep_every_bit(settings: Settings) -> None:
    rng = np.random.default_rng(7)
    values = [
        *(rng.uniform(0, 1, 500) * 10.0 ** rng.integers(-30, 30, 500)).tolist(),
        *rng.standard_normal(200).astype(np.float64),  # numpy scalars too: their repr is not a number
        0.1 + 0.2,
        5e-324,
        1.7976931348623157e308,
        -0.0,
        float("nan"),
        float("inf"),
    ]
    async with await connect(settings.db.url, settings.db.schema_name, autocommit=True) as conn:
        cur = await conn.execute("select %s::float8[]", (float_array(values),))
        row = await cur.fetchone()
    assert row is not None
    assert [struct.pack("<d", v) for v in row[0]] == [struct.pack("<d", float(v)) for v in values]
