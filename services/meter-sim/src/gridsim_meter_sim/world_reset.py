"""``world.reset`` across owners: meter-sim replaces its world, then each owner of data derived from it
empties its own tables (issue 13: no service deletes another's rows).

The order, and why it leaves nothing stale (docs/architecture.md, "World reset"):

1. meter-sim empties and reloads its own tables and bumps ``world_state.generation`` in one transaction.
   Every id of the new world is new (sequences), so no row another service keeps for the old world can be
   read as the new world's: it is unreachable, not wrong, until its owner deletes it.
2. meter-sim sends the ``world_reset`` command with that generation to every running owner in
   :data:`~gridsim_shared.schemas.world.DERIVED_OWNERS` at once and answers its caller only after all of
   them confirmed; a failure or timeout fails the reset with that owner's error (a retry is a new
   generation and is safe).
3. An owner that was not running (its status offline or never seen) is not waited for. When it starts it
   subscribes first, then compares its stored generation with ``world_state`` and empties its tables,
   and only then announces ``ready``; so a reset made while it was down or starting is never missed
   (one it receives while catching up is handled once: each owner locks its state row and skips a
   generation it has handled).
"""

from __future__ import annotations

import asyncio
import logging

from gridsim_shared import commands
from gridsim_shared.bus import Bus
from gridsim_shared.messages import ServiceStatus
from gridsim_shared.schemas import world
from gridsim_shared.topics import ServicePath

__all__ = ["Presence", "fan_out"]

_LOGGER = logging.getLogger(__name__)


class Presence:
    """Which services have a running instance, from their retained status messages."""

    def __init__(self) -> None:
        self._up: dict[tuple[str, str], bool] = {}

    def on_status(self, status: ServiceStatus, path: ServicePath) -> None:
        """Remember one instance's state."""
        self._up[(path.service, path.instance)] = status.state != "offline"

    def running(self, service: str) -> bool:
        """True when some instance of ``service`` says it is online."""
        return any(up for (name, _), up in self._up.items() if name == service)


async def fan_out(
    bus: Bus, presence: Presence, generation: int, timeout: float
) -> list[world.WorldResetDone]:
    """Send ``world_reset`` to every running owner of derived data and wait for all of them.

    Raises the first owner's error (the caller's reply carries it) after every owner
    answered or timed out, so one slow owner does not hide another's failure from the log.
    """
    owners = [service for service in world.DERIVED_OWNERS if presence.running(service)]
    skipped = sorted(set(world.DERIVED_OWNERS) - set(owners))
    if skipped:
        _LOGGER.info("world reset %d: %s not running; each catches up at its start", generation, skipped)
    request = world.WorldReset(generation=generation)
    results = await asyncio.gather(
        *(bus.call(commands.WORLD_RESET[service], request, timeout=timeout) for service in owners),
        return_exceptions=True,
    )
    done: list[world.WorldResetDone] = []
    failure: BaseException | None = None
    for service, result in zip(owners, results, strict=True):
        if isinstance(result, BaseException):
            _LOGGER.error("world reset %d: %s failed: %s", generation, service, result)
            failure = failure or result
        else:
            done.append(result)
    if failure is not None:
        raise failure
    return done
