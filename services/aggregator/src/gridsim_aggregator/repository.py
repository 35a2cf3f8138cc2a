"""SQL of the aggregator service: psycopg calls that take and return domain objects.

Ingest is one transaction per flush: lock the watermark row (KEY SHARE), COPY the readings, record the
batches, note intervals that were already closed. The COPY goes straight into ``meter_data`` (binary,
numpy-built); only when it meets a row that is already there (a redelivery) is the transaction's COPY
rolled back to a savepoint and redone through a staging table with ``on conflict do nothing``, so
redelivered readings change nothing and first deliveries pay no merge.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import numpy as np
import psycopg
from psycopg import AsyncConnection, sql
from psycopg.types.json import Jsonb

from gridsim_aggregator.domain import COLUMNS, SUM_FIELDS, Readings, ThermalState, Totals
from gridsim_aggregator.topology import GridNode, MeterRow, NodeRollup
from gridsim_shared.copy_binary import encode_readings, timestamps_us
from gridsim_shared.events import GridEvent

__all__ = [
    "BatchReceipt",
    "PendingInterval",
    "State",
    "insert_readings",
    "load_topology_rows",
]

Conn = AsyncConnection[Any]
_DATA_COLUMNS = "ts, meter_id, " + ", ".join(COLUMNS)


@dataclass(frozen=True)
class State:
    """The aggregator_state row."""

    committed_until: datetime | None
    rolled_until: datetime | None
    readings_committed: int


@dataclass(frozen=True)
class BatchReceipt:
    """What one committed batch adds to its transformer's interval."""

    ts: datetime
    transformer_code: str
    first_meter_id: int
    totals: Totals  # one group
    sent_at: datetime | None = None  # when meter-sim sent it (wall clock): the SLA latency's start


@dataclass(frozen=True)
class PendingInterval:
    """An interval with committed batches that is not closed yet."""

    ts: datetime
    transformers: frozenset[str]
    idle_s: float  # since its latest batch was committed


# ------------------------------------------------------------------------------------ ingest


async def _state(conn: Conn, lock: Literal["", "for key share", "for update"] = "") -> State:
    cur = await conn.execute(
        f"select committed_until, rolled_until, readings_committed from aggregator_state {lock}"
    )
    row = await cur.fetchone()
    assert row is not None
    return State(*row)


async def lock_state_shared(conn: Conn) -> State:
    """The watermark row, locked against a concurrent close until this transaction ends."""
    return await _state(conn, "for key share")


async def insert_readings(conn: Conn, payload: bytes) -> set[tuple[datetime, int]] | None:
    """COPY readings (a binary COPY stream of meter_data's columns).

    None when every reading was new; otherwise the ``(ts, meter_id)`` of the readings stored now (the
    others were stored before), so the caller counts only those into the rollup receipts.
    """
    try:
        async with conn.transaction():
            async with conn.cursor().copy(
                f"copy meter_data ({_DATA_COLUMNS}) from stdin (format binary)"
            ) as cp:
                await cp.write(payload)
        return None
    except psycopg.errors.UniqueViolation:
        pass
    await conn.execute(
        "create temp table if not exists meter_data_stage (like meter_data including defaults) "
        "on commit delete rows"
    )
    async with conn.cursor().copy(
        f"copy meter_data_stage ({_DATA_COLUMNS}) from stdin (format binary)"
    ) as cp:
        await cp.write(payload)
    cur = await conn.execute(
        f"insert into meter_data ({_DATA_COLUMNS}) select {_DATA_COLUMNS} from meter_data_stage "
        "on conflict (ts, meter_id) do nothing returning ts, meter_id"
    )
    inserted = {(row[0], int(row[1])) for row in await cur.fetchall()}
    await conn.execute("truncate meter_data_stage")
    return inserted


def float_array(values: Iterable[float]) -> str:
    """A ``float8[]`` literal of ``values`` (a parameter cast with ``::float8[]``).

    ``repr`` of a float is the shortest text that reads back to the same double, so PostgreSQL stores the
    same bits; psycopg's list dumping, element by element in Python, cost ~3x as much (~5 % of the
    aggregator's CPU at 10k meters, py-spy: a flush's receipts and an interval's grid rollups).
    """
    return "{" + ",".join(map(repr, map(float, values))) + "}"


def readings_payload(batches: Sequence[Readings]) -> bytes:
    """One binary COPY stream for several batches."""
    ts = np.concatenate([np.full(len(b), timestamps_us(b.ts), dtype=np.int64) for b in batches])
    ids = np.concatenate([b.meter_id for b in batches])
    values = np.concatenate([b.values for b in batches])
    return encode_readings(ts, ids, values)


