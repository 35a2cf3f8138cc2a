"""PostgreSQL binary COPY built with numpy: no Python loop over rows.

A binary COPY row is a field count, then per field a length and big-endian bytes (length -1 for null).
Rows with the same null pattern have the same layout, so each pattern is one numpy structured array;
a batch has only a few patterns (consumers have null production, prosumers have none).
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt

__all__ = ["HEADER", "TRAILER", "encode_readings", "timestamps_us"]

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
    n, k = values.shape
    nulls = np.isnan(values)
    pattern = (nulls.astype(np.int64) << np.arange(k, dtype=np.int64)).sum(axis=1) if k else np.zeros(n)
    chunks = [HEADER]
    for code in np.unique(pattern):
        rows = np.flatnonzero(pattern == code)
        present = [not (int(code) >> j) & 1 for j in range(k)]
        fields: list[tuple[str, str]] = [("count", ">i2"), ("ts_len", ">i4"), ("ts", ">i8")]
        fields += [("id_len", ">i4"), ("id", ">i8")]
        for j in range(k):
            fields.append((f"l{j}", ">i4"))
            if present[j]:
                fields.append((f"v{j}", ">f8"))
        out = np.empty(len(rows), dtype=np.dtype(fields))
        out["count"] = 2 + k
        out["ts_len"] = 8
        out["ts"] = ts_us[rows]
        out["id_len"] = 8
        out["id"] = meter_id[rows]
        for j in range(k):
            if present[j]:
                out[f"l{j}"] = 8
                out[f"v{j}"] = values[rows, j]
            else:
                out[f"l{j}"] = -1
        chunks.append(out.tobytes())
    chunks.append(TRAILER)
    return b"".join(chunks)
