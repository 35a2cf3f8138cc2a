"""meter-sim commands of grid health (issue 18, docs/grid-health.md): outages and their restoration,
remote disconnect and reconnect, the on-demand read, feeder switching, IEEE 1366 reliability indices, and
the overload trip (a ``transformer_trip`` event from the aggregator takes the transformer off supply).

Each change runs in one transaction, is logged in ``control_log`` at the simulated time it takes effect,
and shows from the next interval. Over MQTT they are ``{base}/v1/cmd/meter-sim/<operation>``.
"""

from __future__ import annotations

import logging
import math
from datetime import UTC, datetime, timedelta

import numpy as np
import numpy.typing as npt

from gridsim_meter_sim import control_repository, meter_repository, outage_repository, reliability
from gridsim_meter_sim.grid_health import meter_event
from gridsim_meter_sim.handlers import Deps, running_engine, sim_now
from gridsim_meter_sim.supply import RepairTime
from gridsim_shared import channels
from gridsim_shared.bus import Router
from gridsim_shared.commands import meter_sim
from gridsim_shared.errors import ConflictError, GridsimError, NotFoundError
from gridsim_shared.events import GridEvent, SupplyKind, TransformerTripEvent
from gridsim_shared.ids import slug
from gridsim_shared.schemas import health as schemas
from gridsim_shared.topics import EventPath, MeterEventPath

__all__ = ["on_transformer_trip", "router"]

_LOGGER = logging.getLogger(__name__)

router: Router[Deps] = Router()


def _supply_changed(deps: Deps) -> None:
    if deps.engine is not None:
        deps.engine.supply_changed()


def _repair(deps: Deps) -> RepairTime:
    h = deps.settings.health
    return RepairTime(median_s=h.repair_median_min * 60.0, sigma=h.repair_sigma)


# ------------------------------------------------------------------------------------------ outages


@router.handles(meter_sim.CREATE_OUTAGE)
async def create_outage(body: schemas.OutageCreate, deps: Deps) -> schemas.Outage:
    """Take a transformer, feeder section or feeder off supply (a fault, or a planned outage)."""
    async with deps.pool.connection() as conn, conn.transaction():
        now = await sim_now(deps, conn)
        outage = await outage_repository.create_outage(
            conn,
            body.scope,
            body.target,
            body.transformers,
            body.cause,
            body.start or now,
            body.duration_s,
            body.message,
            seed=deps.settings.sim.seed,
            repair=_repair(deps),
        )
        params = body.model_dump(mode="json", exclude_none=True) | {"planned_end": str(outage.planned_end)}
        await control_repository.log(conn, now, f"outage.{body.cause}", {"outage_id": outage.id}, params, [])
    _supply_changed(deps)
    return outage


@router.handles(meter_sim.RESTORE_OUTAGE)
async def restore_outage(body: schemas.OutageRefRequest, deps: Deps) -> schemas.Outage:
    """Restore supply now (an operator's command); 409 when the outage is not in effect."""
    async with deps.pool.connection() as conn, conn.transaction():
        now = await sim_now(deps, conn)
        outage = await outage_repository.restore_outage(conn, body.outage_id, now)
        await control_repository.log(conn, now, "outage.restore", {"outage_id": outage.id}, {}, [])
    _supply_changed(deps)
    return outage


@router.handles(meter_sim.GET_OUTAGE)
async def get_outage(body: schemas.OutageRefRequest, deps: Deps) -> schemas.Outage:
    """One outage."""
    async with deps.pool.connection() as conn:
        return await outage_repository.get_outage(conn, body.outage_id)


@router.handles(meter_sim.LIST_OUTAGES)
async def list_outages(body: schemas.OutageListRequest, deps: Deps) -> list[schemas.Outage]:
    """Outages, newest first."""
    async with deps.pool.connection() as conn:
        return await outage_repository.list_outages(conn, body, await sim_now(deps, conn))


