"""meter-sim commands that drive the grid while it runs (issue 4, docs/controls.md): load factors by scope
(the seed's ``POST /meter/control``), spikes and generators, DERs with their lifecycle, meter events, and
the control and event logs.

Each command runs in one transaction, records what it changed in ``control_log`` at the simulated time
it takes effect (the start of the next interval), calls ``on_world_changed`` after commit so the change
shows from the next interval, and publishes the events it caused after commit. Over MQTT they are
``{base}/v1/cmd/meter-sim/<operation>`` with a reply, exactly what the gateway's HTTP routes send.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Literal

from gridsim_meter_sim import control_repository as repo
from gridsim_meter_sim import der_repository, meter_repository, worldengine_commands
from gridsim_meter_sim.handlers import Deps, sim_now
from gridsim_meter_sim.repository import Conn, catalogue, fetch_one, resolve_appliances
from gridsim_shared import channels
from gridsim_shared.bus import Router
from gridsim_shared.commands import meter_sim
from gridsim_shared.errors import InvalidError, NotFoundError
from gridsim_shared.events import (
    GridEvent,
    MeterIncidentDetails,
    MeterIncidentEvent,
    MeterStatusDetails,
    MeterStatusEvent,
    SpikeDetails,
    SpikeEvent,
)
from gridsim_shared.ids import slug
from gridsim_shared.schemas import controls as schemas
from gridsim_shared.schemas.meters import Appliance
from gridsim_shared.schemas.worldengine import DerCreate
from gridsim_shared.topics import EventPath, MeterEventPath

__all__ = ["router"]

MeterStatus = Literal["online", "offline", "tampered", "fault"]
Severity = Literal["info", "warning", "critical"]

_LOGGER = logging.getLogger(__name__)

router: Router[Deps] = Router()


async def _publish(deps: Deps, conn: Conn, events: Sequence[tuple[int, GridEvent]]) -> None:
    """Publish meter events on their meter-event topics (a meter hanging nowhere: the event topic)."""
    places = await repo.meter_places(conn, sorted({meter_id for meter_id, _ in events}))
    for meter_id, event in events:
        place = places.get(meter_id)
        try:
            if place is not None and place["transformer"] and place["feeder"] and place["utility"]:
                path = MeterEventPath(
                    event.type, place["utility"], place["feeder"], place["transformer"], slug(place["code"])
                )
                await deps.bus.publish(channels.METER_EVENT, event, path)
            else:
                await deps.bus.publish(channels.EVENT, event, EventPath(event.type, slug(event.subject)))
        except Exception:  # the event is stored; a broker hiccup must not fail the command
            _LOGGER.exception("could not publish %s event of meter %s", event.type, meter_id)


def _appliance_id(known: Sequence[Appliance], name: str, field: str) -> int:
    """A catalogue id for an appliance name or alias; a 422 naming ``field`` lists the catalogue."""
    try:
        return resolve_appliances(known, [name], [])[0][0]
    except InvalidError as exc:
        msg = f"{field}: {exc.message.partition(': ')[2]}"
        raise InvalidError(msg, field=field, details=exc.details) from exc


def _status_event(meter_id: int, code: str, online: bool, when: datetime, reason: str) -> GridEvent:
    state: Literal["online", "offline"] = "online" if online else "offline"
    return MeterStatusEvent(
        type="status",
        severity="info" if online else "warning",
        timestamp=when,
        subject=code,
        message=f"meter {code} is {state}: {reason}",
        data=MeterStatusDetails(meter_id=meter_id, state=state, reason=reason),
    )


# ------------------------------------------------------------------------------------ load factors


@router.handles(meter_sim.CONTROL)
async def control(body: schemas.ControlRequest, deps: Deps) -> schemas.ControlResult:
    """Set K on every meter matching all the given filters (meter, parent's descendants, appliance, pincode)."""
    async with deps.pool.connection() as conn:
        async with conn.transaction():
            now = await sim_now(deps, conn)
            meter = parent = appliance = None
            if body.meter_id is not None:
                meter = (await meter_repository.resolve_meter(conn, body.meter_id, field="meter_id"))["id"]
            if body.parent_meter_id is not None:
                found = await meter_repository.resolve_meter(
                    conn, body.parent_meter_id, field="parent_meter_id"
                )
                parent = found["id"]
            if body.appliance_type is not None:
                appliance = _appliance_id(await catalogue(conn), body.appliance_type, "appliance_type")
            rows = await repo.select_meters(
                conn, meter=meter, parent=parent, appliance=appliance, pincode=body.pincode
            )
            filters = body.model_dump(
                mode="json",
                include={"meter_id", "parent_meter_id", "appliance_type", "pincode"},
                exclude_none=True,
            )
            if not rows:
                msg = f"no meter matches {filters}"
                raise NotFoundError(msg, details={"filters": filters})
            ids = [row["id"] for row in rows]
            k_c = body.load_factor if body.log_type in ("consumption", "both") else None
            k_p = body.load_factor if body.log_type in ("production", "both") else None
            await repo.set_load_factors(conn, k_c, k_p, ids)
            went_offline: list[int] = []
            came_online: list[int] = []
            events: list[tuple[int, GridEvent]] = []
            for row in rows:
                was = repo.reporting(
                    row["status"],
                    row["er_type"],
                    row["load_factor_consumption"],
                    row["load_factor_production"],
                )
                now_reporting = repo.reporting(
                    row["status"],
                    row["er_type"],
                    row["load_factor_consumption"] if k_c is None else k_c,
                    row["load_factor_production"] if k_p is None else k_p,
                )
                if was != now_reporting:
                    (came_online if now_reporting else went_offline).append(row["id"])
                    reason = f"load factor ({body.log_type}) set to {body.load_factor:g}"
                    event = _status_event(row["id"], row["code"], now_reporting, now, reason)
                    await repo.insert_event(conn, event)
                    events.append((row["id"], event))
            log_id = await repo.log(
                conn,
                now,
                "control",
                filters,
                {"load_factor": body.load_factor, "log_type": body.log_type},
                ids,
            )
        deps.on_world_changed()
        await _publish(deps, conn, events)
    return schemas.ControlResult(
        meter_ids=ids,
        meter_codes=[row["code"] for row in rows],
        count=len(ids),
        load_factor=body.load_factor,
        log_type=body.log_type,
        sim_time=now,
        log_id=log_id,
        went_offline=went_offline,
        came_online=came_online,
    )


@router.handles(meter_sim.CONTROL_LOG)
async def control_log(body: schemas.ControlLogRequest, deps: Deps) -> list[schemas.ControlLogEntry]:
    """Every control change with its simulated time, oldest first (filter by meter, action, time)."""
    async with deps.pool.connection() as conn:
        return await repo.list_control_log(conn, body)


# ------------------------------------------------------------------------------------------ spikes


@router.handles(meter_sim.CREATE_SPIKE)
async def create_spike(body: schemas.SpikeCreate, deps: Deps) -> schemas.Spike:
    """Add a load or source spike, or a generator (a solar farm) at a transformer or feeder."""
    async with deps.pool.connection() as conn, conn.transaction():
        now = await sim_now(deps, conn)
        spike, target = await repo.create_spike(conn, body, now)
        params = body.model_dump(mode="json", exclude={"scope", "target"}, exclude_none=True)
        params["start"] = spike.start.isoformat()
        meters = spike.meter_ids if body.kind != "generator" else [spike.generator_meter_id or 0]
        await repo.log(conn, now, f"spike.{body.kind}", target, params, meters)
        places = await repo.meter_places(conn, meters)
        event = _spike_event(spike, [places[m]["code"] for m in meters if m in places])
        await repo.insert_event(conn, event)
    deps.on_world_changed()
    try:
        await deps.bus.publish(channels.EVENT, event, EventPath(event.type, slug(event.subject)))
    except Exception:  # the event is stored; a broker hiccup must not fail the command
        _LOGGER.exception("could not publish the event of spike %s", spike.id)
    return spike


def _spike_event(spike: schemas.Spike, meter_codes: list[str]) -> GridEvent:
    """The ``spike`` event: what changes, where, from when (dashboards mark it on the meters' charts)."""
    magnitude = f"x{spike.multiplier:g}" if spike.multiplier is not None else f"{spike.kw:g} kW"
    return SpikeEvent(
        type="spike",
        severity="info",
        timestamp=spike.start,
        subject=str(spike.target),
        message=f"{spike.kind} spike {magnitude} ({spike.shape}) on {spike.scope} {spike.target}"
        f" from {spike.start.isoformat()}" + (f" for {spike.duration_s} s" if spike.duration_s else ""),
        data=SpikeDetails(
            spike_id=spike.id,
            kind=spike.kind,
            scope=spike.scope,
            meter_ids=spike.meter_ids,
            meter_codes=meter_codes,
            duration_s=spike.duration_s,
        ),
    )


@router.handles(meter_sim.LIST_SPIKES)
async def list_spikes(body: schemas.SpikeListRequest, deps: Deps) -> list[schemas.Spike]:
    """Spikes, newest first; ``active``: only those not ended at the current simulated time."""
    async with deps.pool.connection() as conn:
        now = await sim_now(deps, conn)
        spikes = await repo.list_spikes(conn, body.limit)
    if body.active is None:
        return spikes
    return [s for s in spikes if (s.end is None or s.end > now) == body.active]


@router.handles(meter_sim.GET_SPIKE)
async def get_spike(body: schemas.SpikeRefRequest, deps: Deps) -> schemas.Spike:
    """One spike with the meters it covers."""
    async with deps.pool.connection() as conn:
        return await repo.get_spike(conn, body.spike_id)


@router.handles(meter_sim.DELETE_SPIKE)
async def delete_spike(body: schemas.SpikeRefRequest, deps: Deps) -> schemas.Spike:
    """End a spike now (a generator is decommissioned: its meter goes offline); idempotent."""
    async with deps.pool.connection() as conn, conn.transaction():
        now = await sim_now(deps, conn)
        spike = await repo.cancel_spike(conn, body.spike_id, now)
        await repo.log(
            conn, now, "spike.cancel", {"spike_id": spike.id}, {"kind": spike.kind}, spike.meter_ids
        )
    deps.on_world_changed()
    return spike


# -------------------------------------------------------------------------------------------- DERs


@router.handles(meter_sim.ADD_DER)
async def add_der(body: schemas.DerAdd, deps: Deps) -> schemas.DerInfo:
    """Add an appliance instance or solar panel to an ER (by catalogue id or name), at a lifecycle stage."""
    async with deps.pool.connection() as conn:
        known = await catalogue(conn)
    if isinstance(body.appliance, int):
        appliance_id = body.appliance
    else:
        appliance_id = _appliance_id(known, body.appliance, "appliance")
    switched_on = body.switched_on if body.switched_on is not None else body.lifecycle == "connected"
    if switched_on:
        name = next((a.name for a in known if a.id == appliance_id), str(appliance_id))
        der_repository.check_switch_on(0, name, body.lifecycle)
    create = DerCreate(
        er_id=body.er_id,
        appliance_id=appliance_id,
        quantity=body.quantity,
        switched_on=switched_on,
        lifecycle=body.lifecycle,
        capacity_kw=body.capacity_kw,
        tilt_deg=body.tilt_deg,
        azimuth_deg=body.azimuth_deg,
    )
    created = await worldengine_commands.create_der(create, deps)  # one transaction, logged
    async with deps.pool.connection() as conn, conn.transaction():
        # A connected solar panel on a consumer's ER: the ER becomes a prosumer (idempotent, so a
        # failure between the two transactions is repaired by the next lifecycle change).
        if await der_repository.promote_to_prosumer(conn, created.er_id):
            now = await sim_now(deps, conn)
            await repo.log(conn, now, "er.promote", {"er_id": created.er_id}, {"type": "prosumer"}, [])
            deps.on_world_changed()
        return await der_repository.get_der(conn, created.id)


@router.handles(meter_sim.UPDATE_DER)
async def update_der(body: schemas.DerPatch, deps: Deps) -> schemas.DerInfo:
    """Switch a DER, advance its lifecycle (purchased → installed → connected), or change its size."""
    async with deps.pool.connection() as conn, conn.transaction():
        now = await sim_now(deps, conn)
        before, after, changes = await der_repository.update_der(conn, body)
        if changes:
            meters = [after.meter_id] if after.meter_id is not None else []
            previous = {k: getattr(before, k) for k in changes if hasattr(before, k)}
            await repo.log(
                conn,
                now,
                "der.update",
                {"er_id": after.er_id, "der_id": after.id},
                {**changes, "previous": previous},
                meters,
            )
    if changes:
        deps.on_world_changed()
    return after


@router.handles(meter_sim.DELETE_DER)
async def delete_der(body: schemas.DerRefRequest, deps: Deps) -> schemas.DerDeleted:
    """Remove a DER from its ER; the waveform changes from the next interval."""
    async with deps.pool.connection() as conn, conn.transaction():
        now = await sim_now(deps, conn)
        der = await der_repository.delete_der(conn, body.der_id)
        meters = [der.meter_id] if der.meter_id is not None else []
        await repo.log(
            conn,
            now,
            "der.delete",
            {"er_id": der.er_id, "der_id": der.id},
            {"appliance": der.appliance, "quantity": der.quantity, "lifecycle": der.lifecycle},
            meters,
        )
    deps.on_world_changed()
    return schemas.DerDeleted(id=der.id, er_id=der.er_id, message=f"DER {der.id} ({der.appliance}) removed")


@router.handles(meter_sim.GET_DER)
async def get_der(body: schemas.DerRefRequest, deps: Deps) -> schemas.DerInfo:
    """One DER."""
    async with deps.pool.connection() as conn:
        return await der_repository.get_der(conn, body.der_id)


@router.handles(meter_sim.LIST_DERS)
async def list_ders(body: schemas.DerListRequest, deps: Deps) -> list[schemas.DerInfo]:
    """The DERs of an ER."""
    async with deps.pool.connection() as conn:
        return await der_repository.list_ders(conn, body.er_id)


# ------------------------------------------------------------------------------------------ events

# type → (new meter status, default severity)
_EVENT_EFFECT: dict[str, tuple[MeterStatus, Severity]] = {
    "tamper": ("tampered", "warning"),
    "fault": ("fault", "critical"),
    "outage": ("offline", "warning"),
    "clear": ("online", "info"),
}


@router.handles(meter_sim.METER_EVENT)
async def meter_event(body: schemas.MeterEventRequest, deps: Deps) -> schemas.MeterEventResult:
    """Inject a tamper, fault or outage on a meter (or clear it); published on its meter-event topics."""
    status, severity = _EVENT_EFFECT[body.type]
    async with deps.pool.connection() as conn:
        async with conn.transaction():
            now = await sim_now(deps, conn)
            found = await meter_repository.resolve_meter(conn, body.meter, field="meter", lock=True)
            row = await fetch_one(
                conn,
                "select m.id, m.code, m.status, m.load_factor_consumption as kc,"
                " m.load_factor_production as kp, er.type as er_type"
                " from meters m left join energy_resources er on er.id = m.er_id where m.id = %s",
                (found["id"],),
            )
            assert row is not None
            await conn.execute(
                "update meters set status = %s, updated_at = now() where id = %s", (status, row["id"])
            )
            was = repo.reporting(row["status"], row["er_type"], row["kc"], row["kp"])
            now_reporting = repo.reporting(status, row["er_type"], row["kc"], row["kp"])
            code = row["code"]
            raised: list[GridEvent] = []
            if body.type != "clear":
                raised.append(
                    MeterIncidentEvent(
                        type=body.type,
                        severity=body.severity or severity,
                        timestamp=now,
                        subject=code,
                        message=body.message or f"{body.type} on meter {code}",
                        data=MeterIncidentDetails.model_validate(
                            {**body.data, "meter_id": row["id"], "status": status}
                        ),
                    )
                )
            if was != now_reporting or body.type == "clear":
                reason = body.message or (f"{body.type} cleared" if body.type == "clear" else body.type)
                raised.append(_status_event(row["id"], code, now_reporting, now, reason))
            stored = [await repo.insert_event(conn, event) for event in raised]
            await repo.log(
                conn,
                now,
                f"meter_event.{body.type}",
                {"meter_id": row["id"]},
                {"status": status, "previous": row["status"]},
                [row["id"]],
            )
        if was != now_reporting:
            deps.on_world_changed()
        await _publish(deps, conn, [(row["id"], event) for event in raised])
    return schemas.MeterEventResult(
        meter_id=row["id"], meter_code=code, status=status, reporting=now_reporting, events=stored
    )


@router.handles(meter_sim.EVENTS)
async def events(body: schemas.EventListRequest, deps: Deps) -> list[schemas.EventOut]:
    """Stored grid and meter events, newest first (filter by type, subject, simulated time)."""
    async with deps.pool.connection() as conn:
        return await repo.list_events(conn, body)
