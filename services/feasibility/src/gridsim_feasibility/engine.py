"""The feasibility decision against the live database: in-memory positions, fresh loads, atomic approval.

Positions of every transformer live in memory (numpy columns), so ranking 10,000 transformers is one
vectorised Haversine; they are reloaded whenever meter-sim's grid version moves (its trigger bumps it on
any insert, delete or move of a grid node). Loads are never cached: each request reads the candidates'
booked loads fresh, nearest first, in small chunks, and stops at the first that fits. Booking is
meter-sim's (it owns the transformers' booked loads): a :data:`Book` call, one atomic command there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gridsim_feasibility import domain, repository
from gridsim_feasibility.repository import Conn, LoadRow
from gridsim_shared.settings import FeasibilitySettings

__all__ = ["Book", "Choice", "Outcome", "TransformerIndex", "evaluate", "reserve"]

# Book the request on a transformer (its id, the measured peak the decision used) if it still fits at this
# instant: the transformer's loads after booking, or None when a concurrent approval filled it meanwhile.
Book = Callable[[int, tuple[float, float]], Awaitable[LoadRow | None]]

# The nearest few usually carry the request; read more only when they do not.
_FIRST_CHUNK = 16


@dataclass
class TransformerIndex:
    """Positions of every assignable transformer, reloaded when the database says they changed."""

    positions: domain.Positions = field(default_factory=lambda: domain.Positions.build([], [], []))
    version: int = -1
    reloads: int = 0
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def current(self, conn: Conn) -> domain.Positions:
        """The positions, reloaded first when the database's version differs from ours."""
        if await repository.index_version(conn) != self.version:
            async with self._lock:
                if await repository.index_version(conn) != self.version:
                    self.version, self.positions = await repository.load_positions(conn)
                    self.reloads += 1
        return self.positions


@dataclass(frozen=True)
class Choice:
    """The transformer a request goes to, with what the decision saw."""

    load: LoadRow
    distance_m: float
    measured: tuple[float, float] | None  # measured peak (consumption, production) kW, None: no readings


@dataclass(frozen=True)
class Outcome:
    """A decision: the choice, or why there is none (``limiting``) among how many candidates."""

    choice: Choice | None
    limiting: domain.Limiting | None
    candidates: int
    decided_on: str


def limits_of(settings: FeasibilitySettings) -> domain.Limits:
    """The seed's shares, from the settings."""
    return domain.Limits(settings.consumption_share, settings.production_share)


def _chunks(n: int) -> Iterator[slice]:
    if n:
        yield slice(0, min(_FIRST_CHUNK, n))
    if n > _FIRST_CHUNK:
        yield slice(_FIRST_CHUNK, n)


async def _ranked_loads(
    conn: Conn,
    *,
    positions: domain.Positions,
    candidates: domain.Candidates,
    part: slice,
    measured_on: bool,
    window_h: int,
) -> tuple[domain.Candidates, list[LoadRow], domain.Loads, dict[int, tuple[float, float]]]:
    """One chunk of candidates with fresh loads (candidates that vanished since the index was read dropped)."""
    ids = [int(i) for i in positions.ids[candidates.index[part]]]
    fresh = await repository.loads(conn, ids)
    keep = np.array([i in fresh for i in ids], dtype=bool)
    chunk = domain.Candidates(candidates.index[part][keep], candidates.distance_m[part][keep])
    rows = [fresh[i] for i in ids if i in fresh]
    booked = domain.Loads(
        np.array([r.capacity_kva for r in rows], dtype=np.float64),
        np.array([r.consumption_kw for r in rows], dtype=np.float64),
        np.array([r.production_kw for r in rows], dtype=np.float64),
    )
    peaks = await repository.measured_peaks(conn, [r.id for r in rows], window_h) if measured_on else {}
    if measured_on:
        booked = domain.effective_loads(
            booked,
            np.array([peaks.get(r.id, (0.0, 0.0))[0] for r in rows], dtype=np.float64),
            np.array([peaks.get(r.id, (0.0, 0.0))[1] for r in rows], dtype=np.float64),
        )
    return chunk, rows, booked, peaks


async def evaluate(
    conn: Conn,
    index: TransformerIndex,
    request: domain.Request,
    settings: FeasibilitySettings,
    *,
    book: Book | None,
) -> Outcome:
    """Decide a request; with ``book`` also book it on the chosen transformer (atomically, by its owner).

    Without ``book`` nothing is written. With it, each candidate that fits on the loads just read is
    tried with meter-sim's conditional booking; one that a concurrent approval has filled meanwhile fails
    it and the request falls through to the next nearest, so the answer is always what the database
    accepted.
    """
    limits = limits_of(settings)
    measured_on = settings.decide_on_measured_load
    decided_on = "measured" if measured_on else "nameplate"
    positions = await index.current(conn)
    candidates = domain.rank(positions, request.latitude, request.longitude, settings.radius_m)
    any_fits_consumption = False
    seen = 0
    for part in _chunks(len(candidates)):
        chunk, rows, effective, peaks = await _ranked_loads(
            conn,
            positions=positions,
            candidates=candidates,
            part=part,
            measured_on=measured_on,
            window_h=settings.measured_window_h,
        )
        seen += len(chunk)
        any_fits_consumption |= bool(domain.fits(effective, request, limits)[0].any())
        start = 0
        while start < len(chunk):
            rest = domain.Candidates(chunk.index[start:], chunk.distance_m[start:])
            sub = domain.Loads(
                effective.capacity_kva[start:],
                effective.consumption_kw[start:],
                effective.production_kw[start:],
            )
            decision = domain.decide_ranked(rest, sub, request, limits)
            if not decision.feasible or decision.chosen is None:
                break
            at = start + decision.chosen
            row, distance = rows[at], float(chunk.distance_m[at])
            peak = peaks.get(row.id) if measured_on else None
            if book is None:
                return Outcome(Choice(row, distance, peak), None, len(candidates), decided_on)
            booked = await book(row.id, peak or (0.0, 0.0))
            if booked is not None:
                return Outcome(Choice(booked, distance, peak), None, len(candidates), decided_on)
            start = at + 1  # filled by a concurrent approval since we read it: try the next nearest
    if seen == 0:
        return Outcome(None, "none_in_radius", len(candidates), decided_on)
    return Outcome(None, "production" if any_fits_consumption else "consumption", len(candidates), decided_on)


async def reserve(
    conn: Conn, index: TransformerIndex, request: domain.Request, settings: FeasibilitySettings, book: Book
) -> Outcome:
    """Decide and book."""
    return await evaluate(conn, index, request, settings, book=book)


def as_request(body: Any) -> domain.Request:
    """The domain request from a validated HTTP/RPC body."""
    return domain.Request(
        latitude=body.latitude,
        longitude=body.longitude,
        consumption_kw=body.requested_consumption_kW,
        production_kw=body.requested_production_kW,
    )
