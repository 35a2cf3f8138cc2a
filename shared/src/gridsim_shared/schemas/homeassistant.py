"""The state message of a meter announced to Home Assistant (``{base}/v1/ha/{meter}``, retained)."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from gridsim_shared.messages import Message

__all__ = ["HomeAssistantState"]


class HomeAssistantState(Message):
    """A meter's cumulative registers and latest instantaneous values, as Home Assistant's sensors read them."""

    meter_code: str
    timestamp: datetime = Field(description="simulated start of the latest interval counted")
    energy_import_kWh: float = Field(description="cumulative energy drawn (register, never decreases)")
    energy_export_kWh: float = Field(description="cumulative energy exported (register, never decreases)")
    power_W: float = Field(description="mean net power of the latest interval (import − export)")
    voltage_V: float = Field(description="mean voltage of the latest interval")
