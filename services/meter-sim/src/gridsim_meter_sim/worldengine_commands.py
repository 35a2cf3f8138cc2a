"""meter-sim commands for the DEG World Engine compatibility layer: single DERs, bulk DER switches, bulk
load factors, DFP subscriptions, and the reset to the demo world.

Each runs in one transaction, records what it changed in ``control_log`` (with the simulated time), and
calls ``on_world_changed`` after commit, so the change shows from the next interval on, exactly like a
change made through gridsim's own API.
"""

from __future__ import annotations

import logging
from typing import Any

from gridsim_meter_sim import control_repository, meter_repository
from gridsim_meter_sim.handlers import Deps, sim_now
from gridsim_meter_sim.meter_repository import resolve_meter
from gridsim_meter_sim.repository import (
    Conn,
    create_er,
    fetch_all,
    fetch_one,
    find_er,
    get_er,
    update_er,
    valid_id,
)
from gridsim_meter_sim.world import load_world, read_world, world_path
from gridsim_meter_sim.world_reset import fan_out
from gridsim_shared import channels
from gridsim_shared.bus import Router
from gridsim_shared.commands import meter_sim
from gridsim_shared.errors import ConflictError, InvalidError, NotFoundError
from gridsim_shared.messages import ServiceStatus
from gridsim_shared.schemas import worldengine as schemas
from gridsim_shared.schemas.meters import (
    Er,
    ErCreate,
    ErUpdate,
    LinkRequest,
    Meter,
    MeterCreate,
    MeterUpdate,
    UnlinkRequest,
)
from gridsim_shared.topics import ServicePath

__all__ = ["router"]

router: Router[Deps] = Router()

_LOGGER = logging.getLogger(__name__)


@router.subscribe(channels.STATUS)
async def on_status(status: ServiceStatus, path: ServicePath, deps: Deps) -> None:
    """Track which services run: a world reset waits for the running owners of derived data."""
    deps.presence.on_status(status, path)


_DER_COLUMNS = (
    "id, er_id, appliance_id, quantity, switched_on, lifecycle, capacity_kw, created_at, updated_at"
)


async def _log(  # noqa: PLR0917 (the control_log row's columns, in order)
    deps: Deps, conn: Conn, action: str, target: dict[str, Any], params: dict[str, Any], meters: list[int]
) -> None:
    await control_repository.log(conn, await sim_now(deps, conn), action, target, params, meters)


async def _meters_of_ers(conn: Conn, er_ids: list[int]) -> list[int]:
    rows = await fetch_all(conn, "select id from meters where er_id = any(%s) order by id", (er_ids,))
    return [row["id"] for row in rows]


@router.handles(meter_sim.CREATE_DER)
async def create_der(body: schemas.DerCreate, deps: Deps) -> schemas.DerOut:
    """Add one appliance instance (a DER) to an ER; connected at once, switched off unless asked."""
    async with deps.pool.connection() as conn, conn.transaction():
        await find_er(conn, body.er_id)
        if await fetch_one(conn, "select 1 from appliances where id = %s", (body.appliance_id,)) is None:
            msg = f"appliance {body.appliance_id} not found in the catalogue"
            raise NotFoundError(msg, field="appliance_id")
        row = await fetch_one(
            conn,
            "insert into ders (er_id, appliance_id, quantity, switched_on, lifecycle, capacity_kw, tilt_deg,"
            f" azimuth_deg) values (%s, %s, %s, %s, %s, %s, %s, %s) returning {_DER_COLUMNS}",
            (
                body.er_id,
                body.appliance_id,
                body.quantity,
                body.switched_on,
                body.lifecycle,
                body.capacity_kw,
                body.tilt_deg,
                body.azimuth_deg,
            ),
        )
        assert row is not None
        await _log(
            deps,
            conn,
            "der_create",
            {"er_id": body.er_id, "der_id": row["id"]},
            {"appliance_id": body.appliance_id, "switched_on": body.switched_on, "lifecycle": body.lifecycle},
            await _meters_of_ers(conn, [body.er_id]),
        )
    deps.on_world_changed()
    return schemas.DerOut.model_validate(row)


@router.handles(meter_sim.SWITCH_DER)
async def switch_der(body: schemas.DerSwitch, deps: Deps) -> schemas.DerOut:
    """Switch one DER on or off (or flip it); with ``er_id`` it must belong to that ER."""
    async with deps.pool.connection() as conn, conn.transaction():
        der = await fetch_one(
            conn,
            "select id, er_id, switched_on, lifecycle from ders where id = %s for update",
            (body.der_id,),
        )
        if der is None:
            msg = f"DER {body.der_id} not found"
            raise NotFoundError(msg, field="der_id")
        if body.er_id is not None and der["er_id"] != body.er_id:
            msg = f"DER {body.der_id} does not belong to energy resource {body.er_id}"
            raise InvalidError(msg, field="der_id")
        state = (not der["switched_on"]) if body.switched_on is None else body.switched_on
        if state and der["lifecycle"] != "connected":  # seed note 4: only a connected DER runs
            msg = f"DER {body.der_id} is {der['lifecycle']}, not connected: only a connected DER can be switched on"
            raise ConflictError(msg, field="switched_on", details={"lifecycle": der["lifecycle"]})
        row = await fetch_one(
            conn,
            f"update ders set switched_on = %s, updated_at = now() where id = %s returning {_DER_COLUMNS}",
            (state, body.der_id),
        )
        assert row is not None
        await _log(
            deps,
            conn,
            "der_switch",
            {"er_id": der["er_id"], "der_id": body.der_id},
            {"switched_on": state},
            await _meters_of_ers(conn, [der["er_id"]]),
        )
    deps.on_world_changed()
    return schemas.DerOut.model_validate(row)


