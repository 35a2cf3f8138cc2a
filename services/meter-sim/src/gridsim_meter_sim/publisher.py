"""Readings onto the bus: one columnar batch per transformer, and optionally one message per meter.

The batch is the throughput path (DESIGN §5): MQTT's cost is per message, so a transformer's meters
travel together as :class:`~gridsim_shared.messages.ReadingBatch` JSON built straight from the numpy
columns with orjson (NaN becomes ``null``, which is how consumers' production fields are sent). The
static part of each batch (meter ids and codes) is encoded once per fleet. Every message is QoS 1 and
:meth:`Publisher.publish` returns only when the broker has acknowledged all of them. Per-meter copies
(``publish = both``) go out on a second, publish-only connection that writes an interval's messages at
once (:mod:`gridsim_meter_sim.bulk_mqtt`): one paho call per message was the bottleneck.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from gridsim_meter_sim.bulk_mqtt import BulkPublisher, encode_topic
from gridsim_meter_sim.domain import Fleet, Readings
from gridsim_shared import channels
from gridsim_shared.bus import Bus
from gridsim_shared.ids import MeterPath, TransformerPath, slug

__all__ = ["Prepared", "Publisher", "encode_batches"]

# Published resolution (a meter's register, not the float's): 1 Wh/1000, 10 mV, 1 mA, 1e-4 of pf.
_DECIMALS = {
    "consumption_kWh": 6,
    "production_kWh": 6,
    "consumption_kVAh": 6,
    "production_kVAh": 6,
    "avg_current": 3,
    "avg_voltage": 2,
    "reactive_power_kVAR": 6,
    "power_factor": 4,
}
_OPTS = orjson.OPT_SERIALIZE_NUMPY
_IN_FLIGHT = 2000  # publishes awaited together; paho queues beyond the broker's inflight window


def _columns(readings: Readings) -> dict[str, npt.NDArray[np.float64]]:
    raw = {
        "consumption_kWh": readings.consumption_kwh,
        "production_kWh": readings.production_kwh,
        "consumption_kVAh": readings.consumption_kvah,
        "production_kVAh": readings.production_kvah,
        "avg_current": readings.current,
        "avg_voltage": readings.voltage,
        "reactive_power_kVAR": readings.reactive_kvar,
        "power_factor": readings.power_factor,
    }
    return {name: np.round(values, _DECIMALS[name]) for name, values in raw.items()}


@dataclass(frozen=True)
class _Layout:
    """What does not change between intervals for one fleet: topics and the ids/codes JSON."""

    batch_topics: list[str]
    meter_topics: list[bytes]  # as a PUBLISH carries them (length-prefixed UTF-8)
    meter_heads: list[bytes]  # b'{"meter_id":1,"meter_code":"M1",' per meter: each per-meter message's start
    # b'"meter_id":[...],"meter_code":[...]' per transformer, for the all-meters-active case.
    static_parts: list[bytes]


def _layout(fleet: Fleet, base: str, *, per_meter: bool = True) -> _Layout:
    """The fleet's topics and static JSON; the per-meter parts only for ``per_meter`` (``publish = both``):
    two bytes objects per meter, ~0.2 KB each, and 5 s at a million meters, for nothing with ``batch``."""
    batch_topics = [
        channels.BATCH.topic(base, TransformerPath(u, f, t)) for (u, f, t) in fleet.transformer_codes
    ]
    meter_topics: list[bytes] = []
    static_parts: list[bytes] = []
    meter_heads = (
        [
            orjson.dumps({"meter_id": i, "meter_code": c})[:-1] + b","
            for i, c in zip(fleet.meter_id.tolist(), fleet.meter_code, strict=True)
        ]
        if per_meter
        else []
    )
    for t, (u, f, tr) in enumerate(fleet.transformer_codes):
        start, stop = int(fleet.transformer_bounds[t]), int(fleet.transformer_bounds[t + 1])
        codes = fleet.meter_code[start:stop]
        if per_meter:
            meter_topics.extend(
                encode_topic(channels.READING.topic(base, MeterPath(u, f, tr, slug(c)))) for c in codes
            )
        static_parts.append(_static(fleet.meter_id[start:stop], codes))
    return _Layout(batch_topics, meter_topics, meter_heads, static_parts)


def _static(ids: npt.NDArray[np.int64], codes: list[str]) -> bytes:
    return orjson.dumps({"meter_id": ids, "meter_code": codes}, option=_OPTS)[1:-1]


def encode_batches(
    fleet: Fleet,
    readings: Readings,
    layout: _Layout | None = None,
    registers: dict[str, npt.NDArray[np.float64]] | None = None,
    shard: str = "0/1",
) -> list[tuple[int, bytes, int]]:
    """``(transformer position, ReadingBatch JSON, readings in it)`` for every transformer with a reading.

    ``registers``: the meters' cumulative registers (``import_kWh`` …), sent as extra columns. Every batch
    also says how many batches and readings its ``shard`` publishes for the interval, so the aggregator
    can count what the broker dropped (docs/operations.md, "Loss accounting").
    """
    columns = _columns(readings) | (registers or {})
    all_active = bool(readings.active.all())
    parts: list[tuple[int, slice | npt.NDArray[np.intp], int, bytes]] = []
    for t in range(len(fleet.transformer_codes)):
        start, stop = int(fleet.transformer_bounds[t]), int(fleet.transformer_bounds[t + 1])
        if all_active:
            rows: slice | npt.NDArray[np.intp] = slice(start, stop)
            count = stop - start
            static = (
                layout.static_parts[t]
                if layout
                else _static(fleet.meter_id[rows], fleet.meter_code[start:stop])
            )
        else:
            rows = start + np.flatnonzero(readings.active[start:stop])
            count = len(rows)
            if not count:
                continue
            static = _static(fleet.meter_id[rows], [fleet.meter_code[i] for i in rows])
        parts.append((t, rows, count, static))
    head = (
        orjson.dumps(
            {
                "timestamp": readings.timestamp,
                "interval_s": readings.interval_s,
                "sent_at": datetime.now(UTC),
                "shard": shard,
                "interval_batches": len(parts),
                "interval_readings": sum(p[2] for p in parts),
            }
        )[:-1]
        + b","
    )
    out = []
    for t, rows, count, static in parts:
        body = orjson.dumps({name: values[rows] for name, values in columns.items()}, option=_OPTS)
        out.append((t, head + static + b"," + body[1:], count))
    return out


def _meter_messages(
    fleet: Fleet,
    readings: Readings,
    layout: _Layout,
    registers: dict[str, npt.NDArray[np.float64]] | None = None,
) -> list[tuple[bytes, bytes]]:
    """One :class:`MeterReading` JSON per active meter (for subscribers that want single meters), with
    its encoded topic.

    Built column-wise: each column is encoded once by orjson (NaN → null, the same text as a Python float)
    and split into its values, then each message is one ``%`` of a template with the meter's static head.
    A dict and an ``orjson.dumps`` per meter cost ~7.5 µs a message (75 ms an interval at 10k meters, most
    of meter-sim's CPU with ``publish = both``); this is ~2 µs, with the same bytes.
    """
    columns = _columns(readings) | (registers or {})
    rows = np.flatnonzero(readings.active)
    if not len(rows):
        return []
    every = len(rows) == len(readings.active)
    common = orjson.dumps({"timestamp": readings.timestamp, "interval_s": readings.interval_s})[1:-1]
    template = (
        b"%b"
        + common.replace(b"%", b"%%")
        + b"".join(b',"' + name.encode() + b'":%b' for name in columns)
        + b"}"
    )
    # A column's values as JSON numbers (or null): none of them contains a comma.
    values = [
        orjson.dumps(column if every else column[rows], option=_OPTS)[1:-1].split(b",")
        for column in columns.values()
    ]
    picked = rows.tolist()
    heads = layout.meter_heads if every else [layout.meter_heads[i] for i in picked]
    topics = layout.meter_topics if every else [layout.meter_topics[i] for i in picked]
    return list(zip(topics, [template % fields for fields in zip(heads, *values, strict=True)], strict=True))


@dataclass(frozen=True)
class Prepared:
    """One interval encoded and ready to send: (topic, payload) pairs and how many readings they carry."""

    messages: list[tuple[str, bytes]]  # the batches
    readings: int
    singles: list[tuple[bytes, bytes]] = field(default_factory=list)  # per-meter copies (encoded topics)


class Publisher:
    """Publishes a fleet's readings on the bus and waits for the broker's acknowledgements."""

    def __init__(self, bus: Bus, *, per_meter: bool, shard: str = "0/1") -> None:
        self.bus = bus
        self.per_meter = per_meter
        self.shard = shard
        self._fleet: Fleet | None = None
        self._layout: _Layout | None = None
        self.messages_published = 0
        self.readings_published = 0
        self._bulk: BulkPublisher | None = None

    def warm(self, fleet: Fleet) -> None:
        """Build ``fleet``'s layout now (CPU only, a worker thread may run it) rather than in its first
        interval: 10,000 transformers' topics and JSON, and with ``publish = both`` a million meters'."""
        self._layout_for(fleet)

    def _layout_for(self, fleet: Fleet) -> _Layout:
        if self._fleet is not fleet or self._layout is None:
            self._layout = _layout(fleet, self.bus.base, per_meter=self.per_meter)
            self._fleet = fleet
        return self._layout

    def prepare(
        self, fleet: Fleet, readings: Readings, registers: dict[str, npt.NDArray[np.float64]] | None = None
    ) -> Prepared:
        """Encode one interval (CPU only: safe to run in a worker thread, one interval at a time)."""
        layout = self._layout_for(fleet)
        messages = [
            (layout.batch_topics[t], payload)
            for t, payload, _ in encode_batches(fleet, readings, layout, registers, self.shard)
        ]
        singles = _meter_messages(fleet, readings, layout, registers) if self.per_meter else []
        return Prepared(messages, readings.count, singles)

    async def send(self, prepared: Prepared, progress: Callable[[], None] | None = None) -> int:
        """Publish an encoded interval at QoS 1; return its reading count once the broker acknowledged all.

        ``progress`` is called as each chunk of batches is acknowledged: a million meters' interval is ten
        thousand batches, more than a minute's work on a loaded machine, and the clock's watchdog must
        tell that from a stall."""
        qos = channels.BATCH.qos
        messages = prepared.messages
        # Per-meter copies (10k per interval at 10k meters) go out on the bulk connection while the
        # batches go through the bus; both are awaited, so the interval is complete at the broker.
        singles = self._send_singles(prepared.singles) if prepared.singles else None
        for start in range(0, len(messages), _IN_FLIGHT):
            chunk: list[Coroutine[Any, Any, None]] = [
                self.bus.publish_raw(topic, payload, qos=qos)
                for topic, payload in messages[start : start + _IN_FLIGHT]
            ]
            await asyncio.gather(*chunk)
            if progress is not None:
                progress()
        if singles is not None:
            await singles
        self.messages_published += len(prepared.messages) + len(prepared.singles)
        self.readings_published += prepared.readings
        return prepared.readings

    def _send_singles(self, singles: list[tuple[bytes, bytes]]) -> asyncio.Task[None]:
        if self._bulk is None:
            self._bulk = BulkPublisher(self.bus.settings, f"{self.bus.client_id}-bulk")
        return asyncio.create_task(self._bulk.publish_many(singles))

    async def aclose(self) -> None:
        """Close the per-meter connection (if one was opened)."""
        if self._bulk is not None:
            await self._bulk.close()
            self._bulk = None

    async def publish(self, fleet: Fleet, readings: Readings) -> int:
        """Encode and publish one interval (see :meth:`prepare` and :meth:`send`)."""
        return await self.send(self.prepare(fleet, readings))
