"""The World Engine's content types as views of gridsim's tables: one :class:`Entity` per type.

This is the mapping layer: no table of its own. Each entity names the SQL rows it is made of, how a row
becomes the World Engine's flat JSON object (its field spellings, ``longtitude`` included), which fields
may be filtered and sorted on (World Engine name → SQL column), and its relations as (owner, target) id
pairs, which serve populate, relation filters and relation sorts alike.

| World Engine        | gridsim                                                      |
|---------------------|--------------------------------------------------------------|
| utility             | grid_nodes, level utility                                    |
| substation          | grid_nodes, level feeder                                     |
| transformer         | grid_nodes, level transformer (capacity_kva → max_capacity_KW) |
| meter               | meters (code, load factors, meter_type → ONE-PH/THREE-PH/SMART/NETMETER) |
| energy-resource     | energy_resources (type consumer → CONSUMER)                  |
| der                 | ders (one appliance row of an ER, ``quantity`` identical ones) |
| appliance           | appliances (ids 1–12 are the seed chart, in its order)       |
| p2p-trade           | billing's p2p_trades                                         |
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

__all__ = [
    "APPLIANCE",
    "DER",
    "ENERGY_RESOURCE",
    "ENTITIES",
    "METER",
    "P2P_TRADE",
    "SUBSTATION",
    "TRANSFORMER",
    "UTILITY",
    "Entity",
    "FieldSpec",
    "Relation",
    "er_type_from_we",
    "iso",
    "meter_type_from_we",
    "meter_type_to_we",
]

Kind = Literal["int", "float", "text", "bool", "time"]
Row = dict[str, Any]

# The appliance catalogue has no timestamps; the World Engine's seed appliances were last updated then.
APPLIANCE_TIMESTAMP = "2025-05-15T00:00:00.000Z"


def iso(value: datetime | None) -> str | None:
    """Strapi's timestamp spelling: UTC with milliseconds and ``Z``."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# ------------------------------------------------------------------------------------------- enums

_METER_TYPE_TO_WE = {"1-Ph": "ONE-PH", "3-Ph": "THREE-PH", "Smart": "SMART", "net-meter": "NETMETER"}
_METER_TYPE_FROM_WE = {
    "ONE-PH": "1-Ph",
    "THREE-PH": "3-Ph",
    "SMART": "Smart",
    "NETMETER": "net-meter",
    # The dashboard typings' MeterType "SMART" | "CONVENTIONAL": a conventional meter is single-phase.
    "CONVENTIONAL": "1-Ph",
    # gridsim's and the design doc's spellings are accepted as well.
    "1-PH": "1-Ph",
    "3-PH": "3-Ph",
    "NET-METER": "net-meter",
}
_ER_TYPE_FROM_WE = {"CONSUMER": "consumer", "PROSUMER": "prosumer", "PRODUCER": "prosumer"}


def meter_type_to_we(value: str) -> str:
    """gridsim's meter type as the World Engine's enum."""
    return _METER_TYPE_TO_WE.get(value, value.upper())


def meter_type_from_we(value: str) -> str | None:
    """The World Engine's (or the typings') meter type as gridsim's; None when unknown."""
    return _METER_TYPE_FROM_WE.get(value.strip().upper().replace("_", "-"))


def er_type_from_we(value: str) -> str | None:
    """CONSUMER / PROSUMER (and the typings' PRODUCER, which can only mean a prosumer) as gridsim's type."""
    return _ER_TYPE_FROM_WE.get(value.strip().upper())


# ------------------------------------------------------------------------------------------ entity


@dataclass(frozen=True)
class FieldSpec:
    """A filterable, sortable field: its SQL column (of the entity's row source) and type."""

    column: str
    kind: Kind
    # World Engine value → stored value (enums); None means "matches nothing".
    to_db: Callable[[str], Any] | None = None


@dataclass(frozen=True)
class Relation:
    """A relation: ``pairs`` is SQL yielding ``(owner, target)`` ids; None for a relation that is always
    null in gridsim (the World Engine's ``user``)."""

    target: str
    many: bool
    pairs: str | None


@dataclass(frozen=True)
class Entity:
    """A World Engine content type over gridsim rows."""

    name: str
    source: str  # SQL of the rows (a table, or a subquery in parentheses)
    to_we: Callable[[Row], dict[str, Any]]
    fields: dict[str, FieldSpec]
    relations: dict[str, Relation] = field(default_factory=dict)
    order: str = "id"  # insertion order, as Strapi's relation arrays come back
    id_kind: Kind = "int"


def _timestamps(row: Row) -> dict[str, Any]:
    created = iso(row.get("created_at"))
    return {
        "createdAt": created,
        "updatedAt": iso(row.get("updated_at")) or created,
        # Every gridsim row is live: published when it was created.
        "publishedAt": created,
    }


