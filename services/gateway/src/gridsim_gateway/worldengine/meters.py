"""World Engine meter routes (§1.2): CRUD, bulk load-factor control, DFP subscriptions, meter ↔ ER link.

Each write is one meter-sim command, so it is atomic (``create_meter_linked``, ``update_meter_linked``,
``delete_meter``, ``relink``, ``set_load_factors``, ``set_subscription``); reads query meter-sim's published
tables with Strapi's parameters.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from gridsim_gateway.deps import BusDep
from gridsim_gateway.worldengine import links
from gridsim_gateway.worldengine.common import body_of, call, fetch, parse_id, query_of, reading, validate
from gridsim_gateway.worldengine.entities import METER, meter_type_from_we
from gridsim_gateway.worldengine.envelope import StrapiBadRequest, StrapiNotFound, StrapiValidationError, ok
from gridsim_gateway.worldengine.sqlquery import find, load
from gridsim_gateway.worldengine.strapi import Populate
from gridsim_shared.commands import meter_sim

__all__ = ["router"]

router = APIRouter(tags=["World Engine: meters"])

METER_NOT_FOUND = links.METER_NOT_FOUND
_METER_TYPES = "ONE-PH, THREE-PH, SMART, NETMETER"


def _meter_type(value: Any) -> Any:
    if value is None:
        return None
    mapped = meter_type_from_we(str(value))
    if mapped is None:
        msg = f"type must be one of the following values: {_METER_TYPES}"
        raise ValueError(msg)
    return mapped


class MeterBody(BaseModel):
    """The ``data`` of ``POST /meters`` and ``PATCH /meters/:id``; unknown attributes are ignored (Strapi)."""

    model_config = ConfigDict(extra="ignore")

    code: str | None = None
    parent: int | None = None
    energyResource: int | None = None
    consumptionLoadFactor: float | None = Field(default=None, ge=0, le=100)
    productionLoadFactor: float | None = Field(default=None, ge=0, le=100)
    type: str | None = None
    city: str | None = None
    state: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    pincode: str | None = None
    transformer: int | None = None
    max_capacity_KW: float | None = None
    dfp_subscription_id: str | None = None

    _type = field_validator("type", mode="before")(_meter_type)

    @field_validator("pincode", mode="before")
    @classmethod
    def _pincode_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int | float) else value


# MeterBody field → gridsim's MeterCreate/MeterPatch field.
_TO_GRIDSIM = {
    "code": "meter_id",
    "parent": "parent_id",
    "consumptionLoadFactor": "load_factor_consumption",
    "productionLoadFactor": "load_factor_production",
    "type": "meter_type",
    "city": "city",
    "state": "state",
    "latitude": "latitude",
    "longitude": "longitude",
    "pincode": "pincode",
    "transformer": "transformer_id",
    "max_capacity_KW": "max_capacity_kW",
}
# Fields gridsim keeps as they are when a PATCH sends them as null (they may not be null there).
_NOT_NULL = {"code", "consumptionLoadFactor", "productionLoadFactor", "type", "transformer"}


def _gridsim_fields(body: MeterBody) -> dict[str, Any]:
    sent = body.model_fields_set
    return {
        target: getattr(body, name)
        for name, target in _TO_GRIDSIM.items()
        if name in sent and not (name in _NOT_NULL and getattr(body, name) is None)
    }


async def meter_json(request: Request, meter_id: int, populate: Populate | None = None) -> dict[str, Any]:
    """A meter as the World Engine returned it (404 when it is gone)."""
    return await fetch(request, METER, meter_id, StrapiNotFound(METER_NOT_FOUND), populate)


@router.post("/meters", status_code=201)
async def create_meter(request: Request, bus: BusDep) -> JSONResponse:
    """Create a meter (``{"data": {code, parent, energyResource, consumptionLoadFactor, ...}}``).

    With ``energyResource`` the new meter is linked to that household in the same meter-sim transaction,
    so a failed link leaves no half-made meter behind.
    """
    body = validate(MeterBody, await body_of(request, wrapped=True))
    if not body.code:
        msg = "code must be defined."
        raise StrapiValidationError(msg, path=["code"])
    fields = _gridsim_fields(body)
    if body.energyResource is not None:
        fields |= {
            "link_er_id": body.energyResource,
            "link_load_factor_production": body.productionLoadFactor,
        }
    created = await links.linking(
        bus, meter_sim.CREATE_METER_LINKED, fields, not_found="Parent meter not found"
    )
    meter_id = created.id
    return ok("Meter created successfully", await meter_json(request, meter_id), status=201)


@router.get("/meters")
async def list_meters(request: Request) -> JSONResponse:
    """Meters, with Strapi's pagination, populate (parent, children, energyResource, transformer), sort and filters."""
    query = query_of(request)
    async with reading(request) as conn:
        page = await find(conn, METER, query)
    return ok("Meters fetched successfully", page)


