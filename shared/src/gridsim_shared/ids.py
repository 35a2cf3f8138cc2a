"""Identifiers that appear in topics: one pattern, shared by ids, topics and the HTTP validation."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated

from pydantic import StringConstraints

__all__ = [
    "SEGMENT_PATTERN",
    "FeederPath",
    "MeterPath",
    "SegmentId",
    "TransformerPath",
    "UtilityPath",
    "is_segment",
    "slug",
]

# A topic level: lower-case, no MQTT wildcards or separators, short (it travels with every message).
SEGMENT_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,31}$"
_SEGMENT_RE = re.compile(SEGMENT_PATTERN)
_NOT_ALLOWED = re.compile(r"[^a-z0-9_-]+")

SegmentId = Annotated[str, StringConstraints(pattern=SEGMENT_PATTERN)]


def is_segment(value: str) -> bool:
    """True when ``value`` can be used as one topic level."""
    return _SEGMENT_RE.fullmatch(value) is not None


def slug(value: str) -> str:
    """Turn a human name or code ("MTR-0001", "SF Mission") into a topic level ("mtr-0001", "sf-mission")."""
    text = _NOT_ALLOWED.sub("-", value.strip().lower()).strip("-_")
    text = text[:32].rstrip("-_")
    if not text:
        msg = f"cannot make a topic id from {value!r}"
        raise ValueError(msg)
    return text


@dataclass(frozen=True, slots=True)
class UtilityPath:
    """Where a utility is in the grid."""

    utility: str


@dataclass(frozen=True, slots=True)
class FeederPath:
    """Where a feeder is in the grid."""

    utility: str
    feeder: str

    @property
    def parent(self) -> UtilityPath:
        """The utility above this feeder."""
        return UtilityPath(self.utility)


@dataclass(frozen=True, slots=True)
class TransformerPath:
    """Where a transformer is in the grid."""

    utility: str
    feeder: str
    transformer: str

    @property
    def parent(self) -> FeederPath:
        """The feeder above this transformer."""
        return FeederPath(self.utility, self.feeder)


@dataclass(frozen=True, slots=True)
class MeterPath:
    """Where a meter is in the grid: under a transformer."""

    utility: str
    feeder: str
    transformer: str
    meter: str

    @property
    def parent(self) -> TransformerPath:
        """The transformer this meter hangs from."""
        return TransformerPath(self.utility, self.feeder, self.transformer)