async def record_batches(conn: Conn, receipts: Sequence[BatchReceipt], instance: str) -> None:
    """Add the batches' receipts: each counts only the readings its transaction stored.

    A receipt of a key already recorded (the same interval republished with the same first meter,
    with readings that were not stored the first time) adds to it; so a transformer's interval sums
    every stored reading exactly once, however often and in whatever order it was published.
    """
    # One row per key: PostgreSQL refuses an upsert that touches a row twice in one statement.
    merged: dict[tuple[datetime, str, int], BatchReceipt] = {}
    for r in receipts:
        key = (r.ts, r.transformer_code, r.first_meter_id)
        merged[key] = r if key not in merged else _added(merged[key], r)
    receipts = list(merged.values())
    cols = {name: float_array(getattr(r.totals, name)[0] for r in receipts) for name in SUM_FIELDS}
    await conn.execute(
        "insert into ingest_batches (ts, transformer_code, first_meter_id, readings, producers, "
        + ", ".join(SUM_FIELDS)
        + ", sent_at, instance) select *, %s from unnest(%s::timestamptz[], %s::text[], %s::bigint[], %s::int[], "
        "%s::int[], " + ", ".join(["%s::float8[]"] * len(SUM_FIELDS)) + ", %s::timestamptz[]) "
        "on conflict (ts, transformer_code, first_meter_id) do update set "
        "readings = ingest_batches.readings + excluded.readings, "
        "producers = ingest_batches.producers + excluded.producers, "
        + ", ".join(f"{name} = ingest_batches.{name} + excluded.{name}" for name in SUM_FIELDS),
        (
            instance,
            [r.ts for r in receipts],
            [r.transformer_code for r in receipts],
            [r.first_meter_id for r in receipts],
            [int(r.totals.readings[0]) for r in receipts],
            [int(r.totals.producers[0]) for r in receipts],
            *cols.values(),
            [r.sent_at for r in receipts],
        ),
    )


def _added(a: BatchReceipt, b: BatchReceipt) -> BatchReceipt:
    """Two receipts of one key as one (the earlier send time kept)."""
    sent = [t for t in (a.sent_at, b.sent_at) if t is not None]
    return BatchReceipt(
        a.ts, a.transformer_code, a.first_meter_id, a.totals + b.totals, min(sent) if sent else None
    )


async def mark_late(conn: Conn, intervals: Sequence[datetime]) -> None:
    """Remember intervals that received readings after they were closed."""
    await conn.execute(
        "insert into late_intervals (ts) select unnest(%s::timestamptz[]) on conflict do nothing",
        (list(intervals),),
    )


async def set_progress(conn: Conn, instance: str, clock_until: datetime | None) -> None:
    """This instance's heartbeat and the latest clock interval whose readings it has committed."""
    await conn.execute(
        "insert into aggregator_instances (instance, flushed_clock_until, heartbeat_at) values (%s, %s, now()) "
        "on conflict (instance) do update set heartbeat_at = now(), flushed_clock_until = "
        "greatest(aggregator_instances.flushed_clock_until, excluded.flushed_clock_until)",
        (instance, clock_until),
    )


# ------------------------------------------------------------------------------------ closing


async def lock_state(conn: Conn) -> State:
    """The watermark row, locked for the closer's transaction (ingest of any interval waits for it)."""
    return await _state(conn, "for update")


async def record_expected(conn: Conn, expected: dict[tuple[datetime, str], tuple[int, int]]) -> None:
    """What each shard says it published per interval: ``(ts, shard) → (batches, readings)``.

    A republished interval (a meter-sim restart, another world) may announce other counts: the larger is
    kept, so a loss is never hidden by a smaller announcement.
    """
    if not expected:
        return
    keys = sorted(expected)
    await conn.execute(
        "insert into ingest_expected (ts, shard, batches, readings) "
        "select * from unnest(%s::timestamptz[], %s::text[], %s::int[], %s::int[]) "
        "on conflict (ts, shard) do update set batches = greatest(ingest_expected.batches, excluded.batches), "
        "readings = greatest(ingest_expected.readings, excluded.readings) "
        "where excluded.batches > ingest_expected.batches or excluded.readings > ingest_expected.readings",
        (
            [k[0] for k in keys],
            [k[1] for k in keys],
            [expected[k][0] for k in keys],
            [expected[k][1] for k in keys],
        ),
    )


async def record_gap(conn: Conn, ts: datetime, stored: int) -> tuple[int, int] | None:
    """Compare interval ``ts``'s stored readings with what its shards published; keep the gap in
    ``ingest_gaps`` (removed once late readings fill it). ``(expected, stored)`` when readings are
    missing, None when none are (or no producer announced its counts)."""
    cur = await conn.execute("select sum(readings) from ingest_expected where ts = %s", (ts,))
    row = await cur.fetchone()
    if row is None or row[0] is None or stored >= int(row[0]):
        await conn.execute("delete from ingest_gaps where ts = %s", (ts,))
        return None
    expected = int(row[0])
    await conn.execute(
        "insert into ingest_gaps (ts, expected, stored) values (%s, %s, %s) "
        "on conflict (ts) do update set expected = excluded.expected, stored = excluded.stored",
        (ts, expected, stored),
    )
    return expected, stored


