"""The binary COPY encoder and decoder against a real PostgreSQL: what goes in comes back bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from gridsim_shared.copy_binary import decode_rows, encode_rows
from gridsim_shared.db import connect
from gridsim_shared.settings import Settings

pytestmark = pytest.mark.integration


async def test_rows_written_and_read_back_are_the_same_bits(settings: Settings) -> None:
    rng = np.random.default_rng(7)
    ids = rng.integers(-(2**62), 2**62, 1000, dtype=np.int64)
    values = rng.normal(0, 1e6, (1000, 3))
    values[::7, 1] = np.nan  # nulls in a value column
    async with await connect(settings.db.url, settings.db.schema_name, autocommit=True) as conn:
        await conn.execute("create table copied (id bigint, a float8, b float8, c float8)")
        async with conn.cursor().copy("copy copied from stdin (format binary)") as cp:
            await cp.write(encode_rows([ids], values))
        cur = await conn.execute("select count(*), count(b) from copied")
        assert await cur.fetchone() == (1000, 1000 - len(range(0, 1000, 7)))
        payload = bytearray()
        query = "copy (select id, a, coalesce(b, -1), c from copied) to stdout (format binary)"
        async with conn.cursor().copy(query) as cp:
            async for chunk in cp:
                payload += chunk
    (back_ids,), back = decode_rows(bytes(payload), keys=1, values=3)
    order = np.argsort(ids)
    assert np.array_equal(np.sort(back_ids), ids[order])
    expected = np.where(np.isnan(values), -1.0, values)
    got = back[np.argsort(back_ids)]
    assert np.array_equal(got.view(np.int64), expected[order].view(np.int64))  # the same bits


def test_decode_refuses_nulls_and_other_shapes() -> None:
    with_null = encode_rows([np.array([1], dtype=np.int64)], np.array([[np.nan, 1.0]]))
    with pytest.raises(ValueError, match="null"):
        decode_rows(with_null, keys=1, values=2)
    with pytest.raises(ValueError, match="binary COPY"):
        decode_rows(b"id,a\n1,2\n", keys=1, values=1)
    empty = encode_rows([np.zeros(0, dtype=np.int64)], np.zeros((0, 2)))
    (ids,), values = decode_rows(empty, keys=1, values=2)
    assert (len(ids), values.shape) == (0, (0, 2))
