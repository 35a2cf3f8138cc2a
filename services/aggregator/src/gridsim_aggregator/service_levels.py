"""The aggregator's grid-health commands: transformer health (IEEE C57.91 aging, aging.py) and the monthly
service-level report of a feeder, with an ``sla_breach`` event for each threshold a closed month misses
(docs/grid-health.md). The aggregator owns the readings, their receipts and the thermal state these come
from; it reads the grid and the meters (meter-sim's) to know which meters a feeder serves.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from gridsim_aggregator import aging
from gridsim_aggregator.domain import voltage_band
from gridsim_aggregator.settings import AggregatorSettings, Settings
from gridsim_shared import channels, topics
from gridsim_shared.bus import Bus, Router
from gridsim_shared.commands import aggregator
from gridsim_shared.errors import InvalidError, NotFoundError
from gridsim_shared.events import SlaBreachDetails, SlaBreachEvent
from gridsim_shared.ids import slug
from gridsim_shared.schemas.health import (
    SlaMeterRow,
    SlaReport,
    SlaRequest,
    TransformerHealth,
    TransformerHealthRequest,
)

__all__ = ["HealthDeps", "month_bounds", "report_month", "router", "sla_report", "thresholds_breached"]

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class HealthDeps:
    """What these commands need."""

    settings: Settings
    tuning: AggregatorSettings
    bus: Bus
    pool: AsyncConnectionPool


router: Router[HealthDeps] = Router()


def month_bounds(month: str) -> tuple[datetime, datetime]:
    """``YYYY-MM`` → [first instant, first instant of the next month) in UTC."""
    year, number = (int(x) for x in month.split("-"))
    since = datetime(year, number, 1, tzinfo=UTC)
    return since, (since + timedelta(days=32)).replace(day=1)


def thresholds_breached(report: SlaReport) -> list[str]:
    """The thresholds ``report`` misses (a figure with no data misses nothing)."""
    t = report.thresholds
    out = []
    if report.completeness is not None and report.completeness < t["completeness"]:
        out.append("completeness")
    if report.voltage_compliance is not None and report.voltage_compliance < t["voltage_compliance"]:
        out.append("voltage_compliance")
    if report.latency_p95_s is not None and report.latency_p95_s > t["latency_p95_s"]:
        out.append("latency_p95_s")
    return out


async def _fetch(conn: Any, query: str, params: Any = None) -> list[dict[str, Any]]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, params)
        return list(await cur.fetchall())


async def _feeder(conn: Any, ref: int | str) -> dict[str, Any]:
    by_id = isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit())
    rows = await _fetch(
        conn,
        "select n.id, n.code, n.level, coalesce(n.latitude, u.latitude) as latitude,"
        " coalesce(n.longitude, u.longitude) as longitude from grid_nodes n"
        " left join grid_nodes u on u.id = n.parent_id where "
        + ("n.id = %s" if by_id else "n.code = lower(%s)"),
        (int(ref) if by_id else ref,),
    )
    if not rows:
        msg = f"grid node {ref!r} not found"
        raise NotFoundError(msg, field="feeder")
    if rows[0]["level"] != "feeder":
        msg = f"feeder: {rows[0]['code']} is a {rows[0]['level']}, not a feeder"
        raise InvalidError(msg, field="feeder")
    return rows[0]


async def sla_report(
    pool: AsyncConnectionPool, settings: Settings, tuning: AggregatorSettings, body: SlaRequest
) -> SlaReport:
    """A feeder's service levels in a month, from the stored readings and batch receipts."""
    since, until = month_bounds(body.month)
    async with pool.connection() as conn:
        feeder = await _feeder(conn, body.feeder)
        band = voltage_band(
            feeder["latitude"],
            feeder["longitude"],
            tuning.voltage_low_v,
            tuning.voltage_high_v,
            tuning.voltage_range,
        )
        low, high = band.low_v, band.high_v
        meters = await _fetch(
            conn,
            "select m.id, m.code, t.code as transformer from meters m left join meters p on p.id = m.parent_id"
            " join grid_nodes t on t.id = coalesce(m.transformer_id, p.transformer_id) and t.parent_id = %s"
            " where m.er_id is not null and not exists (select 1 from meters c where c.parent_id = m.id)"
            " order by m.id",
            (feeder["id"],),
        )
        ids = [m["id"] for m in meters]
        intervals = (
            await _fetch(
                conn,
                "select count(*) as n from grid_rollups where node_id = %s and ts >= %s and ts < %s",
                (feeder["id"], since, until),
            )
        )[0]["n"]
        counts = {
            r["meter_id"]: r
            for r in await _fetch(
                conn,
                "select meter_id, count(*) as readings, count(*) filter (where avg_voltage > 0) as supplied,"
                " count(*) filter (where avg_voltage >= %s and avg_voltage <= %s) as in_band"
                " from meter_data where meter_id = any(%s) and ts >= %s and ts < %s and not is_parent"
                " group by meter_id",
                (low, high, ids, since, until),
            )
        }
        latency = (
            await _fetch(
                conn,
                "select percentile_cont(0.5) within group (order by s) as p50,"
                " percentile_cont(0.95) within group (order by s) as p95, max(s) as worst"
                " from (select extract(epoch from committed_at - sent_at)::float8 as s from ingest_batches"
                "  where transformer_code = any(%s) and ts >= %s and ts < %s and sent_at is not null) x",
                (sorted({m["transformer"] for m in meters}), since, until),
            )
        )[0]
    rows = []
    for m in meters:
        c = counts.get(m["id"], {"readings": 0, "supplied": 0, "in_band": 0})
        rows.append(
            SlaMeterRow(
                meter_id=m["id"],
                meter_code=m["code"],
                readings=c["readings"],
                expected=intervals,
                completeness=round(c["readings"] / intervals, 6) if intervals else 0.0,
                voltage_compliance=round(c["in_band"] / c["supplied"], 6) if c["supplied"] else None,
            )
        )
    readings = sum(r.readings for r in rows)
    expected = intervals * len(rows)
    supplied = sum(int(c["supplied"]) for c in counts.values())
    in_band = sum(int(c["in_band"]) for c in counts.values())

    def seconds(value: float | None) -> float | None:
        return None if value is None else round(max(0.0, float(value)), 3)

    h = settings.health
    report = SlaReport(
        feeder_code=feeder["code"],
        month=body.month,
        intervals=intervals,
        readings=readings,
        expected=expected,
        completeness=round(readings / expected, 6) if expected else None,
        voltage_low_v=low,
        voltage_high_v=high,
        voltage_compliance=round(in_band / supplied, 6) if supplied else None,
        latency_p50_s=seconds(latency["p50"]),
        latency_p95_s=seconds(latency["p95"]),
        latency_max_s=seconds(latency["worst"]),
        thresholds={
            "completeness": h.sla_completeness,
            "voltage_compliance": h.sla_voltage_compliance,
            "latency_p95_s": h.sla_latency_p95_s,
        },
        breaches=[],
        meters=rows,
    )
    return report.model_copy(update={"breaches": thresholds_breached(report)})


