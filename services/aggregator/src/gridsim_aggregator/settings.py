"""Settings of the aggregator service: the project's settings model plus the aggregator's own knobs.

The knobs are ``GRIDSIM_AGGREGATOR__*`` variables (e.g. ``GRIDSIM_AGGREGATOR__CLOSE_AFTER_S=2``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from gridsim_shared.settings import Settings

__all__ = ["AggregatorSettings", "Settings"]


class AggregatorSettings(BaseSettings):
    """How the aggregator batches, closes intervals and judges voltages."""

    model_config = SettingsConfigDict(env_prefix="GRIDSIM_AGGREGATOR__", extra="ignore")

    # A flush (one COPY transaction) happens at this many buffered readings, or this long after the first.
    flush_rows: int = Field(default=20_000, ge=1)
    flush_ms: float = Field(default=100.0, gt=0)
    # Concurrent COPY transactions (PostgreSQL ingests ~1.6x faster over two connections).
    copy_connections: int = Field(default=2, ge=1, le=8)
    # The bounded wait: an interval whose readings are still incomplete and none of whose batches was
    # committed for this long is closed anyway and marked partial. Counted from its latest batch, not its
    # first: a million meters' interval takes longer than this to arrive, and is not stuck while it does.
    close_after_s: float = Field(default=5.0, gt=0)
    # A late interval (readings stored after it closed) is recomputed once none of its batches was committed
    # for this long: an interval closed partial while the rest was still coming is recomputed once, not at
    # every pass of the closer while its remaining batches arrive (1M meters: ~3,500 batches over 35 s).
    late_settle_s: float = Field(default=1.0, ge=0)
    # An instance that has not written its heartbeat for this long no longer holds intervals open.
    instance_live_s: float = Field(default=10.0, gt=0)
    # Shared-subscription group for ingest: set it (e.g. "aggregator") when several instances split the
    # batches. Empty (the default) subscribes plainly, which is what survives a broker restart on
    # Mosquitto 2.0: a restarted Mosquitto does not route to a shared group until a member resubscribes,
    # so batches published in that window are dropped (measured; see docs/data.md).
    share_group: str = Field(default="", pattern=r"^[a-z0-9_-]*$")
    # TimescaleDB only: compress meter_data chunks older than this many simulated days (0: never).
    timescale_compress_after_days: int = Field(default=7, ge=0)
    # The service-voltage band outside which a meter raises a voltage event. Unset (the default): each
    # transformer's band is its place's standard (gridsim_shared.standards: ANSI C84.1 Range A for a US
    # 240 V world, EN 50160 for a 230 V one, ...); set both to use one band everywhere.
    voltage_low_v: float | None = None
    voltage_high_v: float | None = None
    voltage_range: Literal["A", "B"] = "A"
