"""Strapi v4 query parameters, parsed the way Strapi's ``qs`` parser and query converter read them.

``pagination[page]=1&pagination[pageSize]=100&populate[0]=parent&sort[0]=children.code:desc&
filters[code][$eq]=MTR-0001`` becomes a :class:`StrapiQuery`. Pure: no I/O. What it means for a given
entity (which fields exist, how a relation is joined) is decided in :mod:`.sqlquery`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from gridsim_gateway.worldengine.envelope import StrapiValidationError

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "MAX_PAGE_SIZE",
    "Populate",
    "SortKey",
    "StrapiQuery",
    "nest",
    "parse_query",
]

# The World Engine's config/api.js: defaultLimit 25, maxLimit 100.
DEFAULT_PAGE_SIZE = 25
MAX_PAGE_SIZE = 100

_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_INDEX = re.compile(r"\[([^\[\]]*)\]")


def nest(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """``a[b][0]=x`` pairs as nested dicts (qs style); ``a[]=x`` and a repeated key make lists."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        match = _KEY.match(key)
        if match is None:
            root[key] = value
            continue
        path = [match.group(1), *_INDEX.findall(match.group(2))]
        node = root
        for part in path[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {} if child is None else {"0": child}
                node[part] = child
            node = child
        last = path[-1]
        if last == "":  # a[]=x: append
            last = str(len(node))
        if last in node and not isinstance(node[last], dict):
            existing = node[last]
            node[last] = [*existing, value] if isinstance(existing, list) else [existing, value]
        else:
            node[last] = value
    return root


def _as_list(value: Any) -> list[Any]:
    """A qs array (dict with "0", "1"... keys, a list, or a scalar) as a list, in index order."""
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        if value and all(k.isdigit() for k in value):
            return [value[k] for k in sorted(value, key=int)]
        return [value]
    return [value]


@dataclass
class Populate:
    """Which relations to fill in, recursively. ``all`` is Strapi's ``*`` (every relation, one level)."""

    all: bool = False
    children: dict[str, Populate] = field(default_factory=dict)

    def child(self, name: str) -> Populate:
        """The sub-populate of relation ``name`` (created when missing)."""
        return self.children.setdefault(name, Populate())

    def add_path(self, dotted: str) -> None:
        """Add ``meter.parent`` style paths; ``*`` sets ``all`` at that level."""
        node = self
        for part in (p.strip() for p in dotted.split(".")):
            if not part:
                return
            if part == "*":
                node.all = True
                return
            node = node.child(part)

    def wants(self, relations: Iterable[str]) -> dict[str, Populate]:
        """The relations of ``relations`` to fill in, each with its own sub-populate; unknown names ignored."""
        names = list(relations)
        chosen = {name: sub for name, sub in self.children.items() if name in names}
        if self.all:
            for name in names:
                chosen.setdefault(name, Populate())
        return chosen

    @classmethod
    def parse(cls, value: Any) -> Populate:
        """Any of Strapi's populate forms: ``*``, ``a,b``, ``[a, b.c]``, ``{a: true}``, ``{a: {populate: ...}}``."""
        result = cls()
        result._merge(value)
        return result

    def _merge(self, value: Any) -> None:
        if value is None:
            return
        if isinstance(value, str):
            for item in value.split(","):
                self.add_path(item)
            return
        if isinstance(value, list):
            for item in value:
                self._merge(item)
            return
        if isinstance(value, dict):
            if value and all(k.isdigit() for k in value):
                for item in _as_list(value):
                    self._merge(item)
                return
            for name, spec in value.items():
                if name == "*":
                    self.all = True
                    continue
                if isinstance(spec, str) and spec.lower() in {"false", "0"}:
                    continue
                sub = self.child(name)
                if isinstance(spec, dict) and "populate" in spec:
                    sub._merge(spec["populate"])


@dataclass(frozen=True)
class SortKey:
    """One ``field:asc|desc`` entry; ``path`` may go through relations (``children.code``)."""

    path: tuple[str, ...]
    descending: bool = False


def _parse_sort(value: Any) -> list[SortKey]:
    keys: list[SortKey] = []
    for item in _as_list(value):
        if isinstance(item, dict):  # sort[code]=desc
            for name, direction in item.items():
                keys.append(_sort_key(f"{name}:{direction}"))
            continue
        for part in str(item).split(","):
            if part.strip():
                keys.append(_sort_key(part.strip()))
    return keys


def _sort_key(text: str) -> SortKey:
    name, _, direction = text.partition(":")
    direction = direction.strip().lower() or "asc"
    if direction not in {"asc", "desc"}:
        msg = (
            f"Invalid order. order can only be one of asc|desc|ASC|DESC (got {direction!r} in sort {text!r})"
        )
        raise StrapiValidationError(msg, path=["sort"])
    return SortKey(tuple(name.strip().split(".")), descending=direction == "desc")


def _positive_int(value: Any, name: str, *, minimum: int) -> int:
    try:
        number = int(str(value))
    except ValueError:
        number = minimum - 1
    if number < minimum:
        msg = f"Invalid '{name}' parameter: expected an integer >= {minimum}, got {value!r}"
        raise StrapiValidationError(msg, path=["pagination", name])
    return number


@dataclass(frozen=True)
class StrapiQuery:
    """What a Strapi list or find-one call was asked for."""

    page: int = 1
    page_size: int = DEFAULT_PAGE_SIZE
    populate: Populate = field(default_factory=Populate)
    sort: tuple[SortKey, ...] = ()
    filters: dict[str, Any] = field(default_factory=dict)

    @property
    def offset(self) -> int:
        """Rows skipped before this page."""
        return (self.page - 1) * self.page_size

    def pagination(self, total: int) -> dict[str, int]:
        """Strapi's ``pagination`` object for ``total`` matching rows."""
        page_count = -(-total // self.page_size) if total else 0
        return {"page": self.page, "pageSize": self.page_size, "pageCount": page_count, "total": total}


def parse_query(pairs: Iterable[tuple[str, str]], *, max_page_size: int = MAX_PAGE_SIZE) -> StrapiQuery:
    """Parse query-string pairs; unknown parameters (``q``, ``publicationState``...) are ignored.

    Raises :class:`StrapiValidationError` (HTTP 400) for a malformed page, page size or sort order.
    """
    params = nest(pairs)
    page, page_size = 1, DEFAULT_PAGE_SIZE
    pagination = params.get("pagination")
    if isinstance(pagination, dict):
        if "start" in pagination or "limit" in pagination:  # offset form: start / limit
            start = _positive_int(pagination.get("start", 0), "start", minimum=0)
            limit = _positive_int(pagination.get("limit", DEFAULT_PAGE_SIZE), "limit", minimum=1)
            page_size = min(limit, max_page_size)
            page = start // page_size + 1
        else:
            page = _positive_int(pagination.get("page", 1), "page", minimum=1)
            page_size = min(
                _positive_int(pagination.get("pageSize", DEFAULT_PAGE_SIZE), "pageSize", minimum=1),
                max_page_size,
            )
    filters = params.get("filters")
    return StrapiQuery(
        page=page,
        page_size=page_size,
        populate=Populate.parse(params.get("populate")),
        sort=tuple(_parse_sort(params["sort"])) if "sort" in params else (),
        filters=filters if isinstance(filters, dict) else {},
    )