@router.get("/meters/subscription/{subscription_id}")
async def meters_of_subscription(subscription_id: str, request: Request) -> JSONResponse:
    """The meters whose ``dfp_subscription_id`` is ``subscription_id``."""
    async with reading(request) as conn:
        cur = await conn.execute(
            "select id from meters where dfp_subscription_id = %s order by id", (subscription_id,)
        )
        ids = [row[0] for row in await cur.fetchall()]
        meters = await load(conn, METER, ids, query_of(request).populate)
    return ok("Meters fetched successfully", meters)


@router.get("/meters/{meter_id}")
async def get_meter(meter_id: str, request: Request) -> JSONResponse:
    """One meter; ``populate[i]`` fills in parent, children, energyResource, transformer (user is null)."""
    found = await meter_json(request, parse_id(meter_id, METER_NOT_FOUND), query_of(request).populate)
    return ok("Meter fetched successfully", found)


@router.patch("/meters/{meter_id}")
async def update_meter(meter_id: str, request: Request, bus: BusDep) -> JSONResponse:
    """Change a meter (``{"data": {...partial}}``); ``energyResource`` links (or, null, unlinks) a household."""
    key = parse_id(meter_id, METER_NOT_FOUND)
    body = validate(MeterBody, await body_of(request, wrapped=True))
    sent = body.model_fields_set
    await meter_json(request, key)
    if "parent" in sent and body.parent is not None:
        if body.parent == key:
            msg = "Cannot set meter as its own parent"
            raise StrapiBadRequest(msg, path=["parent"])
        await fetch(request, METER, body.parent, StrapiNotFound("Parent meter not found"))
    fields: dict[str, Any] = {"meter": key, **_gridsim_fields(body)}
    if "energyResource" in sent:
        fields["link_er_id"] = body.energyResource  # null unlinks
        if body.energyResource is not None:
            fields["link_load_factor_production"] = body.productionLoadFactor
    if "dfp_subscription_id" in sent:
        fields["dfp_subscription_id"] = body.dfp_subscription_id or None
    if len(fields) > 1:  # all of it in one meter-sim transaction: nothing changes when a part fails
        await links.linking(bus, meter_sim.UPDATE_METER_LINKED, fields, not_found=METER_NOT_FOUND)
    populate = Populate.parse(["parent", "energyResource", "children"])
    return ok("Meter updated successfully", await meter_json(request, key, populate))


@router.delete("/meters/{meter_id}")
async def delete_meter(meter_id: str, bus: BusDep) -> JSONResponse:
    """Delete a meter (gridsim refuses while it still has child meters: 400)."""
    key = parse_id(meter_id, METER_NOT_FOUND)
    await call(bus, meter_sim.DELETE_METER, {"meter": key}, not_found=METER_NOT_FOUND)
    return JSONResponse({"message": "Meter deleted successfully"})


class ControlBody(BaseModel):
    """``POST /meters/control`` (no ``data`` wrapper): which meters, the factor, and which side it sets."""

    model_config = ConfigDict(extra="ignore")

    meter_id: str | None = None
    parent_meter_id: str | None = None
    appliance_type: list[str] | None = None
    pincode: str | None = None
    load_factor: float
    log_type: str

    @field_validator("load_factor")
    @classmethod
    def _factor(cls, value: float) -> float:
        if not 0 < value <= 1:
            msg = "load_factor must be between 0 and 1"
            raise ValueError(msg)
        return value

    @field_validator("log_type")
    @classmethod
    def _log_type(cls, value: str) -> str:
        if value.upper() not in {"CONSUMER", "PROSUMER", "BOTH"}:
            msg = "log_type must be one of CONSUMER, PROSUMER, BOTH"
            raise ValueError(msg)
        return value.upper()

    @field_validator("pincode", "meter_id", "parent_meter_id", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int | float) else value


