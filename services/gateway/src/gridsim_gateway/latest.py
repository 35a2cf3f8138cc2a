"""The latest stored reading of the meters clients ask for, kept from the live batches (no query per request).

``GET /meter/stream?meter_id=…&limit=1`` is the question a dashboard asks of every meter it shows, again and
again. The gateway already receives every reading live (the ``batch`` channel, one message per transformer
per interval), so for the meters someone asked about it keeps their newest readings and answers from memory.

**Consistency: a reading is served from memory only once it is stored.** The aggregator's retained
watermark (``committed_until``) says every batch of that interval it received is committed; memory answers
only with the meter's reading *at* the watermark, never one after it (not yet known to be stored) nor an
older one (a batch this gateway missed, across a reconnect, could hold a newer stored reading). Otherwise
the request goes to the database as before. The database path answers with the newest committed row, which
may be an interval or two past the watermark (batches are committed as they arrive, the watermark moves when
the interval closes); the memory path is the watermark's view, the same as the live stream's (SSE).

Where memory could disagree with the table, it is not trusted:

- the clock went back (a jump back or a reset) or the world changed (``world_version``): a re-simulated
  interval is not stored again (the first row of a ``(ts, meter_id)`` wins), so readings at or before the
  latest time seen before that are not served; new ones after it are;
- the bus reconnected: everything is forgotten (batches may have been missed);
- parents (aggregates the aggregator computes) and unlinked meters are never served from memory; a meter's
  id, code, link and parenthood come from one database lookup (the first request for it), kept until the
  world changes.

The one remaining case: a batch the aggregator set aside as a dead letter (refused by the database for
its content) is in memory but not in the table; none is produced in normal operation.

Memory is bounded: ``capacity`` meters (least recently asked dropped first), ``depth`` readings each.
"""

from __future__ import annotations

import bisect
import json
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import parse_qsl

from gridsim_shared.messages import ClockState, ReadingBatch, Watermark
from gridsim_shared.schemas.readings import ReadingPoint
from gridsim_shared.topics import NoPath

__all__ = ["LatestReadings", "MeterRef", "latest_query"]

# (id, code, linked to the grid, has child meters): what ``find_meter`` reads from the database.
MeterRef = tuple[int, str, bool, bool]


@dataclass
class _Tracked:
    ref: MeterRef
    # (timestamp, the ``GET /meter/stream`` body for that one reading), oldest first, at most ``depth``.
    readings: list[tuple[datetime, bytes]] = field(default_factory=list)


