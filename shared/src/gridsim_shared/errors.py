"""gridsim's exception tree: one root, specific children, messages that name the field and the value."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from gridsim_shared.messages import ErrorBody

__all__ = [
    "ClockNotReady",
    "ConflictError",
    "GridsimError",
    "InvalidError",
    "NotFoundError",
    "RemoteError",
    "RpcTimeout",
    "error_body",
    "validation_error",
]


class GridsimError(Exception):
    """Root of gridsim's errors. Carries what an HTTP client needs: status, code, field, reason."""

    status: int = 400
    code: str = "bad_request"

    def __init__(
        self, message: str, *, field: str | None = None, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.details = details or {}

    def body(self) -> ErrorBody:
        """This error as the payload of an error reply."""
        return ErrorBody(
            status=self.status, code=self.code, message=self.message, field=self.field, details=self.details
        )


class NotFoundError(GridsimError):
    """An id that names nothing (HTTP 404)."""

    status = 404
    code = "not_found"


class ConflictError(GridsimError):
    """A request that contradicts the current state: duplicate code, parent with children (HTTP 409)."""

    status = 409
    code = "conflict"


class InvalidError(GridsimError):
    """A well-formed request whose values are not acceptable (HTTP 422)."""

    status = 422
    code = "invalid"


class ClockNotReady(GridsimError):
    """No simulation clock yet (meter-sim has not published or stored one): there is no "now" (HTTP 503)."""

    status = 503
    code = "clock_not_ready"


class RpcTimeout(GridsimError):
    """A service did not answer a request in time (HTTP 504)."""

    status = 504
    code = "timeout"


class RemoteError(GridsimError):
    """An error reply from another service, carried through unchanged."""

    def __init__(self, body: ErrorBody) -> None:
        super().__init__(body.message, field=body.field, details=body.details)
        self.status = body.status
        self.code = body.code


def error_body(exc: BaseException) -> ErrorBody:
    """Any exception as an error payload; unexpected ones become a 500 without internals."""
    if isinstance(exc, GridsimError):
        return exc.body()
    return ErrorBody(status=500, code="internal", message=f"internal error ({type(exc).__name__})")


def validation_error(exc: ValidationError, prefix: str = "") -> InvalidError:
    """The first problem of a pydantic error as a 422 naming the field and the reason."""
    first = exc.errors()[0]
    loc = ".".join(str(part) for part in first["loc"] if part != "__root__")
    name = f"{prefix}{loc}" if loc else (prefix.rstrip(".") or None)
    message = f"{name}: {first['msg']}" if name else first["msg"]
    return InvalidError(
        message,
        field=name,
        details={"errors": exc.errors(include_url=False, include_input=False, include_context=False)},
    )
