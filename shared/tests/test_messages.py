"""Message models and channels: encode → decode round trips, validation, request/reply envelopes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from gridsim_shared import channels
from gridsim_shared.ids import MeterPath, TransformerPath
from gridsim_shared.messages import ErrorBody, MeterReading, ReadingBatch, Reply, Request

T0 = datetime(2025, 6, 20, 10, 0, tzinfo=UTC)


def _reading(**overrides: object) -> MeterReading:
    fields: dict[str, object] = {
        "meter_id": 7,
        "meter_code": "MTR-0007",
        "timestamp": T0,
        "consumption_kWh": 1.23,
        "production_kWh": 0.44,
        "consumption_kVAh": 1.45,
        "production_kVAh": 0.52,
        "avg_current": 5.3,
        "avg_voltage": 239.8,
        "reactive_power_kVAR": 0.85,
        "power_factor": 0.85,
    }
    fields.update(overrides)
    return MeterReading.model_validate(fields)


def test_reading_channel_round_trips() -> None:
    path = MeterPath("pge", "sf-mission", "tx-101", "mtr-0007")
    reading = _reading()
    topic = channels.READING.topic("gridsim", path)
    decoded, decoded_path = channels.READING.decode("gridsim", topic, channels.READING.encode(reading))
    assert decoded == reading
    assert decoded_path == path


def test_reading_refuses_negative_energy_and_naive_time() -> None:
    with pytest.raises(ValidationError, match="consumption_kWh"):
        _reading(consumption_kWh=-1.0)
    with pytest.raises(ValidationError, match="timestamp"):
        _reading(timestamp=datetime(2025, 6, 20))


def test_unknown_fields_are_ignored_for_forward_compatibility() -> None:
    payload = _reading().model_dump_json()[:-1] + ',"added_in_v1_1": 3}'
    assert MeterReading.model_validate_json(payload) == _reading()


def test_batch_columns_must_align_and_expand_to_rows() -> None:
    batch = ReadingBatch(
        timestamp=T0,
        meter_id=[1, 2],
        meter_code=["a", "b"],
        consumption_kWh=[0.1, 0.2],
        production_kWh=[None, 0.3],
        consumption_kVAh=[0.11, 0.22],
        production_kVAh=[None, 0.33],
        avg_current=[1.0, 2.0],
        avg_voltage=[240.0, 241.0],
        reactive_power_kVAR=[0.01, 0.02],
        power_factor=[0.9, 0.95],
    )
    rows = batch.rows()
    assert [r.meter_id for r in rows] == [1, 2]
    assert rows[0].production_kWh is None
    assert rows[1].production_kWh == 0.3
    encoded = channels.BATCH.encode(batch)
    decoded, path = channels.BATCH.decode("g", "g/v1/batch/u/f/t", encoded)
    assert decoded == batch
    assert path == TransformerPath("u", "f", "t")
    with pytest.raises(ValidationError, match="column avg_voltage has 1 values"):
        ReadingBatch.model_validate({**batch.model_dump(), "avg_voltage": [240.0]})


def test_request_and_reply_envelopes_round_trip() -> None:
    request = Request(correlation_id="c-1", reply_to="g/v1/reply/gateway-0", data={"meter_id": "MTR-1"})
    assert Request.model_validate_json(request.model_dump_json()) == request
    ok = Reply(correlation_id="c-1", status="ok", data={"id": 3})
    error = Reply(
        correlation_id="c-1",
        status="error",
        error=ErrorBody(status=404, code="not_found", message="meter 'x' not found", field="meter_id"),
    )
    assert Reply.model_validate_json(ok.model_dump_json()) == ok
    assert Reply.model_validate_json(error.model_dump_json()).error == error.error
