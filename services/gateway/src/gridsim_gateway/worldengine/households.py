"""World Engine energy resources (§1.4) and DERs (§1.5): households and their appliance instances.

ERs are meter-sim's energy resources (``create_er_linked``, ``update_er_linked``, ``delete_er``: each write,
link included, one meter-sim transaction); a DER is one row of
meter-sim's ``ders`` (``create_der``, ``switch_der``, ``switch_ders``). New DERs start switched off, as the
World Engine's schema default had it.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, StrictBool, field_validator

from gridsim_gateway.deps import BusDep
from gridsim_gateway.worldengine import links
from gridsim_gateway.worldengine.common import body_of, call, fetch, parse_id, query_of, reading, validate
from gridsim_gateway.worldengine.entities import DER, ENERGY_RESOURCE, er_type_from_we
from gridsim_gateway.worldengine.envelope import (
    StrapiBadRequest,
    StrapiError,
    StrapiNotFound,
    StrapiValidationError,
    ok,
)
from gridsim_gateway.worldengine.sqlquery import find, load
from gridsim_gateway.worldengine.strapi import Populate
from gridsim_shared.commands import meter_sim

__all__ = ["router"]

router = APIRouter(tags=["World Engine: energy resources and DERs"])

ER_NOT_FOUND = links.ER_NOT_FOUND
DER_NOT_FOUND = "DER not found"


def _er_type(value: Any) -> Any:
    if value is None:
        return None
    mapped = er_type_from_we(str(value))
    if mapped is None:
        msg = "type must be one of the following values: CONSUMER, PROSUMER"
        raise ValueError(msg)
    return mapped


class ErBody(BaseModel):
    """The ``data`` of ``POST /energy-resources`` and ``PATCH /energy-resources/:id``."""

    model_config = ConfigDict(extra="ignore")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    type: str | None = None
    meter: int | None = None
    # Early World Engine versions took appliance names at creation.
    appliances: list[str] | None = None

    _type = field_validator("type", mode="before")(_er_type)


async def _er_json(request: Request, er_id: int, populate: Populate | None = None) -> dict[str, Any]:
    return await fetch(request, ENERGY_RESOURCE, er_id, StrapiNotFound(ER_NOT_FOUND), populate)


@router.post("/energy-resources", status_code=201)
async def create_er(request: Request, bus: BusDep) -> JSONResponse:
    """Create a household (``{"data": {name, type: CONSUMER|PROSUMER, meter}}``), linked to ``meter`` if given."""
    body = validate(ErBody, await body_of(request, wrapped=True))
    if not body.name:
        msg = "name must be defined."
        raise StrapiValidationError(msg, path=["name"])
    fields: dict[str, Any] = {
        "name": body.name,
        "type": body.type or "consumer",
        "appliance_type": body.appliances or [],
    }
    if body.meter is not None:
        fields["link_meter_id"] = body.meter
    created = await links.linking(bus, meter_sim.CREATE_ER_LINKED, fields, not_found=ER_NOT_FOUND)
    er_id = created.id
    return ok("Energy resource created successfully", await _er_json(request, er_id), status=201)


@router.get("/energy-resources")
async def list_ers(request: Request) -> JSONResponse:
    """Households with Strapi's pagination, populate (meter, ders), sort and filters."""
    async with reading(request) as conn:
        page = await find(conn, ENERGY_RESOURCE, query_of(request))
    return ok("Energy resources fetched successfully", page)


@router.get("/energy-resources/{er_id}")
async def get_er(er_id: str, request: Request) -> JSONResponse:
    """One household; e.g. ``populate[0]=meter.parent&populate[1]=meter.children``."""
    key = parse_id(er_id, ER_NOT_FOUND)
    return ok(
        "Energy resource fetched successfully", await _er_json(request, key, query_of(request).populate)
    )


@router.patch("/energy-resources/{er_id}")
async def update_er(er_id: str, request: Request, bus: BusDep) -> JSONResponse:
    """Change a household's name or type; ``meter`` moves it to that meter (null unlinks it)."""
    key = parse_id(er_id, ER_NOT_FOUND)
    body = validate(ErBody, await body_of(request, wrapped=True))
    sent = body.model_fields_set
    await _er_json(request, key)
    changes: dict[str, Any] = {
        name: getattr(body, name) for name in ("name", "type") if name in sent and getattr(body, name)
    }
    if "meter" in sent:
        changes["link_meter_id"] = body.meter  # null unlinks
    if changes:  # all of it in one meter-sim transaction: nothing changes when a part fails
        await links.linking(bus, meter_sim.UPDATE_ER_LINKED, {"er_id": key} | changes, not_found=ER_NOT_FOUND)
    populate = Populate.parse(["meter.children"])
    return ok("Energy resource updated successfully", await _er_json(request, key, populate))


@router.delete("/energy-resources/{er_id}")
async def delete_er(er_id: str, bus: BusDep) -> JSONResponse:
    """Delete a household and its DERs; its meter stays, unlinked."""
    key = parse_id(er_id, ER_NOT_FOUND)
    await call(bus, meter_sim.DELETE_ER, {"er_id": key}, not_found=ER_NOT_FOUND)
    return JSONResponse({"message": "Energy resource deleted successfully"})


# ---------------------------------------------------------------------------------------------- DERs