def _ts_fields(updated: str = "updated_at") -> dict[str, FieldSpec]:
    return {
        "createdAt": FieldSpec("created_at", "time"),
        "updatedAt": FieldSpec(updated, "time"),
        "publishedAt": FieldSpec("created_at", "time"),
    }


def _geo_text(value: float | None) -> str | None:
    # Utility, substation and transformer coordinates were strings in the World Engine.
    return None if value is None else repr(float(value))


# ------------------------------------------------------------------------------------------- grid


def _node_scalars(row: Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "city": row["city"],
        "state": row["state"],
        "latitude": _geo_text(row["latitude"]),
        "longtitude": _geo_text(row["longitude"]),  # sic: the World Engine's spelling
        "pincode": row["pincode"],
        # additive: gridsim's topic id of the node
        "code": row["code"],
    }


def _utility(row: Row) -> dict[str, Any]:
    return {**_node_scalars(row), **_timestamps(row)}


def _substation(row: Row) -> dict[str, Any]:
    return {**_node_scalars(row), "max_capacity_KW": row["capacity_kva"], **_timestamps(row)}


def _transformer(row: Row) -> dict[str, Any]:
    return {
        **_node_scalars(row),
        "max_capacity_KW": row["capacity_kva"],
        "emergency_service": row["emergency_service"],
        **_timestamps(row),
    }


_NODE_FIELDS: dict[str, FieldSpec] = {
    "id": FieldSpec("id", "int"),
    "name": FieldSpec("name", "text"),
    "code": FieldSpec("code", "text"),
    "city": FieldSpec("city", "text"),
    "state": FieldSpec("state", "text"),
    "latitude": FieldSpec("latitude", "float"),
    "longtitude": FieldSpec("longitude", "float"),
    "pincode": FieldSpec("pincode", "text"),
    **_ts_fields("created_at"),
}


def _level(level: str) -> str:
    return f"(select * from grid_nodes where level = '{level}')"


UTILITY = Entity(
    name="utility",
    source=_level("utility"),
    to_we=_utility,
    fields=_NODE_FIELDS,
    relations={
        "substations": Relation(
            "substation",
            True,
            "select parent_id as owner, id as target from grid_nodes where level = 'feeder'",
        ),
    },
)
SUBSTATION = Entity(
    name="substation",
    source=_level("feeder"),
    to_we=_substation,
    fields={**_NODE_FIELDS, "max_capacity_KW": FieldSpec("capacity_kva", "float")},
    relations={
        "utility": Relation(
            "utility", False, "select id as owner, parent_id as target from grid_nodes where level = 'feeder'"
        ),
        "transformers": Relation(
            "transformer",
            True,
            "select parent_id as owner, id as target from grid_nodes where level = 'transformer'",
        ),
    },
)
TRANSFORMER = Entity(
    name="transformer",
    source=_level("transformer"),
    to_we=_transformer,
    fields={
        **_NODE_FIELDS,
        "max_capacity_KW": FieldSpec("capacity_kva", "float"),
        "emergency_service": FieldSpec("emergency_service", "bool"),
    },
    relations={
        "substation": Relation(
            "substation",
            False,
            "select id as owner, parent_id as target from grid_nodes where level = 'transformer'",
        ),
        "meters": Relation(
            "meter",
            True,
            "select transformer_id as owner, id as target from meters where transformer_id is not null",
        ),
    },
)

# ------------------------------------------------------------------------------------------ meters


def _meter(row: Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "code": row["code"],
        "consumptionLoadFactor": row["load_factor_consumption"],
        "productionLoadFactor": row["load_factor_production"],
        "type": meter_type_to_we(row["meter_type"]),
        "city": row["city"],
        "state": row["state"],
        "latitude": row["latitude"],
        "longitude": row["longitude"],
        "pincode": row["pincode"],
        "max_capacity_KW": row["max_capacity_kw"],
        "dfp_subscription_id": row["dfp_subscription_id"],
        # additive: gridsim's meter status (online, offline, tampered, fault)
        "status": row["status"],
        **_timestamps(row),
    }