async def gap_totals(conn: Conn) -> tuple[int, int]:
    """Intervals with readings missing, and the readings missing in all."""
    cur = await conn.execute("select count(*), coalesce(sum(expected - stored), 0) from ingest_gaps")
    row = await cur.fetchone()
    return (0, 0) if row is None else (int(row[0]), int(row[1]))


async def read_state(conn: Conn) -> State:
    """The watermark row, unlocked."""
    return await _state(conn)


async def pending_intervals(conn: Conn, after: datetime | None, limit: int = 2000) -> list[PendingInterval]:
    """Intervals after ``after`` that have committed batches, oldest first."""
    cur = await conn.execute(
        "select ts, array_agg(distinct transformer_code), extract(epoch from now() - max(committed_at)) "
        "from ingest_batches where %s::timestamptz is null or ts > %s group by ts order by ts limit %s",
        (after, after, limit),
    )
    return [PendingInterval(ts, frozenset(codes), float(idle)) for ts, codes, idle in await cur.fetchall()]


async def live_clock_progress(conn: Conn, live_s: float) -> datetime | None:
    """The clock interval every live instance has committed through (None if one has not reported)."""
    cur = await conn.execute(
        "select bool_and(flushed_clock_until is not null), min(flushed_clock_until) from aggregator_instances "
        "where heartbeat_at > now() - make_interval(secs => %s)",
        (live_s,),
    )
    row = await cur.fetchone()
    if row is None or not row[0]:
        return None
    value: datetime | None = row[1]
    return value


async def batch_totals(conn: Conn, ts: datetime) -> tuple[dict[str, Totals], int]:
    """Each transformer's sums for interval ``ts`` (chunks added up) and the readings committed."""
    cur = await conn.execute(
        "select transformer_code, sum(readings), sum(producers), "
        + ", ".join(f"sum({c})" for c in SUM_FIELDS)
        + " from ingest_batches where ts = %s group by transformer_code",
        (ts,),
    )
    out: dict[str, Totals] = {}
    total = 0
    for code, readings, producers, *sums in await cur.fetchall():
        floats = {
            name: np.array([float(v)], dtype=np.float64) for name, v in zip(SUM_FIELDS, sums, strict=True)
        }
        out[code] = Totals(
            **floats,
            readings=np.array([int(readings)], dtype=np.int64),
            producers=np.array([int(producers)], dtype=np.int64),
        )
        total += int(readings)
    return out, total


async def leaf_readings(conn: Conn, ts: datetime, interval_s: int, leaves: np.ndarray) -> Readings:
    """Stored readings of ``leaves`` for interval ``ts``."""
    if len(leaves) == 0:
        return Readings(ts, interval_s, np.zeros(0, dtype=np.int64), np.zeros((0, len(COLUMNS))))
    cur = await conn.execute(
        f"select meter_id, {', '.join(COLUMNS)} from meter_data where ts = %s and meter_id = any(%s) "
        "and not is_parent",
        (ts, leaves.tolist()),
    )
    rows = await cur.fetchall()
    ids = np.array([r[0] for r in rows], dtype=np.int64)
    values = np.array([r[1:] for r in rows], dtype=np.float64)  # numpy reads None as NaN
    return Readings(ts, interval_s, ids, values.reshape(len(rows), len(COLUMNS)))


async def upsert_parents(
    conn: Conn, ts: datetime, ids: np.ndarray, values: np.ndarray, partial: np.ndarray
) -> None:
    """Store parent readings; a recomputed interval replaces the earlier (partial) aggregate."""
    if len(ids) == 0:
        return
    cols = [[None if np.isnan(v) else float(v) for v in values[:, j]] for j in range(len(COLUMNS))]
    await conn.execute(
        f"insert into meter_data ({_DATA_COLUMNS}, is_parent, partial) "
        f"select %s::timestamptz, id, {', '.join(COLUMNS)}, true, p from unnest(%s::bigint[], "
        + ", ".join(["%s::float8[]"] * len(COLUMNS))
        + f", %s::bool[]) as u(id, {', '.join(COLUMNS)}, p) "
        "on conflict (ts, meter_id) do update set "
        + ", ".join(f"{c} = excluded.{c}" for c in COLUMNS)
        + ", is_parent = true, partial = excluded.partial",
        (ts, ids.tolist(), *cols, partial.tolist()),
    )


