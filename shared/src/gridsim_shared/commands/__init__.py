"""Every command of every service, grouped by the service that answers it (one module each).

A caller imports the service's module and sends the command: ``await bus.call(meter_sim.CREATE_ER, req)``;
the service declares its handler against the same object: ``@router.handles(meter_sim.CREATE_ER)``.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from gridsim_shared.channels import Command
from gridsim_shared.commands import aggregator, billing, feasibility, meter_sim, utility
from gridsim_shared.schemas import world

__all__ = [
    "BY_SERVICE",
    "WORLD_RESET",
    "aggregator",
    "all_commands",
    "billing",
    "feasibility",
    "meter_sim",
    "utility",
]

BY_SERVICE: dict[str, ModuleType] = {
    module.SERVICE: module for module in (meter_sim, aggregator, billing, feasibility, utility)
}

# ``world_reset`` of each owner of data derived from meter-sim's world (schemas.world.DERIVED_OWNERS).
WORLD_RESET: dict[str, Command[world.WorldReset, world.WorldResetDone]] = {
    aggregator.SERVICE: aggregator.WORLD_RESET,
    feasibility.SERVICE: feasibility.WORLD_RESET,
}


def all_commands() -> list[Command[Any, Any]]:
    """Every command defined in this package, by service then operation."""
    found = [
        value
        for module in BY_SERVICE.values()
        for value in vars(module).values()
        if isinstance(value, Command)
    ]
    return sorted(found, key=lambda cmd: (cmd.service, cmd.operation))
