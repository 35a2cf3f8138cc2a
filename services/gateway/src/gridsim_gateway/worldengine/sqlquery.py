"""Strapi queries on gridsim's tables: filters and sorts as SQL, pages, and populate (read-only).

Column names come only from the entity definitions (:mod:`.entities`); every value the client sends travels
as a bound parameter. Relation filters and sorts go through the relation's ``(owner, target)`` pairs, so
``filters[energyResource][id][$eq]=4`` and ``sort[0]=children.code:desc`` work on any relation.
"""

from __future__ import annotations

import itertools
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row

from gridsim_gateway.worldengine.entities import ENTITIES, Entity, FieldSpec
from gridsim_gateway.worldengine.envelope import StrapiValidationError
from gridsim_gateway.worldengine.strapi import Populate, SortKey, StrapiQuery

__all__ = ["Compiler", "find", "find_one", "load"]

Conn = AsyncConnection[Any]

_COMPARE = {"$eq": "=", "$ne": "is distinct from", "$lt": "<", "$lte": "<=", "$gt": ">", "$gte": ">="}
_LIKE = {
    "$contains": ("like", "%{}%", False),
    "$containsi": ("ilike", "%{}%", False),
    "$notContains": ("like", "%{}%", True),
    "$notContainsi": ("ilike", "%{}%", True),
    "$startsWith": ("like", "{}%", False),
    "$startsWithi": ("ilike", "{}%", False),
    "$endsWith": ("like", "%{}", False),
    "$endsWithi": ("ilike", "%{}", False),
}


def _invalid(message: str, path: list[str]) -> StrapiValidationError:
    return StrapiValidationError(message, path=path)


