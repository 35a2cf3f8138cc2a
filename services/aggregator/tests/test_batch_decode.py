"""Ingest's fast batch decoding: it takes only payloads the ReadingBatch model accepts, to the same bits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from gridsim_aggregator import batch_decode
from gridsim_aggregator.batch_decode import IncomingBatch, decode_batch
from gridsim_aggregator.domain import readings_from_batch
from gridsim_shared.messages import READING_VALUE_COLUMNS, ReadingBatch

# The decoder's list of nullable columns; the model (the oracle below) refuses a null anywhere else.
NULLABLE = batch_decode._NULLABLE
floats = st.floats(allow_nan=False, allow_infinity=False)  # every finite double: parsed to the same bits
offsets = st.sampled_from([UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5, minutes=-30))])
timestamps = st.builds(
    lambda t, tz, us: t.replace(tzinfo=tz, microsecond=us),
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)),
    offsets,
    st.sampled_from([0, 0, 123_456, 500_000]),
)


@st.composite
def batches(draw: st.DrawFn) -> dict[str, Any]:
    """A batch as meter-sim sends it: floats, nulls where the model allows them, optional extras."""
    n = draw(st.integers(0, 12))
    body: dict[str, Any] = {
        "timestamp": draw(timestamps).isoformat(),
        "interval_s": draw(st.sampled_from([60, 900])),
        "meter_id": draw(st.lists(st.integers(1, 2**62), min_size=n, max_size=n)),
        "meter_code": [f"M{i}" for i in range(n)],
    }
    for name in READING_VALUE_COLUMNS:
        value = st.one_of(st.none(), floats) if name in NULLABLE else floats
        body[name] = draw(st.lists(value, min_size=n, max_size=n))
    if draw(st.booleans()):
        body |= {
            name: draw(st.lists(floats, min_size=n, max_size=n))
            for name in ("import_kWh", "export_kWh", "import_kVARh")
        }
    if draw(st.booleans()):
        body |= {"shard": "0/1", "interval_batches": draw(st.integers(0, 100)), "interval_readings": n}
    if draw(st.booleans()):
        body["sent_at"] = draw(timestamps).isoformat()
    return body


def _model_path(payload: bytes) -> IncomingBatch:
    """What the ReadingBatch model makes of ``payload`` (the reference)."""
    batch = ReadingBatch.model_validate_json(payload)
    counts = (batch.shard, batch.interval_batches, batch.interval_readings)
    expected = None if None in counts else counts
    return IncomingBatch(readings_from_batch(batch), batch.sent_at, expected)  # type: ignore[arg-type]


def _assert_same(a: IncomingBatch, b: IncomingBatch) -> None:
    assert a.readings.ts == b.readings.ts
    assert a.readings.ts.tzinfo == UTC == b.readings.ts.tzinfo
    assert a.readings.interval_s == b.readings.interval_s
    np.testing.assert_array_equal(a.readings.meter_id, b.readings.meter_id)
    assert a.readings.values.shape == b.readings.values.shape
    assert a.readings.values.flags.c_contiguous
    # Bit for bit, NaN (null) included.
    assert a.readings.values.view(np.int64).tolist() == b.readings.values.view(np.int64).tolist()
    assert a.sent_at == b.sent_at
    assert a.expected == b.expected


@settings(max_examples=300, deadline=None)
@given(batches())
def test_meter_sims_batches_take_the_fast_path_to_the_models_values(body: dict[str, Any]) -> None:
    payload = orjson.dumps(body)
    fast = batch_decode._exact(payload)
    assert fast is not None
    _assert_same(fast, _model_path(payload))


# Payloads the fast path leaves to the model: each one the model either accepts (then decode_batch gives
# its values) or refuses (then decode_batch raises as it does).
ODD = [
    {"consumption_kWh": [1, None]},  # an int where a float goes: the model converts it
    {"avg_current": [2.0, None]},  # null where the model allows none
    {"avg_voltage": ["230.5", 231.0]},  # a numeric string
    {"power_factor": [True, 0.9]},
    {"meter_id": [1.0, 2.0]},
    {"meter_id": [1, 2**63]},  # beyond int64
    {"meter_code": ["a", 3]},
    {"production_kWh": [0.1]},  # misaligned
    {"import_kWh": [1.0]},
    {"timestamp": "2025-06-21T12:00:00"},  # no offset
    {"timestamp": "2025-06-21 12:00:00Z"},
    {"timestamp": "2025-06-21T12:00:00.1234567+00:00"},
    {"timestamp": 1750507200},
    {"timestamp": "2025-02-30T12:00:00+00:00"},
    {"sent_at": "yesterday"},
    {"interval_s": 60.0},
    {"interval_batches": -1},
    {"shard": 3},
    {"timestamp": None},
]


@pytest.mark.parametrize("change", ODD, ids=[next(iter(c)) + f"-{i}" for i, c in enumerate(ODD)])
def test_anything_else_is_decided_by_the_model(change: dict[str, Any]) -> None:
    body = {
        "timestamp": "2025-06-21T12:00:00+00:00",
        "meter_id": [1, 2],
        "meter_code": ["a", "b"],
        **{name: [0.5, 0.25] for name in READING_VALUE_COLUMNS},
        "shard": "0/1",
        "interval_batches": 1,
        "interval_readings": 2,
    } | change
    payload = orjson.dumps(body)
    assert batch_decode._exact(payload) is None
    try:
        reference = _model_path(payload)
    except (ValidationError, ValueError, OverflowError) as exc:
        with pytest.raises(type(exc)):
            decode_batch(payload)
        return
    _assert_same(decode_batch(payload), reference)


@pytest.mark.parametrize("payload", [b"", b"[1, 2]", b"{", b'{"meter_id": [1]}', b"null"])
def test_malformed_payloads_raise_the_models_error(payload: bytes) -> None:
    with pytest.raises(ValidationError):
        decode_batch(payload)