@router.handles(meter_sim.SWITCH_DERS)
async def switch_ders(body: schemas.DersSwitch, deps: Deps) -> schemas.DersSwitched:
    """Switch many DERs on or off at once; ids that name no DER are skipped (a bulk update)."""
    async with deps.pool.connection() as conn, conn.transaction():
        rows = await fetch_all(
            conn,
            "update ders set switched_on = %s, updated_at = now() where id = any(%s) returning id, er_id",
            (body.switched_on, [i for i in body.der_ids if valid_id(i)]),
        )
        ids = sorted(row["id"] for row in rows)
        if ids:
            await _log(
                deps,
                conn,
                "der_switch",
                {"der_ids": ids},
                {"switched_on": body.switched_on},
                await _meters_of_ers(conn, sorted({row["er_id"] for row in rows})),
            )
    if ids:
        deps.on_world_changed()
    return schemas.DersSwitched(count=len(ids), der_ids=ids)


@router.handles(meter_sim.SET_LOAD_FACTORS)
async def set_load_factors(body: schemas.LoadFactorsSet, deps: Deps) -> schemas.LoadFactorsSetResult:
    """Set K_consumption and/or K_production of many meters, all or none (404 naming a missing meter)."""
    if body.load_factor_consumption is None and body.load_factor_production is None:
        msg = "give load_factor_consumption, load_factor_production or both"
        raise InvalidError(msg, field="load_factor_consumption")
    wanted = sorted(set(body.meter_ids))
    async with deps.pool.connection() as conn, conn.transaction():
        found = sorted(
            await control_repository.set_load_factors(
                conn, body.load_factor_consumption, body.load_factor_production, wanted
            )
        )
        missing = sorted(set(wanted) - set(found))
        if missing:  # raising rolls the whole update back
            msg = f"meter {missing[0]} not found"
            raise NotFoundError(msg, field="meter_ids", details={"missing": missing})
        await _log(
            deps,
            conn,
            "load_factor",
            {"meter_ids": found},
            {
                "load_factor_consumption": body.load_factor_consumption,
                "load_factor_production": body.load_factor_production,
            },
            found,
        )
    deps.on_world_changed()
    return schemas.LoadFactorsSetResult(meter_ids=found)


@router.handles(meter_sim.SET_SUBSCRIPTION)
async def set_subscription(body: schemas.SubscriptionSet, deps: Deps) -> dict[str, int]:
    """Record a meter's demand-flexibility subscription order id (it changes no reading)."""
    async with deps.pool.connection() as conn, conn.transaction():
        meter_id = await meter_repository.set_subscription(conn, body.meter, body.subscription_id)
    return {"id": meter_id}


# ------------------------------------------------------------------ atomic links (issue 13)
# The World Engine adapter's multi-step writes (create, then delete on a failed link; unlink, then link)
# as single commands: each runs in one transaction, so a failure leaves nothing half done.


@router.handles(meter_sim.RELINK)
async def relink(body: LinkRequest, deps: Deps) -> Meter:
    """Link a meter to an ER, releasing either side's previous link, in one transaction."""
    async with deps.pool.connection() as conn, conn.transaction():
        meter = await meter_repository.relink(conn, body)
    deps.on_world_changed()
    return meter


@router.handles(meter_sim.CREATE_METER_LINKED)
async def create_meter_linked(body: schemas.MeterCreateLinked, deps: Deps) -> Meter:
    """Create a meter and, when asked, link it to an ER, in one transaction."""
    fields = body.model_dump(exclude={"link_er_id", "link_load_factor_production"}, exclude_unset=True)
    async with deps.pool.connection() as conn, conn.transaction():
        meter = await meter_repository.create_meter(conn, MeterCreate.model_validate(fields))
        if body.link_er_id is not None:
            link = LinkRequest(
                meter_id=meter.id,
                er_id=body.link_er_id,
                load_factor_production=body.link_load_factor_production,
            )
            meter = await meter_repository.relink(conn, link)
    deps.on_world_changed()
    return meter


@router.handles(meter_sim.CREATE_ER_LINKED)
async def create_er_linked(body: schemas.ErCreateLinked, deps: Deps) -> Er:
    """Create an energy resource and, when asked, link it to a meter, in one transaction."""
    fields = body.model_dump(exclude={"link_meter_id"}, exclude_unset=True)
    async with deps.pool.connection() as conn, conn.transaction():
        er = await create_er(conn, ErCreate.model_validate(fields))
        if body.link_meter_id is not None:
            await meter_repository.relink(conn, LinkRequest(meter_id=body.link_meter_id, er_id=er.id))
            er = await get_er(conn, er.id)
    deps.on_world_changed()
    return er


