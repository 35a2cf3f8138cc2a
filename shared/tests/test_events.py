"""Grid events as a discriminated union: each kind validated with its own details."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from gridsim_shared import channels
from gridsim_shared.events import (
    GRID_EVENT,
    MeterIncidentEvent,
    SpikeDetails,
    SpikeEvent,
    TransformerTripEvent,
    TripDetails,
)
from gridsim_shared.topics import EventPath

T0 = datetime(2025, 6, 20, 12, tzinfo=UTC)


def _trip(**data: object) -> dict[str, object]:
    return {
        "type": "transformer_trip",
        "severity": "critical",
        "timestamp": T0.isoformat(),
        "subject": "tx-1",
        "message": "tripped",
        "data": data,
    }


def test_the_type_picks_the_kind_and_its_details() -> None:
    event = GRID_EVENT.validate_python(_trip(node_id=3, hot_spot_c=181.0, loading_pct=190.0))
    assert isinstance(event, TransformerTripEvent)
    assert event.data == TripDetails(node_id=3, hot_spot_c=181.0, loading_pct=190.0)


def test_an_unknown_kind_or_wrong_details_are_refused() -> None:
    with pytest.raises(ValidationError, match="does not match any of the expected tags"):
        GRID_EVENT.validate_python(_trip(node_id=3) | {"type": "overload"})
    with pytest.raises(ValidationError, match="node_id"):
        GRID_EVENT.validate_python(_trip(hot_spot_c=181.0, loading_pct=None))
    with pytest.raises(ValidationError, match="meter_id"):  # a spike's details are not a trip's
        GRID_EVENT.validate_python(_trip(node_id=3, hot_spot_c=181.0, loading_pct=None) | {"type": "status"})


def test_the_wire_format_round_trips_through_the_channel() -> None:
    spike = SpikeEvent(
        type="spike",
        timestamp=T0,
        subject="t2",
        message="load spike",
        data=SpikeDetails(
            spike_id=7, kind="load", scope="meter", meter_ids=[1], meter_codes=["X"], duration_s=None
        ),
    )
    payload = channels.EVENT.encode(spike)
    decoded, path = channels.EVENT.decode("g", "g/v1/event/spike/t2", payload)
    assert (decoded, path) == (spike, EventPath("spike", "t2"))
    assert spike.details() == {
        "spike_id": 7,
        "kind": "load",
        "scope": "meter",
        "meter_ids": [1],
        "meter_codes": ["X"],
        "duration_s": None,
    }


def test_an_injected_meter_event_keeps_the_operators_fields() -> None:
    event = GRID_EVENT.validate_python(
        _trip() | {"type": "tamper", "data": {"meter_id": 4, "status": "tampered", "note": "seal broken"}}
    )
    assert isinstance(event, MeterIncidentEvent)
    assert event.details() == {"meter_id": 4, "status": "tampered", "note": "seal broken"}
