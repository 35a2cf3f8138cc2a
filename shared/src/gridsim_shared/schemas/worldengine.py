"""RPC models of the meter-sim commands the DEG World Engine compatibility layer needs and gridsim's own
API did not have: single DERs (one appliance instance, switched on or off), bulk DER switching, bulk load
factors, a meter's demand-flexibility subscription, and resetting the world to the demo world.

The gateway's ``/meter-data-simulator`` routes translate World Engine bodies into these; meter-sim applies
them to its own tables in one transaction each and reloads the simulation from the next interval.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from gridsim_shared.schemas.meters import ErCreate, ErUpdate, LoadFactor, MeterCreate, MeterRef, MeterUpdate

__all__ = [
    "DerCreate",
    "DerOut",
    "DerSwitch",
    "DersSwitch",
    "DersSwitched",
    "ErCreateLinked",
    "ErUpdateLinked",
    "LoadFactorsSet",
    "LoadFactorsSetResult",
    "MeterCreateLinked",
    "MeterUpdateLinked",
    "ResetResult",
    "ResetWorld",
    "SubscriptionSet",
]

Id = Annotated[int, Field(ge=1, le=2**63 - 1)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DerCreate(_Request):
    """``create_der``: one appliance instance of an ER. World Engine DERs start switched off."""

    er_id: Id
    appliance_id: Id
    quantity: int = Field(default=1, ge=1, le=10_000)
    switched_on: bool = False
    # gridsim's own DER routes (controls) also give the lifecycle and a solar panel's rating.
    lifecycle: Literal["purchased", "installed", "connected"] = "connected"
    capacity_kw: float | None = Field(default=None, ge=0.001, le=100_000, allow_inf_nan=False)
    tilt_deg: float | None = Field(default=None, ge=0, le=90, allow_inf_nan=False)
    azimuth_deg: float | None = Field(default=None, ge=0, lt=360, allow_inf_nan=False)


class DerSwitch(_Request):
    """``switch_der``: set one DER on or off, or flip it when ``switched_on`` is null.

    With ``er_id`` the DER must belong to that ER (the World Engine's ``/toggle-der/{er_id}``).
    """

    der_id: Id
    er_id: Id | None = None
    switched_on: bool | None = None


class DersSwitch(_Request):
    """``switch_ders``: set many DERs at once (unknown ids are skipped, as a bulk update skips them)."""

    der_ids: list[Id] = Field(max_length=100_000)
    switched_on: bool


class DersSwitched(BaseModel):
    """How many DERs a bulk switch changed, and which."""

    count: int
    der_ids: list[int]


class DerOut(BaseModel):
    """A DER row."""

    id: int
    er_id: int
    appliance_id: int
    quantity: int
    switched_on: bool
    lifecycle: Literal["purchased", "installed", "connected"]
    capacity_kw: float | None = None
    created_at: datetime
    updated_at: datetime


class LoadFactorsSet(_Request):
    """``set_load_factors``: K_consumption and/or K_production of many meters, in one transaction."""

    meter_ids: list[Id] = Field(min_length=1, max_length=100_000)
    load_factor_consumption: LoadFactor | None = None
    load_factor_production: LoadFactor | None = None


class LoadFactorsSetResult(BaseModel):
    """The meters changed."""

    meter_ids: list[int]


class SubscriptionSet(_Request):
    """``set_subscription``: a meter's demand-flexibility (DFP) subscription order id (null clears it)."""

    meter: MeterRef
    subscription_id: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None


class ResetWorld(_Request):
    """``reset_world``: delete the grid, meters, ERs, DERs and readings; load the demo world again."""


class ResetResult(BaseModel):
    """What the reset left: the demo world's counts."""

    utilities: int
    transformers: int
    meters: int
    energy_resources: int
    ders: int


class MeterCreateLinked(MeterCreate):
    """``create_meter_linked``: a meter and, with ``link_er_id``, its link to that energy resource (taking
    the ER from any meter it was linked to), in one transaction: no half-made meter is ever left."""

    # Any integer, as ``LinkRequest.er_id``: an id that names no ER is the 404 the link answers.
    link_er_id: int | None = None
    link_load_factor_production: LoadFactor | None = None


class ErCreateLinked(ErCreate):
    """``create_er_linked``: an energy resource and, with ``link_meter_id``, its link to that meter (taking
    the meter from any ER it was linked to), in one transaction."""

    link_meter_id: MeterRef | None = None


# The update_*_linked commands tell "leave the link alone" from "unlink" by whether ``link_*`` was sent at
# all (``model_fields_set``; the bus sends only the fields that were set), as the PATCH bodies they
# translate do: ``energyResource: null`` unlinks, no ``energyResource`` keeps the link.


class MeterUpdateLinked(MeterUpdate):
    """``update_meter_linked``: the fields of ``update_meter`` that were sent, the meter's link (``link_er_id``
    sent: link to that ER, taking it from any other meter; sent as null: unlink) and its DFP subscription
    (``dfp_subscription_id`` sent; null clears it), in one transaction: all of it changes or none."""

    link_er_id: int | None = None
    link_load_factor_production: LoadFactor | None = None
    dfp_subscription_id: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None


class ErUpdateLinked(ErUpdate):
    """``update_er_linked``: the fields of ``update_er`` that were sent and the ER's link (``link_meter_id``
    sent: link to that meter, taking it from any other ER; sent as null: unlink), in one transaction."""

    link_meter_id: MeterRef | None = None
