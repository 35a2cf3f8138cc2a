"""Every service's real routers on the in-memory bus, without a broker or a database.

What is checked here is the handler layer itself: every declared command is served by its service's
routers, a request that does not fit the command's model is refused with a 422 naming the field before any
handler code runs (so before the database), and the clock subscriptions keep the services' in-memory view
of simulated time, retained clock included. The database behind the handlers is tested against PostgreSQL
in each service's integration tests; here the pool is a stand-in that fails the test if it is touched.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import pytest
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel

from gridsim import testing
from gridsim_aggregator import handlers as aggregator_handlers
from gridsim_aggregator import service_levels
from gridsim_aggregator.settings import AggregatorSettings
from gridsim_billing import handlers as billing_handlers
from gridsim_feasibility import handlers as feasibility_handlers
from gridsim_meter_sim import (
    booking_commands,
    control_commands,
    flex_commands,
    outage_commands,
    worldengine_commands,
)
from gridsim_meter_sim import handlers as meter_sim_handlers
from gridsim_shared import channels, commands
from gridsim_shared.bus import Bus, Router
from gridsim_shared.channels import Command, NoArgs
from gridsim_shared.errors import RemoteError
from gridsim_shared.memory_bus import MemoryBroker, MemoryBus
from gridsim_shared.messages import ClockState
from gridsim_shared.settings import Settings
from gridsim_shared.topics import NoPath
from gridsim_utility import handlers as utility_handlers

T0 = datetime(2025, 6, 20, tzinfo=UTC)


class NoDatabase:
    """A pool that fails whoever uses it: a handler path that passes with it needs no database."""

    def __init__(self) -> None:
        self.used = 0

    def connection(self, *_args: Any, **_kwargs: Any) -> Any:
        self.used += 1
        msg = "this handler path must not use the database"
        raise AssertionError(msg)


@dataclass
class Service:
    """A service's routers with their deps, as its ``__main__`` includes them."""

    name: str
    routers: Callable[[Bus, Settings, NoDatabase], list[tuple[Router[Any], Any]]]


def _pool(pool: NoDatabase) -> AsyncConnectionPool:
    return cast(AsyncConnectionPool, pool)


def _meter_sim(bus: Bus, settings: Settings, pool: NoDatabase) -> list[tuple[Router[Any], Any]]:
    deps = meter_sim_handlers.Deps(
        settings=settings, bus=bus, pool=_pool(pool), on_world_changed=lambda: None
    )
    routers = (meter_sim_handlers.router, worldengine_commands.router, control_commands.router)
    extra = (outage_commands.router, booking_commands.router, flex_commands.router)
    return [(router, deps) for router in (*routers, *extra)]


def _aggregator(bus: Bus, settings: Settings, pool: NoDatabase) -> list[tuple[Router[Any], Any]]:
    tuning = AggregatorSettings()
    # The ingestor and closer are not reached by a refused request (nor by anything checked here).
    deps = aggregator_handlers.Deps(settings, tuning, bus, _pool(pool), cast(Any, None), cast(Any, None))
    health = service_levels.HealthDeps(settings, tuning, bus, _pool(pool))
    return [(aggregator_handlers.router, deps), (service_levels.router, health)]


SERVICES = [
    Service("meter-sim", _meter_sim),
    Service("aggregator", _aggregator),
    Service(
        "billing",
        lambda bus, settings, pool: [
            (billing_handlers.router, billing_handlers.Deps(settings=settings, bus=bus, pool=_pool(pool)))
        ],
    ),
    Service(
        "feasibility",
        lambda bus, settings, pool: [
            (
                feasibility_handlers.router,
                feasibility_handlers.Deps(settings=settings, bus=bus, pool=_pool(pool)),
            )
        ],
    ),
    Service(
        "utility",
        lambda bus, settings, pool: [
            (utility_handlers.router, utility_handlers.Deps(settings=settings, bus=bus, pool=_pool(pool)))
        ],
    ),
]


def _settings(broker: MemoryBroker) -> Settings:
    return testing.IsolatedSettings(mqtt=broker.settings())


def _required(model: Any) -> list[str]:
    if isinstance(model, type) and issubclass(model, BaseModel):
        return [name for name, info in model.model_fields.items() if info.is_required()]
    return []


@pytest.mark.parametrize("service", SERVICES, ids=[s.name for s in SERVICES])
async def test_every_command_is_served_and_a_malformed_request_is_refused_before_the_handler(
    service: Service,
) -> None:
    broker = MemoryBroker()
    pool = NoDatabase()
    declared = [c for c in commands.all_commands() if c.service == service.name]
    assert declared, f"no command declared for {service.name}"
    async with broker.bus(service.name) as bus, broker.bus("gateway") as client:
        for router, deps in service.routers(bus, _settings(broker), pool):
            await bus.include(router, deps)
        refused = 0
        for command in declared:
            required = _required(command.request)
            if not required:
                continue
            # Every required field missing: a 422 that names one of them, from validation alone.
            with pytest.raises(RemoteError) as error:
                await client.call(command, command.request.model_construct())  # sends {}
            assert error.value.status == 422, (command.name, error.value.body)
            assert error.value.field in required, (command.name, error.value.field)
            refused += 1
        # An operation nobody declared is a 404, not silence.
        with pytest.raises(RemoteError) as unknown:
            await client.call(Command(service.name, "no_such_operation", NoArgs, None))
        assert unknown.value.status == 404
    served = {c.operation for c in declared}
    included = {op for router, _ in service.routers(bus, _settings(broker), pool) for op in router.operations}
    assert served <= included, f"declared but not served: {sorted(served - included)}"
    assert pool.used == 0
    assert refused > 0


@pytest.mark.parametrize(
    ("name", "module"),
    [("billing", billing_handlers), ("utility", utility_handlers)],
    ids=["billing", "utility"],
)
async def test_the_clock_subscription_keeps_simulated_time_retained_clock_included(
    name: str, module: Any
) -> None:
    broker = MemoryBroker()
    first = ClockState(current_datetime=T0, tick=0, state="paused", speed=1.0, interval_s=60)
    async with broker.bus("meter-sim") as meter_sim:
        await meter_sim.publish(channels.CLOCK, first, NoPath())  # retained, before the service starts
        async with broker.bus(name) as bus:
            deps = module.Deps(settings=_settings(broker), bus=bus, pool=_pool(NoDatabase()))
            await bus.include(module.router, deps)
            await broker.settle()
            assert deps.live.clock == first
            later = first.model_copy(update={"tick": 5, "current_datetime": T0.replace(minute=5)})
            await meter_sim.publish(channels.CLOCK, later, NoPath())
            await broker.settle()
            assert deps.live.clock == later


def test_the_in_memory_bus_is_the_bus() -> None:
    # Handlers are typed against Bus; the in-memory one is one (its transport alone differs).
    assert issubclass(MemoryBus, Bus)
