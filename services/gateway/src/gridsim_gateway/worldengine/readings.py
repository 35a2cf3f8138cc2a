"""gridsim's readings and transformer rollups as the World Engine's meter datasets and grid loads.

A meter dataset row is one of gridsim's stored readings (``meter_data``) in the World Engine's camelCase
fields; a grid-load row is one of the aggregator's transformer rollups (``grid_rollups``), with the mean
apparent power over the interval as ``current_transformer_load`` (kVA against ``max_capacity_KW``, which is
the transformer's kVA rating). Neither table has an integer id, so ids are made from the simulated time
and the meter (or transformer) id: unique, and ascending with time.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row

from gridsim_gateway.worldengine.entities import TRANSFORMER, iso
from gridsim_gateway.worldengine.sqlquery import load
from gridsim_gateway.worldengine.strapi import Populate

__all__ = [
    "DEFAULT_ROWS",
    "MAX_ROWS",
    "dataset_row",
    "grid_load_rows",
    "health",
    "latest_dataset",
    "meter_datasets",
    "row_id",
]

Conn = AsyncConnection[Any]

# The World Engine returned every row; gridsim stores a reading a simulated minute, so a list is capped.
DEFAULT_ROWS = 1000
MAX_ROWS = 10_000

_DATASET_COLUMNS = (
    "ts, meter_id, consumption_kwh, production_kwh, consumption_kvah, production_kvah, avg_current,"
    " avg_voltage, reactive_power_kvar, power_factor, is_parent, partial"
)


def row_id(ts: datetime, owner: int) -> int:
    """A row id from the simulated time (seconds) and the owner id: unique and ascending with time."""
    return int(ts.timestamp()) * 1_000_000 + owner % 1_000_000


def dataset_row(row: dict[str, Any]) -> dict[str, Any]:
    """A stored reading as a World Engine meter-dataset row."""
    stamp = iso(row["ts"])
    return {
        "id": row_id(row["ts"], row["meter_id"]),
        "consumptionKWh": row["consumption_kwh"] or 0.0,
        "productionKWh": row["production_kwh"] or 0.0,
        "consumptionKVAh": row["consumption_kvah"] or 0.0,
        "avgCurrent": row["avg_current"],
        "avgVoltage": row["avg_voltage"],
        "reactivePowerKVAR": row["reactive_power_kvar"] or 0.0,
        "powerFactor": row["power_factor"],
        "timestamp": stamp,
        # additive: gridsim's production kVAh, and whether the row sums child meters
        "productionKVAh": row["production_kvah"] or 0.0,
        "isParent": row["is_parent"],
        "partial": row["partial"],
        "createdAt": stamp,
        "updatedAt": stamp,
        "publishedAt": stamp,
    }


async def meter_datasets(
    conn: Conn, meter_id: int | None, limit: int, offset: int = 0
) -> list[dict[str, Any]]:
    """The latest ``limit`` readings (skipping ``offset`` newer ones) of one meter, or of all, oldest first."""
    where = "where meter_id = %s" if meter_id is not None else ""
    params: list[Any] = [meter_id] if meter_id is not None else []
    async with conn.cursor(row_factory=dict_row) as cur:
        if meter_id is None:
            # Every meter's newest readings: meter_data is keyed by meter and found by time through a BRIN
            # index (docs/data.md), so "newest first" over the whole table would sort all of it. The
            # transformer rollups (keyed by time) say from which interval on there are enough readings;
            # the rows before it cannot be among the newest limit + offset.
            bound = await _newest_bound(conn, limit + offset)
            if bound is not None:
                await cur.execute(
                    f"select {_DATASET_COLUMNS} from meter_data where ts >= %s"
                    " order by ts desc, meter_id desc limit %s offset %s",
                    [bound, limit, offset],
                )
                rows = await cur.fetchall()
                if len(rows) == limit:  # else the rollups counted more than is stored: ask it all
                    return [dataset_row(row) | {"meter_id": row["meter_id"]} for row in reversed(rows)]
        await cur.execute(
            f"select {_DATASET_COLUMNS} from meter_data {where}"
            " order by ts desc, meter_id desc limit %s offset %s",
            [*params, limit, offset],
        )
        rows = await cur.fetchall()
    return [dataset_row(row) | {"meter_id": row["meter_id"]} for row in reversed(rows)]


async def _newest_bound(conn: Conn, readings: int) -> datetime | None:
    """The interval from which on the aggregator's closed intervals count at least ``readings`` stored
    leaf readings (None when they count fewer: then every row may be needed). Reads the newest transformer
    rollups first (``grid_rollups``, published, keyed ``(ts, node_id)``; ``meters_reporting`` is the
    readings stored for the transformer's meters): 100 rollups (an interval of 10,000 meters) first, four
    times more each time. Intervals not closed yet only add rows after the bound."""
    rollups = 100
    for _ in range(7):
        cur = await conn.execute(
            "select ts, meters_reporting from grid_rollups where level = 'transformer'"
            " order by ts desc limit %s",
            (rollups,),
        )
        rows = await cur.fetchall()
        if sum(int(r[1]) for r in rows) >= readings:
            found: datetime = rows[-1][0]
            return found
        if len(rows) < rollups:
            return None
        rollups *= 4
    return None


async def latest_dataset(conn: Conn, meter_id: int) -> dict[str, Any] | None:
    """A meter's newest reading as a dataset row, or None."""
    rows = await meter_datasets(conn, meter_id, 1)
    return rows[0] if rows else None


def health(loading_pct: float | None) -> dict[str, Any]:
    """The stream's extra fields from the aggregator's loading (per cent of the transformer's rating, None
    without a rating): Normal ≤ 70 %, Warning ≤ 90 %, Critical above, the World Engine's bands; percentages
    to 2 dp. The loading itself is the aggregator's (``grid_rollups.loading_pct``), never recomputed here."""
    if loading_pct is None:
        return {"health_status": "Normal", "load_percentage": None, "margin_percentage": None}
    status = "Normal" if loading_pct <= 70 else "Warning" if loading_pct <= 90 else "Critical"
    return {
        "health_status": status,
        "load_percentage": round(loading_pct, 2),
        "margin_percentage": round(100 - loading_pct, 2),
    }


async def grid_load_rows(
    conn: Conn, *, transformer_id: int | None = None, limit: int = DEFAULT_ROWS, offset: int = 0
) -> list[dict[str, Any]]:
    """Transformer rollups as grid-load rows, newest first, each with its transformer and substation."""
    where = "where level = 'transformer'" + (" and node_id = %s" if transformer_id is not None else "")
    params: list[Any] = [transformer_id] if transformer_id is not None else []
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "select ts, node_id, apparent_kva, capacity_kva, loading_pct, consumption_kwh, production_kwh,"
            f" partial from grid_rollups {where} order by ts desc, node_id limit %s offset %s",
            [*params, limit, offset],
        )
        rows = await cur.fetchall()
    transformers = {
        t["id"]: t
        for t in await load(
            conn, TRANSFORMER, list(dict.fromkeys(r["node_id"] for r in rows)), Populate.parse("substation")
        )
    }
    result = []
    for row in rows:
        stamp = iso(row["ts"])
        result.append(
            {
                "id": row_id(row["ts"], row["node_id"]),
                "current_transformer_load": row["apparent_kva"],
                "timestamp": stamp,
                # additive: gridsim's loading in per cent of the rating, and the energies of the interval
                "loading_pct": row["loading_pct"],
                "consumptionKWh": row["consumption_kwh"],
                "productionKWh": row["production_kwh"],
                "createdAt": stamp,
                "updatedAt": stamp,
                "publishedAt": stamp,
                "transformer": transformers.get(row["node_id"]),
            }
        )
    return result
