"""The commands the aggregator service answers: each one's request and reply, the one definition both ends use."""

from __future__ import annotations

from gridsim_shared.channels import Command
from gridsim_shared.schemas import health, world

SERVICE = "aggregator"

# service_levels

SLA_REPORT: Command[health.SlaRequest, health.SlaReport] = Command(
    SERVICE,
    "sla_report",
    health.SlaRequest,
    health.SlaReport,
    "A feeder's monthly service levels (completeness, voltage compliance, latency) and breaches.",
)
TRANSFORMER_HEALTH: Command[health.TransformerHealthRequest, list[health.TransformerHealth]] = Command(
    SERVICE,
    "transformer_health",
    health.TransformerHealthRequest,
    list[health.TransformerHealth],
    "Each transformer's insulation aging (IEEE C57.91), hours overloaded and health index.",
)

# world reset (sent by meter-sim to every owner of data derived from its world: gridsim_shared.schemas.world)
WORLD_RESET: Command[world.WorldReset, world.WorldResetDone] = Command(
    SERVICE,
    world.OPERATION,
    world.WorldReset,
    world.WorldResetDone,
    "meter-sim replaced its world: empty this service's own tables of the old one.",
)