async def upsert_grid(conn: Conn, ts: datetime, rollups: Sequence[NodeRollup], hot: dict[int, float]) -> None:
    """Store grid rollups of interval ``ts`` (replacing a recomputed one), in one statement."""
    if not rollups:
        return

    def col(name: str) -> str:
        return float_array(getattr(r.totals, name)[0] for r in rollups)

    await conn.execute(
        "insert into grid_rollups (ts, node_id, level, consumption_kwh, production_kwh, consumption_kvah, "
        "production_kvah, kvarh, apparent_kva, capacity_kva, loading_pct, hot_spot_c, meters_expected, "
        "meters_reporting, partial) select %s::timestamptz, * from unnest(%s::bigint[], %s::text[], "
        "%s::float8[], %s::float8[], %s::float8[], %s::float8[], %s::float8[], %s::float8[], %s::float8[], "
        "%s::float8[], %s::float8[], %s::int[], %s::int[], %s::bool[]) "
        "on conflict (ts, node_id) do update set consumption_kwh = excluded.consumption_kwh, "
        "production_kwh = excluded.production_kwh, consumption_kvah = excluded.consumption_kvah, "
        "production_kvah = excluded.production_kvah, kvarh = excluded.kvarh, "
        "apparent_kva = excluded.apparent_kva, loading_pct = excluded.loading_pct, "
        "hot_spot_c = coalesce(excluded.hot_spot_c, grid_rollups.hot_spot_c), "
        "meters_expected = excluded.meters_expected, meters_reporting = excluded.meters_reporting, "
        "partial = excluded.partial",
        (
            ts,
            [r.node.id for r in rollups],
            [r.node.level for r in rollups],
            col("consumption_kwh"),
            col("production_kwh"),
            col("consumption_kvah"),
            col("production_kvah"),
            col("kvarh"),
            [r.apparent_kva for r in rollups],
            [r.node.capacity_kva for r in rollups],
            [r.loading_pct for r in rollups],
            [hot.get(r.node.id) for r in rollups],
            [r.meters_expected for r in rollups],
            [r.meters_reporting for r in rollups],
            [r.partial for r in rollups],
        ),
    )


async def load_thermal(conn: Conn) -> dict[int, tuple[datetime, ThermalState]]:
    """Every transformer's last thermal state."""
    cur = await conn.execute(
        "select node_id, ts, top_oil_rise_c, hot_spot_gradient_c, overloaded, loss_of_life_h, overload_h,"
        " aging_factor from transformer_thermal"
    )
    return {row[0]: (row[1], ThermalState(*row[2:])) for row in await cur.fetchall()}


async def save_thermal(conn: Conn, ts: datetime, states: dict[int, ThermalState]) -> None:
    """Store transformers' thermal states after interval ``ts``, in one statement."""
    if not states:
        return
    items = list(states.items())
    await conn.execute(
        "insert into transformer_thermal (node_id, ts, top_oil_rise_c, hot_spot_gradient_c, overloaded,"
        " loss_of_life_h, overload_h, aging_factor) "
        "select n, %s, o, h, v, l, x, f from unnest(%s::bigint[], %s::float8[], %s::float8[], %s::bool[],"
        " %s::float8[], %s::float8[], %s::float8[]) as u(n, o, h, v, l, x, f) "
        "on conflict (node_id) do update set ts = excluded.ts, "
        "top_oil_rise_c = excluded.top_oil_rise_c, hot_spot_gradient_c = excluded.hot_spot_gradient_c, "
        "overloaded = excluded.overloaded, loss_of_life_h = excluded.loss_of_life_h, "
        "overload_h = excluded.overload_h, aging_factor = excluded.aging_factor",
        (
            ts,
            [n for n, _ in items],
            [s.top_oil_rise_c for _, s in items],
            [s.hot_spot_gradient_c for _, s in items],
            [s.overloaded for _, s in items],
            [s.loss_of_life_h for _, s in items],
            [s.overload_h for _, s in items],
            [s.aging_factor for _, s in items],
        ),
    )


async def insert_events(conn: Conn, events: Sequence[GridEvent]) -> None:
    """Store grid events."""
    if not events:
        return
    await conn.cursor().executemany(
        "insert into aggregator_events (type, severity, sim_time, subject, message, data) values (%s, %s, %s, %s, %s, %s)",
        [(e.type, e.severity, e.timestamp, e.subject, e.message, Jsonb(e.details())) for e in events],
    )


async def advance(conn: Conn, ts: datetime, readings: int) -> None:
    """Move the watermark to ``ts``."""
    await conn.execute(
        "update aggregator_state set committed_until = greatest(committed_until, %s), "
        "readings_committed = readings_committed + %s, updated_at = now()",
        (ts, readings),
    )


async def late_intervals(conn: Conn, settled_s: float = 0.0) -> list[datetime]:
    """Intervals to recompute (each leaves the list in the transaction that recomputes it): those none of whose
    batches was committed in the last ``settled_s`` seconds."""
    cur = await conn.execute(
        "select l.ts from late_intervals l where not exists (select from ingest_batches b where b.ts = l.ts"
        " and b.committed_at > now() - make_interval(secs => %s)) order by l.ts",
        (settled_s,),
    )
    return [row[0] for row in await cur.fetchall()]


async def forget_late(conn: Conn, ts: datetime) -> None:
    """``ts`` is recomputed: off the list, in the recomputing transaction (a recompute cut short keeps it)."""
    await conn.execute("delete from late_intervals where ts = %s", (ts,))


# ------------------------------------------------------------------------------------ time rollups

