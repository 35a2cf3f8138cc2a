"""The gateway's error convention: a JSON body naming the field and the reason, the right 4xx, never a 500
for bad input.

Body: ``{"error": {"status": 422, "code": "invalid", "message": "...", "field": "...", "details": {}}}``.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from gridsim_shared.errors import GridsimError, error_body
from gridsim_shared.messages import ErrorBody

__all__ = ["error_response", "install_error_handlers"]

_LOGGER = logging.getLogger(__name__)


def error_response(body: ErrorBody) -> JSONResponse:
    """An error body as a JSON response with its status."""
    return JSONResponse({"error": body.model_dump(mode="json")}, status_code=body.status)


def _field_of(loc: tuple[Any, ...]) -> str | None:
    # FastAPI prefixes locations with "body", "query" or "path"; the field is what follows.
    parts = (
        [str(p) for p in loc[1:]]
        if loc and loc[0] in {"body", "query", "path", "header"}
        else [str(p) for p in loc]
    )
    return ".".join(parts) or (str(loc[0]) if loc else None)


async def _on_validation(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
    field = _field_of(tuple(first.get("loc", ())))
    message = f"{field}: {first['msg']}" if field else str(first["msg"])
    details = {"errors": [{k: v for k, v in e.items() if k in {"loc", "msg", "type"}} for e in errors]}
    return error_response(
        ErrorBody(status=422, code="invalid", message=message, field=field, details=details)
    )


async def _on_gridsim(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, GridsimError)
    return error_response(exc.body())


async def _on_http(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = {401: "unauthorized", 404: "not_found", 405: "method_not_allowed"}.get(
        exc.status_code, "http_error"
    )
    return error_response(ErrorBody(status=max(exc.status_code, 400), code=code, message=str(exc.detail)))


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    _LOGGER.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(error_body(exc))


def install_error_handlers(app: FastAPI) -> None:
    """Register the project's error convention on ``app``."""
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(GridsimError, _on_gridsim)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    app.add_exception_handler(Exception, _on_unexpected)
