"""The World Engine's envelopes: ``{message, data}`` on success, Strapi's error envelope on failure.

Strapi's error body is ``{"data": null, "error": {"status", "name", "message", "details"}}``. It applies only
under ``/meter-data-simulator`` (the sub-application installs these handlers); gridsim's own routes keep
gridsim's convention. gridsim errors from the services are translated here: 404 stays a NotFoundError, a
conflict (409) or an unacceptable value (422) becomes Strapi's 400 ValidationError, with gridsim's field
names turned back into the World Engine's.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from gridsim_shared.errors import GridsimError

__all__ = [
    "GRIDSIM_TO_WE_FIELDS",
    "StrapiError",
    "StrapiNotFound",
    "StrapiValidationError",
    "install_strapi_errors",
    "ok",
    "strapi_error_from",
    "validation_error",
]

_LOGGER = logging.getLogger(__name__)

# gridsim's field names (shared schemas) → the World Engine's, so an error names the field the client sent.
GRIDSIM_TO_WE_FIELDS: dict[str, str] = {
    "meter_id": "code",
    "parent_id": "parent",
    "er_id": "energyResource",
    "transformer_id": "transformer",
    "load_factor": "consumptionLoadFactor",
    "load_factor_consumption": "consumptionLoadFactor",
    "load_factor_production": "productionLoadFactor",
    "meter_type": "type",
    "max_capacity_kW": "max_capacity_KW",
    "appliance_id": "appliance",
    "der_id": "der_id",
}


class StrapiError(Exception):
    """An error answered in Strapi's envelope."""

    status = 400
    name = "ApplicationError"

    def __init__(
        self, message: str, *, path: list[str] | None = None, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details if details is not None else {}
        if path is not None and "errors" not in self.details:
            self.details["errors"] = [{"path": path, "message": message, "name": self.name}]

    def response(self) -> JSONResponse:
        """The error as Strapi's JSON envelope."""
        body = {
            "data": None,
            "error": {
                "status": self.status,
                "name": self.name,
                "message": self.message,
                "details": self.details,
            },
        }
        return JSONResponse(body, status_code=self.status)


class StrapiValidationError(StrapiError):
    """400 ValidationError: a body or query the World Engine would have refused."""

    name = "ValidationError"


class StrapiBadRequest(StrapiError):
    """400 BadRequestError: the plugin's ``ctx.badRequest`` (e.g. "DER not found")."""

    name = "BadRequestError"


class StrapiNotFound(StrapiError):
    """404 NotFoundError."""

    status = 404
    name = "NotFoundError"


class StrapiUnauthorized(StrapiError):
    """401: a write without a valid X-API-Key while gridsim has keys configured."""

    status = 401
    name = "UnauthorizedError"


class _StrapiServerError(StrapiError):
    name = "InternalServerError"

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


# Statuses kept as they are (not folded into Strapi's 400 ValidationError), with Strapi's error names.
_STATUS_NAMES = {
    403: "ForbiddenError",
    413: "PayloadTooLargeError",
    415: "UnsupportedMediaTypeError",
    429: "RateLimitError",
}


def strapi_error_from(
    exc: GridsimError,
    *,
    not_found: str | None = None,
    fields: Mapping[str, str] = GRIDSIM_TO_WE_FIELDS,
) -> StrapiError:
    """A gridsim error (local or a service's reply) as the World Engine would have reported it.

    ``not_found`` replaces gridsim's 404 message with the World Engine's ("Meter not found").
    """
    field = fields.get(exc.field, exc.field) if exc.field else None
    path = [field] if field else None
    if exc.status == 404:
        return StrapiNotFound(not_found or exc.message, path=path)
    if exc.status == 401:
        return StrapiUnauthorized(exc.message, path=path)
    if exc.status in _STATUS_NAMES:
        error = StrapiError(exc.message, path=path)
        error.status, error.name = exc.status, _STATUS_NAMES[exc.status]
        return error
    if 400 <= exc.status < 500:
        message = exc.message
        if exc.status == 409 and field == "code":
            message = "This attribute must be unique"
        return StrapiValidationError(message, path=path)
    return _StrapiServerError(exc.status, exc.message)


def ok(message: str | None, data: Any, *, status: int = 200, **extra: Any) -> JSONResponse:
    """The plugin's success envelope ``{message, data}`` (plus ``extra`` keys such as ``meta``)."""
    body: dict[str, Any] = {} if message is None else {"message": message}
    body["data"] = data
    body.update(extra)
    return JSONResponse(body, status_code=status)


async def _on_strapi(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StrapiError)
    return exc.response()


async def _on_gridsim(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, GridsimError)
    return strapi_error_from(exc).response()


def validation_error(problems: list[tuple[list[str], str]]) -> StrapiValidationError:
    """Strapi's 400 ValidationError listing each (path, message), worded after the first."""
    errors = [{"path": path, "message": message, "name": "ValidationError"} for path, message in problems]
    path, message = problems[0] if problems else ([], "invalid request")
    where = ".".join(path)
    return StrapiValidationError(
        f"{where} {message}".strip() if where else message, details={"errors": errors}
    )


async def _on_validation(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = []
    for error in exc.errors():
        loc = [str(p) for p in error.get("loc", ())]
        # Drop FastAPI's "body"/"path"/"query" prefix and the World Engine's "data" wrapper.
        if loc and loc[0] in {"body", "path", "query"}:
            loc = loc[1:]
        if loc and loc[0] == "data":
            loc = loc[1:]
        problems.append((loc, str(error.get("msg", "invalid"))))
    return validation_error(problems).response()


async def _on_http(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    names = {404: "NotFoundError", 405: "MethodNotAllowedError", 401: "UnauthorizedError"}
    error = StrapiError(str(exc.detail))
    error.status = max(exc.status_code, 400)
    error.name = names.get(exc.status_code, "HttpError")
    return error.response()


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    _LOGGER.exception("unhandled error on %s %s", request.method, request.url.path)
    return _StrapiServerError(500, "Internal Server Error").response()


def install_strapi_errors(app: FastAPI) -> None:
    """Answer every error of ``app`` in Strapi's envelope."""
    app.add_exception_handler(StrapiError, _on_strapi)
    app.add_exception_handler(GridsimError, _on_gridsim)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    app.add_exception_handler(Exception, _on_unexpected)