class DerBody(BaseModel):
    """``POST /der``: ``{energy_resource, appliance}`` with no ``data`` wrapper (the spec capitalised them)."""

    model_config = ConfigDict(extra="ignore")

    energy_resource: int = Field(  # type: ignore[pydantic-alias]
        validation_alias=AliasChoices("energy_resource", "Energy_resource", "energyResource")
    )
    appliance: int = Field(validation_alias=AliasChoices("appliance", "Appliance"))  # type: ignore[pydantic-alias]


def _bad_request(exc: StrapiError) -> StrapiBadRequest:
    # The plugin's DER controller answered every failure with ctx.badRequest (400).
    return StrapiBadRequest(exc.message, details=exc.details)


async def _der_json(request: Request, der_id: int, populate: Populate | None = None) -> dict[str, Any]:
    return await fetch(request, DER, der_id, StrapiBadRequest(DER_NOT_FOUND), populate)


@router.post("/der")
async def create_der(request: Request, bus: BusDep) -> JSONResponse:
    """Add an appliance instance to a household. It starts switched off; returns the raw DER (no envelope)."""
    try:
        body = validate(DerBody, await body_of(request, wrapped=False))
    except StrapiError as exc:
        raise _bad_request(exc) from exc
    try:
        created = await call(
            bus,
            meter_sim.CREATE_DER,
            {"er_id": body.energy_resource, "appliance_id": body.appliance, "switched_on": False},
            fields={"er_id": "energy_resource", "appliance_id": "appliance"},
        )
    except StrapiNotFound as exc:
        field = exc.details.get("errors", [{}])[0].get("path", [""])[0]
        raise StrapiBadRequest(ER_NOT_FOUND if field == "energy_resource" else "Appliance not found") from exc
    except StrapiError as exc:
        raise _bad_request(exc) from exc
    return JSONResponse(await _der_json(request, created.id))


class ToggleBody(BaseModel):
    """``POST /toggle-der/:er_id`` body: which DER and the state to set."""

    model_config = ConfigDict(extra="ignore")

    der_id: int | None = None
    switched_on: StrictBool | None = None

    @field_validator("switched_on", mode="before")
    @classmethod
    def _bool_text(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() in {"true", "false"}:
            return value.strip().lower() == "true"
        return value


@router.post("/toggle-der/{path_id}")
async def toggle_der(path_id: str, request: Request, bus: BusDep) -> JSONResponse:
    """Switch a DER. With ``{der_id, switched_on}`` the path is the household (ER) id and the state is set,
    as the World Engine's code did; with no body the path is the DER id and the DER is flipped, as its
    spec and Postman collection called it."""
    try:
        body = validate(ToggleBody, await body_of(request, wrapped=False))
    except StrapiError as exc:
        raise _bad_request(exc) from exc
    if not path_id.strip().isdigit():
        raise StrapiBadRequest(DER_NOT_FOUND)
    key = int(path_id)
    command: dict[str, Any]
    if body.der_id is not None:
        command = {"der_id": body.der_id, "er_id": key, "switched_on": body.switched_on}
    else:
        command = {"der_id": key, "switched_on": body.switched_on}
    try:
        switched = await call(bus, meter_sim.SWITCH_DER, command)
    except StrapiNotFound as exc:
        raise StrapiBadRequest(DER_NOT_FOUND) from exc
    except StrapiValidationError as exc:
        msg = "DER does not belong to this Energy Resource"
        raise StrapiBadRequest(msg) from exc
    state = "on" if switched.switched_on else "off"
    return ok(f"DER switched {state} successfully", await _der_json(request, switched.id))


@router.get("/der/{meter_id}")
async def ders_of_meter(meter_id: str, request: Request) -> JSONResponse:
    """The DERs of a meter's household, each with its appliance, as a bare JSON array."""
    key = parse_id(meter_id, "Meter not found")
    async with reading(request) as conn:
        cur = await conn.execute("select er_id from meters where id = %s", (key,))
        row = await cur.fetchone()
        if row is None:
            msg = "Meter not found"
            raise StrapiNotFound(msg)
        ders: list[dict[str, Any]] = []
        if row[0] is not None:
            cur = await conn.execute("select id from ders where er_id = %s order by id", (row[0],))
            ids = [r[0] for r in await cur.fetchall()]
            ders = await load(conn, DER, ids, Populate.parse(["appliance"]))
    return JSONResponse(ders)


class DerIds(BaseModel):
    """``PUT /ders/switch-on`` / ``switch-off``."""

    model_config = ConfigDict(extra="ignore")

    der_ids: list[int] = Field(max_length=100_000)


async def _switch_many(request: Request, bus: BusDep, state: bool) -> JSONResponse:
    body = validate(DerIds, await body_of(request, wrapped=False))
    result = await call(bus, meter_sim.SWITCH_DERS, {"der_ids": body.der_ids, "switched_on": state})
    return JSONResponse({"count": result.count})


@router.put("/ders/switch-off")
async def switch_off(request: Request, bus: BusDep) -> JSONResponse:
    """Switch DERs off in bulk (``{der_ids}``); answers ``{count}`` like Strapi's updateMany."""
    return await _switch_many(request, bus, False)


@router.put("/ders/switch-on")
async def switch_on(request: Request, bus: BusDep) -> JSONResponse:
    """Switch DERs on in bulk (``{der_ids}``); answers ``{count}``."""
    return await _switch_many(request, bus, True)
