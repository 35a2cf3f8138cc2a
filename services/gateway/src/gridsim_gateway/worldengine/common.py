"""Helpers every World Engine route uses: bodies (with or without ``{"data": ...}``), ids in paths, Strapi
queries, calls to the owning service with errors in the World Engine's words, read-only connections."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from fastapi import Request
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel, ValidationError

from gridsim_gateway.worldengine.entities import Entity
from gridsim_gateway.worldengine.envelope import (
    GRIDSIM_TO_WE_FIELDS,
    StrapiError,
    StrapiNotFound,
    StrapiValidationError,
    strapi_error_from,
    validation_error,
)
from gridsim_gateway.worldengine.sqlquery import find_one
from gridsim_gateway.worldengine.strapi import Populate, StrapiQuery, parse_query
from gridsim_shared.bus import Bus
from gridsim_shared.channels import Command
from gridsim_shared.errors import GridsimError

__all__ = ["body_of", "call", "fetch", "parse_id", "query_of", "reading", "validate"]

B = TypeVar("B", bound=BaseModel)
Q = TypeVar("Q", bound=BaseModel)
R = TypeVar("R")


async def body_of(request: Request, *, wrapped: bool) -> dict[str, Any]:
    """The JSON body as a dict ({} when empty); ``wrapped`` routes take Strapi's ``{"data": {...}}``.

    A wrapped route also accepts the bare object, and a bare route the wrapped one: clients mixed them up.
    """
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError as exc:
        msg = f"Invalid JSON body: {exc}"
        raise StrapiValidationError(msg, path=[]) from exc
    if not isinstance(body, dict):
        msg = "The request body must be a JSON object"
        raise StrapiValidationError(msg, path=[])
    data = body.get("data")
    if isinstance(data, dict) and (wrapped or len(body) == 1):
        return data
    if wrapped and "data" in body and data is None:
        msg = 'Missing "data" payload in the request body'
        raise StrapiValidationError(msg, path=["data"])
    return body


def validate(model: type[B], body: dict[str, Any]) -> B:
    """``body`` as ``model``; a 400 ValidationError naming the first bad field otherwise."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise validation_error([([str(p) for p in e["loc"]], e["msg"]) for e in exc.errors()]) from exc


def parse_id(value: str, not_found: str) -> int:
    """A numeric path id; anything else names nothing (404 with the World Engine's message)."""
    text = value.strip()
    if not text.isdigit() or not 0 < int(text) < 2**63:
        raise StrapiNotFound(not_found)
    return int(text)


def query_of(request: Request) -> StrapiQuery:
    """The request's Strapi query parameters."""
    return parse_query(request.query_params.multi_items())


async def call(
    bus: Bus,
    command: Command[Q, R],
    body: Q | dict[str, Any],
    *,
    not_found: str | None = None,
    fields: dict[str, str] = GRIDSIM_TO_WE_FIELDS,
) -> R:
    """Send a command to the owning service; its errors come back in the World Engine's envelope.

    ``body`` is the request or its fields; fields are validated here as the service would (a bad one is
    the same 422, and so the same envelope)."""
    try:
        request = command.build(**body) if isinstance(body, dict) else body
        return await bus.call(command, request)
    except GridsimError as exc:
        raise strapi_error_from(exc, not_found=not_found, fields=fields) from exc


@asynccontextmanager
async def reading(request: Request) -> AsyncIterator[AsyncConnection[Any]]:
    """A pooled connection for reads (the gateway never writes gridsim's tables)."""
    pool: AsyncConnectionPool = request.state.pool
    async with pool.connection() as conn:
        yield conn


async def fetch(
    request: Request, entity: Entity, key: Any, missing: StrapiError, populate: Populate | None = None
) -> dict[str, Any]:
    """One entity as the World Engine returned it, populated; ``missing`` is raised when there is none."""
    async with reading(request) as conn:
        found = await find_one(conn, entity, key, populate)
    if found is None:
        raise missing
    return found