_METER_SUMS = (
    "consumption_kwh, production_kwh, consumption_kvah, production_kvah, kvarh, voltage_sum, current_max, "
    "readings"
)
_GRID_SUMS = (
    "consumption_kwh, production_kwh, consumption_kvah, production_kvah, kvarh, peak_kva, peak_at, intervals"
)
_ORIGIN = "timestamptz '2000-01-01 00:00:00+00'"
# The finest time rollup (meter_data_15m, grid_rollups_15m): windows of 15 minutes from _ORIGIN, the
# '15 minutes' of _METER_WINDOWS and _GRID_WINDOWS below.
ROLLUP_WINDOW = timedelta(minutes=15)


def _replace(table: str, columns: str) -> str:
    sets = ", ".join(f"{c.strip()} = excluded.{c.strip()}" for c in columns.split(","))
    key = "meter_id" if table.startswith("meter") else "node_id"
    return f"on conflict ({key}, bucket) do update set {sets}"


# A 15-minute window's sums from the rows of [start, end): meters from their minutes, grid nodes from their
# per-interval rollups (columns in _METER_SUMS / _GRID_SUMS order, after the key and the bucket).
_METER_WINDOWS = (
    f"select meter_id, date_bin('15 minutes', ts, {_ORIGIN}) as bucket, "
    "coalesce(sum(consumption_kwh), 0) as consumption_kwh, coalesce(sum(production_kwh), 0) as production_kwh, "
    "coalesce(sum(consumption_kvah), 0) as consumption_kvah, "
    "coalesce(sum(production_kvah), 0) as production_kvah, coalesce(sum(reactive_power_kvar), 0) as kvarh, "
    "sum(avg_voltage) as voltage_sum, max(avg_current) as current_max, count(*)::int as readings "
    "from meter_data where ts >= %s and ts < %s group by 1, 2"
)
_GRID_WINDOWS = (
    f"select node_id, date_bin('15 minutes', ts, {_ORIGIN}) as bucket, sum(consumption_kwh) as consumption_kwh, "
    "sum(production_kwh) as production_kwh, sum(consumption_kvah) as consumption_kvah, "
    "sum(production_kvah) as production_kvah, sum(kvarh) as kvarh, max(apparent_kva) as peak_kva, "
    "(array_agg(ts order by apparent_kva desc, ts))[1] as peak_at, count(*)::int as intervals "
    "from grid_rollups where ts >= %s and ts < %s group by 1, 2"
)


async def roll_minutes(conn: Conn, start: datetime, end: datetime) -> None:
    """15-minute rollups of meters and grid nodes for windows in [start, end), recomputed from the rows."""
    await conn.execute(
        f"insert into meter_data_15m (meter_id, bucket, {_METER_SUMS}) {_METER_WINDOWS} "
        + _replace("meter_data_15m", _METER_SUMS),
        (start, end),
    )
    await conn.execute(
        f"insert into grid_rollups_15m (node_id, bucket, {_GRID_SUMS}) {_GRID_WINDOWS} "
        + _replace("grid_rollups_15m", _GRID_SUMS),
        (start, end),
    )


def _add(table: str, columns: str) -> str:
    """Upsert clause adding a rollup's new windows into an existing coarser bucket (sums add, maxima
    keep the larger; a tie keeps the earlier peak, which is the one already stored)."""
    sets = []
    for c in (c.strip() for c in columns.split(",")):
        if c in ("current_max", "peak_kva"):
            sets.append(f"{c} = greatest({table}.{c}, excluded.{c})")
        elif c == "peak_at":
            sets.append(
                f"{c} = case when excluded.peak_kva > {table}.peak_kva then excluded.{c} else {table}.{c} end"
            )
        else:
            sets.append(f"{c} = {table}.{c} + excluded.{c}")
    key = "meter_id" if table.startswith("meter") else "node_id"
    return f"on conflict ({key}, bucket) do update set {', '.join(sets)}"


def _meter_buckets(width: str, source: str) -> str:
    """Meter rollups of ``width`` over the finer rollup rows of ``source`` (ungrouped: the caller filters)."""
    return (
        f"select meter_id, date_bin('{width}', bucket, {_ORIGIN}), sum(consumption_kwh), sum(production_kwh), "
        "sum(consumption_kvah), sum(production_kvah), sum(kvarh), sum(voltage_sum), max(current_max), "
        f"sum(readings) from {source}"
    )


def _grid_buckets(width: str, source: str) -> str:
    """Grid rollups of ``width`` over the finer rollup rows of ``source`` (ungrouped: the caller filters)."""
    return (
        f"select node_id, date_bin('{width}', bucket, {_ORIGIN}), sum(consumption_kwh), sum(production_kwh), "
        "sum(consumption_kvah), sum(production_kvah), sum(kvarh), max(peak_kva), "
        f"(array_agg(peak_at order by peak_kva desc, peak_at))[1], sum(intervals) from {source}"
    )


