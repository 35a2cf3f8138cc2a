"""HTTP models of readings and rollups (``GET /meter/stream``, ``GET /rollups/{node}``), owned by the aggregator."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from gridsim_shared.messages import MeterReading

__all__ = ["RESOLUTIONS", "NodeRollupPoint", "ReadingPoint", "Resolution"]

Resolution = Literal["raw", "15m", "1h", "1d"]
# Seconds per point of each resolution ("raw" is the simulation interval).
RESOLUTIONS: dict[str, int] = {"15m": 900, "1h": 3600, "1d": 86400}


class ReadingPoint(BaseModel):
    """One reading (or one bucket of readings) of one meter: the seed's example shape plus context.

    For 15m/1h/1d buckets energies are sums, ``avg_voltage`` is the mean of the bucket's readings,
    ``avg_current`` is the bucket's mean apparent power over that voltage (I = S / V) and
    ``power_factor`` is Σ kWh / Σ kVAh clipped to [0, 1]: the aggregator's ``meter_readings_*`` views.
    """

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "meter_id": 17,
                "meter_code": "MTR-0017",
                "timestamp": "2025-05-07T10:00:00Z",
                "interval_s": 60,
                "consumption_kWh": 1.23,
                "production_kWh": 0.44,
                "consumption_kVAh": 1.45,
                "production_kVAh": 0.52,
                "avg_current": 5.3,
                "avg_voltage": 239.8,
                "reactive_power_kVAR": 0.85,
                "power_factor": 0.85,
                "is_parent": False,
                "partial": False,
            }
        }
    )

    meter_id: int
    meter_code: str
    timestamp: datetime = Field(description="simulated start of the interval or bucket")
    interval_s: int
    consumption_kWh: float | None
    production_kWh: float | None
    consumption_kVAh: float | None
    production_kVAh: float | None
    avg_current: float
    avg_voltage: float
    reactive_power_kVAR: float | None
    power_factor: float | None
    is_parent: bool = False
    partial: bool = False
    readings: int = Field(default=1, description="raw readings in this point")

    @classmethod
    def of(cls, reading: MeterReading) -> ReadingPoint:
        """A reading from the bus as a point (one raw reading): the fields both share, no copy by hand."""
        return cls.model_validate(reading.model_dump(include=set(cls.model_fields)))


class NodeRollupPoint(BaseModel):
    """A grid node's aggregate for one interval or bucket, with its coincident peak."""

    node_id: int
    node_code: str
    level: Literal["transformer", "feeder", "utility"]
    timestamp: datetime
    interval_s: int
    consumption_kWh: float
    production_kWh: float
    net_kWh: float
    peak_kVA: float = Field(description="highest interval mean apparent power in the point (coincident peak)")
    peak_at: datetime | None
    capacity_kVA: float | None
    peak_loading_pct: float | None
    intervals: int