async def on_transformer_trip(deps: Deps, msg: GridEvent, _path: EventPath) -> None:
    """A transformer's hot spot passed the trip limit: its protection opens (an ``overload_trip`` outage)."""
    if not isinstance(msg, TransformerTripEvent):  # the subscription is to transformer_trip only
        _LOGGER.warning("%s event on the transformer_trip subscription: %s", msg.type, msg.subject)
        return
    node_id = msg.data.node_id
    try:
        async with deps.pool.connection() as conn, conn.transaction():
            if await outage_repository.open_outage_of(conn, node_id) is not None:
                return  # already out
            now = await sim_now(deps, conn)
            outage = await outage_repository.create_outage(
                conn,
                "transformer",
                node_id,
                None,
                "overload_trip",
                now,
                None,
                msg.message,
                seed=deps.settings.sim.seed,
                repair=_repair(deps),
            )
            await control_repository.log(
                conn,
                now,
                "outage.overload_trip",
                {"outage_id": outage.id},
                {"hot_spot_c": msg.data.hot_spot_c},
                [],
            )
    except GridsimError:
        _LOGGER.exception("could not trip transformer %s", msg.subject)
        return
    _supply_changed(deps)


# ------------------------------------------------------------------ remote disconnect and reconnect


async def _switch(body: schemas.DisconnectRequest, deps: Deps, *, disconnect: bool) -> schemas.SupplyResult:
    kind: SupplyKind = "disconnected" if disconnect else "reconnected"
    async with deps.pool.connection() as conn:
        async with conn.transaction():
            now = await sim_now(deps, conn)
            found = await meter_repository.resolve_meter(conn, body.meter, field="meter", lock=True)
            row = await conn.execute("select disconnected from meters where id = %s", (found["id"],))
            current = await row.fetchone()
            assert current is not None
            if bool(current[0]) == disconnect:
                msg = f"meter {found['code']} is already {kind}"
                raise ConflictError(msg, field="meter")
            await outage_repository.set_disconnected(conn, found["id"], disconnect)
            params = {"reason": body.reason} if body.reason else {}
            log_id = await control_repository.log(
                conn, now, f"meter.{kind[:-2]}", {"meter_id": found["id"]}, params, [found["id"]]
            )
            event = meter_event(kind, found["code"], found["id"], now, params)
            await control_repository.insert_event(conn, event)
            places = await control_repository.meter_places(conn, [found["id"]])
        _supply_changed(deps)
        place = places.get(found["id"])
        try:
            if place is not None and place["transformer"] and place["feeder"] and place["utility"]:
                path = MeterEventPath(
                    kind, place["utility"], place["feeder"], place["transformer"], slug(found["code"])
                )
                await deps.bus.publish(channels.METER_EVENT, event, path)
            else:
                await deps.bus.publish(channels.EVENT, event, EventPath(kind, slug(found["code"])))
        except Exception:  # the event is stored; a broker hiccup must not fail the command
            _LOGGER.exception("could not publish the %s event of meter %s", kind, found["code"])
    return schemas.SupplyResult(
        meter_id=found["id"], meter_code=found["code"], disconnected=disconnect, sim_time=now, log_id=log_id
    )


@router.handles(meter_sim.DISCONNECT)
async def disconnect(body: schemas.DisconnectRequest, deps: Deps) -> schemas.SupplyResult:
    """Open a meter's service switch remotely: its readings show no voltage and no energy."""
    return await _switch(body, deps, disconnect=True)


@router.handles(meter_sim.RECONNECT)
async def reconnect(body: schemas.DisconnectRequest, deps: Deps) -> schemas.SupplyResult:
    """Close a meter's service switch again."""
    return await _switch(body, deps, disconnect=False)


# ---------------------------------------------------------------------------------- on-demand read