async def roll_new_windows(conn: Conn, start: datetime, end: datetime) -> None:
    """15-minute rollups of windows in [start, end) that were never rolled, added into their hours and days.

    A window at a time, one statement per table family: the window's per-meter sums are computed once from
    the minutes, inserted as 15-minute rows and *added* to the hour and day rows (which hold every earlier
    window of their bucket). Exact because a window is rolled once: ``rolled_until`` advances in the same
    transaction, and a window rolled before is only ever recomputed by :func:`roll_minutes` /
    :func:`roll_coarser` (late readings), never added again. Reading the coarser tables back (a scan of
    every stored bucket, as they are keyed by meter first) is what this avoids.

    Why a window at a time: a meter has one row per window, which falls in exactly one hour and one day, so
    the sums go into the coarser tables as they are (no second grouping), and in key order (``order by``
    the meter): each upsert finds its index page where the previous one left off instead of at a random
    place in the index. Measured at 1,000,000 meters with 15-minute readings (shared PostgreSQL 15): a
    window's roll 20 s -> 12 s.
    """
    window = start
    while window < end:
        bounds = (window, window + ROLLUP_WINDOW)
        await conn.execute(_ROLL_METER_WINDOW, bounds)
        await conn.execute(_ROLL_GRID_WINDOW, bounds)
        window += ROLLUP_WINDOW


def _roll_window(family: str, key: str, windows: str, sums: str) -> str:
    """The statement rolling one window of ``family`` (``meter_data`` or ``grid_rollups``, keyed by ``key``):
    its sums from ``windows`` stored as ``*_15m`` rows and added into ``*_1h`` and ``*_1d``."""
    return (
        f"with w as ({windows} order by 1), "
        f"q as (insert into {family}_15m ({key}, bucket, {sums}) select * from w "
        + _replace(f"{family}_15m", sums)
        + "), "
        + ", ".join(
            f"{name} as (insert into {family}_{target} ({key}, bucket, {sums}) "
            f"select {key}, date_bin('{width}', bucket, {_ORIGIN}), {sums} from w "
            + _add(f"{family}_{target}", sums)
            + ")"
            for name, target, width in (("h", "1h", "1 hour"), ("d", "1d", "1 day"))
        )
        + " select 1"
    )


_ROLL_METER_WINDOW = _roll_window("meter_data", "meter_id", _METER_WINDOWS, _METER_SUMS)
_ROLL_GRID_WINDOW = _roll_window("grid_rollups", "node_id", _GRID_WINDOWS, _GRID_SUMS)


async def roll_coarser(
    conn: Conn, *, source: str, target: str, width: str, start: datetime, end: datetime
) -> None:
    """Rollups of ``width`` over buckets of ``source`` in [start, end) (e.g. 15m → 1h, 1h → 1d)."""
    await conn.execute(
        f"insert into meter_data_{target} (meter_id, bucket, {_METER_SUMS}) "
        f"{_meter_buckets(width, f'meter_data_{source}')} where bucket >= %s and bucket < %s group by 1, 2 "
        + _replace(f"meter_data_{target}", _METER_SUMS),
        (start, end),
    )
    await conn.execute(
        f"insert into grid_rollups_{target} (node_id, bucket, {_GRID_SUMS}) "
        f"{_grid_buckets(width, f'grid_rollups_{source}')} where bucket >= %s and bucket < %s group by 1, 2 "
        + _replace(f"grid_rollups_{target}", _GRID_SUMS),
        (start, end),
    )


async def lock_rolled(conn: Conn) -> datetime | None:
    """``rolled_until``, locked against another roll (not against ingest, which takes KEY SHARE)."""
    cur = await conn.execute("select rolled_until from aggregator_state for no key update")
    row = await cur.fetchone()
    assert row is not None
    value: datetime | None = row[0]
    return value


async def set_rolled(conn: Conn, until: datetime) -> None:
    """Record that 15-minute windows before ``until`` are rolled up."""
    await conn.execute(
        "update aggregator_state set rolled_until = greatest(rolled_until, %s), updated_at = now()", (until,)
    )


# Pages per range of meter_data's BRIN index on ts (migration 0240; plain PostgreSQL only). The index is
# summarized and desummarized through functions that run as its owner (migration 1040): PostgreSQL lets
# only the owner do either, and the aggregator connects as its own role.
_TS_BRIN_PAGES = 32


async def summarize_new_ranges(conn: Conn) -> bool:
    """Summarize the page ranges of ``meter_data`` that its BRIN index on ts does not cover yet (the rows
    written since the last call, and ranges retention emptied); False when the lock was not free.

    An unsummarized range matches every time query, so without this each window's roll would read every
    page written since the last (auto)vacuum. It takes SHARE UPDATE EXCLUSIVE on the table, which COPY's
    ROW EXCLUSIVE does not conflict with; a vacuum holds it (and summarizes too): then this is skipped
    rather than waited for, and the next roll tries again.
    """
    try:
        async with conn.transaction():
            await conn.execute("set local lock_timeout = '100ms'")
            await conn.execute("select meter_data_brin_summarize()")
    except psycopg.errors.LockNotAvailable:
        return False
    return True