METER = Entity(
    name="meter",
    source="meters",
    to_we=_meter,
    fields={
        "id": FieldSpec("id", "int"),
        "code": FieldSpec("code", "text"),
        "consumptionLoadFactor": FieldSpec("load_factor_consumption", "float"),
        "productionLoadFactor": FieldSpec("load_factor_production", "float"),
        "type": FieldSpec("meter_type", "text", meter_type_from_we),
        "city": FieldSpec("city", "text"),
        "state": FieldSpec("state", "text"),
        "latitude": FieldSpec("latitude", "float"),
        "longitude": FieldSpec("longitude", "float"),
        "pincode": FieldSpec("pincode", "text"),
        "max_capacity_KW": FieldSpec("max_capacity_kw", "float"),
        "dfp_subscription_id": FieldSpec("dfp_subscription_id", "text"),
        "status": FieldSpec("status", "text"),
        **_ts_fields(),
    },
    relations={
        "parent": Relation(
            "meter", False, "select id as owner, parent_id as target from meters where parent_id is not null"
        ),
        "children": Relation(
            "meter", True, "select parent_id as owner, id as target from meters where parent_id is not null"
        ),
        "energyResource": Relation(
            "energy-resource",
            False,
            "select id as owner, er_id as target from meters where er_id is not null",
        ),
        "transformer": Relation(
            "transformer",
            False,
            "select id as owner, transformer_id as target from meters where transformer_id is not null",
        ),
        # The World Engine's users-permissions user: gridsim has no users, so it is always null.
        "user": Relation("meter", False, None),
    },
)

# ---------------------------------------------------------------------------- energy resources, DERs


def _energy_resource(row: Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "type": str(row["type"]).upper(),
        # additive: gridsim's kind of premises and its load profile
        "kind": row["kind"],
        "profile": row["profile"],
        **_timestamps(row),
    }


ENERGY_RESOURCE = Entity(
    name="energy-resource",
    source="energy_resources",
    to_we=_energy_resource,
    fields={
        "id": FieldSpec("id", "int"),
        "name": FieldSpec("name", "text"),
        "type": FieldSpec("type", "text", er_type_from_we),
        "kind": FieldSpec("kind", "text"),
        **_ts_fields(),
    },
    relations={
        "meter": Relation(
            "meter", False, "select er_id as owner, id as target from meters where er_id is not null"
        ),
        "ders": Relation("der", True, "select er_id as owner, id as target from ders"),
    },
)


def _der(row: Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "switched_on": row["switched_on"],
        # additive: identical appliances in this row, and gridsim's install state
        "quantity": row["quantity"],
        "lifecycle": row["lifecycle"],
        **_timestamps(row),
    }


DER = Entity(
    name="der",
    source="ders",
    to_we=_der,
    fields={
        "id": FieldSpec("id", "int"),
        "switched_on": FieldSpec("switched_on", "bool"),
        "quantity": FieldSpec("quantity", "int"),
        **_ts_fields(),
    },
    relations={
        "appliance": Relation("appliance", False, "select id as owner, appliance_id as target from ders"),
        "energy_resource": Relation(
            "energy-resource", False, "select id as owner, er_id as target from ders"
        ),
    },
)


def _appliance(row: Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "powerRating": round(row["power_w"]),
        # The World Engine's per-hour baseKWh (its 20 May seed): the per-minute chart value × 60.
        "baseKWh": round(row["base_kwh_per_min"] * 60, 6),
        "description": row["description"],
        "createdAt": APPLIANCE_TIMESTAMP,
        "updatedAt": APPLIANCE_TIMESTAMP,
        "publishedAt": APPLIANCE_TIMESTAMP,
    }


APPLIANCE = Entity(
    name="appliance",
    source="appliances",
    to_we=_appliance,
    fields={
        "id": FieldSpec("id", "int"),
        "name": FieldSpec("name", "text"),
        "powerRating": FieldSpec("power_w", "float"),
        "description": FieldSpec("description", "text"),
    },
)

# ------------------------------------------------------------------------------------------- trades


def _trade(row: Row) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "buyer_meter_id": row["buyer_meter_code"],
        "seller_meter_id": row["seller_meter_code"],
        "units_kWh": float(row["units_kwh"]),
        "price_per_kWh": float(row["price_per_kwh"]),
        # additive: the simulated time of the trade
        "timestamp": iso(row["ts"]),
        **_timestamps(row),
    }


P2P_TRADE = Entity(
    name="p2p-trade",
    source="p2p_trades",
    to_we=_trade,
    fields={
        "id": FieldSpec("id::text", "text"),
        "buyer_meter_id": FieldSpec("buyer_meter_code", "text"),
        "seller_meter_id": FieldSpec("seller_meter_code", "text"),
        "units_kWh": FieldSpec("units_kwh", "float"),
        "price_per_kWh": FieldSpec("price_per_kwh", "float"),
        "timestamp": FieldSpec("ts", "time"),
        **_ts_fields("created_at"),
    },
    order="created_at, id",
    id_kind="text",
)

ENTITIES: dict[str, Entity] = {
    e.name: e for e in (UTILITY, SUBSTATION, TRANSFORMER, METER, ENERGY_RESOURCE, DER, APPLIANCE, P2P_TRADE)
}