class LatestReadings:
    """The newest readings of the meters asked for, from the live batches (see the module's docstring)."""

    def __init__(self, capacity: int = 10_000, depth: int = 3) -> None:
        self.capacity = capacity
        self.depth = depth
        self._meters: OrderedDict[int, _Tracked] = OrderedDict()
        self._by_code: dict[str, int] = {}
        self._clock: ClockState | None = None
        self._latest_seen: datetime | None = None  # the newest clock time seen
        self._distrust_until: datetime | None = None  # readings at or before it are not served
        self._reconnects: int | None = None
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._meters)

    # ------------------------------------------------------------------ what the bus tells
    def tracking(self) -> bool:
        """Whether any meter is tracked: the batches are not even decoded until one is."""
        return bool(self._meters)

    async def on_batch(self, batch: ReadingBatch, _path: object) -> None:
        """Keep the batch's readings of the tracked meters."""
        meters = self._meters
        for i, meter_id in enumerate(batch.meter_id):
            if meter_id in meters:
                self.keep(meter_id, ReadingPoint.of(batch.row(i)))

    async def on_clock(self, clock: ClockState, _path: NoPath) -> None:
        """Distrust what memory holds when the clock goes back or the world changes."""
        previous = self._clock
        self._clock = clock
        now = clock.current_datetime
        if previous is not None and (
            now < previous.current_datetime or clock.world_version != previous.world_version
        ):
            self._distrust_until = self._latest_seen
            if clock.world_version != previous.world_version:
                self.forget()  # links and parents may have changed: look each meter up again
        if self._latest_seen is None or now > self._latest_seen:
            self._latest_seen = now

    def bus_reconnects(self, reconnects: int) -> None:
        """Forget everything when the bus reconnected since the last call (batches may have been missed)."""
        if self._reconnects is not None and reconnects != self._reconnects:
            self.forget()
        self._reconnects = reconnects

    def forget(self) -> None:
        """Drop every tracked meter (each is looked up in the database again on its next request)."""
        self._meters.clear()
        self._by_code.clear()

    # ------------------------------------------------------------------ what the routes tell
    def track(self, ref: MeterRef) -> None:
        """Start keeping a leaf meter's readings (after its database lookup); parents are never kept."""
        meter_id, code, linked, is_parent = ref
        if is_parent or not linked:
            return
        tracked = self._meters.get(meter_id)
        if tracked is not None and tracked.ref == ref:
            self._meters.move_to_end(meter_id)
            return
        self._meters[meter_id] = _Tracked(ref)
        self._by_code[code.lower()] = meter_id
        while len(self._meters) > self.capacity:
            _, dropped = self._meters.popitem(last=False)
            self._by_code.pop(dropped.ref[1].lower(), None)

    def keep(self, meter_id: int, point: ReadingPoint) -> None:
        """Hold ``point`` (a reading from a batch, or a row read back from the table) for a tracked meter."""
        tracked = self._meters.get(meter_id)
        if tracked is None:
            return
        readings = tracked.readings
        ts = point.timestamp
        times = [t for t, _ in readings]
        at = bisect.bisect_left(times, ts)
        if at < len(readings) and readings[at][0] == ts:
            return  # the first copy of an interval is the one stored (a redelivery adds nothing)
        readings.insert(at, (ts, _body(point)))
        if len(readings) > self.depth:
            del readings[0]

    def answer(self, meter: str, watermark: Watermark | None) -> bytes | None:
        """The body of ``GET /meter/stream?meter_id=<meter>&limit=1`` from memory, or None (ask the database)."""
        meter_id = int(meter) if meter.isdigit() else None
        tracked = self._meters.get(meter_id) if meter_id is not None else None
        if tracked is None:
            # An all-digit value is an id when such a meter exists, else a code (as ``find_meter`` reads it).
            by_code = self._by_code.get(meter.lower())
            tracked = self._meters.get(by_code) if by_code is not None else None
            if tracked is None or (meter_id is not None and meter_id != tracked.ref[0]):
                self.misses += 1
                return None
        if watermark is None:
            self.misses += 1
            return None
        mark = watermark.committed_until
        if self._distrust_until is not None and mark <= self._distrust_until:
            self.misses += 1
            return None
        for ts, body in reversed(tracked.readings):
            if ts == mark:
                self.hits += 1
                self._meters.move_to_end(tracked.ref[0])
                return body
            if ts < mark:
                break
        self.misses += 1
        return None


def _body(point: ReadingPoint) -> bytes:
    """The route's response for ``[point]``, byte for byte (FastAPI: JSON-mode dump, then Starlette's
    ``JSONResponse.render``; pydantic's own JSON writes some floats differently, ``1e-5`` for ``1e-05``)."""
    return json.dumps(
        [point.model_dump(mode="json")],
        ensure_ascii=False,
        allow_nan=False,
        indent=None,
        separators=(",", ":"),
    ).encode("utf-8")


def latest_query(query_string: bytes) -> str | None:
    """The ``meter_id`` of a ``GET /meter/stream`` query that asks for the latest reading only, else None.

    Only ``meter_id=…&limit=1`` (and ``resolution=raw``), each once: anything else (a range, another limit
    or resolution, an unknown parameter) is left to the route and its validation.
    """
    try:
        pairs = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True, strict_parsing=True)
    except ValueError:
        return None
    params = dict(pairs)
    if len(params) != len(pairs) or params.get("limit") != "1" or not params.get("meter_id"):
        return None
    if set(params) - {"meter_id", "limit", "resolution"} or params.get("resolution", "raw") != "raw":
        return None
    return params["meter_id"]