async def apply_retention(conn: Conn, before: datetime) -> int:
    """Drop raw minute readings (and per-interval grid rows and receipts) older than ``before``.

    The BRIN ranges that held the deleted readings are desummarized: their pages are reused by later
    readings, and a range keeps its old min/max until summarized afresh (a range summarized as spanning a
    month ago to now matches every window's roll). :func:`summarize_new_ranges` summarizes them again.
    """
    cur = await conn.execute(
        "with gone as (delete from meter_data where ts < %s returning ctid), "
        "ranges as (select distinct (ctid::text::point)[0]::bigint / %s * %s as block from gone) "
        "select (select count(*) from gone), "
        "(select count(meter_data_brin_desummarize(block)) from ranges)",
        (before, _TS_BRIN_PAGES, _TS_BRIN_PAGES),
    )
    row = await cur.fetchone()
    deleted = int(row[0]) if row else 0
    await conn.execute("delete from grid_rollups where ts < %s", (before,))
    await conn.execute("delete from ingest_batches where ts < %s", (before,))
    await conn.execute("delete from ingest_expected where ts < %s", (before,))
    return deleted


# ------------------------------------------------------------------------------------ TimescaleDB

# The continuous aggregates behind the rollup views (migration 0201), finest first: each feeds the next.
_CONTINUOUS = (
    ("meter_data_15m_agg", "grid_rollups_15m_agg"),
    ("meter_data_1h_agg", "grid_rollups_1h_agg"),
    ("meter_data_1d_agg", "grid_rollups_1d_agg"),
)
# What is compressed at simulated midnight: the raw hypertables and the 15-minute aggregates.
_COMPRESSED = ("meter_data", "grid_rollups", "meter_data_15m_agg", "grid_rollups_15m_agg")


async def timescale_enabled(conn: Conn) -> bool:
    """True when this deployment's ``meter_data`` (the one on the search path) is a TimescaleDB hypertable
    (migration 0201 applied)."""
    cur = await conn.execute("select exists (select 1 from pg_extension where extname = 'timescaledb')")
    row = await cur.fetchone()
    if row is None or not row[0]:
        return False  # the catalogue below does not exist without the extension
    cur = await conn.execute(
        "select exists (select 1 from timescaledb_information.hypertables h"
        " join pg_namespace n on n.nspname = h.hypertable_schema"
        " join pg_class c on c.relnamespace = n.oid and c.relname = h.hypertable_name"
        " where c.oid = to_regclass('meter_data'))"
    )
    row = await cur.fetchone()
    return bool(row and row[0])


async def refresh_timescale(
    conn: Conn,
    start: datetime,
    end: datetime,
    hours: tuple[datetime, datetime],
    days: tuple[datetime, datetime],
) -> None:
    """Refresh the continuous aggregates over closed windows, finest first (each feeds the next).

    ``refresh_continuous_aggregate`` refuses to run in a transaction block: autocommit for its calls, so
    ``conn`` must be idle (no transaction open, not even the implicit one a query outside ``transaction()``
    starts): psycopg cannot switch autocommit inside one.
    """
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        msg = f"refresh_timescale needs an idle connection, not {conn.info.transaction_status.name}"
        raise RuntimeError(msg)
    windows = ((start, end), hours, days)
    await conn.set_autocommit(True)
    try:
        for views, (lo, hi) in zip(_CONTINUOUS, windows, strict=True):
            for view in views:
                await conn.execute("call refresh_continuous_aggregate(%s, %s, %s)", (view, lo, hi))
    finally:
        await conn.set_autocommit(False)


async def refresh_all_timescale(conn: Conn) -> None:
    """Refresh every continuous aggregate over all time, e.g. after a world reset deleted the raw rows.

    Only the ranges TimescaleDB logged as changed are recomputed (a no-op when nothing changed); the
    aggregates otherwise keep buckets whose raw rows were deleted. Needs an idle connection, as
    :func:`refresh_timescale`.
    """
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        msg = f"refresh_all_timescale needs an idle connection, not {conn.info.transaction_status.name}"
        raise RuntimeError(msg)
    await conn.set_autocommit(True)
    try:
        for views in _CONTINUOUS:
            for view in views:
                await conn.execute("call refresh_continuous_aggregate(%s, null, null)", (view,))
    finally:
        await conn.set_autocommit(False)


async def timescale_housekeeping(
    conn: Conn, retention_before: datetime | None, compress_before: datetime | None
) -> None:
    """Retention and compression in simulated time (Timescale's policies follow the wall clock).

    Retention drops whole raw chunks (days) older than ``retention_before``; the rollups keep them, as on
    plain PostgreSQL (a continuous aggregate keeps what it materialized when its raw chunks go).
    Compression compresses the raw chunks and the 15-minute aggregates' chunks that end before
    ``compress_before``.
    """
    async with conn.transaction():
        if retention_before is not None:
            await conn.execute("select drop_chunks('meter_data', older_than => %s)", (retention_before,))
            await conn.execute("select drop_chunks('grid_rollups', older_than => %s)", (retention_before,))
            await conn.execute("delete from ingest_batches where ts < %s", (retention_before,))
            await conn.execute("delete from ingest_expected where ts < %s", (retention_before,))
        if compress_before is not None:
            for name in _COMPRESSED:
                await conn.execute(
                    "select compress_chunk(c, if_not_compressed => true) "
                    "from show_chunks(%s::regclass, older_than => %s) c",
                    (name, compress_before),
                )


