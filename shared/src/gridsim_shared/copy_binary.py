"""PostgreSQL binary COPY built with numpy: no Python loop over rows.

A binary COPY row is a field count, then per field a length and big-endian bytes (length -1 for null).
Rows with the same null pattern have the same layout, so each pattern is one numpy structured array;
a batch has only a few patterns (consumers have null production, prosumers have none). Used for what is
written a million rows at a time: the aggregator's readings, meter-sim's registers.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt

__all__ = ["HEADER", "TRAILER", "decode_rows", "encode_readings", "encode_rows", "timestamps_us"]

HEADER = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
TRAILER = (-1).to_bytes(2, "big", signed=True)
_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def timestamps_us(ts: datetime) -> int:
    """A timestamptz in PostgreSQL's binary form: microseconds since 2000-01-01 UTC."""
    delta = ts - _PG_EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def encode_readings(
    ts_us: npt.NDArray[np.int64],
    meter_id: npt.NDArray[np.int64],
    values: npt.NDArray[np.float64],
) -> bytes:
    """Rows ``(ts, meter_id, values...)`` as one binary COPY stream (NaN → null).

    ``values`` are double precision columns, (n, k).
    """
    return encode_rows([ts_us, meter_id], values)


def encode_rows(keys: Sequence[npt.NDArray[np.int64]], values: npt.NDArray[np.float64]) -> bytes:
    """Rows ``(keys..., values...)`` as one binary COPY stream: each key an 8-byte column never null
    (``bigint``, or ``timestamptz`` from :func:`timestamps_us`), then double precision columns, (n, k),
    NaN → null."""
    n, k = values.shape
    nulls = np.isnan(values)
    pattern = (nulls.astype(np.int64) << np.arange(k, dtype=np.int64)).sum(axis=1) if k else np.zeros(n)
    chunks = [HEADER]
    for code in np.unique(pattern):
        rows = np.flatnonzero(pattern == code)
        present = [not (int(code) >> j) & 1 for j in range(k)]
        fields: list[tuple[str, str]] = [("count", ">i2")]
        for i in range(len(keys)):
            fields += [(f"kl{i}", ">i4"), (f"k{i}", ">i8")]
        for j in range(k):
            fields.append((f"l{j}", ">i4"))
            if present[j]:
                fields.append((f"v{j}", ">f8"))
        out = np.empty(len(rows), dtype=np.dtype(fields))
        out["count"] = len(keys) + k
        for i, key in enumerate(keys):
            out[f"kl{i}"] = 8
            out[f"k{i}"] = key[rows]
        for j in range(k):
            if present[j]:
                out[f"l{j}"] = 8
                out[f"v{j}"] = values[rows, j]
            else:
                out[f"l{j}"] = -1
        chunks.append(out.tobytes())
    chunks.append(TRAILER)
    return b"".join(chunks)


def decode_rows(
    payload: bytes, keys: int, values: int
) -> tuple[list[npt.NDArray[np.int64]], npt.NDArray[np.float64]]:
    """The inverse of :func:`encode_rows` for rows with no null (``COPY (select ...) TO STDOUT (FORMAT
    BINARY)`` of ``keys`` bigint columns, then ``values`` double precision columns, all ``not null``):
    the key columns and the values as (n, values)."""
    if not payload.startswith(HEADER[:11]):
        msg = "not a PostgreSQL binary COPY stream"
        raise ValueError(msg)
    extension = int.from_bytes(payload[15:19], "big")
    body = payload[19 + extension :]
    if body.endswith(TRAILER):
        body = body[: -len(TRAILER)]
    fields: list[tuple[str, str]] = [("count", ">i2")]
    fields += [(f, t) for i in range(keys) for f, t in ((f"kl{i}", ">i4"), (f"k{i}", ">i8"))]
    fields += [(f, t) for j in range(values) for f, t in ((f"l{j}", ">i4"), (f"v{j}", ">f8"))]
    try:
        rows = np.frombuffer(body, dtype=np.dtype(fields))
    except ValueError as exc:  # a null (length -1, no bytes) or another column count changes a row's size
        msg = "a row has another column count or a null: decode_rows reads only non-null 8-byte columns"
        raise ValueError(msg) from exc
    lengths = [rows[f"kl{i}"] for i in range(keys)] + [rows[f"l{j}"] for j in range(values)]
    if len(rows) and (np.any(rows["count"] != keys + values) or any(np.any(x != 8) for x in lengths)):
        msg = "a row has another column count or a null: decode_rows reads only non-null 8-byte columns"
        raise ValueError(msg)
    key_columns = [rows[f"k{i}"].astype(np.int64) for i in range(keys)]
    value_columns = (
        np.column_stack([rows[f"v{j}"].astype(np.float64) for j in range(values)])
        if len(rows)
        else np.zeros((0, values))
    )
    return key_columns, value_columns
