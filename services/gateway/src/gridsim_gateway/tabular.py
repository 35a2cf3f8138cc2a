"""CSV and Parquet exports of readings and grid rollups: one column schema, streamed with bounded memory.

CSV is PostgreSQL's own ``COPY (select …) TO STDOUT`` passed through chunk by chunk. Parquet reads the same
select through a server-side cursor in batches of :data:`BATCH_ROWS` rows and writes each batch as one
row group, yielding the bytes written so far; neither ever holds the whole export.

The columns (names, units, types) are defined once here: the CSV header, the Parquet schema and the
documentation (docs/data-out.md) all come from :data:`READING_COLUMNS` and :data:`ROLLUP_COLUMNS`. Values
are those of ``GET /meter/stream`` and ``GET /rollups/{node}`` for the same rows.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

__all__ = [
    "BATCH_ROWS",
    "CSV_CHUNK_BYTES",
    "READING_COLUMNS",
    "ROLLUP_COLUMNS",
    "Column",
    "Format",
    "Query",
    "column_table",
    "reading_query",
    "rollup_query",
    "stream_csv",
    "stream_parquet",
]

Format = Literal["csv", "parquet"]
BATCH_ROWS = 16_384  # rows per Parquet row group; a batch of Python rows is a few MB
CSV_CHUNK_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class Column:
    """One exported column: its name (also the JSON field), Arrow type, unit and meaning."""

    name: str
    type: pa.DataType
    unit: str
    description: str
    sql: str  # the select expression (over the aliases of the query's from clause)


_TS = pa.timestamp("us", tz="UTC")

READING_COLUMNS: tuple[Column, ...] = (
    Column("timestamp", _TS, "UTC", "start of the interval or bucket (simulated time)", "t.ts"),
    Column("meter_id", pa.int64(), "", "the meter's id", "t.meter_id"),
    Column("meter_code", pa.string(), "", "the meter's code", "m.code"),
    Column("interval_s", pa.int32(), "s", "length of the interval or bucket", "%(width)s::int"),
    Column("consumption_kWh", pa.float64(), "kWh", "energy drawn in the interval", "t.cons"),
    Column("production_kWh", pa.float64(), "kWh", "energy exported in the interval (prosumers)", "t.prod"),
    Column("consumption_kVAh", pa.float64(), "kVAh", "apparent energy drawn", "t.cons_va"),
    Column("production_kVAh", pa.float64(), "kVAh", "apparent energy exported", "t.prod_va"),
    Column("avg_current", pa.float64(), "A", "mean current (buckets: mean S over mean V)", "t.current"),
    Column("avg_voltage", pa.float64(), "V", "mean voltage", "t.volts"),
    Column("reactive_power_kVAR", pa.float64(), "kVAR (raw) / kVARh (buckets)", "reactive power", "t.kvar"),
    Column("power_factor", pa.float64(), "", "kWh / kVAh", "t.pf"),
    Column("is_parent", pa.bool_(), "", "an aggregate of child meters", "(t.is_parent or p.id is not null)"),
    Column("partial", pa.bool_(), "", "some readings of the interval were missing", "t.partial"),
    Column("readings", pa.int32(), "", "raw readings in the row", "t.n"),
)

ROLLUP_COLUMNS: tuple[Column, ...] = (
    Column("timestamp", _TS, "UTC", "start of the interval or bucket (simulated time)", "t.ts"),
    Column("node_id", pa.int64(), "", "the grid node's id", "t.node_id"),
    Column("node_code", pa.string(), "", "the grid node's code", "g.code"),
    Column("level", pa.string(), "", "transformer, feeder or utility", "g.level"),
    Column("interval_s", pa.int32(), "s", "length of the interval or bucket", "%(width)s::int"),
    Column("consumption_kWh", pa.float64(), "kWh", "energy drawn by the node's meters", "t.cons"),
    Column("production_kWh", pa.float64(), "kWh", "energy exported by them", "t.prod"),
    Column("net_kWh", pa.float64(), "kWh", "consumption − production", "t.cons - t.prod"),
    Column("peak_kVA", pa.float64(), "kVA", "highest interval mean apparent power (coincident)", "t.peak"),
    Column("peak_at", _TS, "UTC", "when the peak was", "t.peak_at"),
    Column("capacity_kVA", pa.float64(), "kVA", "the node's rating", "g.capacity_kva"),
    Column(
        "peak_loading_pct",
        pa.float64(),
        "%",
        "peak over rating",
        "case when g.capacity_kva > 0 then 100 * t.peak / g.capacity_kva end",
    ),
    Column("intervals", pa.int32(), "", "intervals in the row", "t.n"),
)

# Raw readings and time buckets as the same row shape.
_RAW_READINGS = """
    select ts, meter_id, consumption_kwh as cons, production_kwh as prod, consumption_kvah as cons_va,
           production_kvah as prod_va, avg_current as current, avg_voltage as volts,
           reactive_power_kvar as kvar, power_factor as pf, is_parent, partial, 1 as n
    from meter_data
