"""A ReadingBatch payload straight to columns: the fast path of ingest's decoding, exact to the model.

Validating a 100-meter batch through pydantic and converting its lists to numpy was the largest share of
the aggregator's CPU per message (~18 % of its samples under py-spy at 10k meters). Here the payload is
parsed by orjson and taken as it is *only* when it has exactly the shape meter-sim sends: every column a
list of JSON floats (``null`` where the model allows it), ids ints, codes strings, timestamps in RFC 3339
with an offset, the counts non-negative ints. Anything else (an int where a float goes, a missing field,
an odd timestamp, a malformed payload) goes through :class:`~gridsim_shared.messages.ReadingBatch`, which
accepts or rejects it with its reason as before. So what this path accepts is a subset of what the model
accepts, decoded to the same values (tests/test_aggregator_domain.py compares them bit for bit), and the
model stays the one definition of a valid batch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeGuard

import numpy as np
import orjson

from gridsim_aggregator.domain import Readings, readings_from_batch
from gridsim_shared.messages import READING_REGISTER_COLUMNS, READING_VALUE_COLUMNS, ReadingBatch

__all__ = ["IncomingBatch", "decode_batch"]

# The value columns the model lets be null (list[float | None]); the others are list[float].
_NULLABLE = frozenset(
    (
        "consumption_kWh",
        "production_kWh",
        "consumption_kVAh",
        "production_kVAh",
        "reactive_power_kVAR",
        "power_factor",
    )
)
_FLOAT: frozenset[type] = frozenset((float,))
_FLOAT_OR_NULL: frozenset[type] = frozenset((float, type(None)))
_INT: frozenset[type] = frozenset((int,))
_STR: frozenset[type] = frozenset((str,))
# RFC 3339 with an offset, at most microseconds: what both datetime.fromisoformat and pydantic's
# AwareDatetime read to the same instant.
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})")


@dataclass(frozen=True)
class IncomingBatch:
    """What ingest keeps of a batch: its readings as columns and the producer's bookkeeping."""

    readings: Readings
    sent_at: datetime | None
    # (shard, batches, readings) its producer published for the interval in all (loss accounting).
    expected: tuple[str, int, int] | None


def decode_batch(payload: bytes) -> IncomingBatch:
    """The batch in ``payload``; raises ``pydantic.ValidationError`` (or ``ValueError``) when malformed."""
    fast = _exact(payload)
    if fast is not None:
        return fast
    batch = ReadingBatch.model_validate_json(payload)
    counts = (batch.shard, batch.interval_batches, batch.interval_readings)
    return IncomingBatch(readings_from_batch(batch), batch.sent_at, _expected(*counts))


def _exact(payload: bytes) -> IncomingBatch | None:
    """The batch when ``payload`` has exactly meter-sim's shape, else None (the model decides)."""
    try:
        d = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    if type(d) is not dict:
        return None
    ids, codes = d.get("meter_id"), d.get("meter_code")
    if not (_is_list_of(ids, _INT) and _is_list_of(codes, _STR)):
        return None
    n = len(ids)
    columns = [d.get(name) for name in READING_VALUE_COLUMNS]
    for name, column in zip(READING_VALUE_COLUMNS, columns, strict=True):
        if not _is_list_of(column, _FLOAT_OR_NULL if name in _NULLABLE else _FLOAT) or len(column) != n:
            return None
    for name in READING_REGISTER_COLUMNS:  # optional; when present, aligned floats
        register = d.get(name)
        if register is not None and not (_is_list_of(register, _FLOAT) and len(register) == n):
            return None
    if len(codes) != n:
        return None
    ts, sent_at = _timestamp(d.get("timestamp")), d.get("sent_at")
    if ts is None or (sent_at is not None and (sent_at := _timestamp(sent_at)) is None):
        return None
    interval_s = d.get("interval_s", 60)
    shard, batches, readings = d.get("shard"), d.get("interval_batches"), d.get("interval_readings")
    if type(interval_s) is not int or not (shard is None or type(shard) is str):
        return None
    if not all(c is None or (type(c) is int and c >= 0) for c in (batches, readings)):
        return None
    try:
        meter_id = np.array(ids, dtype=np.int64)
    except OverflowError:
        return None
    # Columns to rows as readings_from_batch does (null → NaN).
    values = np.ascontiguousarray(np.array(columns, dtype=np.float64).reshape(len(columns), n).T)
    readings_ = Readings(ts.astimezone(UTC), interval_s, meter_id, values)
    return IncomingBatch(readings_, sent_at, _expected(shard, batches, readings))


def _expected(shard: str | None, batches: int | None, readings: int | None) -> tuple[str, int, int] | None:
    """What the producer says it published for the interval, when it says all of it (older ones don't)."""
    return None if shard is None or batches is None or readings is None else (shard, batches, readings)


def _is_list_of(value: object, types: frozenset[type]) -> TypeGuard[list[Any]]:
    return type(value) is list and set(map(type, value)) <= types


def _timestamp(value: object) -> datetime | None:
    if type(value) is not str or _TIMESTAMP.fullmatch(value) is None:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None
