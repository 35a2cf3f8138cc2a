"""Meter ↔ energy-resource links with Strapi's one-to-one semantics, as single meter-sim commands.

Setting ``meter.energyResource`` (or ``energyResource.meter``) in Strapi moved the household: whatever
either side was linked to before is let go. gridsim's own ``link`` refuses an ER that is already linked,
so the World Engine routes send the ``*_linked`` commands and ``relink`` instead: meter-sim releases the
old partners, links, and applies the rest of the change in one transaction, so a failed link leaves no
half-made meter or household and no link released without its replacement.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel

from gridsim_gateway.worldengine.envelope import StrapiError, StrapiNotFound, strapi_error_from
from gridsim_shared.bus import Bus
from gridsim_shared.channels import Command
from gridsim_shared.errors import GridsimError

__all__ = ["ER_NOT_FOUND", "METER_NOT_FOUND", "linking"]

ER_NOT_FOUND = "Energy resource not found"
METER_NOT_FOUND = "Meter not found"

Q = TypeVar("Q", bound=BaseModel)
R = TypeVar("R")

# The field meter-sim names when the meter or the ER of a link does not exist (``relink``): the World
# Engine answered those with its own message and no path.
_LINK_NOT_FOUND = {"er_id": ER_NOT_FOUND, "meter_id": METER_NOT_FOUND}


def _link_error(exc: GridsimError, not_found: str) -> StrapiError:
    if exc.status == 404 and exc.field in _LINK_NOT_FOUND:
        return StrapiNotFound(_LINK_NOT_FOUND[exc.field])
    return strapi_error_from(exc, not_found=not_found)


async def linking(bus: Bus, command: Command[Q, R], body: dict[str, Any], *, not_found: str) -> R:
    """Send one of the linking commands; a missing meter or ER of the link is reported as the World
    Engine did ("Meter not found", "Energy resource not found"), any other 404 as ``not_found``."""
    try:
        return await bus.call(command, command.build(**body))
    except GridsimError as exc:
        raise _link_error(exc, not_found) from exc