@router.handles(aggregator.SLA_REPORT)
async def sla_report_command(body: SlaRequest, deps: HealthDeps) -> SlaReport:
    """A feeder's monthly service levels (completeness, voltage compliance, latency) and breaches."""
    return await sla_report(deps.pool, deps.settings, deps.tuning, body)


async def report_month(deps: HealthDeps, month: str) -> list[SlaBreachEvent]:
    """After a month closes: an ``sla_breach`` event per feeder and threshold missed (stored, published,
    each once)."""
    async with deps.pool.connection() as conn:
        feeders = await _fetch(conn, "select code from grid_nodes where level = 'feeder' order by code")
    events = []
    for f in feeders:
        report = await sla_report(
            deps.pool, deps.settings, deps.tuning, SlaRequest(feeder=f["code"], month=month)
        )
        if not report.breaches:
            continue
        _, until = month_bounds(month)
        events.append(
            SlaBreachEvent(
                type="sla_breach",
                severity="warning",
                timestamp=until,
                subject=report.feeder_code,
                message=f"feeder {report.feeder_code} missed its {month} service levels: {', '.join(report.breaches)}",
                data=SlaBreachDetails(
                    month=month,
                    breaches=report.breaches,
                    completeness=report.completeness,
                    voltage_compliance=report.voltage_compliance,
                    latency_p95_s=report.latency_p95_s,
                    thresholds=report.thresholds,
                ),
            )
        )
    fresh = []
    async with deps.pool.connection() as conn, conn.transaction():
        for event in events:
            known = await _fetch(
                conn,
                "select 1 from events where type = 'sla_breach' and subject = %s and data->>'month' = %s",
                (event.subject, month),
            )
            if known:
                continue
            await conn.execute(
                "insert into aggregator_events (type, severity, sim_time, subject, message, data) values (%s, %s, %s, %s, %s, %s)",
                (
                    event.type,
                    event.severity,
                    event.timestamp,
                    event.subject,
                    event.message,
                    Jsonb(event.details()),
                ),
            )
            fresh.append(event)
    for event in fresh:
        await deps.bus.publish(channels.EVENT, event, topics.EventPath(event.type, slug(event.subject)))
    return fresh


@router.handles(aggregator.TRANSFORMER_HEALTH)
async def transformer_health(body: TransformerHealthRequest, deps: HealthDeps) -> list[TransformerHealth]:
    """Each transformer's insulation aging (IEEE C57.91), hours overloaded and health index."""
    async with deps.pool.connection() as conn:
        feeder_id = (await _feeder(conn, body.feeder))["id"] if body.feeder is not None else None
        rows = await _fetch(
            conn,
            "select t.id, t.code, f.code as feeder_code, th.ts, th.loss_of_life_h, th.overload_h,"
            " th.aging_factor, th.overloaded,"
            " (select r.hot_spot_c from grid_rollups r where r.node_id = t.id and r.ts = th.ts) as hot_spot_c"
            " from grid_nodes t join grid_nodes f on f.id = t.parent_id"
            " left join transformer_thermal th on th.node_id = t.id"
            " where t.level = 'transformer' and (%s::bigint is null or f.id = %s) order by t.code",
            (feeder_id, feeder_id),
        )
    out = []
    for r in rows:
        lol = float(r["loss_of_life_h"] or 0.0)
        overload = float(r["overload_h"] or 0.0)
        out.append(
            TransformerHealth(
                node_id=r["id"],
                transformer_code=r["code"],
                feeder_code=r["feeder_code"],
                as_of=r["ts"],
                hot_spot_c=r["hot_spot_c"],
                aging_factor=r["aging_factor"],
                loss_of_life_h=round(lol, 6),
                loss_of_life_pct=round(100.0 * lol / aging.NORMAL_LIFE_H, 6),
                overload_h=round(overload, 6),
                overloaded=bool(r["overloaded"]),
                health_index=aging.health_index(lol, overload),
            )
        )
    return out