def _values(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [value[k] for k in sorted(value, key=lambda k: int(k) if k.isdigit() else 0)]
    if isinstance(value, list):
        return value
    return list(str(value).split(",")) if isinstance(value, str) and "," in value else [value]


def _truthy(value: Any) -> bool:
    return str(value).strip().lower() in {"true", "1", "t", "yes"}


class Compiler:
    """Builds a WHERE clause and ORDER BY for one entity; collects the bound parameters."""

    def __init__(self) -> None:
        self.params: list[Any] = []
        self._aliases = (f"t{i}" for i in itertools.count(1))

    # ------------------------------------------------------------------------------ values
    def _convert(self, spec: FieldSpec, raw: Any, path: list[str]) -> Any:
        if raw is None or (isinstance(raw, str) and raw.lower() == "null"):
            return None
        text = str(raw).strip()
        try:
            if spec.to_db is not None:
                return spec.to_db(text)
            if spec.kind == "int":
                return int(text)
            if spec.kind == "float":
                return float(text)
            if spec.kind == "bool":
                if text.lower() not in {"true", "false", "1", "0", "t", "f"}:
                    raise ValueError(text)
                return text.lower() in {"true", "1", "t"}
            if spec.kind == "time":
                return datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError as exc:
            msg = f"Invalid value {raw!r} for {'.'.join(path)} (expected {spec.kind})"
            raise _invalid(msg, path) from exc
        return text

    def _bind(self, value: Any) -> str:
        self.params.append(value)
        return "%s"

    # ----------------------------------------------------------------------------- filters
    def where(
        self, entity: Entity, filters: dict[str, Any], alias: str, path: list[str] | None = None
    ) -> str:
        """SQL condition for ``filters`` on rows of ``entity`` aliased ``alias``."""
        path = path or ["filters"]
        parts: list[str] = []
        for key, value in filters.items():
            here = [*path, key]
            if key in {"$and", "$or"}:
                subs = [self.where(entity, v, alias, here) for v in _values(value) if isinstance(v, dict)]
                joiner = " and " if key == "$and" else " or "
                parts.append(f"({joiner.join(subs)})" if subs else ("true" if key == "$and" else "false"))
            elif key == "$not":
                if isinstance(value, dict):
                    parts.append(f"not ({self.where(entity, value, alias, here)})")
            elif key in entity.fields:
                parts.append(self._field(entity.fields[key], value, alias, here))
            elif key in entity.relations and isinstance(value, dict):
                parts.append(self._relation(entity, key, value, alias, here))
            else:
                msg = f"Invalid key {key}"
                raise _invalid(msg, here)
        return " and ".join(parts) if parts else "true"

    def _field(self, spec: FieldSpec, value: Any, alias: str, path: list[str]) -> str:
        column = f"{alias}.{spec.column}"
        if not isinstance(value, dict) or not value or all(k.isdigit() for k in value):
            value = {"$in": value} if isinstance(value, dict | list) else {"$eq": value}
        parts: list[str] = []
        for op, raw in value.items():
            here = [*path, op]
            if op in _COMPARE:
                converted = self._convert(spec, raw, here)
                if converted is None:
                    parts.append(f"{column} is {'not ' if op == '$ne' else ''}null")
                else:
                    parts.append(f"{column} {_COMPARE[op]} {self._bind(converted)}")
            elif op in {"$eqi", "$nei"}:
                negate = "not " if op == "$nei" else ""
                parts.append(f"{negate}(lower({column}::text) = lower({self._bind(str(raw))}))")
            elif op in {"$in", "$notIn"}:
                items = [self._convert(spec, v, here) for v in _values(raw)]
                test = f"{column} = any({self._bind(items)})"
                parts.append(test if op == "$in" else f"not coalesce({test}, false)")
            elif op in _LIKE:
                operator, pattern, negated = _LIKE[op]
                escaped = str(raw).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
                test = f"{column}::text {operator} {self._bind(pattern.format(escaped))}"
                parts.append(f"not coalesce({test}, false)" if negated else test)
            elif op in {"$null", "$notNull"}:
                is_null = _truthy(raw) == (op == "$null")
                parts.append(f"{column} is {'' if is_null else 'not '}null")
            elif op == "$between":
                low, high = (self._convert(spec, v, here) for v in _values(raw)[:2])
                parts.append(f"{column} between {self._bind(low)} and {self._bind(high)}")
            else:
                msg = f"Invalid operator {op}"
                raise _invalid(msg, here)
        return " and ".join(parts) if parts else "true"

    def _relation(self, entity: Entity, name: str, value: dict[str, Any], alias: str, path: list[str]) -> str:
        relation = entity.relations[name]
        target = ENTITIES[relation.target]
        if relation.pairs is None:
            return "false"
        inner, through = self._through(entity, name, alias)
        return f"exists (select 1 {through} and {self.where(target, value, inner, path)})"

    def _through(self, entity: Entity, name: str, alias: str) -> tuple[str, str]:
        """(alias of the targets, ``from … where …`` joining a row ``alias`` of ``entity`` to its targets
        through relation ``name``'s (owner, target) pairs)."""
        relation = entity.relations[name]
        target = ENTITIES[relation.target]
        inner, pairs = next(self._aliases), next(self._aliases)
        return inner, (
            f"from ({relation.pairs}) {pairs} join {target.source} {inner} "
            f"on {inner}.{target.fields['id'].column} = {pairs}.target "
            f"where {pairs}.owner = {alias}.{entity.fields['id'].column}"
        )

    # -------------------------------------------------------------------------------- sort
    def order_by(self, entity: Entity, keys: tuple[SortKey, ...], alias: str) -> str:
        """ORDER BY terms; NULLs sort as MySQL sorts them (smallest), as the World Engine's did."""
        terms = []
        for key in keys:
            expression = self._sort_expression(entity, list(key.path), alias, key.descending, ["sort"])
            direction = "desc nulls last" if key.descending else "asc nulls first"
            terms.append(f"{expression} {direction}")
        terms.append(f"{alias}.{entity.fields['id'].column} asc")
        return ", ".join(terms)

    def _sort_expression(
        self, entity: Entity, path: list[str], alias: str, descending: bool, where: list[str]
    ) -> str:
        head, rest = path[0], path[1:]
        here = [*where, head]
        if not rest and head in entity.fields:
            return f"{alias}.{entity.fields[head].column}"
        relation = entity.relations.get(head)
        if relation is None or relation.pairs is None or not rest:
            msg = f"Invalid key {'.'.join([*here[1:], *rest])}"
            raise _invalid(msg, here)
        inner, through = self._through(entity, head, alias)
        expression = self._sort_expression(ENTITIES[relation.target], rest, inner, descending, here)
        # A to-many relation sorts by its largest (descending) or smallest (ascending) value.
        pick = "max" if descending else "min"
        return f"(select {pick}({expression}) {through})"


async def find(conn: Conn, entity: Entity, query: StrapiQuery, *, where: str = "true") -> dict[str, Any]:
    """Strapi's ``find``: ``{results, pagination}`` for ``query`` (``where``: an extra fixed condition)."""
    compiler = Compiler()
    condition = compiler.where(entity, query.filters, "a")
    order = compiler.order_by(entity, query.sort, "a")
    id_column = entity.fields["id"].column
    base = f"from {entity.source} a where ({condition}) and ({where})"
    count_cur = await conn.execute(f"select count(*) {base}", compiler.params)
    total = int((await count_cur.fetchone() or (0,))[0])
    ids_cur = await conn.execute(
        f"select a.{id_column} {base} order by {order} limit %s offset %s",
        [*compiler.params, query.page_size, query.offset],
    )
    ids = [row[0] for row in await ids_cur.fetchall()]
    return {"results": await load(conn, entity, ids, query.populate), "pagination": query.pagination(total)}


async def find_one(
    conn: Conn, entity: Entity, key: Any, populate: Populate | None = None
) -> dict[str, Any] | None:
    """One entity by id, populated; None when there is none."""
    found = await load(conn, entity, [key], populate or Populate())
    return found[0] if found else None


async def load(conn: Conn, entity: Entity, ids: list[Any], populate: Populate) -> list[dict[str, Any]]:
    """Entities by id, in the order of ``ids``, with the relations ``populate`` asks for (unknown ones ignored)."""
    if not ids:
        return []
    id_column = entity.fields["id"].column
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"select * from {entity.source} a where a.{id_column} = any(%s)",
            [list(ids)],
        )
        rows = await cur.fetchall()
    by_id = {}
    for row in rows:
        obj = entity.to_we(row)
        by_id[obj["id"]] = obj
    objects = [by_id[i] for i in ids if i in by_id]
    for name, sub in populate.wants(entity.relations).items():
        relation = entity.relations[name]
        if relation.pairs is None:
            for obj in objects:
                obj[name] = [] if relation.many else None
            continue
        target = ENTITIES[relation.target]
        pairs_cur = await conn.execute(
            f"select owner, target from ({relation.pairs}) p where owner = any(%s) order by target",
            [list(by_id)],
        )
        pairs = await pairs_cur.fetchall()
        targets = {
            t["id"]: t for t in await load(conn, target, list(dict.fromkeys(p[1] for p in pairs)), sub)
        }
        linked: dict[Any, list[dict[str, Any]]] = {}
        for owner, target_id in pairs:
            if target_id in targets:
                linked.setdefault(owner, []).append(targets[target_id])
        for obj in objects:
            found = linked.get(obj["id"], [])
            obj[name] = found if relation.many else (found[0] if found else None)
    return objects