@router.handles(meter_sim.READ_METER)
async def read_meter(body: schemas.MeterReadRequest, deps: Deps) -> schemas.MeterRead:
    """The meter's registers and last interval at simulated now, from the engine's memory (no I/O but the lookup)."""
    engine = running_engine(deps)
    async with deps.pool.connection() as conn:
        found = await meter_repository.resolve_meter(conn, body.meter, field="meter")
        cur = await conn.execute("select disconnected from meters where id = %s", (found["id"],))
        flag = await cur.fetchone()
    health, clock = engine.health, engine.clock
    registers = health.registers
    row = registers.row(found["id"]) if registers is not None else None
    if registers is None or row is None or clock is None:
        msg = f"meter {found['code']} is not simulated (not linked to an energy resource, or a parent meter)"
        raise NotFoundError(msg, field="meter")
    last = (
        health.last
        if health.last is not None and len(health.last.active) == len(registers.meter_id)
        else None
    )
    supplied = True
    if last is not None and health.plan is not None:
        supplied = not health.plan.out_of_supply(row, last.timestamp, last.interval_s)

    def value(values: npt.NDArray[np.float64]) -> float | None:
        if last is None or not bool(last.active[row]):
            return None
        v = float(values[row])
        return None if math.isnan(v) else round(v, 6)  # NaN: a consumer's production

    return schemas.MeterRead(
        meter_id=found["id"],
        meter_code=found["code"],
        sim_time=clock.current,
        import_kWh=round(float(registers.import_kwh[row]), 6),
        export_kWh=round(float(registers.export_kwh[row]), 6),
        import_kVARh=round(float(registers.import_kvarh[row]), 6),
        supplied=supplied,
        disconnected=bool(flag[0]) if flag else False,
        last_interval=last.timestamp if last is not None else None,
        avg_voltage=value(last.voltage) if last is not None else None,
        avg_current=value(last.current) if last is not None else None,
        consumption_kWh=value(last.consumption_kwh) if last is not None else None,
        production_kWh=value(last.production_kwh) if last is not None else None,
    )


# ------------------------------------------------------------------------------- feeder switching


@router.handles(meter_sim.SWITCH_TRANSFORMER)
async def switch_transformer(body: schemas.FeederSwitch, deps: Deps) -> schemas.FeederSwitchResult:
    """Move a transformer to another feeder of its utility; rollups follow from the next interval."""
    async with deps.pool.connection() as conn, conn.transaction():
        now = await sim_now(deps, conn)
        t, before, after = await outage_repository.switch_transformer(conn, body.transformer, body.feeder)
        meters = await outage_repository.count_meters(conn, t["id"])
        params = {"from": before, "to": after} | ({"reason": body.reason} if body.reason else {})
        log_id = await control_repository.log(
            conn, now, "grid.switch", {"transformer": t["code"]}, params, []
        )
    deps.on_world_changed()
    return schemas.FeederSwitchResult(
        transformer_code=t["code"],
        from_feeder=before,
        to_feeder=after,
        meters=meters,
        sim_time=now,
        log_id=log_id,
    )


# --------------------------------------------------------------------------------- IEEE 1366 indices


@router.handles(meter_sim.RELIABILITY)
async def reliability_indices(
    body: schemas.ReliabilityRequest, deps: Deps
) -> list[schemas.ReliabilityIndices]:
    """SAIFI, SAIDI, CAIDI and MAIFI per feeder for a month, from the outage records."""
    year, month = (int(x) for x in body.month.split("-"))
    since = datetime(year, month, 1, tzinfo=UTC)
    until = (since + timedelta(days=32)).replace(day=1)
    async with deps.pool.connection() as conn:
        now = await sim_now(deps, conn)
        feeders = await outage_repository.feeder_outages(conn, body.feeder, since, until, now)
    out = []
    for code, served, interruptions in feeders:
        ix = reliability.indices(served, interruptions)
        out.append(
            schemas.ReliabilityIndices(
                feeder_code=code,
                month=body.month,
                customers_served=ix.customers_served,
                sustained_interruptions=ix.sustained,
                momentary_interruptions=ix.momentary,
                customers_interrupted=ix.customers_interrupted,
                customer_minutes=round(ix.customer_minutes, 6),
                SAIFI=round(ix.saifi, 6),
                SAIDI=round(ix.saidi, 6),
                CAIDI=round(ix.caidi, 6) if ix.caidi is not None else None,
                MAIFI=round(ix.maifi, 6),
            )
        )
    return out
