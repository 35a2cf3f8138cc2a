"""The world reset's fan-out on the in-memory bus: who is asked, what comes back, which failure wins.

No broker and no database: the owners are routers answering ``world_reset`` on a
:class:`~gridsim_shared.memory_bus.MemoryBroker`, and :class:`Presence` learns who runs from their statuses,
as meter-sim does in production.
"""

from __future__ import annotations

import pytest

from gridsim_meter_sim.world_reset import Presence, fan_out
from gridsim_shared import channels, commands
from gridsim_shared.bus import Router
from gridsim_shared.errors import ConflictError, RemoteError, RpcTimeout
from gridsim_shared.memory_bus import MemoryBroker, MemoryBus
from gridsim_shared.messages import ServiceStatus
from gridsim_shared.schemas import world
from gridsim_shared.topics import ServicePath


def _owner(service: str, asked: list[tuple[str, int]], *, fail: bool = False) -> Router[None]:
    """A stand-in owner of derived data: records the request, deletes nothing, or refuses."""
    router: Router[None] = Router()

    @router.handles(commands.WORLD_RESET[service])
    async def reset(request: world.WorldReset, _deps: None) -> world.WorldResetDone:
        asked.append((service, request.generation))
        if fail:
            msg = f"{service} holds a lock"
            raise ConflictError(msg, field="generation")
        return world.WorldResetDone(service=service, generation=request.generation, deleted={"rows": 2})

    return router


async def _presence(broker: MemoryBroker) -> tuple[Presence, MemoryBus]:
    presence = Presence()
    bus = broker.bus("meter-sim")
    await bus.start()

    async def on_status(msg: ServiceStatus, path: ServicePath) -> None:
        presence.on_status(msg, path)

    await bus.subscribe(channels.STATUS, on_status)
    return presence, bus


async def test_every_running_owner_is_asked_and_answers() -> None:
    broker = MemoryBroker()
    asked: list[tuple[str, int]] = []
    async with broker.bus("aggregator") as aggregator, broker.bus("feasibility") as feasibility:
        await aggregator.include(_owner("aggregator", asked), None)
        await feasibility.include(_owner("feasibility", asked), None)
        presence, bus = await _presence(broker)
        await broker.settle()
        done = await fan_out(bus, presence, generation=7, timeout=5)
        await bus.close()
    assert sorted(asked) == [("aggregator", 7), ("feasibility", 7)]
    assert sorted((d.service, d.generation, d.deleted) for d in done) == [
        ("aggregator", 7, {"rows": 2}),
        ("feasibility", 7, {"rows": 2}),
    ]


async def test_an_owner_that_is_not_running_is_not_waited_for() -> None:
    broker = MemoryBroker()
    asked: list[tuple[str, int]] = []
    async with broker.bus("feasibility") as feasibility:
        await feasibility.include(_owner("feasibility", asked), None)
        async with broker.bus("aggregator"):
            pass  # was running, said offline on its way out
        presence, bus = await _presence(broker)
        await broker.settle()
        assert (presence.running("aggregator"), presence.running("feasibility")) == (False, True)
        done = await fan_out(bus, presence, generation=3, timeout=5)
        await bus.close()
    assert asked == [("feasibility", 3)]
    assert [d.service for d in done] == ["feasibility"]


async def test_a_failing_owner_fails_the_reset_after_every_owner_answered() -> None:
    broker = MemoryBroker()
    asked: list[tuple[str, int]] = []
    async with broker.bus("aggregator") as aggregator, broker.bus("feasibility") as feasibility:
        await aggregator.include(_owner("aggregator", asked, fail=True), None)
        await feasibility.include(_owner("feasibility", asked), None)
        presence, bus = await _presence(broker)
        await broker.settle()
        with pytest.raises(RemoteError) as refused:
            await fan_out(bus, presence, generation=4, timeout=5)
        await bus.close()
    assert (refused.value.status, refused.value.field) == (409, "generation")
    assert sorted(asked) == [("aggregator", 4), ("feasibility", 4)]  # the other owner still emptied its own


async def test_an_owner_that_says_online_but_never_answers_times_out() -> None:
    broker = MemoryBroker()
    async with broker.bus("aggregator"):  # connected, serving nothing
        presence, bus = await _presence(broker)
        await broker.settle()
        with pytest.raises(RpcTimeout):
            await fan_out(bus, presence, generation=5, timeout=0.05)
        await bus.close()