"""
# Buckets from the aggregator's published views (migration 0230), whose voltage, current and power factor
# are the owner's formulas, the same GET /meter/stream reads.
_BUCKET_READINGS = """
    select bucket as ts, meter_id, consumption_kwh as cons, production_kwh as prod,
           consumption_kvah as cons_va, production_kvah as prod_va, avg_current as current,
           avg_voltage as volts, kvarh as kvar, power_factor as pf,
           false as is_parent, false as partial, readings as n
    from {table}
"""
_RAW_ROLLUPS = """
    select ts, node_id, consumption_kwh as cons, production_kwh as prod, apparent_kva as peak,
           ts as peak_at, 1 as n
    from grid_rollups
"""
_BUCKET_ROLLUPS = """
    select bucket as ts, node_id, consumption_kwh as cons, production_kwh as prod, peak_kva as peak,
           peak_at, intervals as n
    from {table}
"""


@dataclass(frozen=True, slots=True)
class Query:
    """A composed select and its parameters, with the columns it yields."""

    statement: sql.Composed
    params: dict[str, Any]
    columns: tuple[Column, ...]


def _select(columns: Sequence[Column]) -> sql.Composable:
    return sql.SQL(", ").join(
        sql.SQL("{} as {}").format(sql.SQL(c.sql), sql.Identifier(c.name)) for c in columns
    )


def reading_query(
    *, meter_ids: list[int] | None, start: datetime, end: datetime, resolution: str, width_s: int
) -> Query:
    """Readings of ``meter_ids`` (None: every meter) with start in [start, end), by time then meter."""
    inner = (
        sql.SQL(_RAW_READINGS)
        if resolution == "raw"
        else sql.SQL(_BUCKET_READINGS).format(table=sql.Identifier(f"meter_readings_{resolution}"))
    )
    time_col = sql.Identifier("ts" if resolution == "raw" else "bucket")
    where = sql.SQL(" where {t} >= %(start)s and {t} < %(end)s").format(t=time_col)
    if meter_ids is not None:
        where += sql.SQL(" and meter_id = any(%(ids)s)")
    statement = sql.SQL(
        "select {cols} from ({inner}{where}) t join meters m on m.id = t.meter_id"
        " left join (select distinct parent_id as id from meters where parent_id is not null) p"
        " on p.id = t.meter_id order by t.ts, t.meter_id"
    ).format(cols=_select(READING_COLUMNS), inner=inner, where=where)
    params = {"start": start, "end": end, "ids": meter_ids, "width": width_s}
    return Query(statement, params, READING_COLUMNS)


def rollup_query(
    *, node_ids: list[int] | None, start: datetime, end: datetime, resolution: str, width_s: int
) -> Query:
    """Rollups of ``node_ids`` (None: every node) with start in [start, end), by time then node."""
    inner = (
        sql.SQL(_RAW_ROLLUPS)
        if resolution == "raw"
        else sql.SQL(_BUCKET_ROLLUPS).format(table=sql.Identifier(f"grid_rollups_{resolution}"))
    )
    time_col = sql.Identifier("ts" if resolution == "raw" else "bucket")
    where = sql.SQL(" where {t} >= %(start)s and {t} < %(end)s").format(t=time_col)
    if node_ids is not None:
        where += sql.SQL(" and node_id = any(%(ids)s)")
    statement = sql.SQL(
        "select {cols} from ({inner}{where}) t join grid_nodes g on g.id = t.node_id order by t.ts, t.node_id"
    ).format(cols=_select(ROLLUP_COLUMNS), inner=inner, where=where)
    params = {"start": start, "end": end, "ids": node_ids, "width": width_s}
    return Query(statement, params, ROLLUP_COLUMNS)


def _csv_select(query: Query) -> sql.Composed:
    # CSV timestamps in the JSON API's form (ISO 8601, Z); other values as PostgreSQL prints them
    # (float8 in its shortest exact form, so a float read back is the stored float).
    outer = [
        sql.SQL("to_char({c} at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') as {c}").format(
            c=sql.Identifier(c.name)
        )
        if c.type == _TS
        else sql.Identifier(c.name)
        for c in query.columns
    ]
    return sql.SQL("copy (select {cols} from ({q}) e) to stdout with (format csv, header true)").format(
        cols=sql.SQL(", ").join(outer), q=query.statement
    )


async def stream_csv(pool: AsyncConnectionPool, query: Query) -> AsyncIterator[bytes]:
    """The query's rows as CSV with a header row, as PostgreSQL's COPY sends them."""
    # PostgreSQL sends one COPY message per row: gather them into chunks of about 64 KiB, or every row
    # would be its own write down the HTTP response.
    buffer = bytearray()
    async with pool.connection() as conn, conn.cursor() as cur:
        async with cur.copy(_csv_select(query), query.params) as copy:
            async for row in copy:
                buffer += row
                if len(buffer) >= CSV_CHUNK_BYTES:
                    yield bytes(buffer)
                    buffer.clear()
    if buffer:
        yield bytes(buffer)


class _Sink:
    """A write-only file for pyarrow that hands over what was written since the last ``take``."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._position = 0
        self.closed = False

    def write(self, data: bytes | memoryview) -> int:
        chunk = bytes(data)
        self._parts.append(chunk)
        self._position += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self._position

    def flush(self) -> None:
        return None

    def close(self) -> None:
        self.closed = True

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