# ------------------------------------------------------------------------------------ topology


async def load_topology_rows(conn: Conn, page: int = 100_000) -> tuple[list[GridNode], list[MeterRow]]:
    """Grid nodes (parents before children) and meters, the meters ``page`` rows a query: each page is parsed
    on the event loop, which ingests between pages (five million meters in one query held it ~13 s)."""
    cur = await conn.execute(
        "select n.id, n.code, n.level, n.parent_id, n.capacity_kva,"
        " coalesce(n.latitude, p.latitude, u.latitude), coalesce(n.longitude, p.longitude, u.longitude)"
        " from grid_nodes n left join grid_nodes p on p.id = n.parent_id left join grid_nodes u on u.id = p.parent_id"
        " order by "
        "case n.level when 'utility' then 0 when 'feeder' then 1 else 2 end, n.id"
    )
    nodes = [GridNode(*row) for row in await cur.fetchall()]
    meters: list[MeterRow] = []
    after = None
    while True:
        cur = await conn.execute(
            "select id, code, parent_id, transformer_id, status, load_factor_consumption, "
            "load_factor_production from meters where %s::bigint is null or id > %s order by id limit %s",
            (after, after, page),
        )
        rows = await cur.fetchall()
        meters.extend(MeterRow(*row) for row in rows)
        if len(rows) < page:
            return nodes, meters
        after = rows[-1][0]


async def transformer_places(conn: Conn) -> dict[str, tuple[float | None, float | None]]:
    """Each transformer's code → its place (its own, else its feeder's, else its utility's coordinates)."""
    # Only the nodes: the meters (a row each, 10k and more) are not needed for places.
    cur = await conn.execute(
        "select n.code, coalesce(n.latitude, p.latitude, u.latitude), coalesce(n.longitude, p.longitude, u.longitude)"
        " from grid_nodes n left join grid_nodes p on p.id = n.parent_id left join grid_nodes u on u.id = p.parent_id"
        " where n.level = 'transformer'"
    )
    return {code: (lat, lon) for code, lat, lon in await cur.fetchall()}


def day_floor(ts: datetime) -> datetime:
    """Midnight UTC of ``ts``."""
    return ts.replace(hour=0, minute=0, second=0, microsecond=0)


def hour_floor(ts: datetime) -> datetime:
    """The hour of ``ts``."""
    return ts.replace(minute=0, second=0, microsecond=0)


ONE_DAY = timedelta(days=1)


async def insert_dead_letter(conn: Conn, service: str, topic: str, reason: str, payload: bytes) -> None:
    """Set a message aside that could not be used (docs/operations.md, "Dead letters")."""
    await conn.execute(
        "insert into dead_letters (service, topic, reason, payload) values (%s, %s, %s, %s)",
        (service, topic, reason[:2000], payload),
    )


# ------------------------------------------------------------------ world reset (issue 13)
# The aggregator's tables that hold data of one world: readings, their rollups, what ingest and the closer
# keep per interval, and the transformers' thermal state. On TimescaleDB the rollup names are views over
# continuous aggregates (the closer refreshes them after a reset) and over the `*_history` tables.
WORLD_TABLES = (
    "meter_data",
    "meter_data_15m",
    "meter_data_1h",
    "meter_data_1d",
    "grid_rollups",
    "grid_rollups_15m",
    "grid_rollups_1h",
    "grid_rollups_1d",
    "meter_data_15m_history",
    "meter_data_1h_history",
    "meter_data_1d_history",
    "grid_rollups_15m_history",
    "grid_rollups_1h_history",
    "grid_rollups_1d_history",
    "ingest_batches",
    "ingest_expected",
    "ingest_gaps",
    "late_intervals",
    "transformer_thermal",
)


async def meter_sim_world_generation(conn: Conn) -> int:
    """meter-sim's world generation (its published ``world_state``; 0 before any reset)."""
    cur = await conn.execute("select generation from world_state")
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def forget_world(conn: Conn, generation: int) -> dict[str, int] | None:
    """Empty :data:`WORLD_TABLES` for world ``generation`` in the caller's transaction; the rows deleted
    per table, or None when this generation (or a later one) was handled already."""
    cur = await conn.execute("select world_generation from aggregator_state for update")
    row = await cur.fetchone()
    if row is not None and int(row[0]) >= generation:
        return None
    deleted: dict[str, int] = {}
    for table in WORLD_TABLES:
        cur = await conn.execute("select relkind::text from pg_class where oid = to_regclass(%s)", (table,))
        kind = await cur.fetchone()
        if kind is not None and kind[0] in {"r", "p"}:
            cur = await conn.execute(sql.SQL("delete from {}").format(sql.Identifier(table)))
            deleted[table] = cur.rowcount
    await conn.execute("update aggregator_state set world_generation = %s, updated_at = now()", (generation,))
    return deleted