@router.post("/meters/control")
async def control_meters(request: Request, bus: BusDep) -> JSONResponse:
    """Set the load factor of the meters matching ``meter_id`` (code), ``parent_meter_id`` (parent's code),
    ``pincode`` and ``appliance_type`` (households with one of those appliances): CONSUMER sets
    consumptionLoadFactor, PROSUMER productionLoadFactor, BOTH both — in one transaction."""
    body = validate(ControlBody, await body_of(request, wrapped=False))
    conditions: list[str] = ["true"]
    params: list[Any] = []
    if body.meter_id:
        conditions.append("lower(m.code) = lower(%s)")
        params.append(body.meter_id)
    if body.parent_meter_id:
        conditions.append(
            "exists (select 1 from meters p where p.id = m.parent_id and lower(p.code) = lower(%s))"
        )
        params.append(body.parent_meter_id)
    if body.pincode:
        conditions.append("m.pincode = %s")
        params.append(body.pincode)
    if body.appliance_type:
        conditions.append(
            "exists (select 1 from ders d join appliances a on a.id = d.appliance_id where d.er_id = m.er_id"
            " and (lower(a.name) = any(%s) or exists (select 1 from unnest(a.aliases) x where lower(x) = any(%s))))"
        )
        names = [n.strip().lower() for n in body.appliance_type]
        params.extend([names, names])
    async with reading(request) as conn:
        cur = await conn.execute(
            f"select m.id from meters m where {' and '.join(conditions)} order by m.id",
            params,
        )
        ids = [row[0] for row in await cur.fetchall()]
    if not ids:
        msg = "No meters found matching the criteria"
        raise StrapiNotFound(msg)
    factors: dict[str, Any] = {}
    if body.log_type in {"CONSUMER", "BOTH"}:
        factors["load_factor_consumption"] = body.load_factor
    if body.log_type in {"PROSUMER", "BOTH"}:
        factors["load_factor_production"] = body.load_factor
    await call(bus, meter_sim.SET_LOAD_FACTORS, {"meter_ids": ids, **factors})
    async with reading(request) as conn:
        meters = await load(conn, METER, ids, Populate())
    return ok("Meters updated successfully", meters, meta={"count": len(meters)})


class SubscriptionBody(BaseModel):
    """``PUT /meters/add-subscription``: the spec's capitalised names, or lower-case ones."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    meter_id: str = Field(validation_alias="Meter_id")
    subscription_order_id: str = Field(validation_alias="Subscription_order_id")

    @field_validator("meter_id", "subscription_order_id", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) else value


@router.put("/meters/add-subscription")
async def add_subscription(request: Request, bus: BusDep) -> JSONResponse:
    """Record a meter's demand-flexibility subscription order (``Meter_id`` is its id or code)."""
    raw = await body_of(request, wrapped=False)
    body = validate(SubscriptionBody, {k[:1].upper() + k[1:]: v for k, v in raw.items()})
    result = await call(
        bus,
        meter_sim.SET_SUBSCRIPTION,
        {"meter": body.meter_id, "subscription_id": body.subscription_order_id},
        not_found=METER_NOT_FOUND,
    )
    return ok("Subscription added successfully", await meter_json(request, int(result["id"])))


@router.post("/meter/link")
async def link_meter(request: Request, bus: BusDep) -> JSONResponse:
    """Link a meter to a household: ``{meter, energyResource}`` (``meter_id``/``er_id`` also accepted)."""
    raw = await body_of(request, wrapped=False)
    meter_ref = raw.get("meter", raw.get("meter_id"))
    er_ref = raw.get("energyResource", raw.get("energy_resource", raw.get("er_id")))
    if meter_ref is None or er_ref is None:
        msg = "meter and energyResource are required"
        raise StrapiValidationError(msg, path=["meter" if meter_ref is None else "energyResource"])
    meter_id = parse_id(str(meter_ref), METER_NOT_FOUND)
    er_id = parse_id(str(er_ref), links.ER_NOT_FOUND)
    await meter_json(request, meter_id)
    await links.linking(
        bus, meter_sim.RELINK, {"meter_id": meter_id, "er_id": er_id}, not_found=METER_NOT_FOUND
    )
    populate = Populate.parse(["energyResource"])
    return ok("Meter linked successfully", await meter_json(request, meter_id, populate))