@router.handles(meter_sim.UPDATE_METER_LINKED)
async def update_meter_linked(body: schemas.MeterUpdateLinked, deps: Deps) -> Meter:
    """Change a meter, its link and its DFP subscription, in one transaction (all of it or none)."""
    sent = body.model_fields_set
    update = body.model_dump(include=set(MeterUpdate.model_fields), exclude_unset=True)
    async with deps.pool.connection() as conn, conn.transaction():
        meter_id = (await resolve_meter(conn, body.meter, field="meter", lock=True))["id"]
        update["meter"] = meter_id  # the code may be renamed by this very update
        if len(update) > 1:
            await meter_repository.update_meter(conn, MeterUpdate.model_validate(update))
        if "link_er_id" in sent:
            if body.link_er_id is not None:
                link = LinkRequest(
                    meter_id=meter_id,
                    er_id=body.link_er_id,
                    load_factor_production=body.link_load_factor_production,
                )
                await meter_repository.relink(conn, link)
            elif (await resolve_meter(conn, meter_id, field="meter"))["er_id"] is not None:
                await meter_repository.unlink(conn, UnlinkRequest(meter_id=meter_id))
        if "dfp_subscription_id" in sent:
            await meter_repository.set_subscription(conn, meter_id, body.dfp_subscription_id)
        meter = await meter_repository.get_meter(conn, meter_id)
    deps.on_world_changed()
    return meter


@router.handles(meter_sim.UPDATE_ER_LINKED)
async def update_er_linked(body: schemas.ErUpdateLinked, deps: Deps) -> Er:
    """Change an energy resource and its link to a meter, in one transaction (all of it or none)."""
    sent = body.model_fields_set
    update = body.model_dump(include=set(ErUpdate.model_fields), exclude_unset=True)
    async with deps.pool.connection() as conn, conn.transaction():
        await find_er(conn, body.er_id, lock=True)
        if len(update) > 1:
            await update_er(conn, ErUpdate.model_validate(update))
        if "link_meter_id" in sent:
            if body.link_meter_id is None:
                await meter_repository.unlink_er(conn, body.er_id)
            else:
                await meter_repository.relink(
                    conn, LinkRequest(meter_id=body.link_meter_id, er_id=body.er_id)
                )
        er = await get_er(conn, body.er_id)
    deps.on_world_changed()
    return er


async def _empty_world(conn: Conn) -> int:
    """Delete meter-sim's world (its own tables only) and return the new world's generation.

    Readings, rollups and connection requests belong to the aggregator and feasibility: each empties its
    own when told (:mod:`gridsim_meter_sim.world_reset`). Appliances, the control log and spikes' history
    stay, as the World Engine's reset kept trades.
    """
    await conn.execute("update meters set parent_id = null where parent_id is not null")
    await conn.execute("delete from meters")
    await conn.execute("delete from energy_resources")  # DERs go with them (on delete cascade)
    await conn.execute("delete from flex_events")  # demand-response windows name this world's meters
    for level in ("transformer", "feeder", "utility"):
        await conn.execute("delete from grid_nodes where level = %s", (level,))
    row = await fetch_one(
        conn, "update world_state set generation = generation + 1, reset_at = now() returning generation"
    )
    assert row is not None
    return int(row["generation"])


@router.handles(meter_sim.RESET_WORLD)
async def reset_world(_body: schemas.ResetWorld, deps: Deps) -> schemas.ResetResult:
    """Delete the grid, meters, ERs and DERs and load the demo world (or the configured world file) again
    through the same loader as the first start, in one transaction (ids are new); then have every running
    owner of derived data (readings, rollups, connection requests) empty its own tables, and answer only
    when all confirmed (``world.reset``, :mod:`gridsim_meter_sim.world_reset`)."""
    path = world_path(deps.settings)
    try:
        world = read_world(path)
    except ValueError as exc:
        raise InvalidError(str(exc), field="demo_world_file") from exc
    async with deps.pool.connection() as conn, conn.transaction():
        generation = await _empty_world(conn)
        summary = await load_world(conn, world)
        counts = await fetch_one(
            conn,
            "select (select count(*) from grid_nodes where level = 'utility') as utilities,"
            " (select count(*) from ders) as ders",
        )
        assert counts is not None
        await _log(
            deps,
            conn,
            "reset_world",
            {"world": summary.name},
            {"file": str(path), "generation": generation},
            [],
        )
    deps.on_world_changed()
    await fan_out(deps.bus, deps.presence, generation, deps.settings.mqtt.rpc_timeout_s)
    _LOGGER.info("world reset to %r: %d meters", summary.name, summary.meters)
    return schemas.ResetResult(
        utilities=counts["utilities"],
        transformers=summary.transformers,
        meters=summary.meters,
        energy_resources=summary.energy_resources,
        ders=counts["ders"],
    )
