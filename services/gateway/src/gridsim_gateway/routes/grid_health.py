"""Grid health (docs/grid-health.md): outages and restoration, remote disconnect and reconnect, the
on-demand read, feeder switching and IEEE 1366 indices (meter-sim's), transformer health (IEEE C57.91)
and the monthly service-level report (the aggregator's).

Each route validates with the shared schema and sends the same body as an MQTT command to the owning
service (``{base}/v1/cmd/<service>/<operation>``), so an agent can do the same without HTTP.
"""

from __future__ import annotations

import csv
import io
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import ValidationError

from gridsim_gateway.deps import BusDep
from gridsim_shared.commands import aggregator, meter_sim
from gridsim_shared.schemas.health import (
    DisconnectRequest,
    FeederSwitch,
    FeederSwitchResult,
    MeterRead,
    Month,
    Outage,
    OutageCreate,
    OutageListRequest,
    ReliabilityIndices,
    ReliabilityRequest,
    SlaReport,
    SupplyResult,
    TransformerHealth,
    TransformerHealthRequest,
)
from gridsim_shared.schemas.meters import GridRef

router = APIRouter(tags=["grid health"])


OutageId = Annotated[int, Path(ge=1, le=2**63 - 1, description="the outage's id")]
MeterRefPath = Annotated[str, Path(description="the meter's integer id or its code")]


# ------------------------------------------------------------------------------------------ outages


@router.post("/outages", status_code=status.HTTP_201_CREATED)
async def create_outage(body: OutageCreate, bus: BusDep) -> Outage:
    """Take a `transformer`, a feeder `section` (the listed `transformers` of feeder `target`) or a whole
    `feeder` off supply from the next interval (or `start`): its meters send a `last_gasp` event and then
    readings of 0 V and no energy. A `fault` lasts until `POST /outages/{id}/restore` or a seeded
    log-normal repair time (`duration_s` overrides it); a `planned` outage needs `start` and `duration_s`.
    Each meter sends `power_restored` when supply returns."""
    return await bus.call(meter_sim.CREATE_OUTAGE, body)


@router.get("/outages")
async def list_outages(query: Annotated[OutageListRequest, Query()], bus: BusDep) -> list[Outage]:
    """Outages, newest first (by feeder; `open=true`: not yet restored)."""
    return await bus.call(meter_sim.LIST_OUTAGES, query)


@router.get("/outages/{outage_id}")
async def get_outage(outage_id: OutageId, bus: BusDep) -> Outage:
    """One outage: what it took off supply, how many customers, when it started and was restored."""
    return await bus.call(meter_sim.GET_OUTAGE, meter_sim.GET_OUTAGE.build(outage_id=outage_id))


@router.post("/outages/{outage_id}/restore")
async def restore_outage(outage_id: OutageId, bus: BusDep) -> Outage:
    """Restore supply now (an operator's command). 409 when the outage is already restored or has not
    started."""
    return await bus.call(meter_sim.RESTORE_OUTAGE, meter_sim.RESTORE_OUTAGE.build(outage_id=outage_id))


@router.get("/reliability")
async def reliability(query: Annotated[ReliabilityRequest, Query()], bus: BusDep) -> list[ReliabilityIndices]:
    """IEEE 1366 indices per feeder for a `month` (YYYY-MM): SAIFI, SAIDI, CAIDI from sustained
    interruptions (over 5 minutes), MAIFI from momentary ones, over the customers (meters) served."""
    return await bus.call(meter_sim.RELIABILITY, query)


# --------------------------------------------------------------- two-way communication with a meter


def _switch_request(meter: str, reason: str | None) -> DisconnectRequest:
    """The command from the path and query; a meter reference or reason out of shape is a 422 naming it
    (built here, not by FastAPI, so its checks would otherwise surface as a 500)."""
    try:
        return DisconnectRequest(meter=meter, reason=reason)
    except ValidationError as exc:
        where = {"meter": "path", "reason": "query"}
        raise RequestValidationError(
            [{**e, "loc": (where.get(str(e["loc"][0]), "query"), *e["loc"])} for e in exc.errors()]
        ) from exc


@router.post("/meter/{meter}/disconnect")
async def disconnect(meter: MeterRefPath, bus: BusDep, reason: str | None = None) -> SupplyResult:
    """Open the meter's service switch remotely (409 if it is open): from the next interval its readings
    show 0 V and no energy; a `disconnected` meter event is published."""
    body = _switch_request(meter, reason)
    return await bus.call(meter_sim.DISCONNECT, body)


@router.post("/meter/{meter}/reconnect")
async def reconnect(meter: MeterRefPath, bus: BusDep, reason: str | None = None) -> SupplyResult:
    """Close the meter's service switch again (409 if it is closed); a `reconnected` event follows."""
    body = _switch_request(meter, reason)
    return await bus.call(meter_sim.RECONNECT, body)


@router.get("/meter/{meter}/read")
async def read_meter(meter: MeterRefPath, bus: BusDep) -> MeterRead:
    """On-demand read: the meter's cumulative registers (kWh imported and exported, kVARh) and its last
    interval at simulated now, answered from meter-sim's memory (also `cmd/meter-sim/read_meter`)."""
    return await bus.call(meter_sim.READ_METER, meter_sim.READ_METER.build(meter=meter))


# ------------------------------------------------------------------------------- feeder switching


@router.post("/grid/switch")
async def switch_transformer(body: FeederSwitch, bus: BusDep) -> FeederSwitchResult:
    """Move a transformer (with its meters) to another feeder of the same utility (logged as
    `grid.switch`). Rollups, forecasts and feasibility follow from the next interval."""
    return await bus.call(meter_sim.SWITCH_TRANSFORMER, body)


# ------------------------------------------------------------------ transformer health, service levels


@router.get("/grid/transformers/health")
async def transformer_health(
    query: Annotated[TransformerHealthRequest, Query()], bus: BusDep
) -> list[TransformerHealth]:
    """Each transformer's insulation aging per IEEE C57.91 (hot spot, aging factor F_AA, loss of life in
    hours and as a share of the 180,000 h normal life), hours overloaded and a 0-100 health index."""
    return await bus.call(aggregator.TRANSFORMER_HEALTH, query)


@router.get("/sla/{feeder}", response_model=SlaReport)
async def sla_report(
    feeder: Annotated[GridRef, Path(description="the feeder's id or code")],
    month: Annotated[Month, Query(description="YYYY-MM")],
    bus: BusDep,
    format: Annotated[Literal["json", "csv"], Query(description="json (default) or csv")] = "json",
) -> SlaReport | Response:
    """A feeder's monthly service levels: data completeness (readings stored / expected), voltage
    compliance (share of readings inside the band) and latency from a reading leaving meter-sim to its
    durable storage (p50, p95, max), with the thresholds from settings and the ones breached. CSV: one row
    per meter."""
    report = await bus.call(aggregator.SLA_REPORT, aggregator.SLA_REPORT.build(feeder=feeder, month=month))
    if format == "json":
        return report
    out = io.StringIO()
    rows = report.csv_rows()
    fields = [
        "feeder_code",
        "month",
        "meter_id",
        "meter_code",
        "readings",
        "expected",
        "completeness",
        "voltage_compliance",
    ]
    writer = csv.DictWriter(out, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    return Response(
        out.getvalue(),
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="sla-{report.feeder_code}-{month}.csv"'},
    )