def schema_of(columns: Sequence[Column]) -> pa.Schema:
    """The Arrow schema of ``columns``, each field carrying its unit and meaning as metadata."""
    return pa.schema(
        [pa.field(c.name, c.type, metadata={"unit": c.unit, "description": c.description}) for c in columns]
    )


async def stream_parquet(
    pool: AsyncConnectionPool, query: Query, *, batch_rows: int = BATCH_ROWS
) -> AsyncIterator[bytes]:
    """The query's rows as a Parquet file (zstd), one row group per ``batch_rows`` rows, streamed."""
    schema = schema_of(query.columns)
    sink = _Sink()
    writer = pq.ParquetWriter(sink, schema, compression="zstd")
    try:
        async with pool.connection() as conn, conn.transaction():
            # A named (server-side) cursor: PostgreSQL keeps the result, we fetch a batch at a time.
            async with conn.cursor(name="gridsim_export") as cur:
                await cur.execute(query.statement, query.params)
                while rows := await cur.fetchmany(batch_rows):
                    columns = list(zip(*rows, strict=True))
                    arrays = [
                        pa.array(col, type=c.type) for col, c in zip(columns, query.columns, strict=True)
                    ]
                    writer.write_batch(pa.RecordBatch.from_arrays(arrays, schema=schema))
                    del rows, columns, arrays
                    if data := sink.take():
                        yield data
    finally:
        writer.close()
    yield sink.take()


def column_table(columns: Sequence[Column]) -> str:
    """The Markdown table of ``columns`` that docs/data-out.md shows (a test keeps the two equal)."""
    lines = ["| column | type | unit | meaning |", "|---|---|---|---|"]
    lines += [f"| `{c.name}` | {c.type} | {c.unit} | {c.description} |" for c in columns]
    return "\n".join(lines)
